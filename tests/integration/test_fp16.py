"""fp16: half-precision contractions for targets that have them, refused where they do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgec.backends.tvm import runnable_here
from edgec.cli import main
from edgec.targets import get_target
from tests.conftest import EXAMPLE, needs

pytestmark = pytest.mark.integration


def test_fp16_module_runs_its_convolutions_in_half_precision(tmp_path: Path) -> None:
    from tvm import ir, relax

    from edgec.relax.import_onnx import import_onnx
    from edgec.relax.mixed_precision import to_fp16
    from edgec.stages.export import export
    from edgec.stages.load import load

    model = to_fp16(import_onnx(export(load(EXAMPLE, None, tmp_path), tmp_path)))
    dtypes: list[str] = []

    def visit(expr: object) -> None:
        call = isinstance(expr, relax.Call) and isinstance(expr.op, ir.Op)
        if call and expr.op.name == "relax.nn.conv2d":  # type: ignore[attr-defined]
            dtypes.append(str(expr.args[1].ty.dtype))  # type: ignore[attr-defined]

    relax.analysis.post_order_visit(model.module["main"].body, visit)
    assert dtypes and set(dtypes) == {"float16"}
    assert model.quantization == {"mode": "fp16"}


GPU = runnable_here(get_target("cuda"), emulate=False) is None  # cuda builds for the GPU here


# (target, where it runs here, the max abs diff from ONNX Runtime's float32 it must stay under)
@pytest.mark.parametrize(
    ("target", "where", "max_diff"),
    [
        pytest.param(
            "cuda",
            "device" if GPU else None,
            0.02,  # never run in this project's sessions: the manifest's tolerance
            id="cuda-runs-on-a-gpu" if GPU else "cuda-built-not-run-no-gpu",
        ),
        pytest.param(
            "rpi5",
            "emulated",  # qemu's Cortex-A76 model runs the half-precision instructions
            1e-3,  # seen: 6.4e-5 (the README's figure); 0.02 is only the manifest's tolerance
            marks=needs("qemu-aarch64", "aarch64-linux-gnu-g++"),
            id="rpi5-runs-emulated",
        ),
    ],
)
def test_fp16_bundle_builds_says_so_and_runs_where_it_can(
    tmp_path: Path, target: str, where: str | None, max_diff: float
) -> None:
    out = tmp_path / f"cnn-{target}"
    result = CliRunner().invoke(
        main, ["build", EXAMPLE, "-t", target, "--quantize", "fp16", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["quantization"] == {"mode": "fp16"}
    assert json.loads((out / "manifest.json").read_text())["parity"]["share"] == 0.99
    assert report["latency_ms"]["where"] == where
    if where is not None:
        assert report["parity"]["ok"] and report["parity"]["tolerance"] == 0.02
        assert report["parity"]["max_abs_diff"] <= max_diff


@pytest.mark.parametrize("target", ["rpi4", "x86"])
def test_targets_without_half_arithmetic_refuse_fp16(target: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["build", EXAMPLE, "-t", target, "--quantize", "fp16", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no native fp16 arithmetic" in result.stderr
    assert not (tmp_path / "o").exists()
