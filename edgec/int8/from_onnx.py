"""ONNX → int8: a float ONNX graph and calibrated ranges to a QGraph.

Weights are int8, symmetric, one scale per output channel; activations are int8, symmetric,
one scale per tensor (its calibrated range / 127). A ReLU or clip after a conv, dense or add is
fused into its requantization. Layers named in `float_layers` stay in float, with quantize and
dequantize nodes where precision changes.

A node no int8 op covers (an op type without a translation, or attributes its translation does
not take) is never a reason to refuse the model: it becomes a float island, a `float_op` that
runs the node as ONNX defines it, in float, with a dequantize before it and, where an int8 layer
reads its result, a quantize at the calibrated range after it. Each says why in its `reason`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgec.artifacts import OnnxModel
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
    FloatOp,
    GlobalAvgPool,
    MaxPool,
    Requantize,
    Rescale,
    Reshape,
    Slice,
    Softmax,
    Transpose,
    Weights,
    Window,
)
from edgec.onnx_graph import OPSET

ACTIVATIONS = ("Relu", "Clip")  # fused into the conv, dense or add before them
FUSES_ACTIVATION = ("Conv", "Gemm", "MatMul", "Add", "Sum", "BatchNormalization")


FLOAT = 1  # onnx.TensorProto.FLOAT: int8 takes only float tensors; others stay as they are


class _Refused(Exception):
    """A translation that does not cover this node: it becomes a float island, for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def elem_types(model: Any) -> dict[str, int]:
    """Every tensor's ONNX element type (onnx.TensorProto), by shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    infos = [*inferred.input, *inferred.value_info, *inferred.output]
    types = {v.name: int(v.type.tensor_type.elem_type) for v in infos}
    types.update({i.name: int(i.data_type) for i in model.graph.initializer})
    return types


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
    bias: str | None = None  # a MatMul's bias, from the Add after it


class _Builder:
    """Collects QNodes, inserting quantize/dequantize where precision changes."""

    def __init__(
        self,
        graph: Any,
        ranges: dict[str, float],
        shapes: dict[str, tuple[int, ...]],
        float_layers: set[str],
        types: dict[str, int],
        opsets: tuple[Any, ...],
    ) -> None:
        import onnx.numpy_helper as nh

        self.consts = {i.name: nh.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                self.consts[node.output[0]] = nh.to_array(node.attribute[0].t)
        self.ranges = dict(ranges)
        self.shapes = shapes
        self.float_layers = float_layers
        self.types = types
        self.opsets = opsets
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

    def value_info(self, tensor: str) -> Any:
        from onnx import helper

        shape = self.shapes.get(tensor)
        known = shape if shape and all(d > 0 for d in shape) else None
        return helper.make_tensor_value_info(tensor, self.types.get(tensor, FLOAT), known)


def build(
    graph: Any,
    model: OnnxModel,
    ranges: dict[str, float],
    shapes: dict[str, tuple[int, ...]],
    float_layers: set[str],
    types: dict[str, int] | None = None,
    opsets: tuple[Any, ...] = (),
) -> QGraph:
    """The int8 graph of the ONNX `graph` (`types`: elem_types(), `opsets`: the model's
    opset_import, which float islands keep); raises BiasOverflow for a layer that must stay
    float."""
    if not opsets:
        from onnx import helper

        opsets = (helper.make_opsetid("", 17),)
    b = _Builder(graph, shared_ranges(graph, ranges), shapes, float_layers, types or {},
                 tuple(opsets))  # fmt: skip
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
        activation = bias = None
        users = consumers.get(out, [])
        if node.op_type == "MatMul" and len(users) == 1 and _bias_of(b, users[0], out):
            bias = users[0]  # torch's Linear on a sequence: MatMul, then Add of the bias
            fused.add(layer_name(bias))
            out = bias.output[0]
            users = consumers.get(out, [])
        fusable = node.op_type in FUSES_ACTIVATION and len(users) == 1
        if fusable and users[0].op_type in ACTIVATIONS and users[0].input[0] == out:
            activation = users[0]
            fused.add(layer_name(activation))
            out = activation.output[0]
        name = layer_name(node)
        precision = "float" if name in b.float_layers else "int8"
        bounds = _clip_bounds(b, activation)
        try:
            _, translate = FROM_ONNX.get(node.op_type, (None, _uncovered))
            _check_inputs(b, node)
            translate(
                b,
                _Node(
                    node, name, out, precision, bounds, bias and _bias_of(b, bias, node.output[0])
                ),
            )
        except _Refused as e:
            _island(b, node, name, e.reason)
            for after in (bias, activation):
                if after is not None:
                    _island(b, after, layer_name(after), "follows a float island")
    output = model.outputs[0].name
    if b.precision[output] == "int8":  # the graph's output keeps its name, in float
        renamed = f"{output}:q"
        b.nodes = [replace(n, output=renamed) if n.output == output else n for n in b.nodes]
        b.scales[renamed] = b.scales.pop(output)
        b.precision[renamed] = "int8"
        b.add(QNode("dequantize", output, (renamed,), output, "float", Cast()))
    return QGraph(tuple(b.nodes), b.scales, dict(b.shapes), (input_name,), (output,))


# ONNX ops that move values at their input's scale (translated by _passthrough)
LAYOUT_TYPES = ("MaxPool", "Reshape", "Flatten", "Identity", "Dropout", "Squeeze", "Unsqueeze",
                "Transpose", "Slice", "Split")  # fmt: skip


def shared_ranges(graph: Any, ranges: dict[str, float]) -> dict[str, float]:
    """`ranges` with each concatenation's output and its inputs given one range, the largest
    of theirs, as TFLite's converter gives them one scale: an input computed by a layer is then
    requantized once, by that layer, straight to the concat's scale (not to its own, then again
    by the concat), and an input that comes through layout ops from an earlier concat (each
    ShuffleNetV2 unit's pass-through half, from the unit before) is already at it, so the
    concat copies it. Inputs are followed back through layout ops to the tensor a layer wrote."""
    producer = {out: node for node in graph.node for out in node.output}

    def written(tensor: str) -> str:
        while tensor in producer and producer[tensor].op_type in LAYOUT_TYPES:
            tensor = producer[tensor].input[0]
        return tensor

    group: dict[str, str] = {}  # union-find over tensors

    def root(tensor: str) -> str:
        while group.get(tensor, tensor) != tensor:
            tensor = group[tensor]
        return tensor

    for node in graph.node:
        if node.op_type == "Concat" and node.output[0] in ranges:
            for name in node.input:
                a, c = root(node.output[0]), root(written(name))
                if a != c and c in ranges:
                    group[c] = a
    if not group:
        return ranges
    peaks: dict[str, float] = {}
    for tensor in [*group, *group.values()]:
        top = root(tensor)
        peaks[top] = max(peaks.get(top, 0.0), ranges.get(tensor, 0.0))
    return {**ranges, **{t: peaks[root(t)] for t in [*group, *group.values()]}}


def _at_opset(model: Any) -> Any:
    """The island at the QDQ model's opset (the node's attributes and inputs change meaning
    between opsets: Split, ReduceMean, Squeeze ...), where onnx's converter knows the way."""
    import onnx

    stamped = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    if stamped == OPSET:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, OPSET)
        # an output's type can change with the opset (Dropout's mask: float, then bool)
        output = converted.graph.output[0]
        output.type.Clear()
        inferred = onnx.shape_inference.infer_shapes(converted)
        if not inferred.graph.output[0].type.tensor_type.elem_type:
            return model
        output.CopyFrom(inferred.graph.output[0])
        return converted
    except Exception:  # a converter gap: the node keeps its own opset
        return model


