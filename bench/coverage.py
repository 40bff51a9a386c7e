"""Coverage on a model corpus no one here wrote: torchvision's classifiers (random weights)
exported at several opsets, and old-converter-style graphs, each built with `edgec build`.

    .venv/bin/python bench/coverage.py --opsets 17 --side 224          # every classifier
    .venv/bin/python bench/coverage.py --models resnet18,googlenet --opsets 11,13,17 --side 64
    .venv/bin/python bench/coverage.py --quick                          # small models, 64×64
    .venv/bin/python bench/coverage.py --legacy                         # the onnx.helper graphs
    .venv/bin/python bench/coverage.py --rpi4 squeezenet1_1 --side 64   # also under qemu-aarch64
    .venv/bin/python bench/coverage.py --int8 --models resnet18 --side 64  # int8, every layer
    .venv/bin/python bench/coverage.py --build-time resnet50            # where build time goes

Prints a Markdown table: model | opset | side | build s | parity vs ONNX Runtime (max abs diff;
ok when ≤ 1e-4 × max(1, max |reference|)) | max |ORT output| (random weights can make outputs
vanish) | edgec p50 | ORT p50 | ratio | fallbacks. A model
edgec fails on is tried with plain TVM (`from_onnx` → `tvm.compile`) to tell edgec's failures
from TVM's. Each build runs `edgec build` in its own process (the path a user takes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import host  # noqa: E402
import legacy_graphs  # noqa: E402
import zoo  # noqa: E402

EDGEC = [sys.executable, "-m", "edgec"]
QUICK = [
    "squeezenet1_1",
    "mobilenet_v3_small",
    "shufflenet_v2_x0_5",
    "mnasnet0_5",
    "regnet_x_400mf",
    "resnet18",
    "efficientnet_b0",
    "googlenet",
]
# The onnx wheel's pytorch-converted cases (opset 6 but PixelShuffle, 9), upgraded at load.
WHEEL_CASES = [
    "test_Linear",
    "test_Conv2d_depthwise_strided",
    "test_BatchNorm2d_eval",
    "test_AvgPool2d",
    "test_MaxPool2d",
    "test_PixelShuffle",
]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgec" / "corpus"


# int8 with every layer in integer kernels (no sensitivity check keeps one in float), calibrated
# on synthetic data: the int8 convolution, dense and matmul kernels on a model nobody here wrote.
INT8 = ["--quantize", "int8", "--calib-data", "synthetic", "--calib-samples", "16"]
INT8 += ["--sensitivity", "0"]


def edgec_build(
    path: Path, target: str, out: Path, repeat: int, timeout: int, extra: list[str] | None = None
) -> dict[str, Any]:
    """`edgec build` in its own process: the report (or None) and the one-line error."""
    cmd = [*EDGEC, "build", str(path), "--target", target, "-o", str(out), "--repeat", str(repeat)]
    cmd += extra or []
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"report": None, "error": f"timed out after {timeout} s", "wall": timeout}
    wall = time.perf_counter() - start
    report_path = out / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgec: error")]
    if done.returncode != 0 and not errors:
        errors = [(done.stderr.strip().splitlines() or ["no output"])[-1]]
    return {"report": report, "error": errors[-1] if errors else None, "wall": wall}


def plain_tvm(path: Path, timeout: int) -> str:
    """Whether TVM's own pipeline compiles and runs the model, and its parity with ORT."""
    cmd = [sys.executable, __file__, "--plain-child", str(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"plain TVM: timed out after {timeout} s"
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else f"plain TVM: crashed ({done.returncode})"


def plain_child(path: Path) -> None:
    """from_onnx → tvm.compile (TVM's default pipeline) → Relax VM, against ONNX Runtime."""
    import numpy as np

    from edgec import onnx_graph, reference
    from edgec.errors import first_line
    from edgec.relax.target import tvm_target
    from edgec.targets import get_target

    model, _ = onnx_graph.upgraded(onnx_graph.read(path))
    specs = onnx_graph.fix_input_shapes(model, None)
    try:
        import tvm
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        mod = from_onnx(model, shape_dict={s.name: list(s.shape) for s in specs})
        start = time.perf_counter()
        exe = tvm.compile(mod, target=tvm_target(get_target("x86")))
        seconds = time.perf_counter() - start
        vm = relax.VirtualMachine(exe, tvm.cpu())
        inputs = reference.random_inputs(tuple(specs))
        out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
    except Exception as e:
        print(f"plain TVM fails too: {first_line(e)[:200]}")
        return
    outs = out if isinstance(out, (list, tuple)) or hasattr(out, "__len__") else [out]
    got = [np.asarray(o.numpy()) for o in outs] if not hasattr(out, "numpy") else [out.numpy()]
    with tempfile.TemporaryDirectory() as tmp:
        import onnx

        saved = Path(tmp) / "m.onnx"
        onnx.save(model, str(saved))
        expected = reference.run(saved, inputs)
    diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=False))
    print(f"plain TVM compiles it ({seconds:.0f} s), max abs diff {diff:.1e}")


