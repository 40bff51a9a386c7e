"""One line per stage with its time; while a long stage runs, a live elapsed time on a terminal,
and a progress line at least every 30 s elsewhere (CI logs, `| tee`), so a long stage is never
silent for minutes."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

HEARTBEAT_S = 30.0  # without a terminal: the longest a running stage stays silent


@dataclass
class StageLog:
    """Times stages and prints `  name   1.23 s  detail` as each one ends."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    times: list[tuple[str, float]] = field(default_factory=list)
    detail: str = ""
    heartbeat_s: float = HEARTBEAT_S
    _step: tuple[int, int] | None = field(default=None, init=False, repr=False)
    _last_line: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageLog]:
        self.detail = ""
        self._step = None
        start = time.perf_counter()
        self._last_line = start
        stop = threading.Event()
        tick = self._tick if self.stream.isatty() else self._heartbeat
        ticker = threading.Thread(target=tick, args=(name, start, stop), daemon=True)
        ticker.start()
        try:
            yield self
        finally:
            stop.set()
            ticker.join()
        seconds = time.perf_counter() - start
        self.times.append((name, seconds))
        self._write(f"  {name:<10}{seconds:8.2f} s  {self.detail}\n")

    def say(self, line: str) -> None:
        """A line from inside a long stage (e.g. each tuning round), printed as it happens."""
        prefix = "\r\033[K" if self.stream.isatty() else ""  # over the ticker's line
        self._write(f"{prefix}    {line}\n")

    def note(self, detail: str) -> None:
        """What the stage produced, printed on its line."""
        self.detail = detail

    def step(self, done: int, total: int) -> None:
        """How far the running stage is (e.g. epoch 3 of 10), shown on its progress lines."""
        self._step = (done, total)

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()
            self._last_line = time.perf_counter()

    def _heartbeat(self, name: str, start: float, stop: threading.Event) -> None:
        # Without a terminal no line can be redrawn: a new one whenever the log has been quiet
        # for heartbeat_s, saying which stage runs, for how long, and how far it is.
        while not stop.wait(min(1.0, self.heartbeat_s / 4)):
            now = time.perf_counter()
            if now - self._last_line < self.heartbeat_s:
                continue
            step = f", step {self._step[0]}/{self._step[1]}" if self._step else ""
            self._write(f"    {name}: still running, {now - start:.0f} s elapsed{step}\n")

    def _tick(self, name: str, start: float, stop: threading.Event) -> None:
        # Only stages that last show the ticker; quick ones print just their final line.
        if stop.wait(2.0):
            return
        spinner = "|/-\\"
        i = 0
        while not stop.wait(0.25):
            elapsed = time.perf_counter() - start
            step = f"  {self._step[0]}/{self._step[1]}" if self._step else ""
            with self._lock:
                self.stream.write(f"\r  {name:<10}{elapsed:8.1f} s  {spinner[i % 4]}{step}")
                self.stream.flush()
            i += 1
        with self._lock:
            self.stream.write("\r\033[K")
