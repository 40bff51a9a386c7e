"""The tvm backend: import → (tune) → compile with TVM → a bundle with the native runner; run it
here (on the CPU, or on the GPU with `edgec-run --device cuda`) or under the target's
emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgec import reference, runtime, static_runtime
from edgec.artifacts import BuiltArtifact, Bundle, Measurement, RelaxModule, Where
from edgec.backends import Built, How, Model
from edgec.errors import CheckFailed, EdgecError
from edgec.gpu import find_gpu, gpu_compute_capability, runs_arch
from edgec.manifest import Manifest
from edgec.progress import StageLog
from edgec.stages.bundle import bundle
from edgec.stages.measure import check_inputs, checked, default_repeat
from edgec.targets import TargetProfile
from edgec.tuning import TunedAgainstUntuned, TuneOptions

FP16_TOLERANCE = 2e-2  # fp16 builds: on 99% of the outputs


def check(profile: TargetProfile, board: str | None, tuning: TuneOptions | None = None) -> None:
    if board is not None:
        raise EdgecError(
            f"--board links MCU firmware; {profile.name} bundles go to boards with edgec flash"
        )
    if tuning is not None:
        check_tuning(profile, tuning)


def check_tuning(profile: TargetProfile, options: TuneOptions) -> None:
    """GPU kernels are measured on a GPU: this machine's, or one behind an RPC tracker."""
    if profile.capabilities.device != "cuda" or options.trials == 0 or options.remote:
        return
    why = runnable_here(profile, emulate=False)
    if why is not None:
        raise EdgecError(
            f"tuning {profile.name} measures kernels on a GPU, but {why}; give --tracker "
            "HOST:PORT --key KEY to measure on a GPU whose rpc_server registered there"
        )


def preflight(model: object, profile: TargetProfile, board: str | None) -> None:
    """TVM targets have memory to spare for any model edgec can import: nothing to refuse."""


def build(model: Model, profile: TargetProfile, work: Path, log: StageLog) -> Built:
    """import → (tune) → compile → bundle."""
    from edgec.relax.compile import compile_model, tune_model, tuning_database
    from edgec.relax.import_onnx import import_onnx
    from edgec.relax.lower_int8 import import_qgraph
    from edgec.relax.mixed_precision import to_fp16

    with log.stage("import") as s:
        quantized = model.quantized
        relax_module = import_onnx(model.onnx) if quantized is None else import_qgraph(quantized)
        if model.fp16:
            relax_module = to_fp16(relax_module)
            s.note("fp16 weights and activations, fp32 accumulation")
    db, summary = None, None
    if model.tuning is not None:
        db = tuning_database(profile, model.tuning.database)
        if model.tuning.trials > 0:
            with log.stage("tune") as s:
                summary = tune_model(relax_module, profile, model.tuning, log.say)
                s.note(summary.note())
    if profile.capabilities.link == "static":  # compiled once per toolchain: minutes, then 0
        with log.stage("runtime") as s:
            libs = static_runtime.archives(profile)
            s.note(f"static TVM runtime for {profile.cxx}: {libs}")
    with log.stage("compile") as s:
        built = compile_model(relax_module, profile, work, tuning_db=db)
        parts = (str(built.tvm_target.get(k, "")) for k in ("kind", "mcpu", "arch"))
        target = " ".join(p for p in parts if p)
        if dot := built.schedules.get("int8_dot"):
            target += f"; {dot} int8 kernels on {profile.capabilities.int8_dot}"
        s.note(target)
    check = None
    if db is not None and built.schedules.get("tuned"):
        # tuning must never make a build slower: the untuned build is timed against it
        with log.stage("tune check") as s:
            built, check = _tuned_or_untuned(relax_module, built, work)
            s.note(check.note())
    with log.stage("bundle") as s:
        result, executable = _seal(model, built, work, check)
        s.note(f"{len(result.typed.files)} files")
        if executable is not None:
            s.note(f"one static executable, {executable.total_bytes / 1e6:.2f} MB")
    onnx = built.onnx
    return Built(
        result,
        reference="onnxruntime",
        target={
            "tvm_target": built.tvm_target,
            "isa": profile.capabilities.isa,
            "device": profile.capabilities.device,
        },
        model={
            "onnx_opset": onnx.opset,
            # a source stamped below opset 7, upgraded by onnx's version converter at load
            "upgraded_from_opset": onnx.upgraded_from,
            "folded_inputs": list(onnx.folded_inputs),
            "folded_shape_nodes": onnx.folded_shape_nodes,
        },
        memory={"planned_bytes": built.planned_bytes, "peak_rss_bytes": None},
        schedules=built.schedules,
        quantization=built.quantization,
        tuning=summary,
        tuning_check=check,
        binary=None if executable is None else executable.sizes(),
    )


