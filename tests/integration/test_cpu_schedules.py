"""edgec's default CPU schedules stay exact on awkward shapes, on x86 and on the emulated Pi."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgec.cli import main
from tests.conftest import needs

pytestmark = pytest.mark.integration


class KitchenSink(nn.Module):
    """Every kernel family the rules schedule, at sizes that do not divide the vector width."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(5, 12, 3, padding=1)  # 13x13 rows, 12 channels: ragged tiles
        self.strided = nn.Conv2d(12, 24, 3, stride=2, padding=1)
        self.grouped = nn.Conv2d(24, 24, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(24, 24, 5, padding=2, groups=24)
        self.pointwise = nn.Conv2d(24, 40, 1)
        self.bn = nn.BatchNorm2d(40)
        self.norm = nn.LayerNorm(40)
        self.head = nn.Linear(40, 7)
        self.classifier = nn.Linear(40, 200)  # one row, 32 KB of weights: streamed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = nn.functional.max_pool2d(torch.relu(self.strided(y)), 3, 1, 1)
        y = self.depthwise(self.grouped(y)) + y
        y = nn.functional.relu6(self.bn(self.pointwise(y)))
        y = nn.functional.avg_pool2d(y, 2, ceil_mode=True)
        tokens = y.flatten(2).transpose(1, 2)  # (1, positions, 40)
        attn = torch.softmax(tokens @ tokens.transpose(1, 2) / 8.0, dim=-1) @ tokens
        head = self.head(nn.functional.gelu(self.norm(attn))).mean(1)
        return torch.cat([head, self.classifier(attn.mean(1))], dim=1)


def _build(tmp_path: Path, target: str) -> dict:
    torch.manual_seed(1)
    model = KitchenSink().eval()
    path = tmp_path / "sink.onnx"
    torch.onnx.export(
        model,
        (torch.randn(1, 5, 13, 13),),
        str(path),
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
    )
    out = tmp_path / target
    result = CliRunner().invoke(
        main, ["build", str(path), "-t", target, "-o", str(out), "--repeat", "2"]
    )
    assert result.exit_code == 0, result.stderr
    return json.loads((out / "report.json").read_text())


def test_x86_schedules_match_onnxruntime_on_ragged_shapes(tmp_path: Path) -> None:
    assert _build(tmp_path, "x86")["parity"]["max_abs_diff"] < 1e-4


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
def test_neon_schedules_match_onnxruntime_under_qemu(tmp_path: Path) -> None:
    report = _build(tmp_path, "rpi4")
    assert report["latency_ms"]["where"] == "emulated"
    assert report["parity"]["max_abs_diff"] < 1e-4


def _neon_asm(x_shape: list[int], w: Any, stride: int, groups: int) -> str:
    """The AArch64 assembly of one conv2d (or, with a 2-D weight, matmul) kernel as edgec's
    rules schedule it for rpi4."""
    import numpy as np
    import tvm
    from tvm import relax

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(x_shape, "float32"))
    weight = relax.const(np.asarray(w, np.float32))
    with bb.function("main", [arg]):
        with bb.dataflow():
            if len(w.shape) == 2:
                y = relax.op.matmul(arg, weight)
            else:
                pad = [w.shape[2] // 2] * 4
                y = relax.op.nn.conv2d(arg, weight, [stride] * 2, pad, groups=groups)
            out = bb.emit_output(bb.emit(y))
        bb.emit_func_output(out)
    profile = get_target("rpi4")
    with tvm_target(profile) as target:
        mod = _schedule(profile)(prepare(bb.get(), profile, {}))
    # a 3x3 stride-1 conv with enough channels and tiles is a Winograd GEMM (edgec.relax.winograd)
    kernels = ("conv2d", "matmul", "winograd_gemm")
    (func,) = [f for gv, f in mod.functions.items() if gv.name_hint in kernels]
    assert func.attrs.get("tirx.is_scheduled")
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    return str(lib.inspect_source("asm"))


# (input shape, weight shape, stride, groups, whether rows are read as vectors)
LANE_CASES = [
    pytest.param([1, 64, 14, 14], (64, 64, 3, 3), 1, 1, True, id="3x3"),
    pytest.param([1, 32, 14, 14], (64, 32, 3, 3), 2, 1, True, id="3x3-stride2"),
    pytest.param([1, 24, 28, 28], (144, 24, 1, 1), 1, 1, True, id="pointwise"),
    pytest.param([7, 64], (64, 1000), 1, 1, True, id="matmul"),
    pytest.param([1, 6, 8, 8], (16, 6, 3, 3), 1, 1, False, id="channels-not-multiple-of-4"),
    pytest.param([1, 32, 14, 14], (32, 1, 3, 3), 1, 32, False, id="depthwise"),
]


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "groups", "vector_rows"), LANE_CASES)
def test_neon_contractions_read_input_rows_as_vectors(
    x_shape: list[int], w_shape: tuple[int, ...], stride: int, groups: int, vector_rows: bool
) -> None:
    """On NEON a contraction loads 4 consecutive inputs of a row with one vector load and
    multiplies by each lane (`fmla v.4s, v.4s, v.s[1..3]`), instead of one broadcast load per
    row and reduction step (lane 0 only): a 14x14 3x3 layer's inner loop went from 1.86 to
    about 1.3 instructions per FMLA."""
    import re

    import numpy as np

    w = np.random.default_rng(0).standard_normal(w_shape)
    asm = _neon_asm(x_shape, w, stride, groups)
    assert bool(re.search(r"fmla\tv\d+\.4s, v\d+\.4s, v\d+\.s\[[123]\]", asm)) == vector_rows


