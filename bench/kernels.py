"""Per-kernel time of an x86 build with edgec's default schedules: where the time goes.

    .venv/bin/python bench/kernels.py examples/resnet18.py:make_model [--top 15]
    .venv/bin/python bench/kernels.py examples/digits.py:make_model --int8 digits
    .venv/bin/python bench/kernels.py model.onnx   # any ONNX file; fallbacks listed at the end

Each fused kernel is built alone and timed on random inputs (TVM's time_evaluator); the
sum is close to, but not exactly, the end-to-end latency (no VM overhead, warm caches).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--target", default="x86")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--int8", metavar="DATA", help="quantize, calibrating on DATA")
    args = parser.parse_args()

    import tvm
    from tvm import tirx

    from edgec.relax.compile import _schedule, prepare
    from edgec.relax.import_onnx import import_onnx
    from edgec.relax.target import tvm_target
    from edgec.stages.export import export
    from edgec.stages.load import load
    from edgec.targets import get_target

    profile = get_target(args.target)
    target = tvm_target(profile)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = export(load(args.model, None, Path(tmp)), Path(tmp))
        if args.int8:
            from edgec.datasets import load_dataset
            from edgec.relax.lower_int8 import import_qgraph
            from edgec.stages.quantize import QuantizeConfig, quantize

            data = load_dataset(args.int8, onnx_model.inputs[0].shape)
            config = QuantizeConfig(samples=64, sensitivity=None)
            relax_module = import_qgraph(quantize(onnx_model, data.train_x, config))
        else:
            relax_module = import_onnx(onnx_model)
    fallbacks: dict[str, str] = {}
    with target:
        mod = _schedule(profile)(prepare(relax_module.module, profile, fallbacks))
    rng = np.random.default_rng(0)
    rows = []
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        try:
            lib = tvm.tirx.build(
                tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target
            )
        except Exception as e:  # the build keeps this kernel's plain loop nest instead
            fallbacks[f"kernel {gv.name_hint}"] = f"schedule does not build: {e}".splitlines()[0]
            continue
        tensors = [
            tvm.runtime.tensor(rng.standard_normal([int(d) for d in p.shape]).astype(p.dtype))
            for p in func.params
        ]
        timer = lib.time_evaluator("main", tvm.cpu(), number=5, repeat=5)
        ms = float(np.median(timer(*tensors).results)) * 1e3
        scheduled = bool(func.attrs and func.attrs.get("tirx.is_scheduled"))
        shapes = " ".join("x".join(str(int(d)) for d in p.shape) for p in func.params)
        rows.append((ms, gv.name_hint, scheduled, shapes))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{len(rows)} kernels, {total:.3f} ms in all\n")
    print("| ms | share | kernel | scheduled | buffers |\n|---:|---:|---|---|---|")
    for ms, name, scheduled, shapes in rows[: args.top]:
        print(
            f"| {ms:.3f} | {ms / total:.0%} | {name} | {'yes' if scheduled else 'NO'} | {shapes} |"
        )
    print(f"\nfallbacks (where edgec's fast path stepped aside): {len(fallbacks) or 'none'}")
    for where, why in fallbacks.items():
        print(f"- {where}: {why}")


if __name__ == "__main__":
    main()
