"""int8 convolutions on Arm's int8 instructions, run under qemu-aarch64: Armv8.0's smull/smlal/
sadalp (rpi4) and Armv8.2's sdot (rpi5) give the exact int32 sums, at the int16 limit too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgec.artifacts import OnnxModel
from edgec.targets import get_target
from tests.conftest import needs
from tests.integration.test_int8_build import _runner_output

pytestmark = [pytest.mark.integration, needs("qemu-aarch64", "aarch64-linux-gnu-g++")]

# (in channels, out channels, size, stride, kernel, weights, activations, which targets run it
# on their instruction). "limit": every product (-128) x (-127) or x 127, so each smull + smlal
# pair of products sums to +-32512, the int16 edge; "-128" has a weight smlal could overflow
# with (without the check that sends it to the generic kernel, that case fails).
CASES = [
    pytest.param(16, 16, 8, 1, 3, "random", "random", "both", id="3x3"),
    pytest.param(16, 16, 6, 1, 3, "limit", "limit", "both", id="3x3-int16-limit"),
    pytest.param(8, 12, 9, 2, 3, "random", "random", "both", id="3x3-stride2-odd-size"),
    pytest.param(32, 16, 5, 1, 1, "limit", "random", "both", id="pointwise"),
    pytest.param(1, 8, 10, 1, 3, "limit", "limit", "both", id="one-channel-gathered"),
    pytest.param(6, 8, 7, 1, 3, "random", "random", "both", id="channels-not-multiple-of-4"),
    pytest.param(16, 8, 6, 1, 3, "-128", "limit", "rpi5", id="weight-128-sdot-only"),
    # output channels no lane count divides: zero channels added to the packed weights, cut
    # in the write-back (ShuffleNetV2's 58); they stay on the channel-lane kernel. 116 = 29 x 4
    # lanes would leave rpi4 one vector per tile: padded to 120 (not on rpi5: 128 is too many)
    pytest.param(16, 6, 6, 1, 3, "random", "random", "both", id="6-out-channels-padded"),
    pytest.param(58, 58, 7, 1, 1, "random", "random", "both", id="58-out-channels-padded"),
    pytest.param(24, 116, 5, 2, 3, "limit", "limit", "both", id="116-out-padded-int16-limit"),
    pytest.param(32, 116, 4, 1, 1, "random", "random", "both", id="116-out-depth-lanes-stay"),
    # rpi4's depth-lane kernel (16 channels per vector, 4 int32 lanes of partial depth per
    # output, summed by addp after the reduction): tiles of 5 x 4, 2 x 8 (the lane sums of two
    # vectors), 7 x 2 (7 x 7 layers: two outputs per lane sum), 4 x 4 at stride 2, and the int16
    # edge through it; 16 input channels in a 1x1 layer stay on the channel-lane kernel
    pytest.param(32, 8, 5, 1, 1, "random", "random", "both", id="lanes-pointwise-5x4"),
    pytest.param(48, 16, 14, 1, 1, "random", "random", "both", id="lanes-pointwise-2x8"),
    pytest.param(32, 8, 7, 1, 3, "random", "random", "both", id="lanes-3x3-7x2"),
    pytest.param(32, 8, 8, 2, 3, "random", "random", "both", id="lanes-3x3-stride2"),
    pytest.param(64, 12, 4, 1, 1, "limit", "limit", "both", id="lanes-int16-limit"),
    pytest.param(16, 8, 8, 1, 1, "random", "random", "both", id="pointwise-16-channel-lanes"),
    # pointwise layers on channel pairs with 4 vectors of outputs: 4 x 4 tiles, their short
    # reduction unrolled (16 and 24 input channels, a 3-channel image gathered to 28)
    pytest.param(16, 32, 8, 1, 1, "limit", "limit", "both", id="pointwise-16-to-32-4x4"),
    pytest.param(24, 16, 6, 1, 1, "random", "random", "both", id="pointwise-24-to-16-3x4"),
    pytest.param(3, 16, 8, 2, 3, "random", "random", "both", id="image-gathered-4x4"),
    # a long reduction keeps 2 vectors and 7 rows at 14 wide (ShuffleNetV2's 116 -> 116)
    pytest.param(116, 116, 14, 1, 1, "random", "random", "both", id="pointwise-116-7x2"),
    pytest.param(24, 58, 8, 1, 1, "limit", "limit", "both", id="pointwise-24-to-58-cut-8x2"),
    # the depth-lane reduction unrolled by 8, 2 and 1 steps of 16 channels
    pytest.param(128, 8, 4, 1, 3, "limit", "limit", "both", id="lanes-3x3-8-steps"),
    pytest.param(96, 8, 4, 1, 1, "random", "random", "both", id="lanes-pointwise-6-steps"),
    # a wide window over few channels gathered into one depth axis (ResNet-18's 7 x 7 stem:
    # 147 taps x channels in 160 lanes) on the depth-lane kernel, the int16 edge through it
    pytest.param(3, 16, 12, 2, 7, "limit", "limit", "both", id="lanes-gathered-7x7-stem"),
    pytest.param(1, 8, 10, 1, 9, "random", "random", "both", id="lanes-gathered-9x9-one-channel"),
    # a width with no divisor of 4 to 8 rows (SqueezeNet's 13) on channel pairs: computed 14
    # wide in tiles of 7 rows, the padded column cut in the write-back; at stride 2 too
    pytest.param(8, 16, 13, 1, 3, "limit", "limit", "both", id="13-wide-padded-to-14"),
    pytest.param(24, 8, 26, 2, 3, "random", "random", "both", id="13-wide-stride2-padded"),
    pytest.param(16, 16, 13, 1, 1, "random", "random", "both", id="pointwise-13-wide-padded"),
    # the depth-lane kernel with a window's taps inside each step of 16 channels (neighbouring
    # pixels share the input columns they load): 4 x 4 tiles over 6 columns, the int16 edge
    # through it; 13 wide (no tile: SqueezeNet's last layers) computed 14 wide on depth lanes,
    # 7 x 2 for a 1x1 and a 3x3 layer, 2 x 8 at stride 2, the extra column cut
    pytest.param(64, 16, 8, 1, 3, "limit", "limit", "both", id="lanes-3x3-shared-window-4x4"),
    pytest.param(32, 8, 13, 1, 1, "random", "random", "both", id="lanes-pointwise-13-to-14"),
    pytest.param(32, 8, 13, 1, 3, "limit", "limit", "both", id="lanes-3x3-13-to-14"),
    pytest.param(32, 8, 26, 2, 3, "random", "random", "both", id="lanes-3x3-stride2-13-to-14"),
]


def _weights(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if kind == "limit":  # the extremes edgec's symmetric quantization gives, random signs
        return np.where(rng.random(shape) < 0.5, -127, 127).astype(np.int8)
    values = rng.integers(-127, 128, shape)
    if kind == "-128":
        values.flat[0] = -128
    return values.astype(np.int8)


def _activations(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    values = np.full(shape, -128) if kind == "limit" else rng.integers(-128, 128, shape)
    return values.astype(np.float32)  # integers: the model casts them to int8


def _onnx_conv(path: Path, w: np.ndarray, x_shape: tuple[int, ...], stride: int) -> None:
    """The same convolution in float ONNX: the bundle's reference model and its I/O shapes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    pad = w.shape[2] // 2
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[stride] * 2, pads=[pad] * 4)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.astype(np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
@pytest.mark.parametrize(
    ("cin", "cout", "size", "stride", "kernel", "weights", "activations", "dot"), CASES
)
def test_arm_int8_conv_sums_are_exact_on_the_int8_instructions(
    tmp_path: Path,
    target: str,
    cin: int,
    cout: int,
    size: int,
    stride: int,
    kernel: int,
    weights: str,
    activations: str,
    dot: str,
) -> None:
    import torch
    from tvm import relax

    from edgec.artifacts import OnnxModel, RelaxModule, TensorSpec
    from edgec.backends import Model
    from edgec.backends.tvm import seal
    from edgec.relax.compile import compile_model

    rng = np.random.default_rng(cin * cout + size)
    w = _weights(weights, (cout, cin, kernel, kernel), rng)
    x = _activations(activations, (1, cin, size, size), rng)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                relax.op.astype(arg, "int8"), relax.const(w), strides=[stride] * 2,
                padding=[kernel // 2] * 4, out_dtype="int32",
            )  # fmt: skip
            out = bb.emit_output(bb.emit(relax.op.astype(conv, "float32")))  # < 2^24: exact
        bb.emit_func_output(out)
    module = bb.get()
    module["main"] = module["main"].with_attr("num_input", 1)
    _onnx_conv(tmp_path / "model.onnx", w, x.shape, stride)
    # float64 holds these int32 sums exactly
    want = torch.nn.functional.conv2d(
        *(torch.from_numpy(a.astype(np.float64)) for a in (x, w)),
        stride=stride,
        padding=kernel // 2,
    ).numpy()
    onnx = OnnxModel(
        tmp_path / "model.onnx",
        (TensorSpec("x", x.shape, "float32"),),
        (TensorSpec("y", want.shape, "float32"),),
        "conv",
        None,
    )
    built = compile_model(RelaxModule(module, onnx), get_target(target), tmp_path)
    assert built.schedules["int8_dot"] == int(dot in ("both", target))
    # rpi4 takes the depth-lane kernel where 16-channel steps are at least two
    # (or on its window gathered into one axis, few channels in a wide window)
    window = cin * kernel**2
    deep = (cin % 16 == 0 and window >= 32) or (cin % 4 != 0 and window >= 64)
    lanes = target == "rpi4" and dot == "both" and deep
    lanes = lanes and cout % 4 == 0
    assert (b"conv2d_int8lanes" in built.library.read_bytes()) == lanes
    seal(Model(onnx), built, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text())["target"] == target
    assert np.array_equal(_runner_output(tmp_path, x, tmp_path), want)


# Requantization edges, one output channel each: (multiplier, shift). Each layer has a channel of
# all +127 and one of all -127 weights, so an input of -128 everywhere gives the most negative
# and most positive sums its weights allow. "2y": a channel at n = 31 doubles y in int32;
# "n>31": sqdmulh then the rounding shift; "int64": n = 31 beside n = 62 stays in int64.
TOP = 2**31 - 1
REQUANTIZE_LAYERS = {
    "2y": [(TOP, 31), (2**30, 31), (TOP, 32), (0, 31), (2**30 + 12345, 40), (TOP, 61)],
    "n>31": [(TOP, 32), (2**30, 33), (1_234_567_890, 47), (TOP, 62), (2**30, 38), (0, 31)],
    "int64": [(TOP, 31), (TOP, 62), (2**30, 35), (2**30, 31), (TOP, 40), (2**30, 50)],
    # depthwise (one output channel per input channel): MobileNetV2's other half of int8 layers
    "depthwise": [(TOP, 31), (2**30, 32), (TOP, 33), (0, 31)] * 4,
}


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_arm_int32_requantization_matches_the_reference_at_its_edges(
    tmp_path: Path, target: str
) -> None:
    import torch
    from tvm import relax

    from edgec.artifacts import OnnxModel, RelaxModule, TensorSpec
    from edgec.backends import Model
    from edgec.backends.tvm import seal
    from edgec.int8.fixed_point import requantize
    from edgec.int8.ops import Requantize
    from edgec.relax.compile import compile_model, prepare
    from edgec.relax.lower_int8 import _requantize

    rng = np.random.default_rng(7)
    cin, size = 16, 6
    layers = []
    for name, multipliers in REQUANTIZE_LAYERS.items():
        groups = cin if name == "depthwise" else 1
        w = rng.integers(-127, 128, (len(multipliers), cin // groups, 3, 3)).astype(np.int8)
        w[0], w[1] = 127, -127
        m, n = (np.array(v, np.int64) for v in zip(*multipliers, strict=True))
        bias = rng.integers(-5000, 5000, len(multipliers)).astype(np.int32)
        layers.append((w, groups, bias, Requantize(m, n, lo=-128, hi=127)))
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType([1, cin, size, size], "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            x8 = bb.emit(relax.op.astype(arg, "int8"))
            outs = []
            for w, groups, bias, out in layers:
                conv = bb.emit(relax.op.nn.conv2d(x8, relax.const(w), padding=[1] * 4,
                                                  groups=groups, out_dtype="int32"))  # fmt: skip
                outs.append(bb.emit(_requantize(conv, out, [1, -1, 1, 1], bias=bias)))
            joined = bb.emit(relax.op.concat(outs, axis=1))
            result = bb.emit_output(bb.emit(relax.op.astype(joined, "float32")))
        bb.emit_func_output(result)
    module = bb.get()
    module["main"] = module["main"].with_attr("num_input", 1)
    prepared = prepare(module, get_target(target), {})
    assert sum("requantize_int32" in gv.name_hint for gv in prepared.get_global_vars()) == 3
    channels = sum(len(v) for v in REQUANTIZE_LAYERS.values())
    spec = TensorSpec("y", (1, channels, size, size), "float32")
    _onnx_conv(tmp_path / "model.onnx", np.zeros((channels, cin, 3, 3)), (1, cin, size, size), 1)
    onnx = OnnxModel(tmp_path / "model.onnx", (TensorSpec("x", (1, cin, size, size), "float32"),),
                     (spec,), "requantize", None)  # fmt: skip
    built = compile_model(RelaxModule(module, onnx), get_target(target), tmp_path)
    seal(Model(onnx), built, tmp_path)
    extremes = np.full((1, cin, size, size), -128, np.float32)
    for x in (extremes, rng.integers(-128, 128, extremes.shape).astype(np.float32)):
        want = []
        for w, groups, bias, out in layers:
            acc = torch.nn.functional.conv2d(
                torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                padding=1, groups=groups,
            ).numpy().astype(np.int64) + bias.reshape(1, -1, 1, 1)  # fmt: skip
            shape = (1, -1, 1, 1)
            want.append(requantize(acc, out.multiplier.reshape(shape), out.shift.reshape(shape),
                                   out.lo, out.hi))  # fmt: skip
        got = _runner_output(tmp_path, x, tmp_path)
        assert np.array_equal(got, np.concatenate(want, axis=1).astype(np.float32))


# (vector lanes of the kernel's loop, whether NEON's srshl computes it): 4 and 2 lanes are the
# intrinsic's own, 8 and 16 split into 4-lane parts; a scalar or 3 lanes would abort LLVM on
# the intrinsic, so they get the plain add and shift
ROUNDING_SHIFT_WIDTHS = [
    pytest.param(1, False, id="scalar"),
    pytest.param(2, True, id="2-lanes"),
    pytest.param(3, False, id="3-lanes"),
    pytest.param(4, True, id="4-lanes"),
    pytest.param(8, True, id="8-lanes-split"),
    pytest.param(16, True, id="16-lanes-split"),
]


@pytest.mark.parametrize(("lanes", "srshl"), ROUNDING_SHIFT_WIDTHS)
def test_the_requantization_rounding_shift_builds_at_every_vector_width(
    lanes: int, srshl: bool
) -> None:
    import tvm
    from tvm import te, tirx

    from edgec.relax.lower_int8 import _register_rounding_shift

    op = _register_rounding_shift()
    n = 48
    x, s = te.placeholder((n,), "int32", name="x"), te.placeholder((n,), "int32", name="s")
    out = te.compute((n,), lambda i: tirx.call_intrin("int32", op, x[i], s[i]), name="out")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, s, out]))
    (loop,) = sch.get_loops(sch.get_sblock("out"))
    if lanes > 1:
        sch.vectorize(sch.split(loop, [None, lanes])[1])
    target = tvm.target.Target(get_target("rpi4").tvm_target)
    asm = tvm.tirx.build(sch.mod, target=target).inspect_source("asm")
    assert ("srshl" in asm) == srshl
    if not srshl:  # the plain form, run here: (x + 2^(k-1)) >> k for s = -k
        host = tvm.tirx.build(sch.mod, target=tvm.target.Target({"kind": "llvm"}))
        rng = np.random.default_rng(0)
        xs = rng.integers(-(2**30), 2**30, n).astype(np.int32)
        ks = rng.integers(1, 32, n).astype(np.int32)
        got = tvm.runtime.tensor(np.zeros(n, np.int32))
        host(tvm.runtime.tensor(xs), tvm.runtime.tensor(-ks), got)
        want = (xs.astype(np.int64) + (1 << (ks.astype(np.int64) - 1))) >> ks
        assert np.array_equal(got.numpy(), want)


# Depthwise int8 (MobileNetV2's other half): (channels, size, stride, pads, dilation, channel
# multiplier, weights, activations, whether the int16 kernel takes it). Channel counts not a
# multiple of 16 (or 4), odd sizes with stride 2, asymmetric padding; a channel multiplier of 2
# and a dilated window are not covered: they step aside to the generic kernel, still exact.
DEPTHWISE = [
    pytest.param(32, 8, 1, (1, 1, 1, 1), 1, 1, "random", "random", True, id="3x3-s1"),
    pytest.param(16, 6, 1, (1, 1, 1, 1), 1, 1, "limit", "limit", True, id="3x3-int-limit"),
    pytest.param(24, 9, 2, (1, 1, 1, 1), 1, 1, "random", "random", True, id="3x3-s2-odd-size"),
    pytest.param(20, 7, 2, (0, 0, 1, 1), 1, 1, "-128", "limit", True, id="s2-pad-bottom-right"),
    pytest.param(6, 5, 1, (2, 2, 2, 2), 1, 1, "random", "random", True, id="6-channels-pad2"),
    # channels not a multiple of 8 (these, 6 and 20 above) run on 8-channel vectors, padded
    pytest.param(58, 8, 1, (1, 1, 1, 1), 1, 1, "limit", "limit", True, id="58-channels"),
    pytest.param(58, 9, 2, (1, 1, 1, 1), 1, 1, "random", "random", True, id="58-channels-s2"),
    pytest.param(8, 7, 1, (1, 1, 1, 1), 1, 2, "random", "random", False, id="multiplier2-generic"),
    pytest.param(8, 9, 1, (2, 2, 2, 2), 2, 1, "random", "random", False, id="dilated-generic"),
]


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
@pytest.mark.parametrize(
    ("c", "size", "stride", "pads", "dilation", "multiplier", "weights", "activations", "taken"),
    DEPTHWISE,
)
def test_arm_int8_depthwise_sums_are_exact_on_the_int16_kernel(
    tmp_path: Path,
    target: str,
    c: int,
    size: int,
    stride: int,
    pads: tuple[int, int, int, int],
    dilation: int,
    multiplier: int,
    weights: str,
    activations: str,
    taken: bool,
) -> None:
    import torch
    from tvm import relax

    from edgec.artifacts import OnnxModel, RelaxModule, TensorSpec
    from edgec.backends import Model
    from edgec.backends.tvm import seal
    from edgec.relax.compile import compile_model, prepare

    rng = np.random.default_rng(c * size + stride)
    w = _weights(weights, (c * multiplier, 1, 3, 3), rng)
    x = _activations(activations, (1, c, size, size), rng)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                relax.op.astype(arg, "int8"), relax.const(w), strides=[stride] * 2,
                padding=list(pads), dilation=[dilation] * 2, groups=c, out_dtype="int32",
            )  # fmt: skip
            out = bb.emit_output(bb.emit(relax.op.astype(conv, "float32")))  # < 2^24: exact
        bb.emit_func_output(out)
    module = bb.get()
    module["main"] = module["main"].with_attr("num_input", 1)
    top, left, bottom, right = pads
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    want = torch.nn.functional.conv2d(
        torch.from_numpy(padded), torch.from_numpy(w.astype(np.float64)), stride=stride,
        dilation=dilation, groups=c,
    ).numpy()  # fmt: skip
    prepared = prepare(module, get_target(target), {})
    names = [gv.name_hint for gv in prepared.get_global_vars()]
    assert any("depthwise_int16" in name for name in names) == taken
    _onnx_conv(tmp_path / "model.onnx", np.zeros((c, c, 3, 3)), x.shape, 1)  # I/O specs only
    onnx = OnnxModel(
        tmp_path / "model.onnx",
        (TensorSpec("x", x.shape, "float32"),),
        (TensorSpec("y", want.shape, "float32"),),
        "depthwise",
        None,
    )
    built = compile_model(RelaxModule(module, onnx), get_target(target), tmp_path)
    seal(Model(onnx), built, tmp_path)
    assert np.array_equal(_runner_output(tmp_path, x, tmp_path), want)


