"""A bundle's manifest as a typed, frozen value, validated once when it is read.

A bundle is untrusted input: every name it gives (runner, library, reference, firmware, C
sources) must be a plain file name inside the bundle and in its checksummed file list before
anything runs, is copied or is flashed; anything else is refused in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifacts import TensorSpec
from edgec.errors import EdgecError
from edgec.targets import TargetProfile, get_target, with_cuda_arch, with_static
from edgec.tuning import TunedAgainstUntuned

SCHEMA = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


def plain_name(value: object, what: str) -> str:
    """`value` if it is a plain file name (no directory part, no option look-alike), or raise."""
    bad = (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or "/" in value
        or "\\" in value
        or "\0" in value
        or value.startswith("-")
        or any(ord(c) < 32 for c in value)
    )
    if bad:
        raise EdgecError(f"{what} {value!r} is not a plain file name in the bundle; rebuild it")
    assert isinstance(value, str)
    return value


@dataclass(frozen=True)
class Layer:
    """One layer of a generated C library: what the firmware's per-layer counts are for."""

    name: str
    op: str
    macs: int


@dataclass(frozen=True)
class Manifest:
    """What manifest.json says, checked: names are plain files listed in `files`.

    One shape for every backend: a field that does not apply to a bundle is None or empty."""

    target: str
    model: str
    library: str | None  # TVM bundles: model.so; MCU bundles: None (see c_sources)
    reference: str
    runner: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parity: dict[str, Any]  # tolerance, share (numbers); scale: "reference" if relative
    files: dict[str, str]  # file name → sha256
    firmware: str | None = None  # MCU bundles
    board: str | None = None  # MCU bundles: the board the firmware was linked for
    memory: dict[str, int] | None = None  # MCU bundles: that board's flash/RAM map
    c_sources: tuple[str, ...] = ()  # MCU bundles: the generated C library
    versions: dict[str, str] | None = None  # edgec, tvm, ... that built the bundle
    tvm_target: dict[str, Any] | None = None  # TVM bundles: the resolved target, as built
    expected_output: tuple[int, ...] = ()  # MCU bundles: the firmware's output on its input
    layers: tuple[Layer, ...] = ()  # MCU bundles: the layers the firmware counts
    static: bool = False  # TVM bundles: the runner is one static executable holding the model
    tuning: TunedAgainstUntuned | None = None  # tuned builds: timed against the untuned build

    @property
    def cuda_arch(self) -> str | None:
        """GPU bundles: the architecture the kernels were built for (from tvm_target)."""
        target = self.tvm_target or {}
        return str(target["arch"]) if target.get("kind") == "cuda" else None

    @property
    def profile(self) -> TargetProfile:
        """The bundle's target profile, with the GPU architecture it was built for."""
        return with_static(with_cuda_arch(get_target(self.target), self.cuda_arch), self.static)

    def to_json(self) -> dict[str, Any]:
        """manifest.json's content."""
        return {
            "schema": SCHEMA,
            "versions": self.versions,
            "target": self.target,
            "tvm_target": self.tvm_target,
            "board": self.board,
            "memory": self.memory,
            "model": self.model,
            "library": self.library,
            "c_sources": list(self.c_sources),
            "firmware": self.firmware,
            "runner": self.runner,
            "static": self.static,
            "reference": self.reference,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "expected_output": list(self.expected_output),
            "layers": [{"name": x.name, "op": x.op, "macs": x.macs} for x in self.layers],
            "parity": self.parity,
            "tuning": None if self.tuning is None else self.tuning.to_json(),
            "files": self.files,
        }

    @staticmethod
    def from_json(data: object, directory: Path | None = None) -> Manifest:
        """Validate a parsed manifest.json; with `directory`, also that each named file is
        there as a regular file (not a link out of the bundle)."""
        where = f"{directory}/manifest.json" if directory else "manifest.json"
        if not isinstance(data, dict):
            raise EdgecError(f"{where} is not a JSON object; rebuild the bundle")
        try:
            return _parse(data, directory, where)
        except (KeyError, TypeError, ValueError) as e:
            detail = f"lacks {e.args[0]!r}" if isinstance(e, KeyError) else f"is malformed ({e})"
            raise EdgecError(f"{where} {detail}; rebuild the bundle") from None


