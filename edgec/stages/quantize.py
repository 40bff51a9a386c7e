"""quantize: a float ONNX model and calibration data to an int8 QGraph (edgec.qgraph), checked
layer by layer, plus the same model as ONNX QDQ for ONNX Runtime to check against.

Weights are int8, symmetric, one scale per output channel; activations are int8, symmetric, one
scale per tensor, from edgec.calibrate. A ReLU or clip after a conv, dense or add is fused into
its requantization. Layers named in `float_layers`, or whose own quantization moves the model's
output by more than `sensitivity` (relative RMS error on the calibration data, measured with
only that layer in int8), stay in float: mixed precision, listed in the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgec import calibrate, qgraph
from edgec.artifacts import OnnxModel
from edgec.errors import EdgecError, known
from edgec.qgraph import INT8_MAX, INT8_MIN, QGraph, QNode
from edgec.sensitivity import layer_errors

MODES = ("none", "int8")
SUPPORTED = ("Conv", "Gemm", "MatMul", "Add", "Relu", "Clip", "GlobalAveragePool", "MaxPool",
             "AveragePool", "Concat", "Softmax", "Flatten", "Reshape", "Identity")  # fmt: skip
ACTIVATIONS = ("Relu", "Clip")
OPSET = 17
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


@dataclass(frozen=True)
class QuantizedModel:
    """The int8 graph, the QDQ reference ONNX beside it, and what calibration decided."""

    graph: QGraph
    onnx: OnnxModel  # the QDQ model: what ONNX Runtime runs as this build's reference
    float_model: OnnxModel
    ranges: dict[str, float]
    sensitivity: dict[str, float]  # layer → output error with only that layer in int8
    float_layers: tuple[str, ...]
    accuracy: dict[str, float] = field(default_factory=dict)  # fp32 / int8 val top-1 (%)
    method: str = "percentile"

    @property
    def output_scale(self) -> float:
        """One int8 step of the output: the unit of the parity tolerance."""
        last = self.graph.nodes[-1]
        if last.op == "dequantize":
            return self.graph.scales[last.inputs[0]]
        return max(self.ranges.get(self.graph.outputs[0], 0.0), 1e-12) / 127

    def calibration_json(self) -> dict[str, Any]:
        """What calibration decided, kept in the bundle: every activation's range and scale."""
        return {
            "method": self.method,
            "ranges": {k: float(v) for k, v in sorted(self.ranges.items())},
            "scales": {k: float(v) for k, v in sorted(self.graph.scales.items())},
            "sensitivity": self.sensitivity,
            "float_layers": list(self.float_layers),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "int8",
            "calibration": self.method,
            "output_scale": self.output_scale,
            "int8_ops": self.graph.int8_ops,
            "float_ops": self.graph.float_ops,
            "float_layers": list(self.float_layers),
            "sensitivity": {k: round(v, 5) for k, v in self.sensitivity.items()},
            "weight_bytes": self.graph.weight_bytes,
            "float_weight_bytes": _float_weight_bytes(self.float_model.path),
            "accuracy": {k: round(v, 2) for k, v in self.accuracy.items()},
        }


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
    _check_ops(graph, model.source)
    samples = [calibration[i : i + 1] for i in range(min(cfg.samples, len(calibration)))]
    ranges = calibrate.ranges(model.path, samples, cfg.method, cfg.percentile)
    shapes = _shapes(float_model)
    layers = _compute_layers(graph)
    missing = [name for name in cfg.float_layers if name not in layers]
    if missing:
        raise EdgecError(
            f"--float-layer {missing[0]!r} is not a layer; layers: {', '.join(layers)}"
        )
    forced: set[str] = set()  # layers whose bias does not fit int32 at their scale: float

    def build(float_layers: set[str]) -> QGraph:
        while True:
            try:
                return _build(graph, model, ranges, shapes, float_layers | forced)
            except _BiasOverflow as e:
                forced.add(e.layer)

    def alone() -> Iterator[tuple[str, QGraph]]:
        """Each layer with only itself in int8."""
        for layer in layers:
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
        accuracy["int8"] = _top1(qgraph.run(qg, [x])[0], y)
    reference = OnnxModel(
        qdq_path, model.inputs, model.outputs, model.source, model.export_max_abs_diff
    )
    return QuantizedModel(
        qg, reference, model, ranges, sensitivity, float_layers, accuracy, cfg.method
    )


