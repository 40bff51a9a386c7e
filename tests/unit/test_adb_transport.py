"""Phones over adb, without a phone: `edgec flash --dry-run` prints the exact adb argv lists of
the atomic protocol (push to /data/local/tmp/edgec, sha256 on the device, switch, run, pull),
and hostile serials, bundle names and runners are refused in one line before any adb command.
An `adb` on PATH that leaves a marker proves a dry run or a refusal never calls it. No device
is faked: what a phone answers is not tested here."""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgec.cli import main
from edgec.stages.bundle import MANIFEST, checksums, open_bundle
from edgec.stages.flash import version
from edgec.targets import all_targets
from tests.fake_bundles import trap, tvm_bundle

SERIAL = "R58M123ABCD"
HOME = "/data/local/tmp/edgec"


def _board(tmp_path: Path, adb: str = f'[adb]\nserial = "{SERIAL}"\n', extra: str = "") -> Path:
    boards = tmp_path / "boards"
    boards.mkdir(exist_ok=True)
    (boards / "phone.toml").write_text(
        f'name = "phone"\ntarget = "x86"\ntransport = "adb"\n{adb}{extra}'
    )
    return boards


def _flash(tmp_path: Path, bundle: Path, boards: Path | None, *flags: str) -> Any:
    """`edgec flash` with a trap called adb first on PATH: it leaves tmp_path/ADB-RAN if run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    trap(bin_dir / "adb", tmp_path / "ADB-RAN")
    where = ["--boards-dir", str(boards)] if boards else []
    board = "phone" if boards else "android-phone"
    return CliRunner().invoke(
        main, ["flash", str(bundle), "--board", board, *where, *flags], env={"PATH": str(bin_dir)}
    )


def _one_line(result: Any) -> str:
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def _sent(result: Any) -> list[list[str]]:
    """The printed commands as argv lists, edgec's temporary directory named T."""
    assert result.exit_code == 0, result.output
    lines = re.sub(r"/[^ ']*/edgec-flash-[^/ ']+", "T", result.stdout)
    return [shlex.split(line) for line in lines.splitlines()]


def _protocol(bundle: Path, run: str | None, clean: bool) -> list[list[str]]:
    """The adb argv lists of one flash: `run` is the runner's command line on the device."""
    adb = ["adb", "-s", SERIAL]
    v = version(open_bundle(bundle)[0])
    incoming, final = f"{HOME}/.incoming-{v}", f"{HOME}/{v}"
    files = ["edgec-run", MANIFEST, "model.onnx", "model.so", "report.json"]
    sent = [
        [*adb, "get-state"],
        [*adb, "shell", f"rm -rf -- {incoming} && mkdir -p -- {incoming}"],
        [*adb, "push", *(str(bundle / f) for f in files), f"{incoming}/"],
        [*adb, "shell", f"cd -- {incoming} && sha256sum -- *"],
        [*adb, "shell", f"rm -rf -- {final} && mv -- {incoming} {final} && "
                        f"ln -sfn -- {v} {HOME}/{bundle.name}"],
    ]  # fmt: skip
    if run is not None:
        sent += [
            [*adb, "push", "T/input_0.npy", f"{final}/"],
            [*adb, "shell", f"cd -- {final} && mkdir -p out && {run}"],
            [*adb, "pull", f"{final}/out/output_0.npy", "T/outputs/output_0.npy"],
        ]
    if clean:
        sent.append([*adb, "shell", f"rm -rf -- {final} {HOME}/{bundle.name}"])
    return sent


ARGS = "--input input_0.npy --output-dir out --repeat 3 --warmup 3"
# (flags, manifest changes, board [env], the runner's command line on the device or None)
DRY_RUNS = [
    pytest.param([], {}, "", None, id="push-verify-switch"),
    pytest.param(["--run"], {}, "", f"./edgec-run model.so {ARGS}", id="run-and-pull"),
    pytest.param(["--run", "--clean"], {}, "", f"./edgec-run model.so {ARGS}",
                 id="run-pull-and-clean"),
    pytest.param(["--run"], {"library": None}, "", f"./edgec-run {ARGS}",
                 id="static-bundle-runs-its-one-executable"),
    pytest.param(["--run"], {}, '[env]\nOMP_X = "a b; $(reboot)"\n',
                 f"env 'OMP_X=a b; $(reboot)' ./edgec-run model.so {ARGS}",
                 id="board-env-value-is-one-quoted-word"),
]  # fmt: skip