# (channels, size, stride, kernel): depthwise layers of MobileNetV2's kinds and ragged ones
DEPTHWISE_CASES = [
    pytest.param(32, 14, 1, 3, id="3x3"),
    pytest.param(48, 15, 2, 3, id="3x3-stride2-odd"),
    pytest.param(20, 9, 1, 5, id="5x5-20-channels"),
    # channels no whole vector divides, too many for one tile (ShuffleNetV2's 58 on NEON's 4
    # lanes; 90 on x86's 16): 2-lane vectors, not the plain loop nest
    pytest.param(90, 14, 1, 3, id="90-channels-half-vectors"),
    pytest.param(90, 15, 2, 3, id="90-channels-stride2-odd"),
]


@pytest.mark.parametrize(("channels", "size", "stride", "kernel"), DEPTHWISE_CASES)
def test_depthwise_reads_its_border_in_the_loads_and_matches_torch(
    channels: int, size: int, stride: int, kernel: int
) -> None:
    """A depthwise kernel tests the window's border in its loads instead of writing a padded
    copy of its input first (MobileNetV2's depthwise kernels: 1.75 -> 0.82 ms on x86)."""
    import numpy as np
    import tvm
    from tvm import relax

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    rng = np.random.default_rng(channels + size)
    w = rng.standard_normal((channels, 1, kernel, kernel)).astype(np.float32)
    x = rng.standard_normal((1, channels, size, size)).astype(np.float32)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            y = relax.op.nn.conv2d(
                arg, relax.const(w), [stride] * 2, [kernel // 2] * 4, groups=channels
            )
            out = bb.emit_output(bb.emit(y))
        bb.emit_func_output(out)
    profile = get_target("x86")
    # direct kernels only: 3x3 stride-1 layers would be Winograd's (tests/.../test_winograd.py)
    caps = dataclasses.replace(profile.capabilities, winograd=False)
    profile = dataclasses.replace(profile, capabilities=caps)
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
        lowered = relax.get_pipeline("default")(scheduled)
    (conv,) = [f for gv, f in scheduled.functions.items() if gv.name_hint.startswith("conv2d")]
    assert conv.attrs.get("tirx.is_scheduled")
    assert "pad_temp" not in conv.script()
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=kernel // 2,
        groups=channels,
    ).numpy()  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _schedule_and_run(build: Any, x: Any) -> tuple[Any, Any]:
    """The x86-scheduled module of a one-op Relax function `build(bb, arg)`, and its output
    on `x`."""
    import tvm
    from tvm import relax

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(build(arg)))
        bb.emit_func_output(out)
    profile = get_target("x86")
    # direct kernels only: 3x3 stride-1 layers would be Winograd's (tests/.../test_winograd.py)
    caps = dataclasses.replace(profile.capabilities, winograd=False)
    profile = dataclasses.replace(profile, capabilities=caps)
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
        lowered = relax.get_pipeline("default")(scheduled)
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    return scheduled, vm["main"](tvm.runtime.tensor(x)).numpy()


