"""generate: an int8 QGraph to a C library for a microcontroller (model.h, model.c, edgec_nn.*).

The C keeps the QGraph's arithmetic exactly, in NHWC: weights become `const` arrays (flash),
activations live in one static arena whose offsets come from edgec.memplan, the input and
output are the caller's buffers. No malloc, no stdio; C99, warning-free with -Wall -Wextra.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec import memplan, qgraph
from edgec.errors import EdgecError
from edgec.package_files import data_dir
from edgec.qgraph import QGraph, QNode
from edgec.stages.quantize import QuantizedModel
from edgec.targets import TargetProfile
from edgec.versions import versions

LIBRARY = ("edgec_nn.c", "edgec_nn.h")
MCU_OPS = ("conv", "dense", "add", "global_avgpool", "avgpool", "maxpool", "concat", "softmax",
           "reshape")  # fmt: skip


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


def generate(
    quantized: QuantizedModel, profile: TargetProfile, directory: Path, sample: np.ndarray
) -> CLibrary:
    """Write model.h, model.c and the kernels into `directory`; `sample` (float, NCHW) becomes
    the test vector the firmware runs."""
    graph = quantized.graph
    body = _int8_body(graph, profile)
    values = qgraph.trace(graph, [sample.astype(np.float32)])
    shapes = {name: tuple(int(d) for d in v.shape) for name, v in values.items()}
    input_q = body[0].inputs[0]
    output_q = body[-1].output
    layout = _Layout(shapes)
    emitter = _Emitter(graph, layout, profile, body, input_q, output_q)
    for step, node in enumerate(body):
        emitter.node(step, node)
    plan = emitter.plan(input_q, output_q, len(body))
    model_c = emitter.source(plan, input_q, output_q, body, quantized.onnx.source, profile)
    model_h = _header(layout, input_q, output_q, graph, plan, emitter, profile)
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
    )


def _int8_body(graph: QGraph, profile: TargetProfile) -> list[QNode]:
    """The nodes between the input's quantize and the output's dequantize, all int8."""
    nodes = list(graph.nodes)
    # a flatten at the input (an MLP fed NCHW data) comes before the quantize: the C then takes
    # the flattened tensor, in the reference's order
    while len(nodes) > 1 and nodes[0].op == "reshape" and nodes[1].op in ("reshape", "quantize"):
        nodes = nodes[1:]
    floats = [n.name for n in nodes if n.op in qgraph.COMPUTE_OPS and n.precision != "int8"]
    casts = [n for n in nodes[1:-1] if n.op in qgraph.CAST_OPS]
    if floats or casts or nodes[0].op != "quantize" or nodes[-1].op != "dequantize":
        shown = ", ".join(dict.fromkeys(floats))
        raise EdgecError(
            f"{profile.name} runs int8 only, but these layers were kept in float: {shown}; "
            "build with --sensitivity 0 and no --float-layer"
        )
    unsupported = sorted({n.op for n in nodes[1:-1]} - set(MCU_OPS))
    if unsupported:
        raise EdgecError(
            f"edgec's C generator does not support {', '.join(unsupported)}; "
            f"supported: {', '.join(MCU_OPS)}"
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


def _c_array(kind: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    rows = [", ".join(flat[i : i + 24]) for i in range(0, len(flat), 24)]
    body = ",\n    ".join(rows)
    # word-aligned: the DSP kernels read weights with LDRD, which faults on unaligned addresses
    align = " __attribute__((aligned(4)))"
    return f"static const {kind} {name}[{len(flat)}]{align} = {{\n    {body}\n}};\n"


class _Emitter:
    def __init__(
        self,
        graph: QGraph,
        layout: _Layout,
        profile: TargetProfile,
        body: list[QNode],
        input_q: str,
        output_q: str,
    ) -> None:
        self.graph, self.layout, self.profile = graph, layout, profile
        self.input_q, self.output_q = input_q, output_q
        self.last_read = {name: step for step, n in enumerate(body) for name in n.inputs}
        self.consts: list[str] = []
        self.calls: list[str] = []
        self.layers: list[Layer] = []
        self.first: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self.alias: dict[str, str] = {}  # tensor → the tensor whose storage it shares
        self.scratch = 1  # int16 elements

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
        p, a, ident = node.params, node.attrs, f"l{step}"
        out = node.output
        if node.op == "reshape":
            self.layout.flatten(node.inputs[0], out)
            self.alias[out] = node.inputs[0]
            self.layers.append(Layer(node.name, "reshape", 0))
            name = node.name.replace("*/", "* /").replace("@", "_")  # a C comment, no tensor
            self.calls.append(f"    /* {name}: reshape, no data movement */")
            return
        if node.op == "add" and self._in_place(node, step):
            self.alias[out] = self.storage(node.inputs[0])
        else:
            self.first[out] = step
        self.last.setdefault(self.storage(out), step)
        x, y = f"@{node.inputs[0]}", f"@{out}"
        if node.op == "conv":
            self._conv(ident, node, x, y)
        elif node.op == "dense":
            self._dense(ident, node, x, y)
        elif node.op == "add":
            size = self.layout.size(out)
            self.consts.append(
                f"static const edgec_add_t {ident} = {{{size}, {int(p['ma'])}, {int(p['mb'])}, "
                f"{int(p['n'])}, {a['lo']}, {a['hi']}}};\n"
            )
            self.calls.append(f"    edgec_add_s8(&{ident}, {x}, @{node.inputs[1]}, {y});")
            self.layers.append(Layer(node.name, "add", 0))
        elif node.op == "global_avgpool":
            _, c, h, w = self.layout.shapes[node.inputs[0]]
            self.consts.append(
                f"static const edgec_avgpool_t {ident} = {{{h}, {w}, {c}, {int(p['m'][0])}, "
                f"{int(p['n'][0])}, {a['lo']}, {a['hi']}}};\n"
            )
            self.calls.append(f"    edgec_global_avgpool_s8(&{ident}, {x}, {y});")
            self.layers.append(Layer(node.name, "global_avgpool", 0))
        elif node.op in ("maxpool", "avgpool"):
            window = self._window(node)
            if node.op == "maxpool":
                self.consts.append(f"static const edgec_maxpool_t {ident} = {window};\n")
            else:
                self.consts.append(
                    f"static const edgec_avgpool_window_t {ident} = {{{window}, "
                    f"{int(p['m'][0])}, {int(p['n'][0])}}};\n"
                )
            self.calls.append(f"    edgec_{node.op}_s8(&{ident}, {x}, {y});")
            self.layers.append(Layer(node.name, node.op, 0))
        elif node.op == "concat":
            self._concat(ident, node, y)
        elif node.op == "softmax":
            rows, n = self.layout.shapes[node.inputs[0]]
            if node.inputs[0] in self.layout.order:
                self.layout.order[out] = self.layout.order[node.inputs[0]]
            self.consts.append(_c_array("int32_t", f"{ident}_t", p["table"]))
            self.consts.append(
                f"static const edgec_softmax_t {ident} = {{{rows}, {n}, {ident}_t}};\n"
            )
            self.calls.append(f"    edgec_softmax_s8(&{ident}, {x}, {y});")
            self.layers.append(Layer(node.name, "softmax", 0))
        self.calls.append(f"    EDGEC_LAYER_DONE({len(self.layers) - 1});")

    def _window(self, node: QNode) -> str:
        """A pooling window's fields, in edgec_maxpool_t order."""
        a = node.attrs
        _, c, h, w = self.layout.shapes[node.inputs[0]]
        _, _, oh, ow = self.layout.shapes[node.output]
        (kh, kw), (sh, sw) = a["kernel"], a["strides"]
        pads = f"{a['pads'][0]}, {a['pads'][1]}"
        return f"{{{h}, {w}, {c}, {oh}, {ow}, {kh}, {kw}, {sh}, {sw}, {pads}}}"

    def _concat(self, ident: str, node: QNode, y: str) -> None:
        p = node.params
        shapes = [self.layout.shapes[i] for i in node.inputs]
        if any(i in self.layout.order for i in node.inputs):
            raise EdgecError(
                f"edgec's C generator cannot concatenate flattened feature maps ({node.name})"
            )
        pixels = int(np.prod(shapes[0][2:])) if len(shapes[0]) == 4 else 1
        channels = np.array([s[1] for s in shapes], np.uint16)
        self.consts.append(_c_array("uint16_t", f"{ident}_c", channels))
        self.consts.append(_c_array("int32_t", f"{ident}_m", p["m"]))
        self.consts.append(
            f"static const edgec_concat_t {ident} = {{{pixels}, {len(shapes)}, {ident}_c, "
            f"{ident}_m, {int(p['n'])}}};\n"
        )
        pointers = ", ".join(f"@{i}" for i in node.inputs)
        self.calls.append(f"    {{\n        const int8_t *const ins[] = {{{pointers}}};")
        self.calls.append(f"        edgec_concat_s8(&{ident}, ins, {y});\n    }}")
        self.layers.append(Layer(node.name, "concat", 0))

    def _in_place(self, node: QNode, step: int) -> bool:
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

    def _conv(self, ident: str, node: QNode, x: str, y: str) -> None:
        p, a = node.params, node.attrs
        _, cin, h, w = self.layout.shapes[node.inputs[0]]
        _, cout, oh, ow = self.layout.shapes[node.output]
        weights = p["w"].transpose(0, 2, 3, 1).reshape(cout, -1)  # OIHW → OHWI rows
        kh, kw = a["kernel"]
        groups = a["groups"]
        if groups == cin == cout and groups > 1:  # depthwise: taps outermost, channels inner
            weights = p["w"].reshape(cout, kh * kw).T
            if self.profile.capabilities.has_dsp and cout % 4 == 0:
                weights = _depthwise_pairs(weights)
            # int32 accumulators; on DSP builds also a table of tap pointers and a run of zeros
            self.scratch = max(self.scratch, 3 * cout + 2 * (kh * kw + 1))
        elif self.profile.capabilities.has_dsp and groups == 1:
            padded = -(-weights.shape[1] // 4) * 4  # the SMLAD kernels read rows 4 at a time
            weights = _interleave_pairs(np.pad(weights, ((0, 0), (0, padded - weights.shape[1]))))
            # two interleaved int16 columns; for 1-3 channels the field as int8 rows; then
            # two pixels' int32 accumulators
            field = padded // 2 if cin % 4 else 0
            self.scratch = max(self.scratch, 2 * padded + field + 4 * cout)
        self._tables(ident, weights, p)
        self.consts.append(
            f"static const edgec_conv_t {ident} = {{{h}, {w}, {cin}, {oh}, {ow}, {cout}, "
            f"{kh}, {kw}, {a['strides'][0]}, {a['strides'][1]}, {a['pads'][0]}, {a['pads'][1]}, "
            f"{a['dilations'][0]}, {a['dilations'][1]}, {groups}, {a['lo']}, {a['hi']}, "
            f"{ident}_w, {ident}_b, {ident}_m, {ident}_s}};\n"
        )
        self.calls.append(f"    edgec_conv_s8(&{ident}, {x}, {y}, scratch);")
        macs = oh * ow * cout * kh * kw * (cin // groups)
        self.layers.append(Layer(node.name, "depthwise" if groups > 1 else "conv", macs))

    def _dense(self, ident: str, node: QNode, x: str, y: str) -> None:
        p, a = node.params, node.attrs
        weights = p["w"]
        order = self.layout.order.get(node.inputs[0])
        if order is not None:  # the input was flattened from NHWC: permute the columns
            weights = weights[:, order]
        out_n, in_n = weights.shape
        if self.profile.capabilities.has_dsp and in_n % 4 == 0:
            self.scratch = max(self.scratch, in_n)
            weights = _interleave_rows(weights, 4)  # the SMLAD kernel reads 4 rows at a time
        self._tables(ident, weights, p)
        self.consts.append(
            f"static const edgec_dense_t {ident} = {{{in_n}, {out_n}, {a['lo']}, {a['hi']}, "
            f"{ident}_w, {ident}_b, {ident}_m, {ident}_s}};\n"
        )
        self.calls.append(f"    edgec_dense_s8(&{ident}, {x}, {y}, scratch);")
        self.layers.append(Layer(node.name, "dense", in_n * out_n))

    def _tables(self, ident: str, weights: np.ndarray, p: dict[str, np.ndarray]) -> None:
        self.consts.append(_c_array("int8_t", f"{ident}_w", weights))
        self.consts.append(_c_array("int32_t", f"{ident}_b", p["b"]))
        self.consts.append(_c_array("int32_t", f"{ident}_m", p["m"]))
        self.consts.append(_c_array("int32_t", f"{ident}_s", p["n"]))

    def plan(self, input_q: str, output_q: str, steps: int) -> memplan.Plan:
        """Arena offsets for every tensor the caller does not own."""
        arena = [
            memplan.Buffer(t, self.layout.size(t), self.first[t], self.last.get(t, steps))
            for t in self.first
            if t not in (self.storage(input_q), self.storage(output_q))
        ]
        return memplan.plan(arena)

    def source(
        self,
        plan: memplan.Plan,
        input_q: str,
        output_q: str,
        body: list[QNode],
        model: str,
        profile: TargetProfile,
    ) -> str:
        def place(tensor: str) -> str:
            root = self.storage(tensor)
            if root == self.storage(input_q):
                return "input"
            if root == self.storage(output_q):
                return "output"
            return f"(arena + {plan.offsets[root]})"

        calls = []
        for line in self.calls:
            words = line.split("@")
            for i in range(1, len(words)):
                name, _, rest = _split_tensor(words[i])
                words[i] = place(name) + rest
            calls.append("".join(words))
        run = "\n".join(calls)
        return (
            _provenance(model, profile)
            + '#include "model.h"\n\n#include "edgec_nn.h"\n\n'
            + "#ifndef EDGEC_LAYER_DONE\n#define EDGEC_LAYER_DONE(i) ((void)0)\n#endif\n\n"
            + "".join(self.consts)
            + f"\nstatic int8_t arena[{max(plan.arena_bytes, 4)}] __attribute__((aligned(4)));\n"
            + f"static int16_t scratch[{self.scratch}] __attribute__((aligned(4)));\n\n"
            + "int edgec_model_run(const int8_t *input, int8_t *output)\n{\n"
            + run
            + "\n    (void)scratch;\n    return 0;\n}\n"
        )


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


def _split_tensor(text: str) -> tuple[str, str, str]:
    """'name, rest' → (name, '', ', rest'): a tensor name ends at ',', ')' or '}'."""
    ends = (text.find(","), text.find(")"), text.find("}"))
    end = min((i for i in ends if i >= 0), default=len(text))
    return text[:end], "", text[end:]


def _provenance(model: str, profile: TargetProfile) -> str:
    v = versions()
    command = shlex.join(["edgec", *sys.argv[1:]]) if sys.argv else "edgec"
    return (
        "/* Generated by edgec " + v["edgec"] + " for " + profile.name + " from " + model + ".\n"
        " * Command: " + command.replace("*/", "* /") + "\n"
        " * Do not edit: regenerate with edgec build. C99; no malloc, no stdio.\n */\n"
    )


def _header(
    layout: _Layout,
    input_q: str,
    output_q: str,
    graph: QGraph,
    plan: memplan.Plan,
    emitter: _Emitter,
    profile: TargetProfile,
) -> str:
    ins, outs = layout.memory_shape(input_q), layout.memory_shape(output_q)
    dims = lambda s: ", ".join(str(d) for d in s)  # noqa: E731
    return (
        _provenance(graph.outputs[0], profile)
        + "#ifndef EDGEC_MODEL_H\n#define EDGEC_MODEL_H\n\n#include <stdint.h>\n\n"
        + "/* Input and output are int8 NHWC (or flat), symmetric: real = scale * value. */\n"
        + f"#define EDGEC_INPUT_SIZE {layout.size(input_q)}\n"
        + f"#define EDGEC_OUTPUT_SIZE {layout.size(output_q)}\n"
        + f"#define EDGEC_INPUT_SHAPE {{{dims(ins)}}}\n"
        + f"#define EDGEC_OUTPUT_SHAPE {{{dims(outs)}}}\n"
        + f"#define EDGEC_INPUT_SCALE {graph.scales[input_q]!r}f\n"
        + f"#define EDGEC_OUTPUT_SCALE {graph.scales[output_q]!r}f\n"
        + f"#define EDGEC_ARENA_BYTES {plan.arena_bytes}\n"
        + f"#define EDGEC_SCRATCH_BYTES {emitter.scratch * 2}\n"
        + f"#define EDGEC_LAYERS {len(emitter.layers)}\n\n"
        + "/* Runs the model once; returns 0. Not reentrant (one static arena). */\n"
        + "int edgec_model_run(const int8_t *input, int8_t *output);\n\n#endif\n"
    )
