"""compile: a Relax module to a shared library for the target, with its static memory plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifacts import BuiltArtifact, RelaxModule
from edgec.errors import EdgecError, first_line
from edgec.relax import (
    clip_ops,
    concat_in_place,
    cpu_schedules,
    fold_weights,
    int8_dot,
    layout,
    lower_int8,
    pack_dense,
    pack_weights,
    runtime_check,
    signature,
    tiling,
    traverse,
    winograd,
)
from edgec.relax.target import resolved_target, tvm_target
from edgec.relax.tune import apply_database, database_dir, tune
from edgec.targets import TargetProfile
from edgec.tuning import TuneOptions, TuningSummary


@dataclass(frozen=True)
class Lowered:
    """A Relax module built for one target: the executable and how its kernels were made."""

    executable: Any
    scheduled: Any  # the module with every kernel's schedule, before VM lowering
    lowered: Any  # after memory planning and VM lowering
    tuned: int  # kernels whose schedule came from the tuning database
    fallbacks: dict[str, str]  # op, kernel or scope → why edgec's fast path stepped aside


def lower(module: Any, profile: TargetProfile, tuning_db: Path | None = None) -> Lowered:
    """Prepare, schedule and build a Relax module for `profile`.

    edgec's rewrites are speed tricks: each steps aside where it does not hold (an op stays in
    NCHW, a kernel keeps TVM's plain loop nest) and says so in `fallbacks`, so a model that TVM's
    own pipeline compiles never fails here. Only if that pipeline fails too is it an error.
    """
    target = tvm_target(profile)
    system_lib = profile.capabilities.link == "static"
    fallbacks: dict[str, str] = {}
    module = signature.with_signature(module)  # for the C API: sizes known before a run
    if profile.capabilities.device == "cuda":
        return _lower_gpu(module, target, tuning_db)
    try:
        with target:
            prepared = prepare(module, profile, fallbacks)
            if tuning_db is not None:
                # Tuned kernels come marked as scheduled, so the default rules skip them.
                prepared = apply_database(prepared, target, tuning_db)
            tuned = sum(_scheduled_kernels(prepared).values())
            scheduled = _schedule(profile)(prepared)
        executable, lowered = _build_stepping_aside(
            scheduled, prepared, target, fallbacks, system_lib
        )
        return Lowered(executable, scheduled, lowered, tuned, fallbacks)
    except Exception as e:
        reason = _failure(e)
    # Last safety net: TVM's plain pipeline, none of edgec's rewrites.
    try:
        executable = _compile(module, target, system_lib, pipeline="default")
    except Exception as e:
        raise EdgecError(
            f"TVM cannot compile this model for {profile.name}, with or without edgec's "
            f"rewrites: {_failure(e)}"
        ) from e
    fallbacks["whole model"] = f"TVM's plain pipeline (edgec's failed: {reason})"
    return Lowered(executable, module, module, 0, fallbacks)


def _lower_gpu(module: Any, target: Any, tuning_db: Path | None) -> Lowered:
    """TVM's CUDA pipeline, with the tuned kernels of `tuning_db` before dlight's GPU rules."""
    import tvm
    from tvm.relax.backend.cuda import pipeline as cuda

    with target:
        prepared = prepare_gpu(module)
        if tuning_db is not None:
            prepared = apply_database(prepared, target, tuning_db)
        tuned = sum(_scheduled_kernels(prepared).values())
        # every kernel needs thread bindings: dlight's rules give them to the untuned ones
        scheduled = _gpu_schedule()(prepared)
        lowered = tvm.transform.Sequential(
            cuda.dataflow_lower_passes(target) + cuda.finalize_passes(target)
        )(scheduled)
    return Lowered(_compile(lowered, target), scheduled, lowered, tuned, {})


def prepare_gpu(module: Any) -> Any:
    """TVM's CUDA pipeline up to fused TIR kernels, before any schedule: what tuning acts on.
    Call under the target (the sort and scan dispatch reads it)."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cuda import pipeline as cuda

    target = tvm.target.Target.current()
    return tvm.transform.Sequential(
        [
            *cuda.library_dispatch_passes(target),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )(module)


def _gpu_rules() -> list[Any]:
    """dlight's GPU rules, as TVM's CUDA pipeline applies them."""
    from tvm.s_tir import dlight as dl

    return [
        dl.gpu.Matmul(),
        dl.gpu.GEMV(),
        dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(),
        dl.gpu.Fallback(),
    ]


def _gpu_schedule() -> Any:
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(*_gpu_rules())


def compile_model(
    model: RelaxModule, profile: TargetProfile, workdir: Path, tuning_db: Path | None = None
) -> BuiltArtifact:
    """Lower, schedule and build `model` for `profile`; write workdir/model.so.

    Kernels with a record in `tuning_db` get their tuned schedule; edgec's rules do the rest.
    """
    built = lower(model.module, profile, tuning_db)
    runtime_check.check_runtime(built.executable, profile, model.onnx)  # it must load where it runs
    # a static executable's model is a tar of objects, linked into it when the bundle is sealed
    static = profile.capabilities.link == "static"
    library = workdir / ("model.tar" if static else "model.so")
    fcompile = None if profile.capabilities.runs_on_host or static else _cross_compiler(profile)
    try:
        built.executable.export_library(str(library), fcompile=fcompile)
    except Exception as e:
        raise EdgecError(
            f"linking {library.name} with {profile.cxx} failed: {first_line(e)}"
        ) from e
    return BuiltArtifact(
        library,
        profile,
        resolved_target(profile),
        _planned_bytes(built.lowered),
        model.onnx,
        {**_kernel_counts(built.scheduled, built.tuned), "fallbacks": built.fallbacks},
        model.quantization,
    )


def tune_model(
    model: RelaxModule,
    profile: TargetProfile,
    options: TuneOptions,
    progress: Callable[[str], None] | None = None,
) -> TuningSummary:
    """Tune `model`'s kernels for `profile` into its tuning database (see edgec.relax.tune).
    The caller has asked the backend whether tuning can measure here (backends.tvm.check)."""
    rules = _rules(profile)
    if profile.capabilities.device == "cuda":
        with tvm_target(profile):
            prepared = prepare_gpu(model.module)  # the kernels compile_model builds
        rules = _gpu_rules()
    else:
        with tvm_target(profile):
            prepared = prepare(model.module, profile, {})  # the kernels compile_model builds
    return tune(
        prepared,
        profile,
        trials=options.trials,
        trials_per_task=options.trials_per_task,
        db_dir=tuning_database(profile, options.database),
        remote=options.remote,
        progress=progress,
        # Measured first, so tuning only replaces edgec's rules where it beats them.
        baseline_rules=rules,
        searchable=winograd.searchable,
    )


def tuning_database(profile: TargetProfile, override: Path | None) -> Path:
    """The profile's tuning database directory (`--tuning-db` replaces it)."""
    return database_dir(profile.name, resolved_target(profile), override)


def prepare(mod: Any, profile: TargetProfile, fallbacks: dict[str, str]) -> Any:
    """Graph-level passes up to fused TIR kernels: the unit that schedules and tuning act on.

    What had to step aside is added to `fallbacks`."""
    import tvm
    from tvm import relax

    mod = relax.transform.DecomposeOpsForInference()(mod)  # batch norm → scale and shift
    mod = relax.transform.CanonicalizeBindings()(mod)
    try:  # ReLU6 as ops that layout conversion sees through (edgec.relax.clip_ops)
        mod = clip_ops.clip_kernels_as_ops(relax.transform.FoldConstant()(mod))
    except Exception as e:
        fallbacks["clip as ops"] = f"left as the importer's kernels: {first_line(e)}"
    # NHWC activations and HWIO weights put output channels innermost and contiguous: the axis
    # the contraction rule vectorizes. Ops it does not hold for stay NCHW (edgec.relax.layout).
    mod = layout.to_channels_last(mod, fallbacks)
    # Weight transposes and bias reshapes in numpy: FoldConstant builds each with LLVM (seconds).
    mod = fold_weights.fold_weight_layouts(mod)
    # erf/exp/tanh as vectorizable polynomials instead of scalar libm calls (GELU's erf was 70%
    # of a transformer FFN); error stays far below the 1e-4 parity gate.
    mod = relax.transform.FastMathTransform()(mod)
    mod = relax.transform.FoldConstant()(mod)  # the weight transposes: constants to pack
    if profile.capabilities.isa == "aarch64":  # NEON has no 64-bit multiply, min or max
        try:
            mod = lower_int8.requantize_in_int32(mod)
        except Exception as e:
            fallbacks["int8 requantization in int32"] = f"left in int64: {first_line(e)}"
        try:
            mod = lower_int8.adds_in_int32(mod)
        except Exception as e:
            fallbacks["int8 residual adds in int32"] = f"left in int64: {first_line(e)}"
    try:  # concatenations kept out of fusion, to be written in place below
        mod = concat_in_place.mark_concats(mod, fallbacks)
    except Exception as e:
        fallbacks["concat in place"] = f"concatenations stay copies: {first_line(e)}"
    mod = tvm.transform.Sequential(
        [
            # int8 convolutions become dot-product kernels where the CPU has the instruction;
            # float 3x3 stride-1 ones are Winograd F(2,3) where the profile says so; other
            # float ones, and float dense layers, read weights packed in the order of their
            # register tiles
            relax.transform.LegalizeOps(
                winograd.legalize_map(
                    profile,
                    pack_dense.legalize_map(
                        profile,
                        pack_weights.legalize_map(
                            profile, int8_dot.legalize_map(profile, fallbacks)
                        ),
                    ),
                )
            ),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ]
    )(mod)
    # each concatenation's inputs written into its result by their own kernels: no copy
    try:
        return concat_in_place.write_in_place(mod, fallbacks)
    except Exception as e:
        fallbacks["concat in place"] = f"concatenations stay copies: {first_line(e)}"
        return mod


def _build_stepping_aside(
    scheduled: Any, prepared: Any, target: Any, fallbacks: dict[str, str], system_lib: bool
) -> tuple[Any, Any]:
    """VM-lower and build `scheduled`; a kernel whose schedule does not build gets its plain
    loop nest from `prepared` back (and a line in `fallbacks`) and the build is tried again."""
    from tvm import relax, tirx

    try:
        # under the target: DispatchSortScan (cumsum, sort, topk) reads it from the context
        with target:
            lowered = relax.get_pipeline("default")(scheduled)  # memory plan, VM lowering
        return _compile(lowered, target, system_lib), lowered
    except Exception as e:
        error = e
    broken = {
        gv: reason
        for gv, func in scheduled.functions.items()
        if isinstance(func, tirx.PrimFunc)
        and (func.attrs or {}).get("tirx.is_scheduled")
        and (reason := _kernel_failure(func, target)) is not None
    }
    if not broken:
        raise error
    plain = scheduled
    for gv, reason in broken.items():
        plain = _with_function(plain, gv, prepared[gv.name_hint])
        fallbacks[f"kernel {gv.name_hint}{_signature(prepared[gv.name_hint])}"] = (
            f"plain loop nest, edgec's schedule failed: {reason}"
        )
    with target:
        lowered = relax.get_pipeline("default")(plain)
    return _compile(lowered, target, system_lib), lowered


def _compile(mod: Any, target: Any, system_lib: bool = False, pipeline: str | None = None) -> Any:
    """tvm.compile, or for a static executable relax.build with system_lib (tvm.compile has no
    such flag in 0.27): kernels and bytecode that register themselves when linked in."""
    from tvm import relax

    return relax.build(mod, target=target, relax_pipeline=pipeline, system_lib=system_lib)


def _kernel_failure(func: Any, target: Any) -> str | None:
    """Why one scheduled kernel does not build on its own, or None if it does."""
    import tvm

    try:
        tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    except Exception as e:
        return first_line(e)
    return None


def _with_function(mod: Any, gv: Any, func: Any) -> Any:
    mod = mod.clone()
    mod.update_func(gv, func)
    return mod


def _signature(func: Any) -> str:
    """A kernel's buffer shapes and dtypes, e.g. (1x56x56x64 float32, ...)."""
    shapes = ["x".join(str(d) for d in buf.shape) + f" {buf.dtype}" for buf in func.params]
    return f" ({', '.join(shapes)})" if shapes else ""


def _failure(e: BaseException) -> str:
    """A TVM error's cause in one line, with the Relax function or kernel it names."""
    text = str(e).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    checks = [line for line in lines if "Check failed" in line or "Error" in line]
    return (checks[-1] if checks else first_line(e))[:400]


def _schedule(profile: TargetProfile) -> Any:
    """edgec's default CPU rules for every kernel not scheduled yet."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(*_rules(profile))


def _rules(profile: TargetProfile) -> list[Any]:
    caps = profile.capabilities
    lane_fma = caps.isa == "aarch64"  # every AArch64 core has NEON's by-element FMLA
    rules = cpu_schedules.rules(caps.vector_bits, caps.int8_dot, caps.vector_registers, lane_fma)
    # before the generic rules, which would take the Winograd kernels too
    lanes, accumulators, most = tiling.budget(caps.vector_bits, caps.vector_registers)
    gemm = winograd.gemm_rule(lanes, accumulators, most, lane_fma)
    fused = winograd.fused_rule(lanes, accumulators, most, lane_fma)
    return [fused, gemm, *winograd.transform_rules(lanes), *rules]


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
        # per inference: a kernel can serve several layers
        "kernel_calls": len(traverse.calls(mod, "relax.call_tir", "relax.call_tir_inplace")),
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
    from tvm import relax

    return sum(
        int(call.args[0].values[0])
        for call in traverse.calls(lowered, "relax.vm.alloc_storage")
        if isinstance(call.args[0], relax.ShapeExpr)
    )