def _kernel(scheduled: Any, prefix: str) -> str:
    (func,) = [f for gv, f in scheduled.functions.items() if gv.name_hint.startswith(prefix)]
    assert func.attrs.get("tirx.is_scheduled")
    return func.script()


# (input channels, output channels, kernel, whether the padding stage is a copy to inline)
PAD_COPY_CASES = [
    pytest.param(32, 16, 1, True, id="1x1-one-tile-no-padding"),
    pytest.param(32, 16, 3, False, id="3x3-pads-keeps-its-copy"),
]


@pytest.mark.parametrize(("channels", "outputs", "kernel", "inlined"), PAD_COPY_CASES)
def test_convolutions_read_their_input_directly_where_padding_pads_nothing(
    channels: int, outputs: int, kernel: int, inlined: bool
) -> None:
    """TOPI's 1x1 conv2d copies its whole input into a "padded" buffer of the same shape; the
    rule reads the input instead (MobileNetV2's 32 -> 16 layer at 112x112: 0.38 -> 0.22 ms,
    1 thread). A copy that pads stays its own pass (convolutions read it once per channel
    tile)."""
    import numpy as np
    from tvm import relax

    rng = np.random.default_rng(kernel)
    w = rng.standard_normal((outputs, channels, kernel, kernel)).astype(np.float32)
    x = rng.standard_normal((1, channels, 12, 12)).astype(np.float32)
    scheduled, got = _schedule_and_run(
        lambda a: relax.op.nn.conv2d(a, relax.const(w), 1, kernel // 2), x
    )
    assert ("pad_temp" not in _kernel(scheduled, "conv2d")) == inlined
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=kernel // 2)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


# (input channels, output channels, size, whether channel tiles run innermost)
TILE_ORDER_CASES = [
    pytest.param(16, 96, 28, True, id="16-to-96-6KB-weights-rows-first"),
    pytest.param(256, 96, 14, False, id="256-to-96-96KB-weights-channels-first"),
]


@pytest.mark.parametrize(("channels", "outputs", "size", "rows_first"), TILE_ORDER_CASES)
def test_pointwise_layers_with_small_weights_write_whole_rows_per_tile_step(
    channels: int, outputs: int, size: int, rows_first: bool
) -> None:
    """Weights that fit in L1 run their channel tiles innermost, so a row's outputs are written
    contiguously and its inputs read once (MobileNetV2's 16 -> 96 layer at 112x112: 1.05 ->
    0.60 ms in context, 1 thread); larger weights keep channel tiles outermost (each tile's
    weights stay cached while all rows stream past)."""
    import re

    import numpy as np
    from tvm import relax

    rng = np.random.default_rng(channels)
    w = rng.standard_normal((outputs, channels, 1, 1)).astype(np.float32)
    x = rng.standard_normal((1, channels, size, size)).astype(np.float32)
    scheduled, got = _schedule_and_run(lambda a: relax.op.nn.conv2d(a, relax.const(w)), x)
    script = _kernel(scheduled, "conv2d")
    # the write-back's channel index: (tile % channel tiles) * width when channels are innermost
    tiles = re.search(r"T\.parallel\(T\.int64\((\d+)\)\)", script)
    assert tiles is not None
    inner = re.search(r"% T\.int64\((\d+)\) \* T\.int64\((\d+)\) \+ ax\d+\)", script)
    assert (inner is not None and int(inner[1]) * int(inner[2]) == outputs) == rows_first
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w))
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


# (rows, inputs, outputs, whether the reduction runs outside the output vectors)
GEMV_CASES = [
    pytest.param(1, 1280, 1000, True, id="classifier-1280-to-1000"),
    pytest.param(1, 512, 1008, True, id="1008-outputs"),
    pytest.param(1, 64, 10, False, id="small-weights-register-tile"),
    pytest.param(7, 1280, 1000, False, id="seven-rows-register-tile"),
]


