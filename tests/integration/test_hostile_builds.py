"""Hostile conditions around real builds (issue 13, items 2, 3, 4, 5, 12, 17): stopped by a signal,
out of disk, two at once, NaN inputs, reruns. The example CNN builds for x86 in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgec.cli import main
from edgec.staging import check_replaceable
from tests.conftest import EXAMPLE, ROOT

pytestmark = pytest.mark.integration
EDGEC = [sys.executable, "-m", "edgec"]
WAIT_S = 300  # for a build to reach the point where the signal is sent; never reached normally


def _staging_appears(out: Path, tmp: Path) -> bool:
    return any(out.parent.glob(f".{out.name}.edgec-*"))


def _runner_runs(out: Path, tmp: Path) -> bool:
    return any(tmp.glob("edgec-run-*"))


def _processes_naming(path: Path) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in text:
            found.append(text)
    return found


STOPS = [
    pytest.param(signal.SIGTERM, _staging_appears, False, id="sigterm-while-loading"),
    pytest.param(signal.SIGTERM, _runner_runs, False, id="sigterm-while-the-runner-runs"),
    pytest.param(signal.SIGHUP, _runner_runs, False, id="sighup-while-the-runner-runs"),
    # `timeout` and CI runners signal the whole process group: the runner gets it too
    pytest.param(signal.SIGTERM, _runner_runs, True, id="sigterm-to-the-process-group"),
]


@pytest.mark.parametrize(("signum", "ready", "group"), STOPS)
def test_a_stop_signal_leaves_no_debris_no_orphan_and_one_line(
    tmp_path: Path, signum: int, ready: Callable[[Path, Path], bool], group: bool
) -> None:
    tmp = tmp_path / "tmp"  # the build's own TMPDIR: edgec-run-* dirs of other tests stay apart
    tmp.mkdir()
    out = tmp_path / "outputs" / "cnn"
    build = [*EDGEC, "build", EXAMPLE, "-t", "x86", "-o", str(out), "--repeat", "10000000"]
    child = subprocess.Popen(
        build,
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    deadline = time.monotonic() + WAIT_S
    while not ready(out, tmp) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "the build ended before the signal"
    if group:
        os.killpg(child.pid, signum)
    else:
        child.send_signal(signum)
    _, stderr = child.communicate(timeout=WAIT_S)
    lines = [line for line in stderr.splitlines() if line.startswith("edgec: ")]
    name = signal.Signals(signum).name
    assert child.returncode == 128 + signum, stderr
    assert lines == [f"edgec: interrupted by {name}; no output was changed"], stderr
    assert "Traceback" not in stderr
    assert list(out.parent.iterdir()) == []  # no bundle, no staging area, no lock file
    assert list(tmp.glob("edgec-*")) == []
    assert _processes_naming(out.parent) == []  # the runner did not outlive edgec


def _can_mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    return done.returncode == 0


SMALL_DISKS = [
    pytest.param("size=4m", "the disk is full; free some space or choose another -o", id="full"),
    pytest.param("ro,size=1m", "the file system is read-only; choose another -o", id="read-only"),
]


@pytest.mark.parametrize(("options", "cause"), SMALL_DISKS)
def test_a_full_or_read_only_disk_names_the_output_and_leaves_nothing(
    tmp_path: Path, options: str, cause: str
) -> None:
    small = tmp_path / "small"
    if not _can_mount_tmpfs(small, options):
        pytest.skip("needs to mount a tmpfs (root with CAP_SYS_ADMIN) for a full or read-only disk")
    try:
        out = small / "cnn"
        result = CliRunner().invoke(main, ["build", EXAMPLE, "-t", "x86", "-o", str(out)])
        lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
        assert result.exit_code == 2
        assert lines == [f"edgec: error: cannot write {out}: {cause}"]
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pruned") / "cnn"
    args = ["build", EXAMPLE, "-t", "x86", "-o", str(out), "--prune", "0.5", "--repeat", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    return out


def _report(bundle: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in report.json: not JSON")

    return json.loads((bundle / "report.json").read_text(), parse_constant=refuse)


def _archived_report(bundle: Path) -> bytes:
    with tarfile.open(f"{bundle}.tar.gz") as tar:
        member = tar.extractfile(f"{bundle.name}/report.json")
        assert member is not None
        return member.read()


def test_a_pruned_build_counts_its_parameters_one_way(pruned: Path) -> None:
    report = _report(pruned)
    prune_row = next(s for s in report["stages"] if s["name"] == "prune")
    assert prune_row["params"] == report["model"]["params"]  # what the summary line shows
    summary = f"| parameters | {report['model']['params']:,} "
    assert summary in (pruned / "report.md").read_text()


def test_a_rerun_has_its_own_row_beside_the_builds_measure_row(pruned: Path) -> None:
    built = _report(pruned)
    measure_row = next(s for s in built["stages"] if s["name"] == "measure")
    result = CliRunner().invoke(main, ["run", str(pruned), "--repeat", "3"])
    assert result.exit_code == 0, result.stderr
    report = _report(pruned)
    rows = {s["name"]: s for s in report["stages"]}
    assert rows["measure"] == measure_row  # the build's time with the build's latency
    assert rows["run"]["latency_ms_p50"] == report["latency_ms"]["p50"]
    assert report["latency_ms"]["repeat"] == 3
    assert _archived_report(pruned) == (pruned / "report.json").read_bytes()
    check_replaceable(pruned)  # the rerun's bundle and tarball are still edgec's to replace


def test_a_nan_input_writes_null_with_a_reason_and_fails_in_one_line(
    pruned: Path, tmp_path: Path
) -> None:
    x = np.full((1, 3, 32, 32), np.nan, np.float32)
    np.save(tmp_path / "nan.npy", x)
    result = CliRunner().invoke(main, ["run", str(pruned), "--input", str(tmp_path / "nan.npy")])
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert "not a finite number (nan)" in lines[0]
    parity = _report(pruned)["parity"]
    assert parity["max_abs_diff"] is None
    assert parity["max_abs_diff_reason"] == "not a finite number (nan)"
    assert _archived_report(pruned) == (pruned / "report.json").read_bytes()


def test_run_on_a_read_only_bundle_says_so_in_one_line(pruned: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    if not _can_mount_tmpfs(mount, "size=32m"):
        pytest.skip("needs to mount a tmpfs (root with CAP_SYS_ADMIN) for a read-only bundle")
    try:
        bundle = mount / pruned.name
        subprocess.run(["cp", "-a", str(pruned), f"{pruned}.tar.gz", str(mount)], check=True)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        result = CliRunner().invoke(main, ["run", str(bundle), "--repeat", "1"])
        lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
        assert result.exit_code == 2
        assert lines == [
            f"edgec: error: cannot write {bundle}: the file system is read-only; copy the "
            "bundle where you can write"
        ]
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_two_builds_to_one_output_one_writes_the_other_says_so(tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    first = subprocess.Popen(
        [*EDGEC, "build", EXAMPLE, "-t", "x86", "-o", str(out), "--no-measure"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_S
    while not _staging_appears(out, tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = CliRunner().invoke(main, ["build", EXAMPLE, "-t", "x86", "-o", str(out)])
    _, stderr = first.communicate(timeout=WAIT_S)
    lines = [line for line in second.stderr.splitlines() if line.startswith("edgec: ")]
    assert second.exit_code == 2
    assert lines == [
        f"edgec: error: another edgec (pid {first.pid}) is writing {out}; wait for it to "
        "finish or choose another -o"
    ]
    assert first.returncode == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn", "cnn.tar.gz"]
    check_replaceable(out)