def _tuned_or_untuned(
    module: RelaxModule, tuned: BuiltArtifact, work: Path
) -> tuple[BuiltArtifact, TunedAgainstUntuned]:
    """The faster of the tuned build and the same model built untuned, timed interleaved in one
    process on this host; the untuned library replaces the tuned one where it is kept."""
    from edgec.relax.compile import compile_model
    from edgec.relax.time_builds import ROUNDS, time_libraries

    profile = tuned.target
    why = _not_timed_here(profile)
    if why is not None:
        return tuned, TunedAgainstUntuned("tuned", None, None, why, 0.0)
    start = time.perf_counter()
    threads = profile.capabilities.cores
    with tempfile.TemporaryDirectory(prefix="edgec-untuned-", dir=work) as tmp:
        untuned = compile_model(module, profile, Path(tmp), tuning_db=None)
        inputs = reference.random_inputs(tuned.onnx.inputs)
        tuned_ms, untuned_ms = time_libraries([tuned.library, untuned.library], inputs, threads)
        how = f"wall p50, {threads} threads, {ROUNDS} interleaved rounds on this host"
        check = TunedAgainstUntuned.compared(tuned_ms, untuned_ms, how, time.perf_counter() - start)
        if check.kept == "tuned":
            return tuned, check
        os.replace(untuned.library, tuned.library)  # same name, same bundle directory
    return replace(untuned, library=tuned.library), check


def _not_timed_here(profile: TargetProfile) -> str | None:
    """Why the tuned and untuned builds for `profile` cannot be timed on this host."""
    caps = profile.capabilities
    if caps.device != "cpu" or not caps.runs_on_host or caps.link == "static":
        return f"{profile.name} builds do not run in a process on this host"
    return None


def seal(model: Model, built: BuiltArtifact, work: Path) -> Bundle:
    """The runner installed beside the library (an explicit step: it may build or download
    it into edgec's cache once), then the bundle sealed with its manifest."""
    return _seal(model, built, work)[0]


def _seal(
    model: Model, built: BuiltArtifact, work: Path, check: TunedAgainstUntuned | None = None
) -> tuple[Bundle, static_runtime.Executable | None]:
    """seal, and for a static target (one executable: runner, library and runtime linked
    together) where the executable's bytes go."""
    if built.target.capabilities.link == "static":
        executable = _link_static(built, work)
        manifest = replace(_manifest(built, [executable.path], check), library=None, static=True)
        files = [f for f in _files(model, built, [executable.path]) if f != built.library]
        return bundle(work, manifest, files), executable
    runner = _install_runner(built.target, work)
    return bundle(work, _manifest(built, runner, check), _files(model, built, runner)), None


def _link_static(built: BuiltArtifact, work: Path) -> static_runtime.Executable:
    """work/edgec-run: the model's objects (built.library, a tar edgec wrote), the runner and
    the runtime in one static executable; the tar is consumed."""
    with tempfile.TemporaryDirectory(prefix="edgec-objects-") as tmp:
        objects = static_runtime.model_objects(built.library, Path(tmp))
        executable = static_runtime.link(built.target, objects, work / runtime.RUNNER)
    built.library.unlink()
    return executable


def _install_runner(profile: TargetProfile, work: Path) -> list[Path]:
    """The native runner and the TVM runtime it loads, copied from edgec's cache (built or
    downloaded there once per target); GPU targets also get TVM's CUDA device API and
    libcudart (runtime.runtime_names), CPU targets the C API to embed the model
    (runtime.capi_files)."""
    shutil.copy2(runtime.runner(profile), work / runtime.RUNNER)
    libs = runtime.runtime_libs(profile)
    names = runtime.runtime_names(profile)
    copied = [libs / lib for lib in names]
    if profile.capabilities.device == "cpu":
        copied += runtime.capi_files(profile)
    for source in copied:
        shutil.copy2(source, work / source.name)
    return [work / runtime.RUNNER, *(work / source.name for source in copied)]


def _manifest(
    built: BuiltArtifact, runner: list[Path], check: TunedAgainstUntuned | None = None
) -> Manifest:
    return Manifest(
        target=built.target.name,
        model=built.onnx.source,
        library=built.library.name,
        reference=built.onnx.path.name,
        runner=runtime.RUNNER if runner else None,
        inputs=built.onnx.inputs,
        outputs=built.onnx.outputs,
        parity=_parity(built),
        files={},
        tvm_target=built.tvm_target,
        tuning=check,
    )


def _files(model: Model, built: BuiltArtifact, runner: list[Path]) -> list[Path]:
    """What the bundle holds: the library, the reference model (int8: the QDQ model, beside the
    float one it came from, and its calibration), the runner and its runtime."""
    return list(
        dict.fromkeys([built.library, built.onnx.path, model.onnx.path, *model.extras, *runner])
    )


ISLAND_STEPS = 4  # parity tolerance, in output steps, of an int8 build with float islands


