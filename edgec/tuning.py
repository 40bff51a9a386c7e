"""What tuning is asked to do and what it did: plain data, read by the CLI and the report.

The tuning itself (MetaSchedule) is in edgec/relax/tune.py, which imports these; they live
outside edgec/relax/ so that code which only reads or writes them never imports tvm's side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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
