"""The code stays lint-clean and formatted (ruff, 100 columns), so CI catches drift."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

RUFF = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(args: list[str]) -> None:
    if not Path(RUFF).exists():
        pytest.skip("ruff is not installed (scripts/setup.sh installs it)")
    done = subprocess.run(
        [RUFF, *args, "edgec", "tests", "examples", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