def output_scale(path: Path) -> float:
    """max |output| of ONNX Runtime on the seeded input edgec's measure stage uses: random
    weights can make a deep model's outputs vanish, which makes any parity figure meaningless."""
    import numpy as np

    from edgec import onnx_graph, reference

    model, _ = onnx_graph.upgraded(onnx_graph.read(path))
    specs = tuple(onnx_graph.fix_input_shapes(model, None))
    with tempfile.TemporaryDirectory() as tmp:
        import onnx

        onnx.save(model, str(Path(tmp) / "m.onnx"))
        outputs = reference.run(Path(tmp) / "m.onnx", reference.random_inputs(specs))
    return max(float(np.max(np.abs(o), initial=0.0)) for o in outputs)


def row(
    name: str, opset: int | str, side: int | str, result: dict[str, Any], scale: float | None
) -> list[str]:
    """One table row from an edgec build's report."""
    report = result["report"]
    magnitude = "—" if scale is None else f"{scale:.1e}"
    if report is None:
        wall = f"{result['wall']:.0f}"
        return [name, str(opset), str(side), wall, "—", magnitude, "—", "—", "—", "—"]
    model = report["model"]
    if model.get("upgraded_from_opset"):
        opset = f"{model['upgraded_from_opset']}→{model['onnx_opset']}"
    elif opset == "as stamped":
        opset = str(model.get("onnx_opset"))
    stages = {s["name"]: s["seconds"] for s in report["stages"]}
    build_s = sum(v for k, v in stages.items() if k != "measure")
    parity = report["parity"]
    diff = parity.get("max_abs_diff")
    verdict = "—" if diff is None else f"{diff:.1e} {'ok' if parity.get('ok') else 'FAIL'}"
    lat = report.get("latency_ms") or {}
    ort = ((report.get("baseline") or {}).get("onnxruntime") or {}).get("p50")
    p50 = lat.get("p50")
    ratio = f"{p50 / ort:.2f}×" if p50 and ort else "—"
    fallbacks = report["schedules"].get("fallbacks", "absent")
    fb = "absent" if fallbacks == "absent" else _fallback_cell(fallbacks)
    return [
        name,
        str(opset),
        str(side),
        f"{build_s:.1f}",
        verdict,
        magnitude,
        f"{p50:.2f}" if p50 else "—",
        f"{ort:.2f}" if ort else "—",
        ratio,
        fb,
    ]


def _fallback_cell(fallbacks: dict[str, str]) -> str:
    if not fallbacks:
        return "0"
    keys = sorted({k.split(" (")[0] for k in fallbacks})
    return f"{len(fallbacks)}: " + ", ".join(keys)[:120]


HEADER = [
    "model",
    "opset",
    "side",
    "build s",
    "parity (max abs diff)",
    "max abs ORT output",
    "edgec p50 ms",
    "ORT p50 ms",
    "ratio",
    "fallbacks",
]


def print_row(cells: list[str]) -> None:
    print("| " + " | ".join(cells) + " |", flush=True)


Job = tuple[str, int | str, int | str, Path, str]  # name, opset, side, model file, target


