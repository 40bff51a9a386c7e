"""edgec's Cortex-M kernels against CMSIS-NN's on the same int8 models, the same emulated core.

    .venv/bin/python bench/mcu_vs_cmsis.py --cmsis-nn ../CMSIS-NN [--opt -Os --opt -O3]
        [--models resnet8,dscnn,mobilenetv1,autoencoder] [--single-rounding] [--layers]

For each MLPerf Tiny example, edgec's QuantizedModel (the same one bench/mcu.py builds: seeded
weights, 64 seeded normal calibration inputs) becomes two firmwares of the same shape: edgec's
generated library, and a model.c written here whose layers call CMSIS-NN's s8 kernels directly
(no TFLM interpreter) with the same weights, biases and requantization (edgec's (M, n) is
CMSIS-NN's Q31 multiplier with shift 31 − n). Both link edgec's harness (startup, main, linker
script for mps2-an386), are compiled by the same arm-none-eabi-gcc with the Cortex-M4 target's
flags at the same -O level (CMSIS-NN's sources included: it is compiled from the checkout given,
never vendored), and run under `qemu-system-arm -icount shift=0`, which counts instructions
(not cycles) per inference and per layer.

Prints Markdown: per model and -O level, MACs, instructions of each and their ratio (edgec /
CMSIS-NN: below 1 edgec runs fewer), flash (code + constants the linked image keeps of each
library) and RAM (arena + scratch + static data + worst-case stack of edgec_model_run from
-fcallgraph-info), whether edgec's output equals its int8 reference, and how far CMSIS-NN's is
from it in output steps (CMSIS-NN rounds each requantization twice, edgec once; with
--single-rounding CMSIS-NN is built with CMSIS_NN_USE_SINGLE_ROUNDING, TFLM's option for
edgec's rule). Then instructions per MAC by layer kind (--layers: per layer).

Layers without a same-scale CMSIS-NN kernel: a global average pool whose output scale differs
from its input's (edgec's graphs rescale there) is arm_avgpool_s8 at the input's scale followed
by arm_nn_requantize to the output's, per channel; an add takes TFLite's parameters (both
inputs shifted left by 20 and brought to twice the larger scale, then to the output's), as
TFLM prepares them for arm_elementwise_add_s8.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgec.boards import Board
    from edgec.int8 import QGraph, QNode
    from edgec.targets import TargetProfile

ROOT = Path(__file__).resolve().parents[1]
CLONE = "git clone https://github.com/ARM-software/CMSIS-NN"
# key → (label, example file): the four MLPerf Tiny reference models, as in bench/mcu.py
MODELS = {
    "resnet8": ("ResNet-8 32x32x3", "resnet8.py"),
    "dscnn": ("DS-CNN KWS 49x10", "dscnn.py"),
    "mobilenetv1": ("MobileNetV1 0.25 96x96x3", "mobilenetv1.py"),
    "autoencoder": ("FC autoencoder 640", "autoencoder.py"),
}
CALIBRATION = 64
TARGET = "cortex-m4"
# CMSIS-NN's s8 path: the kernel families the four models call, and what those call
CMSIS_DIRS = (
    "ConvolutionFunctions",
    "FullyConnectedFunctions",
    "PoolingFunctions",
    "BasicMathFunctions",
    "NNSupportFunctions",
)
FLOAT_SOURCES = re.compile(r"_f16|_f32|_flt")  # float kernels: not built
ADD_LEFT_SHIFT = 20  # TFLite's int8 add: inputs scaled up by 2^20 before rescaling
LAYER_KINDS = ("conv", "depthwise", "dense")


class Usage(Exception):
    """A bad argument or a missing tool: one line, exit status 2."""


def cmsis_nn_checkout(path: str | None) -> Path:
    """The CMSIS-NN checkout given by --cmsis-nn, checked to hold the headers and sources."""
    if not path:
        raise Usage(f"--cmsis-nn DIR is required: a CMSIS-NN checkout; get one with: {CLONE}")
    root = Path(path).expanduser()
    if not (root / "Include" / "arm_nnfunctions.h").is_file() or not all(
        (root / "Source" / d).is_dir() for d in CMSIS_DIRS
    ):
        raise Usage(
            f"--cmsis-nn {path}: not a CMSIS-NN checkout (no Include/arm_nnfunctions.h or "
            f"Source/); get one with: {CLONE}"
        )
    return root.resolve()


def to_cmsis(multiplier: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """edgec's requantization (acc × M × 2^−n, M in [2^30, 2^31) or 0) as CMSIS-NN's: the same
    Q31 multiplier and a left shift of 31 − n (negative: right), in CMSIS-NN's range -31..30."""
    m = np.asarray(multiplier, dtype=np.int64)
    n = np.asarray(shift, dtype=np.int64)
    cmsis_shift = 31 - n
    if np.any(m < 0) or np.any(m >= 2**31) or np.any(cmsis_shift < -31) or np.any(cmsis_shift > 30):
        raise ValueError(f"requantization out of CMSIS-NN's range: M {m.max()}, n {n.min()}")
    return m.astype(np.int32), cmsis_shift.astype(np.int32)