# int8 dense layers (the transformer's Linear layers), all in one model per target: (rows M,
# in features K, out features N, weights, epilogue, whether rpi4's smull kernel takes it; rpi5's
# sdot takes all). Each reads the first K features of the input rows; rows 0 and 1 are all -128
# (with "limit" weights every smull + smlal pair sums to +-32512, the int16 edge). Epilogues:
# none, an int32 bias add, or edgec's requantization with its bias (int32 on Arm).
DENSE = [
    (8, 64, 32, "random", "none", True),
    (8, 37, 24, "limit", "bias", True),  # odd K: zero weights fill the last group
    (8, 64, 19, "random", "requantize", True),  # odd N: zero columns, cut in the write-back
    (3, 16, 8, "-128", "none", False),  # a -128 weight: smull could overflow, generic there
    (8, 48, 40, "limit", "requantize", True),
]


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_arm_int8_dense_sums_are_exact_on_the_int8_instructions(
    tmp_path: Path, target: str
) -> None:
    from tvm import relax

    from edgec.artifacts import RelaxModule
    from edgec.backends import Model
    from edgec.backends.tvm import seal
    from edgec.int8.fixed_point import requantize
    from edgec.int8.ops import Requantize
    from edgec.relax.compile import compile_model
    from edgec.relax.lower_int8 import _requantize

    rng = np.random.default_rng(11)
    rows, features = 8, 64
    x = rng.integers(-128, 128, (1, rows, features)).astype(np.float32)
    x[:, :2] = -128
    layers, want = [], []
    for m, k, n, weights, epilogue, _ in DENSE:
        w = _weights(weights, (k, n), rng)
        bias = rng.integers(-5000, 5000, n).astype(np.int32)
        out = Requantize(rng.integers(2**29, 2**31 - 1, n), rng.integers(36, 44, n), -128, 127)
        layers.append((m, k, w, epilogue, bias, out))
        acc = x[0, :m, :k].astype(np.int64) @ w.astype(np.int64)
        if epilogue == "bias":
            acc = acc + bias
        elif epilogue == "requantize":
            acc = requantize(acc + bias, out.multiplier, out.shift, out.lo, out.hi)
        want.append(acc.reshape(-1))
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            x8 = bb.emit(relax.op.astype(arg, "int8"))
            outs = []
            for m, k, w, epilogue, bias, out in layers:
                part = bb.emit(relax.op.strided_slice(x8, [1, 2], [0, 0], [m, k]))
                y = bb.emit(relax.op.matmul(part, relax.const(w), out_dtype="int32"))
                if epilogue == "bias":
                    y = bb.emit(relax.op.add(y, relax.const(bias.reshape(1, -1))))
                elif epilogue == "requantize":
                    y = bb.emit(relax.op.astype(_requantize(y, out, [1, -1], bias=bias), "int32"))
                outs.append(bb.emit(relax.op.reshape(y, [-1])))
            joined = bb.emit(relax.op.concat(outs, axis=0))
            result = bb.emit_output(bb.emit(relax.op.astype(joined, "float32")))  # exact: < 2^24
        bb.emit_func_output(result)
    module = bb.get()
    module["main"] = module["main"].with_attr("num_input", 1)
    expected = np.concatenate(want).astype(np.float32)
    onnx_model = _flatten_reference(tmp_path, x.shape, expected.shape, "dense")
    built = compile_model(RelaxModule(module, onnx_model), get_target(target), tmp_path)
    taken = sum(smull or target == "rpi5" for *_, smull in DENSE)
    assert built.schedules["int8_dot"] == taken
    # the int32 requantization takes a dense layer's [1, N] constants too (it stepped aside)
    assert "int8 requantization in int32" not in built.schedules["fallbacks"]
    seal(Model(onnx_model), built, tmp_path)
    assert np.array_equal(_runner_output(tmp_path, x, tmp_path), expected)