def run_corpus(args: argparse.Namespace) -> None:
    failures: list[tuple[str, str, str]] = []
    print(f"machine: {host.cpu()}; {time.strftime('%Y-%m-%d')}; repeat {args.repeat}\n")
    print_row(HEADER)
    print("|" + "---|" * len(HEADER))
    for name, opset, side, path, target in corpus_jobs(args, failures):
        with tempfile.TemporaryDirectory() as tmp:
            extra = INT8 if args.int8 else []
            result = edgec_build(path, target, Path(tmp) / "b", args.repeat, args.timeout, extra)
        try:
            scale = output_scale(path) if target == "x86" else None
        except Exception:
            scale = None
        print_row(row(name, opset, side, result, scale))
        if result["error"]:
            cause = result["error"].removeprefix("edgec: error: ")
            plain = plain_tvm(path, args.timeout) if target == "x86" and not args.int8 else ""
            failures.append((name, str(opset), f"{cause[:300]} — {plain}"))
    if failures:
        print("\nFailures (edgec's error — plain TVM on the same file):\n")
        for name, opset, cause in failures:
            print(f"- {name} opset {opset}: {cause}")


def corpus_jobs(args: argparse.Namespace, failures: list[tuple[str, str, str]]) -> Iterator[Job]:
    """The builds to run, each model exported just before its builds."""
    cache = Path(args.cache)
    if args.legacy:
        for graph in legacy_graphs.GRAPHS:
            yield (
                graph,
                "≤9",
                legacy_graphs.SIDE,
                legacy_graphs.write(graph, cache / "legacy"),
                "x86",
            )
        for path in legacy_graphs.wheel_cases(WHEEL_CASES):
            yield f"onnx wheel: {path.parent.name}", "as stamped", "—", path, "x86"
        if not (args.models or args.quick):
            return
    names = QUICK if args.quick else (args.models.split(",") if args.models else zoo.classifiers())
    rpi4 = set(args.rpi4.split(",")) if args.rpi4 else set()
    for name in names:
        for opset in (int(o) for o in args.opsets.split(",")):
            try:
                path = zoo.export(name, opset, args.side, cache / "onnx")
            except Exception as e:
                cells = [name, str(opset), str(args.side), "—", "not exported"]
                print_row(cells + [""] * (len(HEADER) - len(cells)))
                failures.append((name, str(opset), f"torch.onnx.export: {str(e).splitlines()[0]}"))
                continue
            side = zoo.input_side(name, args.side)
            yield name, opset, side, path, "x86"
            if name in rpi4:
                yield f"{name} (rpi4, qemu)", opset, side, path, "rpi4"


def build_time(name: str, args: argparse.Namespace) -> None:
    """Where an untuned x86 build's time goes, against plain tvm.compile of the same module."""
    opset = int(args.opsets.split(",")[-1])
    path = zoo.export(name, opset, args.side, Path(args.cache) / "onnx")
    cmd = [sys.executable, __file__, "--build-time-child", str(path)]
    subprocess.run(cmd, check=False)  # a fresh process: `import tvm` is timed too


