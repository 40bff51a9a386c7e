"""edgec's default CPU schedules stay exact on awkward shapes, on x86 and on the emulated Pi."""

from __future__ import annotations

import json
from pathlib import Path

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        y = nn.functional.max_pool2d(torch.relu(self.strided(y)), 3, 1, 1)
        y = self.depthwise(self.grouped(y)) + y
        y = nn.functional.relu6(self.bn(self.pointwise(y)))
        y = nn.functional.avg_pool2d(y, 2, ceil_mode=True)
        tokens = y.flatten(2).transpose(1, 2)  # (1, positions, 40)
        attn = torch.softmax(tokens @ tokens.transpose(1, 2) / 8.0, dim=-1) @ tokens
        return self.head(nn.functional.gelu(self.norm(attn))).mean(1)


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
