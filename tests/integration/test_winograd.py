"""float32 3x3 stride-1 convolutions run as Winograd F(2,3) where it holds and pays (enough
channels and output tiles), give what torch and ONNX Runtime give, and every other convolution
keeps its direct kernel: stride 2, groups, few channels, few tiles, int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgec.cli import main
from tests.conftest import needs

pytestmark = pytest.mark.integration

# (in channels, out channels, size, stride, groups, epilogue, target, Winograd's form or None):
# "fused" is one kernel per tile row (V over winograd.FUSED_MIN_V_BYTES, transformed weights U up
# to FUSED_WEIGHT_BYTES), "three" the input transform, GEMM and output transform as kernels of
# their own
CASES = [
    pytest.param(16, 16, 11, 1, 1, "bias", "x86", "three", id="x86-16-channels-odd-11"),
    pytest.param(32, 48, 15, 1, 1, "relu", "x86", "three", id="x86-32-to-48-odd-15"),
    pytest.param(64, 64, 16, 1, 1, "residual", "x86", "three", id="x86-64-small-v-residual"),
    pytest.param(64, 64, 56, 1, 1, "residual", "x86", "fused", id="x86-64-resnet-56x56"),
    pytest.param(128, 128, 27, 1, 1, "relu", "x86", "fused", id="x86-128-u-bound-odd-27"),
    pytest.param(256, 256, 14, 1, 1, "residual", "x86", "three", id="x86-256-resnet-14x14"),
    pytest.param(128, 512, 11, 1, 1, "relu", "x86", "three", id="x86-128-to-512-odd-11"),
    pytest.param(64, 64, 13, 1, 1, "relu", "rpi4", "three", id="rpi4-64-odd-13"),
    pytest.param(32, 32, 63, 1, 1, "relu", "rpi4", "fused", id="rpi4-32-odd-63"),
    pytest.param(8, 8, 16, 1, 1, "relu", "x86", None, id="8-channels-stay-direct"),
    pytest.param(32, 64, 15, 2, 1, "relu", "x86", None, id="stride-2-stays-direct"),
    pytest.param(32, 64, 14, 1, 2, "relu", "x86", None, id="groups-stay-direct"),
    pytest.param(512, 512, 7, 1, 1, "residual", "x86", None, id="7x7-few-tiles-stay-direct"),
    pytest.param(64, 64, 14, 1, 1, "relu", "cuda", None, id="cuda-stays-direct"),
]


@pytest.mark.parametrize(
    ("cin", "cout", "size", "stride", "groups", "epilogue", "target", "winograd"), CASES
)
def test_winograd_takes_the_3x3_convs_it_holds_for(
    cin: int,
    cout: int,
    size: int,
    stride: int,
    groups: int,
    epilogue: str,
    target: str,
    winograd: str | None,
) -> None:
    import tvm
    from tvm import relax, tirx

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    rng = np.random.default_rng(cin * cout + size)
    w = (rng.standard_normal((cout, cin // groups, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    b = rng.standard_normal((1, cout, 1, 1)).astype(np.float32)
    x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
    out_size = (size - 1) // stride + 1
    r = rng.standard_normal((1, cout, out_size, out_size)).astype(np.float32)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                arg, relax.const(w), strides=[stride] * 2, padding=[1] * 4, groups=groups
            )
            y = bb.emit(relax.op.add(bb.emit(conv), relax.const(b)))
            if epilogue == "residual":
                y = bb.emit(relax.op.add(y, relax.const(r)))
            if epilogue in ("relu", "residual"):
                y = bb.emit(relax.op.nn.relu(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    profile = get_target(target)
    if profile.capabilities.device != "cpu":
        assert not profile.capabilities.winograd  # GPUs keep TVM's own conv2d
        return
    with tvm_target(profile):
        prepared = prepare(bb.get(), profile, {})
    kernels = [gv.name_hint for gv, f in prepared.functions.items() if isinstance(f, tirx.PrimFunc)]
    forms = {"fused": "winograd_fused", "three": "winograd_gemm"}
    for form, name in forms.items():
        assert any(name in k for k in kernels) == (winograd == form), kernels
    with tvm_target(profile) as target:
        scheduled = _schedule(profile)(prepared)
    if winograd:  # edgec's Winograd rules, not the generic ones: their tile loops unrolled
        for gv, f in scheduled.functions.items():
            if "winograd" in gv.name_hint and isinstance(f, tirx.PrimFunc):
                assert "T.unroll" in f.script(), gv.name_hint
            if "winograd_fused" in gv.name_hint:
                assert _per_tile_row(f), gv.name_hint
    if not profile.capabilities.runs_on_host:
        return  # on NEON: test_winograd_model_matches_onnxruntime, under qemu
    with target:
        lowered = relax.get_pipeline("default")(scheduled)
    vm = relax.VirtualMachine(tvm.compile(lowered, target, relax_pipeline=None), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=1, groups=groups
    ) + torch.from_numpy(b)
    if epilogue == "residual":
        want = want + torch.from_numpy(r)
    if epilogue in ("relu", "residual"):
        want = torch.relu(want)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


def _per_tile_row(func: object) -> bool:
    """Whether the one-kernel form computes V, M and the output under one parallel loop (the
    tile rows): nothing 4x the activation is written in full."""
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(func)
    outers = {
        name: sch.get_loops(sch.get_sblock(name))[0]
        for name in ("winograd_input", "winograd_gemm_update")
    }
    last = sch.get_child_blocks(sch.get_sblock("root"))[-1]
    loop = sch.get_loops(last)[0]
    parallel = sch.get(loop).kind == tirx.ForKind.PARALLEL
    return parallel and all(sch.get(o).same_as(sch.get(loop)) for o in outers.values())


class Blocks(nn.Module):
    """Two ResNet basic blocks at odd sizes with a stride-2 3x3 between them: Winograd in one
    kernel (16 channels at 65x65: V 1.1 MB), as three kernels (32 at 33x33) and direct kernels
    side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)  # 3 channels: direct
        self.a1 = nn.Conv2d(16, 16, 3, padding=1)
        self.a2 = nn.Conv2d(16, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)  # stride 2: direct
        self.b1 = nn.Conv2d(32, 32, 3, padding=1)
        self.b2 = nn.Conv2d(32, 32, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        y = torch.relu(self.a2(torch.relu(self.a1(y))) + y)
        y = torch.relu(self.down(y))
        return torch.relu(self.b2(torch.relu(self.b1(y))) + y)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("x86", id="x86"),
        pytest.param("rpi4", id="rpi4", marks=needs("qemu-aarch64", "aarch64-linux-gnu-g++")),
    ],
)
def test_winograd_model_matches_onnxruntime(tmp_path: Path, target: str) -> None:
    torch.manual_seed(3)
    path = tmp_path / "blocks.onnx"
    torch.onnx.export(
        Blocks().eval(),
        (torch.randn(1, 3, 65, 65),),
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
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["ok"], report["parity"]
    assert report["parity"]["max_abs_diff"] < 1e-4


def test_tuning_leaves_the_one_kernel_form_to_its_rule(tmp_path: Path) -> None:
    """MetaSchedule's space cannot compute the input transform per tile row: the one-kernel
    form keeps fused_rule's schedule, neither measured nor searched."""
    from tvm import relax

    from edgec.relax import winograd
    from edgec.relax.compile import _rules, prepare
    from edgec.relax.target import tvm_target
    from edgec.relax.tune import tune
    from edgec.targets import get_target

    w = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType([1, 66, 66, 16], "float32"))  # V: 1.1 MB
    with bb.function("main", [arg]):
        with bb.dataflow():
            conv = relax.op.nn.conv2d(
                arg, relax.const(w), padding=[1] * 4, data_layout="NHWC", kernel_layout="HWIO"
            )
            out = bb.emit_output(relax.op.nn.relu(bb.emit(conv)))
        bb.emit_func_output(out)
    profile = get_target("x86")
    with tvm_target(profile):
        prepared = prepare(bb.get(), profile, {})  # NHWC already: one kernel, no transposes
    lines: list[str] = []
    summary = tune(
        prepared,
        profile,
        trials=8,
        db_dir=tmp_path / "db",
        progress=lines.append,
        baseline_rules=_rules(profile),
        searchable=winograd.searchable,
    )
    (skipped,) = [line for line in lines if "not searched" in line]
    assert winograd.FUSED in skipped, lines
    assert summary.tasks == summary.default_rules == 1, summary
    assert summary.measurements == summary.tuned == 0, summary
