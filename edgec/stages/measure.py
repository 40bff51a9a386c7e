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
from edgec.targets import TargetProfile

TOLERANCE = 1e-4  # max abs difference from ONNX Runtime's outputs


def runnable_here(profile: TargetProfile, emulate: bool) -> str | None:
    """Why the bundle cannot run on this machine, or None if it can."""
    if profile.capabilities.device != "cpu":
        device = profile.capabilities.device
        return f"{profile.name} bundles need a {device} device; none is on this machine"
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
