"""What tuning is asked to do and what it did: plain data, read by the CLI and the report.

The tuning itself (MetaSchedule) is in edgec/relax/tune.py, which imports these; they live
outside edgec/relax/ so that code which only reads or writes them never imports tvm's side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from edgec.errors import EdgecError


@dataclass(frozen=True)
class TuningSummary:
    """What one tuning call did: tasks = tuned + from_database + default_rules."""

    tasks: int  # kernels (fused TIR functions, deduplicated by anchor block) in the module
    tuned: int  # got their first record in this call
    from_database: int  # already had a record: not measured again
    default_rules: int  # still without a record (budget spent or zero): built untuned
    measurements: int  # candidates that ran on the hardware in this call
    seconds: float
    database: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def note(self) -> str:
        """The tune stage's line: what was measured, what came from the database."""
        return (
            f"{self.tasks} kernels: {self.tuned} tuned, {self.from_database} from the "
            f"database, {self.default_rules} untuned; {self.measurements} measurements"
        )


@dataclass(frozen=True)
class RemoteMeasure:
    """An RPC tracker and the key its device servers registered under."""

    tracker_host: str
    tracker_port: int
    key: str

    @staticmethod
    def parse(tracker: str, key: str) -> RemoteMeasure:
        """From `--tracker HOST:PORT --key KEY`; a malformed value's error says the form."""
        host, _, port = tracker.rpartition(":")
        host = host.strip("[]")  # [::1]:9190
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise EdgecError(f"--tracker {tracker!r}: expected HOST:PORT, e.g. 192.168.1.5:9190")
        if not key:
            raise EdgecError("--tracker needs --key: the key the device's rpc_server registered")
        return RemoteMeasure(host, int(port), key)

    def __str__(self) -> str:
        return f"{self.tracker_host}:{self.tracker_port} key {self.key!r}"


@dataclass(frozen=True)
class TuneOptions:
    """How much to tune and where to measure: `edgec tune` and `edgec build --tune`."""

    trials: int = 0  # 0: use the database's records, measure nothing
    trials_per_task: int | None = None  # None: trials split evenly over the untuned kernels
    database: Path | None = None  # --tuning-db; None: the profile's directory in edgec's cache
    remote: RemoteMeasure | None = None  # --tracker/--key; None: measure on this host


Kept = Literal["tuned", "untuned"]


def faster_build(tuned_ms: float, untuned_ms: float) -> Kept:
    """The build to keep: the tuned one only where it measured faster; a tie, or a figure that
    is not a number, keeps the untuned one (tuning must never make a build slower)."""
    return "tuned" if tuned_ms < untuned_ms else "untuned"


@dataclass(frozen=True)
class TunedAgainstUntuned:
    """A tuned build timed against the untuned build of the same model, and which was kept.

    Both figures are None where the target cannot be timed here (`how` says why); the tuned
    build is kept then, its kernels each measured faster than edgec's own rules."""

    kept: Kept
    tuned_ms: float | None
    untuned_ms: float | None
    how: str  # how both were timed, or why they were not
    seconds: float  # what the check cost: the untuned build and the timing

    def __post_init__(self) -> None:
        if self.kept not in get_args(Kept):
            raise EdgecError(f"kept build {self.kept!r}: expected tuned or untuned")
        figures = (self.tuned_ms, self.untuned_ms)
        if any(f is not None and not (isinstance(f, (int, float)) and f >= 0) for f in figures):
            raise EdgecError(f"tuned/untuned times {figures}: expected milliseconds or None")

    @staticmethod
    def compared(
        tuned_ms: float, untuned_ms: float, how: str, seconds: float
    ) -> TunedAgainstUntuned:
        """Both builds timed: the faster one is kept (`faster_build`)."""
        kept = faster_build(tuned_ms, untuned_ms)
        finite = [round(f, 4) if math.isfinite(f) else None for f in (tuned_ms, untuned_ms)]
        return TunedAgainstUntuned(kept, finite[0], finite[1], how, round(seconds, 2))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: object) -> TunedAgainstUntuned:
        """From a manifest's or report's `tuning` table; malformed values raise EdgecError."""
        if not isinstance(data, dict):
            raise EdgecError("the tuned/untuned check must be a table")
        try:
            return TunedAgainstUntuned(
                kept=data["kept"],
                tuned_ms=data.get("tuned_ms"),
                untuned_ms=data.get("untuned_ms"),
                how=str(data.get("how", "")),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise EdgecError(f"the tuned/untuned check is malformed ({e})") from None

    def note(self) -> str:
        """The check's line: both figures and which build was kept."""
        if self.tuned_ms is None or self.untuned_ms is None:
            return f"kept the tuned build, not timed against the untuned one: {self.how}"
        return (
            f"tuned {self.tuned_ms:.3f} ms, untuned {self.untuned_ms:.3f} ms ({self.how}): "
            f"kept the {self.kept} build"
        )
