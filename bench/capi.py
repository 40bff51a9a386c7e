"""What the C API costs a build: the runner and libedgec_model.so/.a compiled for a target once
(into an empty cache), then found in the cache as every later build finds them, and the bytes
the C API adds to each bundle.

    .venv/bin/python bench/capi.py [--targets x86 rpi4 rpi5]

The TVM runtime libraries come from edgec's own cache (downloaded once per platform), so only
the compilation is timed: wall time depends on the machine's load, the compilers' CPU time
much less. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgec.targets import TargetProfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["x86", "rpi4", "rpi5"])
    args = parser.parse_args()
    from edgec import runtime
    from edgec.targets import get_target

    profiles = [get_target(name) for name in args.targets]
    libs = {p.name: runtime.runtime_libs(p) for p in profiles}  # before the cache moves
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")
    print("| target | compiler | first build (s) | its CPU (s) | cached (s) | C API files |")
    print("|---|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="edgec-bench-capi-") as tmp:
        os.environ["EDGEC_CACHE_DIR"] = tmp
        for profile in profiles:
            _seed_runtime(profile, libs[profile.name], Path(tmp))
            t0, cpu0 = time.perf_counter(), _children_cpu()
            runtime.native(profile)
            first, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
            t0 = time.perf_counter()
            files = runtime.capi_files(profile)
            cached = time.perf_counter() - t0
            sizes = ", ".join(f"{f.name} {f.stat().st_size / 1024:.0f} KiB" for f in files)
            row = [profile.name, profile.cxx, f"{first:.1f}", f"{cpu:.1f}", f"{cached:.2f}", sizes]
            print(f"| {' | '.join(row)} |")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seed_runtime(profile: TargetProfile, libs: Path, cache: Path) -> None:
    """The runtime libraries where runtime_libs looks for them in the empty cache."""
    from edgec import runtime

    if profile.runtime_source == "installed":
        return  # copied from the installed wheels, no download
    target = cache / "runtime" / str(profile.runtime_platform)
    target.mkdir(parents=True, exist_ok=True)
    for name in runtime.RUNTIME_LIBS:
        shutil.copy2(libs / name, target / name)


if __name__ == "__main__":
    main()
