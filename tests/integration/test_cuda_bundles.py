"""CUDA and Jetson bundles: what is checked without a GPU (the runner links, a run without a
driver or a device fails in one line, the Jetson bundle is aarch64 throughout, flash --dry-run
prints its commands), and what runs where a GPU is (marked cuda: parity with ONNX Runtime in
fp32 and fp16, GPU memory in the report, tuning then a build that measures nothing)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from edgec import runtime
from edgec.backends.tvm import find_gpu
from edgec.boards import get_board
from edgec.cli import main
from edgec.targets import get_target
from tests.conftest import EXAMPLE, needs

pytestmark = pytest.mark.integration

EM_X86_64, EM_AARCH64 = 62, 183  # ELF e_machine
NO_GPU = pytest.mark.skipif(find_gpu() is not None, reason="a GPU is here: the run would work")


def _edgec(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def _elf_machine(path: Path) -> int | None:
    """The ELF header's e_machine, or None for a file that is not ELF."""
    head = path.read_bytes()[:20]
    return int.from_bytes(head[18:20], "little") if head[:4] == b"\x7fELF" else None


def _build(out: Path, *args: str) -> Path:
    result = _edgec("build", EXAMPLE, "-o", str(out), "--no-measure", *args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def cuda_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("cuda") / "cnn", "--target", "cuda")


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("not installed: aarch64-linux-gnu-g++ (run scripts/setup.sh)")
    return _build(tmp_path_factory.mktemp("jetson") / "cnn", "--target", "jetson-orin")


def _files(bundle: Path) -> list[str]:
    return sorted(json.loads((bundle / "manifest.json").read_text())["files"])


# target → the ELF machine of every binary in its bundle
@pytest.mark.parametrize(
    ("fixture", "machine"),
    [
        pytest.param("cuda_bundle", EM_X86_64, id="cuda-x86-64"),
        pytest.param("jetson_bundle", EM_AARCH64, id="jetson-orin-aarch64"),
    ],
)
def test_gpu_bundles_carry_the_runner_and_cuda_runtime_built_for_their_host(
    fixture: str, machine: int, request: pytest.FixtureRequest
) -> None:
    bundle: Path = request.getfixturevalue(fixture)
    binaries = ["edgec-run", "model.so", *runtime.RUNTIME_LIBS, *runtime.CUDA_LIBS]
    assert set(binaries) <= set(_files(bundle))
    assert {name: _elf_machine(bundle / name) for name in binaries} == dict.fromkeys(
        binaries, machine
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["runner"] == "edgec-run" and manifest["tvm_target"]["kind"] == "cuda"


def test_the_runner_links_the_tvm_runtime_and_loads_the_cuda_one_at_run_time(
    cuda_bundle: Path,
) -> None:
    # libtvm_runtime_cuda.so needs the driver's libcuda.so.1: linked, the runner would fail in
    # the dynamic loader, before main(), on any machine without one
    needed = subprocess.run(
        ["readelf", "-d", str(cuda_bundle / "edgec-run")], capture_output=True, text=True
    ).stdout
    assert "[libtvm_runtime.so]" in needed and "[libtvm_ffi.so]" in needed
    assert "cuda" not in needed
    cuda_needs = subprocess.run(
        ["readelf", "-d", str(cuda_bundle / "libtvm_runtime_cuda.so")],
        capture_output=True,
        text=True,
    ).stdout
    assert "[libcudart.so.13]" in cuda_needs and "$ORIGIN" in cuda_needs  # the bundle's copy


def _fake_driver(directory: Path) -> Path:
    """A libcuda.so.1 with no GPU behind it: every driver call fails (CUDA_ERROR_NO_DEVICE)."""
    directory.mkdir()
    lib = runtime.runtime_libs(get_target("cuda")) / "libtvm_runtime_cuda.so"
    symbols = subprocess.run(
        ["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True, check=True
    ).stdout.split()
    names = sorted({s for s in symbols if s.startswith("cu") and s[2:3].isupper()})
    names += ["cuInit", "cuDriverGetVersion", "cuGetProcAddress", "cuGetProcAddress_v2"]
    source = directory / "libcuda.c"
    source.write_text("".join(f"int {n}(void) {{ return 100; }}\n" for n in names))
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(directory / "libcuda.so.1"), str(source)],
        check=True,
    )
    return directory


