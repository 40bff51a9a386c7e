"""Compression on the digits example: the trained model against channel pruning recovered by
plain fine-tuning or by distillation from the unpruned model, at the same epoch budget.

    .venv/bin/python examples/digits.py          # once: trains examples/digits.pth
    .venv/bin/python bench/compression.py        # --ratio 0.5 0.75 --epochs 15

Channels are rounded to the x86 profile's channel_multiple. Each variant is then built by
edgec for x86 with the same (default) schedule settings and timed by its runner on this host.
Prints a Markdown table of validation top-1, parameters, MACs, the x86 p50 latency and the
seconds spent pruning (the no-recovery rows) or recovering (the fine-tune and KD rows). The
best epoch is chosen on the same validation split for both recoveries, so their figures share
that optimism.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("digits", ROOT / "examples" / "digits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    """Run the variants for each ratio and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, nargs="+", default=[0.5, 0.75])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2000, help="timed runs per x86 build")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from edgec.accuracy import stats, top1
    from edgec.datasets import load_dataset
    from edgec.stages.distill import DistillConfig, distill, fit
    from edgec.stages.prune import PruneConfig, prune
    from edgec.targets import get_target

    torch.set_num_threads(args.threads)
    digits = _example()
    if not digits.WEIGHTS.is_file():
        sys.exit(f"{digits.WEIGHTS} is missing: run examples/digits.py first")
    teacher = digits.make_model()
    example = torch.zeros(digits.INPUT_SHAPE)
    data = load_dataset("digits", digits.INPUT_SHAPE)
    round_to = get_target("x86").capabilities.channel_multiple
    # patience = epochs: both recoveries get the whole budget, early stopping cannot favour one
    budget = DistillConfig(epochs=args.epochs, patience=args.epochs)
    rows: list[tuple[str, nn.Module, float]] = [("unpruned", teacher, 0.0)]
    for ratio in args.ratio:
        start = time.perf_counter()
        pruned = prune(teacher, example, PruneConfig(ratio, round_to=round_to)).module
        rows.append((f"prune {ratio:.0%}, no recovery", pruned, time.perf_counter() - start))
        start = time.perf_counter()
        tuned = fit(pruned, data, budget).module
        rows.append((f"prune {ratio:.0%} + fine-tune", tuned, time.perf_counter() - start))
        start = time.perf_counter()
        student = distill(pruned, teacher, data, budget).module
        rows.append((f"prune {ratio:.0%} + KD", student, time.perf_counter() - start))

    print(
        f"digits {digits.INPUT_SHAPE}, round_to {round_to}, {args.epochs} epochs "
        f"(Adam lr {budget.lr}, KD T={budget.temperature} alpha={budget.alpha}), "
        f"{len(data.train_x)} train / {len(data.val_x)} val images\n"
    )
    print(
        "| variant | val top-1 (%) | params | MACs | x86 p50 (ms) | ONNX Runtime p50 (ms) "
        "| prune or recovery time (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base_params, base_macs = stats(teacher, example)
    base_ms = None
    for name, model, seconds in rows:
        params, macs = stats(model, example)
        accuracy = top1(model, data.val_x, data.val_y)
        p50, ort = _x86_latency(model, digits.INPUT_SHAPE, args.repeat)
        base_ms = base_ms or p50
        print(
            f"| {name} | {accuracy:.1f} | {params:,} ({base_params / params:.2f}×) "
            f"| {macs:,} ({base_macs / macs:.2f}×) | {p50:.4f} ({base_ms / p50:.2f}×) "
            f"| {ort:.4f} | {seconds:.2f} |"
        )


def _x86_latency(model: nn.Module, shape: tuple[int, ...], repeat: int) -> tuple[float, float]:
    """edgec's x86 build of `model` and ONNX Runtime's, p50 in ms on the same input."""
    import io
    import tempfile

    from edgec.artifacts import TorchModel
    from edgec.pipeline import BuildOptions, build
    from edgec.progress import StageLog
    from edgec.stages.load import save_torchscript, specs

    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as tmp:
        path = Path(tmp) / "model.pt"
        save_torchscript(TorchModel(model, specs([shape]), "bench"), path)
        options = BuildOptions(repeat=repeat)
        report = build(str(path), "x86", Path(tmp) / "out", options, StageLog(io.StringIO()))
    return report["latency_ms"]["p50"], report["baseline"]["onnxruntime"]["p50"]


if __name__ == "__main__":
    main()
