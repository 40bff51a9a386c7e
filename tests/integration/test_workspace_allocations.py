"""Kernels take no heap scratch inside their loops: at most one workspace allocation per kernel
call per inference, counted by an LD_PRELOAD shim around TVMBackendAllocWorkspace (x86 natively,
rpi4 under qemu-aarch64). Before the accumulator tile was compacted to registers, MobileNetV2
made 43,340 such calls per inference on x86; before V and M became arguments planned by Relax,
Winograd's one-kernel form made two per tile row (~300 per ResNet-18 inference)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgec.cli import main
from edgec.targets import get_target
from tests.conftest import ROOT, needs

pytestmark = pytest.mark.integration

SHIM = ROOT / "tests" / "data" / "count_workspace.c"
MODEL = f"{ROOT / 'examples' / 'cnn.py'}:make_model"


def _calls(bundle: Path, shim: Path, repeat: int, tmp: Path) -> int:
    """TVMBackendAllocWorkspace calls in one run of the bundle's runner (no warm-up)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    profile = get_target(manifest["target"])
    x = np.random.default_rng(0).standard_normal(manifest["inputs"][0]["shape"])
    np.save(tmp / "x.npy", x.astype(np.float32))
    count = tmp / f"calls-{repeat}"
    env = {**os.environ, "TVM_NUM_THREADS": "1", "WS_COUNT_FILE": str(count)}
    env["LD_LIBRARY_PATH"] = str(bundle)
    prefix: list[str] = []
    if profile.emulator is not None and not profile.capabilities.runs_on_host:
        env.update(profile.emulator.env)
        prefix = [*profile.emulator.command, "-E", f"LD_PRELOAD={shim}"]
    else:
        env["LD_PRELOAD"] = str(shim)
    runner = [str(bundle / "edgec-run"), str(bundle / "model.so"), "--input", str(tmp / "x.npy")]
    args = ["--output-dir", str(tmp), "--repeat", str(repeat), "--warmup", "0"]
    subprocess.run([*prefix, *runner, *args], env=env, check=True, capture_output=True)
    return int(count.read_text())


class ResNetLayer(nn.Module):
    """Half a ResNet-18 basic block at 56x56x64: Winograd's one-kernel form (edgec.relax.winograd
    `fused`), with its bias, residual and ReLU fused after it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + x)


def _resnet_layer(tmp: Path) -> str:
    torch.manual_seed(0)
    path = tmp / "resnet_layer.onnx"
    torch.onnx.export(
        ResNetLayer().eval(),
        (torch.randn(1, 64, 56, 56),),
        str(path),
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamo=False,
    )
    return str(path)


MODELS = {"cnn": lambda _tmp: MODEL, "resnet-layer": _resnet_layer}


@needs("gcc", "aarch64-linux-gnu-gcc", "qemu-aarch64")
@pytest.mark.parametrize(
    ("model", "target", "cc"),
    [
        pytest.param("cnn", "x86", "gcc", id="cnn-x86"),
        pytest.param("cnn", "rpi4", "aarch64-linux-gnu-gcc", id="cnn-rpi4"),
        pytest.param("resnet-layer", "x86", "gcc", id="resnet-layer-x86"),
        pytest.param("resnet-layer", "rpi4", "aarch64-linux-gnu-gcc", id="resnet-layer-rpi4"),
    ],
)
def test_kernels_allocate_at_most_one_workspace_each_per_inference(
    model: str, target: str, cc: str, tmp_path: Path
) -> None:
    shim = tmp_path / "count_workspace.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(SHIM), "-o", str(shim), "-ldl"], check=True)
    bundle = tmp_path / "bundle"
    args = ["build", MODELS[model](tmp_path), "--target", target, "-o", str(bundle), "--no-measure"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    per_inference = (_calls(bundle, shim, 3, tmp_path) - _calls(bundle, shim, 1, tmp_path)) // 2
    schedules = json.loads((bundle / "report.json").read_text())["schedules"]
    if model == "resnet-layer":  # the layer took Winograd's one-kernel form (its kernel's name)
        assert b"winograd_fused" in (bundle / "model.so").read_bytes()
    assert per_inference <= schedules["kernel_calls"]
