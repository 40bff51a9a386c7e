"""int8 against float32 on the digits example: accuracy, weight bytes and x86 latency, edgec and
ONNX Runtime (its int8 runs the same QDQ model edgec checks against), in one run.

    .venv/bin/python bench/quantize.py [--repeat 500] [--larger | --larger-only]

Rows: the float32 build, the int8 build (percentile calibration on 256 training images), and
prune 50% + distill + int8. ONNX Runtime's column times the float model for float rows and the
int8 QDQ model for int8 rows, with the same threads and input. "quantize (s)" is the quantize
stage's own wall time (calibration, per-layer sensitivity, validation): it depends on the
machine's load, printed above the tables. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import host

ROOT = Path(__file__).resolve().parents[1]
MODEL = f"{ROOT / 'examples' / 'digits.py'}:make_model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument(
        "--larger", action="store_true", help="then time ResNet-18 and MobileNetV2 (224x224)"
    )
    parser.add_argument(
        "--larger-only", action="store_true", help="only the ResNet-18 and MobileNetV2 table"
    )
    args = parser.parse_args()
    print(host.line())
    if args.larger_only:
        larger()
        return

    from edgec.compress import CompressOptions
    from edgec.pipeline import BuildOptions
    from edgec.pipeline import build as build_bundle
    from edgec.progress import StageLog
    from edgec.stages.distill import DistillConfig
    from edgec.stages.prune import PruneConfig
    from edgec.stages.quantize import QuantizeConfig

    int8 = QuantizeConfig("int8")
    small = CompressOptions(
        data="digits",
        prune=PruneConfig(0.5),
        distill=DistillConfig(epochs=args.epochs, patience=args.epochs),
    )
    variants = [
        ("float32", BuildOptions(compress=CompressOptions(data="digits"))),
        ("int8", BuildOptions(compress=CompressOptions(data="digits"), quantize=int8)),
        ("prune 50% + KD, float32", BuildOptions(compress=small)),
        ("prune 50% + KD + int8", BuildOptions(compress=small, quantize=int8)),
    ]
    print(
        "| variant | val top-1 (%) | weight bytes | ops int8 / float | edgec x86 p50 (ms) "
        "| ONNX Runtime p50 (ms) | edgec / ORT | parity (max abs diff) | quantize (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = None
    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        for name, options in variants:
            options = BuildOptions(
                compress=options.compress, quantize=options.quantize, repeat=args.repeat
            )
            report = build_bundle(MODEL, "x86", Path(tmp) / "out", options, StageLog(io.StringIO()))
            stages = {s["name"]: s for s in report["stages"]}
            last = stages.get("quantize") or stages["export"]
            seconds = f"{stages['quantize']['seconds']:.1f}" if "quantize" in stages else "—"
            quant = report["quantization"] or {"int8_ops": 0, "float_ops": "all"}
            p50 = report["latency_ms"]["p50"]
            ort = report["baseline"]["onnxruntime"]["p50"]
            base = base or p50
            print(
                f"| {name} | {last['accuracy']:.1f} | {last['size_bytes']:,} "
                f"| {quant['int8_ops']} / {quant['float_ops']} "
                f"| {p50:.4f} ({p50 / base:.2f}× fp32) "
                f"| {ort:.4f} | {p50 / ort:.2f}× | {report['parity']['max_abs_diff']:.2e} "
                f"| {seconds} |"
            )
    if args.larger:
        larger()


def larger(repeat: int = 50) -> None:
    """Speed only: ResNet-18 and MobileNetV2 in float32 and int8 (calibrated on 32 random images
    with per-layer sensitivity: the accuracy of these untrained models means nothing)."""
    import numpy as np

    from edgec.compress import CompressOptions
    from edgec.pipeline import BuildOptions
    from edgec.pipeline import build as build_bundle
    from edgec.progress import StageLog
    from edgec.stages.quantize import SENSITIVITY_SAMPLES, QuantizeConfig

    print()
    print(
        "| model (1x3x224x224) | edgec fp32 p50 (ms) | edgec int8 p50 (ms) | int8 / fp32 "
        "| ORT fp32 (ms) | ORT int8 QDQ (ms) | edgec int8 / ORT int8 | int8 kernels on VNNI "
        "| quantize (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        rng = np.random.default_rng(0)
        data = Path(tmp) / "random224.npz"
        x = rng.standard_normal((48, 3, 224, 224)).astype(np.float32)
        np.savez(data, x=x, y=rng.integers(0, 1000, 48))
        # the 80/20 split leaves 38 of the 48 for training: calibration takes 32 of them
        int8 = QuantizeConfig("int8", samples=32)
        for name in ("resnet18", "mobilenetv2"):
            model = f"{ROOT / 'examples' / name}.py:make_model"
            reports = [
                build_bundle(
                    model, "x86", Path(tmp) / f"{name}-{i}", options, StageLog(io.StringIO())
                )
                for i, options in enumerate(
                    [
                        BuildOptions(repeat=repeat),
                        BuildOptions(
                            compress=CompressOptions(data=str(data)), quantize=int8, repeat=repeat
                        ),
                    ]
                )
            ]
            fp32, q = (r["latency_ms"]["p50"] for r in reports)
            ort32, ort8 = (r["baseline"]["onnxruntime"]["p50"] for r in reports)
            stage = next(s for s in reports[1]["stages"] if s["name"] == "quantize")
            print(
                f"| {name} | {fp32:.2f} | {q:.2f} | {q / fp32:.2f}× | {ort32:.2f} | {ort8:.2f} "
                f"| {q / ort8:.2f}× | {reports[1]['schedules']['int8_dot']} "
                f"| {stage['seconds']:.1f} |"
            )
        print(
            f"\n(int8 calibrated on {int8.samples} random 1x3x224x224 images, each layer's "
            f"sensitivity measured on {SENSITIVITY_SAMPLES} of them)"
        )


if __name__ == "__main__":
    main()
