"""Static executables (android-arm64): the size of runner + TVM runtime, with and without a
model, and the time of the first (cold cache) and second (warm) build.

    .venv/bin/python bench/static.py [--model examples/cnn.py:make_model] [--target android-arm64]

Runs in a fresh edgec cache (a temporary EDGEC_CACHE_DIR), so the first build compiles the
static runtime archives from the installed wheels' sources; the second finds them cached. Wall
times depend on the machine's cores and load (printed first); the compilers' CPU seconds do
not. Sizes are stripped bytes. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import host

ROOT = Path(__file__).resolve().parents[1]
MODEL = f"{ROOT / 'examples' / 'cnn.py'}:make_model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--target", default="android-arm64")
    args = parser.parse_args()
    print(host.line())
    with tempfile.TemporaryDirectory(prefix="edgec-bench-static-") as tmp:
        os.environ["EDGEC_CACHE_DIR"] = str(Path(tmp) / "cache")
        run(args.model, args.target, Path(tmp))


def run(model: str, target: str, tmp: Path) -> None:
    from edgec import static_runtime
    from edgec.pipeline import BuildOptions, build
    from edgec.progress import StageLog
    from edgec.targets import get_target

    profile = get_target(target)
    archive_times: list[tuple[float, float]] = []  # wall, CPU of the compilers
    archives = static_runtime.archives

    def timed_archives(p: object) -> Path:
        start, cpu = time.perf_counter(), _children_cpu()
        out = archives(p)  # type: ignore[arg-type]
        archive_times.append((time.perf_counter() - start, _children_cpu() - cpu))
        return out

    static_runtime.archives = timed_archives  # type: ignore[assignment]
    builds = []
    for i in (1, 2):
        start = time.perf_counter()
        options = BuildOptions(measure=False, force=True)
        build(model, target, tmp / f"bundle{i}", options, StageLog(stream=sys.stderr))
        builds.append(time.perf_counter() - start)
    static_runtime.archives = archives  # type: ignore[assignment]

    alone = static_runtime.link(profile, [], tmp / "runner-alone")
    report = json.loads((tmp / "bundle2" / "report.json").read_text())
    binary = report["bundle"]["binary"]
    name = model.rsplit("/", 1)[-1]
    print(f"### {target}: sizes (stripped)\n")
    print("| executable | bytes | MB |")
    print("|---|---:|---:|")
    rows = [
        ("runner + TVM runtime + libc, no model", alone.total_bytes),
        (f"with {name}: total", binary["total_bytes"]),
        ("  runner + runtime + libc", binary["runtime_bytes"]),
        ("  kernels", binary["kernels_bytes"]),
        ("  weights + VM bytecode", binary["weights_bytes"]),
    ]
    for what, size in rows:
        print(f"| {what} | {size:,} | {size / 1e6:.2f} |")
    print(f"\n### {target}: build times ({os.cpu_count()} cores)\n")
    print("| step | first (cold cache) | second (warm) |")
    print("|---|---:|---:|")
    (first, cpu), (second, _) = archive_times[0], archive_times[-1]
    print(f"| static runtime archives (libtvm_runtime.a + libtvm_ffi.a) | {first:.1f} s "
          f"({cpu:.0f} s of compiler CPU) | {second:.2f} s |")  # fmt: skip
    print(f"| build of {name} (no measuring) | {builds[0]:.1f} s | {builds[1]:.1f} s |")


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the compilers): independent of the load."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