def scale_to_cmsis(real: float) -> tuple[int, int]:
    """A positive real multiplier as CMSIS-NN's (Q31 multiplier, shift)."""
    from edgec.int8.fixed_point import quantize_multiplier

    m, n = to_cmsis(*quantize_multiplier(np.array([real])))
    return int(m[0]), int(n[0])


def add_params(scale_a: float, scale_b: float, scale_out: float) -> tuple[tuple[int, int], ...]:
    """arm_elementwise_add_s8's (multiplier, shift) for input 1, input 2 and the output, as
    TFLite computes them from the three scales."""
    twice_max = 2 * max(scale_a, scale_b)
    return (
        scale_to_cmsis(scale_a / twice_max),
        scale_to_cmsis(scale_b / twice_max),
        scale_to_cmsis(twice_max / ((1 << ADD_LEFT_SHIFT) * scale_out)),
    )


# --- the CMSIS-NN model.c -----------------------------------------------------------------


def _c_array(kind: str, name: str, values: np.ndarray) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    rows = ",\n    ".join(", ".join(flat[i : i + 24]) for i in range(0, len(flat), 24))
    return (
        f"static const {kind} {name}[{len(flat)}] __attribute__((aligned(4))) = {{\n"
        f"    {rows}\n}};\n"
    )


def _weight_arrays(i: str, weights, bias, m, s) -> str:
    """A conv or dense layer's constants and the per-channel quant params pointing at them."""
    return (
        _c_array("int8_t", f"{i}_w", weights)
        + _c_array("int32_t", f"{i}_b", bias)
        + _c_array("int32_t", f"{i}_m", m)
        + _c_array("int32_t", f"{i}_s", s)
        # CMSIS-NN's struct points at non-const int32_t; the kernels only read them
        + f"static const cmsis_nn_per_channel_quant_params {i}_q = "
        f"{{(int32_t *){i}_m, (int32_t *){i}_s}};\n"
    )


def _dims(name: str, n: int, h: int, w: int, c: int) -> str:
    return f"static const cmsis_nn_dims {name} = {{{n}, {h}, {w}, {c}}};\n"


@dataclass(frozen=True)
class CmsisLayer:
    name: str
    kind: str  # conv, depthwise, dense, add, avgpool, reshape
    macs: int
    arrays: str  # constants, and the quant params that point at them
    params: str  # layer params and dims: all a get_buffer_size call reads
    call: str  # @IN@, @IN2@, @OUT@ stand for the tensors' places
    tensors: tuple[str, ...]  # inputs then output
    scratch: str = ""  # the C expression of its scratch bytes (a get_buffer_size call)


@dataclass(frozen=True)
class CmsisModel:
    layers: tuple[CmsisLayer, ...]
    input_q: str
    output_q: str
    input_size: int
    output_size: int


def _body(graph: QGraph) -> list[QNode]:
    """The int8 nodes between the input's quantize and the output's dequantize."""
    nodes = list(graph.nodes)
    while len(nodes) > 1 and nodes[0].op == "reshape" and nodes[1].op in ("reshape", "quantize"):
        nodes = nodes[1:]
    body = nodes[1:-1]
    if (
        nodes[0].op != "quantize"
        or nodes[-1].op != "dequantize"
        or any(n.precision != "int8" for n in body)
    ):
        raise Usage("the model is not int8 from input to output")
    return body


