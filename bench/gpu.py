"""edgec on an NVIDIA GPU against ONNX Runtime's CUDA execution provider and PyTorch eager.

    .venv/bin/python bench/gpu.py                       # untuned edgec, ORT CUDA EP, PyTorch
    .venv/bin/python bench/gpu.py --tune 256            # adds tuned edgec (trials per build)
    .venv/bin/python bench/gpu.py --models resnet18 --precisions fp32 --batches 1
    .venv/bin/python bench/gpu.py --json out.json       # the rows as JSON too

Where the GPU machine cannot hold edgec's compiler (TVM's wheel is 100 MB), build here and
measure there: --prepare DIR --cuda-arch sm_90 builds untuned bundles without a GPU into DIR (one
shared runtime, each model.so with its input and ONNX Runtime's expected output, within
--max-mib); --measure DIR runs them on the GPU with numpy alone (PyTorch eager if torch is
there). bench/gpu_check.sh drives both.

Every latency is a p50 in ms with the inputs already on the GPU and a device sync after each
call: edgec's from its runner (edgec-run --device cuda), ONNX Runtime's through IO binding,
PyTorch's with torch.cuda.synchronize(). Parity is the bundle's own check against ONNX Runtime
(CPU) on the fp32 graph: 1e-4 in fp32, 2e-2 on 99% of the outputs in fp16.

Needs: a GPU (without one this exits 2 in one line); edgec with TVM and nvcc 13; for the ORT
column onnxruntime-gpu of the pinned onnxruntime's version (CUDA 13, cuDNN 9), which cannot
share an environment with the CPU onnxruntime: it is installed into bench/.venv-ort-gpu on first
use (about 256 MB for the wheel plus NVIDIA's libraries: pip must reach PyPI), or --ort-python
names an interpreter that has it. Where neither works, that column says why, and the rest runs.
ORT runs fp32 only: an fp16 graph for it would need a converter this project does not ship.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "resnet18": ("examples/resnet18.py:make_model", (3, 224, 224)),
    "resnet50": ("bench/gpu.py:resnet50", (3, 224, 224)),
    "mobilenetv2": ("examples/mobilenetv2.py:make_model", (3, 224, 224)),
    "transformer": ("examples/transformer.py:make_model", (128, 256)),
}
ORT_VENV = ROOT / "bench" / ".venv-ort-gpu"
WARMUP = 10

# Run by ONNX Runtime's interpreter: p50 of the CUDA provider with device-resident IO.
ORT_SCRIPT = """
import json, sys, time
import numpy as np
import onnxruntime as ort
path, shape, repeat = sys.argv[1], tuple(json.loads(sys.argv[2])), int(sys.argv[3])
session = ort.InferenceSession(path, providers=["CUDAExecutionProvider"])
if session.get_providers()[0] != "CUDAExecutionProvider":
    raise SystemExit("ONNX Runtime fell back to " + session.get_providers()[0])
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
binding = session.io_binding()
on_gpu = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
binding.bind_ortvalue_input(session.get_inputs()[0].name, on_gpu)
for output in session.get_outputs():
    binding.bind_output(output.name, "cuda", 0)
samples = []
for i in range(repeat + 10):
    start = time.perf_counter()
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    if i >= 10:
        samples.append((time.perf_counter() - start) * 1e3)
print(json.dumps({"p50": float(np.median(samples)), "ort": ort.__version__}))
"""


def resnet50() -> Any:
    """torchvision's ResNet-50 with seeded random weights (no download)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from zoo import make

    return make("resnet50")


def no_gpu() -> str | None:
    """Why this machine cannot run the benchmark, or None."""
    from edgec.gpu import find_gpu

    if find_gpu() is None:
        return (
            "no NVIDIA GPU here (nvidia-smi lists none, no /dev/nvidia0): bench/gpu.py times GPUs"
        )
    return None


