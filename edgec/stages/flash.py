"""flash: put a verified bundle on a board and, on request, run it there.

Linux boards go over the system's OpenSSH (ssh/scp, the user's keys and config): the bundle is
copied into a hidden directory on the board, its sha256 sums are checked there against the
manifest, and only then is it renamed into its versioned directory and the board's
`<bundle>` link switched to it, so a failed copy leaves the previous bundle in place. Android
devices take the same protocol over adb (stages/adb.py), through the same `install`.
Microcontroller boards are flashed with pyOCD or OpenOCD (command lines from the board file),
or run in qemu-system-arm when the board is emulated.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from edgec import reference, runtime
from edgec.artifacts import Bundle, Measurement, Where
from edgec.boards import Board, Ssh
from edgec.errors import CheckFailed, EdgecError, first_line
from edgec.stages.bundle import MANIFEST, REPORTS
from edgec.stages.measure import checked

SSH_TIMEOUT_S = 20
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Flashed:
    """Where the bundle went, and what running it there measured."""

    board: Board
    location: str  # a path on the board, or the flashed ELF
    measurement: Measurement | None
    command: tuple[str, ...] = ()  # the flashing command, for MCU boards
    sent: tuple[tuple[str, ...], ...] = ()  # ssh/adb boards, dry run: the commands, unsent


def check_target(bundle: Bundle, board: Board) -> None:
    """The bundle's target is the board's; firmware is linked for the board's memory map."""
    if bundle.typed.target != board.target:
        raise EdgecError(
            f"{bundle.path} was built for {bundle.typed.target}, but {board.name} takes "
            f"{board.target} bundles; rebuild with --target {board.target}"
        )
    if bundle.typed.firmware is not None and board.memory is not None:
        check_linked_for(bundle, board)


def version(bundle: Bundle) -> str:
    """The bundle's versioned directory name: its own name and a digest of its manifest."""
    digest = hashlib.sha256(json.dumps(bundle.typed.files, sort_keys=True).encode())
    return f"{bundle.path.name}-{digest.hexdigest()[:12]}"


class _Remote:
    """ssh and scp to one board, non-interactively; with `dry_run`, commands are only recorded
    (in `sent`) and answer nothing."""

    def __init__(self, ssh: Ssh, board: str, known_hosts: Path, dry_run: bool = False) -> None:
        self.ssh, self.board = ssh, board
        self.dry_run = dry_run
        self.sent: list[tuple[str, ...]] = []
        self.options = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={SSH_TIMEOUT_S}",
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if ssh.key:
            self.options += ["-i", str(Path(ssh.key).expanduser())]
        self.target = f"{ssh.user}@{ssh.host}"

    def run(self, command: str, timeout: int = SSH_TIMEOUT_S * 3) -> str:
        cmd = ["ssh", "-p", str(self.ssh.port), *self.options, self.target, command]
        return self._call(cmd, timeout)

    def copy_to(self, files: list[Path], directory: str) -> None:
        cmd = ["scp", "-q", "-p", "-P", str(self.ssh.port), *self.options,
               *map(str, files), f"{self.target}:{directory}/"]  # fmt: skip
        self._call(cmd, RUN_TIMEOUT_S)

    def copy_from(self, remote: str, local: Path) -> None:
        cmd = ["scp", "-q", "-P", str(self.ssh.port), *self.options,
               f"{self.target}:{remote}", str(local)]  # fmt: skip
        self._call(cmd, RUN_TIMEOUT_S)

    def _call(self, cmd: list[str], timeout: int) -> str:
        if self.dry_run:
            self.sent.append(tuple(cmd))
            return ""
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise EdgecError(f"{cmd[0]} is not installed; run scripts/setup.sh") from None
        except subprocess.TimeoutExpired:
            raise EdgecError(
                f"{self.board} ({self.target}:{self.ssh.port}) did not answer in {timeout} s"
            ) from None
        if (done.returncode == 255 and cmd[0] == "ssh") or (done.returncode and cmd[0] == "scp"):
            message = first_line(Exception(done.stderr or done.stdout or "no message"))
            raise EdgecError(
                f"cannot reach {self.board} at {self.target}:{self.ssh.port}: {message}"
            )
        if done.returncode:
            raise CheckFailed(
                f"on {self.board}: `{cmd[-1][:60]}` failed (exit {done.returncode}): "
                f"{first_line(Exception(done.stderr or done.stdout or 'no message'))}"
            )
        return done.stdout


def _sh(*words: str) -> str:
    """One remote shell command from words, every word quoted: nothing from a bundle or a
    board file is ever read by the remote shell as syntax."""
    return shlex.join(words)


