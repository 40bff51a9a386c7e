"""Hostile bundles, board files and board replies against a real OpenSSH server on loopback:
every word of a remote command is quoted, only the manifest's files travel, and only the
output names edgec expects come back, into its own temporary directory."""

from __future__ import annotations

import getpass
import json
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgec.cli import main
from edgec.stages.bundle import checksums
from tests.fake_bundles import tvm_bundle
from tests.integration.test_boards import sshd  # noqa: F401  (the loopback OpenSSH server)

pytestmark = pytest.mark.integration
RESULT = {"latency_ms": dict.fromkeys(("p50", "p90", "p99", "mean", "min"), 1.0),
          "peak_rss_bytes": 1}  # fmt: skip


def _board(directory: Path, ssh: dict[str, str], remote: Path, extra: str = "") -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "loop.toml").write_text(
        f'name = "loop"\ntarget = "x86"\ntransport = "ssh"\n[ssh]\nhost = "127.0.0.1"\n'
        f'user = "{getpass.getuser()}"\nport = {ssh["port"]}\nkey = "{ssh["key"]}"\n'
        f"directory = {json.dumps(str(remote))}\n"
        f'known_hosts = "{directory / "known_hosts"}"\n{extra}'
    )
    return directory


def _runner(bundle: Path, name: str, body: str) -> None:
    """Replace the bundle's runner by a script called `name`, and re-checksum the manifest."""
    (bundle / "edgec-run").unlink()
    script = bundle / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(runner=name, files=checksums(bundle))
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _flash(bundle: Path, boards: Path, *extra: str) -> Any:
    return CliRunner().invoke(
        main, ["flash", str(bundle), "--board", "loop", "--boards-dir", str(boards), *extra]
    )


def _one_line(result: Any) -> str:
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    return errors[0]


REPLY = "echo '{json}'"
HOSTILE_REMOTES = [
    pytest.param(
        "edgec-run", "", "echo x > ../evil.npy; " + REPLY,
        {"outputs": [{"file": "../../evil.npy"}]},
        "the runner named outputs '../../evil.npy'; edgec reads only output_0.npy",
        id="reply-names-a-path-outside",
    ),
    pytest.param(
        "edgec-run", "", REPLY, {"outputs": [{"file": "/etc/passwd"}]},
        "edgec reads only output_0.npy", id="reply-names-an-absolute-path",
    ),
    pytest.param(
        "edgec-run", "", REPLY, {"outputs": [{"file": "output_0.npy"}, {"file": "output_1.npy"}]},
        "edgec reads only output_0.npy", id="reply-names-extra-outputs",
    ),
    pytest.param(
        "edgec-run;touch PWNED", "", "touch RAN", None,
        "the runner's result line is not what edgec-run prints", id="runner-name-with-semicolon",
    ),
    pytest.param(
        "edgec-run", '[env]\nLD_X = "$(touch PWNED)"\n', 'printf %s "$LD_X" > ENV', None,
        "the runner's result line is not what edgec-run prints", id="env-value-with-subshell",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("runner", "extra", "body", "reply", "message"), HOSTILE_REMOTES)
def test_a_hostile_runner_or_board_reply_runs_and_writes_nothing_unasked(
    sshd: dict[str, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    runner: str,
    extra: str,
    body: str,
    reply: dict[str, Any] | None,
    message: str,
) -> None:
    host_tmp = tmp_path / "host" / "tmp"
    host_tmp.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(host_tmp))  # edgec's temp dirs go here
    remote = tmp_path / "remote"
    boards = _board(tmp_path / "boards", sshd, remote, extra)
    bundle = tvm_bundle(tmp_path / "cnn", tmp_path / "RAN-LOCALLY")
    _runner(bundle, runner, body.replace("{json}", json.dumps({**RESULT, **(reply or {})})))
    line = _one_line(_flash(bundle, boards, "--run"))
    assert message in line, line
    assert not (tmp_path / "host" / "evil.npy").exists()  # where the old code wrote it
    assert sorted(p.name for p in host_tmp.iterdir()) == []  # its temporary directory is gone
    assert not list(tmp_path.rglob("PWNED")) and not (tmp_path / "RAN-LOCALLY").exists()
    on_board = next(p for p in remote.iterdir() if p.is_dir() and not p.is_symlink())
    if (on_board / "ENV").exists():  # the value arrived as written, not run by a shell
        assert (on_board / "ENV").read_text() == "$(touch PWNED)"
    if runner != "edgec-run":
        assert (on_board / "RAN").exists()  # the literal file ran, not `touch PWNED`


def test_only_the_manifests_files_travel_to_the_board(
    sshd: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's private key")
    bundle = tvm_bundle(tmp_path / "it's a bundle; touch PWNED", tmp_path / "RAN")
    (bundle / "id_rsa").symlink_to(secret)  # beside the bundle's files, listed nowhere
    remote = tmp_path / "remote dir; touch PWNED"
    boards = _board(tmp_path / "boards", sshd, remote)
    result = _flash(bundle, boards)
    assert result.exit_code == 0, result.output
    link = remote / bundle.name
    assert link.is_symlink() and (link / "edgec-run").is_file()
    assert not (link / "id_rsa").exists()
    assert not list(tmp_path.rglob("PWNED")) and not (tmp_path / "RAN").exists()