def _shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor's static shape, by ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    infos = [*inferred.input, *inferred.value_info, *inferred.output]
    return {v.name: tuple(int(d.dim_value) for d in v.type.tensor_type.shape.dim) for v in infos}


def _check_ops(graph: Any, source: str) -> None:
    unsupported = sorted({n.op_type for n in graph.node} - {*SUPPORTED, "Constant"})
    if unsupported:
        raise EdgecError(
            f"int8 does not support {', '.join(unsupported)} (used by {source}); supported: "
            f"{', '.join(SUPPORTED)}; build with --quantize none"
        )


def _compute_layers(graph: Any) -> list[str]:
    """The names of the layers that can run in int8 (conv, dense, add, pooling)."""
    kinds = ("Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "AveragePool", "Concat",
             "Softmax")  # fmt: skip
    return [_name(n) for n in graph.node if n.op_type in kinds]


def _name(node: Any) -> str:
    return node.name or node.output[0]


def _run_float(path: Path, samples: list[np.ndarray]) -> np.ndarray:
    from edgec.reference import session

    sess = session(path, 1)
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x})[0] for x in samples])


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.reshape(len(labels), -1).argmax(1) == labels))


class _Builder:
    """Translates ONNX nodes into QNodes, inserting quantize/dequantize where precision changes."""

    def __init__(
        self,
        graph: Any,
        ranges: dict[str, float],
        shapes: dict[str, tuple[int, ...]],
        float_layers: set[str],
    ) -> None:
        import onnx.numpy_helper as nh

        self.consts = {i.name: nh.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = nh.to_array(node.attribute[0].t)
        self.ranges = ranges
        self.shapes = shapes
        self.float_layers = float_layers
        self.nodes: list[QNode] = []
        self.scales: dict[str, float] = {}
        self.precision: dict[str, str] = {}  # tensor → "int8" | "float"
        self.casts: dict[tuple[str, str], str] = {}

    def scale_of(self, tensor: str) -> float:
        peak = self.ranges.get(tensor, 0.0)
        return (peak if peak > 0 else 1.0) / INT8_MAX

    def as_precision(self, tensor: str, want: str) -> str:
        """`tensor` in `want` precision, through a cast node made once."""
        if self.precision[tensor] == want:
            return tensor
        key = (tensor, want)
        if key not in self.casts:
            out = f"{tensor}:{'q' if want == 'int8' else 'f'}"
            if want == "int8":
                self.scales[out] = self.scale_of(tensor)
                self.add(QNode("quantize", out, (tensor,), out, "int8"))
            else:
                self.add(QNode("dequantize", out, (tensor,), out, "float"))
            self.casts[key] = out
        return self.casts[key]

    def add(self, node: QNode) -> None:
        self.nodes.append(node)
        self.precision[node.output] = node.precision


def _build(
    graph: Any,
    model: OnnxModel,
    ranges: dict[str, float],
    shapes: dict[str, tuple[int, ...]],
    float_layers: set[str],
) -> QGraph:
    b = _Builder(graph, ranges, shapes, float_layers)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    input_name = model.inputs[0].name
    b.precision[input_name] = "float"
    fused: set[str] = set()
    for node in graph.node:
        if _name(node) in fused or node.op_type == "Constant":
            continue
        if node.op_type == "Identity" and node.input[0] in b.consts:  # a shared weight
            b.consts[node.output[0]] = b.consts[node.input[0]]
            continue
        out = node.output[0]
        activation = None
        users = consumers.get(out, [])
        fusable = node.op_type in ("Conv", "Gemm", "MatMul", "Add") and len(users) == 1
        if fusable and users[0].op_type in ACTIVATIONS and users[0].input[0] == out:
            activation = users[0]
            fused.add(_name(activation))
            out = activation.output[0]
        _translate(b, node, out, activation)
    output = model.outputs[0].name
    if b.precision[output] == "int8":  # the graph's output keeps its name, in float
        renamed = f"{output}:q"
        b.nodes = [replace(n, output=renamed) if n.output == output else n for n in b.nodes]
        b.scales[renamed] = b.scales.pop(output)
        b.precision[renamed] = "int8"
        b.add(QNode("dequantize", output, (renamed,), output, "float"))
    return QGraph(tuple(b.nodes), b.scales, dict(b.shapes), (input_name,), (output,))


def _clip_bounds(b: _Builder, activation: Any | None) -> tuple[float | None, float | None]:
    if activation is None:
        return None, None
    if activation.op_type == "Relu":
        return 0.0, None
    low = b.consts.get(activation.input[1]) if len(activation.input) > 1 else None
    high = b.consts.get(activation.input[2]) if len(activation.input) > 2 else None
    return (None if low is None else float(low)), (None if high is None else float(high))


def _int_bounds(low: float | None, high: float | None, scale: float) -> dict[str, int]:
    lo = INT8_MIN if low is None else max(INT8_MIN, int(np.round(low / scale)))
    hi = INT8_MAX if high is None else min(INT8_MAX, int(np.round(high / scale)))
    return {"lo": lo, "hi": hi}


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _translate(b: _Builder, node: Any, out: str, activation: Any | None) -> None:
    op = node.op_type
    name = _name(node)
    precision = "float" if name in b.float_layers else "int8"
    bounds = _clip_bounds(b, activation)
    if op == "Conv":
        w = b.consts[node.input[1]].astype(np.float32)
        bias = b.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        kernel = w.shape[2:]
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        attrs = {
            "strides": tuple(_attr(node, "strides", [1, 1])),
            "pads": (pads[0], pads[1], pads[2], pads[3]),
            "dilations": tuple(_attr(node, "dilations", [1, 1])),
            "groups": int(_attr(node, "group", 1)),
            "kernel": tuple(kernel),
        }
        if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise EdgecError(f"int8 conv {name}: auto_pad is not supported; export explicit pads")
        _weighted(b, "conv", name, node.input[0], out, w, bias, attrs, precision, bounds)
    elif op in ("Gemm", "MatMul"):
        w = b.consts.get(node.input[1])
        if w is None:
            raise EdgecError(f"int8 {op} {name}: the second input must be a constant weight")
        if op == "MatMul" or not _attr(node, "transB", 0):
            w = w.T
        if op == "Gemm" and (_attr(node, "alpha", 1.0) != 1.0 or _attr(node, "transA", 0)):
            raise EdgecError(f"int8 Gemm {name}: alpha ≠ 1 or transA is not supported")
        bias = b.consts.get(node.input[2]) if len(node.input) > 2 else None
        if bias is not None and op == "Gemm":
            bias = bias * float(_attr(node, "beta", 1.0))
        w = np.ascontiguousarray(w, dtype=np.float32)
        _weighted(b, "dense", name, node.input[0], out, w, bias, {}, precision, bounds)
    elif op == "Add":
        if any(i in b.consts for i in node.input):
            raise EdgecError(f"int8 Add {name}: adding a constant is not supported")
        _add(b, name, node.input[0], node.input[1], out, precision, bounds)
    elif op == "GlobalAveragePool":
        x = b.as_precision(node.input[0], precision)
        if precision == "float":
            b.add(QNode("global_avgpool", name, (x,), out, "float"))
            return
        shape = _shape_of(b, node.input[0])
        sx, sy = b.scales[x], b.scale_of(out)
        m, n = qgraph.quantize_multiplier(np.array(sx / (shape[2] * shape[3] * sy)))
        b.scales[out] = sy
        params = {"m": m.reshape(1), "n": n.reshape(1)}
        b.add(QNode("global_avgpool", name, (x,), out, "int8", params, {"lo": -128, "hi": 127}))
    elif op == "AveragePool":
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        if _attr(node, "ceil_mode", 0) or (any(pads) and not _attr(node, "count_include_pad", 0)):
            raise EdgecError(
                f"int8 AveragePool {name}: ceil_mode, or padding left out of the count, is not "
                "supported"
            )
        attrs = {
            "kernel": tuple(_attr(node, "kernel_shape", [1, 1])),
            "strides": tuple(_attr(node, "strides", [1, 1])),
            "pads": (pads[0], pads[1], pads[2], pads[3]),
        }
        x = b.as_precision(node.input[0], precision)
        if precision == "float":
            b.add(QNode("avgpool", name, (x,), out, "float", {}, attrs))
            return
        sx, sy = b.scales[x], b.scale_of(out)
        count = attrs["kernel"][0] * attrs["kernel"][1]
        m, n = qgraph.quantize_multiplier(np.array(sx / (count * sy)))
        b.scales[out] = sy
        params = {"m": m.reshape(1), "n": n.reshape(1)}
        b.add(QNode("avgpool", name, (x,), out, "int8", params, {**attrs, "lo": -128, "hi": 127}))
    elif op == "Concat":
        rank = len(_shape_of(b, node.input[0]))
        if int(_attr(node, "axis", 1)) not in (1, 1 - rank):
            raise EdgecError(
                f"int8 Concat {name}: only channel concatenation (axis 1) is supported"
            )
        xs = tuple(b.as_precision(i, precision) for i in node.input)
        if precision == "float":
            b.add(QNode("concat", name, xs, out, "float"))
            return
        sy = b.scale_of(out)
        ratios = np.array([b.scales[x] / sy for x in xs])
        _, n = qgraph.quantize_multiplier(np.array(ratios.max()))
        b.scales[out] = sy
        params = {"m": np.round(ratios * 2.0 ** int(n)).astype(np.int64), "n": np.int64(n)}
        b.add(QNode("concat", name, xs, out, "int8", params))
    elif op == "Softmax":
        shape = _shape_of(b, node.input[0])
        if len(shape) != 2 or int(_attr(node, "axis", -1)) not in (-1, 1):
            raise EdgecError(f"int8 Softmax {name}: only over the last axis of (N, C) logits")
        x = b.as_precision(node.input[0], precision)
        if precision == "float":
            b.add(QNode("softmax", name, (x,), out, "float"))
            return
        d = np.arange(256, dtype=np.float64)
        table = np.round(np.exp(-d * b.scales[x]) * 2**qgraph.SOFTMAX_BITS).astype(np.int64)
        b.scales[out] = 1.0 / INT8_MAX  # probabilities in [0, 1]
        b.add(QNode("softmax", name, (x,), out, "int8", {"table": table}))
    elif op == "MaxPool":
        if _attr(node, "ceil_mode", 0) or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
            raise EdgecError(f"int8 MaxPool {name}: ceil_mode and dilations are not supported")
        pads = list(_attr(node, "pads", [0, 0, 0, 0]))
        attrs = {
            "kernel": tuple(_attr(node, "kernel_shape", [1, 1])),
            "strides": tuple(_attr(node, "strides", [1, 1])),
            "pads": (pads[0], pads[1], pads[2], pads[3]),
        }
        _passthrough(b, "maxpool", name, node.input[0], out, attrs)
    elif op in ("Flatten", "Reshape", "Identity"):
        target = _reshaped(b, node)
        _passthrough(b, "reshape", name, node.input[0], out, {"shape": target})
    else:  # Relu/Clip not after a conv, dense or add
        raise EdgecError(
            f"int8: {op} {name} does not follow a Conv, Gemm or Add; build with --quantize none"
        )


def _shape_of(b: _Builder, tensor: str) -> tuple[int, ...]:
    return b.shapes[tensor]


def _reshaped(b: _Builder, node: Any) -> tuple[int, ...]:
    shape = _shape_of(b, node.input[0])
    if node.op_type == "Identity":
        return shape
    if node.op_type == "Flatten":
        axis = int(_attr(node, "axis", 1))
        return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    target = [int(d) for d in b.consts[node.input[1]]]
    size = int(np.prod(shape))
    known_dims = [d if d != 0 else shape[i] for i, d in enumerate(target)]
    if -1 in known_dims:
        rest = int(np.prod([d for d in known_dims if d != -1]))
        known_dims[known_dims.index(-1)] = size // rest
    return tuple(known_dims)


def _passthrough(b: _Builder, op: str, name: str, x: str, out: str, attrs: dict) -> None:
    """A layout op: runs in whatever precision its input has, with the same scale."""
    precision = b.precision[x]
    if precision == "int8":
        b.scales[out] = b.scales[x]
    b.add(QNode(op, name, (x,), out, precision, {}, attrs))


def _weighted(
    b: _Builder,
    op: str,
    name: str,
    x_name: str,
    out: str,
    w: np.ndarray,
    bias: np.ndarray | None,
    attrs: dict,
    precision: str,
    bounds: tuple[float | None, float | None],
) -> None:
    channels = w.shape[0]
    bias = np.zeros(channels, np.float32) if bias is None else bias.astype(np.float32)
    x = b.as_precision(x_name, precision)
    if precision == "float":
        params = {"w": w, "b": bias}
        b.add(QNode(op, name, (x,), out, "float", params, {**attrs, "clip": bounds}))
        return
    sx, sy = b.scales[x], b.scale_of(out)
    peak = np.abs(w.reshape(channels, -1)).max(axis=1)
    sw = np.where(peak > 0, peak / INT8_MAX, 1.0)
    wshape = (channels,) + (1,) * (w.ndim - 1)
    wq = np.clip(np.round(w / sw.reshape(wshape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    bq = np.round(bias / (sx * sw)).astype(np.int64)
    if np.abs(bq).max(initial=0) >= 2**31:
        raise _BiasOverflow(name)
    m, n = qgraph.quantize_multiplier(sx * sw / sy)
    b.scales[out] = sy
    params = {"w": wq, "b": bq.astype(np.int32), "m": m, "n": n, "sw": sw.astype(np.float32)}
    attrs = {**attrs, **_int_bounds(*bounds, sy)}
    b.add(QNode(op, name, (x,), out, "int8", params, attrs))


class _BiasOverflow(Exception):
    """A layer's bias does not fit int32 at (input scale x weight scale): it stays float."""

    def __init__(self, layer: str) -> None:
        super().__init__(layer)
        self.layer = layer


def _add(
    b: _Builder,
    name: str,
    left: str,
    right: str,
    out: str,
    precision: str,
    bounds: tuple[float | None, float | None],
) -> None:
    a, c = b.as_precision(left, precision), b.as_precision(right, precision)
    if precision == "float":
        b.add(QNode("add", name, (a, c), out, "float", {}, {"clip": bounds}))
        return
    sy = b.scale_of(out)
    ratios = np.array([b.scales[a] / sy, b.scales[c] / sy])
    _, n = qgraph.quantize_multiplier(np.array(ratios.max()))
    shift = int(n)
    ma, mc = (int(v) for v in np.round(ratios * 2.0**shift))
    b.scales[out] = sy
    params = {"ma": np.int64(ma), "mb": np.int64(mc), "n": np.int64(shift)}
    b.add(QNode("add", name, (a, c), out, "int8", params, _int_bounds(*bounds, sy)))


def _float_weight_bytes(path: Path) -> int:
    import onnx

    return sum(
        int(np.prod(i.dims)) * 4 for i in onnx.load(str(path)).graph.initializer if len(i.dims)
    )


def to_qdq(graph: QGraph, float_graph: Any) -> Any:
    """The QGraph as an ONNX QDQ model (QuantizeLinear/DequantizeLinear around float ops) that
    ONNX Runtime fuses into its own int8 kernels: the reference an int8 build is checked
    against, and the int8 baseline it is timed against."""
    from onnx import helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    views: dict[str, str] = {}

    def dq(tensor: str) -> str:
        """A float view of an int8 tensor (one DequantizeLinear however many read it)."""
        out = f"{tensor}/dq"
        if tensor in views:
            return out
        views[tensor] = out
        scale = const(f"{tensor}/scale", np.float32(graph.scales[tensor]))
        zero = const(f"{tensor}/zero", np.int8(0))
        nodes.append(helper.make_node("DequantizeLinear", [tensor, scale, zero], [out]))
        return out

    def q(value: str, tensor: str) -> None:
        scale = const(f"{tensor}/scale", np.float32(graph.scales[tensor]))
        zero = const(f"{tensor}/zero", np.int8(0))
        nodes.append(helper.make_node("QuantizeLinear", [value, scale, zero], [tensor]))

    def weights(node: QNode, sx: float) -> tuple[str, str]:
        w, bias = node.params["w"], node.params["b"]
        if node.precision == "float":
            return const(f"{node.name}/w", w), const(f"{node.name}/b", bias)
        sw = node.params["sw"]
        channels = len(sw)
        wq = const(f"{node.name}/wq", w)
        ws = const(f"{node.name}/ws", sw.astype(np.float32))
        wz = const(f"{node.name}/wz", np.zeros(channels, np.int8))
        bq = const(f"{node.name}/bq", bias)
        bs = const(f"{node.name}/bs", (sx * sw).astype(np.float32))
        bz = const(f"{node.name}/bz", np.zeros(channels, np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [wq, ws, wz], [f"{wq}/dq"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", [bq, bs, bz], [f"{bq}/dq"], axis=0))
        return f"{wq}/dq", f"{bq}/dq"

    def activate(node: QNode, value: str) -> str:
        if node.precision == "float":
            low, high = node.attrs.get("clip", (None, None))
        else:
            sy = graph.scales[node.output]
            lo, hi = node.attrs.get("lo", INT8_MIN), node.attrs.get("hi", INT8_MAX)
            low = None if lo == INT8_MIN else lo * sy
            high = None if hi == INT8_MAX else hi * sy
        if low is None and high is None:
            return value
        out = f"{value}/act"
        if low == 0.0 and high is None:
            nodes.append(helper.make_node("Relu", [value], [out]))
        else:
            lo_name = const(f"{out}/lo", np.float32(-np.inf if low is None else low))
            hi_name = const(f"{out}/hi", np.float32(np.inf if high is None else high))
            nodes.append(helper.make_node("Clip", [value, lo_name, hi_name], [out]))
        return out

    for node in graph.nodes:
        ins = list(node.inputs)
        int8 = node.precision == "int8"
        if node.op == "quantize":
            q(ins[0], node.output)
            continue
        if node.op == "dequantize":
            scale = const(f"{ins[0]}/scale", np.float32(graph.scales[ins[0]]))
            zero = const(f"{ins[0]}/zero", np.int8(0))
            nodes.append(helper.make_node("DequantizeLinear", [ins[0], scale, zero], [node.output]))
            continue
        if node.op in ("reshape", "maxpool"):
            if node.op == "reshape":
                shape = const(f"{node.name}/shape", np.array(node.attrs["shape"], np.int64))
                nodes.append(helper.make_node("Reshape", [ins[0], shape], [node.output]))
            else:
                a = node.attrs
                pads = [a["pads"][0], a["pads"][1], a["pads"][2], a["pads"][3]]
                nodes.append(
                    helper.make_node(
                        "MaxPool",
                        [ins[0]],
                        [node.output],
                        kernel_shape=list(a["kernel"]),
                        strides=list(a["strides"]),
                        pads=pads,
                    )
                )
            continue
        fins = [dq(i) for i in ins] if int8 else ins
        raw = f"{node.output}/raw" if int8 else node.output
        if node.op == "conv":
            w, bias = weights(node, graph.scales[ins[0]] if int8 else 0.0)
            a = node.attrs
            value = raw if not _has_activation(node) else f"{raw}/pre"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [fins[0], w, bias],
                    [value],
                    strides=list(a["strides"]),
                    pads=[a["pads"][0], a["pads"][1], a["pads"][2], a["pads"][3]],
                    dilations=list(a["dilations"]),
                    group=a["groups"],
                    kernel_shape=list(a["kernel"]),
                )
            )
        elif node.op == "dense":
            w, bias = weights(node, graph.scales[ins[0]] if int8 else 0.0)
            value = raw if not _has_activation(node) else f"{raw}/pre"
            nodes.append(helper.make_node("Gemm", [fins[0], w, bias], [value], transB=1))
        elif node.op == "add":
            value = raw if not _has_activation(node) else f"{raw}/pre"
            nodes.append(helper.make_node("Add", fins, [value]))
        elif node.op == "global_avgpool":
            value = raw
            nodes.append(helper.make_node("GlobalAveragePool", fins, [value]))
        elif node.op == "avgpool":
            value, a = raw, node.attrs
            nodes.append(
                helper.make_node(
                    "AveragePool", fins, [value], kernel_shape=list(a["kernel"]),
                    strides=list(a["strides"]), pads=list(a["pads"]), count_include_pad=1,
                )
            )  # fmt: skip
        elif node.op == "concat":
            value = raw
            nodes.append(helper.make_node("Concat", fins, [value], axis=1))
        elif node.op == "softmax":
            value = raw
            nodes.append(helper.make_node("Softmax", fins, [value], axis=-1))
        else:
            raise EdgecError(f"internal: no QDQ form for {node.op}")
        final = activate(node, value)
        if final != raw:
            nodes.append(helper.make_node("Identity", [final], [raw]))
        if int8:
            q(raw, node.output)
    inputs = list(float_graph.input[:1])
    outputs = list(float_graph.output[:1])
    model = helper.make_model(
        helper.make_graph(nodes, "edgec-int8-qdq", inputs, outputs, _unique(inits)),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=8,
    )
    return model


def _has_activation(node: QNode) -> bool:
    if node.precision == "float":
        return node.attrs.get("clip", (None, None)) != (None, None)
    return (node.attrs.get("lo", INT8_MIN), node.attrs.get("hi", INT8_MAX)) != (INT8_MIN, INT8_MAX)


def _unique(inits: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for i in inits:
        seen.setdefault(i.name, i)
    return list(seen.values())