def cmsis_model(graph: QGraph, shapes: dict[str, tuple[int, ...]]) -> CmsisModel:
    """Each int8 node as CMSIS-NN calls, NHWC, weights laid out as CMSIS-NN reads them."""
    body = _body(graph)
    order: dict[str, np.ndarray] = {}  # a flattened NCHW tensor: memory index → reference index
    layers = []
    for step, node in enumerate(body):
        i, a = f"l{step}", node.attrs
        src = shapes[node.inputs[0]]
        dst = shapes[node.output]
        if node.op == "conv":
            _, cin, h, w = src
            _, cout, oh, ow = dst
            kh, kw = a.window.kernel
            (sh, sw), (pt, pl), (dh, dw) = a.window.strides, a.window.pads[:2], a.dilations
            m, s = to_cmsis(*np.broadcast_arrays(a.out.multiplier, a.out.shift))
            m, s = np.broadcast_to(m, (cout,)), np.broadcast_to(s, (cout,))
            common = (
                f".stride = {{{sw}, {sh}}}, .padding = {{{pl}, {pt}}}, "
                f".dilation = {{{dw}, {dh}}}, .activation = {{{a.out.lo}, {a.out.hi}}}"
            )
            depthwise = a.groups == cin == cout and a.groups > 1
            if depthwise:  # CMSIS-NN: [1, H, W, C]
                weights = a.weights.values.reshape(cout, kh * kw).T
                params = (
                    f"static const cmsis_nn_dw_conv_params {i}_p = {{.input_offset = 0, "
                    f".output_offset = 0, .ch_mult = 1, {common}}};\n"
                )
                filt = _dims(f"{i}_fd", 1, kh, kw, cout)
                fn, size_fn = "arm_depthwise_conv_wrapper_s8", "arm_depthwise_conv_wrapper_s8"
            elif a.groups == 1:  # CMSIS-NN: [C_OUT, H, W, C_IN] (OHWI)
                weights = a.weights.values.transpose(0, 2, 3, 1)
                params = (
                    f"static const cmsis_nn_conv_params {i}_p = {{.input_offset = 0, "
                    f".output_offset = 0, {common}}};\n"
                )
                filt = _dims(f"{i}_fd", cout, kh, kw, cin)
                fn, size_fn = "arm_convolve_wrapper_s8", "arm_convolve_wrapper_s8"
            else:
                raise Usage(f"{node.name}: grouped convolution is not in this bench")
            arrays = _weight_arrays(i, weights, a.weights.bias, m, s)
            params += (
                _dims(f"{i}_id", 1, h, w, cin)
                + filt
                + _dims(f"{i}_bd", 1, 1, 1, cout)
                + _dims(f"{i}_od", 1, oh, ow, cout)
            )
            call = (
                f"{fn}(&ctx, &{i}_p, &{i}_q, &{i}_id, @IN@, &{i}_fd, {i}_w, &{i}_bd, {i}_b, "
                f"&{i}_od, @OUT@);"
            )
            scratch = f"{size_fn}_get_buffer_size_dsp(&{i}_p, &{i}_id, &{i}_fd, &{i}_od)"
            macs = oh * ow * cout * kh * kw * (cin // a.groups)
            kind = "depthwise" if depthwise else "conv"
            tensors = (*node.inputs, node.output)
            layers.append(CmsisLayer(node.name, kind, macs, arrays, params, call, tensors, scratch))
        elif node.op == "dense":
            weights = a.weights.values
            if node.inputs[0] in order:  # flattened from NHWC: permute the columns
                weights = weights[:, order[node.inputs[0]]]
            out_n, in_n = weights.shape
            m, s = to_cmsis(a.out.multiplier, a.out.shift)
            m, s = np.broadcast_to(m, (out_n,)), np.broadcast_to(s, (out_n,))
            arrays = _weight_arrays(i, weights, a.weights.bias, m, s)
            params = (
                f"static const cmsis_nn_fc_params {i}_p = {{.input_offset = 0, "
                f".filter_offset = 0, .output_offset = 0, "
                f".activation = {{{a.out.lo}, {a.out.hi}}}}};\n"
                + _dims(f"{i}_id", 1, 1, 1, in_n)
                + _dims(f"{i}_fd", in_n, 1, 1, out_n)
                + _dims(f"{i}_bd", 1, 1, 1, out_n)
                + _dims(f"{i}_od", 1, 1, 1, out_n)
            )
            call = (
                f"arm_fully_connected_per_channel_s8(&ctx, &{i}_p, &{i}_q, &{i}_id, @IN@, "
                f"&{i}_fd, {i}_w, &{i}_bd, {i}_b, &{i}_od, @OUT@);"
            )
            scratch = f"arm_fully_connected_s8_get_buffer_size_dsp(&{i}_fd)"
            tensors = (*node.inputs, node.output)
            layers.append(
                CmsisLayer(node.name, "dense", in_n * out_n, arrays, params, call, tensors, scratch)
            )
        elif node.op == "add":
            (m1, s1), (m2, s2), (mo, so) = add_params(
                graph.scales[node.inputs[0]],
                graph.scales[node.inputs[1]],
                graph.scales[node.output],
            )
            size = int(np.prod(dst))
            call = (
                f"arm_elementwise_add_s8(@IN@, @IN2@, 0, {m1}, {s1}, 0, {m2}, {s2}, "
                f"{ADD_LEFT_SHIFT}, @OUT@, 0, {mo}, {so}, {a.out.lo}, {a.out.hi}, {size});"
            )
            layers.append(
                CmsisLayer(node.name, "add", 0, "", "", call, (*node.inputs, node.output))
            )
        elif node.op == "global_avgpool":
            _, c, h, w = src
            scratch, params = "", ""
            if graph.scales[node.inputs[0]] == graph.scales[node.output]:
                params = (
                    f"static const cmsis_nn_pool_params {i}_p = {{.stride = {{1, 1}}, "
                    f".padding = {{0, 0}}, .activation = {{{a.out.lo}, {a.out.hi}}}}};\n"
                    + _dims(f"{i}_id", 1, h, w, c)
                    + _dims(f"{i}_fd", 1, h, w, 1)
                    + _dims(f"{i}_od", 1, 1, 1, c)
                )
                call = f"arm_avgpool_s8(&ctx, &{i}_p, &{i}_id, @IN@, &{i}_fd, &{i}_od, @OUT@);"
                scratch = f"arm_avgpool_s8_get_buffer_size_dsp(1, {c})"
            else:
                # arm_avgpool_s8 keeps the input's scale, and rounding there then again at the
                # output's finer one loses steps; TFLM runs such a mean in its own kernel: the
                # sum, then one arm_nn_requantize by edgec's multiplier (1 / count included)
                mult, shift = (int(v[0]) for v in to_cmsis(a.out.multiplier, a.out.shift))
                call = (
                    f"for (int c = 0; c < {c}; c++) {{\n"
                    f"        const int8_t *x = @IN@ + c;\n"
                    f"        int32_t sum = 0;\n"
                    f"        for (int i = 0; i < {h * w}; i++) {{\n"
                    f"            sum += x[i * {c}];\n        }}\n"
                    f"        sum = arm_nn_requantize(sum, {mult}, {shift});\n"
                    f"        (@OUT@)[c] = (int8_t)(sum < {a.out.lo} ? {a.out.lo} : "
                    f"sum > {a.out.hi} ? {a.out.hi} : sum);\n    }}"
                )
            tensors = (*node.inputs, node.output)
            layers.append(CmsisLayer(node.name, "avgpool", 0, "", params, call, tensors, scratch))
        elif node.op == "reshape":
            if len(src) == 4:
                _, c, h, w = src
                order[node.output] = (
                    np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
                )
            elif node.inputs[0] in order:
                order[node.output] = order[node.inputs[0]]
            layers.append(
                CmsisLayer(node.name, "reshape", 0, "", "", "", (*node.inputs, node.output))
            )
        else:
            raise Usage(f"{node.name}: {node.op} has no CMSIS-NN mapping in this bench")
    return CmsisModel(
        tuple(layers),
        body[0].inputs[0],
        body[-1].output,
        int(np.prod(shapes[body[0].inputs[0]])),
        int(np.prod(shapes[body[-1].output])),
    )


def _places(model: CmsisModel, sizes: dict[str, int]) -> tuple[dict[str, str], int]:
    """Each tensor's C place: input, output or an arena offset, planned by edgec.memplan the way
    edgec's generator plans its own (reshape aliases; an add may overwrite an input dying there;
    CMSIS-NN's add reads each element before it writes it)."""
    from edgec import memplan

    alias: dict[str, str] = {}

    def root(t: str) -> str:
        while t in alias:
            t = alias[t]
        return t

    last_read = {t: step for step, layer in enumerate(model.layers) for t in layer.tensors[:-1]}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for step, layer in enumerate(model.layers):
        *inputs, output = layer.tensors
        for t in inputs:
            last[root(t)] = max(last.get(root(t), step), step)
        in_place = (
            layer.kind == "add"
            and last_read.get(inputs[0]) == step
            and all(last_read.get(t) == step for t, r in alias.items() if r == root(inputs[0]))
            and root(inputs[0]) != root(model.input_q)
            and output != model.output_q
        )
        if layer.kind == "reshape" or in_place:
            alias[output] = root(inputs[0])
        else:
            first[output] = step
        last.setdefault(root(output), step)
    ends = {root(model.input_q): "input", root(model.output_q): "output"}
    buffers = [
        memplan.Buffer(t, sizes[t], first[t], last.get(t, len(model.layers)))
        for t in first
        if t not in ends
    ]
    plan = memplan.plan(buffers)
    places = {
        t: ends.get(root(t)) or f"(arena + {plan.offsets[root(t)]})"
        for layer in model.layers
        for t in layer.tensors
    }
    return places, plan.arena_bytes


def scratch_bytes(model: CmsisModel, cmsis: Path, work: Path) -> int:
    """The largest scratch buffer a layer asks for: CMSIS-NN's own *_get_buffer_size_dsp,
    compiled for the host from the checkout and run there (plain C, sizes only)."""
    calls = [layer for layer in model.layers if layer.scratch]
    if not calls:
        return 0
    source = (
        '#include <stdio.h>\n#include "arm_nnfunctions.h"\n\n'
        + "".join(layer.params for layer in calls)
        + "\nint main(void)\n{\n"
        + "".join(f'    printf("%d\\n", (int){layer.scratch});\n' for layer in calls)
        + "    return 0;\n}\n"
    )
    (work / "sizes.c").write_text(source)
    sizers = sorted(
        str(f) for d in CMSIS_DIRS for f in (cmsis / "Source" / d).glob("*get_buffer_sizes_s8.c")
    )
    _run(["cc", "-O1", "-I", str(cmsis / "Include"), "sizes.c", *sizers, "-o", "sizes"], work)
    done = _run([str(work / "sizes")], work)
    return max(int(v) for v in done.split())


def model_c(model: CmsisModel, sizes: dict[str, int], scratch: int, provenance: str) -> str:
    """model.c: constants, one static arena and scratch, edgec_model_run calling CMSIS-NN and
    the harness's per-layer hook, as edgec's generated model.c does."""
    places, arena = _places(model, sizes)
    calls = []
    for step, layer in enumerate(model.layers):
        *inputs, output = (places[t] for t in layer.tensors)
        if layer.call:
            call = layer.call.replace("@IN2@", inputs[-1]).replace("@IN@", inputs[0])
            call = call.replace("@OUT@", output)
            calls.append(f"    {call}\n")
        else:
            calls.append(
                f"    /* {layer.name.replace('*/', '* /')}: reshape, no data movement */\n"
            )
        calls.append(f"    EDGEC_LAYER_DONE({step});\n")
    return (
        f"/* {provenance} */\n"
        '#include "model.h"\n\n'
        '#include "arm_nnfunctions.h"\n#include "arm_nnsupportfunctions.h"\n\n'
        "#ifndef EDGEC_LAYER_DONE\n#define EDGEC_LAYER_DONE(i) ((void)0)\n#endif\n\n"
        + "".join(layer.arrays + layer.params for layer in model.layers)
        + f"\nstatic int8_t arena[{max(arena, 4)}] __attribute__((aligned(4)));\n"
        f"static int32_t scratch[{max(-(-scratch // 4), 1)}];\n\n"
        "int edgec_model_run(const int8_t *input, int8_t *output)\n{\n"
        "    const cmsis_nn_context ctx = {scratch, (int32_t)sizeof scratch};\n"
        + "".join(calls)
        + "    (void)ctx;\n    (void)input;\n    return 0;\n}\n"
    )


def model_h(model: CmsisModel) -> str:
    """model.h: what edgec's harness (main.c) reads of a model."""
    return (
        "#ifndef EDGEC_MODEL_H\n#define EDGEC_MODEL_H\n\n#include <stdint.h>\n\n"
        f"#define EDGEC_INPUT_SIZE {model.input_size}\n"
        f"#define EDGEC_OUTPUT_SIZE {model.output_size}\n"
        f"#define EDGEC_LAYERS {len(model.layers)}\n\n"
        "int edgec_model_run(const int8_t *input, int8_t *output);\n\n#endif\n"
    )


# --- building and running a firmware ------------------------------------------------------


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise Usage(f"{cmd[0]} is not installed; run scripts/setup.sh") from None
    if done.returncode != 0:
        lines = done.stderr.splitlines()
        errors = [line for line in lines if "error" in line and "collect2" not in line] or lines
        raise Usage(f"{Path(cmd[0]).name} failed in {cwd}: {errors[0].strip()}")
    return done.stdout


def _cflags(profile: TargetProfile, opt: str) -> list[str]:
    """edgec's firmware flags (edgec.stages.firmware) at `opt`, and a call graph for the stack."""
    from edgec.stages import firmware

    return [
        *profile.cflags,
        *(opt if f == "-Os" else f for f in firmware.CFLAGS),
        "-fcallgraph-info=su",
    ]


def _rounding(single: bool) -> list[str]:
    """The define that makes CMSIS-NN's requantization (inline, in its header) round once."""
    return ["-DCMSIS_NN_USE_SINGLE_ROUNDING"] if single else []


def cmsis_objects(
    cmsis: Path, profile: TargetProfile, opt: str, single_rounding: bool, out: Path
) -> list[Path]:
    """CMSIS-NN's s8 sources compiled with edgec's flags (warnings not fatal: not our code)."""
    out.mkdir(parents=True, exist_ok=True)
    flags = [f for f in _cflags(profile, opt) if f != "-Werror"] + _rounding(single_rounding)
    objects = []
    for d in CMSIS_DIRS:
        for source in sorted((cmsis / "Source" / d).glob("*.c")):
            if FLOAT_SOURCES.search(source.name):
                continue
            obj = out / f"{source.stem}.o"
            if not obj.exists():
                cmd = [profile.cxx, *flags, "-I", str(cmsis / "Include"), "-c", str(source)]
                _run([*cmd, "-o", str(obj)], out)
            objects.append(obj)
    return objects


@dataclass(frozen=True)
class Run:
    output: np.ndarray
    instructions: int
    layers: tuple[int, ...]
    code: int  # the library's bytes in the linked image: .text
    const: int  # .rodata
    data: int
    bss: int  # arena and scratch
    stack: int  # edgec_model_run's worst-case call chain

    @property
    def flash(self) -> int:
        return self.code + self.const + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss + self.stack


def _stack(call_graphs: list[Path]) -> int:
    """The deepest chain of frames from edgec_model_run, from gcc's -fcallgraph-info files."""
    frames: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    for ci in call_graphs:
        for line in ci.read_text().splitlines():
            node = re.match(r'node: \{ title: "([^"]+)" label: ".*\\n(\d+) bytes', line)
            if node:
                frames[node[1]] = max(frames.get(node[1], 0), int(node[2]))
            edge = re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line)
            if edge:
                edges.setdefault(edge[1], set()).add(edge[2])

    def deepest(name: str, seen: frozenset[str]) -> int:
        below = [deepest(c, seen | {c}) for c in edges.get(name, ()) if c not in seen]
        return frames.get(name, 0) + max(below, default=0)

    return deepest("edgec_model_run", frozenset({"edgec_model_run"}))


