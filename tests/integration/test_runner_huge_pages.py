"""edgec-run on x86-64 backs the model's memory with transparent huge pages: it restarts itself
once with glibc.malloc.hugetlb=1 in GLIBC_TUNABLES, keeps a user's own choice, and says in
its result line how much memory huge pages hold."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgec import runtime
from edgec.cli import main

pytestmark = pytest.mark.integration

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
MODE = THP.read_text().split("[")[1].split("]")[0] if THP.is_file() else "never"
MIB = 1 << 20


@pytest.fixture(scope="module")
def wide_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dense layer with 8 MiB of weights: malloc's large blocks, well over one 2 MiB page."""
    tmp = tmp_path_factory.mktemp("huge-pages")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2048, 1024), torch.nn.ReLU()).eval()
    torch.onnx.export(model, (torch.randn(1, 2048),), str(tmp / "wide.onnx"), opset_version=17,
                      input_names=["x"], dynamo=False)  # fmt: skip
    out = tmp / "bundle"
    args = ["build", str(tmp / "wide.onnx"), "--target", "x86", "-o", str(out), "--no-measure"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    return out


CASES = [
    pytest.param(None, True, ("always", "madvise"), id="asked-for-by-the-runner"),
    pytest.param("glibc.malloc.arena_max=4", True, ("always", "madvise"),
                 id="asked-for-beside-the-users-other-tunables"),
    pytest.param("glibc.malloc.hugetlb=0", False, ("madvise",), id="the-users-choice-kept"),
]  # fmt: skip


@pytest.mark.parametrize(("tunables", "huge", "modes"), CASES)
def test_the_x86_runner_holds_the_model_in_huge_pages_unless_told_otherwise(
    wide_bundle: Path, tmp_path: Path, tunables: str | None, huge: bool, modes: tuple[str, ...]
) -> None:
    if MODE not in modes:
        pytest.skip(f"transparent huge pages are '{MODE}' on this kernel")
    np.save(tmp_path / "x.npy", np.ones((1, 2048), np.float32))
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    args = runtime.runner_arguments(
        str(wide_bundle / "model.so"), [str(tmp_path / "x.npy")], str(tmp_path), 2, 1
    )
    done = subprocess.run(
        [str(wide_bundle / runtime.RUNNER), *args], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    result = runtime.runner_result(done.stdout, 1)
    assert (result["huge_pages_bytes"] >= 2 * MIB) == huge, result
    assert np.load(tmp_path / "output_0.npy").shape == (1, 1024)


TUNABLE_CASES = [
    pytest.param({}, "glibc.malloc.hugetlb=1", id="none-set"),
    pytest.param({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"},
                 "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1", id="beside-other-tunables"),
    pytest.param({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "glibc.malloc.hugetlb=0",
                 id="the-users-choice-kept"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "expected"), TUNABLE_CASES)
def test_timed_host_processes_get_huge_pages_as_the_runner_does(
    env: dict[str, str], expected: str
) -> None:
    assert runtime.with_huge_pages({**env, "PATH": "/bin"}) == {
        "PATH": "/bin",
        "GLIBC_TUNABLES": expected,
    }


BIND_CASES = [
    pytest.param({}, "0", id="unpinned-as-the-c-api-opens-models"),
    pytest.param({"TVM_BIND_THREADS": "1"}, "1", id="the-users-choice-kept"),
]  # fmt: skip


@pytest.mark.parametrize(("env", "expected"), BIND_CASES)
def test_timed_host_processes_leave_tvms_threads_unpinned_as_the_runner_does(
    env: dict[str, str], expected: str
) -> None:
    got = runtime.runner_like(env)
    assert got["TVM_BIND_THREADS"] == expected
    assert got["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
