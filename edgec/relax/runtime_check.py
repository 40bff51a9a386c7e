"""Check at build time that every function a compiled VM executable calls exists where the bundle
will run: in the model library itself (its kernels) or in the runtime the bundle ships.

The compiler's own library (libtvm_compiler.so) registers more functions than the runtime: e.g.
ONNX Unique becomes a call to relax.run.unique, which libtvm_runtime.so lacks, so such a bundle
builds and then can never load. The runtime libraries may be for another architecture (aarch64
for a Raspberry Pi), so they are not loaded: a registered global's name is a NUL-terminated
string literal in the library's read-only data (tvm-ffi registers each under its literal name),
and a name absent from both libraries cannot be registered by them.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from edgec import onnx_graph, runtime
from edgec.artifacts import OnnxModel
from edgec.errors import EdgecError
from edgec.targets import TargetProfile

_PACKED = re.compile(r"^@(\S+) packed_func;$", re.MULTILINE)


def called_functions(executable: Any) -> list[str]:
    """The functions the executable's bytecode calls and does not define (its kernels are in
    the imported model library and resolve there)."""
    text = executable.as_text()
    libraries = list(executable.mod.imports)
    return [
        name
        for name in dict.fromkeys(_PACKED.findall(text))
        if not any(lib.implements_function(name) for lib in libraries)
    ]


@cache
def _library_bytes(path: str, size: int, mtime_ns: int) -> bytes:
    """A runtime library's contents, read once per file version."""
    return Path(path).read_bytes()


def runtime_lacks(
    names: list[str], libs: Path, shipped: tuple[str, ...] = runtime.RUNTIME_LIBS
) -> list[str]:
    """The names that no library of `shipped` in `libs` registers."""
    blobs = []
    for lib in shipped:
        st = (libs / lib).stat()
        blobs.append(_library_bytes(str(libs / lib), st.st_size, st.st_mtime_ns))
    return [n for n in names if not any(n.encode() + b"\0" in blob for blob in blobs)]


def check_runtime(executable: Any, profile: TargetProfile, onnx_model: OnnxModel) -> None:
    """One line naming the ONNX op when the executable calls a function the target's runtime
    lacks."""
    if profile.capabilities.link == "static":  # the runtime is edgec's archives, linked in
        from edgec import static_runtime

        libs, shipped = static_runtime.archives(profile), static_runtime.ARCHIVES
    else:
        libs = runtime.runtime_libs(profile)
        shipped = runtime.runtime_names(profile)  # GPU bundles: libtvm_runtime_cuda.so too
    missing = runtime_lacks(called_functions(executable), libs, shipped)
    if not missing:
        return
    ops = onnx_graph.op_types(onnx_graph.read(onnx_model.path))
    name = missing[0]
    op = _onnx_op(name, ops)
    raise EdgecError(
        f"{op} compiles to a call of {name}, which the {profile.name} runtime "
        "(libtvm_runtime.so, shipped in the bundle) lacks: the bundle could never load; "
        "replace or remove that op in the model (e.g. compute it outside the model)"
    )


def _onnx_op(function: str, ops: set[str]) -> str:
    """The ONNX op a runtime function most likely came from (relax.run.unique ← Unique)."""
    key = function.rsplit(".", 1)[-1].replace("_", "").lower()
    for op in sorted(ops):
        if op.lower() == key:
            return f"the model's ONNX op {op}"
    return "an op of the model"
