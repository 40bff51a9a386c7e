"""Microcontroller builds of the digits CNN and a DS-CNN keyword spotter on Cortex-M4, M7 and
M0+ (qemu-system-arm, -icount: instruction counts, deterministic), plus the Cortex-M4 build with
its DSP kernels turned off (-DEDGEC_PORTABLE) to show what SMLAD buys.

    .venv/bin/python bench/mcu.py

Prints a Markdown table: bit-exactness against edgec's int8 reference, flash (library code and
constants), RAM (arena against its lower bound, stack), instructions per inference, per MAC
over all layers, and per MAC in the dense (groups = 1) convolutions and linear layers.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "digits CNN": f"{ROOT / 'examples' / 'digits.py'}:make_model",
    "DS-CNN KWS 49x10": f"{ROOT / 'examples' / 'dscnn.py'}:make_model",
}
CORES = ("cortex-m4", "cortex-m7", "cortex-m0plus")


def main() -> None:
    from edgec.boards import get_board
    from edgec.datasets import load_dataset
    from edgec.stages import firmware
    from edgec.stages.export import export
    from edgec.stages.generate import generate
    from edgec.stages.load import load
    from edgec.stages.quantize import QuantizeConfig, quantize
    from edgec.targets import get_target

    print(
        "| model | core | bit-exact | flash code (B) | flash constants (B) | arena / lower bound "
        "(B) | stack (B) | instructions | per MAC | per MAC, conv+dense |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    inexact: list[str] = []
    for label, spec in MODELS.items():
        with tempfile.TemporaryDirectory(prefix="edgec-mcu-") as tmp:
            work = Path(tmp)
            onnx_model = export(load(spec, None, work), work)
            data = load_dataset("digits", onnx_model.inputs[0].shape)
            quantized = quantize(onnx_model, data.train_x, QuantizeConfig(sensitivity=None))
            variants = [(core, get_target(core)) for core in CORES]
            m4 = get_target("cortex-m4")
            portable = replace(
                m4,
                cflags=(*m4.cflags, "-DEDGEC_PORTABLE"),
                capabilities=replace(m4.capabilities, has_dsp=False),
            )
            variants.append(("cortex-m4, portable C", portable))
            for name, profile in variants:
                out = work / name.replace(" ", "_").replace(",", "")
                out.mkdir()
                library = generate(quantized, profile, out, data.val_x[:1])
                fw = firmware.link(library, profile, get_board(profile.board or ""))
                run = firmware.emulate(fw.elf, fw.board.qemu_machine or "")
                macs = sum(layer.macs for layer in library.layers)
                dense = [
                    (layer.macs, n)
                    for layer, n in zip(library.layers, run.layer_instructions, strict=True)
                    if layer.op in ("conv", "dense")
                ]
                dense_rate = sum(n for _, n in dense) / sum(m for m, _ in dense)
                fp = fw.footprint
                exact = np.array_equal(run.output, library.expected_output)
                if not exact:
                    inexact.append(f"{label} on {name}")
                print(
                    f"| {label} | {name} | {'yes' if exact else 'NO'} | {fp.code_bytes:,} "
                    f"| {fp.const_bytes:,} | {library.arena_bytes:,} / "
                    f"{library.arena_lower_bound:,} | {fp.stack_bytes} | {run.instructions:,} "
                    f"| {run.instructions / macs:.2f} | {dense_rate:.2f} |"
                )
    if inexact:
        sys.exit(f"not bit-exact with edgec's int8 reference: {', '.join(inexact)}")


if __name__ == "__main__":
    main()