# (input channels, output channels, width, tile rows x vectors of 4 int32 lanes): the 4 x 4
# tile of channel pairs only over a short reduction into channels not cut after it;
# ShuffleNetV2's longer ones (and its 24 -> 58) keep 2 vectors and the rows that divide their
# width (4 x 4 left 2 x 4 at 14 wide, 1 x 4 at 7: rpi4 int8 66.4M instructions, against 83.7M
# with it)
PAIR_TILES = [
    pytest.param(24, 64, 16, (4, 4), id="24-channels-4x4"),
    pytest.param(24, 58, 16, (8, 2), id="24-channels-cut-to-58-8x2"),
    pytest.param(116, 116, 14, (7, 2), id="116-channels-7x2"),
    pytest.param(232, 232, 7, (7, 2), id="232-channels-7x2"),
    pytest.param(58, 58, 28, (7, 2), id="58-channels-7x2"),
]


@pytest.mark.parametrize(("cin", "cout", "width", "tile"), PAIR_TILES)
def test_rpi4_pointwise_pair_tiles_take_four_vectors_only_over_a_short_reduction(
    cin: int, cout: int, width: int, tile: tuple[int, int]
) -> None:
    import re

    from tvm import relax, tirx

    from edgec.relax import int8_dot

    w = np.random.default_rng(cin).integers(-127, 128, (1, 1, cin, cout)).astype(np.int8)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([1, width, width, cin], "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                x, relax.const(w), data_layout="NHWC", kernel_layout="HWIO", out_dtype="int32"
            )
            out = bb.emit_output(conv)
        bb.emit_func_output(out)
    legalize = relax.transform.LegalizeOps(int8_dot.legalize_map(get_target("rpi4")))
    (func,) = [f for f in legalize(bb.get()).functions.values() if isinstance(f, tirx.PrimFunc)]
    scheduled = int8_dot.schedule_rule("smull").apply(func, None, False)
    grid = re.search(
        r"_init in T.grid\(T.int64\((\d+)\), T.int64\((\d+)\)\)", scheduled.mod.script()
    )
    assert grid is not None and tuple(int(g) for g in grid.groups()) == tile


