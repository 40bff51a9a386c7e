"""bundle: a built library plus its runner, runtime libraries and manifest, in one directory."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec import runtime
from edgec.artifacts import BuiltArtifact, Bundle
from edgec.errors import CheckFailed, EdgecError
from edgec.manifest import Manifest
from edgec.targets import TargetProfile
from edgec.versions import versions

if TYPE_CHECKING:
    from edgec.stages.firmware import Firmware
    from edgec.stages.quantize import QuantizedModel

MANIFEST = "manifest.json"
# float builds: max abs difference from ONNX Runtime ≤ 1e-4 × max(1, max |ONNX Runtime output|)
FLOAT_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2  # fp16 builds: on 99% of the outputs
REPORTS = ("report.json", "report.md")  # rewritten by `edgec run`, so not checksummed


def bundle(built: BuiltArtifact, directory: Path) -> Bundle:
    """Complete `directory` (which holds model.so and model.onnx) into a deployable bundle."""
    profile = built.target
    shutil.copy2(runtime.runner(profile), directory / runtime.RUNNER)
    libs = runtime.runtime_libs(profile)
    for lib in runtime.runtime_names(profile):  # GPU targets: the CUDA runtime too
        shutil.copy2(libs / lib, directory / lib)
    manifest = {
        "schema": 1,
        "versions": versions(),
        "target": profile.name,
        "tvm_target": built.tvm_target,
        "model": built.onnx.source,
        "library": built.library.name,
        "reference": built.onnx.path.name,
        "runner": runtime.RUNNER,
        "inputs": [s.to_json() for s in built.onnx.inputs],
        "outputs": [s.to_json() for s in built.onnx.outputs],
        "parity": _parity(built),
        "files": checksums(directory),
    }
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return Bundle(directory, manifest, Manifest.from_json(manifest, directory))


def bundle_firmware(fw: Firmware, quantized: QuantizedModel, directory: Path) -> Bundle:
    """Complete `directory` (the generated C, the harness, firmware.elf) into an MCU bundle.

    The parity reference is the numpy int8 reference's output on the embedded test input:
    the firmware must reproduce it exactly."""
    library = fw.library
    manifest = {
        "schema": 1,
        "versions": versions(),
        "target": fw.board.target,
        "board": fw.board.name,  # the firmware is linked for this board's memory map
        "memory": dataclasses.asdict(fw.board.memory) if fw.board.memory else None,
        "model": library.source,
        "library": ["model.c", "model.h", "edgec_nn.c", "edgec_nn.h"],
        "firmware": fw.elf.name,
        "reference": quantized.onnx.path.name,
        "inputs": [
            {
                "name": "input",
                "shape": list(library.input_shape),
                "dtype": "int8",
                "scale": library.input_scale,
            }
        ],
        "outputs": [
            {
                "name": "output",
                "shape": list(library.output_shape),
                "dtype": "int8",
                "scale": library.output_scale,
            }
        ],
        "expected_output": [int(v) for v in library.expected_output],
        "layers": [{"name": x.name, "op": x.op, "macs": x.macs} for x in library.layers],
        "parity": {"tolerance": 0, "share": 1.0},
        "files": checksums(directory),
    }
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return Bundle(directory, manifest, Manifest.from_json(manifest, directory))


def _parity(built: BuiltArtifact) -> dict[str, float]:
    """How close the bundle's outputs must be to ONNX Runtime on its reference model."""
    if built.quantization is None:
        # scaled by max(1, max |reference output|): float32 rounding grows with the magnitude
        return {"tolerance": FLOAT_TOLERANCE, "share": 1.0, "scale": "reference"}
    if built.quantization["mode"] == "fp16":  # 11-bit mantissas, float32 accumulation
        return {"tolerance": FP16_TOLERANCE, "share": 0.99}
    # int8 against the same QDQ model in ONNX Runtime: within one output step (its scale) on
    # at least 99% of the outputs; ONNX Runtime requantizes in float, edgec in fixed point.
    return {"tolerance": built.quantization["output_scale"] * 1.0001, "share": 0.99}


def checksums(directory: Path) -> dict[str, str]:
    """sha256 of every deployable file in the bundle."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        # a link could point anywhere: edgec never writes one, so it is no part of a bundle
        if p.is_file() and not p.is_symlink() and p.name not in (MANIFEST, *REPORTS)
    }


def open_bundle(path: Path) -> tuple[Bundle, TargetProfile]:
    """Read a bundle from disk, validate its manifest (edgec.manifest) and verify its
    checksums, before anything in it is run, read or copied."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise EdgecError(
            f"{path} is not an edgec bundle (no {MANIFEST}); build one with edgec build"
        )
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgecError(f"{manifest_path} is not valid JSON ({e}); rebuild the bundle") from None
    typed = Manifest.from_json(manifest, path)
    actual = checksums(path)
    for name, digest in typed.files.items():
        if actual.get(name) != digest:
            state = "missing" if name not in actual else "modified"
            raise CheckFailed(
                f"{path}/{name} is {state} (sha256 differs from the manifest); rebuild"
            )
    return Bundle(path, manifest, typed), typed.profile
