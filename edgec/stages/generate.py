"""generate: an int8 QGraph to a C library for a microcontroller (model.h, model.c, edgec_nn.*).

The C keeps the QGraph's arithmetic exactly, in NHWC: weights become `const` arrays (flash),
activations live in one static arena whose offsets come from edgec.memplan, the input and
output are the caller's buffers. No malloc, no stdio; C99, warning-free with -Wall -Wextra.

The C text lives in codegen/mcu/templates/ (string.Template): each op's file holds its layer
struct, with designated initializers naming edgec_nn.h's fields, then, after a `%%` line, its
statements in edgec_model_run. This module computes only the values that fill them.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

import numpy as np

from edgec import int8, memplan
from edgec.errors import EdgecError
from edgec.int8 import QGraph, QNode, QuantizedModel
from edgec.int8.ops import CAST_OPS, COMPUTE_OPS, FloatOp, Requantize, Weights, Window
from edgec.package_files import data_dir
from edgec.targets import TargetProfile
from edgec.versions import versions

LIBRARY = ("edgec_nn.c", "edgec_nn.h")
# the C library's contract is int8 in and out: the caller quantizes its input and dequantizes
# its output with EDGEC_INPUT_SCALE / EDGEC_OUTPUT_SCALE (model.h)
AT_EDGES = ("quantize", "dequantize")


@dataclass(frozen=True)
class Layer:
    name: str
    op: str
    macs: int


@dataclass(frozen=True)
class CLibrary:
    """The generated sources, what they need in memory, and a test vector from the reference."""

    directory: Path
    source: str
    arena_bytes: int
    arena_lower_bound: int
    scratch_bytes: int
    input_shape: tuple[int, ...]  # NHWC as the C sees it
    output_shape: tuple[int, ...]
    input_scale: float
    output_scale: float
    layers: tuple[Layer, ...]
    test_input: np.ndarray  # int8, NHWC, flat
    expected_output: np.ndarray  # int8 from the numpy reference, in the C's memory order
    widened_bytes: int = 0  # flash the int16 copies of 1x1/first-layer weights add (0: none)
    widening: str = ""  # why weights were or were not widened, in words (the stage's note)


# flash kept free for code, parameters and the harness when deciding whether int16 weights fit
FLASH_RESERVE = 64 * 1024


def generate(
    quantized: QuantizedModel,
    profile: TargetProfile,
    directory: Path,
    sample: np.ndarray,
    flash_bytes: int | None = None,
) -> CLibrary:
    """Write model.h, model.c and the kernels into `directory`; `sample` (float, NCHW) becomes
    the test vector the firmware runs. 1x1 and first-layer weights are stored widened to int16
    (12 instructions per 16 MACs instead of 15, twice those weights' flash) only where the
    weights, widened, still fit `flash_bytes` (the board's flash; None: no limit)."""
    graph = quantized.graph
    body = _int8_body(graph, profile)
    values = int8.trace(graph, [sample.astype(np.float32)])
    shapes = {name: tuple(int(d) for d in v.shape) for name, v in values.items()}
    input_q = body[0].inputs[0]
    output_q = body[-1].output
    layout = _Layout(shapes)
    emitter = _Emitter(graph, layout, profile, body, input_q, output_q)
    for step, node in enumerate(body):
        emitter.node(step, node)
    widening = ""
    if emitter.widened:
        weights = sum(n.attrs.weights.values.size for n in body if hasattr(n.attrs, "weights"))
        if flash_bytes is not None and weights + emitter.widened + FLASH_RESERVE > flash_bytes:
            widening = (
                f"int8 weights kept: their int16 copies (+{emitter.widened:,} B) would not fit "
                f"{flash_bytes:,} B of flash"
            )
            emitter = _Emitter(graph, layout, profile, body, input_q, output_q, widen=False)
            for step, node in enumerate(body):
                emitter.node(step, node)
        else:
            widening = f"1x1 and first-layer weights as int16 (+{emitter.widened:,} B flash)"
    plan = emitter.plan(input_q, output_q, len(body))
    provenance = _provenance(quantized.onnx.source, profile)
    model_c = emitter.source(plan, provenance)
    model_h = _header(layout, input_q, output_q, graph, plan, emitter, provenance)
    (directory / "model.c").write_text(model_c, encoding="utf-8")
    (directory / "model.h").write_text(model_h, encoding="utf-8")
    for name in LIBRARY:
        shutil.copyfile(data_dir("codegen") / "mcu" / name, directory / name)
    return CLibrary(
        directory=directory,
        source=quantized.onnx.source,
        arena_bytes=plan.arena_bytes,
        arena_lower_bound=plan.lower_bound,
        scratch_bytes=emitter.scratch * 2,
        input_shape=layout.memory_shape(input_q),
        output_shape=layout.memory_shape(output_q),
        input_scale=graph.scales[input_q],
        output_scale=graph.scales[output_q],
        layers=tuple(emitter.layers),
        test_input=layout.to_memory(input_q, values[input_q]),
        expected_output=layout.to_memory(output_q, values[output_q]),
        widened_bytes=emitter.widened,
        widening=widening,
    )


def _int8_body(graph: QGraph, profile: TargetProfile) -> list[QNode]:
    """The nodes between the input's quantize and the output's dequantize, all int8."""
    nodes = list(graph.nodes)
    # a flatten at the input (an MLP fed NCHW data) comes before the quantize: the C then takes
    # the flattened tensor, in the reference's order
    while len(nodes) > 1 and nodes[0].op == "reshape" and nodes[1].op in ("reshape", "quantize"):
        nodes = nodes[1:]
    islands = [f"{n.name} ({n.attrs.op_type})" for n in nodes if isinstance(n.attrs, FloatOp)]
    if islands:
        raise EdgecError(
            f"{profile.name} runs int8 only, and int8 does not cover these ONNX nodes: "
            f"{', '.join(islands)}; they run in float on TVM targets (x86, rpi4, ...)"
        )
    floats = [n.name for n in nodes if n.op in COMPUTE_OPS and n.precision != "int8"]
    casts = [n for n in nodes[1:-1] if n.op in CAST_OPS]
    if floats or casts or nodes[0].op != "quantize" or nodes[-1].op != "dequantize":
        shown = ", ".join(dict.fromkeys(floats))
        raise EdgecError(
            f"{profile.name} runs int8 only, but these layers were kept in float: {shown}; "
            "build with --sensitivity 0 and no --float-layer"
        )
    return nodes[1:-1]


class _Layout:
    """NCHW (the reference) to NHWC (the C): shapes, and the order of flattened tensors."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.order: dict[str, np.ndarray] = {}  # flat tensor: memory index → reference index

    def memory_shape(self, tensor: str) -> tuple[int, ...]:
        shape = self.shapes[tensor]
        return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape

    def size(self, tensor: str) -> int:
        return int(np.prod(self.shapes[tensor]))

    def to_memory(self, tensor: str, value: np.ndarray) -> np.ndarray:
        if value.ndim == 4:
            return np.ascontiguousarray(value.transpose(0, 2, 3, 1)).reshape(-1)
        order = self.order.get(tensor)
        flat = value.reshape(-1)
        return flat if order is None else flat[order]

    def flatten(self, source: str, target: str) -> None:
        shape = self.shapes[source]
        if len(shape) == 4:
            _, c, h, w = shape
            self.order[target] = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
        elif source in self.order:
            self.order[target] = self.order[source]


@cache
def _template(name: str) -> tuple[Template, Template]:
    """codegen/mcu/templates/NAME: its declarations and, after a `%%` line, its statements (a
    file without `%%` is declarations only)."""
    text = (data_dir("codegen") / "mcu" / "templates" / name).read_text("utf-8")
    declarations, _, statements = text.partition("%%\n")
    return Template(declarations), Template(statements.rstrip("\n"))


def _c_array(kind: str, name: str, values: np.ndarray) -> str:
    """A const array, word-aligned: the DSP kernels read weights with LDRD, which faults on
    unaligned addresses."""
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    rows = [", ".join(flat[i : i + 24]) for i in range(0, len(flat), 24)]
    array, _ = _template("array.c.in")
    return array.substitute(type=kind, name=name, count=len(flat), values=",\n    ".join(rows))


@dataclass(frozen=True)
class _Statements:
    """A layer's statements in edgec_model_run, filled once the arena is planned: `tensors`
    name the tensors whose places (input, output or an arena offset) they take."""

    template: Template
    fields: dict[str, object]
    tensors: dict[str, str | tuple[str, ...]]


class _Emitter:
    def __init__(
        self,
        graph: QGraph,
        layout: _Layout,
        profile: TargetProfile,
        body: list[QNode],
        input_q: str,
        output_q: str,
        widen: bool = True,
    ) -> None:
        self.graph, self.layout, self.profile = graph, layout, profile
        self.widen = widen  # int16 copies of 1x1/first-layer weights (see generate)
        self.widened = 0  # the bytes those copies add
        self.input_q, self.output_q = input_q, output_q
        self.last_read = {name: step for step, n in enumerate(body) for name in n.inputs}
        self.consts: list[str] = []
        self.statements: list[_Statements] = []
        self.layers: list[Layer] = []
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.alias: dict[str, str] = {}  # tensor → the tensor whose storage it shares
        self.scratch = 1  # int16 elements
        self.ident = ""  # the C name of the layer being emitted

    def storage(self, tensor: str) -> str:
        while tensor in self.alias:
            tensor = self.alias[tensor]
        return tensor

    def use(self, tensor: str, step: int) -> None:
        root = self.storage(tensor)
        self.last[root] = max(self.last.get(root, step), step)

    def node(self, step: int, node: QNode) -> None:
        for name in node.inputs:
            self.use(name, step)
        self.ident = f"l{step}"
        KERNELS[node.op](self, node, step)

    def output(self, node: QNode, step: int, in_place: bool = False) -> None:
        """The node's output gets storage of its own, or (in place) its first input's."""
        if in_place:
            self.alias[node.output] = self.storage(node.inputs[0])
        else:
            self.first[node.output] = step
        self.last.setdefault(self.storage(node.output), step)

    def layer(
        self,
        node: QNode,
        fields: dict[str, object],
        macs: int = 0,
        kind: str | None = None,  # the report's name for it, when not its op's
        **tensors: str | tuple[str, ...],
    ) -> None:
        """One layer from its op's template: the struct now, the statements once placed."""
        self.layers.append(Layer(node.name, kind or node.op, macs))
        declarations, statements = _template(f"{node.op}.c.in")
        fields = {"id": self.ident, **fields, "layer": len(self.layers) - 1}
        self.consts.append(declarations.substitute(fields))
        self.statements.append(_Statements(statements, fields, tensors))

    def arrays(self, *arrays: tuple[str, str, np.ndarray]) -> None:
        for kind, suffix, values in arrays:
            self.consts.append(_c_array(kind, f"{self.ident}_{suffix}", values))

    def in_place(self, node: QNode, step: int) -> bool:
        """An add may write over an input that nothing reads afterwards, element by element;
        never over the caller's (const) input, nor when it produces the caller's output."""
        first = node.inputs[0]
        root = self.storage(first)
        return (
            self.last_read.get(first) == step
            and all(self.last_read.get(t) == step for t, r in self.alias.items() if r == root)
            and root != self.storage(self.input_q)
            and node.output != self.output_q
        )

    def window_fields(self, node: QNode) -> dict[str, object]:
        """A pooling window's edgec_maxpool_t fields."""
        w = node.attrs.window
        _, c, h, width = self.layout.shapes[node.inputs[0]]
        _, _, oh, ow = self.layout.shapes[node.output]
        return {"in_h": h, "in_w": width, "c": c, "out_h": oh, "out_w": ow,
                "k_h": w.kernel[0], "k_w": w.kernel[1], "s_h": w.strides[0],
                "s_w": w.strides[1], "p_t": w.pads[0], "p_l": w.pads[1]}  # fmt: skip

    def weight_arrays(self, weights: np.ndarray, w: Weights, out: Requantize) -> None:
        self.arrays(("int8_t", "w", weights), ("int32_t", "b", w.bias),
                    ("int32_t", "m", out.multiplier), ("int32_t", "s", out.shift))  # fmt: skip

    def plan(self, input_q: str, output_q: str, steps: int) -> memplan.Plan:
        """Arena offsets for every tensor the caller does not own."""
        arena = [
            memplan.Buffer(t, self.layout.size(t), self.first[t], self.last.get(t, steps))
            for t in self.first
            if t not in (self.storage(input_q), self.storage(output_q))
        ]
        return memplan.plan(arena)

    def source(self, plan: memplan.Plan, provenance: str) -> str:
        def place(tensor: str) -> str:
            root = self.storage(tensor)
            if root == self.storage(self.input_q):
                return "input"
            if root == self.storage(self.output_q):
                return "output"
            return f"(arena + {plan.offsets[root]})"

        calls = []
        for s in self.statements:
            places = {
                key: place(t) if isinstance(t, str) else ", ".join(place(i) for i in t)
                for key, t in s.tensors.items()
            }
            calls.append(s.template.substitute(s.fields, **places))
        model, _ = _template("model.c.in")
        return model.substitute(
            provenance=provenance,
            constants="".join(self.consts),
            arena_bytes=max(plan.arena_bytes, 4),
            scratch_elements=self.scratch,
            calls="\n".join(calls),
        )


def _conv(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    a = node.attrs
    _, cin, h, w = e.layout.shapes[node.inputs[0]]
    _, cout, oh, ow = e.layout.shapes[node.output]
    oihw = a.weights.values
    weights = oihw.transpose(0, 2, 3, 1).reshape(cout, -1)  # OIHW → OHWI rows
    kh, kw = a.window.kernel
    pairs = None
    depthwise = a.groups == cin == cout and a.groups > 1
    if depthwise:  # depthwise: taps outermost, channels inner
        weights = oihw.reshape(cout, kh * kw).T
        dsp = e.profile.capabilities.has_dsp
        if dsp and (kh, kw) == (3, 3) and a.dilations == (1, 1):
            # edgec_nn.c's 3x3 path: channel by channel, from a plane of int16 with padding
            flip, plane = _plane(a.window, h, w, oh, ow)
            # C x 9, in the plane's orientation (a transposed plane takes transposed windows)
            weights = (oihw.transpose(0, 1, 3, 2) if flip else oihw).reshape(cout, 9)
            e.scratch = max(e.scratch, plane)
        else:
            if dsp and cout % 4 == 0:
                weights = _depthwise_pairs(weights)
            # int32 accumulators; on DSP builds also a table of tap pointers and a run of zeros
            e.scratch = max(e.scratch, 3 * cout + 2 * (kh * kw + 1))
    elif e.profile.capabilities.has_dsp and a.groups == 1:
        padded = -(-weights.shape[1] // 4) * 4  # the SMLAD kernels read rows 4 at a time
        weights = _interleave_pairs(np.pad(weights, ((0, 0), (0, padded - weights.shape[1]))))
        # two interleaved int16 columns; for 1-3 channels the field as int8 rows; then
        # two pixels' int32 accumulators
        field = padded // 2 if cin % 4 else 0
        e.scratch = max(e.scratch, 2 * padded + field + 4 * cout)
        pairs = _requant_pairs(a.weights, a.out)
    w16 = "0"
    if e.widen and pairs is not None and cout % 2 == 0 and ((kh, kw) == (1, 1) or cin <= 3):
        # 1x1 layers (most of a MobileNet's MACs) and first layers (few weights, many pixels)
        # take their weights widened at build time: 12 instructions per 16 MACs instead of 15,
        # for twice these weights' flash
        e.arrays(("int16_t", "w16", _widen_groups(weights)), ("int32_t", "q", pairs))
        params = {"w": "0", "bias": "0", "mult": "0", "shift": "0"}
        w16 = f"{e.ident}_w16"
        e.widened += weights.size  # one more byte per weight
    elif pairs is not None and cout % 2 == 0:  # the kernel reads nothing else
        e.arrays(("int8_t", "w", weights), ("int32_t", "q", pairs))
        params = {"w": f"{e.ident}_w", "bias": "0", "mult": "0", "shift": "0"}
    else:
        e.weight_arrays(weights, a.weights, a.out)
        if pairs is not None:
            e.arrays(("int32_t", "q", pairs))
        params = {"w": f"{e.ident}_w", "bias": f"{e.ident}_b", "mult": f"{e.ident}_m",
                  "shift": f"{e.ident}_s"}  # fmt: skip
    (sh, sw), (pt, pl), (dh, dw) = a.window.strides, a.window.pads[:2], a.dilations
    fields = {"in_h": h, "in_w": w, "in_c": cin, "out_h": oh, "out_w": ow, "out_c": cout,
              "k_h": kh, "k_w": kw, "s_h": sh, "s_w": sw, "p_t": pt, "p_l": pl, "d_h": dh,
              "d_w": dw, "groups": a.groups, "lo": a.out.lo, "hi": a.out.hi,
              "pairs": "0" if pairs is None else f"{e.ident}_q", "w16": w16, **params,
              "kernel": "edgec_depthwise_s8" if depthwise else "edgec_conv_s8"}  # fmt: skip
    macs = oh * ow * cout * kh * kw * (cin // a.groups)
    kind = "depthwise" if a.groups > 1 else "conv"
    e.layer(node, fields, macs, kind, input=node.inputs[0], output=node.output)


def _dense(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    a = node.attrs
    weights = a.weights.values
    order = e.layout.order.get(node.inputs[0])
    if order is not None:  # the input was flattened from NHWC: permute the columns
        weights = weights[:, order]
    out_n, in_n = weights.shape
    if e.profile.capabilities.has_dsp and in_n % 4 == 0:
        e.scratch = max(e.scratch, in_n)
        weights = _interleave_rows(weights, 4)  # the SMLAD kernel reads 4 rows at a time
    e.weight_arrays(weights, a.weights, a.out)
    fields = {"in_n": in_n, "out_n": out_n, "lo": a.out.lo, "hi": a.out.hi}
    e.layer(node, fields, in_n * out_n, input=node.inputs[0], output=node.output)


def _add(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step, in_place=e.in_place(node, step))
    r = node.attrs.out
    mult_a, mult_b = (int(m) for m in r.multipliers)
    fields = {"size": e.layout.size(node.output), "mult_a": mult_a, "mult_b": mult_b,
              "shift": r.shift, "lo": r.lo, "hi": r.hi}  # fmt: skip
    e.layer(node, fields, a=node.inputs[0], b=node.inputs[1], output=node.output)


def _global_avgpool(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    r = node.attrs.out
    _, c, h, w = e.layout.shapes[node.inputs[0]]
    fields = {"in_h": h, "in_w": w, "c": c, "mult": int(r.multiplier[0]),
              "shift": int(r.shift[0]), "lo": r.lo, "hi": r.hi}  # fmt: skip
    e.layer(node, fields, input=node.inputs[0], output=node.output)


def _maxpool(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    e.layer(node, e.window_fields(node), input=node.inputs[0], output=node.output)


def _avgpool(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    r = node.attrs.out
    fields = {**e.window_fields(node), "mult": int(r.multiplier[0]), "shift": int(r.shift[0])}
    e.layer(node, fields, input=node.inputs[0], output=node.output)


def _concat(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    r = node.attrs.out
    shapes = [e.layout.shapes[i] for i in node.inputs]
    if node.attrs.axis != 1:
        _no_kernel(e, node, f"concatenation along axis {node.attrs.axis}")
    if any(i in e.layout.order for i in node.inputs):
        raise EdgecError(
            f"edgec's C generator cannot concatenate flattened feature maps ({node.name})"
        )
    pixels = int(np.prod(shapes[0][2:])) if len(shapes[0]) == 4 else 1
    channels = np.array([s[1] for s in shapes], np.uint16)
    e.arrays(("uint16_t", "c", channels), ("int32_t", "m", r.multipliers))
    fields = {"pixels": pixels, "inputs": len(shapes), "shift": r.shift}
    e.layer(node, fields, input_list=node.inputs, output=node.output)


def _softmax(e: _Emitter, node: QNode, step: int) -> None:
    e.output(node, step)
    rows, n = e.layout.shapes[node.inputs[0]]
    if node.inputs[0] in e.layout.order:
        e.layout.order[node.output] = e.layout.order[node.inputs[0]]
    e.arrays(("int32_t", "t", node.attrs.table))
    fields = {"rows": rows, "n": n}
    e.layer(node, fields, input=node.inputs[0], output=node.output)


def _reshape(e: _Emitter, node: QNode, step: int) -> None:
    """No data movement: the output shares its input's storage, flattened in NHWC order."""
    e.layout.flatten(node.inputs[0], node.output)
    e.alias[node.output] = node.inputs[0]
    name = node.name.replace("*/", "* /")  # it goes into a C comment
    e.layer(node, {"name": name})


def _no_kernel(e: _Emitter, node: QNode, what: str) -> None:
    raise EdgecError(
        f"edgec's C generator has no kernel for {what} ({node.name}); build for a TVM target "
        "(x86, rpi4, ...)"
    )


def _transpose(e: _Emitter, node: QNode, step: int) -> None:
    _no_kernel(e, node, "int8 transpose")


def _slice(e: _Emitter, node: QNode, step: int) -> None:
    _no_kernel(e, node, "int8 slice / split")


def _float_op(e: _Emitter, node: QNode, step: int) -> None:
    _no_kernel(e, node, f"a float {node.attrs.op_type}")  # _int8_body refuses it first


KERNELS: dict[str, Callable[[_Emitter, QNode, int], None]] = {
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
}


def _interleave_pairs(rows: np.ndarray) -> np.ndarray:
    """Rows 2i and 2i+1 interleaved in groups of 4 bytes (the DSP kernel reads both channels
    of a pair with one doubleword load); an odd last row stays as it is."""
    return _interleave_rows(rows, 2)


def _interleave_rows(rows: np.ndarray, n: int) -> np.ndarray:
    """Each run of n rows interleaved in groups of 4 bytes (the DSP kernels read the n rows'
    next 4 weights together); the rows after the last full run stay as they are."""
    out = rows.copy()
    full = len(rows) // n * n
    k = rows.shape[1]
    grouped = rows[:full].reshape(full // n, n, k // 4, 4).transpose(0, 2, 1, 3)
    out[:full] = grouped.reshape(full, k)
    return out


def _widen_groups(weights: np.ndarray) -> np.ndarray:
    """Interleaved int8 weights as int16, each group of 4 in SXTB16 order (x0 x2 x1 x3): what
    edgec_conv_t.w16 holds."""
    return weights.reshape(-1, 4)[:, [0, 2, 1, 3]].astype(np.int16).reshape(-1)


def _requant_pairs(w: Weights, out: Requantize) -> np.ndarray | None:
    """edgec_conv_t.pairs: per pair of output channels {bias0, bias1, mult0, mult1, shift0 - 33,
    shift1 - 33}, for layers whose every shift is in (32, 64) (requant's one-word path) and
    whose clamp is one SSAT or USAT ([-128, 127] or [0, 127]); None for other layers."""
    shift = np.asarray(out.shift, np.int64)
    if not ((shift > 32) & (shift < 64)).all() or (out.lo, out.hi) not in ((-128, 127), (0, 127)):
        return None
    full = len(shift) // 2 * 2
    if full == 0:
        return None
    columns = (np.asarray(w.bias, np.int64), np.asarray(out.multiplier, np.int64), shift - 33)
    return np.stack([c[:full].reshape(-1, 2) for c in columns], axis=1).reshape(-1)


# edgec_nn.c's DW_PITCH: the row pitch (int16 elements) of the 3x3 depthwise path's planes
DW_PITCH = 64


def _plane(window: Window, h: int, w: int, oh: int, ow: int) -> tuple[bool, int]:
    """Whether edgec_nn.c's 3x3 depthwise path runs the layer transposed (taller than wide, or
    only so its plane fits DW_PITCH), and the int16 scratch it takes: the channel with its
    padding and a spare column, plane_h rows of its pitch."""
    (kh, kw), (sh, sw), (pt, pl) = window.kernel, window.strides, window.pads[:2]

    def plane(kh: int, sh: int, pt: int, h: int, oh: int, kw: int, sw: int, pl: int, w: int,
              ow: int) -> tuple[int, int]:  # fmt: skip
        bottom = max(0, (oh - 1) * sh + kh - pt - h)
        right = max(0, (ow - 1) * sw + kw - pl - w)
        return pt + h + bottom, pl + w + right + 1

    rows, width = plane(kh, sh, pt, h, oh, kw, sw, pl, w, ow)
    t_rows, t_width = plane(kw, sw, pl, w, ow, kh, sh, pt, h, oh)
    flip = t_width <= DW_PITCH and (width > DW_PITCH or oh > ow)
    if flip:
        rows, width = t_rows, t_width
    return flip, rows * (DW_PITCH if width <= DW_PITCH else width)


def _depthwise_pairs(weights: np.ndarray) -> np.ndarray:
    """Depthwise weights (taps x C) as the DSP kernel reads them: per group of 4 channels, per
    pair of taps, [w(t0, c) w(t0, c+1) w(t1, c) w(t1, c+1)] then the same for c+2, c+3; an odd
    last tap follows as [w(t, c) .. w(t, c+3)]."""
    taps, c = weights.shape
    full = taps // 2 * 2
    pairs = weights[:full].reshape(-1, 2, c // 4, 2, 2)  # (P, tap, group, half, channel)
    paired = pairs.transpose(2, 0, 3, 1, 4).reshape(c // 4, -1)  # (group, P * 8)
    last = weights[full:].T.reshape(c // 4, -1)  # (group, 4 or 0)
    return np.concatenate([paired, last], axis=1).reshape(-1)


def _provenance(model: str, profile: TargetProfile) -> str:
    command = shlex.join(["edgec", *sys.argv[1:]]) if sys.argv else "edgec"
    provenance, _ = _template("provenance.c.in")
    return provenance.substitute(
        version=versions()["edgec"],
        target=profile.name,
        model=model,
        command=command.replace("*/", "* /"),
    )


def _header(
    layout: _Layout,
    input_q: str,
    output_q: str,
    graph: QGraph,
    plan: memplan.Plan,
    emitter: _Emitter,
    provenance: str,
) -> str:
    dims = lambda tensor: ", ".join(str(d) for d in layout.memory_shape(tensor))  # noqa: E731
    header, _ = _template("model.h.in")
    return header.substitute(
        provenance=provenance,
        input_size=layout.size(input_q),
        output_size=layout.size(output_q),
        input_shape=dims(input_q),
        output_shape=dims(output_q),
        input_scale=repr(graph.scales[input_q]),
        output_scale=repr(graph.scales[output_q]),
        arena_bytes=plan.arena_bytes,
        scratch_bytes=emitter.scratch * 2,
        layers=len(emitter.layers),
    )
