"""measure: run a bundle with its backend, and check what it gave against its reference."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgec import reference
from edgec.artifacts import Bundle, Measurement, TensorSpec, Where
from edgec.errors import CheckFailed, EdgecError
from edgec.targets import TargetProfile

if TYPE_CHECKING:
    from edgec.backends import How


def default_repeat(profile: TargetProfile) -> int:
    """Timed runs when none are asked for: many natively, a few under an emulator."""
    return 50 if profile.capabilities.runs_on_host else 5


def measure(bundle: Bundle, how: How) -> Measurement:
    """Run `bundle` with the backend that built it; refused in one line where it cannot run."""
    from edgec.backends import backend

    chosen = backend(bundle.typed.profile)
    reason = chosen.unavailable(bundle, how.emulate)
    if reason:
        raise EdgecError(reason)
    return chosen.run(bundle, how)


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
    parity = bundle.typed.parity or {"tolerance": reference.FLOAT_TOLERANCE, "share": 1.0}
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
    """The device memory a GPU run held; None for CPU runs, or where the device API could not
    say how much memory is free (-1)."""
    used = int(result["device"]["memory_bytes"]) if "device" in result else -1
    return used if used >= 0 else None


def check_inputs(specs: list[TensorSpec], inputs: list[np.ndarray]) -> None:
    if len(specs) != len(inputs):
        raise EdgecError(f"the model takes {len(specs)} input(s), {len(inputs)} given")
    for spec, array in zip(specs, inputs, strict=True):
        if tuple(array.shape) != spec.shape or str(array.dtype) != spec.dtype:
            raise EdgecError(
                f"input {spec.name!r} must be {spec.dtype} of shape {list(spec.shape)}, "
                f"got {array.dtype} of shape {list(array.shape)}"
            )