def _parity(built: BuiltArtifact) -> dict[str, float | str]:
    """How close the bundle's outputs must be to ONNX Runtime on its reference model."""
    if built.quantization is None:
        # scaled by max(1, max |reference output|): float32 rounding grows with the magnitude
        return {"tolerance": reference.FLOAT_TOLERANCE, "share": 1.0, "scale": "reference"}
    if built.quantization["mode"] == "fp16":  # 11-bit mantissas, float32 accumulation
        return {"tolerance": FP16_TOLERANCE, "share": 0.99}
    # int8 against the same QDQ model in ONNX Runtime: within one output step (its scale) on
    # at least 99% of the outputs; ONNX Runtime requantizes in float, edgec in fixed point.
    # Float islands run TVM's float kernels, not ONNX Runtime's: where their last bits differ,
    # an int8 value they feed moves by a step, and the steps add up with depth (the example
    # transformer, 45 islands in 4 layers: 99.3% within 2 steps, all within 3.4)
    # Deep networks: ONNX Runtime's float32 requantization rounds a few values per million per
    # layer the other way at half steps, and those steps spread with depth; the quantize stage
    # measured how far the reference itself comes from edgec's exact arithmetic
    # (edgec.int8.agreement: MNASNet 0.5 at 224x224, 2 steps).
    steps = ISLAND_STEPS if built.quantization.get("float_islands") else 1
    steps = max(steps, int(built.quantization.get("reference_steps", 1)))
    return {"tolerance": built.quantization["output_scale"] * steps * 1.0001, "share": 0.99}


def unavailable(bundle: Bundle, emulate: bool) -> str | None:
    return runnable_here(bundle.typed.profile, emulate)


def runnable_here(profile: TargetProfile, emulate: bool) -> str | None:
    """Why the profile's bundles cannot run on this machine, or None if they can."""
    if profile.capabilities.device == "cuda":
        if not profile.capabilities.runs_on_host:  # e.g. aarch64 host code for a Jetson
            return f"{profile.name} bundles run on the board (qemu has no GPU); use edgec flash"
        gpu = find_gpu()
        if gpu is None:
            return (
                f"{profile.name} bundles need a cuda device; none found on this machine "
                "(nvidia-smi lists no GPU and there is no /dev/nvidia0)"
            )
        # TVM embeds SASS for the target's arch and no PTX (edgec.gpu.CUDA_ARCHS)
        arch = str(profile.tvm_target.get("arch", ""))
        have = gpu_compute_capability()
        if have is not None and arch != "host" and not runs_arch(arch, have):
            return (
                f"{profile.name} bundles hold {arch} code only; the GPU here ({gpu}) is "
                f"sm_{have[0]}{have[1]}, which cannot run it"
            )
        return None
    if profile.capabilities.runs_on_host:
        return None
    if profile.emulator is None:
        return f"{profile.name} bundles need the device itself (no emulator); use edgec flash"
    if not emulate:
        emulator = profile.emulator.command[0]
        return f"{profile.name} bundles run on the board; add --emulate to run under {emulator}"
    return None


def run(bundle: Bundle, how: How) -> Measurement:
    """Time the runner on the inputs, compare its outputs with ONNX Runtime's, and, on the
    host, time ONNX Runtime on the same input with the same threads."""
    manifest, profile = bundle.typed, bundle.typed.profile
    inputs = how.inputs or reference.random_inputs(manifest.inputs)
    repeat, warmup = how.repeat or default_repeat(profile), runtime.WARMUP
    check_inputs(list(manifest.inputs), inputs)
    if manifest.runner is None or (manifest.library is None and not manifest.static):
        raise EdgecError(f"{bundle.path} has no runner for {manifest.target}; rebuild it")
    device = profile.capabilities.device  # cuda: the runner drives the GPU, the CPU as host
    where: Where = (
        "device" if device != "cpu" else "host" if profile.capabilities.runs_on_host else "emulated"
    )
    prefix, env = [], dict(os.environ)
    if where == "emulated" and profile.emulator is not None:
        prefix = list(profile.emulator.command)
        env.update(profile.emulator.env)
    threads = profile.capabilities.cores if where == "host" else 1
    env["TVM_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="edgec-run-") as tmp:
        files = [str(Path(tmp) / f"input_{i}.npy") for i in range(len(inputs))]
        for file, array in zip(files, inputs, strict=True):
            np.save(file, array)
        # a static executable holds its library
        library = None if manifest.library is None else str(bundle.path / manifest.library)
        cmd = [
            *prefix,
            str(bundle.path / manifest.runner),
            *runtime.runner_arguments(library, files, tmp, repeat, warmup, device),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        except FileNotFoundError:
            raise EdgecError(f"{cmd[0]} is not installed; run scripts/setup.sh") from None
        if done.returncode != 0:
            errors = [e for e in done.stderr.splitlines() if e.strip() and "Scope" not in e]
            raise CheckFailed(
                f"the runner failed (exit {done.returncode}): {(errors or ['no output'])[-1]}"
            )
        result = runtime.runner_result(done.stdout, len(manifest.outputs))
        outputs = [
            np.load(Path(tmp) / name, allow_pickle=False) for name in runtime.output_files(manifest)
        ]
    baseline = None
    if where == "host":
        baseline = reference.latency(
            bundle.path / manifest.reference, inputs, threads, repeat, warmup
        )
    return checked(bundle, inputs, outputs, result, repeat, where, baseline)