def edgec_build(
    spec: str,
    shape: tuple[int, ...],
    precision: str,
    repeat: int,
    out: Path,
    tune: int = 0,
    db: Path | None = None,
) -> dict[str, Any]:
    """One real cuda build, measured by its runner; the report, or {"error": line}."""
    cmd = [
        sys.executable,
        "-m",
        "edgec",
        "build",
        str(ROOT / spec.split(":")[0]) + ":" + spec.split(":")[1],
        "--target",
        "cuda",
        "--input-shape",
        ",".join(map(str, shape)),
        "-o",
        str(out),
        "--repeat",
        str(repeat),
        "--force",
    ]
    if precision == "fp16":
        cmd += ["--quantize", "fp16"]
    if tune:
        cmd += ["--tune", str(tune), "--tuning-db", str(db)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in (0, 1) or not (out / "report.json").is_file():
        errors = [e for e in done.stderr.splitlines() if "error" in e] or ["no output"]
        return {"error": errors[-1][:200]}
    return json.loads((out / "report.json").read_text())


def ort_python(given: str | None) -> tuple[str | None, str]:
    """An interpreter with onnxruntime-gpu, and why there is none where there is none."""
    if given:
        return given, ""
    python = ORT_VENV / "bin" / "python"
    # its CUDA 13 and cuDNN 9 libraries come as NVIDIA's wheels with these extras
    wanted = f"onnxruntime-gpu[cuda,cudnn]=={metadata.version('onnxruntime')}"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ORT_VENV)], check=True)
        install = [str(python), "-m", "pip", "install", "--quiet", "numpy", wanted]
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            shutil.rmtree(ORT_VENV, ignore_errors=True)  # bench/gpu.py made it: no half venv
            return None, (
                f"not measured: {wanted} could not be installed ({last[:120]}); where PyPI is "
                f"reachable: python -m venv {ORT_VENV} && {ORT_VENV}/bin/pip install "
                f"'{wanted}' numpy"
            )
    return str(python), ""


def ort_p50(python: str, onnx_path: Path, shape: tuple[int, ...], repeat: int) -> float | str:
    done = subprocess.run(
        [python, "-c", ORT_SCRIPT, str(onnx_path), json.dumps(list(shape)), str(repeat)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return "failed: " + ((done.stderr.strip().splitlines() or ["no output"])[-1])[:120]
    return float(json.loads(done.stdout.strip().splitlines()[-1])["p50"])


def torch_p50(spec: str, shape: tuple[int, ...], precision: str, repeat: int) -> float | str:
    import torch

    from edgec.stages.load import load

    if not torch.cuda.is_available():
        return f"not measured: torch {torch.__version__} sees no CUDA device"
    with tempfile.TemporaryDirectory() as tmp:
        model = load(
            str(ROOT / spec.split(":")[0]) + ":" + spec.split(":")[1], [shape], Path(tmp)
        ).module
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = model.to("cuda", dtype)
    x = torch.randn(shape, device="cuda", dtype=dtype)
    samples = []
    with torch.inference_mode():
        for i in range(repeat + WARMUP):
            start = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            if i >= WARMUP:
                samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples))


def prepare(directory: Path, rows: list[tuple[str, int, str]], arch: str, max_mib: float) -> int:
    """Untuned cuda bundles for `rows`, built here (no GPU needed), laid out for --measure."""
    from edgec import reference

    directory.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="edgec-gpu-prepare-"))
    listed = directory / "rows.json"  # a second --prepare adds to the first
    planned: list[dict[str, Any]] = json.loads(listed.read_text()) if listed.is_file() else []
    for name, batch, precision in rows:
        spec, sample = MODELS[name]
        shape = (batch, *sample)
        out = work / f"{name}-{precision}-b{batch}"
        cmd = [
            sys.executable,
            "-m",
            "edgec",
            "build",
            spec,
            "--target",
            "cuda",
            "--cuda-arch",
            arch,
            "--input-shape",
            ",".join(map(str, shape)),
            "-o",
            str(out),
            "--no-measure",
        ]
        if precision == "fp16":
            cmd += ["--quantize", "fp16"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"{out.name}: {why}", file=sys.stderr)
            continue
        runtime = directory / "runtime"  # one copy for all: edgec-run finds them beside it
        if not runtime.is_dir():
            runtime.mkdir()
            for lib in (
                "edgec-run",
                "libtvm_ffi.so",
                "libtvm_runtime.so",
                "libtvm_runtime_cuda.so",
                "libcudart.so.13",
            ):
                shutil.copy2(out / lib, runtime / lib)
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        if (size + (out / "model.so").stat().st_size) / 2**20 > max_mib:
            print(f"{out.name}: left out, over --max-mib {max_mib:.0f}", file=sys.stderr)
            continue
        row_dir = directory / out.name
        row_dir.mkdir(exist_ok=True)
        shutil.copy2(out / "model.so", row_dir / "model.so")
        manifest = json.loads((out / "manifest.json").read_text())
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.save(row_dir / "input.npy", x)
        for i, y in enumerate(reference.run(out / "model.onnx", [x])):
            np.save(row_dir / f"expected_{i}.npy", y)
        planned.append(
            {
                "dir": out.name,
                "model": name,
                "batch": batch,
                "precision": precision,
                "spec": spec,
                "shape": list(shape),
                "parity": manifest["parity"],
            }
        )
        print(f"{out.name}: ready", file=sys.stderr, flush=True)
    listed.write_text(json.dumps(planned, indent=2) + "\n")
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20
    print(f"{directory}: {len(planned)} bundles, {size:.1f} MiB", file=sys.stderr)
    return 0 if planned else 1