def _bias_of(b: _Builder, add: Any, product: str) -> str | None:
    """The constant vector `add` adds to a MatMul's result (`product`), if that is all it does."""
    if add.op_type != "Add" or sorted(add.input).count(product) != 1 or len(add.input) != 2:
        return None
    other = add.input[1] if add.input[0] == product else add.input[0]
    return other if other in b.consts and b.consts[other].ndim == 1 else None


def _uncovered(b: _Builder, n: _Node) -> None:
    if n.onnx.op_type in ACTIVATIONS:
        raise _Refused(f"int8 fuses {n.onnx.op_type} only into the Conv, Gemm or Add before it")
    raise _Refused(f"int8 has no {n.onnx.op_type}")


def _check_inputs(b: _Builder, node: Any) -> None:
    for name in node.input:
        if name and name not in b.consts and b.types.get(name, FLOAT) != FLOAT:
            raise _Refused(f"input {name} is not float32")


def _island(b: _Builder, node: Any, name: str, reason: str) -> None:
    """The node as it is, in float: one float_op per output it has."""
    from onnx import helper, numpy_helper

    inputs = [i for i in dict.fromkeys(node.input) if i]
    activations = [i for i in inputs if i not in b.consts]
    xs = tuple(b.as_precision(i, "float") for i in activations)
    constants = [numpy_helper.from_array(b.consts[i], i) for i in inputs if i in b.consts]
    for k, out in enumerate(node.output):
        if not out:
            continue
        graph = helper.make_graph(
            [node],
            "edgec-float-island",
            [b.value_info(i) for i in activations],
            [b.value_info(out)],
            constants,
        )
        model = _at_opset(helper.make_model(graph, opset_imports=list(b.opsets), ir_version=8))
        attrs = FloatOp(node.op_type, model.SerializeToString(), reason)
        b.add(QNode("float_op", name if k == 0 else f"{name}:{k}", xs, out, "float", attrs))


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
    if node.input[1] not in b.consts or b.consts[node.input[1]].ndim != 4:
        raise _Refused("int8 takes 2-D convolutions with constant weights")
    w = b.consts[node.input[1]].astype(np.float32)
    bias = b.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise _Refused("int8 takes explicit pads, not auto_pad")
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


