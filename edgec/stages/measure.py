"""measure: run a bundle's runner (natively or emulated), check it against ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgec import reference
from edgec.artifacts import Bundle, Measurement, TensorSpec, Where
from edgec.errors import CheckFailed, EdgecError
from edgec.targets import TargetProfile

TOLERANCE = 1e-4  # max abs difference from ONNX Runtime's outputs


def _nvidia_smi(*args: str) -> list[str]:
    """nvidia-smi's output lines, or [] where it is missing, fails or hangs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return []
    return done.stdout.splitlines() if done.returncode == 0 else []


def find_gpu() -> str | None:
    """This machine's first NVIDIA GPU as nvidia-smi names it (or its device file), or None."""
    gpus = [line for line in _nvidia_smi("-L") if line.startswith("GPU ")]
    if gpus:
        return gpus[0].split(" (UUID")[0]
    return "/dev/nvidia0" if Path("/dev/nvidia0").exists() else None


def gpu_compute_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability (9.0 for an H100/H200), where nvidia-smi says it."""
    lines = _nvidia_smi("--query-gpu=compute_cap", "--format=csv,noheader")
    major, _, minor = (lines[0].strip() if lines else "").partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def runnable_here(profile: TargetProfile, emulate: bool) -> str | None:
    """Why the bundle cannot run on this machine, or None if it can."""
    if profile.capabilities.device == "cuda":
        gpu = find_gpu()
        if gpu is None:
            return (
                f"{profile.name} bundles need a cuda device; none found on this machine "
                "(nvidia-smi lists no GPU and there is no /dev/nvidia0)"
            )
        # TVM embeds SASS for the target's arch and no PTX: an sm_XY binary runs only on
        # compute capability X.Y up to X.9 (same major), never on a newer major.
        arch = str(profile.tvm_target.get("arch", ""))
        have = gpu_compute_capability()
        if have is not None and arch[3:].isdigit() and len(arch) == 5:
            want = (int(arch[3]), int(arch[4]))
            if have[0] != want[0] or have[1] < want[1]:
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
    specs = [TensorSpec.from_json(s) for s in bundle.manifest["inputs"]]
    _check_inputs(specs, inputs)
    if profile.capabilities.device == "cuda":
        from edgec.relax.run_gpu import run_on_gpu

        library = bundle.path / bundle.manifest["library"]
        outputs, result = run_on_gpu(library, inputs, repeat, warmup)
        return checked(bundle, inputs, outputs, result, repeat, "device", None)
    where: Where = "host" if profile.capabilities.runs_on_host else "emulated"
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
            str(bundle.path / bundle.manifest["runner"]),
            str(bundle.path / bundle.manifest["library"]),
            *files,
            "--output-dir",
            tmp,
            "--repeat",
            str(repeat),
            "--warmup",
            str(warmup),
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
        result = json.loads(done.stdout.strip().splitlines()[-1])
        outputs = [np.load(Path(tmp) / o["file"]) for o in result["outputs"]]
    baseline = None
    if where == "host":
        baseline = reference.latency(
            bundle.path / bundle.manifest["reference"], inputs, threads, repeat, warmup
        )
    return checked(bundle, inputs, outputs, result, repeat, where, baseline)


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
    expected = reference.run(bundle.path / bundle.manifest["reference"], inputs)
    if len(outputs) != len(expected):
        raise CheckFailed(f"the runner gave {len(outputs)} outputs, ONNX Runtime {len(expected)}")
    parity = bundle.manifest.get("parity", {"tolerance": TOLERANCE, "share": 1.0})
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
        tolerance=float(parity["tolerance"]),
        baseline_ms=baseline,
        within_share=float(np.mean(errors <= parity["tolerance"])) if errors.size else 1.0,
        required_share=float(parity["share"]),
    )


def _check_inputs(specs: list[TensorSpec], inputs: list[np.ndarray]) -> None:
    if len(specs) != len(inputs):
        raise EdgecError(f"the model takes {len(specs)} input(s), {len(inputs)} given")
    for spec, array in zip(specs, inputs, strict=True):
        if tuple(array.shape) != spec.shape or str(array.dtype) != spec.dtype:
            raise EdgecError(
                f"input {spec.name!r} must be {spec.dtype} of shape {list(spec.shape)}, "
                f"got {array.dtype} of shape {list(array.shape)}"
            )
