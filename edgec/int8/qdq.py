"""int8 → QDQ: the QGraph as an ONNX model of QuantizeLinear/DequantizeLinear around float ops,
which ONNX Runtime fuses into its own int8 kernels: the reference an int8 build is checked
against, and the int8 baseline it is timed against."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgec.int8.fixed_point import INT8_MAX, INT8_MIN
from edgec.int8.graph import QGraph, QNode
from edgec.int8.ops import Clip, Requantize, Rescale
from edgec.onnx_graph import OPSET


def to_qdq(graph: QGraph, float_graph: Any) -> Any:
    """The QDQ model; `float_graph` (the float ONNX graph) lends its input and output."""
    from onnx import helper

    qdq = _Exporter(graph)
    for node in graph.nodes:
        EXPORT[node.op](qdq, node)
    inputs = list(float_graph.input[:1])
    outputs = list(float_graph.output[:1])
    return helper.make_model(
        helper.make_graph(qdq.nodes, "edgec-int8-qdq", inputs, outputs, qdq.initializers()),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=8,
    )


class _Exporter:
    """The ONNX nodes and constants written so far."""

    def __init__(self, graph: QGraph) -> None:
        self.graph = graph
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.views: set[str] = set()

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def initializers(self) -> list[Any]:
        seen: dict[str, Any] = {}
        for i in self.inits:
            seen.setdefault(i.name, i)
        return list(seen.values())

    def dequantize(self, tensor: str, out: str) -> None:
        scale = self.const(f"{tensor}/scale", np.float32(self.graph.scales[tensor]))
        zero = self.const(f"{tensor}/zero", np.int8(0))
        self.node("DequantizeLinear", [tensor, scale, zero], [out])

    def dq(self, tensor: str) -> str:
        """A float view of an int8 tensor (one DequantizeLinear however many read it)."""
        out = f"{tensor}/dq"
        if tensor not in self.views:
            self.views.add(tensor)
            self.dequantize(tensor, out)
        return out

    def q(self, value: str, tensor: str) -> None:
        scale = self.const(f"{tensor}/scale", np.float32(self.graph.scales[tensor]))
        zero = self.const(f"{tensor}/zero", np.int8(0))
        self.node("QuantizeLinear", [value, scale, zero], [tensor])

    def weights(self, node: QNode, transposed: bool = False) -> tuple[str, str]:
        """A conv or dense layer's weight and bias as float values (`transposed`: a dense
        layer's (in, out), as MatMul reads it)."""
        weights = node.attrs.weights
        values = weights.values.T if transposed else weights.values
        if weights.scale is None:  # a float layer
            w = self.const(f"{node.name}/w", values)
            return w, self.const(f"{node.name}/b", weights.bias)
        sx, sw = self.graph.scales[node.inputs[0]], weights.scale
        channels = len(sw)
        wq = self.const(f"{node.name}/wq", values)
        ws = self.const(f"{node.name}/ws", sw.astype(np.float32))
        wz = self.const(f"{node.name}/wz", np.zeros(channels, np.int8))
        bq = self.const(f"{node.name}/bq", weights.bias)
        bs = self.const(f"{node.name}/bs", (sx * sw).astype(np.float32))
        bz = self.const(f"{node.name}/bz", np.zeros(channels, np.int32))
        self.node("DequantizeLinear", [wq, ws, wz], [f"{wq}/dq"], axis=1 if transposed else 0)
        self.node("DequantizeLinear", [bq, bs, bz], [f"{bq}/dq"], axis=0)
        return f"{wq}/dq", f"{bq}/dq"

    def activate(self, low: float | None, high: float | None, value: str) -> str:
        out = f"{value}/act"
        if low == 0.0 and high is None:
            self.node("Relu", [value], [out])
        else:
            lo_name = self.const(f"{out}/lo", np.float32(-np.inf if low is None else low))
            hi_name = self.const(f"{out}/hi", np.float32(np.inf if high is None else high))
            self.node("Clip", [value, lo_name, hi_name], [out])
        return out


def _bounds(node: QNode, graph: QGraph) -> tuple[float | None, float | None]:
    """The fused activation of a compute node, in float (None: unbounded)."""
    out = getattr(node.attrs, "out", None)
    if isinstance(out, Clip):
        return out.low, out.high
    if isinstance(out, Requantize | Rescale):
        sy = graph.scales[node.output]
        return (
            None if out.lo == INT8_MIN else out.lo * sy,
            None if out.hi == INT8_MAX else out.hi * sy,
        )
    return None, None


def _shape(graph: QGraph, tensor: str) -> tuple[int, ...]:
    """A tensor's shape; the int8 graph's own names (`t:q`) have their ONNX tensor's."""
    return graph.shapes.get(tensor) or graph.shapes.get(tensor.rsplit(":", 1)[0], ())


Emit = Callable[[_Exporter, QNode, list[str], str], None]


