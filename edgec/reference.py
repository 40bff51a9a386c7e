"""ONNX Runtime as the reference: outputs to compare against, and a latency baseline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgec.artifacts import TensorSpec

# Float outputs against ONNX Runtime's (the export check, and float bundles, where it is scaled
# by max(1, max |ONNX Runtime output|): float32 rounding grows with the magnitude).
FLOAT_TOLERANCE = 1e-4


def session(path: Path | bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session with a fixed thread count, all graph optimizations on, of an
    ONNX file or a serialized model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run(path: Path, inputs: list[np.ndarray], threads: int = 1) -> list[np.ndarray]:
    """Outputs of the ONNX model on `inputs`."""
    sess = session(path, threads)
    feed = {i.name: x for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    return [np.asarray(o) for o in sess.run(None, feed)]


def output_specs(path: Path, inputs: list[TensorSpec]) -> list[TensorSpec]:
    """Output names, shapes and dtypes, read off one run on zeros (exact, even where ONNX's
    shape inference gives up)."""
    sess = session(path, 1)
    feed = {s.name: np.zeros(s.shape, dtype=s.dtype) for s in inputs}
    values = sess.run(None, feed)
    return [
        TensorSpec(o.name, tuple(int(d) for d in np.shape(v)), str(np.asarray(v).dtype))
        for o, v in zip(sess.get_outputs(), values, strict=True)
    ]


def latency(
    path: Path, inputs: list[np.ndarray], threads: int, repeat: int, warmup: int = 3
) -> dict[str, float]:
    """ONNX Runtime's latency percentiles (ms) on `inputs` with `threads` threads."""
    sess = session(path, threads)
    feed = {i.name: x for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    for _ in range(warmup):
        sess.run(None, feed)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        sess.run(None, feed)
        samples.append((time.perf_counter() - start) * 1e3)
    return percentiles(samples)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99 by nearest rank, plus mean and min: the same definition the runner uses."""
    ordered = sorted(samples_ms)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, int(np.ceil(p / 100 * len(ordered))) - 1))
        return ordered[index]

    return {
        "p50": rank(50),
        "p90": rank(90),
        "p99": rank(99),
        "mean": float(np.mean(ordered)),
        "min": ordered[0],
    }


def random_inputs(specs: tuple[TensorSpec, ...], seed: int = 0) -> list[np.ndarray]:
    """Seeded inputs: standard normal for floats, small non-negative values for integers."""
    rng = np.random.default_rng(seed)
    arrays = []
    for s in specs:
        if np.dtype(s.dtype).kind == "f":
            arrays.append(rng.standard_normal(s.shape).astype(s.dtype))
        else:
            arrays.append(rng.integers(0, 10, size=s.shape).astype(s.dtype))
    return arrays
