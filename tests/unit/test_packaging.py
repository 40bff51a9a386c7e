"""`pip install .` must carry the data directories, so edgec works from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_ships_profiles_boards_and_runner_source(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("edgec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "targets/x86.toml",
        "targets/rpi4.toml",
        "targets/rpi5.toml",
        "targets/cuda.toml",
        "boards/rpi4.toml",
        "codegen/runner/edgec_run.cc",
        "codegen/capi/edgec_model.cc",
        "codegen/capi/edgec_model.h",
        "codegen/capi/example.c",
        "targets/cortex-m4.toml",
        "boards/mps2-an386.toml",
        "codegen/mcu/edgec_nn.c",
        "codegen/mcu/firmware/link.ld.in",
        "codegen/mcu/firmware/Makefile",
        "codegen/mcu/templates/model.c.in",
        "codegen/mcu/templates/conv.c.in",
    ):
        assert f"edgec/_data/{shipped}" in names
    assert "edgec/pipeline.py" in names
    assert "edgec/int8/ops.py" in names
