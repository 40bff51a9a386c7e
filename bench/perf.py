"""Latency of edgec builds against ONNX Runtime and PyTorch eager on the same input and threads.

    .venv/bin/python bench/perf.py                  # untuned edgec, ORT, PyTorch: all models
    .venv/bin/python bench/perf.py --tune 200       # adds tuned builds (trials per model)
    .venv/bin/python bench/perf.py --models cnn     # a subset
    .venv/bin/python bench/perf.py --unscheduled    # adds TVM's own pipeline, no schedules

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


def unscheduled_p50(spec: str, threads: int, repeat: int) -> float:
    """p50 (ms) of the model built by TVM's default pipeline alone: legalized and fused, with
    none of edgec's schedule rules (what TVM 0.27 gives a CPU model out of the box)."""
    import tvm
    from tvm import relax

    from edgec.relax.import_onnx import import_onnx
    from edgec.relax.target import tvm_target
    from edgec.stages.export import export
    from edgec.stages.load import load
    from edgec.targets import get_target

    os.environ["TVM_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory() as tmp:
        onnx = export(load(str(ROOT / spec), None, Path(tmp)), Path(tmp))
        module = import_onnx(onnx).module
    executable = tvm.compile(module, target=tvm_target(get_target("x86")))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    rng = np.random.default_rng(0)
    x = [tvm.runtime.tensor(rng.standard_normal(s.shape, np.float32)) for s in onnx.inputs]
    timer = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat)
    return float(timer(*x).median * 1e3)


def build(spec: str, repeat: int, tuning: object | None = None) -> dict:
    """The report of a real x86 build (measured in the same run as ONNX Runtime)."""
    from edgec.pipeline import BuildOptions, build
    from edgec.progress import StageLog

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet:
        options = BuildOptions(repeat=repeat, tuning=tuning)
        return build(str(ROOT / spec), "x86", Path(tmp) / "b", options, StageLog(stream=quiet))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--tune", type=int, default=0, help="MetaSchedule trials per model (0: skip)"
    )
    parser.add_argument(
        "--unscheduled", action="store_true", help="also time TVM's pipeline without edgec's rules"
    )
    args = parser.parse_args()
    from edgec.targets import get_target

    cores = get_target("x86").capabilities.cores
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    cpu = names[0] if names else platform.machine()
    print(
        f"machine: {cpu}, {cores} cores, python {sys.version.split()[0]}; "
        f"threads: {cores} for edgec, ONNX Runtime and PyTorch\n"
    )
    header = "| model | edgec untuned | "
    if args.tune:
        header += "edgec tuned | tuning s | 2nd build: measurements, p50 | "
    header += "ONNX Runtime | PyTorch eager | untuned/ORT | "
    header += "tuned/ORT | " if args.tune else ""
    header += "TVM unscheduled | unscheduled/ORT | " if args.unscheduled else ""
    header += "max abs diff |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.models.split(","):
        spec = MODELS[name]
        report = build(spec, args.repeat)
        untuned, ort = report["latency_ms"]["p50"], report["baseline"]["onnxruntime"]["p50"]
        diff = report["parity"]["max_abs_diff"]
        cells, ratios = [name, f"{untuned:.3f}"], [f"{untuned / ort:.2f}×"]
        if args.tune:
            from edgec.tuning import TuneOptions

            with tempfile.TemporaryDirectory() as db:
                options = TuneOptions(trials=args.tune, database=Path(db))
                tuned = build(spec, args.repeat, options)
                again = build(spec, args.repeat, options)
            p50 = tuned["latency_ms"]["p50"]
            cells += [
                f"{p50:.3f}",
                f"{tuned['tuning']['seconds']:.0f}",
                f"{again['tuning']['measurements']}, {again['latency_ms']['p50']:.3f}",
            ]
            ratios.append(f"{p50 / ort:.2f}×")
            diff = max(diff, tuned["parity"]["max_abs_diff"], again["parity"]["max_abs_diff"])
        eager = torch_eager_p50(spec, cores, args.repeat)
        cells += [f"{ort:.3f}", f"{eager:.3f}", *ratios]
        if args.unscheduled:
            raw = unscheduled_p50(spec, cores, args.repeat)
            cells += [f"{raw:.3f}", f"{raw / ort:.1f}×"]
        cells.append(f"{diff:.1e}")
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
