"""Boards for real: flashing and running bundles through an OpenSSH server on loopback (x86
natively, rpi4 under qemu-aarch64), MCU flash command lines, comparing reports (table, PNG,
HTML seen in headless Chromium), the regression gate, and multi-target builds."""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgec.cli import main
from tests.conftest import EXAMPLE, ROOT, needs

pytestmark = pytest.mark.integration
DIGITS = f"{ROOT / 'examples' / 'digits.py'}:make_model"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def _edgec(*args: str, ok: bool = True) -> object:
    result = CliRunner().invoke(main, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _run_sshd(tmp: Path, sftp_server: str = SFTP_SERVER) -> Iterator[dict[str, str]]:
    """An OpenSSH server on a loopback port with a throw-away host key and user key."""
    if not Path(SSHD).exists() or shutil.which("ssh") is None:
        pytest.skip("openssh-server/client not installed (scripts/setup.sh installs them)")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / key)],
                       check=True)  # fmt: skip
    shutil.copy(tmp / "user_key.pub", tmp / "authorized_keys")
    port = _free_port()
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin prohibit-password\nPidFile {tmp / 'sshd.pid'}\n"
        f"Subsystem sftp {sftp_server}\n"  # scp speaks SFTP, as on a Pi
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield {"port": str(port), "key": str(tmp / "user_key"), "tmp": str(tmp)}
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with _run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _board(directory: Path, name: str, target: str, ssh: dict[str, str], extra: str = "") -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.toml").write_text(
        f'name = "{name}"\ntarget = "{target}"\ntransport = "ssh"\n[ssh]\nhost = "127.0.0.1"\n'
        f'user = "{getpass.getuser()}"\nport = {ssh["port"]}\nkey = "{ssh["key"]}"\n'
        f'directory = "{directory / "remote"}"\nknown_hosts = "{directory / "known_hosts"}"\n'
        f"{extra}"
    )


