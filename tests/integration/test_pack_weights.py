"""float32 conv2d weights are packed at build time into [O/cols, KH, KW, I, cols], the order
the register tile reads them, and the packed kernels compute what torch does; convolutions the
packing does not take keep their usual kernel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytestmark = pytest.mark.integration

# (in channels, out channels, size, stride, kernel, groups, target, packed weight shape or None)
CASES = [
    pytest.param(64, 64, 14, 1, 3, 1, "rpi4", (8, 3, 3, 64, 8), id="rpi4-3x3"),
    pytest.param(32, 64, 15, 2, 3, 1, "rpi4", (4, 3, 3, 32, 16), id="rpi4-3x3-stride2-odd"),
    pytest.param(24, 144, 28, 1, 1, 1, "rpi4", (9, 1, 1, 24, 16), id="rpi4-pointwise"),
    pytest.param(
        512, 512, 7, 1, 3, 1, "x86", (16, 3, 3, 512, 32), id="x86-7x7-rows-14-accumulators"
    ),
    pytest.param(3, 64, 32, 2, 7, 1, "x86", (2, 7, 7, 3, 32), id="x86-stem-3-channels"),
    pytest.param(16, 12, 8, 1, 3, 1, "x86", (1, 3, 3, 16, 16), id="x86-12-channels-padded-to-16"),
    # no exact tile keeps the registers busy: a padded grid, cut back in the write-back
    pytest.param(16, 1000, 13, 1, 1, 1, "x86", (32, 1, 1, 16, 32), id="x86-1000-classes-13x13"),
    pytest.param(24, 58, 28, 1, 1, 1, "x86", (2, 1, 1, 24, 32), id="x86-58-channels"),
    pytest.param(16, 40, 13, 1, 3, 1, "x86", (3, 3, 3, 16, 16), id="x86-3x3-rows-padded"),
    pytest.param(8, 24, 13, 2, 3, 1, "x86", (1, 3, 3, 8, 32), id="x86-3x3-stride2-padded"),
    pytest.param(24, 58, 28, 1, 1, 1, "rpi4", (15, 1, 1, 24, 4), id="rpi4-58-channels"),
    pytest.param(64, 400, 1, 1, 1, 1, "x86", (13, 1, 1, 64, 32), id="x86-400-channels-one-pixel"),
    pytest.param(8, 8, 8, 1, 3, 1, "x86", None, id="one-block-stays-hwio"),
    pytest.param(32, 32, 14, 1, 3, 32, "rpi4", None, id="depthwise-stays"),
    pytest.param(32, 64, 14, 1, 3, 2, "x86", None, id="grouped-stays"),
]


@pytest.mark.parametrize(
    ("cin", "cout", "size", "stride", "kernel", "groups", "target", "packed"), CASES
)
def test_conv_weights_are_packed_for_the_register_tile(
    cin: int,
    cout: int,
    size: int,
    stride: int,
    kernel: int,
    groups: int,
    target: str,
    packed: tuple[int, ...] | None,
) -> None:
    import torch
    import tvm
    from tvm import relax

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    rng = np.random.default_rng(cin * cout + size)
    w = rng.standard_normal((cout, cin // groups, kernel, kernel)).astype(np.float32)
    x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                arg, relax.const(w), strides=[stride] * 2, padding=[kernel // 2] * 4,
                groups=groups,
            )  # fmt: skip
            out = bb.emit_output(bb.emit(conv))
        bb.emit_func_output(out)
    profile = get_target(target)
    # direct kernels only: 3x3 stride-1 layers would be Winograd's (tests/.../test_winograd.py)
    caps = dataclasses.replace(profile.capabilities, winograd=False)
    profile = dataclasses.replace(profile, capabilities=caps)
    with tvm_target(profile):
        prepared = prepare(bb.get(), profile, {})
    weights = [
        tuple(int(d) for d in p.shape)
        for gv, f in prepared.functions.items()
        if gv.name_hint.startswith("conv2d")
        for p in f.params
        if len(p.shape) == 5 or (len(p.shape) == 4 and int(p.shape[0]) != 1)  # not the bias
    ]
    assert weights == [packed or (kernel, kernel, cin // groups, cout)]
    if not profile.capabilities.runs_on_host:
        return  # the schedules on NEON: tests/integration/test_cpu_schedules.py, under qemu
    host = dataclasses.replace(get_target("x86"), capabilities=caps)
    with tvm_target(host) as tvm_host:
        lowered = relax.get_pipeline("default")(_schedule(host)(prepare(bb.get(), host, {})))
    vm = relax.VirtualMachine(tvm.compile(lowered, tvm_host, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=kernel // 2, groups=groups
    ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
