"""Boards: validated TOML data in boards/ (or a user's own directory) loaded into frozen
dataclasses. A board names its target profile, how edgec reaches it, and its limits."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgec.errors import EdgecError, known
from edgec.package_files import data_dir

Transport = Literal["local", "ssh", "adb", "emulator", "qemu-system", "pyocd", "openocd"]
TRANSPORTS = ("local", "ssh", "adb", "emulator", "qemu-system", "pyocd", "openocd")
USER_DIR_ENV = "EDGEC_BOARDS_DIR"  # a user's own board files, beside the shipped ones


@dataclass(frozen=True)
class Memory:
    """Where a microcontroller's flash and RAM start and how big they are (bytes)."""

    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int


@dataclass(frozen=True)
class Ssh:
    host: str
    user: str
    port: int = 22
    key: str | None = None
    directory: str = "edgec"  # bundles go to ~/<directory>/<bundle>-<sha>
    exec_prefix: tuple[str, ...] = ()  # e.g. qemu-aarch64 for an emulated board behind ssh
    known_hosts: str | None = None  # default: edgec's own file in its cache directory


@dataclass(frozen=True)
class Adb:
    """An Android device reached with adb: its serial number (`adb devices` lists it; a
    network device's is host:port). Bundles go to /data/local/tmp/edgec (edgec/stages/adb.py)."""

    serial: str


@dataclass(frozen=True)
class Board:
    name: str
    target: str
    transport: Transport
    description: str
    ram_bytes: int | None
    flash_bytes: int | None
    memory: Memory | None = None  # microcontrollers: the linker script's regions
    qemu_machine: str | None = None  # qemu-system: the -M machine
    ssh: Ssh | None = None
    adb: Adb | None = None
    flash_command: tuple[str, ...] = ()  # pyocd/openocd: {elf} is the firmware
    env: dict[str, str] = field(default_factory=dict)
    path: Path | None = None


def _int(table: dict[str, Any], key: str, path: Path) -> int:
    value = table.get(key)
    if not isinstance(value, int) or value < 0:
        raise EdgecError(f"board {path}: {key} must be a non-negative integer")
    return value


def _word(value: object, key: str, pattern: str, path: Path) -> str:
    """An ssh host or user: ssh reads a word starting with '-' as an option."""
    text = str(value)
    if text.startswith("-") or not re.fullmatch(pattern, text):
        raise EdgecError(f"board {path}: [ssh] {key} {text!r} is not a valid {key} name")
    return text


def _serial(value: object, path: Path) -> str:
    """An adb serial as `adb devices` lists it: USB serials are letters and digits, others
    emulator-5554 or 10.0.0.7:5555. adb reads a word starting with '-' as an option."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]*", value):
        raise EdgecError(
            f"board {path}: [adb] serial {value!r} is not an adb serial (letters, digits and "
            "'._:-', as `adb devices` lists it)"
        )
    return value


def _env(table: object, path: Path) -> dict[str, str]:
    """[env]: variables set for the runner on the board; a key must be an identifier (it is
    passed to `env` as KEY=value, and a shell would read anything else as syntax)."""
    if not isinstance(table, dict):
        raise EdgecError(f'board {path}: [env] must be a table of NAME = "value"')
    for key, value in table.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise EdgecError(f"board {path}: [env] key {key!r} is not a variable name")
        if not isinstance(value, str) or "\0" in value:
            raise EdgecError(f"board {path}: [env] {key} must be a string")
    return dict(table)


def parse_board(path: Path) -> Board:
    """Load and validate one board file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise EdgecError(f"board {path} is not valid TOML: {e}") from None
    try:
        transport = data["transport"]
        if transport not in TRANSPORTS:
            raise known(f"transport in board {path}:", transport, TRANSPORTS)
        limits = data.get("limits", {})
        memory = None
        if "memory" in data:
            m = data["memory"]
            memory = Memory(
                _int(m, "flash_origin", path),
                _int(m, "flash_bytes", path),
                _int(m, "ram_origin", path),
                _int(m, "ram_bytes", path),
            )
        ssh = None
        if transport == "ssh":
            s = data["ssh"]
            ssh = Ssh(
                host=_word(s["host"], "host", r"[A-Za-z0-9_.:%\[\]-]+", path),
                user=_word(s["user"], "user", r"[A-Za-z0-9_.][A-Za-z0-9_.-]*", path),
                port=int(s.get("port", 22)),
                key=s.get("key"),
                directory=str(s.get("directory", "edgec")),
                exec_prefix=tuple(s.get("exec_prefix", ())),
                known_hosts=s.get("known_hosts"),
            )
        adb = None
        if transport == "adb":
            table = data["adb"]
            if not isinstance(table, dict):
                raise EdgecError(f'board {path}: [adb] must be a table holding serial = "..."')
            adb = Adb(_serial(table["serial"], path))
        if transport == "qemu-system" and "qemu" not in data:
            raise EdgecError(f"board {path}: transport qemu-system needs [qemu] machine")
        if transport in ("pyocd", "openocd") and "flash" not in data:
            raise EdgecError(f"board {path}: transport {transport} needs [flash] command")
        return Board(
            name=str(data["name"]),
            target=str(data["target"]),
            transport=transport,
            description=str(data.get("description", "")),
            ram_bytes=limits.get("ram_bytes", memory.ram_bytes if memory else None),
            flash_bytes=limits.get("flash_bytes", memory.flash_bytes if memory else None),
            memory=memory,
            qemu_machine=data.get("qemu", {}).get("machine"),
            ssh=ssh,
            adb=adb,
            flash_command=tuple(data.get("flash", {}).get("command", ())),
            env=_env(data.get("env", {}), path),
            path=path,
        )
    except KeyError as e:
        raise EdgecError(f"board {path} lacks the key {e.args[0]!r}") from None


def board_dirs(extra: Path | None = None) -> list[Path]:
    """Where boards are read from: the package's, then $EDGEC_BOARDS_DIR, then `extra`;
    a later directory's board replaces an earlier one of the same name."""
    dirs = [data_dir("boards")]
    if os.environ.get(USER_DIR_ENV):
        dirs.append(Path(os.environ[USER_DIR_ENV]))
    if extra is not None:
        if not extra.is_dir():
            raise EdgecError(f"--boards-dir {extra} is not a directory")
        dirs.append(extra)
    return dirs


def all_boards(extra: Path | None = None) -> dict[str, Board]:
    boards: dict[str, Board] = {}
    for directory in board_dirs(extra):
        for path in sorted(directory.glob("*.toml")):
            board = parse_board(path)
            boards[board.name] = board
    return boards


def get_board(name: str, extra: Path | None = None) -> Board:
    """The board called `name`; an unknown name's error lists the known ones."""
    boards = all_boards(extra)
    if name not in boards:
        raise known("board", name, list(boards))
    return boards[name]
