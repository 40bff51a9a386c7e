"""Activation ranges for int8: run the float model on calibration data in ONNX Runtime and pick,
per tensor, the magnitude that maps to 127 (symmetric quantization).

Two passes over the data: the first finds each tensor's largest magnitude, the second fills a
histogram of magnitudes over [0, max]. The methods then read the histogram:
- minmax: the largest magnitude seen (no clipping; one outlier stretches the scale);
- percentile: the magnitude below which `percentile` % of the values lie;
- entropy: the threshold minimising KL(P ‖ Q) between the clipped distribution P and its
  128-level quantized Q (the TensorRT method).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgec.errors import EdgecError, known

METHODS = ("minmax", "percentile", "entropy")
BINS = 2048
LEVELS = 128  # magnitudes 0..127 of symmetric int8


def ranges(
    onnx_path: Path, samples: Iterable[np.ndarray], method: str, percentile: float = 99.99
) -> dict[str, float]:
    """Each float tensor of the model (its input and every node output) → its range."""
    if method not in METHODS:
        raise known("calibration method", method, METHODS)
    batches = list(samples)
    if not batches:
        raise EdgecError("calibration needs at least one sample")
    session, names = _probe(onnx_path)
    input_name = session.get_inputs()[0].name

    def outputs() -> Iterable[dict[str, np.ndarray]]:
        for x in batches:
            values = session.run(names, {input_name: x})
            yield {input_name: x, **dict(zip(names, values, strict=True))}

    peaks: dict[str, float] = {}
    for values in outputs():
        for name, v in values.items():
            if v.dtype == np.float32:
                peaks[name] = max(peaks.get(name, 0.0), float(np.abs(v).max(initial=0.0)))
    if method == "minmax":
        return {name: peak for name, peak in peaks.items()}
    histograms = {name: np.zeros(BINS, np.int64) for name in peaks}
    for values in outputs():
        for name, hist in histograms.items():
            top = peaks[name] or 1.0
            # exact zeros (ReLU's off half) say nothing about the scale the rest needs
            magnitudes = np.abs(values[name][values[name] != 0])
            hist += np.histogram(magnitudes, bins=BINS, range=(0.0, top))[0]
    pick = _percentile if method == "percentile" else _entropy
    return {
        name: (pick(histograms[name], percentile) * peaks[name] / BINS if peaks[name] else 0.0)
        for name in peaks
    }


def _percentile(hist: np.ndarray, percentile: float) -> float:
    """The bin edge (in bins) below which `percentile` % of the counts lie."""
    cdf = np.cumsum(hist) / max(int(hist.sum()), 1)
    return float(np.searchsorted(cdf, percentile / 100.0) + 1)


def _entropy(hist: np.ndarray, _: float) -> float:
    """The clipping threshold (in bins) with the least KL divergence after quantization."""
    hist = hist.astype(np.float64)
    best, best_kl = len(hist), np.inf
    for edge in range(LEVELS, len(hist) + 1, 8):
        p = hist[:edge].copy()
        p[-1] += hist[edge:].sum()  # clipped values land in the last bin
        chunks = np.array_split(hist[:edge], LEVELS)
        q = np.concatenate(
            [np.where(c > 0, c.sum() / max(np.count_nonzero(c), 1), 0.0) for c in chunks]
        )
        mask = p > 0
        if not mask.any():
            continue
        pn, qn = p / p.sum(), q / max(q.sum(), 1e-30)
        with np.errstate(divide="ignore"):
            kl = float(np.sum(pn[mask] * np.log(pn[mask] / np.maximum(qn[mask], 1e-12))))
        if kl < best_kl:
            best, best_kl = edge, kl
    return float(best)


def _probe(path: Path) -> tuple[object, list[str]]:
    """An ONNX Runtime session that returns every node output of the model."""
    import onnx

    from edgec.reference import session

    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    existing = {o.name for o in model.graph.output}
    infos = {v.name: v for v in inferred.graph.value_info}
    names = [o.name for o in model.graph.output]
    for node in model.graph.node:
        for name in node.output:
            if name in infos and name not in existing:
                model.graph.output.append(infos[name])
                names.append(name)
    probe = path.with_name(f".{path.stem}.probe.onnx")
    onnx.save(model, str(probe))
    try:
        return session(probe, 1), names
    finally:
        probe.unlink()
