"""measure: run a bundle's runner (natively or emulated), check it against ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgec import reference
from edgec.artifacts import Bundle, Measurement, TensorSpec, Where
from edgec.errors import CheckFailed, EdgecError
from edgec.gpu import find_gpu, gpu_compute_capability, runs_arch
from edgec.manifest import Manifest
from edgec.targets import TargetProfile

TOLERANCE = 1e-4  # max abs difference from ONNX Runtime's outputs


def runnable_here(profile: TargetProfile, emulate: bool) -> str | None:
    """Why the bundle cannot run on this machine, or None if it can."""
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
    if profile.capabilities.backend == "c":  # firmware: qemu-system-arm on an emulated board
        return None if emulate else f"{profile.name} firmware runs on the board: add --emulate"
    if profile.emulator is None:
        return f"{profile.name} bundles need the device itself (no emulator); use edgec flash"
    if not emulate:
        emulator = profile.emulator.command[0]
        return f"{profile.name} bundles run on the board; add --emulate to run under {emulator}"
    return None


def measure(
    bundle: Bundle,
    profile: TargetProfile,
    inputs: list[np.ndarray],
    *,
    repeat: int,
    warmup: int = 3,
    emulate: bool = False,
) -> Measurement:
    """Time the runner on `inputs`, compare its outputs with ONNX Runtime's, and, on the host,
    time ONNX Runtime on the same input with the same threads."""
    reason = runnable_here(profile, emulate)
    if reason:
        raise EdgecError(reason)
    manifest = bundle.typed
    _check_inputs(list(manifest.inputs), inputs)
    if manifest.runner is None or manifest.library is None:
        raise EdgecError(f"{bundle.path} has no runner for {manifest.target}; rebuild it")
    on_gpu = profile.capabilities.device == "cuda"
    where: Where = (
        "device" if on_gpu else "host" if profile.capabilities.runs_on_host else "emulated"
    )
    prefix, env = [], dict(os.environ)
    if where == "emulated" and profile.emulator is not None:
        prefix = list(profile.emulator.command)
        env.update(profile.emulator.env)
    threads = profile.capabilities.cores if where == "host" else 1
    env["TVM_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="edgec-run-") as tmp:
        files = []
        for i, array in enumerate(inputs):
            files += ["--input", str(Path(tmp) / f"input_{i}.npy")]
            np.save(files[-1], array)
        cmd = [
            *prefix,
            str(bundle.path / manifest.runner),
            str(bundle.path / manifest.library),
            *files,
            "--output-dir",
            tmp,
            "--repeat",
            str(repeat),
            "--warmup",
            str(warmup),
            *runner_device(profile),
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
        result = runner_result(done.stdout, len(manifest.outputs))
        outputs = [np.load(Path(tmp) / name, allow_pickle=False) for name in output_files(manifest)]
    baseline = None
    if where == "host":
        baseline = reference.latency(
            bundle.path / manifest.reference, inputs, threads, repeat, warmup
        )
    return checked(bundle, inputs, outputs, result, repeat, where, baseline)


def runner_device(profile: TargetProfile) -> list[str]:
    """The runner's --device option for the profile (none for the CPU, its default)."""
    return ["--device", "cuda"] if profile.capabilities.device == "cuda" else []


def output_files(manifest: Manifest) -> list[str]:
    """The files the runner writes, one per output: edgec reads these names and no others."""
    return [f"output_{i}.npy" for i in range(len(manifest.outputs))]


def runner_result(stdout: str, outputs: int) -> dict[str, Any]:
    """The runner's last line (JSON), checked: it names exactly the output files edgec
    expects, so a runner or board cannot make edgec read or write a path of its choosing."""
    try:
        result = json.loads((stdout.strip().splitlines() or [""])[-1])
        files = [o["file"] for o in result["outputs"]]
        latency = {k: float(result["latency_ms"][k]) for k in ("p50", "p90", "p99", "mean", "min")}
        int(result["peak_rss_bytes"])
        if "device" in result:  # GPU runs
            int(result["device"]["memory_bytes"])
    except (ValueError, KeyError, TypeError):
        raise EdgecError(
            "the runner's result line is not what edgec-run prints; rebuild the bundle"
        ) from None
    expected = [f"output_{i}.npy" for i in range(outputs)]
    if files != expected:
        shown = ", ".join(map(repr, files))[:120]
        raise EdgecError(
            f"the runner named outputs {shown}; edgec reads only {', '.join(expected)}: "
            "rebuild the bundle"
        )
    return {**result, "latency_ms": latency}


def checked(
    bundle: Bundle,
    inputs: list[np.ndarray],
    outputs: list[np.ndarray],
    result: dict[str, Any],
    repeat: int,
    where: Where,
    baseline: dict[str, float] | None,
) -> Measurement:
    """A runner's result (its JSON line and outputs) checked against the bundle's reference
    on the same inputs, with the tolerance its manifest sets."""
    expected = reference.run(bundle.path / bundle.typed.reference, inputs)
    if len(outputs) != len(expected):
        raise CheckFailed(f"the runner gave {len(outputs)} outputs, ONNX Runtime {len(expected)}")
    parity = bundle.typed.parity or {"tolerance": TOLERANCE, "share": 1.0}
    tolerance = float(parity["tolerance"])
    if parity.get("scale") == "reference":  # float: relative to the outputs' magnitude
        largest = max((float(np.max(np.abs(e), initial=0.0)) for e in expected), default=0.0)
        tolerance *= max(1.0, largest)
    errors = np.concatenate(
        [np.abs(o.astype(np.float64) - e).ravel() for o, e in zip(outputs, expected, strict=True)]
    )
    return Measurement(
        where=where,
        latency_ms={
            k: float(result["latency_ms"][k]) for k in ("p50", "p90", "p99", "mean", "min")
        },
        repeat=repeat,
        peak_rss_bytes=int(result["peak_rss_bytes"]),
        max_abs_diff=float(errors.max(initial=0.0)),
        tolerance=tolerance,
        baseline_ms=baseline,
        within_share=float(np.mean(errors <= tolerance)) if errors.size else 1.0,
        required_share=float(parity["share"]),
        # GPU runs: -1 where the device API could not say how much memory is free
        device_memory_bytes=_device_bytes(result),
    )


def _device_bytes(result: dict[str, Any]) -> int | None:
    used = int(result["device"]["memory_bytes"]) if "device" in result else -1
    return used if used >= 0 else None


def _check_inputs(specs: list[TensorSpec], inputs: list[np.ndarray]) -> None:
    if len(specs) != len(inputs):
        raise EdgecError(f"the model takes {len(specs)} input(s), {len(inputs)} given")
    for spec, array in zip(specs, inputs, strict=True):
        if tuple(array.shape) != spec.shape or str(array.dtype) != spec.dtype:
            raise EdgecError(
                f"input {spec.name!r} must be {spec.dtype} of shape {list(spec.shape)}, "
                f"got {array.dtype} of shape {list(array.shape)}"
            )
