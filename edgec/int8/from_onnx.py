"""ONNX → int8: a float ONNX graph and calibrated ranges to a QGraph.

Weights are int8, symmetric, one scale per output channel; activations are int8, symmetric,
one scale per tensor (its calibrated range / 127). A ReLU or clip after a conv, dense or add is
fused into its requantization. Layers named in `float_layers` stay in float, with quantize and
dequantize nodes where precision changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgec.artifacts import OnnxModel
from edgec.errors import EdgecError
from edgec.int8.fixed_point import INT8_MAX, INT8_MIN, SOFTMAX_BITS, quantize_multiplier
from edgec.int8.graph import QGraph, QNode
from edgec.int8.ops import (
    COMPUTE_OPS,
    Add,
    AvgPool,
    Cast,
    Clip,
    Concat,
    Conv,
    Dense,
    GlobalAvgPool,
    MaxPool,
    Requantize,
    Rescale,
    Reshape,
    Softmax,
    Weights,
    Window,
)

ACTIVATIONS = ("Relu", "Clip")  # fused into the conv, dense or add before them
FUSES_ACTIVATION = ("Conv", "Gemm", "MatMul", "Add")


class BiasOverflow(Exception):
    """A layer's bias does not fit int32 at (input scale x weight scale): it stays float."""

    def __init__(self, layer: str) -> None:
        super().__init__(layer)
        self.layer = layer


def shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Every tensor's static shape, by ONNX shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    infos = [*inferred.input, *inferred.value_info, *inferred.output]
    return {v.name: tuple(int(d.dim_value) for d in v.type.tensor_type.shape.dim) for v in infos}


def check_ops(graph: Any, source: str) -> None:
    unsupported = sorted({n.op_type for n in graph.node} - {*SUPPORTED, "Constant"})
    if unsupported:
        raise EdgecError(
            f"int8 does not support {', '.join(unsupported)} (used by {source}); supported: "
            f"{', '.join(SUPPORTED)}; build with --quantize none"
        )


def compute_layers(graph: Any) -> list[str]:
    """The names of the layers that can run in int8 (conv, dense, add, pooling, ...)."""
    return [layer_name(n) for n in graph.node if n.op_type in _COMPUTE_TYPES]


def layer_name(node: Any) -> str:
    return node.name or node.output[0]


@dataclass
class _Node:
    """One ONNX node to translate: its layer name, output (after a fused activation), the
    precision its layer runs in and the fused activation's float bounds."""

    onnx: Any
    name: str
    out: str
    precision: str
    bounds: Clip


class _Builder:
    """Collects QNodes, inserting quantize/dequantize where precision changes."""

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
                self.add(QNode("quantize", out, (tensor,), out, "int8", Cast()))
            else:
                self.add(QNode("dequantize", out, (tensor,), out, "float", Cast()))
            self.casts[key] = out
        return self.casts[key]

    def add(self, node: QNode) -> None:
        self.nodes.append(node)
        self.precision[node.output] = node.precision


def build(
    graph: Any,
    model: OnnxModel,
    ranges: dict[str, float],
    shapes: dict[str, tuple[int, ...]],
    float_layers: set[str],
) -> QGraph:
    """The int8 graph of the ONNX `graph`; raises BiasOverflow for a layer that must stay float."""
    b = _Builder(graph, ranges, shapes, float_layers)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    input_name = model.inputs[0].name
    b.precision[input_name] = "float"
    fused: set[str] = set()
    for node in graph.node:
        if layer_name(node) in fused or node.op_type == "Constant":
            continue
        if node.op_type == "Identity" and node.input[0] in b.consts:  # a shared weight
            b.consts[node.output[0]] = b.consts[node.input[0]]
            continue
        out = node.output[0]
        activation = None
        users = consumers.get(out, [])
        fusable = node.op_type in FUSES_ACTIVATION and len(users) == 1
        if fusable and users[0].op_type in ACTIVATIONS and users[0].input[0] == out:
            activation = users[0]
            fused.add(layer_name(activation))
            out = activation.output[0]
        name = layer_name(node)
        precision = "float" if name in b.float_layers else "int8"
        if node.op_type not in FROM_ONNX:  # Relu/Clip not after a conv, dense or add
            raise EdgecError(
                f"int8: {node.op_type} {name} does not follow a Conv, Gemm or Add; "
                "build with --quantize none"
            )
        _, translate = FROM_ONNX[node.op_type]
        translate(b, _Node(node, name, out, precision, _clip_bounds(b, activation)))
    output = model.outputs[0].name
    if b.precision[output] == "int8":  # the graph's output keeps its name, in float
        renamed = f"{output}:q"
        b.nodes = [replace(n, output=renamed) if n.output == output else n for n in b.nodes]
        b.scales[renamed] = b.scales.pop(output)
        b.precision[renamed] = "int8"
        b.add(QNode("dequantize", output, (renamed,), output, "float", Cast()))
    return QGraph(tuple(b.nodes), b.scales, dict(b.shapes), (input_name,), (output,))


