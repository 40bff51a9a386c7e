"""compile: a Relax module to a shared library for the target, with its static memory plan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgec.artifacts import BuiltArtifact, RelaxModule
from edgec.errors import EdgecError, first_line
from edgec.relax import cpu_schedules, int8_dot, runtime_check
from edgec.relax.target import resolved_target, tvm_target
from edgec.relax.tune import TuneOptions, TuningSummary, apply_database, database_dir, tune
from edgec.targets import TargetProfile


def compile_model(
    model: RelaxModule, profile: TargetProfile, workdir: Path, tuning_db: Path | None = None
) -> BuiltArtifact:
    """Lower, schedule and build `model` for `profile`; write workdir/model.so.

    Kernels with a record in `tuning_db` get their tuned schedule; edgec's rules do the rest.
    """
    import tvm
    from tvm import relax

    target = tvm_target(profile)
    try:
        with target:
            if profile.capabilities.device == "cuda":
                # The GPU pipeline applies dlight schedules; without thread bindings it fails.
                scheduled = relax.get_default_pipeline(target)(model.module)
                lowered = scheduled
                tuned = 0
            else:
                prepared = _prepare(profile)(model.module)
                if tuning_db is not None:
                    # Tuned kernels come marked as scheduled, so the default rules skip them.
                    prepared = apply_database(prepared, target, tuning_db)
                tuned = sum(_scheduled_kernels(prepared).values())
                scheduled = _schedule(profile)(prepared)
                lowered = relax.get_pipeline("default")(scheduled)  # memory plan, VM lowering
        executable = tvm.compile(lowered, target=target, relax_pipeline=None)
    except Exception as e:
        raise EdgecError(
            f"TVM could not compile {model.onnx.source} for {profile.name}: {first_line(e)}"
        ) from None
    runtime_check.check_runtime(executable, profile, model.onnx)  # it must load where it runs
    library = workdir / "model.so"
    fcompile = None if profile.capabilities.runs_on_host else _cross_compiler(profile)
    try:
        executable.export_library(str(library), fcompile=fcompile)
    except Exception as e:
        raise EdgecError(f"linking model.so with {profile.cxx} failed: {first_line(e)}") from None
    return BuiltArtifact(
        library,
        profile,
        resolved_target(profile),
        _planned_bytes(lowered),
        model.onnx,
        _kernel_counts(scheduled, tuned),
        model.quantization,
    )


def tune_model(
    model: RelaxModule,
    profile: TargetProfile,
    options: TuneOptions,
    progress: Callable[[str], None] | None = None,
) -> TuningSummary:
    """Tune `model`'s kernels for `profile` into its tuning database (see edgec.relax.tune)."""
    if profile.capabilities.device != "cpu":
        raise EdgecError(f"tuning for {profile.capabilities.device} targets is not supported yet")
    with tvm_target(profile):
        prepared = _prepare(profile)(model.module)  # the kernels compile_model builds, unscheduled
    return tune(
        prepared,
        profile,
        trials=options.trials,
        trials_per_task=options.trials_per_task,
        db_dir=tuning_database(profile, options.database),
        remote=options.remote,
        progress=progress,
        # Measured first, so tuning only replaces edgec's rules where it beats them.
        baseline_rules=_rules(profile),
    )


def tuning_database(profile: TargetProfile, override: Path | None) -> Path:
    """The profile's tuning database directory (`--tuning-db` replaces it)."""
    return database_dir(profile.name, resolved_target(profile), override)


def _prepare(profile: TargetProfile) -> Any:
    """Graph-level passes up to fused TIR kernels: the unit that schedules and tuning act on."""
    import tvm
    from tvm import relax

    return tvm.transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),  # batch norm → scale and shift
            relax.transform.CanonicalizeBindings(),
            # NHWC activations and HWIO weights put output channels innermost and contiguous:
            # the axis the contraction rule vectorizes. Weight transposes fold into constants.
            relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
            # erf/exp/tanh as vectorizable polynomials instead of scalar libm calls (GELU's erf
            # was 70% of a transformer FFN); error stays far below the 1e-4 parity gate.
            relax.transform.FastMathTransform(),
            relax.transform.FoldConstant(),  # the weight transposes: constants to pack
            # int8 convolutions become dot-product kernels where the CPU has the instruction
            relax.transform.LegalizeOps(int8_dot.legalize_map(profile)),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )


def _schedule(profile: TargetProfile) -> Any:
    """edgec's default CPU rules for every kernel not scheduled yet."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(*_rules(profile))


def _rules(profile: TargetProfile) -> list[Any]:
    caps = profile.capabilities
    return cpu_schedules.rules(caps.vector_bits, caps.int8_dot)


def _scheduled_kernels(mod: Any) -> dict[str, bool]:
    """Every kernel of `mod`, and whether it carries a schedule."""
    from tvm import tirx

    return {
        gv.name_hint: bool(f.attrs and f.attrs.get("tirx.is_scheduled"))
        for gv, f in mod.functions.items()
        if isinstance(f, tirx.PrimFunc)
    }


def _kernel_counts(mod: Any, tuned: int) -> dict[str, Any]:
    """How many kernels were tuned, scheduled by edgec's rules, or left as naive loop nests, and
    how many run on the int8 dot-product instruction."""
    from tvm import tirx

    kernels = _scheduled_kernels(mod)
    return {
        "kernels": len(kernels),
        "tuned": tuned,
        "int8_dot": sum(
            int8_dot.tensorized(f) for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)
        ),
        "default_rules": sum(kernels.values()) - tuned,
        "unscheduled": sorted(name for name, done in kernels.items() if not done),
    }


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