@pytest.fixture(scope="module")
def boards(sshd: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("boards")
    _board(directory, "loopback-x86", "x86", sshd)
    _board(
        directory,
        "loopback-pi",
        "rpi4",
        sshd,
        'exec_prefix = ["qemu-aarch64"]\n[env]\nQEMU_LD_PREFIX = "/usr/aarch64-linux-gnu"\n',
    )
    (directory / "dead-pi.toml").write_text(
        'name = "dead-pi"\ntarget = "rpi4"\ntransport = "ssh"\n[ssh]\nhost = "127.0.0.1"\n'
        f'user = "nobody"\nport = {_free_port()}\nknown_hosts = "{directory / "kh"}"\n'
    )  # fmt: skip
    return directory


@pytest.fixture(scope="module")
def x86_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "cnn-x86"
    _edgec("build", EXAMPLE, "-t", "x86", "-o", str(out), "--repeat", "5")
    return out


@pytest.fixture(scope="module")
def rpi4_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "cnn-rpi4"
    _edgec("build", EXAMPLE, "-t", "rpi4", "-o", str(out), "--repeat", "2")
    return out


def test_flash_and_run_x86_bundle_over_ssh_records_a_device_measurement(
    x86_bundle: Path, boards: Path
) -> None:
    _edgec("flash", str(x86_bundle), "--board", "loopback-x86", "--run", "--repeat", "5",
           "--boards-dir", str(boards))  # fmt: skip
    report = json.loads((x86_bundle / "report.json").read_text())
    assert report["latency_ms"]["where"] == "device" and report["board"] == "loopback-x86"
    assert report["parity"]["ok"] and report["parity"]["max_abs_diff"] < 1e-4
    link = boards / "remote" / "cnn-x86"
    assert link.is_symlink() and (link / "model.so").is_file()
    assert not list((boards / "remote").glob(".incoming-*"))


@needs("qemu-aarch64")
def test_flash_and_run_rpi4_bundle_over_ssh_under_qemu_is_marked_emulated(
    rpi4_bundle: Path, boards: Path
) -> None:
    _edgec("flash", str(rpi4_bundle), "--board", "loopback-pi", "--run", "--repeat", "2",
           "--boards-dir", str(boards))  # fmt: skip
    report = json.loads((rpi4_bundle / "report.json").read_text())
    assert report["latency_ms"]["where"] == "emulated" and report["parity"]["ok"]


def test_a_modified_bundle_is_refused_before_anything_is_copied(
    x86_bundle: Path, boards: Path, tmp_path: Path
) -> None:
    _edgec("flash", str(x86_bundle), "--board", "loopback-x86", "--boards-dir", str(boards))
    before = (boards / "remote" / "cnn-x86").resolve()
    broken = tmp_path / "cnn-x86"
    shutil.copytree(x86_bundle, broken)
    with (broken / "model.so").open("ab") as f:
        f.write(b"\0")
    result = _edgec("flash", str(broken), "--board", "loopback-x86", "--boards-dir", str(boards),
                    ok=False)  # fmt: skip
    assert result.exit_code == 1 and "model.so is modified" in result.stderr  # type: ignore[attr-defined]
    assert (boards / "remote" / "cnn-x86").resolve() == before


# An SFTP server that damages model.so once the copy into the board's incoming directory is
# done: a lossy link or a failing SD card, after the bundle left the host intact.
LOSSY_SFTP = """#!/bin/sh
{server} "$@"
status=$?
for f in {remote}/.incoming-*/model.so; do
    [ -f "$f" ] && printf '\\377' >> "$f"
done
exit $status
"""


def test_a_bundle_corrupted_on_the_way_is_refused_on_the_board_which_keeps_its_bundle(
    x86_bundle: Path, boards: Path, sshd: dict[str, str], tmp_path: Path
) -> None:
    _edgec("flash", str(x86_bundle), "--board", "loopback-x86", "--boards-dir", str(boards))
    remote = boards / "remote"
    before = (remote / "cnn-x86").resolve()
    lossy = tmp_path / "lossy-sftp-server"
    lossy.write_text(LOSSY_SFTP.format(server=SFTP_SERVER, remote=remote))
    lossy.chmod(0o755)
    (tmp_path / "sshd").mkdir()
    with _run_sshd(tmp_path / "sshd", str(lossy)) as server:
        lossy_boards = tmp_path / "boards"
        _board(lossy_boards, "lossy-x86", "x86", server)
        text = (lossy_boards / "lossy-x86.toml").read_text()  # the same directory on the board
        (lossy_boards / "lossy-x86.toml").write_text(
            text.replace(f'directory = "{lossy_boards / "remote"}"', f'directory = "{remote}"')
        )
        result = _edgec("flash", str(x86_bundle), "--board", "lossy-x86", "--boards-dir",
                        str(lossy_boards), ok=False)  # fmt: skip
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]  # type: ignore[attr-defined]
    assert result.exit_code == 1 and len(errors) == 1, result.output  # type: ignore[attr-defined]
    assert "model.so arrived on lossy-x86 with another sha256" in errors[0]
    assert "the board keeps its previous bundle" in errors[0]
    assert (remote / "cnn-x86").resolve() == before
    assert (before / "model.so").read_bytes() == (x86_bundle / "model.so").read_bytes()
    assert not list(remote.glob(".incoming-*"))


@pytest.mark.parametrize(
    ("board", "message"),
    [
        pytest.param("dead-pi", "cannot reach dead-pi at nobody@127.0.0.1", id="unreachable"),
        pytest.param("loopback-x86", "was built for rpi4, but loopback-x86 takes x86", id="target"),
        pytest.param("nope", "unknown board 'nope'; known: ", id="unknown"),
    ],
)
def test_bad_flash_is_one_line(rpi4_bundle: Path, boards: Path, board: str, message: str) -> None:
    result = _edgec("flash", str(rpi4_bundle), "--board", board, "--boards-dir", str(boards),
                    ok=False)  # fmt: skip
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]  # type: ignore[attr-defined]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], errors  # type: ignore[attr-defined]


