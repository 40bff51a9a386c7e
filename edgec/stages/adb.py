"""flash over adb: an Android device (a phone) takes a bundle like an ssh board does.

The same atomic protocol as ssh (flash.install): `adb push` into a hidden directory under
/data/local/tmp/edgec, sha256 sums checked on the device (toybox has sha256sum), rename, switch
the link, run, `adb pull` the outputs. `adb shell` hands the device's shell one command string,
so every path in it is one edgec builds from its own constant, the bundle's directory name and
the manifest's file names, each checked to be a plain word first, then quoted word by word.
No device was ever attached here: this transport is tested by its dry-run command lines only.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from edgec import runtime
from edgec.artifacts import Bundle
from edgec.boards import Board
from edgec.errors import CheckFailed, EdgecError, first_line
from edgec.stages.bundle import MANIFEST, REPORTS
from edgec.stages.flash import RUN_TIMEOUT_S, Flashed, Runner, install, needs_runner

HOME = "/data/local/tmp/edgec"  # the one directory adb's shell user may write and execute in
ADB_TIMEOUT_S = 60
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Adb:
    """adb to one device, by serial; with `dry_run`, commands are only recorded (in `sent`)
    and answer nothing."""

    def __init__(self, serial: str, board: str, dry_run: bool = False) -> None:
        self.serial, self.board = serial, board
        self.dry_run = dry_run
        self.sent: list[tuple[str, ...]] = []

    def connected(self) -> None:
        """The device is attached and online (not offline, unauthorized or in recovery)."""
        state = self._call(["get-state"], ADB_TIMEOUT_S).strip()
        if state != "device" and not self.dry_run:
            raise EdgecError(
                f"{self.board} (adb serial {self.serial}) is {state or 'not ready'}; unlock it "
                "and accept its USB debugging prompt, then check `adb devices`"
            )

    def run(self, command: str, timeout: int = ADB_TIMEOUT_S) -> str:
        return self._call(["shell", command], timeout)

    def copy_to(self, files: list[Path], directory: str) -> None:
        # absolute local paths: a relative one could start with '-' and read as an option
        self._call(["push", *(str(f.resolve()) for f in files), f"{directory}/"], RUN_TIMEOUT_S)

    def copy_from(self, remote: str, local: Path) -> None:
        self._call(["pull", remote, str(local.resolve())], RUN_TIMEOUT_S)

    def _call(self, words: list[str], timeout: int) -> str:
        cmd = ["adb", "-s", self.serial, *words]
        if self.dry_run:
            self.sent.append(tuple(cmd))
            return ""
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise EdgecError(
                "adb is not installed (apt-get install adb, or Android's platform-tools); "
                "--dry-run prints the commands without it"
            ) from None
        except subprocess.TimeoutExpired:
            raise EdgecError(
                f"{self.board} (adb serial {self.serial}) did not answer in {timeout} s"
            ) from None
        # adb's own error is its last line (a first start of its server prints lines before)
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no message"]
        message = first_line(Exception(lines[-1]))
        if done.returncode and words[0] == "get-state":
            raise EdgecError(f"cannot reach {self.board} at adb serial {self.serial}: {message}")
        if done.returncode:  # adb ≥ 1.0.36 returns the device command's exit status
            raise CheckFailed(
                f"on {self.board}: `adb {' '.join(words)[:60]}` failed (exit {done.returncode}): "
                f"{message}"
            )
        return done.stdout


def device_words(bundle: Bundle) -> None:
    """The bundle's directory name and every file name that goes to the device are plain
    words: they become paths in `adb shell` commands and in the device's sha256sum output."""
    names = [bundle.path.name, *bundle.typed.files, MANIFEST, *REPORTS]
    for name in names:
        if not _WORD.fullmatch(name):
            raise EdgecError(
                f"{name!r} in {bundle.path} is not a name edgec sends over adb (letters, "
                "digits and '._-', not starting with '.' or '-'); rename the bundle directory "
                "or rebuild the bundle"
            )


def flash_adb(
    bundle: Bundle, board: Board, run: bool, repeat: int, clean: bool, dry_run: bool = False
) -> Flashed:
    """Push, verify, switch; then (with `run`) run the bundle's runner on the device and pull
    its outputs. A dry run contacts nothing and returns the commands it would have run."""
    assert board.adb is not None
    device_words(bundle)
    runner = None
    if run:
        needs_runner(bundle)
        if bundle.typed.runner != runtime.RUNNER:  # the device runs edgec's runner, by its name
            raise EdgecError(
                f"{bundle.path}'s runner is {bundle.typed.runner!r}, not {runtime.RUNNER}; "
                "rebuild the bundle"
            )
        runner = Runner((f"./{runtime.RUNNER}",), "device")
    device = Adb(board.adb.serial, board.name, dry_run)
    device.connected()
    return install(bundle, board, device, HOME, runner, repeat, clean)