class Remote(Protocol):
    """A Linux-like device edgec reaches with commands: ssh/scp (_Remote) or adb (stages/adb.py);
    with `dry_run`, commands are only recorded in `sent` and answer nothing."""

    dry_run: bool
    sent: list[tuple[str, ...]]

    def run(self, command: str, timeout: int = ...) -> str: ...
    def copy_to(self, files: list[Path], directory: str) -> None: ...
    def copy_from(self, remote: str, local: Path) -> None: ...


@dataclass(frozen=True)
class Runner:
    """How the bundle's runner is started on the board: the words before its arguments, and
    whether what it measures is the device's time or an emulator's."""

    words: tuple[str, ...]
    where: Where


def needs_runner(bundle: Bundle) -> None:
    """`--run` needs a runner: MCU bundles have none, TVM bundles built without one neither."""
    manifest = bundle.typed
    if manifest.runner is None:
        raise EdgecError(
            f"{bundle.path} has no runner for {manifest.target}: rebuild it, or flash it "
            "without --run and load model.so from your application"
        )


def flash_ssh(
    bundle: Bundle,
    board: Board,
    known_hosts: Path,
    run: bool,
    repeat: int,
    clean: bool,
    dry_run: bool = False,
) -> Flashed:
    """Copy, verify, switch; then (with `run`) run the runner on the board. A dry run
    contacts nothing and returns the commands it would have sent."""
    assert board.ssh is not None
    if run:
        needs_runner(bundle)
    remote = _Remote(board.ssh, board.name, known_hosts, dry_run)
    prefix = board.ssh.exec_prefix  # e.g. qemu-aarch64: what it measures is emulated
    runner = Runner((*prefix, f"./{bundle.typed.runner}"), "emulated" if prefix else "device")
    return install(
        bundle, board, remote, board.ssh.directory, runner if run else None, repeat, clean
    )


def install(
    bundle: Bundle,
    board: Board,
    remote: Remote,
    home: str,
    runner: Runner | None,
    repeat: int,
    clean: bool,
) -> Flashed:
    """The atomic protocol, over any remote: copy into `home`/.incoming-<version>, check the
    sha256 sums on the board, rename it to `home`/<version> and switch the `home`/<bundle>
    link; then (with a `runner`) run it there and fetch its outputs."""
    manifest = bundle.typed
    name = version(bundle)
    incoming = f"{home}/.incoming-{name}"
    remote.run(f"{_sh('rm', '-rf', '--', incoming)} && {_sh('mkdir', '-p', '--', incoming)}")
    # only what the manifest lists (validated plain names), the manifest and the reports
    names = [*manifest.files, MANIFEST, *(r for r in REPORTS if (bundle.path / r).is_file())]
    files = [bundle.path / n for n in sorted(names)]
    try:
        remote.copy_to(files, incoming)
        sums = remote.run(f"cd -- {shlex.quote(incoming)} && sha256sum -- *")
        on_board = {
            parts[1].lstrip("*"): parts[0]
            for parts in (line.split(maxsplit=1) for line in sums.splitlines())
            if len(parts) == 2
        }
        for file, digest in manifest.files.items():
            if on_board.get(file) != digest and not remote.dry_run:
                raise CheckFailed(
                    f"{file} arrived on {board.name} with another sha256; the board keeps its "
                    "previous bundle"
                )
    except BaseException:
        remote.run(_sh("rm", "-rf", "--", incoming))
        raise
    final = f"{home}/{name}"
    link = f"{home}/{bundle.path.name}"
    remote.run(
        f"{_sh('rm', '-rf', '--', final)} && {_sh('mv', '--', incoming, final)} && "
        f"{_sh('ln', '-sfn', '--', name, link)}"
    )
    measurement = _run_remote(bundle, board, remote, final, runner, repeat) if runner else None
    if clean:
        remote.run(_sh("rm", "-rf", "--", final, link))
    return Flashed(board, final, measurement, sent=tuple(remote.sent))


