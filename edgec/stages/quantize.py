"""quantize: a float ONNX model and calibration data to an int8 QGraph (edgec.int8), checked
layer by layer, plus the same model as ONNX QDQ for ONNX Runtime to check against.

Weights are int8, symmetric, one scale per output channel; activations are int8, symmetric, one
scale per tensor, from edgec.calibrate. A ReLU or clip after a conv, dense or add is fused into
its requantization. Layers named in `float_layers`, or whose own quantization moves the model's
output by more than `sensitivity` (relative RMS error on the calibration data, measured with
only that layer in int8), stay in float: mixed precision, listed in the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgec import calibrate, int8
from edgec.artifacts import OnnxModel
from edgec.errors import EdgecError, known
from edgec.int8 import QGraph, QuantizedModel, from_onnx
from edgec.int8.agreement import reference_steps
from edgec.int8.ops import COMPUTE_OPS
from edgec.int8.qdq import to_qdq
from edgec.reference import random_inputs
from edgec.sensitivity import layer_errors

MODES = ("int8",)  # no quantization is no QuantizeConfig
# calibration samples on which ONNX Runtime's QDQ run is compared with edgec's int8 arithmetic
# (edgec.int8.agreement), beside the measure stage's default input
REFERENCE_SAMPLES = 2
SENSITIVITY_SAMPLES = 32  # enough to rank layers; each layer costs a run downstream of it on them


@dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize; validated on construction."""

    mode: str = "int8"
    method: str = "percentile"
    samples: int = 256
    percentile: float = 99.99
    sensitivity: float | None = 0.05  # None: every supported layer goes int8
    float_layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise known("quantization", self.mode, MODES)
        if self.method not in calibrate.METHODS:
            raise known("calibration method", self.method, calibrate.METHODS)
        if self.samples < 1:
            raise EdgecError(f"calibration samples {self.samples} must be at least 1")
        if not 50.0 < self.percentile <= 100.0:
            raise EdgecError(f"calibration percentile {self.percentile} is outside (50, 100]")


def quantize(
    model: OnnxModel,
    calibration: np.ndarray,
    cfg: QuantizeConfig,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> QuantizedModel:
    """Calibrate on `calibration` (N samples in the model's input shape, batch 1 each), build
    the int8 graph, keep sensitive layers in float, and write the QDQ reference next to the
    float model as model.qdq.onnx."""
    import onnx

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgecError("int8 quantization supports models with one input and one output")
    float_model = onnx.load(str(model.path))
    graph = float_model.graph
    samples = [calibration[i : i + 1] for i in range(min(cfg.samples, len(calibration)))]
    ranges = calibrate.ranges(model.path, samples, cfg.method, cfg.percentile)
    shapes = from_onnx.shapes(float_model)
    types = from_onnx.elem_types(float_model)
    opsets = tuple(float_model.opset_import)
    layers = from_onnx.compute_layers(graph)
    missing = [name for name in cfg.float_layers if name not in layers]
    if missing:
        raise EdgecError(
            f"--float-layer {missing[0]!r} is not a layer; layers: {', '.join(layers)}"
        )
    forced: set[str] = set()  # layers whose bias does not fit int32 at their scale: float

    def build(float_layers: set[str]) -> QGraph:
        while True:
            try:
                return from_onnx.build(
                    graph, model, ranges, shapes, float_layers | forced, types, opsets
                )
            except from_onnx.BiasOverflow as e:
                forced.add(e.layer)

    # the layers that can run in int8: not float islands, nor an Add folded into a MatMul
    every = build(set())
    native = {n.name for n in every.nodes if n.op in COMPUTE_OPS and n.op != "float_op"}
    candidates = [layer for layer in layers if layer in native or layer in forced]

    def alone() -> Iterator[tuple[str, QGraph]]:
        """Each layer with only itself in int8."""
        for layer in candidates:
            one = build(set(layers) - {layer})
            if layer not in forced:
                yield layer, one

    sensitivity: dict[str, float] = {}
    if cfg.sensitivity is not None:
        probe = np.concatenate(samples[:SENSITIVITY_SAMPLES])
        sensitivity = layer_errors(float_model, alone(), probe)
    sensitive = {n for n, e in sensitivity.items() if cfg.sensitivity and e > cfg.sensitivity}
    qg = build(sensitive | set(cfg.float_layers))
    float_layers = tuple(n for n in layers if n in sensitive | forced or n in cfg.float_layers)
    qdq_path = model.path.with_name("model.qdq.onnx")
    onnx.save(to_qdq(qg, graph), str(qdq_path))
    accuracy = {}
    if validation is not None:
        x, y = validation
        accuracy["fp32"] = _top1(np.concatenate(_run_float(model.path, list(x[:, None]))), y)
        accuracy["int8"] = _top1(int8.run(qg, [x])[0], y)
    reference = OnnxModel(
        qdq_path, model.inputs, model.outputs, model.source, model.export_max_abs_diff
    )
    quantized = QuantizedModel(
        qg, reference, model, ranges, sensitivity, float_layers, accuracy, cfg.method
    )
    # the measure stage's own default input first: the one its parity check runs
    default = random_inputs(model.inputs)[0].astype(samples[0].dtype)
    probe = np.concatenate([default, *samples[:REFERENCE_SAMPLES]])
    steps = reference_steps(qg, qdq_path, probe, quantized.output_scale)
    return replace(quantized, reference_steps=steps)


def _run_float(path: Path, samples: list[np.ndarray]) -> np.ndarray:
    from edgec.reference import session

    sess = session(path, 1)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0] for x in samples])


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.reshape(len(labels), -1).argmax(1) == labels))