# what this machine lacks → the runner's one line
@NO_GPU
@pytest.mark.parametrize(
    ("driver", "line"),
    [
        pytest.param(
            False,
            "edgec-run: error: no NVIDIA driver on this machine (libcuda.so.1 not found): a cuda "
            "bundle runs on an NVIDIA GPU with its driver installed",
            id="no-driver",
        ),
        pytest.param(
            True,
            "edgec-run: error: no CUDA device 0: the NVIDIA driver reports no usable GPU "
            "(check nvidia-smi)",
            id="driver-without-a-gpu",
        ),
    ],
)
def test_without_a_gpu_the_runner_fails_in_one_line(
    cuda_bundle: Path, driver: bool, line: str, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", np.zeros((1, 3, 32, 32), np.float32))
    env = dict(os.environ)
    if driver:
        env["LD_LIBRARY_PATH"] = str(_fake_driver(tmp_path / "driver"))
    done = subprocess.run(
        [str(cuda_bundle / "edgec-run"), str(cuda_bundle / "model.so"), "--device", "cuda",
         "--input", str(tmp_path / "in.npy"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [line], "")


@needs("qemu-aarch64")
def test_the_jetson_runner_under_qemu_says_there_is_no_driver_in_one_line(
    jetson_bundle: Path, tmp_path: Path
) -> None:
    np.save(tmp_path / "in.npy", np.zeros((1, 3, 32, 32), np.float32))
    emulator = get_target("rpi4").emulator
    assert emulator is not None
    done = subprocess.run(
        ["qemu-aarch64", str(jetson_bundle / "edgec-run"), str(jetson_bundle / "model.so"),
         "--device", "cuda", "--input", str(tmp_path / "in.npy"),
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, **emulator.env},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "edgec-run: error: no NVIDIA driver on this machine (libcuda.so.1 not found): a cuda "
        "bundle runs on an NVIDIA GPU with its driver installed"
    ]


def test_the_jetson_board_takes_aarch64_cuda_bundles() -> None:
    board = get_board("jetson-orin-nano")
    profile = get_target(board.target)
    assert (board.target, board.transport) == ("jetson-orin", "ssh")
    assert profile.capabilities.device == "cuda" and not profile.capabilities.runs_on_host
    assert profile.tvm_target == {"kind": "cuda", "arch": "sm_87"}
    assert profile.tvm_host is not None and profile.tvm_host["mtriple"] == "aarch64-linux-gnu"
    assert profile.tvm_host["mcpu"] == "cortex-a78ae"
    assert profile.cxx == "aarch64-linux-gnu-g++"
    assert (profile.runtime_source, profile.runtime_platform) == ("wheel", "manylinux_2_28_aarch64")


def test_flash_dry_run_to_the_jetson_prints_the_commands_and_contacts_nothing(
    jetson_bundle: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "called"
    for tool in ("ssh", "scp"):
        (bin_dir / tool).write_text(f"#!/bin/sh\necho {tool} >> {log}\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = _edgec(
        "flash", str(jetson_bundle), "--board", "jetson-orin-nano", "--dry-run", "--run", env=env
    )
    assert result.exit_code == 0, result.output
    commands = result.stdout.splitlines()
    assert [c.split()[0] for c in commands] == ["ssh", "scp", "ssh", "ssh", "scp", "ssh", "scp"]
    assert all("nvidia@jetson.local" in c for c in commands)
    assert commands[-2].endswith("--repeat 20 --warmup 3 --device cuda'")
    assert "/out/output_0.npy " in commands[-1]  # the pull of the output it would check
    assert "dry run, nothing sent" in result.stderr
    assert not log.exists()


# (target, what else is given) → why tuning cannot measure here
@NO_GPU
@pytest.mark.parametrize(
    ("target", "line"),
    [
        pytest.param("cuda", "tuning cuda measures kernels on a GPU, but cuda bundles need a "
                     "cuda device; none found on this machine", id="cuda-no-gpu"),
        pytest.param("jetson-orin", "tuning jetson-orin measures kernels on a GPU, but "
                     "jetson-orin bundles run on the board", id="jetson-no-tracker"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["tune", "build"])
def test_gpu_tuning_without_a_gpu_or_tracker_fails_at_once_in_one_line(
    target: str, line: str, command: str, tmp_path: Path
) -> None:
    trials = ["--trials", "8"] if command == "tune" else ["--tune", "8", "-o", str(tmp_path / "o")]
    result = _edgec(command, EXAMPLE, "--target", target, *trials)
    assert result.exit_code == 2, result.output
    errors = [e for e in result.stderr.splitlines() if e.startswith("edgec: error:")]
    assert len(errors) == 1 and line in errors[0], result.stderr
    assert "load" not in result.stderr  # refused before any work
    assert not (tmp_path / "o").exists()


def test_jetson_tuning_through_a_tracker_extracts_the_gpu_kernels_then_needs_the_tracker(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "db"
    result = _edgec(
        "tune", EXAMPLE, "--target", "jetson-orin", "--trials", "8", "--tuning-db", str(db),
        "--tracker", f"127.0.0.1:{port}", "--key", "orin",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"8 kernels, 0 of them in {db}" in result.stderr  # sm_87 tasks, from the fused module
    errors = [e for e in result.stderr.splitlines() if e.startswith("edgec: error:")]
    assert errors == [
        f"edgec: error: cannot reach the RPC tracker at 127.0.0.1:{port} ([Errno 111] "
        "Connection refused); start one with python -m tvm.exec.rpc_tracker --host 0.0.0.0 "
        "--port PORT"
    ]


# ---------------------------------------------------------------------------------------------
# On a GPU


def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


# precision → the build's flags, the share of outputs within the tolerance it must reach
@pytest.mark.cuda
@pytest.mark.parametrize(
    ("flags", "tolerance", "share"),
    [
        pytest.param((), 1e-4, 1.0, id="fp32"),
        pytest.param(("--quantize", "fp16"), 2e-2, 0.99, id="fp16"),
    ],
)
def test_a_cuda_bundle_runs_on_the_gpu_here_and_matches_onnx_runtime(
    flags: tuple[str, ...], tolerance: float, share: float, tmp_path: Path
) -> None:
    out = tmp_path / "cnn"
    result = _edgec("build", EXAMPLE, "--target", "cuda", "-o", str(out), "--repeat", "20", *flags)
    assert result.exit_code == 0, result.output
    report = _report(out)
    assert report["latency_ms"]["where"] == "device", report["latency_ms"]
    parity = report["parity"]
    assert parity["ok"] and parity["within_share"] >= share, parity
    required = json.loads((out / "manifest.json").read_text())["parity"]
    assert (required["tolerance"], required["share"]) == (tolerance, share)
    assert report["memory"]["device_bytes"] > 0  # at least the weights live on the GPU
    rerun = _edgec("run", str(out), "--repeat", "5")
    assert rerun.exit_code == 0, rerun.output


@pytest.mark.cuda
def test_cuda_tuning_records_kernels_and_a_second_build_measures_nothing(tmp_path: Path) -> None:
    db = tmp_path / "db"
    tuned = _edgec("tune", EXAMPLE, "--target", "cuda", "--trials", "16", "--tuning-db", str(db))
    assert tuned.exit_code == 0, tuned.output
    out = tmp_path / "cnn"
    built = _edgec(
        "build", EXAMPLE, "--target", "cuda", "-o", str(out), "--tune", "16",
        "--tuning-db", str(db), "--repeat", "20",
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    report = _report(out)
    assert report["tuning"]["measurements"] == 0 and report["tuning"]["from_database"] > 0
    assert report["parity"]["ok"] and report["latency_ms"]["where"] == "device"