def within(outputs: list[np.ndarray], expected: list[np.ndarray], parity: dict[str, Any]) -> bool:
    """The bundle's own parity rule (edgec.stages.measure.checked), on saved outputs."""
    tolerance = float(parity["tolerance"])
    if parity.get("scale") == "reference":
        tolerance *= max(1.0, max(float(np.max(np.abs(e))) for e in expected))
    errors = np.concatenate(
        [np.abs(o.astype(np.float64) - e).ravel() for o, e in zip(outputs, expected, strict=True)]
    )
    return bool(np.mean(errors <= tolerance) >= float(parity["share"]))


def measure_prepared(directory: Path, repeat: int) -> list[dict[str, Any]]:
    """Run every bundle --prepare laid out in `directory` on this GPU; rows like run_all's."""
    rows = []
    runner = directory / "runtime" / "edgec-run"
    for planned in json.loads((directory / "rows.json").read_text()):
        row_dir = directory / planned["dir"]
        out = Path(tempfile.mkdtemp(prefix="edgec-gpu-out-"))
        cmd = [
            str(runner),
            str(row_dir / "model.so"),
            "--device",
            "cuda",
            "--input",
            str(row_dir / "input.npy"),
            "--output-dir",
            str(out),
            "--repeat",
            str(repeat),
            "--warmup",
            str(WARMUP),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        row: dict[str, Any] = {k: planned[k] for k in ("model", "batch", "precision")}
        if done.returncode != 0:
            row["edgec"] = "failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1]
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
            row["edgec"] = float(result["latency_ms"]["p50"])
            row["gpu_bytes"] = int(result["device"]["memory_bytes"])
            outputs = [np.load(out / o["file"]) for o in result["outputs"]]
            expected = [np.load(row_dir / f"expected_{i}.npy") for i in range(len(outputs))]
            row["parity"] = within(outputs, expected, planned["parity"])
            row["max_abs_diff"] = max(
                float(np.max(np.abs(o.astype(np.float64) - e)))
                for o, e in zip(outputs, expected, strict=True)
            )
        row["edgec_tuned"] = "not run: tuning needs TVM on the GPU machine"
        row["ort_cuda"] = "not run: no onnxruntime-gpu there"
        try:
            shape = tuple(planned["shape"])
            row["torch"] = torch_p50(planned["spec"], shape, planned["precision"], repeat)
        except Exception as e:  # one device call runs every row: a failure is a cell, not a stop
            row["torch"] = f"failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}"
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def run_all(models: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build, run and compare every configuration on this machine (edgec and TVM here)."""
    start = time.perf_counter()
    python, ort_why = ort_python(args.ort_python)
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="edgec-gpu-bench-"))
    for name, batch, precision in configs(models, args):
        row: dict[str, Any] = {"model": name, "batch": batch, "precision": precision}
        if args.budget_s and time.perf_counter() - start > args.budget_s:
            rows.append({**row, "skipped": f"time budget of {args.budget_s:.0f} s spent"})
            continue
        spec, sample = MODELS[name]
        shape = (batch, *sample)
        out = work / f"{name}-{precision}-b{batch}"
        report = edgec_build(spec, shape, precision, args.repeat, out)
        if "error" in report:
            row["edgec"] = f"failed: {report['error']}"
        else:
            row["edgec"] = report["latency_ms"].get("p50")
            row["parity"] = report["parity"].get("ok")
            row["max_abs_diff"] = report["parity"].get("max_abs_diff")
            row["gpu_bytes"] = report["memory"].get("device_bytes")
        if args.tune:
            db = work / f"db-{name}-{precision}"
            tuned_out = out.with_name(out.name + "-tuned")
            tuned = edgec_build(spec, shape, precision, args.repeat, tuned_out, args.tune, db)
            row["edgec_tuned"] = (
                f"failed: {tuned['error']}" if "error" in tuned else tuned["latency_ms"].get("p50")
            )
        if precision != "fp32":
            row["ort_cuda"] = "fp32 only"
        elif python is None:
            row["ort_cuda"] = ort_why
        elif (out / "model.onnx").is_file():
            row["ort_cuda"] = ort_p50(python, out / "model.onnx", shape, args.repeat)
        row["torch"] = torch_p50(spec, shape, precision, args.repeat)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def configs(models: list[str], args: argparse.Namespace) -> list[tuple[str, int, str]]:
    return [
        (name, int(batch), precision)
        for name in models
        for batch in args.batches.split(",")
        for precision in args.precisions.split(",")
    ]


def cell(value: float | str | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else value


def ratio(a: float | str | None, b: float | str | None) -> str:
    ok = isinstance(a, float) and isinstance(b, float) and b > 0
    return f"{a / b:.2f}×" if ok else "—"  # type: ignore[operator]


def table(rows: list[dict[str, Any]]) -> None:
    """The rows as Markdown, under the GPU's name."""
    from edgec.gpu import find_gpu, gpu_compute_capability

    have = gpu_compute_capability()
    print(f"# edgec on {find_gpu()}" + (f" (sm_{have[0]}{have[1]})" if have else ""))
    print(
        "\n| model | prec | batch | edgec | tuned | ORT CUDA | PyTorch | edgec/ORT | tuned/ORT "
        "| parity | GPU MiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['model']} | {r['precision']} | {r['batch']} | {r['skipped']} |")
            continue
        gpu = r.get("gpu_bytes")
        mib = f"{gpu / 2**20:.1f}" if isinstance(gpu, int) else "—"
        print(
            f"| {r['model']} | {r['precision']} | {r['batch']} | {cell(r.get('edgec'))} | "
            f"{cell(r.get('edgec_tuned'))} | {cell(r.get('ort_cuda'))} | "
            f"{cell(r.get('torch'))} | {ratio(r.get('edgec'), r.get('ort_cuda'))} | "
            f"{ratio(r.get('edgec_tuned'), r.get('ort_cuda'))} | {r.get('parity')} | {mib} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--precisions", default="fp32,fp16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--tune", type=int, default=0, help="trials per tuned build (0: none)")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--ort-python", default=None, help="an interpreter with onnxruntime-gpu")
    parser.add_argument("--budget-s", type=float, default=0, help="stop starting rows after this")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--prepare", type=Path, default=None, help="build here into this DIR")
    parser.add_argument("--cuda-arch", default="sm_90", help="--prepare: the GPU's sm_XY")
    parser.add_argument("--max-mib", type=float, default=58, help="--prepare: size limit")
    parser.add_argument("--measure", type=Path, default=None, help="run a --prepare DIR here")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        known = ", ".join(MODELS)
        print(f"bench/gpu.py: error: unknown model {unknown[0]}; known: {known}", file=sys.stderr)
        return 2
    if args.prepare is not None:
        return prepare(args.prepare, configs(models, args), args.cuda_arch, args.max_mib)
    why = no_gpu()
    if why is not None:
        print(f"bench/gpu.py: error: {why}", file=sys.stderr)
        return 2
    if args.measure is not None and not (args.measure / "rows.json").is_file():
        print(
            f"bench/gpu.py: error: {args.measure} holds no rows.json: make it with --prepare",
            file=sys.stderr,
        )
        return 2
    rows = measure_prepared(args.measure, args.repeat) if args.measure else run_all(models, args)
    table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