def build_and_run(
    directory: Path,
    sources: list[str],
    objects: list[Path],
    extra_flags: list[str],
    test_input: np.ndarray,
    profile: TargetProfile,
    board: Board,
    opt: str,
) -> Run:
    """edgec's test firmware around `sources` (model.c and its kernels, in `directory`) and
    prebuilt kernel `objects`, compiled (with `extra_flags`) and linked as
    edgec.stages.firmware does, then run."""
    from edgec.package_files import data_dir
    from edgec.stages import firmware

    harness = data_dir("codegen") / "mcu" / "firmware"
    for name in firmware.HARNESS:
        shutil.copyfile(harness / name, directory / name)
    values = ", ".join(str(int(v)) for v in test_input)
    (directory / "test_input.h").write_text(
        f"#include <stdint.h>\nstatic const int8_t edgec_test_input[{len(test_input)}] = "
        f"{{{values}}};\n"
    )
    flags = [*_cflags(profile, opt), *extra_flags]
    hook = ["-DEDGEC_LAYER_DONE=edgec_layer_done", "-include", "layer_hook.h"]
    for source in [*sources, "main.c", "startup.c"]:
        _run([profile.cxx, *flags, *hook, "-c", source, "-o", f"{Path(source).stem}.o"], directory)
    library = [directory / f"{Path(s).stem}.o" for s in sources] + objects
    stack = _stack([o.with_suffix(".ci") for o in library if o.with_suffix(".ci").exists()])
    assert board.memory is not None
    script = (harness / "link.ld.in").read_text()
    for key, value in {
        "@BOARD@": board.name,
        "@FLASH_ORIGIN@": hex(board.memory.flash_origin),
        "@FLASH_BYTES@": str(board.memory.flash_bytes),
        "@RAM_ORIGIN@": hex(board.memory.ram_origin),
        "@RAM_BYTES@": str(board.memory.ram_bytes),
        "@STACK_BYTES@": str(stack + firmware.HARNESS_STACK),
    }.items():
        script = script.replace(key, value)
    (directory / "link.ld").write_text(script)
    link = [*profile.cflags, "-specs=rdimon.specs", "-nostartfiles", "-T", "link.ld"]
    objs = [str(o) for o in [directory / "main.o", directory / "startup.o", *library]]
    _run([profile.cxx, *link, "-Wl,--gc-sections", *objs, "-o", "firmware.elf"], directory)
    names = {name for obj in library for name, _, _ in _symbols(obj)}
    sizes = {"t": 0, "r": 0, "d": 0, "b": 0}
    for name, kind, size in _symbols(directory / "firmware.elf"):
        if name in names and kind.lower() in sizes:
            sizes[kind.lower()] += size
    run = firmware.emulate(directory / "firmware.elf", board.qemu_machine or "")
    return Run(
        run.output,
        run.instructions,
        run.layer_instructions,
        sizes["t"],
        sizes["r"],
        sizes["d"],
        sizes["b"],
        stack,
    )


