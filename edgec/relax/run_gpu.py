"""Run a CUDA bundle's library on this machine's GPU through TVM's runtime: the bundle has no
runner of its own (the C++ runner drives the CPU VM only)."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import CheckFailed
from edgec.reference import percentiles


def run_on_gpu(
    library: Path, inputs: list[np.ndarray], repeat: int, warmup: int
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Outputs of `main` on GPU 0, and a result shaped like the runner's JSON line."""
    import tvm
    from tvm import relax

    device = tvm.cuda(0)
    if not device.exist:
        raise CheckFailed("TVM sees no CUDA device 0: check the driver (nvidia-smi)")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), device)
    args = [tvm.runtime.tensor(x, device) for x in inputs]
    for _ in range(warmup):
        vm["main"](*args)
    device.sync()
    samples = []
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        result = vm["main"](*args)
        device.sync()  # kernels launch asynchronously: the call returns before they finish
        samples.append((time.perf_counter() - start) * 1e3)
    outputs = [result] if isinstance(result, tvm.runtime.Tensor) else list(result)
    return [o.numpy() for o in outputs], {
        "latency_ms": percentiles(samples),
        # host memory of this process (the GPU's own memory is not counted)
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
