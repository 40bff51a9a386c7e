"""Microcontroller builds of the digits CNN and the four MLPerf Tiny reference models (ResNet-8,
DS-CNN, MobileNetV1 0.25, FC autoencoder) on Cortex-M4, M7 and M0+ (qemu-system-arm, -icount:
instruction counts, deterministic), plus the Cortex-M4 build with its DSP kernels turned off
(-DEDGEC_PORTABLE) to show what SMLAD buys.

    .venv/bin/python bench/mcu.py [--cores cortex-m4,...] [--models resnet8,...]

Prints a Markdown table: bit-exactness against edgec's int8 reference, flash (the library's
code kept in the linked image, and its constants), RAM (arena against its lower bound, stack),
instructions per inference, per MAC over all layers, in the dense (groups = 1) convolutions and
linear layers, and in the depthwise ones. The digits CNN is calibrated on digits; the MLPerf
Tiny models have seeded random weights and are calibrated on seeded normal inputs (no speech,
image or audio data set is available offline).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# key → (label, factory, calibration data: "digits" or "synthetic")
MODELS = {
    "digits": ("digits CNN", "digits.py", "digits"),
    "resnet8": ("ResNet-8 32x32x3", "resnet8.py", "synthetic"),
    "dscnn": ("DS-CNN KWS 49x10", "dscnn.py", "synthetic"),
    "mobilenetv1": ("MobileNetV1 0.25 96x96x3", "mobilenetv1.py", "synthetic"),
    "autoencoder": ("FC autoencoder 640", "autoencoder.py", "synthetic"),
}
CORES = ("cortex-m4", "cortex-m7", "cortex-m0plus", "cortex-m4, portable C")
CALIBRATION = 64


def _calibration(kind: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(calibration inputs, the input the firmware runs), float32 NCHW."""
    from edgec.datasets import load_dataset

    if kind == "digits":
        data = load_dataset("digits", shape)
        return data.train_x, data.val_x[:1]
    x = np.random.default_rng(2).standard_normal((CALIBRATION + 1, *shape[1:]))
    return x[1:].astype(np.float32), x[:1].astype(np.float32)


def _rate(layers: list[tuple[str, int, int]], ops: tuple[str, ...]) -> str:
    """Instructions per MAC over the layers of `ops`, or a dash where there are none."""
    chosen = [(macs, n) for op, macs, n in layers if op in ops]
    macs = sum(m for m, _ in chosen)
    return f"{sum(n for _, n in chosen) / macs:.2f}" if macs else "-"


def main() -> None:
    from edgec.boards import get_board
    from edgec.stages import firmware
    from edgec.stages.export import export
    from edgec.stages.generate import generate
    from edgec.stages.load import load
    from edgec.stages.quantize import QuantizeConfig, quantize
    from edgec.targets import get_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated keys")
    portable = "comma-separated; 'cortex-m4+portable C' is the Cortex-M4 built portable"
    parser.add_argument("--cores", default=",".join(CORES).replace(", ", "+"), help=portable)
    args = parser.parse_args()
    cores = [c.replace("+", ", ") for c in args.cores.split(",")]
    print(
        "| model | core | bit-exact | flash code (B) | flash constants (B) | arena / lower bound "
        "(B) | stack (B) | MACs | instructions | per MAC | conv+dense | depthwise |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    inexact: list[str] = []
    for key in args.models.split(","):
        label, factory, calibration = MODELS[key]
        with tempfile.TemporaryDirectory(prefix="edgec-mcu-") as tmp:
            work = Path(tmp)
            onnx_model = export(load(f"{ROOT / 'examples' / factory}:make_model", None, work), work)
            calib, sample = _calibration(calibration, onnx_model.inputs[0].shape)
            quantized = quantize(onnx_model, calib, QuantizeConfig(sensitivity=None))
            m4 = get_target("cortex-m4")
            portable = replace(
                m4,
                cflags=(*m4.cflags, "-DEDGEC_PORTABLE"),
                capabilities=replace(m4.capabilities, has_dsp=False),
            )
            for name in cores:
                profile = portable if name == "cortex-m4, portable C" else get_target(name)
                out = work / name.replace(" ", "_").replace(",", "")
                out.mkdir()
                library = generate(quantized, profile, out, sample)
                fw = firmware.link(library, profile, get_board(profile.board or ""))
                run = firmware.emulate(fw.elf, fw.board.qemu_machine or "")
                macs = sum(layer.macs for layer in library.layers)
                layers = [
                    (layer.op, layer.macs, n)
                    for layer, n in zip(library.layers, run.layer_instructions, strict=True)
                ]
                fp = fw.footprint
                exact = np.array_equal(run.output, library.expected_output)
                if not exact:
                    inexact.append(f"{label} on {name}")
                print(
                    f"| {label} | {name} | {'yes' if exact else 'NO'} | {fp.code_bytes:,} "
                    f"| {fp.const_bytes:,} | {library.arena_bytes:,} / "
                    f"{library.arena_lower_bound:,} | {fp.stack_bytes} | {macs:,} "
                    f"| {run.instructions:,} | {run.instructions / macs:.2f} "
                    f"| {_rate(layers, ('conv', 'dense'))} | {_rate(layers, ('depthwise',))} |",
                    flush=True,
                )
    if inexact:
        sys.exit(f"not bit-exact with edgec's int8 reference: {', '.join(inexact)}")


if __name__ == "__main__":
    main()
