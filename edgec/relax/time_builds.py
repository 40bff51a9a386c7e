"""time_builds: host builds of one model timed against each other, interleaved in one process.

`time_libraries` runs this module in a process of its own (`python -m edgec.relax.time_builds`):
the TVM runtime reads TVM_NUM_THREADS once, when its pool starts, and the building process may
have started it already (FoldConstant runs kernels) with another thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgec.errors import EdgecError
from edgec.runtime import runner_like

ROUNDS = 40  # each round runs every library once, in alternating order
WARMUP = 3
MIN_SAMPLE_S = 2e-3  # a sample repeats a fast model until it takes this long: timer resolution


def time_libraries(
    libraries: list[Path], inputs: list[np.ndarray], threads: int, rounds: int = ROUNDS
) -> list[float]:
    """Each library's median wall time per inference in ms, with `threads` threads, measured
    in interleaved rounds on the same inputs (load that comes and goes hits all alike)."""
    with tempfile.TemporaryDirectory(prefix="edgec-time-") as tmp:
        files = [str(Path(tmp) / f"input_{i}.npy") for i in range(len(inputs))]
        for file, array in zip(files, inputs, strict=True):
            np.save(file, array)
        cmd = [sys.executable, "-m", "edgec.relax.time_builds", "--rounds", str(rounds)]
        cmd += [*(a for f in files for a in ("--input", f)), *map(str, libraries)]
        # malloc and threads as edgec-run has them (edgec.runtime.runner_like)
        env = runner_like({**os.environ, "TVM_NUM_THREADS": str(threads)})
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        errors = [e for e in done.stderr.splitlines() if e.strip() and "Scope" not in e]
        raise EdgecError(
            f"timing the tuned against the untuned build failed: {(errors or ['no output'])[-1]}"
        )
    return [float(ms) for ms in json.loads(done.stdout.splitlines()[-1])["ms"]]


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("libraries", nargs="+", type=Path)
    parser.add_argument("--input", action="append", default=[], type=Path)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    print(json.dumps({"ms": _interleaved(args.libraries, args.input, args.rounds)}))


def _interleaved(libraries: list[Path], input_files: list[Path], rounds: int) -> list[float]:
    import tvm
    from tvm import relax

    inputs = [tvm.runtime.tensor(np.load(f, allow_pickle=False)) for f in input_files]
    runs = []
    for library in libraries:
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
        runs.append(lambda vm=vm: vm["main"](*inputs))
    for run in runs:
        for _ in range(WARMUP):
            run()
    start = time.perf_counter()
    runs[0]()
    once = max(time.perf_counter() - start, 1e-9)
    repeat = max(1, int(MIN_SAMPLE_S / once))
    samples: list[list[float]] = [[] for _ in runs]
    for r in range(rounds):
        order = range(len(runs)) if r % 2 == 0 else reversed(range(len(runs)))
        for i in order:
            start = time.perf_counter()
            for _ in range(repeat):
                runs[i]()
            samples[i].append((time.perf_counter() - start) / repeat)
    return [float(np.median(s)) * 1e3 for s in samples]


if __name__ == "__main__":
    _main()
