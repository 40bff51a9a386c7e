"""Whether a CUDA bundle can run here: edgec looks for a GPU (nvidia-smi, /dev/nvidia0)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgec.stages.measure import find_gpu, runnable_here
from edgec.targets import get_target


def _listed_by_nvidia_smi() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return done.returncode == 0 and "GPU 0" in done.stdout


def test_cuda_bundles_are_runnable_exactly_where_this_machine_has_a_gpu() -> None:
    present = _listed_by_nvidia_smi() or Path("/dev/nvidia0").exists()
    reason = runnable_here(get_target("cuda"), emulate=False)
    assert (find_gpu() is not None) == present == (reason is None), reason
    if not present:
        assert reason == (
            "cuda bundles need a cuda device; none found on this machine "
            "(nvidia-smi lists no GPU and there is no /dev/nvidia0)"
        )


# what a stand-in nvidia-smi prints and its exit status → the GPU edgec reports
NVIDIA_SMI = [
    pytest.param(
        "GPU 0: NVIDIA H200 (UUID: GPU-0b1c)\nGPU 1: NVIDIA H200 (UUID: GPU-9f2e)",
        0,
        "GPU 0: NVIDIA H200",
        id="lists-gpus",
    ),
    pytest.param("No devices were found", 6, None, id="no-devices"),
    pytest.param("NVIDIA-SMI has failed: driver not loaded", 9, None, id="no-driver"),
    pytest.param("", 0, None, id="lists-nothing"),
]


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a real GPU device file is here")
@pytest.mark.parametrize(("printed", "status", "found"), NVIDIA_SMI)
def test_a_gpu_is_found_only_when_nvidia_smi_lists_one(
    printed: str, status: int, found: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{printed}\nEND\nexit {status}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")  # ours first
    assert find_gpu() == found
    assert (runnable_here(get_target("cuda"), emulate=False) is None) == (found is not None)