# Grouped (not depthwise) int8 convolutions, all in one model per target: (groups, input and
# output channels per group, kernel, stride, output side, weights, which targets take it on
# the grouped depth-lane kernel). RegNetX's are 16 -> 16 per group, 3x3 and stride 1 or 2;
# groups of 16 input channels (or a multiple) whose outputs a tile divides are taken; narrower
# groups and an odd count of outputs per group step aside to the generic kernel, and on rpi4 a
# -128 weight (smull's int16 products could overflow; rpi5's sdot has no such limit).
GROUPED = [
    pytest.param(4, 16, 16, 3, 1, 8, "random", "both", id="regnetx-16-per-group-4x4-tiles"),
    pytest.param(2, 16, 16, 3, 2, 7, "limit", "both", id="stride2-int16-limit-7x2-tiles"),
    pytest.param(3, 16, 16, 3, 1, 14, "random", "both", id="14-wide-2x8-tiles"),
    pytest.param(2, 32, 8, 3, 1, 6, "limit", "both", id="32-in-per-group-two-steps"),
    pytest.param(4, 16, 16, 1, 1, 8, "random", "both", id="pointwise-grouped"),
    pytest.param(2, 16, 6, 3, 1, 5, "random", "both", id="6-out-per-group-2-vectors"),
    pytest.param(2, 16, 16, 3, 1, 11, "limit", "both", id="11-wide-one-pixel-tiles"),
    pytest.param(8, 8, 8, 3, 1, 8, "random", "none", id="8-per-group-generic"),
    pytest.param(16, 4, 4, 3, 1, 6, "random", "none", id="4-per-group-generic"),
    pytest.param(2, 16, 3, 3, 1, 6, "random", "none", id="3-out-per-group-generic"),
    pytest.param(2, 16, 16, 3, 1, 6, "-128", "rpi5", id="weight-128-sdot-only"),
]