def _run_remote(
    bundle: Bundle, board: Board, remote: Remote, where_on_board: str, runner: Runner, repeat: int
) -> Measurement | None:
    manifest = bundle.typed
    inputs = reference.random_inputs(manifest.inputs)
    library = manifest.library  # None for a static bundle: its runner holds the model
    with tempfile.TemporaryDirectory(prefix="edgec-flash-") as tmp:
        files = []
        for i, array in enumerate(inputs):
            files.append(Path(tmp) / f"input_{i}.npy")
            np.save(files[-1], array)
        remote.copy_to(files, where_on_board)
        env = [f"{k}={v}" for k, v in board.env.items()]  # keys are identifiers (boards.py)
        names = [f"input_{i}.npy" for i in range(len(inputs))]
        command = _sh(
            *(["env", *env] if env else []),
            *runner.words,
            *runtime.runner_arguments(
                library, names, "out", repeat, runtime.WARMUP, manifest.profile.capabilities.device
            ),
        )
        answer = remote.run(
            f"cd -- {shlex.quote(where_on_board)} && mkdir -p out && {command}", RUN_TIMEOUT_S
        )
        result = None if remote.dry_run else runtime.runner_result(answer, len(manifest.outputs))
        # fetched by the names edgec expects, into its own directory: never a remote's path
        fetched = Path(tmp) / "outputs"
        fetched.mkdir()
        for file in runtime.output_files(manifest):
            remote.copy_from(f"{where_on_board}/out/{file}", fetched / file)
        if result is None:  # a dry run: the commands are recorded, nothing came back
            return None
        outputs = [np.load(fetched / f, allow_pickle=False) for f in runtime.output_files(manifest)]
    return checked(bundle, inputs, outputs, result, repeat, runner.where, None)


def tcl_word(text: str) -> str:
    """`text` as one braced Tcl word (OpenOCD's -c commands are Tcl): inside braces nothing is
    substituted; a brace or backslash could end or escape the word, so it is refused."""
    if any(c in text for c in "{}\\") or any(ord(c) < 32 for c in text):
        raise EdgecError(
            f"the firmware path {text!r} holds a brace, backslash or control character, which "
            "OpenOCD's Tcl cannot take; move or rename the bundle directory"
        )
    return "{" + text + "}"


def flash_command(bundle: Bundle, board: Board) -> tuple[str, ...]:
    """The pyOCD/OpenOCD command line that writes the bundle's firmware to the board: argv
    words, never a shell line; in OpenOCD's Tcl commands the path is one braced word."""
    firmware = bundle.typed.firmware
    if firmware is None:
        raise EdgecError(f"{bundle.path} holds no firmware; build it for {board.target}")
    elf = str((bundle.path / firmware).resolve())
    if board.transport == "openocd":
        elf_word = tcl_word(elf)
        return tuple(
            part.replace("{elf}", elf_word) if part != "{elf}" else elf
            for part in board.flash_command
        )
    return tuple(part.replace("{elf}", elf) for part in board.flash_command)


def check_linked_for(bundle: Bundle, board: Board) -> None:
    """Firmware is linked for one board's memory map: refuse it on a board whose flash or RAM
    lies elsewhere (an MPS2 image starts at 0x0, an STM32's flash at 0x08000000)."""
    manifest = bundle.typed
    if manifest.board == board.name:
        return
    mine = board.memory
    linked = manifest.memory
    same = (
        mine is not None
        and linked is not None
        and (linked["flash_origin"], linked["ram_origin"]) == (mine.flash_origin, mine.ram_origin)
        and linked["flash_bytes"] <= mine.flash_bytes
    )
    if not same:
        flash_at = hex(linked["flash_origin"]) if linked else "unknown"
        there = hex(mine.flash_origin) if mine else "unknown"
        raise EdgecError(
            f"{bundle.path} holds firmware linked for {manifest.board} (flash at {flash_at}), "
            f"not for {board.name} (flash at {there}); rebuild with --target {board.target} "
            f"--board {board.name}"
        )


def flash_probe(bundle: Bundle, board: Board, dry_run: bool) -> Flashed:
    """Flash an MCU board through its debug probe (or only say how, with `dry_run`)."""
    if bundle.typed.firmware is None:
        raise EdgecError(f"{bundle.path} holds no firmware; build it for {board.target}")
    check_linked_for(bundle, board)
    command = flash_command(bundle, board)
    if not dry_run:
        if shutil.which(command[0]) is None:
            raise EdgecError(
                f"{command[0]} is not installed (pip install {command[0]} or apt-get install "
                f"{command[0]}); the command would be: {shlex.join(command)}"
            )
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise EdgecError(f"{command[0]} did not finish in {RUN_TIMEOUT_S} s") from None
        if done.returncode:
            raise EdgecError(
                f"{shlex.join(command)} failed: "
                f"{first_line(Exception(done.stderr or done.stdout or 'no message'))}"
            )
    return Flashed(board, command[-1], None, command)


def probe_note(flashed: Flashed, dry_run: bool, run: bool) -> str:
    """What happened, truthfully: a dry run flashed nothing, a probe measures nothing."""
    command = shlex.join(flashed.command)
    if dry_run:
        return f"dry run: {command} (nothing flashed)"
    if run:
        return (
            f"flashed with {command}; the firmware runs on {flashed.board.name}, but edgec "
            "reads no measurement back through a probe: the report is unchanged"
        )
    return f"flashed with {command}"