def _batchnorm(b: _Builder, n: _Node) -> None:
    """A BatchNormalization no conv absorbed (DenseNet's pre-activation, old converters): one
    scale and shift per channel, a 1×1 depthwise conv (its int8 weights exact: one per channel)."""
    node = n.onnx
    shape = b.shapes.get(node.input[0], ())
    params = [b.consts.get(i) for i in node.input[1:5]]
    if len(shape) != 4 or any(p is None for p in params) or len(node.output) > 1:
        raise _Refused("int8 takes inference BatchNormalization of NCHW tensors")
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)  # type: ignore[union-attr]
    scale = gamma / np.sqrt(var + float(_attr(node, "epsilon", 1e-5)))
    w = scale.astype(np.float32).reshape(-1, 1, 1, 1)
    bias = (beta - mean * scale).astype(np.float32)
    x, weights, out = _weighted(b, n, node.input[0], w, bias)
    window = Window((1, 1), (1, 1), (0, 0, 0, 0))
    attrs = Conv(window, (1, 1), len(scale), weights, out)
    b.add(QNode("conv", n.name, (x,), n.out, n.precision, attrs))


def _dense(b: _Builder, n: _Node) -> None:
    node, name, op = n.onnx, n.name, n.onnx.op_type
    w = b.consts.get(node.input[1])
    if w is None or w.ndim != 2:
        raise _Refused("int8 takes a constant 2-D weight as the second input")
    if op == "MatMul" or not _attr(node, "transB", 0):
        w = w.T
    if op == "Gemm" and (_attr(node, "alpha", 1.0) != 1.0 or _attr(node, "transA", 0)):
        raise _Refused("int8 takes Gemm with alpha 1 and no transA")
    if len(b.shapes.get(node.input[0], ())) < 2:
        raise _Refused("int8 takes a matrix or a batch of them as the first input")
    bias = b.consts.get(node.input[2]) if len(node.input) > 2 else None
    if n.bias is not None:
        bias = b.consts[n.bias]
        if bias.shape != (w.shape[0],):
            raise _Refused("int8 adds a bias of one value per output")
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
    if len(node.input) != 2 or any(i in b.consts for i in node.input):
        raise _Refused("int8 adds exactly two activations, no constant")
    if b.shapes.get(node.input[0]) != b.shapes.get(node.input[1]):
        raise _Refused("int8 adds tensors of one shape (no broadcasting)")
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
    if len(b.shapes.get(n.onnx.input[0], ())) != 4:
        raise _Refused("int8 pools NCHW tensors")
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
        raise _Refused("int8 averages whole windows: no ceil_mode, padding counted")
    if len(_attr(node, "kernel_shape", [1, 1])) != 2:
        raise _Refused("int8 pools NCHW tensors")
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
    axis = int(_attr(node, "axis", 1)) % max(rank, 1)
    if axis == 0 or any(i in b.consts for i in node.input):
        raise _Refused("int8 concatenates activations along an axis other than the batch's")
    xs = tuple(b.as_precision(i, n.precision) for i in node.input)
    if n.precision == "float":
        b.add(QNode("concat", n.name, xs, n.out, "float", Concat(axis=axis)))
        return
    sy = b.scale_of(n.out)
    ratios = np.array([b.scales[x] / sy for x in xs])
    _, shift = quantize_multiplier(np.array(ratios.max()))
    b.scales[n.out] = sy
    rescale = Rescale(np.round(ratios * 2.0 ** int(shift)).astype(np.int64), int(shift))
    b.add(QNode("concat", n.name, xs, n.out, "int8", Concat(rescale, axis)))


