"""Latency of edgec builds against ONNX Runtime and PyTorch eager on the same input and threads.

    .venv/bin/python bench/perf.py                  # untuned edgec, ORT, PyTorch: all models
    .venv/bin/python bench/perf.py --tune 2000      # adds a tuned build (MetaSchedule trials)
    .venv/bin/python bench/perf.py --models cnn     # a subset

Prints a Markdown table of p50 latencies (ms) and ratios to ONNX Runtime's p50.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "cnn": "examples/cnn.py:make_model",
    "resnet18": "examples/resnet18.py:make_model",
    "mobilenetv2": "examples/mobilenetv2.py:make_model",
    "transformer": "examples/transformer.py:make_model",
}


def torch_eager_p50(spec: str, threads: int, repeat: int) -> float:
    import torch

    from edgec.stages.load import load

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = load(str(ROOT / spec), None, Path(tmp))
    x = [
        torch.from_numpy(np.random.default_rng(0).standard_normal(s.shape, np.float32))
        for s in model.inputs
    ]
    samples = []
    with torch.inference_mode():
        for i in range(repeat + 3):
            start = time.perf_counter()
            model.module(*x)
            if i >= 3:
                samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples))


def build_p50(spec: str, repeat: int, extra: dict) -> tuple[float, float, float]:
    """(edgec p50, ORT p50 on the same input and threads, max abs diff) from a real build."""
    from edgec.pipeline import BuildOptions, build
    from edgec.progress import StageLog

    with tempfile.TemporaryDirectory() as tmp:
        log = StageLog(stream=open(os.devnull, "w"))  # noqa: SIM115
        report = build(
            str(ROOT / spec), "x86", Path(tmp) / "b", BuildOptions(repeat=repeat, **extra), log
        )
    return (
        report["latency_ms"]["p50"],
        report["baseline"]["onnxruntime"]["p50"],
        report["parity"]["max_abs_diff"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--tune", type=int, default=0, help="MetaSchedule trials per model (0: skip)"
    )
    args = parser.parse_args()
    from edgec.targets import get_target

    cores = get_target("x86").capabilities.cores
    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores, "
        f"python {sys.version.split()[0]}; threads: {cores} for every runtime\n"
    )
    header = "| model | edgec untuned | " + ("edgec tuned | " if args.tune else "")
    header += "ONNX Runtime | PyTorch eager | untuned/ORT | " + (
        "tuned/ORT | " if args.tune else ""
    )
    header += "max abs diff |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.models.split(","):
        spec = MODELS[name]
        untuned, ort, diff = build_p50(spec, args.repeat, {})
        cells = [name, f"{untuned:.3f}"]
        ratios = [f"{untuned / ort:.2f}×"]
        if args.tune:
            tuned, _, diff_tuned = build_p50(spec, args.repeat, {"tune_trials": args.tune})
            cells.append(f"{tuned:.3f}")
            ratios.append(f"{tuned / ort:.2f}×")
            diff = max(diff, diff_tuned)
        eager = torch_eager_p50(spec, cores, args.repeat)
        cells += [f"{ort:.3f}", f"{eager:.3f}", *ratios, f"{diff:.1e}"]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
