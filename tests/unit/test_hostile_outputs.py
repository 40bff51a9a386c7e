"""Hostile outputs (issue 13, items 1-5, 12, 14, 17): edgec replaces only what it wrote, switches
a bundle and its tarball together, leaves nothing behind when stopped, refuses a second writer,
names the user's path when a write fails, writes strict JSON, and is never silent for long."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgec import interrupts
from edgec.cli import main
from edgec.errors import EdgecError
from edgec.progress import StageLog
from edgec.stages import report as reporting
from edgec.staging import (
    output_lock,
    remove_stale_staging,
    staged_directory,
    update_bundle,
    write_archive,
)
from tests.conftest import EXAMPLE, ROOT

PYTHON = sys.executable


def _bundle(out: Path, model: bytes = b"model v1", tarball: bool = True) -> None:
    """A bundle as edgec writes it: listed files, manifest, reports, and its tarball beside it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.so").write_bytes(model)
    files = {"model.so": hashlib.sha256(model).hexdigest()}
    manifest = {"schema": 1, "versions": {"edgec": "0.1.0"}, "target": "x86", "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "report.json").write_text("{}")
    (out / "report.md").write_text("# report\n")
    if tarball:
        write_archive(out, out.with_name(out.name + ".tar.gz"))


def _snapshot(parent: Path) -> dict[str, bytes | None]:
    """Every path under `parent` and its bytes (None for a directory)."""
    return {
        str(p.relative_to(parent)): None if p.is_dir() else p.read_bytes()
        for p in sorted(parent.rglob("*"))
    }


def _user_dir_with_foreign_manifest(out: Path) -> None:
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    (out / "index.html").write_text("<html>mine</html>")


def _bundle_with_notes(out: Path) -> None:
    _bundle(out)
    (out / "notes.txt").write_text("measured on the pi: 41 ms")


def _bundle_with_results_folder(out: Path) -> None:
    _bundle(out)
    (out / "pi-results").mkdir()
    (out / "pi-results" / "run1.json").write_text("{}")


def _a_file(out: Path) -> None:
    out.write_text("a file, not a directory")


def _a_symlink(out: Path) -> None:
    (out.parent / "elsewhere").mkdir()
    (out.parent / "elsewhere" / "keep.txt").write_text("keep")
    out.symlink_to(out.parent / "elsewhere")


def _user_tarball(out: Path) -> None:
    _bundle(out)
    (out.parent / f"{out.name}.tar.gz").write_bytes(b"my own backup, not a tarball of out")


def _tarball_of_another_bundle(out: Path) -> None:
    _bundle(out.parent / "other" / out.name, model=b"another model")
    _bundle(out)
    (out.parent / "other" / f"{out.name}.tar.gz").replace(out.parent / f"{out.name}.tar.gz")


def _tarball_without_bundle(out: Path) -> None:
    _bundle(out)
    for p in out.iterdir():
        p.unlink()
    out.rmdir()


REFUSED = [
    pytest.param(_user_dir_with_foreign_manifest, r"not a bundle edgec wrote.*index\.html, manifest\.json", id="foreign-manifest"),  # noqa: E501
    pytest.param(_bundle_with_notes, r"holds files edgec did not write: notes\.txt;", id="user-notes-in-bundle"),  # noqa: E501
    pytest.param(_bundle_with_results_folder, r"did not write: pi-results/;", id="user-folder-in-bundle"),  # noqa: E501
    pytest.param(_a_file, r"is a file, not a bundle", id="out-is-a-file"),
    pytest.param(_a_symlink, r"is a symbolic link", id="out-is-a-symlink"),
    pytest.param(_user_tarball, r"out\.tar\.gz is not the archive of the bundle", id="user-tarball"),  # noqa: E501
    pytest.param(_tarball_of_another_bundle, r"out\.tar\.gz is not the archive", id="another-bundles-tarball"),  # noqa: E501
    pytest.param(_tarball_without_bundle, r"out\.tar\.gz is not the archive", id="tarball-without-bundle"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize("setup", [p.values[0] for p in REFUSED], ids=[p.id for p in REFUSED])
def test_force_replaces_what_edgec_did_not_write(tmp_path: Path, setup: Callable) -> None:
    out = tmp_path / "out"
    setup(out)
    with staged_directory(out, force=True) as work:
        (work / "model.so").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["model.so"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("setup", "message"), REFUSED)
def test_what_edgec_did_not_write_is_refused_in_one_line_and_kept(
    tmp_path: Path, setup: Callable, message: str
) -> None:
    out = tmp_path / "out"
    setup(out)
    before = _snapshot(tmp_path)
    with pytest.raises(EdgecError, match=message) as e, staged_directory(out) as work:
        (work / "model.so").write_text("new")
    assert "\n" not in str(e.value) and "--force" in str(e.value)
    assert _snapshot(tmp_path) == before


REPLACED = [
    pytest.param(lambda out: None, id="nothing-there"),
    pytest.param(lambda out: out.mkdir(), id="empty-directory"),
    pytest.param(_bundle, id="earlier-bundle-and-its-tarball"),
]


@pytest.mark.parametrize("setup", REPLACED)
def test_an_earlier_bundle_and_its_tarball_are_replaced_together(
    tmp_path: Path, setup: Callable
) -> None:
    out = tmp_path / "out"
    setup(out)
    with staged_directory(out) as work:
        _bundle(work, model=b"model v2", tarball=False)
    assert (out / "model.so").read_bytes() == b"model v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.tar.gz"]
    # the new tarball is the new bundle's, and a rebuild accepts it as edgec's own
    with staged_directory(out) as work:
        (work / "model.so").write_text("v3")


def test_a_failed_tarball_leaves_the_old_bundle_and_tarball_and_no_debris(tmp_path: Path) -> None:
    """The tarball is written before the switch: a write that fails there (here the file-size
    limit, as a full disk would) changes neither the directory nor the tarball."""
    out = tmp_path / "out"
    _bundle(out)
    before = _snapshot(tmp_path)
    script = textwrap.dedent(
        f"""
        import os, resource, signal
        from pathlib import Path
        from edgec.errors import EdgecError
        from edgec.staging import staged_directory
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        try:
            with staged_directory(Path({str(out)!r})) as work:
                for i in range(3):  # each file fits, their tarball does not
                    (work / f"part{{i}}.bin").write_bytes(os.urandom(200_000))
        except EdgecError as e:
            print(e)
        """
    )
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.startswith(f"cannot write {out}: a file grew past"), done.stderr
    assert ".edgec-" not in done.stdout
    assert _snapshot(tmp_path) == before


def test_reports_and_tarball_of_a_bundle_are_updated_together(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _bundle(out)
    update_bundle(out, {"report.json": b'{"run": 2}', "report.md": b"# run 2\n"})
    assert (out / "report.json").read_bytes() == b'{"run": 2}'
    import tarfile

    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        member = tar.extractfile("out/report.json")
        assert member is not None and member.read() == b'{"run": 2}'
        assert tar.getnames()[1] == "out/manifest.json"  # first file: ownership reads only it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.tar.gz"]


def _stale_area(out: Path, owner: str | None) -> Path:
    area = out.parent / f".{out.name}.edgec-abc123"
    area.mkdir(parents=True)
    (area / out.name).mkdir()
    (area / out.name / "model.so").write_bytes(b"x" * 1000)
    if owner is not None:
        (area / "owner").write_text(owner)
    return area


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


HOST = socket.gethostname()
STALE = [
    pytest.param(lambda: f"edgec {_dead_pid()} - {HOST}", True, id="owner-pid-dead"),
    pytest.param(lambda: f"edgec {os.getpid()} 1 {HOST}", True, id="owner-pid-reused-by-another"),
    pytest.param(
        lambda: f"edgec {os.getpid()} {interrupts.start_time(os.getpid())} {HOST}",
        False,
        id="owner-alive",
    ),
    pytest.param(lambda: f"edgec {_dead_pid()} - another-host", False, id="owner-on-another-host"),
    pytest.param(lambda: None, False, id="no-owner-file"),
    pytest.param(lambda: "my notes", False, id="owner-file-not-edgecs"),
]


@pytest.mark.parametrize(("owner", "removed"), STALE)
def test_a_later_build_removes_only_staging_areas_of_dead_edgec_processes(
    tmp_path: Path, owner: Callable[[], str | None], removed: bool
) -> None:
    out = tmp_path / "out"
    area = _stale_area(out, owner())
    assert (remove_stale_staging(out) == [area]) is removed
    assert area.exists() is not removed


def test_a_killed_writer_leaves_an_area_the_next_build_removes(tmp_path: Path) -> None:
    """SIGKILL cannot be handled: the staging area stays, marked with the dead pid."""
    out = tmp_path / "out"
    script = (
        "import sys, time\nfrom pathlib import Path\nfrom edgec.staging import staged_directory\n"
        f"with staged_directory(Path({str(out)!r})) as work:\n"
        "    print('staged', flush=True)\n    time.sleep(600)\n"
    )
    child = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None and child.stdout.readline() == "staged\n"
    child.kill()
    child.wait()
    assert [p.name for p in tmp_path.iterdir() if ".edgec-" in p.name]
    with staged_directory(out) as work:  # the lock the dead writer held is free, too
        (work / "model.so").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.tar.gz"]


def _holder(out: Path) -> subprocess.Popen[str]:
    script = (
        "import time\nfrom pathlib import Path\nfrom edgec.staging import output_lock\n"
        f"with output_lock(Path({str(out)!r})):\n    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    child = subprocess.Popen([PYTHON, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


def test_a_second_build_to_the_same_output_is_refused_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _bundle(out)
    holder = _holder(out)
    before = _snapshot(tmp_path)
    try:
        result = CliRunner().invoke(main, ["build", EXAMPLE, "-t", "x86", "-o", str(out)])
    finally:
        holder.kill()
        holder.wait()
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
    assert result.exit_code == 2
    assert lines == [
        f"edgec: error: another edgec (pid {holder.pid}) is writing {out}; wait for it to "
        "finish or choose another -o"
    ]
    assert _snapshot(tmp_path) == before
    with output_lock(out):  # the holder is gone: the lock is free again
        pass
    assert not (tmp_path / ".out.lock").exists()


HOMES = [
    pytest.param(".", "the current directory", id="force-on-the-current-directory"),
    pytest.param("..", "above the current one", id="force-on-its-parent"),
    pytest.param("{home}", "your home directory", id="force-on-home"),
    pytest.param("/", "the file system root", id="force-on-the-root"),
]


@pytest.mark.parametrize(("out", "what"), HOMES)
def test_force_never_takes_the_current_directory_or_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, what: str
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "home" / "src" / "project"
    cwd.mkdir(parents=True)
    (cwd / "thesis.tex").write_text("years of work")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    before = _snapshot(tmp_path)
    out = out.format(home=home)
    result = CliRunner().invoke(main, ["build", EXAMPLE, "-t", "x86", "-o", out, "--force"])
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
    assert result.exit_code == 2
    assert lines == [
        f"edgec: error: -o {out} is {what}; edgec replaces the whole output directory, so it "
        f"never takes that one, even with --force: give a new one, e.g. -o {Path(out) / 'bundle'}"
    ]
    assert _snapshot(tmp_path) == before


UNWRITABLE = [
    pytest.param("/proc/edgec-hostile/out", "does not exist and cannot be made", id="under-proc"),
    pytest.param("/sys/kernel/edgec-hostile", "permission denied", id="under-sys"),
    pytest.param("{tmp}/a-file/out", r"{tmp}/a-file is a file, not a directory", id="parent-is-a-file"),  # noqa: E501
]  # fmt: skip


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc and /sys")
@pytest.mark.parametrize(("out", "cause"), UNWRITABLE)
def test_an_unwritable_output_names_the_users_path_and_the_cause(
    tmp_path: Path, out: str, cause: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    out = out.format(tmp=tmp_path)
    result = CliRunner().invoke(main, ["build", EXAMPLE, "-t", "x86", "-o", out])
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
    assert result.exit_code == 2
    assert len(lines) == 1 and lines[0].startswith(f"edgec: error: cannot write {out}: ")
    assert re.search(cause.format(tmp=tmp_path), lines[0]), lines[0]
    assert ".edgec-" not in result.stderr and "internal error" not in result.stderr


def test_a_stop_signal_waits_until_the_switch_is_done() -> None:
    steps = []
    with pytest.raises(interrupts.Interrupted) as e, interrupts.handled(), interrupts.held():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0)  # the handler runs here, and only records the signal
        steps.append("second rename")
    assert steps == ["second rename"]
    assert e.value.exit_code == 143


def _raises_with_cause(tmp_path: Path) -> list[str]:
    (tmp_path / "edgec.toml").write_text("[build\n")
    return ["--config", str(tmp_path / "edgec.toml"), "targets"]


def test_edgec_debug_shows_the_traceback_and_cause_of_an_edgec_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _raises_with_cause(tmp_path)
    quiet = CliRunner().invoke(main, args)
    assert quiet.exit_code == 2 and "Traceback" not in quiet.stderr
    assert len(quiet.stderr.splitlines()) == 1
    monkeypatch.setenv("EDGEC_DEBUG", "1")
    loud = CliRunner().invoke(main, args)
    assert loud.exit_code == 2
    assert "Traceback" in loud.stderr and "TOMLDecodeError" in loud.stderr  # the cause
    assert loud.stderr.splitlines()[-1] == quiet.stderr.splitlines()[0]


NON_FINITE = [
    pytest.param(float("nan"), "nan", id="nan"),
    pytest.param(float("inf"), "inf", id="inf"),
    pytest.param(float("-inf"), "-inf", id="minus-inf"),
]


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
def test_a_non_finite_number_becomes_null_with_a_reason_in_strict_json(
    value: float, shown: str
) -> None:
    from edgec.artifacts import Measurement

    latency = {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "min": value}
    nan_input = Measurement("host", latency, 5, 1, value, 1e-4, None, 0.0, 1.0)
    data = reporting.with_measurement(_report(), nan_input, None)
    files = reporting.files(data)
    written = files["report.json"].decode()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in report.json")

    parsed = json.loads(written, parse_constant=refuse)
    assert parsed["parity"]["max_abs_diff"] is None
    assert shown in parsed["parity"]["max_abs_diff_reason"]
    assert parsed["latency_ms"]["min"] is None and parsed["latency_ms"]["min_reason"]
    assert f"max abs diff not a finite number ({shown})" in files["report.md"].decode()


def _report() -> dict:
    """A report as a build writes it, before its measurement."""
    return {
        "versions": {"edgec": "0.1.0", "tvm": "0.27.0"},
        "target": {"name": "x86", "description": "this host"},
        "model": {"source": "cnn.py", "params": 10, "size_bytes": 40, "macs": 100},
        "stages": [{"name": "measure", "seconds": 0.5}],
        "memory": {"planned_bytes": 1, "peak_rss_bytes": None},
        "parity": {"reference": "onnxruntime", "export_max_abs_diff": None},
        "bundle": {"size_bytes": 1, "files": ["model.so"]},
    }


def test_without_a_terminal_a_long_stage_prints_progress_lines() -> None:
    stream = io.StringIO()  # not a terminal, like a CI log
    log = StageLog(stream, heartbeat_s=0.05)
    with log.stage("quantize") as s:
        s.step(3, 10)
        deadline = time.monotonic() + 30
        while "still running" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
    line = next(x for x in stream.getvalue().splitlines() if "still running" in x)
    assert re.fullmatch(r" +quantize: still running, \d+ s elapsed, step 3/10", line)
    assert stream.getvalue().splitlines()[-1].startswith("  quantize ")


def test_a_rerun_gets_its_own_row_and_the_build_keeps_its_measure_row() -> None:
    from edgec.artifacts import Measurement

    build = {
        "stages": [{"name": "measure", "seconds": 0.5, "latency_ms_p50": 1.0, "where": "host"}],
        "memory": {},
        "parity": {},
        "latency_ms": {"p50": 1.0},
    }
    latency = {"p50": 9.0, "p90": 9.0, "p99": 9.0, "mean": 9.0, "min": 9.0}
    rerun = Measurement("emulated", latency, 5, 1, 0.0, 1e-4, None, 1.0, 1.0)
    data = reporting.with_measurement(build, rerun, None, ("run", 7.25))
    assert data["stages"] == [
        {"name": "measure", "seconds": 0.5, "latency_ms_p50": 1.0, "where": "host"},
        {"name": "run", "seconds": 7.25, "latency_ms_p50": 9.0, "where": "emulated"},
    ]
    again = reporting.with_measurement(data, rerun, None, ("run", 3.0))
    assert [s["name"] for s in again["stages"]] == ["measure", "run"]  # the latest run only


def test_a_failed_rename_in_the_switch_puts_the_old_bundle_and_tarball_back(
    tmp_path: Path,
) -> None:
    from edgec.staging import _switch

    out = tmp_path / "out"
    _bundle(out)
    before = _snapshot(tmp_path)
    area = tmp_path / ".out.edgec-test"
    _bundle(area / "out", model=b"model v2")  # the new bundle and, beside it, its tarball
    (area / "out.tar.gz").unlink()  # the second rename will fail: its source is gone
    with pytest.raises(FileNotFoundError):
        _switch([(area / "out", out), (area / "out.tar.gz", tmp_path / "out.tar.gz")], area)
    assert {k: v for k, v in _snapshot(tmp_path).items() if not k.startswith(".")} == before
    assert (area / "out" / "model.so").read_bytes() == b"model v2"  # back where it was