def _compute(emit: Emit) -> Callable[[_Exporter, QNode], None]:
    """A compute op: its float op between dequantized inputs and a quantized output (int8), and
    its fused activation."""

    def export(qdq: _Exporter, node: QNode) -> None:
        int8 = node.precision == "int8"
        ins = [qdq.dq(i) for i in node.inputs] if int8 else list(node.inputs)
        raw = f"{node.output}/raw" if int8 else node.output
        low, high = _bounds(node, qdq.graph)
        activated = (low, high) != (None, None)
        value = f"{raw}/pre" if activated else raw
        emit(qdq, node, ins, value)
        if activated:
            qdq.node("Identity", [qdq.activate(low, high, value)], [raw])
        if int8:
            qdq.q(raw, node.output)

    return export


@_compute
def _conv(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    a = node.attrs
    w, bias = qdq.weights(node)
    qdq.node("Conv", [ins[0], w, bias], [value], strides=list(a.window.strides),
             pads=list(a.window.pads), dilations=list(a.dilations), group=a.groups,
             kernel_shape=list(a.window.kernel))  # fmt: skip


@_compute
def _dense(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    if node.attrs.weights.values.ndim == len(_shape(qdq.graph, node.output)):
        w, bias = qdq.weights(node)
        qdq.node("Gemm", [ins[0], w, bias], [value], transB=1)
        return
    w, bias = qdq.weights(node, transposed=True)  # Gemm takes matrices only: MatMul and Add
    qdq.node("MatMul", [ins[0], w], [f"{value}/mm"])
    qdq.node("Add", [f"{value}/mm", bias], [value])


@_compute
def _add(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    qdq.node("Add", ins, [value])


@_compute
def _global_avgpool(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    qdq.node("GlobalAveragePool", ins, [value])


@_compute
def _avgpool(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    w = node.attrs.window
    qdq.node("AveragePool", ins, [value], kernel_shape=list(w.kernel), strides=list(w.strides),
             pads=list(w.pads), count_include_pad=1)  # fmt: skip


@_compute
def _concat(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    qdq.node("Concat", ins, [value], axis=node.attrs.axis)


@_compute
def _softmax(qdq: _Exporter, node: QNode, ins: list[str], value: str) -> None:
    qdq.node("Softmax", ins, [value], axis=-1)


def _maxpool(qdq: _Exporter, node: QNode) -> None:
    w = node.attrs.window
    qdq.node("MaxPool", [node.inputs[0]], [node.output], kernel_shape=list(w.kernel),
             strides=list(w.strides), pads=list(w.pads))  # fmt: skip


def _reshape(qdq: _Exporter, node: QNode) -> None:
    shape = qdq.const(f"{node.name}/shape", np.array(node.attrs.shape, np.int64))
    qdq.node("Reshape", [node.inputs[0], shape], [node.output])


def _transpose(qdq: _Exporter, node: QNode) -> None:
    qdq.node("Transpose", [node.inputs[0]], [node.output], perm=list(node.attrs.perm))


def _slice(qdq: _Exporter, node: QNode) -> None:
    a = node.attrs
    bounds = [qdq.const(f"{node.name}/{k}", np.array([v], np.int64))
              for k, v in (("start", a.start), ("stop", a.stop), ("axis", a.axis),
                           ("step", a.step))]  # fmt: skip
    qdq.node("Slice", [node.inputs[0], *bounds], [node.output])


def _float_op(qdq: _Exporter, node: QNode) -> None:
    """The island's ONNX nodes (one; more where onnx's version converter expanded it), reading
    the QNode's inputs; every other name they use gets the QNode's name before it, so that the
    float_ops of one node with several outputs, and their constants, never collide."""
    import onnx

    model = onnx.load_from_string(node.attrs.model)
    kept = model.graph.output[0].name
    names = {i.name: x for i, x in zip(model.graph.input, node.inputs, strict=True)}

    def name(tensor: str) -> str:
        if not tensor or tensor == kept:
            return tensor
        return names.get(tensor, f"{node.name}/{tensor}")

    for k, original in enumerate(model.graph.node):
        copy = onnx.NodeProto()
        copy.CopyFrom(original)
        del copy.input[:]
        del copy.output[:]
        copy.input.extend(name(i) for i in original.input)
        copy.output.extend(name(o) for o in original.output)
        copy.name = node.name if k == 0 else f"{node.name}/{k}"
        qdq.nodes.append(copy)
    for init in model.graph.initializer:
        renamed = onnx.TensorProto()
        renamed.CopyFrom(init)
        renamed.name = name(init.name)
        qdq.inits.append(renamed)


def _quantize(qdq: _Exporter, node: QNode) -> None:
    qdq.q(node.inputs[0], node.output)


def _dequantize(qdq: _Exporter, node: QNode) -> None:
    qdq.dequantize(node.inputs[0], node.output)


EXPORT: dict[str, Callable[[_Exporter, QNode], None]] = {
    "conv": _conv,
    "dense": _dense,
    "add": _add,
    "global_avgpool": _global_avgpool,
    "avgpool": _avgpool,
    "concat": _concat,
    "softmax": _softmax,
    "maxpool": _maxpool,
    "reshape": _reshape,
    "transpose": _transpose,
    "slice": _slice,
    "float_op": _float_op,
    "quantize": _quantize,
    "dequantize": _dequantize,
}
