"""edgec build with pruning and distillation: the report shows what each stage bought."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgec.cli import main
from tests.conftest import ROOT

pytest.importorskip("torch_pruning")
DIGITS = f"{ROOT / 'examples' / 'digits.py'}:make_model"


@pytest.mark.integration
def test_build_with_prune_and_distill_reports_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "digits-x86"
    args = ["build", DIGITS, "-t", "x86", "--prune", "0.5", "--data", "digits", "--distill"]
    result = CliRunner().invoke(main, [*args, "--epochs", "2", "-o", str(out), "--repeat", "5"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages)[:5] == ["load", "data", "prune", "distill", "export"]
    assert stages["prune"]["params"] * 2.5 <= stages["load"]["params"]
    assert stages["prune"]["macs"] < stages["load"]["macs"]
    assert stages["load"]["accuracy"] > 95
    assert stages["distill"]["accuracy"] > stages["prune"]["accuracy"]
    assert stages["export"]["accuracy"] == pytest.approx(stages["distill"]["accuracy"], abs=0.3)
    assert stages["measure"]["where"] == "host" and stages["measure"]["latency_ms_p50"] > 0
    assert report["parity"]["ok"] is True
