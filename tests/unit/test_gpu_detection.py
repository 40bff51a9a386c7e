"""Whether a CUDA bundle can run here: edgec looks for a GPU (nvidia-smi, /dev/nvidia0)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgec.backends.tvm import find_gpu, runnable_here
from edgec.errors import EdgecError
from edgec.targets import get_target, with_cuda_arch


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


# what a stand-in nvidia-smi lists (-L), its exit status, the compute capability it gives
# (--query-gpu=compute_cap) → the GPU edgec finds, why an sm_80 bundle cannot run there, and the
# architecture a cuda build picks there (arch = "host": the GPU's, sm_80 without one)
NVIDIA_SMI = [
    pytest.param(
        "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-0b1c)\nGPU 1: NVIDIA A100 (UUID: GPU-9f2e)",
        0,
        "8.0",
        "GPU 0: NVIDIA A100-SXM4-80GB",
        None,
        "sm_80",
        id="a100-sm80-runs",
    ),
    pytest.param(
        "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1)",
        0,
        "8.9",
        "GPU 0: NVIDIA GeForce RTX 4090",
        None,
        "sm_89",
        id="ada-sm89-runs",
    ),
    pytest.param(
        "GPU 0: NVIDIA H200 (UUID: GPU-2)",
        0,
        "9.0",
        "GPU 0: NVIDIA H200",
        "cuda bundles hold sm_80 code only; the GPU here (GPU 0: NVIDIA H200) is sm_90, "
        "which cannot run it",
        "sm_90",
        id="hopper-sm90-refused",
    ),
    pytest.param(
        "GPU 0: Tesla V100 (UUID: GPU-3)",
        0,
        "7.0",
        "GPU 0: Tesla V100",
        "is sm_70, which cannot run it",
        "the GPU here is sm_70, which edgec does not build for",  # nvcc 13 dropped Volta
        id="volta-sm70-refused",
    ),
    pytest.param("No devices were found", 6, "", None, "none found", "sm_80", id="no-devices"),
    pytest.param(
        "NVIDIA-SMI has failed: no driver", 9, "", None, "none found", "sm_80", id="no-driver"
    ),
    pytest.param("", 0, "", None, "none found", "sm_80", id="lists-nothing"),
]


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="a real GPU device file is here")
@pytest.mark.parametrize(("listed", "status", "capability", "found", "why", "arch"), NVIDIA_SMI)
def test_a_gpu_is_found_only_when_nvidia_smi_lists_one_and_must_run_the_bundles_code(
    listed: str,
    status: int,
    capability: str,
    found: str | None,
    why: str | None,
    arch: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text(
        '#!/bin/sh\nif [ "$1" = "-L" ]; then\ncat <<\'END\'\n'
        f"{listed}\nEND\nelse\necho '{capability}'\nfi\nexit {status}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")  # ours first
    assert find_gpu() == found
    reason = runnable_here(with_cuda_arch(get_target("cuda"), "sm_80"), emulate=False)
    assert (reason is None) if why is None else (reason is not None and why in reason), reason
    if arch.startswith("sm_"):
        assert with_cuda_arch(get_target("cuda"), None).tvm_target["arch"] == arch
    else:
        with pytest.raises(EdgecError, match=arch):
            with_cuda_arch(get_target("cuda"), None)
    # a profile with a fixed architecture keeps it whatever GPU is here; --cuda-arch wins
    assert with_cuda_arch(get_target("jetson-orin"), None).tvm_target["arch"] == "sm_87"
    assert with_cuda_arch(get_target("jetson-orin"), "sm_86").tvm_target["arch"] == "sm_86"