def _clip_bounds(b: _Builder, activation: Any | None) -> Clip:
    if activation is None:
        return Clip()
    if activation.op_type == "Relu":
        return Clip(0.0, None)
    low = b.consts.get(activation.input[1]) if len(activation.input) > 1 else None
    high = b.consts.get(activation.input[2]) if len(activation.input) > 2 else None
    return Clip(None if low is None else float(low), None if high is None else float(high))


def _int_bounds(bounds: Clip, scale: float) -> tuple[int, int]:
    lo = INT8_MIN if bounds.low is None else max(INT8_MIN, int(np.round(bounds.low / scale)))
    hi = INT8_MAX if bounds.high is None else min(INT8_MAX, int(np.round(bounds.high / scale)))
    return lo, hi


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _window(node: Any, kernel: tuple[int, ...]) -> Window:
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    strides = tuple(_attr(node, "strides", [1, 1]))
    return Window(
        (kernel[0], kernel[1]), (strides[0], strides[1]), (pads[0], pads[1], pads[2], pads[3])
    )


def _conv(b: _Builder, n: _Node) -> None:
    node, name = n.onnx, n.name
    w = b.consts[node.input[1]].astype(np.float32)
    bias = b.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise EdgecError(f"int8 conv {name}: auto_pad is not supported; export explicit pads")
    dilations = tuple(_attr(node, "dilations", [1, 1]))
    x, weights, out = _weighted(b, n, node.input[0], w, bias)
    attrs = Conv(
        _window(node, tuple(w.shape[2:])),
        (dilations[0], dilations[1]),
        int(_attr(node, "group", 1)),
        weights,
        out,
    )
    b.add(QNode("conv", name, (x,), n.out, n.precision, attrs))


def _dense(b: _Builder, n: _Node) -> None:
    node, name, op = n.onnx, n.name, n.onnx.op_type
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
    x, weights, out = _weighted(b, n, node.input[0], w, bias)
    b.add(QNode("dense", name, (x,), n.out, n.precision, Dense(weights, out)))


