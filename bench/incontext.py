"""Per-kernel CPU time in context against ONNX Runtime, one thread: load-robust comparisons.

    .venv/bin/python bench/incontext.py examples/mobilenetv2.py:make_model [--top 20]
    .venv/bin/python bench/incontext.py squeezenet1_1        # a torchvision classifier (zoo.py)
    .venv/bin/python bench/incontext.py model.onnx --rounds 60

edgec's build and ONNX Runtime 1.31 run interleaved in one process, one thread each
(`TVM_NUM_THREADS=1`, `intra_op_num_threads=1`), timed with `time.thread_time`: CPU time moves
far less with the load of a shared machine than wall-clock p50 does. Then each kernel call is
timed inside the whole model (`VirtualMachine.set_instrument`): unlike bench/kernels.py (one
kernel alone, warm caches), inputs are what the previous kernel just wrote. Run it at two
commits to compare code. `--ort-nodes` adds ONNX Runtime's per-node times from its own
profiler (which slows its end-to-end time: compare ratios from runs without it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["TVM_NUM_THREADS"] = "1"  # read once, when TVM's pool starts
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
ROOT = Path(__file__).resolve().parents[1]


def onnx_file(model: str, directory: Path) -> Path:
    """MODEL as an ONNX file: a file as given, a torchvision name through bench/zoo.py, else
    edgec's load and export stages (e.g. examples/M.py:make_model)."""
    if model.endswith(".onnx"):
        return Path(model)
    if ":" not in model:
        sys.path.insert(0, str(ROOT))
        from bench import zoo

        return zoo.export(model, 17, 224, directory)
    from edgec.stages.export import export
    from edgec.stages.load import load

    return Path(export(load(model, None, directory), directory).path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=60, help="timed runs of each runtime")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--ort-nodes", action="store_true", help="ONNX Runtime's per-node times")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, tmp: Path) -> None:
    import onnx
    import onnxruntime as ort
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from edgec.relax.compile import lower
    from edgec.targets import get_target

    path = onnx_file(args.model, tmp)
    graph = onnx.load(str(path))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = args.ort_nodes
    options.profile_file_prefix = str(tmp / "ort")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = graph.graph.input[0].name
    shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    module = from_onnx(graph, shape_dict={name: shape}, dtype_dict={name: "float32"})
    vm = relax.VirtualMachine(lower(module, get_target("x86")).executable, tvm.cpu())
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xt = tvm.runtime.tensor(x)
    want = session.run(None, {name: x})[0]
    got = vm["main"](xt)
    got = got.numpy() if hasattr(got, "numpy") else got[0].numpy()
    edgec, onnxruntime = [], []
    for _ in range(args.rounds):
        start = time.thread_time()
        vm["main"](xt)
        edgec.append(time.thread_time() - start)
        start = time.thread_time()
        session.run(None, {name: x})
        onnxruntime.append(time.thread_time() - start)
    e, o = np.median(edgec) * 1e3, np.median(onnxruntime) * 1e3
    print(
        f"{args.model}: edgec {e:.3f} ms, ONNX Runtime {o:.3f} ms, {e / o:.2f}x (p50 CPU time, "
        f"1 thread, {args.rounds} runs each); max abs diff {np.abs(got - want).max():.1e}\n"
    )

    calls: dict[str, list[float]] = {}
    started: dict[str, float] = {}

    def instrument(_func: object, kernel: str, before: bool, *_: object) -> int:
        if before:
            started[kernel] = time.thread_time()
        else:
            calls.setdefault(kernel, []).append(time.thread_time() - started[kernel])
        return 0  # 0: go on as usual

    vm.set_instrument(instrument)
    runs = 10
    for _ in range(runs):
        vm["main"](xt)
    vm.set_instrument(None)
    rows = sorted(
        ((sum(t) / runs * 1e3, len(t) // runs, k) for k, t in calls.items()), reverse=True
    )
    print("| ms per inference | calls | kernel |\n|---:|---:|---|")
    for ms, n, kernel in rows[: args.top]:
        print(f"| {ms:.3f} | {n} | {kernel} |")
    if args.ort_nodes:
        trace = json.loads(Path(session.end_profiling()).read_text())
        nodes: dict[str, list[float]] = {}
        for event in trace:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                nodes.setdefault(event["name"][: -len("_kernel_time")], []).append(event["dur"])
        print("\n| ONNX Runtime ms (p50) | node |\n|---:|---|")
        top = sorted(((np.median(d) / 1e3, n) for n, d in nodes.items()), reverse=True)
        for ms, node in top[: args.top]:
            print(f"| {ms:.3f} | {node} |")


if __name__ == "__main__":
    main()
