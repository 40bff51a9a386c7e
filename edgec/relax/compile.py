"""compile: a Relax module to a shared library for the target, with its static memory plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgec.artifacts import BuiltArtifact, RelaxModule
from edgec.errors import EdgecError, first_line
from edgec.relax.target import resolved_target, tvm_target
from edgec.targets import TargetProfile


def compile_model(model: RelaxModule, profile: TargetProfile, workdir: Path) -> BuiltArtifact:
    """Lower, schedule and build `model` for `profile`; write workdir/model.so."""
    import tvm

    target = tvm_target(profile)
    try:
        with target:
            lowered = _lowering(profile, target)(model.module)
        executable = tvm.compile(lowered, target=target, relax_pipeline=None)
    except Exception as e:
        raise EdgecError(
            f"TVM could not compile {model.onnx.source} for {profile.name}: {first_line(e)}"
        ) from None
    library = workdir / "model.so"
    fcompile = None if profile.capabilities.runs_on_host else _cross_compiler(profile)
    try:
        executable.export_library(str(library), fcompile=fcompile)
    except Exception as e:
        raise EdgecError(f"linking model.so with {profile.cxx} failed: {first_line(e)}") from None
    return BuiltArtifact(
        library, profile, resolved_target(profile), _planned_bytes(lowered), model.onnx
    )


def _lowering(profile: TargetProfile, target: Any) -> Any:
    """The Relax pass pipeline for the target's device kind."""
    from tvm import relax

    if profile.capabilities.device == "cuda":
        # The GPU pipeline applies dlight schedules; without thread bindings the build fails.
        return relax.get_default_pipeline(target)
    return relax.get_pipeline("default")


def _cross_compiler(profile: TargetProfile) -> Any:
    from tvm.support import cc

    return cc.cross_compiler(profile.cxx)


def _planned_bytes(lowered: Any) -> int:
    """Bytes of activation storage the VM allocates, after TVM's static memory planning."""
    from tvm import ir, relax

    total = 0

    def visit(expr: Any) -> None:
        nonlocal total
        if (
            isinstance(expr, relax.Call)
            and isinstance(expr.op, ir.Op)
            and expr.op.name == "relax.vm.alloc_storage"
            and isinstance(expr.args[0], relax.ShapeExpr)
        ):
            total += int(expr.args[0].values[0])

    for func in lowered.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return total