def _parse(data: dict[str, Any], directory: Path | None, where: str) -> Manifest:
    files = data["files"]
    if not isinstance(files, dict):
        raise EdgecError(f"{where}: 'files' must map file names to sha256; rebuild the bundle")
    for name, digest in files.items():
        plain_name(name, "file")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise EdgecError(f"{where}: the sha256 of {name!r} is malformed; rebuild the bundle")
    target = data["target"]
    if not isinstance(target, str):
        raise EdgecError(f"{where}: target must be a name; rebuild the bundle")
    get_target(target)  # an unknown target lists the known ones

    def listed(key: str, value: object) -> str:
        name = plain_name(value, key)
        if name not in files:
            raise EdgecError(
                f"{where}: {key} {name!r} is not in the bundle's checksummed files; rebuild it"
            )
        if directory is not None:
            path = directory / name
            if path.is_symlink() or not path.is_file():
                raise EdgecError(f"{where}: {key} {name!r} is not a file in {directory}; rebuild")
        return name

    library = data.get("library")
    c_sources = tuple(listed("c_sources", v) for v in data.get("c_sources") or ())
    if isinstance(library, list):  # MCU bundles before one shape listed the C files here
        c_sources = tuple(listed("library", v) for v in library)
        library = None
    elif library is not None:
        library = listed("library", library)
    runner = data.get("runner")
    firmware = data.get("firmware")
    board = data.get("board")
    if board is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", str(board)):
        raise EdgecError(f"{where}: board {board!r} is not a board name; rebuild the bundle")
    memory = data.get("memory")
    if memory is not None:
        memory = {k: int(memory[k]) for k in ("flash_origin", "flash_bytes", "ram_origin")}
    expected, layers = data.get("expected_output") or [], data.get("layers") or []
    if firmware is not None:  # what `edgec run --emulate` compares the firmware against
        expected, layers = data["expected_output"], data["layers"]
    if not isinstance(expected, list) or not all(
        isinstance(v, int) and -128 <= v <= 127 for v in expected
    ):
        raise EdgecError(f"{where}: expected_output must be int8 values; rebuild the bundle")
    if not isinstance(layers, list) or not all(
        isinstance(x, dict) and isinstance(x.get("macs"), int) and {"name", "op"} <= x.keys()
        for x in layers
    ):
        raise EdgecError(f"{where}: layers must name each layer's op and MACs; rebuild")
    versions = data.get("versions")
    if versions is not None and not isinstance(versions, dict):
        raise EdgecError(f"{where}: versions must be a table; rebuild the bundle")
    tvm_target = data.get("tvm_target")
    if tvm_target is not None and not isinstance(tvm_target, dict):
        raise EdgecError(f"{where}: tvm_target must be a table; rebuild the bundle")
    if tvm_target is not None and tvm_target.get("kind") == "cuda":
        from edgec.gpu import CUDA_ARCHS

        if tvm_target.get("arch") not in CUDA_ARCHS:
            arch = tvm_target.get("arch")
            raise EdgecError(f"{where}: cuda arch {arch!r} is unknown; rebuild the bundle")
    parity = data.get("parity") or {}
    static = data.get("static", False)
    if not isinstance(static, bool) or (static and (runner is None or library is not None)):
        raise EdgecError(
            f"{where}: static must be true only for a runner without a library; rebuild the bundle"
        )
    return Manifest(
        target=target,
        model=str(data.get("model", "")),
        library=library,
        reference=listed("reference", data["reference"]),
        runner=None if runner is None else listed("runner", runner),
        inputs=_specs(data["inputs"], "inputs", where),
        outputs=_specs(data["outputs"], "outputs", where),
        parity=_parity(parity, where),
        files=dict(files),
        firmware=None if firmware is None else listed("firmware", firmware),
        board=None if board is None else str(board),
        memory=memory,
        c_sources=c_sources,
        versions=None if versions is None else {str(k): str(v) for k, v in versions.items()},
        tvm_target=tvm_target,
        expected_output=tuple(expected),
        layers=tuple(Layer(str(x["name"]), str(x["op"]), int(x["macs"])) for x in layers),
        static=static,
        tuning=_tuning(data.get("tuning"), where),
    )


def _tuning(data: object, where: str) -> TunedAgainstUntuned | None:
    if data is None:
        return None
    try:
        return TunedAgainstUntuned.from_json(data)
    except EdgecError as e:
        raise EdgecError(f"{where}: {e}; rebuild the bundle") from None


def _specs(values: object, key: str, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(values, list) or not values:
        raise EdgecError(f"{where}: {key} must be a non-empty list of tensors; rebuild the bundle")
    specs = []
    for value in values:
        spec = TensorSpec.from_json(value)
        if not _numeric(spec.dtype) or any(d < 0 for d in spec.shape) or len(spec.shape) > 8:
            raise EdgecError(f"{where}: {key} tensor {value!r} is malformed; rebuild the bundle")
        specs.append(spec)
    return tuple(specs)


def _numeric(dtype: str) -> bool:
    """A numpy dtype of numbers or booleans (not objects, strings or records)."""
    import numpy as np

    try:
        return np.dtype(dtype).kind in "biuf"
    except (TypeError, ValueError):
        return False


def _parity(data: Any, where: str) -> dict[str, Any]:
    """tolerance and share as numbers; scale, if given, "reference" (relative to the outputs)."""
    if not isinstance(data, dict):
        raise EdgecError(f"{where}: parity must be a table; rebuild the bundle")
    try:
        parity: dict[str, Any] = {k: float(v) for k, v in data.items() if k != "scale"}
    except (TypeError, ValueError):
        raise EdgecError(f"{where}: parity values must be numbers; rebuild the bundle") from None
    if "scale" in data:
        if data["scale"] != "reference":
            raise EdgecError(f"{where}: parity scale must be 'reference'; rebuild the bundle")
        parity["scale"] = "reference"
    return parity
