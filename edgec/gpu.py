"""This machine's NVIDIA GPU (through nvidia-smi) and the CUDA architectures edgec builds for."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edgec.errors import EdgecError, known

# The compute capabilities nvcc 13 compiles for, with GPUs that have them. TVM embeds SASS for
# one architecture and no PTX: sm_XY code runs on X.Y up to X.9 (same major), never on a newer
# major, so an sm_80 bundle runs on an A10 (8.6) or an Orin (8.7) but not on an H100 (9.0).
CUDA_ARCHS = {
    "sm_75": "Turing: T4, RTX 20xx",
    "sm_80": "Ampere: A100, A30",
    "sm_86": "Ampere: A10, A40, RTX 30xx",
    "sm_87": "Ampere (Tegra): Jetson AGX Orin, Orin NX, Orin Nano",
    "sm_89": "Ada: L4, L40, RTX 40xx",
    "sm_90": "Hopper: H100, H200, GH200",
    "sm_100": "Blackwell: B200, GB200",
    "sm_120": "Blackwell: RTX 50xx, RTX PRO 6000",
}
DEFAULT_CUDA_ARCH = "sm_80"  # where the profile says "host" and this machine has no GPU


def _nvidia_smi(*args: str) -> list[str]:
    """nvidia-smi's output lines, or [] where it is missing, fails or hangs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return []
    return done.stdout.splitlines() if done.returncode == 0 else []


def find_gpu() -> str | None:
    """This machine's first NVIDIA GPU as nvidia-smi names it (or its device file), or None."""
    gpus = [line for line in _nvidia_smi("-L") if line.startswith("GPU ")]
    if gpus:
        return gpus[0].split(" (UUID")[0]
    return "/dev/nvidia0" if Path("/dev/nvidia0").exists() else None


def gpu_compute_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability (9.0 for an H100/H200), where nvidia-smi says it."""
    lines = _nvidia_smi("--query-gpu=compute_cap", "--format=csv,noheader")
    major, _, minor = (lines[0].strip() if lines else "").partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def arch_capability(arch: str) -> tuple[int, int] | None:
    """sm_87 → (8, 7); sm_100 → (10, 0); None for anything else."""
    match = re.fullmatch(r"sm_(\d+)(\d)", arch)
    return (int(match[1]), int(match[2])) if match else None


def check_arch(arch: str, what: str = "--cuda-arch") -> str:
    """`arch` if edgec builds for it; else the one-line error listing the known ones."""
    if arch not in CUDA_ARCHS:
        raise known(what, arch, list(CUDA_ARCHS))
    return arch


def host_arch() -> str:
    """The architecture of this machine's GPU, or DEFAULT_CUDA_ARCH where there is none."""
    have = gpu_compute_capability()
    if have is None:
        return DEFAULT_CUDA_ARCH
    arch = f"sm_{have[0]}{have[1]}"
    if arch not in CUDA_ARCHS:
        raise EdgecError(
            f"the GPU here is {arch}, which edgec does not build for; give --cuda-arch with one "
            f"of {', '.join(CUDA_ARCHS)}"
        )
    return arch


def runs_arch(arch: str, have: tuple[int, int]) -> bool:
    """Whether a GPU of compute capability `have` runs `arch`'s SASS (same major, minor ≥)."""
    want = arch_capability(arch)
    return want is not None and have[0] == want[0] and have[1] >= want[1]