def _softmax(b: _Builder, n: _Node) -> None:
    node = n.onnx
    shape = b.shapes[node.input[0]]
    if len(shape) != 2 or int(_attr(node, "axis", -1)) not in (-1, 1):
        raise _Refused("int8 takes Softmax over the last axis of (N, C) logits")
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
    kernel = tuple(_attr(node, "kernel_shape", [1, 1]))
    if len(kernel) != 2 or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
        raise _Refused("int8 takes 2-D MaxPool without dilations")
    if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or len(node.output) > 1:
        raise _Refused("int8 takes MaxPool with explicit pads and no indices")
    window = _window(node, kernel)
    if _attr(node, "ceil_mode", 0):  # the windows past the floor's end: more padding
        window = _ceil_pads(window, b.shapes[node.input[0]][2:])
    _passthrough(b, n, "maxpool", MaxPool(window))


def _ceil_pads(window: Window, size: tuple[int, ...]) -> Window:
    """The window with ceil_mode's extra windows as bottom/right padding (a max ignores it)."""
    top, left, bottom, right = window.pads
    extra = []
    for side, k, s, begin, end in zip(size, window.kernel, window.strides, (top, left),
                                      (bottom, right), strict=True):  # fmt: skip
        out = -(-(side + begin + end - k) // s) + 1
        if (out - 1) * s >= side + begin:  # ONNX: the last window starts inside the input
            out -= 1
        extra.append(max(0, (out - 1) * s + k - (side + begin + end)))
    return Window(window.kernel, window.strides, (top, left, bottom + extra[0], right + extra[1]))


def _reshape(b: _Builder, n: _Node) -> None:
    node = n.onnx
    shape = b.shapes[node.input[0]]
    if node.op_type in ("Identity", "Dropout"):  # Dropout: the identity at inference
        if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
            raise _Refused("int8 takes Dropout without its mask output")
        target = shape
    elif node.op_type in ("Squeeze", "Unsqueeze"):  # the inferred shape says which axes
        target = b.shapes.get(node.output[0], ())
        if not all(d > 0 for d in target) or int(np.prod(target)) != int(np.prod(shape)):
            raise _Refused("int8 takes a squeeze of known shape")
    elif node.op_type == "Flatten":
        axis = int(_attr(node, "axis", 1))
        target = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    else:
        if node.input[1] not in b.consts:
            raise _Refused("int8 takes a constant target shape")
        dims = [int(d) for d in b.consts[node.input[1]]]
        size = int(np.prod(shape))
        known = [d if d != 0 else shape[i] for i, d in enumerate(dims)]
        if -1 in known:
            rest = int(np.prod([d for d in known if d != -1]))
            known[known.index(-1)] = size // rest
        target = tuple(known)
    if not shape or not target or target[0] != shape[0]:
        raise _Refused("int8 keeps the batch dimension of a reshape")
    _passthrough(b, n, "reshape", Reshape(target))


def _transpose(b: _Builder, n: _Node) -> None:
    rank = len(b.shapes[n.onnx.input[0]])
    perm = tuple(int(p) for p in _attr(n.onnx, "perm", list(range(rank))[::-1]))
    if not perm or perm[0] != 0:
        raise _Refused("int8 keeps the batch dimension of a transpose")
    _passthrough(b, n, "transpose", Transpose(perm))


def _slice(b: _Builder, n: _Node) -> None:
    node = n.onnx
    shape = b.shapes[node.input[0]]
    if node.input[1:2] and node.input[1]:  # opset 10+: starts, ends, axes, steps as inputs
        parts = [b.consts.get(i) if i else None for i in node.input[1:5]]
        if any(p is None for p, i in zip(parts, node.input[1:5], strict=False) if i):
            raise _Refused("int8 takes constant slice bounds")
        starts, ends, axes, steps = [*[None if p is None else p.tolist() for p in parts], None][:4]
    else:
        starts, ends = _attr(node, "starts", []), _attr(node, "ends", [])
        axes, steps = _attr(node, "axes", None), None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if len(axes) != 1 or not shape:
        raise _Refused("int8 slices one axis at a time")
    axis = int(axes[0]) % len(shape)
    run = range(shape[axis])[slice(int(starts[0]), int(ends[0]), int(steps[0]))]
    if axis == 0 or run.step < 1 or not len(run):
        raise _Refused("int8 slices forwards, along an axis other than the batch's")
    _passthrough(b, n, "slice", Slice(axis, run.start, run.stop, run.step))


def _split(b: _Builder, n: _Node) -> None:
    """One slice per output."""
    node = n.onnx
    shape = b.shapes[node.input[0]]
    axis = int(_attr(node, "axis", 0)) % max(len(shape), 1)
    if axis == 0:
        raise _Refused("int8 splits along an axis other than the batch's")
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in b.consts:
            raise _Refused("int8 takes constant split sizes")
        sizes = [int(s) for s in b.consts[node.input[1]]]
    elif _attr(node, "split", None) is not None:
        sizes = [int(s) for s in _attr(node, "split", None)]
    else:  # equal parts; opset 18's num_outputs makes the last one smaller
        part = -(-shape[axis] // len(node.output))
        sizes = [min(part, shape[axis] - k * part) for k in range(len(node.output))]
    start = 0
    for k, (out, size) in enumerate(zip(node.output, sizes, strict=True)):
        attrs = Slice(axis, start, start + size)
        start += size
        if out:
            _passthrough(b, replace(n, out=out), "slice", attrs, f"{n.name}:{k}" if k else None)


def _reduce_mean(b: _Builder, n: _Node) -> None:
    """A mean over H and W is a global average pool (and a reshape without keepdims)."""
    node = n.onnx
    shape = b.shapes[node.input[0]]
    axes = _attr(node, "axes", None)
    if len(node.input) > 1 and node.input[1]:  # opset 18: axes as an input
        axes = b.consts[node.input[1]].tolist() if node.input[1] in b.consts else None
    if len(shape) != 4 or axes is None or sorted(int(a) % 4 for a in axes) != [2, 3]:
        raise _Refused("int8 takes ReduceMean over H and W of an NCHW tensor")
    if _attr(node, "keepdims", 1):
        _global_avgpool(b, n)
        return
    pooled = f"{n.out}:pool"  # the same values as the output: the same range
    b.shapes[pooled] = (*shape[:2], 1, 1)
    b.ranges[pooled] = b.ranges.get(n.out, 0.0)
    _global_avgpool(b, replace(n, out=pooled))
    flat = Reshape(tuple(shape[:2]))
    _passthrough(b, n, "reshape", flat, name=f"{n.name}:flat", x=pooled)


def _passthrough(
    b: _Builder, n: _Node, op: str, attrs: MaxPool | Reshape | Transpose | Slice,
    name: str | None = None, x: str | None = None,
) -> None:  # fmt: skip
    """A layout op: runs in whatever precision its input has, with the same scale."""
    x = x or n.onnx.input[0]
    precision = b.precision[x]
    if precision == "int8":
        b.scales[n.out] = b.scales[x]
    b.add(QNode(op, name or n.name, (x,), n.out, precision, attrs))


# ONNX op type → (the int8 op it becomes, its translation)
FROM_ONNX: dict[str, tuple[str, Callable[[_Builder, _Node], None]]] = {
    "Conv": ("conv", _conv),
    "BatchNormalization": ("conv", _batchnorm),
    "Gemm": ("dense", _dense),
    "MatMul": ("dense", _dense),
    "Add": ("add", _add),
    "Sum": ("add", _add),  # of two: old converters' Add
    "GlobalAveragePool": ("global_avgpool", _global_avgpool),
    "MaxPool": ("maxpool", _maxpool),
    "AveragePool": ("avgpool", _avgpool),
    "Concat": ("concat", _concat),
    "Softmax": ("softmax", _softmax),
    "Flatten": ("reshape", _reshape),
    "Reshape": ("reshape", _reshape),
    "Identity": ("reshape", _reshape),
    "Dropout": ("reshape", _reshape),
    "Squeeze": ("reshape", _reshape),
    "Unsqueeze": ("reshape", _reshape),
    "Transpose": ("transpose", _transpose),
    "Slice": ("slice", _slice),
    "Split": ("slice", _split),
    "ReduceMean": ("global_avgpool", _reduce_mean),
}
SUPPORTED = (*FROM_ONNX, *ACTIVATIONS)
_COMPUTE_TYPES = {t for t, (op, _) in FROM_ONNX.items() if op in COMPUTE_OPS}
