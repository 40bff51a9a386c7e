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
    # 13 rows x 16 on 1008 x 13 (AVX-512's 32 registers), not 5 x 32 on 1024 x 15
    pytest.param(16, 1000, 13, 1, 1, 1, "x86", (63, 1, 1, 16, 16), id="x86-1000-classes-13x13"),
    pytest.param(24, 58, 28, 1, 1, 1, "x86", (2, 1, 1, 24, 32), id="x86-58-channels"),
    pytest.param(16, 40, 13, 1, 3, 1, "x86", (3, 3, 3, 16, 16), id="x86-3x3-rows-padded"),
    pytest.param(8, 24, 13, 2, 3, 1, "x86", (1, 3, 3, 8, 32), id="x86-3x3-stride2-padded"),
    pytest.param(24, 58, 28, 1, 1, 1, "rpi4", (15, 1, 1, 24, 4), id="rpi4-58-channels"),
    pytest.param(64, 400, 1, 1, 1, 1, "x86", (13, 1, 1, 64, 32), id="x86-400-channels-one-pixel"),
    pytest.param(8, 8, 8, 1, 3, 1, "x86", None, id="one-block-stays-hwio"),
    pytest.param(32, 32, 14, 1, 3, 32, "rpi4", None, id="depthwise-stays"),
    # grouped: blocks within one group (x86; Arm keeps TOPI's grouped kernel)
    pytest.param(32, 64, 14, 1, 3, 2, "x86", (2, 3, 3, 16, 32), id="x86-grouped-per-group"),
    pytest.param(32, 64, 14, 1, 3, 2, "rpi4", None, id="rpi4-grouped-stays"),
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


# (rows of the reduction's grid, rows its cut keeps): a padded grid cut back in the write-back
CUTS = [
    pytest.param(3, 2, id="cut-to-2-of-3-rows"),
    pytest.param(3, 1, id="cut-to-one-row"),  # a unit axis: normalized to the constant 0
    pytest.param(4, 1, id="cut-to-one-row-of-4"),
]


@pytest.mark.parametrize(("grid", "kept"), CUTS)
def test_a_cut_of_a_padded_grid_written_back_is_exact(grid: int, kept: int) -> None:
    """TVM 0.27's reverse_compute_inline drops a cut's constraint when the cut reads its
    producer at a constant row (after dlight's normalize_prim_func turns a unit axis into 0):
    every grid row then wrote row 0. write_back_at keeps such a cut as its own loop."""
    import tvm
    from tvm import s_tir, te
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    from edgec.relax.tiling import write_back_at

    a = te.placeholder((grid, 16), name="a")
    w = te.placeholder((16, 32), name="w")
    r = te.reduce_axis((0, 16), "r")
    b = te.compute((grid, 32), lambda i, j: te.sum(a[i, r] * w[r, j], axis=r), name="b")
    c = te.compute((kept, 32), lambda i, j: b[i, j], name="cut")
    sch = s_tir.Schedule(te.create_prim_func([a, w, c]))
    normalize_prim_func(sch)
    main = sch.get_sblock("b")
    write_back_at(sch, main, sch.get_loops(main)[0], [sch.get_sblock("cut")])
    rng = np.random.default_rng(grid * 10 + kept)
    x = rng.standard_normal((grid, 16)).astype(np.float32)
    wv = rng.standard_normal((16, 32)).astype(np.float32)
    out = tvm.runtime.tensor(np.zeros((kept, 32), np.float32))
    tvm.compile(sch.mod, target="llvm")(tvm.runtime.tensor(x), tvm.runtime.tensor(wv), out)
    np.testing.assert_allclose(out.numpy(), (x @ wv)[:kept], rtol=1e-5, atol=1e-5)


# (in channels, out channels, height, width, kernel, stride): outputs one pixel wide or tall,
# odd sizes, channel counts no register width divides (padded grids), against ONNX Runtime
EDGE_SHAPES = [
    pytest.param(64, 400, 1, 1, 1, 1, id="400-channels-one-pixel"),  # regnet_x_400mf at 32x32
    pytest.param(64, 400, 5, 1, 1, 1, id="one-wide-5-tall"),
    pytest.param(64, 400, 1, 5, 1, 1, id="one-tall-5-wide"),
    pytest.param(32, 58, 7, 1, 3, 1, id="one-wide-3x3-58-channels"),
    pytest.param(32, 58, 1, 13, 3, 1, id="one-tall-3x3-58-channels"),
    pytest.param(16, 1000, 13, 7, 1, 1, id="odd-13x7-1000-classes"),
    pytest.param(24, 40, 3, 2, 3, 2, id="stride2-to-2x1"),
]


@pytest.mark.parametrize(("cin", "cout", "height", "width", "kernel", "stride"), EDGE_SHAPES)
def test_edge_shaped_convolutions_match_onnxruntime(
    cin: int, cout: int, height: int, width: int, kernel: int, stride: int
) -> None:
    import onnx
    import tvm
    from onnx import helper, numpy_helper
    from tvm import relax

    from edgec.reference import session
    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    rng = np.random.default_rng(cin + cout + height * 7 + width)
    w = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32)
    bias = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((1, cin, height, width)).astype(np.float32)
    pad = kernel // 2
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4, strides=[stride] * 2),
         helper.make_node("Relu", ["c"], ["y"])],
        "edge", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    want = session(model.SerializeToString(), 1).run(None, {"x": x})[0]
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(arg, relax.const(w), strides=[stride] * 2, padding=[pad] * 4)
            biased = relax.op.add(conv, relax.const(bias.reshape(1, -1, 1, 1)))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(biased)))
        bb.emit_func_output(out)
    host = get_target("x86")
    with tvm_target(host) as tvm_host:
        lowered = relax.get_pipeline("default")(_schedule(host)(prepare(bb.get(), host, {})))
    vm = relax.VirtualMachine(tvm.compile(lowered, tvm_host, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