@pytest.mark.parametrize(("rows", "inputs", "outputs", "streams"), GEMV_CASES)
def test_matrix_vector_products_stream_each_weight_row_once(
    rows: int, inputs: int, outputs: int, streams: bool
) -> None:
    """One row times weights larger than L1: chunks of outputs in parallel, each holding its
    accumulators across the whole reduction and reading its run of every weight row
    contiguously (MobileNetV2's classifier 0.89 -> 0.34 ms, 1 thread, warm); a one-row register
    tile walked an 8-wide column strip of the 4 KB rows. More rows or small weights keep the
    register tile."""
    import numpy as np
    from tvm import relax

    rng = np.random.default_rng(outputs)
    w = rng.standard_normal((inputs, outputs)).astype(np.float32)
    x = rng.standard_normal((rows, inputs)).astype(np.float32)
    scheduled, got = _schedule_and_run(lambda a: relax.op.matmul(a, relax.const(w)), x)
    script = _kernel(scheduled, "matmul")
    # under the reduction loop: unrolled rows (a register tile) or, streamed, a chunk's
    # output vectors (several per chunk, as many as registers hold)
    under = rf"for \w+ in range\(T\.int64\({inputs}\)\):\s+for \w+ in T\.unroll\(T\.int64\((\d+)\)"
    unrolled = re.search(under, script)
    held = int(unrolled[1]) if unrolled else 1
    assert (held not in (1, rows)) == streams
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-3)


# (activations, outputs, whether the weights are packed): the transformer's Linear layers, a
# ragged head, batch dimensions; one row (streamed by the matrix-vector rule) and a layer one
# tile wide (already in tile order) keep [K, N]. Packed on AVX2 and AVX-512 alike.
DENSE_CASES = [
    pytest.param((1, 128, 256), 768, True, id="transformer-qkv-256-to-768"),
    pytest.param((1, 128, 1024), 256, True, id="transformer-ffn-1024-to-256"),
    pytest.param((7, 40), 1000, True, id="seven-rows-1000-outputs"),
    pytest.param((2, 5, 24), 40, True, id="batched-ragged"),
    pytest.param((1, 1, 512), 1024, False, id="one-row-streams"),
    pytest.param((1, 16, 24), 8, False, id="one-tile-wide"),
]


@pytest.mark.parametrize(("x_shape", "outputs", "packed"), DENSE_CASES)
def test_dense_layers_read_weights_packed_in_tile_order_and_match_numpy(
    x_shape: tuple[int, ...], outputs: int, packed: bool
) -> None:
    """A float matmul by constant weights reads them packed as [N/cols, K, cols]: each register
    tile's weights one contiguous stream over the reduction (rpi4 transformer 159.8M -> 150.4M
    instructions, `ldp` pairs instead of one `ldr` per vector)."""
    import numpy as np
    from tvm import relax

    from edgec.relax.pack_dense import DENSE

    rng = np.random.default_rng(outputs)
    w = rng.standard_normal((x_shape[-1], outputs)).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    scheduled, got = _schedule_and_run(lambda a: relax.op.matmul(a, relax.const(w)), x)
    assert (DENSE in _kernel(scheduled, "matmul")) == packed
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-3)


def test_neon_dense_layers_load_weight_vectors_in_pairs() -> None:
    """On rpi4 a packed dense layer's tile reads its weights with `ldp q` pairs: one `ldr q`
    per weight vector made loads 0.29 per FMLA (ONNX Runtime's MLAS: 0.22)."""
    import numpy as np

    w = np.random.default_rng(0).standard_normal((256, 768))
    asm = _neon_asm([128, 256], w, 1, 1)
    fmla, ldr = (len(re.findall(p, asm)) for p in (r"\tfmla\t", r"\tldr\tq"))
    assert len(re.findall(r"\tldp\tq", asm)) * 4 >= fmla / 4 > ldr
    # 4 steps of 4 row vectors per loop iteration: one counter and branch per 256 FMLA
    assert fmla >= 256


def _neon_schedule_and_run_on_host(build: Any, inputs: list[Any]) -> tuple[Any, Any]:
    """The rpi4-scheduled module of a Relax function `build(*args)`, and its output on
    `inputs` with those schedules compiled for this host (the schedule's loops and buffers
    are what these tests check; NEON instruction selection is LLVM's)."""
    import tvm
    from tvm import relax

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    bb = relax.BlockBuilder()
    args = [relax.Var(f"x{i}", relax.TensorType(list(x.shape), "float32")) for i, x in
            enumerate(inputs)]  # fmt: skip
    with bb.function("main", args):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(build(*args)))
        bb.emit_func_output(out)
    profile = get_target("rpi4")
    with tvm_target(profile):
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
    host = tvm.target.Target({"kind": "llvm"})
    with host:
        lowered = relax.get_pipeline("default")(scheduled)
    vm = relax.VirtualMachine(tvm.compile(lowered, host, relax_pipeline=None), tvm.cpu())
    return scheduled, vm["main"](*(tvm.runtime.tensor(x) for x in inputs)).numpy()