def build_time_child(path: Path) -> None:
    timings: list[tuple[str, float, float]] = []  # step, wall s, CPU s (all threads)

    def timed(label: str, fn: Any, *a: Any, **kw: Any) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        value = fn(*a, **kw)
        timings.append((label, time.perf_counter() - start, time.process_time() - cpu))
        return value

    timed("import tvm", __import__, "tvm")
    import tvm
    from tvm import relax

    from edgec import reference
    from edgec.backends import How, Model
    from edgec.backends.tvm import seal
    from edgec.relax import fold_weights, int8_dot, layout, pack_weights
    from edgec.relax.compile import _compile, _rules, _schedule, compile_model
    from edgec.relax.import_onnx import import_onnx
    from edgec.relax.target import tvm_target
    from edgec.stages.load import load
    from edgec.stages.measure import measure
    from edgec.targets import get_target

    profile = get_target("x86")
    target = tvm_target(profile)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx_model = timed("load (onnx check, ORT output shapes)", load, str(path), None, work)
        relax_model = timed("import (from_onnx)", import_onnx, onnx_model)
        module = relax_model.module
        # Interleaved twice: on a shared machine the load changes from one minute to the next.
        for _ in range(2):
            plain = timed("plain: tvm.compile", tvm.compile, module, target=target)
            timed("plain: export_library", plain.export_library, str(work / "plain.so"))
            built = timed("edgec: compile stage", compile_model, relax_model, profile, work)
        bundled = timed("edgec: bundle stage", seal, Model(onnx_model), built, work)
        inputs = reference.random_inputs(onnx_model.inputs)
        timed("edgec: measure stage (repeat 3)", measure, bundled, How(inputs, repeat=3))
        # The compile stage, step by step (the same passes as edgec.relax.compile.prepare).
        passes = [
            ("DecomposeOpsForInference", relax.transform.DecomposeOpsForInference()),
            ("CanonicalizeBindings", relax.transform.CanonicalizeBindings()),
            ("to_channels_last (fence + ConvertLayout)", None),
            ("fold_weight_layouts (numpy)", "fold"),
            ("FastMathTransform", relax.transform.FastMathTransform()),
            ("FoldConstant", relax.transform.FoldConstant()),
            (
                "LegalizeOps",
                relax.transform.LegalizeOps(
                    pack_weights.legalize_map(profile, int8_dot.legalize_map(profile, {}))
                ),
            ),
            ("AnnotateTIROpPattern", relax.transform.AnnotateTIROpPattern()),
            ("FoldConstant (2nd)", relax.transform.FoldConstant()),
            ("FuseOps", relax.transform.FuseOps()),
            ("FuseTIR", relax.transform.FuseTIR()),
        ]
        mod = module
        with target:
            for label, p in passes:
                step = (lambda m: layout.to_channels_last(m, {})) if p is None else p
                step = fold_weights.fold_weight_layouts if p == "fold" else step
                mod = timed(f"  prepare: {label}", step, mod)
            scheduled = timed(f"  schedule ({len(_rules(profile))} rules)", _schedule(profile), mod)
            lowered = timed(
                "  relax default pipeline (memory plan, VM lowering)",
                relax.get_pipeline("default"),
                scheduled,
            )
        exe = timed("  tvm.compile (TIR → LLVM, relax_pipeline=None)", _compile, lowered, target)
        timed("  export_library", exe.export_library, str(work / "steps.so"))
    print(f"build-time breakdown of {path.name} (untuned x86, {host.cpu()}):\n")
    print("| step | wall s | CPU s |\n|---|---|---|")
    for label, wall, cpu in timings:
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |")

    def best(label: str, column: int) -> float:
        return min(t[column] for t in timings if t[0] == label)

    for column, kind in ((1, "wall"), (2, "CPU")):
        edgec_s = best("edgec: compile stage", column)
        plain_s = best("plain: tvm.compile", column) + best("plain: export_library", column)
        print(
            f"\n{kind}, best of 2: edgec compile stage {edgec_s:.1f} s vs plain tvm.compile + "
            f"export_library {plain_s:.1f} s of the same imported module: {edgec_s / plain_s:.2f}×"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", help="comma-separated torchvision names (default: all)")
    parser.add_argument("--opsets", default="17", help="comma-separated, e.g. 11,13,17")
    parser.add_argument("--side", type=int, default=224, help="image side where the model allows")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument(
        "--legacy", action="store_true", help="the old-style graphs and opset-6 onnx wheel cases"
    )
    parser.add_argument("--rpi4", help="models also built for rpi4 and run under qemu-aarch64")
    parser.add_argument(
        "--int8", action="store_true", help="int8 builds (synthetic calibration, every layer)"
    )
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per build")
    parser.add_argument("--cache", default=str(CACHE), help="where exported ONNX files are kept")
    parser.add_argument("--build-time", metavar="MODEL", help="time each build step of MODEL")
    parser.add_argument("--plain-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-time-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        plain_child(args.plain_child)
    elif args.build_time_child:
        build_time_child(args.build_time_child)
    elif args.build_time:
        build_time(args.build_time, args)
    else:
        run_corpus(args)


if __name__ == "__main__":
    main()
