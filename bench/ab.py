"""x86 bundles side by side in one process: A/B of edgec builds made at two commits.

    .venv/bin/edgec build MODEL --target x86 --no-measure -o edgec-out/a ...   # at commit A
    .venv/bin/edgec build MODEL --target x86 --no-measure -o edgec-out/b ...   # at commit B
    .venv/bin/python bench/ab.py edgec-out/a edgec-out/b [--rounds 40] [--kernels]

Each bundle's model.so and ONNX Runtime 1.31 on each bundle's reference model (its QDQ model
for int8) and on the first bundle's float model.onnx run interleaved, one thread each
(`TVM_NUM_THREADS=1`, `intra_op_num_threads=1`), timed with `time.thread_time`: CPU time moves
far less with the load of a shared machine than wall-clock p50 does (bench/incontext.py does the
same for one float build). `--kernels` adds each bundle's kernels in context
(`VirtualMachine.set_instrument`). The input is seeded random, in the first bundle's shape.

`--threads N` (N > 1) gives every run N threads and times wall-clock instead (CPU time would
miss the workers), in turns of a 50 ms pause, an untimed run and 4 timed ones: a pool's
threads spin after a run and would slow the other runtime's next one. On a shared machine
compare its ratios, not its milliseconds.
`--huge-pages` restarts the process with glibc.malloc.hugetlb=1, as edgec-run runs on x86-64,
so both runtimes' large buffers sit in transparent huge pages.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["TVM_NUM_THREADS"] = "1"  # read once, when TVM's pool starts
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


BLOCK = 4  # runs timed in a row per turn with --threads N > 1
PAUSE_S = 0.05  # before each turn with --threads N > 1: other pools' threads stop spinning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=40, help="timed runs of each")
    parser.add_argument("--kernels", action="store_true", help="each bundle's kernels in context")
    parser.add_argument("--threads", type=int, default=1, help="threads of every run")
    parser.add_argument("--huge-pages", action="store_true", help="malloc on huge pages")
    parser.add_argument("--json", action="store_true", help="last line: p50 ms per run, JSON")
    args = parser.parse_args()
    if args.huge_pages:
        from edgec.runtime import with_huge_pages

        env = with_huge_pages(dict(os.environ))
        if env != dict(os.environ):
            os.execve(sys.executable, [sys.executable, *sys.argv], env)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM's pool starts
    os.environ.setdefault("TVM_BIND_THREADS", "0")  # as edgec's C API opens a model
    measure(args)


def measure(args: argparse.Namespace) -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    manifests = [json.loads((b / "manifest.json").read_text()) for b in args.bundles]
    spec = manifests[0]["inputs"][0]
    x = np.random.default_rng(0).standard_normal(spec["shape"]).astype(spec["dtype"])
    xt = tvm.runtime.tensor(x)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    clock = time.thread_time if args.threads == 1 else time.perf_counter

    def session(path: Path) -> object:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    runs: dict[str, object] = {}
    outputs: dict[str, np.ndarray] = {}
    vms = {}
    for bundle, manifest in zip(args.bundles, manifests, strict=True):
        lib = tvm.runtime.load_module(str(bundle / manifest["library"]))
        vm = relax.VirtualMachine(lib, tvm.cpu())
        vms[bundle.name] = vm
        runs[f"edgec {bundle.name}"] = lambda vm=vm: vm["main"](xt)
        reference = session(bundle / manifest["reference"])
        runs[f"ONNX Runtime {bundle.name} ({manifest['reference']})"] = lambda s=reference: s.run(
            None, {spec["name"]: x}
        )
        got = vm["main"](xt)
        outputs[bundle.name] = got.numpy() if hasattr(got, "numpy") else got[0].numpy()
        outputs[f"{bundle.name} reference"] = reference.run(None, {spec["name"]: x})[0]
    if any(m["reference"] != "model.onnx" for m in manifests):  # an int8 bundle: its QDQ model
        float_model = session(args.bundles[0] / "model.onnx")
        runs["ONNX Runtime float model.onnx"] = lambda: float_model.run(None, {spec["name"]: x})
    times: dict[str, list[float]] = {name: [] for name in runs}
    # With workers, a runtime's threads spin for a while after its run (ONNX Runtime's and
    # TVM's pools both do), taking cores from the next run: each turn starts after a pause
    # that lets them park and with an untimed run, then times BLOCK runs in a row.
    block = 1 if args.threads == 1 else BLOCK
    for _ in range(args.rounds):
        for name, run in runs.items():
            if block > 1:
                time.sleep(PAUSE_S)
                run()
            for _ in range(block):
                start = clock()
                run()
                times[name].append(clock() - start)
    timed = "CPU time, 1 thread" if args.threads == 1 else f"wall time, {args.threads} threads"
    pages = ", malloc on huge pages" if args.huge_pages else ""
    print(f"p50 {timed}{pages}, {args.rounds} runs each, interleaved\n")
    print("| run | ms | p10–p90 ms | max abs diff from its reference |\n|---|---:|---:|---:|")
    for name, t in times.items():
        bundle = name.removeprefix("edgec ")
        diff = "-"
        if name.startswith("edgec "):
            diff = f"{np.abs(outputs[bundle] - outputs[f'{bundle} reference']).max():.1e}"
        low, high = np.percentile(t, [10, 90]) * 1e3
        print(f"| {name} | {np.median(t) * 1e3:.3f} | {low:.3f}–{high:.3f} | {diff} |")
    if args.kernels:
        for name, vm in vms.items():
            kernels(name, vm, xt)
    if args.json:
        print(json.dumps({name: float(np.median(t) * 1e3) for name, t in times.items()}))


def kernels(name: str, vm: object, xt: object, runs: int = 10, top: int = 15) -> None:
    calls: dict[str, list[float]] = {}
    started: dict[str, float] = {}

    def instrument(_func: object, kernel: str, before: bool, *_: object) -> int:
        if before:
            started[kernel] = time.thread_time()
        else:
            calls.setdefault(kernel, []).append(time.thread_time() - started[kernel])
        return 0  # 0: go on as usual

    vm.set_instrument(instrument)
    for _ in range(runs):
        vm["main"](xt)
    vm.set_instrument(None)
    rows = sorted(
        ((sum(t) / runs * 1e3, len(t) // runs, k) for k, t in calls.items()), reverse=True
    )
    print(f"\n{name}: kernels in context, {sum(r[0] for r in rows):.2f} ms in all\n")
    print("| ms per inference | calls | kernel |\n|---:|---:|---|")
    for ms, n, kernel in rows[:top]:
        print(f"| {ms:.3f} | {n} | {kernel} |")


if __name__ == "__main__":
    main()