# (activations, outputs, whether the activations are copied in blocks of 8 rows): rows that 8
# divides; 7 rows, and a layer one tile wide (weights not packed), keep theirs
ROW_BLOCK_CASES = [
    pytest.param((1, 128, 256), 768, True, id="transformer-qkv-256-to-768"),
    pytest.param((1, 128, 1024), 256, True, id="transformer-ffn-1024-to-256"),
    pytest.param((2, 16, 18), 128, True, id="batched-k-18-not-whole-vectors"),
    pytest.param((1, 16, 24), 40, False, id="40-outputs-the-copy-does-not-pay"),
    pytest.param((7, 40), 1000, False, id="seven-rows"),
    pytest.param((1, 16, 24), 8, False, id="one-tile-wide"),
]


@pytest.mark.parametrize(("x_shape", "outputs", "blocked"), ROW_BLOCK_CASES)
def test_neon_dense_layers_read_rows_in_blocks_of_eight_and_match_numpy(
    x_shape: tuple[int, ...], outputs: int, blocked: bool
) -> None:
    """On NEON a dense layer copies its activations as [M/8, K, 8] in the kernel, so an 8-row
    x 2-vector tile loads the 8 rows' inputs for one step with one `ldp q` pair (rpi4
    transformer 141.6M -> 137.1M instructions, the copy included)."""
    import numpy as np
    from tvm import relax

    from edgec.relax.pack_dense import ROWS

    rng = np.random.default_rng(outputs)
    w = rng.standard_normal((x_shape[-1], outputs)).astype(np.float32)
    x = rng.standard_normal(x_shape).astype(np.float32)
    scheduled, got = _neon_schedule_and_run_on_host(
        lambda a: relax.op.matmul(a, relax.const(w)), [x]
    )
    assert (ROWS in _kernel(scheduled, "matmul")) == blocked
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-3)


# (left, right, whether the right operand is packed in the kernel): attention's QKᵀ and AV at
# the transformer's sizes, a ragged batch, one row and broadcast batches (TVM's legalization)
ATTENTION_CASES = [
    pytest.param((1, 4, 128, 64), (1, 4, 64, 128), True, id="transformer-qk-128x64x128"),
    pytest.param((1, 4, 128, 128), (1, 4, 128, 64), True, id="transformer-av-128x128x64"),
    pytest.param((2, 5, 24), (2, 24, 40), True, id="ragged-batch-40-columns"),
    pytest.param((3, 1, 16), (3, 16, 64), False, id="one-row-steps-aside"),
    pytest.param((2, 8, 16), (1, 16, 32), False, id="broadcast-batch-steps-aside"),
]


@pytest.mark.parametrize(("a_shape", "b_shape", "packed"), ATTENTION_CASES)
def test_neon_attention_matmuls_pack_their_right_operand_and_match_numpy(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], packed: bool
) -> None:
    """On NEON a matmul of two activations copies its right operand as [N/cols, K, cols] in
    the kernel, so its tile reads one stream with `ldp q` pairs (rpi4 transformer: QKᵀ 5.81M
    -> 5.22M instructions, AV 5.33M -> 5.12M, the copy included)."""
    import numpy as np
    from tvm import relax

    from edgec.relax.pack_dense import PACK

    rng = np.random.default_rng(len(a_shape))
    a, b = (rng.standard_normal(s).astype(np.float32) for s in (a_shape, b_shape))
    scheduled, got = _neon_schedule_and_run_on_host(relax.op.matmul, [a, b])
    assert (PACK in _kernel(scheduled, "matmul")) == packed
    np.testing.assert_allclose(got, a @ b, rtol=1e-4, atol=1e-4)


