"""Kernels take no heap scratch inside their loops: at most one workspace allocation per kernel
call per inference, counted by an LD_PRELOAD shim around TVMBackendAllocWorkspace (x86 natively,
rpi4 under qemu-aarch64). Before the accumulator tile was compacted to registers, MobileNetV2
made 43,340 such calls per inference on x86."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

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


@needs("gcc", "aarch64-linux-gnu-gcc", "qemu-aarch64")
@pytest.mark.parametrize(
    ("target", "cc"), [("x86", "gcc"), ("rpi4", "aarch64-linux-gnu-gcc")], ids=["x86", "rpi4"]
)
def test_kernels_allocate_at_most_one_workspace_each_per_inference(
    target: str, cc: str, tmp_path: Path
) -> None:
    shim = tmp_path / "count_workspace.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(SHIM), "-o", str(shim), "-ldl"], check=True)
    bundle = tmp_path / "bundle"
    args = ["build", MODEL, "--target", target, "-o", str(bundle), "--no-measure"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    per_inference = (_calls(bundle, shim, 3, tmp_path) - _calls(bundle, shim, 1, tmp_path)) // 2
    schedules = json.loads((bundle / "report.json").read_text())["schedules"]
    assert per_inference <= schedules["kernel_calls"]
