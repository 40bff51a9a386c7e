"""edgec-run and ONNX Runtime on one x86 bundle under the process settings that move their
latency: malloc on huge pages or not, TVM's threads pinned to cores or not, with no extra load
and beside busy processes (the machine line gives the load average at start). Every cell is a
process of its own: glibc reads its tunables only at start-up, TVM reads TVM_BIND_THREADS when
its pool starts.

    .venv/bin/python bench/runner_env.py BUNDLE [--repeat 100] [--busy 1]

edgec-run is timed with each setting spelled out (its defaults: huge pages, threads unpinned),
ONNX Runtime with and without huge pages (it pins nothing). p50 / p90 in ms, at the target's
threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import host  # noqa: E402

# ONNX Runtime's latency percentiles on a bundle's reference model, in a process of its own,
# on the seeded input and threads of the build's own baseline (also bench/perf.py's).
ORT = """
import json, sys
from pathlib import Path
from edgec import reference
from edgec.manifest import Manifest
bundle, threads, repeat = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
manifest = Manifest.from_json(json.loads((bundle / "manifest.json").read_text()), bundle)
inputs = reference.random_inputs(manifest.inputs)
print(json.dumps(reference.latency(bundle / manifest.reference, inputs, threads, repeat)))
"""
SETTINGS = [  # (label, huge pages, pinned)
    ("4 KiB pages, pinned (TVM's default)", False, True),
    ("4 KiB pages, unpinned", False, False),
    ("huge pages, pinned", True, True),
    ("huge pages, unpinned (edgec-run's default)", True, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--busy", type=int, default=1, help="busy processes in the second half")
    args = parser.parse_args()
    from edgec.manifest import Manifest
    from edgec.targets import get_target

    threads = get_target("x86").capabilities.cores
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    specs = Manifest.from_json(manifest, args.bundle).inputs
    with tempfile.TemporaryDirectory(prefix="runner-env-") as tmp:
        measure(args, threads, specs, Path(tmp))


def measure(args: argparse.Namespace, threads: int, specs: tuple, work: Path) -> None:
    from edgec.reference import random_inputs

    files = []
    for i, x in enumerate(random_inputs(specs)):
        np.save(work / f"input_{i}.npy", x)
        files.append(str(work / f"input_{i}.npy"))
    print(host.line())
    print(f"{args.bundle}: p50 / p90 ms of {args.repeat} runs, {threads} threads\n")
    print(f"| run | no extra load | beside {args.busy} busy process(es) |\n|---|---:|---:|")
    rows: dict[str, list[str]] = {}
    for busy in (0, args.busy):
        burners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)
        ]
        try:
            for label, huge, pinned in SETTINGS:
                env = {**os.environ, "GLIBC_TUNABLES": f"glibc.malloc.hugetlb={int(huge)}"}
                env.update(TVM_BIND_THREADS=str(int(pinned)), TVM_NUM_THREADS=str(threads))
                cmd = [str(args.bundle / "edgec-run"), str(args.bundle / "model.so")]
                cmd += [a for f in files for a in ("--input", f)]
                cmd += ["--output-dir", str(work), "--repeat", str(args.repeat), "--warmup", "10"]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                rows.setdefault(f"edgec-run, {label}", []).append(_cell(done.stdout))
            for huge in (False, True):
                env = {**os.environ, "GLIBC_TUNABLES": f"glibc.malloc.hugetlb={int(huge)}"}
                cmd = [sys.executable, "-c", ORT, str(args.bundle), str(threads), str(args.repeat)]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                label = "huge pages" if huge else "4 KiB pages (as shipped)"
                rows.setdefault(f"ONNX Runtime, {label}", []).append(_cell(done.stdout, key=None))
        finally:
            for burner in burners:
                burner.kill()
    for name, cells in rows.items():
        print(f"| {name} | {' | '.join(cells)} |")


def _cell(stdout: str, key: str | None = "latency_ms") -> str:
    result = json.loads(stdout.strip().splitlines()[-1])
    latency = result[key] if key else result
    return f"{latency['p50']:.2f} / {latency['p90']:.2f}"


if __name__ == "__main__":
    main()
