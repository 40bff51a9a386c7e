"""int8 convolutions on the host's dot-product instruction (AVX-512 VNNI): exact int32 sums for
every shape the packed kernel takes, and the generic kernel for the shapes it does not."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.targets import get_target

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        get_target("x86").capabilities.int8_dot == "none",
        reason="this host has no int8 dot-product instruction (AVX-512 VNNI)",
    ),
]

# (in channels, out channels, size, stride, kernel, groups): on the instruction or not
CASES = [
    pytest.param(64, 64, 16, 1, 3, 1, True, id="3x3"),
    pytest.param(32, 64, 17, 2, 3, 1, True, id="3x3-stride2-odd-size"),
    pytest.param(64, 128, 8, 1, 1, 1, True, id="pointwise"),
    pytest.param(1, 32, 12, 1, 3, 1, True, id="one-channel-gathered"),
    pytest.param(3, 16, 9, 2, 5, 1, True, id="rgb-5x5-stride2-gathered"),
    pytest.param(6, 16, 7, 1, 3, 1, True, id="channels-not-multiple-of-4"),
    pytest.param(16, 8, 8, 1, 3, 1, True, id="8-out-channels-256-bit"),
    pytest.param(16, 40, 8, 1, 3, 1, True, id="40-out-channels-256-bit"),
    # output channels no lane count divides: zero channels added to the packed weights, cut
    # in the write-back (ShuffleNetV2's 58 and 116)
    pytest.param(16, 12, 8, 1, 3, 1, True, id="12-out-channels-padded"),
    pytest.param(58, 58, 28, 1, 1, 1, True, id="58-out-channels-padded-pointwise"),
    pytest.param(24, 116, 7, 2, 3, 1, True, id="116-out-channels-padded-stride2"),
    pytest.param(16, 16, 8, 1, 3, 16, False, id="depthwise-generic"),
]


@pytest.mark.parametrize(("cin", "cout", "size", "stride", "kernel", "groups", "dot"), CASES)
def test_int8_conv_sums_are_exact_on_the_dot_product_instruction(
    cin: int, cout: int, size: int, stride: int, kernel: int, groups: int, dot: bool
) -> None:
    import torch
    import tvm
    from tvm import relax

    from edgec.relax import int8_dot
    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target

    rng = np.random.default_rng(cin * cout + size)
    w = rng.integers(-128, 128, (cout, cin // groups, kernel, kernel)).astype(np.int8)
    x = rng.integers(-128, 128, (1, cin, size, size)).astype(np.int8)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "int8"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                arg, relax.const(w), strides=[stride] * 2, padding=[kernel // 2] * 4,
                groups=groups, out_dtype="int32",
            )  # fmt: skip
            out = bb.emit_output(bb.emit(conv))
        bb.emit_func_output(out)
    profile = get_target("x86")
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
        lowered = relax.get_pipeline("default")(scheduled)
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    # float64 holds these int32 sums exactly
    as_float = [torch.from_numpy(a.astype(np.float64)) for a in (x, w)]
    want = torch.nn.functional.conv2d(
        *as_float, stride=stride, padding=kernel // 2, groups=groups
    ).numpy()
    assert np.array_equal(got, want)
    kernels = [f for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert sum(int8_dot.tensorized(f) for f in kernels) == int(dot)


# (activation shape [..., M, K], out features N, with an int32 bias, which instruction width):
# odd K meets zero weights in the packed groups; N not a multiple of 8 is computed on zero
# columns and cut in the write-back; batch axes are rows of the same kernel.
DENSE = [
    pytest.param((1, 128, 256), 1024, False, 16, id="ffn-128x256x1024"),
    pytest.param((1, 128, 256), 768, True, 16, id="qkv-768-bias"),
    pytest.param((1, 7, 37), 24, True, 8, id="odd-k-24-out-256-bit"),
    pytest.param((1, 9, 64), 19, False, 16, id="odd-n-padded"),
    pytest.param((1, 64), 10, True, 16, id="classifier-one-row"),
    pytest.param((2, 3, 5, 13), 40, False, 8, id="batched-odd-k"),
]


@pytest.mark.parametrize(("shape", "n", "bias", "lanes"), DENSE)
def test_int8_dense_sums_are_exact_on_the_dot_product_instruction(
    shape: tuple[int, ...], n: int, bias: bool, lanes: int
) -> None:
    import tvm
    from tvm import relax

    from edgec.relax import int8_dot
    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target

    rng = np.random.default_rng(n + shape[-1])
    w = rng.integers(-128, 128, (shape[-1], n)).astype(np.int8)
    x = rng.integers(-128, 128, shape).astype(np.int8)
    x[..., 0, :] = -128  # a row at the extreme: the uint8 offset's -128 * sum(w) at its largest
    b = rng.integers(-(2**20), 2**20, n).astype(np.int32)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "int8"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(arg, relax.const(w), out_dtype="int32"))
            if bias:
                y = bb.emit(relax.op.add(y, relax.const(b.reshape(1, -1))))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    profile = get_target("x86")
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
        lowered = relax.get_pipeline("default")(scheduled)
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = x.astype(np.int64) @ w.astype(np.int64) + (b if bias else 0)
    assert np.array_equal(got, want)
    (kernel,) = [f for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert int8_dot.tensorized(kernel)
    assert f"vpdpbusd.{32 * lanes}" in kernel.script()  # 512- or 256-bit form


def test_int8_dense_with_a_float_island_after_it_stays_exact() -> None:
    """A float epilogue after the requantization (GELU after a Linear layer, as the int8
    transformer fuses it) reads the int8 value the write-back computed once per tile."""
    import tvm
    from tvm import relax

    from edgec.int8.fixed_point import requantize
    from edgec.int8.ops import Requantize
    from edgec.relax import int8_dot
    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.lower_int8 import _requantize
    from edgec.relax.target import tvm_target

    rng = np.random.default_rng(5)
    k, n = 64, 48
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    x = rng.integers(-128, 128, (1, 16, k)).astype(np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    out = Requantize(rng.integers(2**29, 2**31 - 1, n), rng.integers(36, 44, n), -128, 127)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "int8"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(arg, relax.const(w), out_dtype="int32"))
            y8 = bb.emit(_requantize(y, out, [1, -1], bias=bias))
            f = bb.emit(relax.op.astype(y8, "float32"))
            # x * x * 0.25 + x: exact in float32 for int8 x, and x read twice (like erf's x)
            g = bb.emit(relax.op.add(relax.op.multiply(relax.op.multiply(f, f), relax.const(
                np.float32(0.25))), f))  # fmt: skip
            result = bb.emit_output(bb.emit(relax.op.astype(relax.op.floor(g), "int32")))
        bb.emit_func_output(result)
    profile = get_target("x86")
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
        lowered = relax.get_pipeline("default")(scheduled)
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    acc = x.astype(np.int64) @ w.astype(np.int64) + bias
    v = requantize(acc, out.multiplier, out.shift, out.lo, out.hi).astype(np.float64)
    assert np.array_equal(got, np.floor(v * v * 0.25 + v).astype(np.int32))
    (kernel,) = [f for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert int8_dot.tensorized(kernel)