def _weighted(
    b: _Builder, n: _Node, x_name: str, w: np.ndarray, bias: np.ndarray | None
) -> tuple[str, Weights, Requantize | Clip]:
    """The layer's input in its precision, its constants, and how its result leaves it."""
    channels = w.shape[0]
    bias = np.zeros(channels, np.float32) if bias is None else bias.astype(np.float32)
    x = b.as_precision(x_name, n.precision)
    if n.precision == "float":
        return x, Weights(w, bias), n.bounds
    sx, sy = b.scales[x], b.scale_of(n.out)
    peak = np.abs(w.reshape(channels, -1)).max(axis=1)
    sw = np.where(peak > 0, peak / INT8_MAX, 1.0)
    wshape = (channels,) + (1,) * (w.ndim - 1)
    wq = np.clip(np.round(w / sw.reshape(wshape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    bq = np.round(bias / (sx * sw)).astype(np.int64)
    if np.abs(bq).max(initial=0) >= 2**31:
        raise BiasOverflow(n.name)
    m, shift = quantize_multiplier(sx * sw / sy)
    b.scales[n.out] = sy
    weights = Weights(wq, bq.astype(np.int32), sw.astype(np.float32))
    return x, weights, Requantize(m, shift, *_int_bounds(n.bounds, sy))


def _add(b: _Builder, n: _Node) -> None:
    node, name = n.onnx, n.name
    if any(i in b.consts for i in node.input):
        raise EdgecError(f"int8 Add {name}: adding a constant is not supported")
    a, c = b.as_precision(node.input[0], n.precision), b.as_precision(node.input[1], n.precision)
    if n.precision == "float":
        b.add(QNode("add", name, (a, c), n.out, "float", Add(n.bounds)))
        return
    sy = b.scale_of(n.out)
    ratios = np.array([b.scales[a] / sy, b.scales[c] / sy])
    _, shift = quantize_multiplier(np.array(ratios.max()))
    multipliers = np.round(ratios * 2.0 ** int(shift)).astype(np.int64)
    b.scales[n.out] = sy
    rescale = Rescale(multipliers, int(shift), *_int_bounds(n.bounds, sy))
    b.add(QNode("add", name, (a, c), n.out, "int8", Add(rescale)))


def _pool_requantize(b: _Builder, x: str, out: str, count: int) -> Requantize:
    """Sum over `count` values at x's scale → the output's scale."""
    sx, sy = b.scales[x], b.scale_of(out)
    m, n = quantize_multiplier(np.array(sx / (count * sy)))
    b.scales[out] = sy
    return Requantize(m.reshape(1), n.reshape(1))


def _global_avgpool(b: _Builder, n: _Node) -> None:
    x = b.as_precision(n.onnx.input[0], n.precision)
    if n.precision == "float":
        b.add(QNode("global_avgpool", n.name, (x,), n.out, "float", GlobalAvgPool()))
        return
    shape = b.shapes[n.onnx.input[0]]
    out = _pool_requantize(b, x, n.out, shape[2] * shape[3])
    b.add(QNode("global_avgpool", n.name, (x,), n.out, "int8", GlobalAvgPool(out)))


def _avgpool(b: _Builder, n: _Node) -> None:
    node = n.onnx
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if _attr(node, "ceil_mode", 0) or (any(pads) and not _attr(node, "count_include_pad", 0)):
        raise EdgecError(
            f"int8 AveragePool {n.name}: ceil_mode, or padding left out of the count, is not "
            "supported"
        )
    window = _window(node, tuple(_attr(node, "kernel_shape", [1, 1])))
    x = b.as_precision(node.input[0], n.precision)
    if n.precision == "float":
        b.add(QNode("avgpool", n.name, (x,), n.out, "float", AvgPool(window)))
        return
    out = _pool_requantize(b, x, n.out, window.kernel[0] * window.kernel[1])
    b.add(QNode("avgpool", n.name, (x,), n.out, "int8", AvgPool(window, out)))


def _concat(b: _Builder, n: _Node) -> None:
    node = n.onnx
    rank = len(b.shapes[node.input[0]])
    if int(_attr(node, "axis", 1)) not in (1, 1 - rank):
        raise EdgecError(f"int8 Concat {n.name}: only channel concatenation (axis 1) is supported")
    xs = tuple(b.as_precision(i, n.precision) for i in node.input)
    if n.precision == "float":
        b.add(QNode("concat", n.name, xs, n.out, "float", Concat()))
        return
    sy = b.scale_of(n.out)
    ratios = np.array([b.scales[x] / sy for x in xs])
    _, shift = quantize_multiplier(np.array(ratios.max()))
    b.scales[n.out] = sy
    rescale = Rescale(np.round(ratios * 2.0 ** int(shift)).astype(np.int64), int(shift))
    b.add(QNode("concat", n.name, xs, n.out, "int8", Concat(rescale)))


def _softmax(b: _Builder, n: _Node) -> None:
    node = n.onnx
    shape = b.shapes[node.input[0]]
    if len(shape) != 2 or int(_attr(node, "axis", -1)) not in (-1, 1):
        raise EdgecError(f"int8 Softmax {n.name}: only over the last axis of (N, C) logits")
    x = b.as_precision(node.input[0], n.precision)
    if n.precision == "float":
        b.add(QNode("softmax", n.name, (x,), n.out, "float", Softmax()))
        return
    d = np.arange(256, dtype=np.float64)
    table = np.round(np.exp(-d * b.scales[x]) * 2**SOFTMAX_BITS).astype(np.int64)
    b.scales[n.out] = 1.0 / INT8_MAX  # probabilities in [0, 1]
    b.add(QNode("softmax", n.name, (x,), n.out, "int8", Softmax(table)))


def _maxpool(b: _Builder, n: _Node) -> None:
    node = n.onnx
    if _attr(node, "ceil_mode", 0) or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
        raise EdgecError(f"int8 MaxPool {n.name}: ceil_mode and dilations are not supported")
    window = _window(node, tuple(_attr(node, "kernel_shape", [1, 1])))
    _passthrough(b, n, "maxpool", MaxPool(window))


def _reshape(b: _Builder, n: _Node) -> None:
    node = n.onnx
    shape = b.shapes[node.input[0]]
    if node.op_type == "Identity":
        target = shape
    elif node.op_type == "Flatten":
        axis = int(_attr(node, "axis", 1))
        target = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    else:
        dims = [int(d) for d in b.consts[node.input[1]]]
        size = int(np.prod(shape))
        known = [d if d != 0 else shape[i] for i, d in enumerate(dims)]
        if -1 in known:
            rest = int(np.prod([d for d in known if d != -1]))
            known[known.index(-1)] = size // rest
        target = tuple(known)
    _passthrough(b, n, "reshape", Reshape(target))


def _passthrough(b: _Builder, n: _Node, op: str, attrs: MaxPool | Reshape) -> None:
    """A layout op: runs in whatever precision its input has, with the same scale."""
    x = n.onnx.input[0]
    precision = b.precision[x]
    if precision == "int8":
        b.scales[n.out] = b.scales[x]
    b.add(QNode(op, n.name, (x,), n.out, precision, attrs))


# ONNX op type → (the int8 op it becomes, its translation)
FROM_ONNX: dict[str, tuple[str, Callable[[_Builder, _Node], None]]] = {
    "Conv": ("conv", _conv),
    "Gemm": ("dense", _dense),
    "MatMul": ("dense", _dense),
    "Add": ("add", _add),
    "GlobalAveragePool": ("global_avgpool", _global_avgpool),
    "MaxPool": ("maxpool", _maxpool),
    "AveragePool": ("avgpool", _avgpool),
    "Concat": ("concat", _concat),
    "Softmax": ("softmax", _softmax),
    "Flatten": ("reshape", _reshape),
    "Reshape": ("reshape", _reshape),
    "Identity": ("reshape", _reshape),
}
SUPPORTED = (*FROM_ONNX, *ACTIVATIONS)
_COMPUTE_TYPES = {t for t, (op, _) in FROM_ONNX.items() if op in COMPUTE_OPS}