def test_neon_dense_layer_with_gelu_writes_back_one_vector_at_a_time_and_matches_numpy() -> None:
    """The FFN's GELU epilogue on NEON runs a vector at a time (16 wide, erf's constants
    spilled to the stack) and stays within 1e-5 of an exact erf."""
    import math

    import numpy as np
    from tvm import relax

    rng = np.random.default_rng(3)
    w = (rng.standard_normal((64, 96)) / 8).astype(np.float32)
    x = rng.standard_normal((1, 32, 64)).astype(np.float32)

    def gelu(a: Any) -> Any:  # as ONNX exports torch's GELU
        y = relax.op.matmul(a, relax.const(w))
        erf = relax.op.erf(relax.op.divide(y, relax.const(np.float32(math.sqrt(2)))))
        return relax.op.multiply(
            relax.op.multiply(y, erf + relax.const(np.float32(1))), relax.const(np.float32(0.5))
        )

    scheduled, got = _neon_schedule_and_run_on_host(gelu, [x])
    script = _kernel(scheduled, "fused_matmul")
    assert re.search(
        r"T\.vectorized\(T\.int64\(4\)\):\s+with T\.sblock\(\"matmul_packed_int", script
    )
    y = (x @ w).astype(np.float64)
    want = 0.5 * y * (1 + np.vectorize(math.erf)(y / math.sqrt(2)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# (op, row shape, whether the rows' reductions take vectors of partial results): the
# transformer's layer norm and softmax, and a width no vector divides (dlight's rule)
ROW_REDUCTION_CASES = [
    pytest.param("layer_norm", (1, 128, 256), True, id="layer-norm-256"),
    pytest.param("softmax", (1, 4, 128, 128), True, id="softmax-128"),
    pytest.param("softmax", (2, 6, 64), True, id="softmax-64"),
    pytest.param("layer_norm", (3, 40, 37), False, id="layer-norm-ragged-steps-aside"),
]


@pytest.mark.parametrize(("op", "shape", "vectors"), ROW_REDUCTION_CASES)
def test_row_reductions_sum_in_vectors_and_match_numpy(
    op: str, shape: tuple[int, ...], vectors: bool
) -> None:
    """A softmax's or layer norm's sums and maxima over its rows run as one vector of partial
    results per row, folded once at the end (rfactor), instead of a scalar chain of dependent
    adds (x86 transformer, 1 thread: layer norms 0.99 -> 0.19 ms, softmax 0.77 -> 0.27)."""
    import numpy as np
    from tvm import relax

    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    width = shape[-1]
    gamma, beta = (rng.standard_normal(width).astype(np.float32) for _ in range(2))
    if op == "softmax":
        build = lambda a: relax.op.nn.softmax(a, axis=-1)  # noqa: E731
        e = np.exp(x - x.max(-1, keepdims=True))
        want = e / e.sum(-1, keepdims=True)
    else:
        build = lambda a: relax.op.nn.layer_norm(  # noqa: E731
            a, relax.const(gamma), relax.const(beta), axes=[-1]
        )
        want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        want = want * gamma + beta
    scheduled, got = _schedule_and_run(build, x)
    kernel = "fast_softmax" if op == "softmax" else op  # FastMathTransform's softmax
    assert ("_rf" in _kernel(scheduled, kernel)) == vectors
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# (rows, widths of the parts): the transformer's q, k, v split of a 768-wide projection, and
# parts no vector divides
SPLIT_CASES = [
    pytest.param(128, (256, 256, 256), id="qkv-768-in-three"),
    pytest.param(5, (12, 7, 13), id="ragged-parts"),
]


@pytest.mark.parametrize(("rows", "parts"), SPLIT_CASES)
def test_kernels_with_several_outputs_are_scheduled_and_exact(
    rows: int, parts: tuple[int, ...]
) -> None:
    """A kernel writing several outputs (a reshape split in parts) is inlined into each output,
    rows in parallel and vectors along the last axis where they divide it; the rule used to
    step aside and leave it a scalar loop nest with a division per element."""
    import numpy as np
    import tvm
    from tvm import relax

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    x = np.random.default_rng(rows).standard_normal((1, rows, sum(parts))).astype(np.float32)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            cuts = list(np.cumsum(parts)[:-1])
            out = bb.emit_output(bb.emit(relax.op.split(relax.op.negative(arg), cuts, axis=2)))
        bb.emit_func_output(out)
    profile = get_target("x86")
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepare(bb.get(), profile, {}))
        lowered = relax.get_pipeline("default")(scheduled)
    assert "T.parallel" in _kernel(scheduled, "fused_tir_negative_split")
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x))
    for part, want in zip(got, np.split(-x, cuts, axis=2), strict=True):
        np.testing.assert_array_equal(part.numpy(), want)


