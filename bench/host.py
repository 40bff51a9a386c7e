"""The machine a benchmark ran on, as its tables print it: timings depend on the CPU, its cores
and the load."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu() -> str:
    """The CPU's model name and the number of cores, e.g. "Intel(R) Xeon(R) Processor, 2 cores"."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    return f"{names[0] if names else platform.machine()}, {os.cpu_count()} cores"


def line() -> str:
    """The table's machine line, with the load average when the benchmark started."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"machine: {cpu()}; load average at start {load}\n"
