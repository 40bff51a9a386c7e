"""flash: put a verified bundle on a board and, on request, run it there.

Linux boards go over the system's OpenSSH (ssh/scp, the user's keys and config): the bundle is
copied into a hidden directory on the board, its sha256 sums are checked there against the
manifest, and only then is it renamed into its versioned directory and the board's
`<bundle>` link switched to it, so a failed copy leaves the previous bundle in place.
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

import numpy as np

from edgec import reference
from edgec.artifacts import Bundle, Measurement, TensorSpec, Where
from edgec.boards import Board, Ssh
from edgec.errors import CheckFailed, EdgecError, first_line
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


def check_target(bundle: Bundle, board: Board) -> None:
    if bundle.manifest["target"] != board.target:
        raise EdgecError(
            f"{bundle.path} was built for {bundle.manifest['target']}, but {board.name} takes "
            f"{board.target} bundles; rebuild with --target {board.target}"
        )


def version(bundle: Bundle) -> str:
    """The bundle's versioned directory name: its own name and a digest of its manifest."""
    digest = hashlib.sha256(json.dumps(bundle.manifest["files"], sort_keys=True).encode())
    return f"{bundle.path.name}-{digest.hexdigest()[:12]}"


class _Remote:
    """ssh and scp to one board, non-interactively."""

    def __init__(self, ssh: Ssh, board: str, known_hosts: Path) -> None:
        self.ssh, self.board = ssh, board
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


def flash_ssh(
    bundle: Bundle, board: Board, known_hosts: Path, run: bool, repeat: int, clean: bool
) -> Flashed:
    """Copy, verify, switch; then (with `run`) run the runner on the board."""
    assert board.ssh is not None
    if run and not bundle.manifest.get("runner"):
        raise EdgecError(
            f"{bundle.path} has no runner for {bundle.manifest['target']} yet: flash it without "
            "--run and load model.so from your application"
        )
    remote = _Remote(board.ssh, board.name, known_hosts)
    home = board.ssh.directory
    name = version(bundle)
    incoming = f"{home}/.incoming-{name}"
    remote.run(f"rm -rf {shlex.quote(incoming)} && mkdir -p {shlex.quote(incoming)}")
    files = sorted(p for p in bundle.path.iterdir() if p.is_file())
    try:
        remote.copy_to(files, incoming)
        sums = remote.run(f"cd {shlex.quote(incoming)} && sha256sum -- *")
        on_board = {line.split()[1].lstrip("*"): line.split()[0] for line in sums.splitlines()}
        for file, digest in bundle.manifest["files"].items():
            if on_board.get(file) != digest:
                raise CheckFailed(
                    f"{file} arrived on {board.name} with another sha256; the board keeps its "
                    "previous bundle"
                )
    except BaseException:
        remote.run(f"rm -rf {shlex.quote(incoming)}")
        raise
    final = f"{home}/{name}"
    link = f"{home}/{bundle.path.name}"
    remote.run(
        f"rm -rf {shlex.quote(final)} && mv {shlex.quote(incoming)} {shlex.quote(final)} && "
        f"ln -sfn {shlex.quote(name)} {shlex.quote(link)}"
    )
    measurement = _run_ssh(bundle, board, remote, final, repeat) if run else None
    if clean:
        remote.run(f"rm -rf {shlex.quote(final)} {shlex.quote(link)}")
    return Flashed(board, final, measurement)


def _run_ssh(bundle: Bundle, board: Board, remote: _Remote, where_on_board: str, repeat: int):
    assert board.ssh is not None
    specs = [TensorSpec.from_json(s) for s in bundle.manifest["inputs"]]
    inputs = reference.random_inputs(tuple(specs))
    with tempfile.TemporaryDirectory(prefix="edgec-flash-") as tmp:
        files = []
        for i, array in enumerate(inputs):
            files.append(Path(tmp) / f"input_{i}.npy")
            np.save(files[-1], array)
        remote.copy_to(files, where_on_board)
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in board.env.items())
        prefix = " ".join(shlex.quote(p) for p in board.ssh.exec_prefix)
        args = " ".join(f"--input input_{i}.npy" for i in range(len(inputs)))
        command = (
            f"cd {shlex.quote(where_on_board)} && mkdir -p out && "
            f"{'env ' + env if env else ''} {prefix} ./{bundle.manifest['runner']} "
            f"{bundle.manifest['library']} {args} --output-dir out --repeat {repeat} --warmup 3"
        )
        stdout = remote.run(command, RUN_TIMEOUT_S)
        result = json.loads(stdout.strip().splitlines()[-1])
        outputs = []
        for out in result["outputs"]:
            local = Path(tmp) / out["file"]
            remote.copy_from(f"{where_on_board}/out/{out['file']}", local)
            outputs.append(np.load(local))
    where: Where = "emulated" if board.ssh.exec_prefix else "device"
    return checked(bundle, inputs, outputs, result, repeat, where, None)


def flash_command(bundle: Bundle, board: Board) -> tuple[str, ...]:
    """The pyOCD/OpenOCD command line that writes the bundle's firmware to the board."""
    elf = str((bundle.path / bundle.manifest["firmware"]).resolve())
    return tuple(part.replace("{elf}", elf) for part in board.flash_command)


def flash_probe(bundle: Bundle, board: Board, dry_run: bool) -> Flashed:
    """Flash an MCU board through its debug probe (or only say how, with `dry_run`)."""
    if "firmware" not in bundle.manifest:
        raise EdgecError(f"{bundle.path} holds no firmware; build it for {board.target}")
    command = flash_command(bundle, board)
    if not dry_run:
        if shutil.which(command[0]) is None:
            raise EdgecError(
                f"{command[0]} is not installed (pip install {command[0]} or apt-get install "
                f"{command[0]}); the command would be: {shlex.join(command)}"
            )
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise EdgecError(
                f"{shlex.join(command)} failed: "
                f"{first_line(Exception(done.stderr or done.stdout or 'no message'))}"
            )
    return Flashed(board, command[-1], None, command)
