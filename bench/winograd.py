"""x86 float32 latency with and without Winograd F(2,3) (edgec.relax.winograd), against ONNX
Runtime, load-robust: one thread each, CPU time of the calling thread (`time.thread_time`),
interleaved in one process, median of --rounds. Variants: direct convolutions, Winograd as three
kernels everywhere (input transform, GEMM, output transform), and Winograd as built (one kernel
per tile row where winograd.fused says so: V beyond L2, U within).

    .venv/bin/python bench/winograd.py examples/resnet18.py:make_model [--rounds 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ["TVM_NUM_THREADS"] = "1"  # before the TVM runtime starts its thread pool

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    import onnxruntime as ort
    import tvm
    from tvm import relax

    from bench import host
    from edgec.relax import winograd
    from edgec.relax.compile import lower
    from edgec.relax.import_onnx import import_onnx
    from edgec.stages.export import export
    from edgec.stages.load import load
    from edgec.targets import get_target

    profile = get_target("x86")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = export(load(args.model, None, Path(tmp)), Path(tmp))
        module = import_onnx(onnx_model).module
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_model.path), options)
    feed = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([int(d) for d in feed.shape]).astype("float32")
    want = session.run(None, {feed.name: x})[0]
    runs = {}
    one_kernel = winograd.FUSED_WEIGHT_BYTES
    variants = (("direct", False, 0), ("three kernels", True, 0), ("winograd", True, one_kernel))
    for name, on, fused_bytes in variants:
        caps = dataclasses.replace(profile.capabilities, winograd=on)
        winograd.FUSED_WEIGHT_BYTES = fused_bytes  # 0: every Winograd layer as three kernels
        built = lower(module, dataclasses.replace(profile, capabilities=caps))
        vm = relax.VirtualMachine(built.executable, tvm.cpu())
        data = tvm.runtime.tensor(x)
        got = vm["main"](data)
        got = got.numpy() if hasattr(got, "numpy") else got[0].numpy()
        print(f"{name}: max abs diff to ONNX Runtime {np.abs(got - want).max():.3g}")
        runs[name] = lambda vm=vm, data=data: vm["main"](data)
    runs["onnxruntime"] = lambda: session.run(None, {feed.name: x})
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            start = time.thread_time()
            run()
            times[name].append((time.thread_time() - start) * 1e3)
    ort_ms = float(np.median(times["onnxruntime"]))
    print(host.line().strip())
    print(f"{args.model}: 1 thread, CPU ms, median of {args.rounds}")
    for name, values in times.items():
        ms = float(np.median(values))
        print(f"  {name:14s} {ms:8.2f} ms  {ms / ort_ms:.2f}x ONNX Runtime")


if __name__ == "__main__":
    main()