@pytest.mark.parametrize("target", ["rpi4", "rpi5"])
def test_arm_int8_grouped_conv_sums_are_exact(tmp_path: Path, target: str) -> None:
    import torch
    from tvm import relax

    from edgec.artifacts import RelaxModule
    from edgec.backends import Model
    from edgec.backends.tvm import seal
    from edgec.relax.compile import compile_model

    rng = np.random.default_rng(14)
    channels, side = 64, 16
    x = _activations("random", (1, channels, side, side), rng)
    x[:, :, :2] = -128  # with "limit" weights every smull + smlal pair sums to +-32512
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    want, cases = [], [case.values for case in GROUPED]
    with bb.function("main", [arg]):
        with bb.dataflow():
            x8 = bb.emit(relax.op.astype(arg, "int8"))
            outs = []
            for groups, cin, cout, kernel, stride, size, weights, _ in cases:
                w = _weights(weights, (groups * cout, cin, kernel, kernel), rng)
                extent = (size - 1) * stride + 1  # input side giving `size` outputs
                part = bb.emit(relax.op.strided_slice(x8, [1, 2, 3], [0, 0, 0],
                                                      [groups * cin, extent, extent]))  # fmt: skip
                conv = bb.emit(relax.op.nn.conv2d(
                    part, relax.const(w), strides=[stride] * 2, padding=[kernel // 2] * 4,
                    groups=groups, out_dtype="int32",
                ))  # fmt: skip
                outs.append(bb.emit(relax.op.reshape(conv, [-1])))
                # float64 holds these int32 sums exactly
                want.append(torch.nn.functional.conv2d(
                    torch.from_numpy(x[:, : groups * cin, :extent, :extent].astype(np.float64)),
                    torch.from_numpy(w.astype(np.float64)), stride=stride,
                    padding=kernel // 2, groups=groups,
                ).numpy().reshape(-1))  # fmt: skip
            joined = bb.emit(relax.op.concat(outs, axis=0))
            result = bb.emit_output(bb.emit(relax.op.astype(joined, "float32")))  # < 2^24
        bb.emit_func_output(result)
    module = bb.get()
    module["main"] = module["main"].with_attr("num_input", 1)
    expected = np.concatenate(want).astype(np.float32)
    onnx_model = _flatten_reference(tmp_path, x.shape, expected.shape, "grouped")
    built = compile_model(RelaxModule(module, onnx_model), get_target(target), tmp_path)
    taken = sum(case[-1] in ("both", target) for case in cases)
    assert built.schedules["int8_dot"] == taken
    assert (b"conv2d_int8groups" in built.library.read_bytes()) == (taken > 0)
    seal(Model(onnx_model), built, tmp_path)
    assert np.array_equal(_runner_output(tmp_path, x, tmp_path), expected)


# RegNetX-400MF's grouped 3x3 layers (16 -> 16 per group) at each stage's output width: (groups,
# output width, tile rows x output channels of one group), the fewest loads per multiply
# (`lanes_tile`) that fit 32 registers; the same on both instructions
GROUPED_TILES = [
    pytest.param(2, 56, (4, 4), id="stage1-56-wide-4x4"),
    pytest.param(4, 28, (4, 4), id="stage2-28-wide-4x4"),
    pytest.param(10, 14, (2, 8), id="stage3-14-wide-2x8"),
    pytest.param(25, 7, (7, 2), id="stage4-7-wide-7x2"),
]


@pytest.mark.parametrize("int8_dot", ["smull", "sdot"])
@pytest.mark.parametrize(("groups", "width", "tile"), GROUPED_TILES)
def test_grouped_int8_tiles_hold_one_groups_outputs_across_the_window(
    groups: int, width: int, tile: tuple[int, int], int8_dot: str
) -> None:
    import re

    from tvm import relax, tirx

    from edgec.relax import int8_dot as kernels

    rng = np.random.default_rng(groups)
    w = rng.integers(-127, 128, (3, 3, 16, 16 * groups)).astype(np.int8)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([1, width, width, 16 * groups], "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                x, relax.const(w), padding=[1] * 4, groups=groups, data_layout="NHWC",
                kernel_layout="HWIO", out_dtype="int32",
            )  # fmt: skip
            out = bb.emit_output(conv)
        bb.emit_func_output(out)
    target = {"smull": "rpi4", "sdot": "rpi5"}[int8_dot]
    legalize = relax.transform.LegalizeOps(kernels.legalize_map(get_target(target)))
    (func,) = [f for f in legalize(bb.get()).functions.values() if isinstance(f, tirx.PrimFunc)]
    scheduled = kernels.schedule_rule(int8_dot).apply(func, None, False)
    assert kernels.tensorized(scheduled.mod["main"])
    grid = re.search(
        r"z_1_init in T.unroll\(T.int64\((\d+)\)\):\s+for o_1_init in T.unroll\(T.int64\((\d+)\)",
        scheduled.mod.script(),
    )
    assert grid is not None and tuple(int(g) for g in grid.groups()) == tile


def _flatten_reference(
    directory: Path, x_shape: tuple[int, ...], y_shape: tuple[int, ...], name: str
) -> OnnxModel:
    """DIRECTORY/model.onnx as a Flatten of the input: the bundle's reference model only gives
    the runner its input and output shapes."""
    import onnx
    from onnx import TensorProto, helper

    from edgec.artifacts import TensorSpec

    node = helper.make_node("Flatten", ["x"], ["y"], axis=0)
    graph = helper.make_graph(
        [node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(directory / "model.onnx"))  # fmt: skip
    return OnnxModel(directory / "model.onnx", (TensorSpec("x", tuple(x_shape), "float32"),),
                     (TensorSpec("y", tuple(y_shape), "float32"),), name, None)  # fmt: skip
