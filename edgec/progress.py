"""One line per stage with its time; a live elapsed time while a long stage runs on a terminal."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO


@dataclass
class StageLog:
    """Times stages and prints `  name   1.23 s  detail` as each one ends."""

    stream: TextIO = field(default_factory=lambda: sys.stderr)
    times: list[tuple[str, float]] = field(default_factory=list)
    detail: str = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[StageLog]:
        self.detail = ""
        start = time.perf_counter()
        stop = threading.Event()
        ticker = None
        if self.stream.isatty():
            ticker = threading.Thread(target=self._tick, args=(name, start, stop), daemon=True)
            ticker.start()
        try:
            yield self
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
        seconds = time.perf_counter() - start
        self.times.append((name, seconds))
        self.stream.write(f"  {name:<10}{seconds:8.2f} s  {self.detail}\n")
        self.stream.flush()

    def say(self, line: str) -> None:
        """A line from inside a long stage (e.g. each tuning round), printed as it happens."""
        prefix = "\r\033[K" if self.stream.isatty() else ""  # over the ticker's line
        self.stream.write(f"{prefix}    {line}\n")
        self.stream.flush()

    def note(self, detail: str) -> None:
        """What the stage produced, printed on its line."""
        self.detail = detail

    def _tick(self, name: str, start: float, stop: threading.Event) -> None:
        # Only stages that last show the ticker; quick ones print just their final line.
        if stop.wait(2.0):
            return
        spinner = "|/-\\"
        i = 0
        while not stop.wait(0.25):
            elapsed = time.perf_counter() - start
            self.stream.write(f"\r  {name:<10}{elapsed:8.1f} s  {spinner[i % 4]}")
            self.stream.flush()
            i += 1
        self.stream.write("\r\033[K")
