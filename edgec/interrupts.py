"""SIGTERM and SIGHUP handled like Ctrl-C: an exception that unwinds the stack, so every context
manager (staging areas, temporary directories, subprocess.run's child) cleans up; and a way to
hold such signals over a few renames that must happen together."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A signal asked edgec to stop; a KeyboardInterrupt so that code written for Ctrl-C (and
    subprocess.run, which kills its child on any exception) treats it the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)  # the only argument: pickles across a process pool
        self.signum = signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for Ctrl-C, 143 for SIGTERM


_held = 0
_pending: int | None = None


def _handler(signum: int, _frame: FrameType | None) -> None:
    global _pending
    if _held:
        _pending = signum  # raised when the held section ends
        return
    raise Interrupted(signum)


@contextmanager
def handled() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` while the block runs (main thread)."""
    previous: dict[int, Any] = {}
    try:
        for sig in SIGNALS:
            previous[sig] = signal.signal(sig, _handler)
    except ValueError:  # not the main thread: leave the signals as they are
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def held() -> Iterator[None]:
    """Defer a stop signal until the block is done: for steps that must happen together."""
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)


def kill_children(keep: set[int] | frozenset[int] = frozenset()) -> None:
    """Kill the processes this one started (a runner, an emulator, a worker) that still run,
    but those in `keep` (started before the command): none may outlive an interrupted edgec.
    subprocess.run kills its own child on the way out; this catches any other."""
    for pid in children():
        if pid in keep:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError, PermissionError):
            pass


def children() -> list[int]:
    """This process's children (Linux /proc; none elsewhere)."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return pids


def alive(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` runs (and, given its start time, is still that same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return start is None or start_time(pid) in (start, None)


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), which tells a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in () may hold spaces