def _symbols(path: Path) -> list[tuple[str, str, int]]:
    """(name, nm type letter, size) of each sized symbol an object or image defines."""
    symbols = []
    for line in _run(["arm-none-eabi-nm", "-S", str(path)], path.parent).splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols.append((parts[3], parts[2], int(parts[1], 16)))
    return symbols


# --- the comparison -----------------------------------------------------------------------


def _commit(cmsis: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(cmsis), "log", "-1", "--format=%H %cs"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "not a git checkout"


def _per_mac(kinds: list[str], macs: list[int], counts: tuple[int, ...], wanted: str) -> str:
    chosen = [(m, n) for k, m, n in zip(kinds, macs, counts, strict=True) if k == wanted]
    total = sum(m for m, _ in chosen)
    return f"{sum(n for _, n in chosen) / total:.2f}" if total else "-"


def compare(args: argparse.Namespace, cmsis: Path) -> int:
    from edgec import int8
    from edgec.boards import get_board
    from edgec.stages.export import export
    from edgec.stages.generate import generate
    from edgec.stages.load import load
    from edgec.stages.quantize import QuantizeConfig, quantize
    from edgec.targets import get_target

    profile = get_target(TARGET)
    board = get_board(profile.board or "")
    compiler = _run([profile.cxx, "--version"], ROOT).splitlines()[0]
    rounding = "single (CMSIS_NN_USE_SINGLE_ROUNDING)" if args.single_rounding else "double"
    print(
        f"CMSIS-NN {_commit(cmsis)}, rounding {rounding}; {compiler}; {TARGET} "
        f"({' '.join(profile.cflags)}), qemu-system-arm -M {board.qemu_machine} -icount shift=0\n"
    )
    print(
        "| model | -O | MACs | edgec instructions | CMSIS-NN instructions | edgec / CMSIS-NN "
        "| edgec flash / RAM (B) | CMSIS-NN flash / RAM (B) | edgec bit-exact "
        "| CMSIS-NN vs reference: max diff (steps), outputs differing |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    kinds_table: list[str] = []
    layer_table: list[str] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="edgec-cmsis-") as tmp:
        work = Path(tmp)
        if args.keep:
            work = Path(args.keep)
            work.mkdir(parents=True)  # main checked that it is new
        for key in args.models.split(","):
            label, factory = MODELS[key]
            model_dir = work / key
            model_dir.mkdir()
            onnx_model = export(
                load(f"{ROOT / 'examples' / factory}:make_model", None, model_dir), model_dir
            )
            shape = onnx_model.inputs[0].shape
            x = np.random.default_rng(2).standard_normal((CALIBRATION + 1, *shape[1:]))
            calib, sample = x[1:].astype(np.float32), x[:1].astype(np.float32)  # as bench/mcu.py
            quantized = quantize(onnx_model, calib, QuantizeConfig(sensitivity=None))
            graph = quantized.graph
            values = int8.trace(graph, [sample])
            shapes = {name: tuple(int(d) for d in v.shape) for name, v in values.items()}
            model = cmsis_model(graph, shapes)
            sizes = {t: int(np.prod(s)) for t, s in shapes.items()}
            scratch = scratch_bytes(model, cmsis, model_dir)
            for opt in args.opt:
                edgec_dir = model_dir / f"edgec{opt}"
                edgec_dir.mkdir()
                library = generate(quantized, profile, edgec_dir, sample)
                ours = build_and_run(
                    edgec_dir, ["model.c", "edgec_nn.c"], [], [], library.test_input,
                    profile, board, opt,
                )  # fmt: skip
                cmsis_dir = model_dir / f"cmsis{opt}"
                cmsis_dir.mkdir()
                provenance = (
                    f"{label} with CMSIS-NN's s8 kernels, written by bench/mcu_vs_cmsis.py "
                    f"(CMSIS-NN {_commit(cmsis).split()[0][:12]})"
                )
                (cmsis_dir / "model.c").write_text(model_c(model, sizes, scratch, provenance))
                (cmsis_dir / "model.h").write_text(model_h(model))
                cmsis_flags = [f"-I{cmsis / 'Include'}", *_rounding(args.single_rounding)]
                objects = cmsis_objects(
                    cmsis, profile, opt, args.single_rounding, work / f"cmsis-nn{opt}"
                )
                theirs = build_and_run(
                    cmsis_dir, ["model.c"], objects, cmsis_flags, library.test_input,
                    profile, board, opt,
                )  # fmt: skip
                expected = library.expected_output.astype(np.int32)
                exact = np.array_equal(ours.output, library.expected_output)
                diff = np.abs(theirs.output.astype(np.int32) - expected)
                if not exact:
                    failed.append(f"edgec's output is not its reference's ({label} {opt})")
                if args.single_rounding and diff.any():  # then the arithmetic is the same
                    failed.append(f"CMSIS-NN rounding once differs from edgec ({label} {opt})")
                macs = sum(layer.macs for layer in library.layers)
                print(
                    f"| {label} | {opt} | {macs:,} | {ours.instructions:,} "
                    f"| {theirs.instructions:,} | {ours.instructions / theirs.instructions:.2f} "
                    f"| {ours.flash:,} / {ours.ram:,} | {theirs.flash:,} / {theirs.ram:,} "
                    f"| {'yes' if exact else 'NO'} "
                    f"| {int(diff.max())}, {int(np.count_nonzero(diff))} of {diff.size} |",
                    flush=True,
                )
                kinds = [layer.kind for layer in model.layers]
                layer_macs = [layer.macs for layer in model.layers]
                cells = [
                    f"{_per_mac(kinds, layer_macs, ours.layers, k)} / "
                    f"{_per_mac(kinds, layer_macs, theirs.layers, k)}"
                    for k in LAYER_KINDS
                ]
                other = [
                    sum(n for k, n in zip(kinds, run.layers, strict=True) if k not in LAYER_KINDS)
                    for run in (ours, theirs)
                ]
                kinds_table.append(
                    f"| {label} | {opt} | {' | '.join(cells)} | {other[0]:,} / {other[1]:,} "
                    f"| {ours.code:,} / {theirs.code:,} | {ours.const:,} / {theirs.const:,} "
                    f"| {ours.bss:,} / {theirs.bss:,} | {ours.stack} / {theirs.stack} |"
                )
                for layer, a, b in zip(model.layers, ours.layers, theirs.layers, strict=True):
                    if layer.kind != "reshape":
                        per = f"{a / layer.macs:.2f} / {b / layer.macs:.2f}" if layer.macs else "-"
                        layer_table.append(
                            f"| {label} | {opt} | {layer.name} | {layer.kind} | {layer.macs:,} "
                            f"| {a:,} | {b:,} | {per} |"
                        )
    print(
        "\n| model | -O | conv per MAC (edgec / CMSIS-NN) | depthwise | dense "
        "| other layers (instructions) | code (B) | constants (B) | arena + scratch (B) "
        "| stack (B) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(kinds_table))
    if args.layers:
        print(
            "\n| model | -O | layer | kind | MACs | edgec instructions | CMSIS-NN instructions "
            "| per MAC (edgec / CMSIS-NN) |"
        )
        print("|---|---|---|---|---:|---:|---:|---:|")
        print("\n".join(layer_table))
    if failed:
        print(f"mcu_vs_cmsis: check failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cmsis-nn", metavar="DIR", help=f"a CMSIS-NN checkout ({CLONE})")
    parser.add_argument(
        "--opt",
        action="append",
        choices=("-Os", "-O2", "-O3"),
        help="repeatable; default -Os and -O3",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated; default all")
    parser.add_argument(
        "--single-rounding", action="store_true", help="CMSIS-NN with CMSIS_NN_USE_SINGLE_ROUNDING"
    )
    parser.add_argument("--layers", action="store_true", help="a row per layer too")
    parser.add_argument("--keep", metavar="DIR", help="build in DIR (new) and keep the sources")
    argv = list(sys.argv[1:] if argv is None else argv)
    for k, arg in enumerate(argv[:-1]):  # `--opt -O3`: argparse takes -O3 for an option
        if arg == "--opt":
            argv[k : k + 2] = ["", f"--opt={argv[k + 1]}"]
    args = parser.parse_args([a for a in argv if a])
    args.opt = args.opt or ["-Os", "-O3"]
    try:
        cmsis = cmsis_nn_checkout(args.cmsis_nn)
        unknown = [key for key in args.models.split(",") if key not in MODELS]
        if unknown:
            raise Usage(f"unknown model {unknown[0]!r}; known: {', '.join(MODELS)}")
        if args.keep and Path(args.keep).exists():
            raise Usage(f"--keep {args.keep}: it exists; name a new directory")
        return compare(args, cmsis)
    except Usage as e:
        print(f"mcu_vs_cmsis: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