# (shape, permutation, whether vectors over the fused axis step aside)
TRANSPOSE_CASES = [
    pytest.param((1, 3, 20, 24), (0, 2, 3, 1), True, id="image-to-nhwc-3-channels"),
    pytest.param((1, 32, 6, 6), (0, 2, 3, 1), False, id="32-channels-vectorized"),
]


@pytest.mark.parametrize(("shape", "axes", "rows"), TRANSPOSE_CASES)
def test_transposes_to_few_channels_copy_rows_without_per_lane_division(
    shape: tuple[int, ...], axes: tuple[int, ...], rows: bool
) -> None:
    """NCHW -> NHWC of a 3-channel image: vectors over the fused output axis needed a division
    and modulo per lane (MobileNetV2's input transpose 0.30 -> 0.09 ms, 1 thread); such a
    transpose copies rows in parallel with plain loads. Wider channels keep the vectors."""
    import numpy as np
    from tvm import relax

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    scheduled, got = _schedule_and_run(lambda a: relax.op.permute_dims(a, list(axes)), x)
    assert ("T.vectorized" not in _kernel(scheduled, "transpose")) == rows
    np.testing.assert_array_equal(got, x.transpose(axes))


# (shape, scale): an int8 build's first kernel, the image quantized while NCHW becomes NHWC
QUANTIZE_TRANSPOSE_CASES = [
    pytest.param((1, 3, 20, 32), 40.0, id="image-3-channels"),
    pytest.param((1, 2, 4, 48), 200.0, id="two-channels-saturates"),
]