@pytest.mark.parametrize(("flags", "changes", "env", "run"), DRY_RUNS)
def test_adb_dry_run_prints_the_atomic_protocol_and_calls_no_adb(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    changes: dict[str, Any],
    env: str,
    run: str | None,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bundle = tvm_bundle(tmp_path / "cnn-x86", tmp_path / "RAN", **changes)
    result = _flash(tmp_path, bundle, _board(tmp_path, extra=env), "--dry-run", "--repeat", "3",
                    *flags)  # fmt: skip
    assert _sent(result) == _protocol(bundle, run, "--clean" in flags)
    assert "dry run, nothing sent: phone:" in result.stderr
    assert not (tmp_path / "ADB-RAN").exists() and not (tmp_path / "RAN").exists()


# (the [adb] table, the words of the one-line refusal)
HOSTILE_BOARDS = [
    pytest.param('[adb]\nserial = "-H evil.example"\n', "[adb] serial '-H evil.example' is not",
                 id="serial-option-lookalike"),
    pytest.param('[adb]\nserial = "R58M;reboot"\n', "serial 'R58M;reboot' is not an adb serial",
                 id="serial-semicolon"),
    pytest.param('[adb]\nserial = "$(reboot)"\n', "serial '$(reboot)' is not",
                 id="serial-subshell"),
    pytest.param('[adb]\nserial = "R58M reboot"\n', "is not an adb serial", id="serial-space"),
    pytest.param('[adb]\nserial = ""\n', "serial '' is not an adb serial", id="serial-empty"),
    pytest.param("[adb]\nserial = 7\n", "serial 7 is not an adb serial", id="serial-not-a-string"),
    pytest.param("", "lacks the key 'adb'", id="no-adb-table"),
    pytest.param('adb = "R58M"\n', "[adb] must be a table", id="adb-not-a-table"),
]  # fmt: skip


@pytest.mark.parametrize(("adb", "message"), HOSTILE_BOARDS)
def test_a_hostile_adb_board_is_refused_at_load(tmp_path: Path, adb: str, message: str) -> None:
    bundle = tvm_bundle(tmp_path / "cnn-x86", tmp_path / "RAN")
    result = _flash(tmp_path, bundle, _board(tmp_path, adb), "--dry-run", "--run")
    line = _one_line(result)
    assert message in line, line
    assert result.stdout == "" and not (tmp_path / "ADB-RAN").exists()


# (the bundle's directory name, a file its manifest lists beside the usual ones, the refusal)
HOSTILE_BUNDLES = [
    pytest.param("it's a bundle; touch PWNED", None, "\"it's a bundle; touch PWNED\" in",
                 id="dir-name-with-quote-and-semicolon"),
    pytest.param("-rf", None, "'-rf' in", id="dir-name-option-lookalike"),
    pytest.param(".hidden", None, "'.hidden' in", id="dir-name-hidden"),
    pytest.param("$(reboot)", None, "'$(reboot)' in", id="dir-name-subshell"),
    pytest.param("cnn", "x;reboot", "'x;reboot' in", id="file-name-semicolon"),
    pytest.param("cnn", "a b.bin", "'a b.bin' in", id="file-name-space"),
    pytest.param("cnn", "*", "'*' in", id="file-name-glob"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "extra", "message"), HOSTILE_BUNDLES)
def test_a_bundle_name_adb_cannot_take_is_refused_before_any_command(
    tmp_path: Path, name: str, extra: str | None, message: str
) -> None:
    bundle = tvm_bundle(tmp_path / "bundles" / name, tmp_path / "RAN")
    if extra is not None:  # a file the manifest lists, checksummed: the bundle itself is valid
        (bundle / extra).write_text("data")
        manifest = json.loads((bundle / MANIFEST).read_text())
        manifest["files"] = checksums(bundle)
        (bundle / MANIFEST).write_text(json.dumps(manifest))
    result = _flash(tmp_path, bundle, _board(tmp_path), "--dry-run", "--run")
    line = _one_line(result)
    assert message in line and "is not a name edgec sends over adb" in line, line
    assert result.stdout == "" and not (tmp_path / "ADB-RAN").exists()
    assert not list(tmp_path.rglob("PWNED")) and not (tmp_path / "RAN").exists()


def test_adb_runs_only_the_runner_edgec_names(tmp_path: Path) -> None:
    bundle = tvm_bundle(tmp_path / "cnn-x86", tmp_path / "RAN")
    (bundle / "edgec-run").rename(bundle / "other-run")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.update(runner="other-run", files=checksums(bundle))
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    line = _one_line(_flash(tmp_path, bundle, _board(tmp_path), "--dry-run", "--run"))
    assert "runner is 'other-run', not edgec-run; rebuild the bundle" in line, line
    assert not (tmp_path / "ADB-RAN").exists() and not (tmp_path / "RAN").exists()


def test_flash_without_adb_installed_says_so_in_one_line(tmp_path: Path) -> None:
    bundle = tvm_bundle(tmp_path / "cnn-x86", tmp_path / "RAN")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        main,
        ["flash", str(bundle), "--board", "phone", "--boards-dir", str(_board(tmp_path))],
        env={"PATH": str(tmp_path / "empty")},
    )
    assert "adb is not installed" in _one_line(result)


def test_the_shipped_android_phone_board_is_an_adb_board() -> None:
    from edgec.boards import get_board

    board = get_board("android-phone")
    assert (board.transport, board.target) == ("adb", "android-arm64")
    assert board.adb is not None and re.fullmatch(r"[A-Za-z0-9]+", board.adb.serial)


@pytest.mark.skipif(
    "android-arm64" not in all_targets(),
    reason="the android-arm64 target profile comes with the static-bundle work (issue 16)",
)
def test_dry_run_to_the_shipped_android_phone_pushes_to_data_local_tmp(tmp_path: Path) -> None:
    from edgec.boards import get_board

    bundle = tvm_bundle(tmp_path / "cnn-android", tmp_path / "RAN", target="android-arm64")
    sent = _sent(_flash(tmp_path, bundle, None, "--dry-run"))
    serial = get_board("android-phone").adb.serial  # type: ignore[union-attr]
    assert all(argv[:3] == ["adb", "-s", serial] for argv in sent)
    assert sent[2][-1].startswith(f"{HOME}/.incoming-cnn-android-")
    assert not (tmp_path / "ADB-RAN").exists()