@needs("arm-none-eabi-gcc")
def test_mcu_boards_flash_with_the_probe_command_from_the_board_file(tmp_path: Path) -> None:
    out = tmp_path / "digits-m7"
    _edgec("build", DIGITS, "-t", "cortex-m7", "--board", "nucleo-f746zg", "--quantize", "int8",
           "--data", "digits", "--calib-samples", "32", "-o", str(out))  # fmt: skip
    result = _edgec("flash", str(out), "--board", "nucleo-f746zg", "--dry-run")
    line = result.stderr  # type: ignore[attr-defined]
    assert f"pyocd flash --target stm32f746zgtx {(out / 'firmware.elf').resolve()}" in line
    from edgec.boards import get_board
    from edgec.stages.bundle import open_bundle
    from edgec.stages.flash import flash_command

    l4 = flash_command(open_bundle(out)[0], get_board("nucleo-l4r5zi"))
    assert l4[:3] == ("openocd", "-f", "board/st_nucleo_l4.cfg") and "verify" in l4[-1]


def test_boards_lists_shipped_and_user_boards(boards: Path) -> None:
    result = _edgec("boards", "--boards-dir", str(boards))
    text = result.output  # type: ignore[attr-defined]
    assert re.search(r"nucleo-f746zg +cortex-m7 +pyocd +1024 KiB +320 KiB", text)
    assert re.search(r"loopback-pi +rpi4 +ssh", text)


def _report(path: Path, name: str, p50: float, where: str = "host") -> Path:
    data = json.loads((ROOT / "tests" / "data" / "report.json").read_text())
    data["latency_ms"].update({"p50": p50, "p90": p50 * 1.1, "where": where})
    (path / name).mkdir()
    (path / name / "report.json").write_text(json.dumps(data))
    return path / name


def test_compare_writes_table_png_and_an_html_page_chromium_renders(tmp_path: Path) -> None:
    reports = [_report(tmp_path, "a", 2.0), _report(tmp_path, "b", 1.0),
               _report(tmp_path, "c", 30.0, "emulated")]  # fmt: skip
    png, page = tmp_path / "c.png", tmp_path / "c.html"
    result = _edgec("compare", *map(str, reports), "--markdown", "--plot", str(png),
                    "--html", str(page))  # fmt: skip
    text = result.output  # type: ignore[attr-defined]
    assert "| b | x86 |" in text and "0.50×" in text and "n/a (emulated vs host)" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in page.read_text() and "data:image/png;base64," in page.read_text()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (scripts/setup.sh installs it)")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,800", page.as_uri()],
                   capture_output=True, timeout=120)  # fmt: skip
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    low, high = pixels.getextrema()
    assert high - low > 100  # text and bars on a white page, not a blank screenshot
    assert len(set(pixels.getdata())) > 16


@pytest.mark.parametrize(("p50", "code"), [(1.2, 1), (1.05, 0), (0.5, 0)])
def test_regression_gate_exits_1_only_on_a_slower_report(
    tmp_path: Path, p50: float, code: int
) -> None:
    base = _report(tmp_path, "base", 1.0)
    new = _report(tmp_path, "new", p50)
    result = _edgec("compare", str(new), "--baseline", str(base / "report.json"),
                    "--fail-if-slower", "10", ok=False)  # fmt: skip
    assert result.exit_code == code, result.output  # type: ignore[attr-defined]


def test_emulated_reports_never_gate_against_host_ones(tmp_path: Path) -> None:
    base = _report(tmp_path, "base", 1.0)
    new = _report(tmp_path, "new", 50.0, "emulated")
    result = _edgec("compare", str(new), "--baseline", str(base), "--fail-if-slower", "10")
    assert "n/a (emulated vs host)" in result.output  # type: ignore[attr-defined]


@needs("arm-none-eabi-gcc", "qemu-system-arm")
def test_several_targets_build_in_one_command_and_end_with_the_table(tmp_path: Path) -> None:
    args = ["-t", "x86,cortex-m4", "--quantize", "int8", "--data", "digits"]
    result = _edgec("build", DIGITS, *args, "--calib-samples", "32", "--repeat", "5",
                    "-o", str(tmp_path))  # fmt: skip
    text = result.output  # type: ignore[attr-defined]
    assert "digits-x86" in text and "digits-cortex-m4" in text and "insn" in text
    assert (tmp_path / "digits-x86" / "model.so").is_file()
    assert (tmp_path / "digits-cortex-m4" / "firmware.elf").is_file()