@pytest.mark.parametrize(("shape", "scale"), QUANTIZE_TRANSPOSE_CASES)
def test_an_image_quantized_to_nhwc_loads_whole_vectors_along_its_rows(
    shape: tuple[int, ...], scale: float
) -> None:
    """Quantize + NCHW -> NHWC of a 3-channel image vectorized over the flat output index took
    a division and modulo per lane (26 instructions per element on rpi4: 4.0M of MobileNetV2's
    int8 inference); vectors along the source rows, channels unrolled, need none."""
    import numpy as np
    from tvm import relax

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    def quantize(a: Any) -> Any:
        scaled = relax.op.round(relax.op.multiply(a, relax.const(scale, "float32")))
        return relax.op.permute_dims(
            relax.op.astype(relax.op.clip(scaled, -128, 127), "int8"), [0, 2, 3, 1]
        )

    scheduled, got = _schedule_and_run(quantize, x)
    (script,) = [
        f.script()
        for gv, f in scheduled.functions.items()
        if "transpose" in gv.name_hint and "T.vectorized" in f.script()
    ]
    assert "T.unroll" in script and "%" not in script
    want = np.clip(np.round(x * np.float32(scale)), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(got, want.transpose(0, 2, 3, 1))


# (channels, concatenated or cast alone, the vector the kernel takes): int8 NHWC channels no
# 16-lane vector divides (x86 AVX-512)
INT8_MOVE_CASES = [
    pytest.param(58, True, 4, id="concat-58-58-int8-narrow-vectors"),
    pytest.param(60, True, 8, id="concat-60-60-int8-narrow-vectors"),
    pytest.param(24, False, 16, id="elementwise-int8-keeps-flat-vectors"),
]


@pytest.mark.parametrize(("channels", "concat", "vector"), INT8_MOVE_CASES)
def test_int8_concats_take_narrow_vectors_along_their_channels(
    channels: int, concat: bool, vector: int
) -> None:
    """An int8 concat or channel gather whose channels no 16-lane vector divides (ShuffleNetV2's
    116, 232) took flat vectors with a division and modulo per lane (x86 ShuffleNetV2 int8
    8.4 -> 5.9 ms, 1 thread); it takes 8- or 4-lane vectors along the channels. An elementwise
    int8 kernel keeps its flat vectors, whose index stays affine."""
    import numpy as np
    from tvm import relax

    def build(a: Any) -> Any:
        q = relax.op.astype(a, "int8")
        if not concat:
            return q
        # one input twice: no kernel writes it in place (edgec.relax.concat_in_place), the
        # concatenation stays the copy kernel this case is about
        return relax.op.concat([q, q], axis=3)

    x = np.random.default_rng(0).integers(-100, 100, (1, 5, 6, channels)).astype(np.float32)
    scheduled, got = _schedule_and_run(build, x)
    kernels = [f.script() for f in scheduled.functions.values() if hasattr(f, "script")]
    assert any(f"T.vectorized(T.int64({vector}))" in k for k in kernels)
    want = np.concatenate([x, x], axis=3) if concat else x
    np.testing.assert_array_equal(got, want.astype(np.int8))


# (channels, groups, size, stride, whether the grouped rule takes it): RegNetX's group width 16
GROUPED_CASES = [
    pytest.param(64, 4, 28, 1, True, id="group-width-16-3x3"),
    pytest.param(160, 10, 14, 2, True, id="group-width-16-3x3-stride2"),
    pytest.param(48, 2, 9, 1, True, id="group-width-24-ragged-rows"),
    pytest.param(24, 8, 7, 1, False, id="group-width-3-steps-aside"),
    pytest.param(32, 32, 14, 1, False, id="depthwise-steps-aside"),
]


@pytest.mark.parametrize(("channels", "groups", "size", "stride", "packed"), GROUPED_CASES)
def test_grouped_convolutions_tile_within_one_group_and_match_torch(
    channels: int, groups: int, size: int, stride: int, packed: bool
) -> None:
    """A grouped conv2d (not depthwise) whose groups' output channels divide a tile width gets
    weights packed per group and a convolution's register tile inside one group: each input
    is one broadcast, where the depthwise path's vectors could span two groups and gather
    their inputs lane by lane (RegNetX-400MF x86: see docs/performance.md). Others step
    aside to their usual kernels."""
    import numpy as np
    from tvm import relax

    from edgec.relax.pack_weights import GROUPED

    rng = np.random.default_rng(channels + groups)
    w = rng.standard_normal((channels, channels // groups, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, channels, size, size)).astype(np.float32)
    scheduled, got = _schedule_and_run(
        lambda a: relax.op.nn.conv2d(a, relax.const(w), stride, 1, groups=groups), x
    )
    assert (GROUPED in _kernel(scheduled, "conv2d")) == packed
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=1, groups=groups
    )
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


def test_a_scheduled_kernel_that_does_not_build_gets_its_plain_loop_nest_back() -> None:
    """A schedule LLVM cannot compile (here a loop bound to a GPU thread) costs the kernel its
    schedule, not the build: the plain loop nest runs and `fallbacks` names it with its shapes."""
    import numpy as np
    import tvm
    from tvm import relax, te
    from tvm.s_tir import Schedule

    from edgec.relax.compile import _build_stepping_aside

    a = te.placeholder((64,), name="a")
    plain = te.create_prim_func([a, te.compute((64,), lambda i: a[i] * 2, name="b")])
    plain = plain.with_attr("global_symbol", "double")
    sch = Schedule(plain)
    sch.bind(sch.get_loops(sch.get_sblock("b"))[0], "threadIdx.x")
    bad = sch.mod["main"].with_attr("global_symbol", "double").with_attr("tirx.is_scheduled", True)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((64,), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            gv = bb.add_func(plain, "double")
            out = bb.emit_output(
                bb.emit(relax.call_tir(gv, [x], relax.TensorType((64,), "float32")))
            )
        bb.emit_func_output(out)
    prepared = bb.get()
    scheduled = prepared.clone()
    scheduled.update_func(scheduled.get_global_var("double"), bad)
    fallbacks: dict[str, str] = {}
    executable, _ = _build_stepping_aside(
        scheduled, prepared, tvm.target.Target("llvm"), fallbacks, False
    )
    (line,) = fallbacks
    assert line == "kernel double (64 float32, 64 float32)"
    assert fallbacks[line].startswith("plain loop nest, edgec's schedule failed")
    got = relax.VirtualMachine(executable, tvm.cpu())["main"](
        tvm.runtime.tensor(np.arange(64, dtype="float32"))
    )
    np.testing.assert_array_equal(got.numpy(), np.arange(64, dtype="float32") * 2)
