"""Speed of edgec builds against ONNX Runtime, side by side in one run: x86 p50 latency (same
input, same threads) and Arm rpi4 instructions per inference (`../shared/armcount/count.sh`,
qemu-aarch64 -cpu cortex-a72, one thread, ONNX Runtime's official aarch64 build), fp32 and int8.

    .venv/bin/python bench/perf.py                           # every model, fp32 + int8, x86 + rpi4
    .venv/bin/python bench/perf.py --models cnn,mobilenetv2  # a subset
    .venv/bin/python bench/perf.py --precisions fp32 --no-arm    # x86 fp32 only
    .venv/bin/python bench/perf.py --no-x86 --armcount ../shared/armcount
    .venv/bin/python bench/perf.py --models cnn --eager --tune 200 --unscheduled  # x86 extras

Models: the examples (cnn, mobilenetv2, resnet18, transformer) and classic CNNs of the coverage
corpus (torchvision, random weights, exported at opset 17, 224×224 unless --side). int8: every
layer int8 (no sensitivity check), calibrated on 32 seeded random inputs; ONNX Runtime runs the
bundle's QDQ model (the bundle's reference, `model.qdq.onnx`), on x86 and on Arm.

Each measured cell is kept in a JSON cache (--json, default edgec-out/perf.json) keyed by model,
precision, column (x86: the CPU; rpi4: armcount's sources) and the source state (the git trees
of edgec/ and examples/, plus a hash of their uncommitted changes): an interrupted run resumes,
a commit that changes the compiler re-measures, one that changes only bench/ or docs does not.
The Markdown table goes to stdout with dates, commit and machine; progress to stderr. Exit
status 1 when a cell failed (its note is under the table).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EDGEC = [sys.executable, "-m", "edgec"]
EXAMPLES = {  # name → input shape (examples/NAME.py:make_model)
    "cnn": (1, 3, 32, 32),
    "mobilenetv2": (1, 3, 224, 224),
    "resnet18": (1, 3, 224, 224),
    "transformer": (1, 128, 256),
}
# Classic CNNs of the coverage corpus (bench/coverage.py) that build for x86 and rpi4 and count
# in a minute or two each under qemu at 224×224; all four build int8 (ceil-mode pooling, channel
# shuffles and means over H×W have int8 kernels; anything else would be a float island).
CORPUS = ("squeezenet1_1", "shufflenet_v2_x1_0", "mnasnet0_5", "regnet_x_400mf")
PRECISIONS = ("fp32", "int8")
CALIBRATION_SAMPLES = 32  # of 40 seeded random inputs: the 80/20 split keeps 32 for training
# A vector-load/store ratio per FMLA says something only where FMLA does the MACs (int8 kernels
# multiply in integer lanes); below this many FMLA lanes per MAC the cell stays empty.
FMLA_COVERAGE = 0.5


class BenchError(Exception):
    """A build or count that failed: one line for the table's notes. `lasting`: edgec refused
    the model in one line (`edgec: error: ...`), which the same sources repeat, so the failure is
    cached like a measurement; a timeout or a crash is tried again next run."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


@dataclass(frozen=True)
class Model:
    name: str
    shape: tuple[int, ...]
    corpus: bool  # a torchvision classifier exported to ONNX, else examples/NAME.py


def models(names: str, side: int) -> list[Model]:
    known = [*EXAMPLES, *CORPUS]
    out = []
    for name in names.split(","):
        if name in EXAMPLES:
            out.append(Model(name, EXAMPLES[name], corpus=False))
        elif name in CORPUS or name in corpus_names():
            out.append(Model(name, (1, 3, side, side), corpus=True))
        else:
            raise SystemExit(
                f"perf.py: error: unknown model {name!r}; give one of {', '.join(known)} or a "
                "torchvision classifier (bench/zoo.py)"
            )
    return out


def corpus() -> Any:
    """bench/zoo.py (torchvision's classifiers; imported only when a corpus model is asked for)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import zoo

    return zoo


def corpus_names() -> list[str]:
    return corpus().classifiers()


# ---- the environment: source state, machine ----


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True).stdout


SOURCES = ("edgec", "examples")  # what a bundle is built from: cells are keyed by its state


def source_state() -> str:
    """The git trees of edgec/ and examples/ at HEAD, plus a hash of their uncommitted changes:
    a commit that touches only bench/ or docs/ keeps the cache."""
    trees = git("rev-parse", *(f"HEAD:{d}" for d in SOURCES))
    changed = git("diff", "HEAD", "--", *SOURCES)
    for name in git("ls-files", "--others", "--exclude-standard", "--", *SOURCES).split():
        changed += name + (ROOT / name.decode()).read_bytes()
    state = hashlib.sha256(trees).hexdigest()[:12]
    return f"{state}+{hashlib.sha256(changed).hexdigest()[:8]}" if changed else state


def cpu_model() -> str:
    """The CPU's name and its widest vector ISA (virtual machines often hide the model)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), []
    )
    isa = next(
        (name for flag, name in X86_ISAS if flag in flags), platform.machine() if flags else ""
    )
    return ", ".join(x for x in (names[0] if names else platform.machine(), isa) if x)


X86_ISAS = [("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2")]


def armcount_state(armcount: Path) -> str:
    """A hash of the counting tool's sources: a changed count.sh re-counts."""
    files = sorted(p for p in armcount.iterdir() if p.suffix in (".py", ".c", ".sh"))
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:8]


def find_armcount(given: str | None) -> Path:
    """--armcount, else ../shared/armcount beside the project (or beside the main checkout,
    when this is a git worktree)."""
    if given:
        candidates = [Path(given)]
    else:
        common = git("rev-parse", "--path-format=absolute", "--git-common-dir").decode().strip()
        common = Path(common)
        candidates = [ROOT.parent / "shared/armcount", common.parent.parent / "shared/armcount"]
    for c in candidates:
        if (c / "count.sh").is_file():
            return c.resolve()
    raise SystemExit(
        f"perf.py: error: no count.sh in {' or '.join(map(str, candidates))}; "
        "give --armcount DIR, or --no-arm"
    )


# ---- the cache ----


class Cache:
    """Measured cells by key, in a JSON file rewritten after every new cell."""

    def __init__(self, path: Path | None, fresh: bool = False) -> None:
        self.path, self.fresh = path, fresh
        self.cells: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            try:
                self.cells = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise SystemExit(f"perf.py: error: {path} is not JSON ({e}); delete it") from None

    @staticmethod
    def key(model: str, precision: str, column: str, state: str) -> str:
        return f"{model}|{precision}|{column}|{state}"

    def get(self, key: str) -> dict[str, Any] | None:
        return None if self.fresh else self.cells.get(key)

    def put(self, key: str, cell: dict[str, Any]) -> None:
        self.cells[key] = cell
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.partial")
            partial.write_text(json.dumps(self.cells, indent=1, sort_keys=True) + "\n")
            partial.replace(self.path)


# ---- measuring ----


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def model_arg(model: Model) -> str:
    if not model.corpus:
        return f"{ROOT / 'examples' / model.name}.py:make_model"
    zoo = corpus()  # puts the project root on sys.path
    from bench import coverage  # the corpus's ONNX cache, shared with bench/coverage.py

    return str(zoo.export(model.name, 17, model.shape[-1], coverage.CACHE))


def calibration(model: Model, directory: Path) -> Path:
    """40 seeded random inputs of the model's shape (labels unused: nothing is trained)."""
    path = directory / f"calibration-{'x'.join(map(str, model.shape))}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((40, *model.shape[1:])).astype(np.float32)
        np.savez(path, x=x, y=np.zeros(40, np.int64))
    return path


def edgec_build(
    model: Model, precision: str, target: str, out: Path, extra: list[str], timeout: int
) -> dict[str, Any]:
    """`edgec build` in its own process (the path a user takes); its report."""
    cmd = [*EDGEC, "build", model_arg(model), "--target", target, "-o", str(out), *extra]
    if precision == "int8":
        cmd += ["--quantize", "int8", "--calib-data", str(calibration(model, out.parent))]
        cmd += ["--calib-samples", str(CALIBRATION_SAMPLES), "--sensitivity", "0"]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"edgec build timed out after {timeout} s") from None
    report = out / "report.json"
    if done.returncode != 0 or not report.is_file():
        lines = done.stderr.strip().splitlines() or ["no output"]
        errors = [line for line in lines if line.startswith("edgec: error")]
        raise BenchError(f"edgec build: {(errors or lines)[-1][:300]}", lasting=bool(errors))
    log(f"  built {target} in {time.monotonic() - start:.0f} s")
    return json.loads(report.read_text())


def ort_huge_pages_p50(bundle: Path, threads: int, repeat: int) -> float:
    """ONNX Runtime's p50 with glibc's malloc on transparent huge pages, as edgec-run has them
    on x86-64: the baseline that does not credit edgec with a malloc setting."""
    from edgec.runtime import with_huge_pages

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench.runner_env import ORT  # the same input and threads as the build's baseline

    cmd = [sys.executable, "-c", ORT, str(bundle), str(threads), str(repeat)]
    env = with_huge_pages(dict(os.environ))
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise BenchError(f"ONNX Runtime with huge pages: {done.stderr.strip()[-300:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["p50"])


def measure_x86(model: Model, precision: str, args: argparse.Namespace, tmp: Path) -> dict:
    extra = ["--repeat", str(args.repeat)]
    report = edgec_build(model, precision, "x86", tmp / "x86", extra, args.timeout)
    from edgec.targets import get_target

    threads = get_target("x86").capabilities.cores
    return {
        "macs": report["model"]["macs"],
        "edgec_p50": report["latency_ms"]["p50"],
        "ort_p50": report["baseline"]["onnxruntime"]["p50"],
        "ort_huge_pages_p50": ort_huge_pages_p50(tmp / "x86", threads, args.repeat),
        "max_abs_diff": report["parity"]["max_abs_diff"],
    }


def arm_cell(row: dict[str, Any]) -> dict[str, Any]:
    """The columns perf.py shows, from one row of `count.sh --mix --json`."""
    macs = row.get("macs")
    cell = {
        "macs": macs,
        "edgec_insns": row["edgec_insns"],
        "ort_insns": row["ort_insns"],
        "max_abs_diff": row["max_abs_diff"],
        "outputs_agree": row["outputs_agree"],
        "cpu": row["cpu"],
        "onnxruntime": row["onnxruntime"],
    }
    for runtime in ("edgec", "ort"):
        mix = row.get("mix", {}).get(runtime)
        ratio = None
        if mix and mix["fmla"] and (not macs or mix["fmla_lanes"] >= FMLA_COVERAGE * macs):
            ratio = mix["simd_fp_ldst"] / mix["fmla"]
        cell[f"{runtime}_vec_ldst_per_fmla"] = ratio
    return cell


def count_rpi4(model: Model, precision: str, args: argparse.Namespace, tmp: Path) -> dict:
    bundle = tmp / f"{model.name}-{precision}"
    edgec_build(model, precision, "rpi4", bundle, ["--no-measure"], args.timeout)
    counts = tmp / "count.json"
    cmd = [str(args.armcount / "count.sh"), str(bundle), "--mix", "--json", str(counts)]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"count.sh timed out after {args.timeout} s") from None
    # exit 1: the outputs disagree, and the row says so; 2: an error, no rows
    if done.returncode not in (0, 1) or not counts.is_file():
        lines = done.stderr.strip().splitlines() or ["no output"]
        raise BenchError(f"count.sh: {lines[-1][:300]}")
    log(f"  counted rpi4 in {time.monotonic() - start:.0f} s")
    row = json.loads(counts.read_text())[0]  # kept whole: the table derives its columns
    del row["bundle"]  # a temporary directory
    return row


def torch_eager_p50(model: Model, threads: int, repeat: int) -> float:
    import torch

    if model.corpus:
        module = corpus().make(model.name)
    else:
        from edgec.stages.load import load

        with tempfile.TemporaryDirectory() as tmp:
            module = load(model_arg(model), None, Path(tmp)).module
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(model.shape, np.float32))
    samples = []
    with torch.inference_mode():
        for i in range(repeat + 3):
            start = time.perf_counter()
            module(x)
            if i >= 3:
                samples.append((time.perf_counter() - start) * 1e3)
    return float(np.median(samples))


def unscheduled_p50(model: Model, threads: int, repeat: int) -> float:
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
        onnx = export(load(model_arg(model), None, Path(tmp)), Path(tmp))
        module = import_onnx(onnx).module
    executable = tvm.compile(module, target=tvm_target(get_target("x86")))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    rng = np.random.default_rng(0)
    x = [tvm.runtime.tensor(rng.standard_normal(s.shape, np.float32)) for s in onnx.inputs]
    timer = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=repeat)
    return float(timer(*x).median * 1e3)


def interleaved_p50(bundle: Path, threads: int, rounds: int) -> dict[str, float]:
    """bench/ab.py on one bundle: its p50 and ONNX Runtime's, interleaved, wall-clock at
    `threads`, malloc on huge pages; keyed by ab.py's run names."""
    cmd = [sys.executable, str(ROOT / "bench" / "ab.py"), str(bundle), "--threads", str(threads)]
    cmd += ["--rounds", str(rounds), "--huge-pages", "--json"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"bench/ab.py: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_extras(model: Model, args: argparse.Namespace, tmp: Path, cores: int) -> dict:
    """fp32 x86 extras: PyTorch eager, tuned builds, TVM without edgec's rules."""
    cell: dict[str, Any] = {}
    if args.eager:
        cell["eager_p50"] = torch_eager_p50(model, cores, args.repeat)
    if args.tune:
        db = tmp / "tuning-db"
        extra = ["--repeat", str(args.repeat), "--tune", str(args.tune), "--tuning-db", str(db)]
        tuned = edgec_build(model, "fp32", "x86", tmp / "tuned", extra, args.timeout)
        again = edgec_build(model, "fp32", "x86", tmp / "again", extra, args.timeout)
        cell["tuned_p50"] = tuned["latency_ms"]["p50"]
        cell["tuned_ort_p50"] = tuned["baseline"]["onnxruntime"]["p50"]
        cell["tuning_s"] = tuned["tuning"]["seconds"]
        cell["again_measurements"] = again["tuning"]["measurements"]
        cell["again_p50"] = again["latency_ms"]["p50"]
        # the build's own check: tuned and untuned timed interleaved, the faster kept
        check = tuned["tuning"].get("check") or {}
        cell["check"] = [check.get(k) for k in ("tuned_ms", "untuned_ms", "kept", "seconds")]
        stages = {s["name"]: s["seconds"] for s in tuned["stages"]}
        cell["check_s"] = stages.get("tune check")
        # the tuned bundle and ONNX Runtime interleaved in one process, both on huge pages:
        # a ratio that load coming and going between two measurements cannot move
        both = interleaved_p50(tmp / "tuned", cores, max(args.repeat, 40))
        cell["tuned_interleaved_p50"] = both["edgec tuned"]
        cell["ort_interleaved_p50"] = both["ONNX Runtime tuned (model.onnx)"]
    if args.unscheduled:
        cell["unscheduled_p50"] = unscheduled_p50(model, cores, args.repeat)
    return cell


# ---- the table ----


def fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "-" if v is None else format(v, spec) + suffix


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def millions(v: float | None) -> str:
    """3 significant digits or more: 2.95M, 153.4M, 1,154.6M."""
    if v is None:
        return "-"
    return fmt(v / 1e6, ".2f" if v < 10e6 else ",.1f", "M")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


MAIN_HEADER = [
    "model",
    "precision",
    "MACs",
    "x86 edgec ms",
    "x86 ORT ms",
    "x86 edgec/ORT",
    "x86 ORT ms, huge pages",
    "x86 edgec/ORT, huge pages",
    "rpi4 edgec insns",
    "rpi4 ORT insns",
    "rpi4 edgec/ORT",
    "rpi4 edgec int8/fp32",
    "vec ld+st/FMLA edgec, ORT",
    "max abs diff x86, rpi4",
]


def main_table(results: list[dict[str, Any]], notes: list[str]) -> str:
    """One row per model and precision. A result holds model, precision, and per column
    ("x86", "rpi4") a measured cell, None (not asked for), or a failure (a "error" key)."""
    rows = []
    fp32_insns = {  # count.sh rows
        r["model"]: r["rpi4"]["edgec_insns"]
        for r in results
        if r["precision"] == "fp32" and r.get("rpi4") and "error" not in r["rpi4"]
    }

    seen: dict[tuple[str, str], tuple[int, list[str]]] = {}  # one note per row and error

    def failed(cell: dict[str, Any] | None, what: str, name: str) -> str | None:
        if cell is None or "error" not in cell:
            return None
        error = cell["error"]
        if (name, error) not in seen:
            notes.append("")
            seen[name, error] = (len(notes), [])
        number, columns = seen[name, error]
        columns.append(what)
        notes[number - 1] = f"{name} {', '.join(columns)}: {error}"
        return f"fails ({number})"

    for r in results:
        name, x86, arm = f"{r['model']} {r['precision']}", r.get("x86"), r.get("rpi4")
        x86_failed, arm_failed = failed(x86, "x86", name), failed(arm, "rpi4", name)
        x = {} if x86 is None or x86_failed else x86
        a = {} if arm is None or arm_failed else arm_cell(arm)
        mix = [fmt(a.get(k), ".2f") for k in ("edgec_vec_ldst_per_fmla", "ort_vec_ldst_per_fmla")]
        own = fp32_insns.get(r["model"]) if r["precision"] != "fp32" else None
        agree = "" if a.get("outputs_agree", True) else " (differ)"
        rows.append(
            [
                r["model"],
                r["precision"],
                millions(x.get("macs") or a.get("macs")),
                x86_failed or fmt(x.get("edgec_p50"), ".3f"),
                x86_failed or fmt(x.get("ort_p50"), ".3f"),
                x86_failed or fmt(ratio(x.get("edgec_p50"), x.get("ort_p50")), ".2f", "×"),
                x86_failed or fmt(x.get("ort_huge_pages_p50"), ".3f"),
                x86_failed
                or fmt(ratio(x.get("edgec_p50"), x.get("ort_huge_pages_p50")), ".2f", "×"),
                arm_failed or millions(a.get("edgec_insns")),
                arm_failed or millions(a.get("ort_insns")),
                arm_failed or fmt(ratio(a.get("edgec_insns"), a.get("ort_insns")), ".2f", "×"),
                fmt(ratio(a.get("edgec_insns"), own), ".2f", "×"),
                "-" if mix == ["-", "-"] else ", ".join(mix),
                f"{fmt(x.get('max_abs_diff'), '.1e')}, {fmt(a.get('max_abs_diff'), '.1e')}{agree}",
            ]
        )
    return markdown(MAIN_HEADER, rows)


def extras_table(results: list[dict[str, Any]]) -> str:
    header = [
        "model",
        "edgec untuned ms",
        "ORT ms",
        "PyTorch eager ms",
        "edgec tuned ms",
        "tuned/ORT",
        "tuned/ORT interleaved, huge pages",
        "tuning s",
        "2nd build: measurements, p50",
        "check: tuned / untuned ms, kept, s",
        "TVM unscheduled ms",
        "unscheduled/ORT",
    ]
    rows = []
    for r in results:
        x, e = r.get("x86") or {}, r.get("extras")
        if r["precision"] != "fp32" or not e or "error" in e or "error" in x:
            continue
        ort = x.get("ort_p50")
        again = e.get("again_measurements")
        rows.append(
            [
                r["model"],
                fmt(x.get("edgec_p50"), ".3f"),
                fmt(ort, ".3f"),
                fmt(e.get("eager_p50"), ".3f"),
                fmt(e.get("tuned_p50"), ".3f"),
                fmt(ratio(e.get("tuned_p50"), e.get("tuned_ort_p50")), ".2f", "×"),
                fmt(
                    ratio(e.get("tuned_interleaved_p50"), e.get("ort_interleaved_p50")), ".2f", "×"
                ),
                fmt(e.get("tuning_s"), ".0f"),
                "-" if again is None else f"{again}, {e['again_p50']:.3f}",
                check_cell(e.get("check")),
                fmt(e.get("unscheduled_p50"), ".3f"),
                fmt(ratio(e.get("unscheduled_p50"), ort), ".1f", "×"),
            ]
        )
    return markdown(header, rows)


def check_cell(check: list[Any] | None) -> str:
    """The tuned build's check: both in-process figures, which was kept, what it cost."""
    if not check or check[2] is None:
        return "-"
    tuned, untuned, kept, seconds = check
    return f"{fmt(tuned, '.3f')} / {fmt(untuned, '.3f')}, {kept}, {fmt(seconds, '.0f')}"


# ---- the run ----


def measure(
    cache: Cache,
    key: str,
    what: str,
    fn: Any,
    *fn_args: Any,
) -> dict[str, Any]:
    """A cached cell, else fn(*fn_args) stored; a passing failure is returned, not stored."""
    cell = cache.get(key)
    if cell is not None:
        log(f"{what}: cached")
        return cell
    log(f"{what}: measuring")
    try:
        cell = fn(*fn_args)
    except BenchError as e:
        log(f"  {e}")
        if not e.lasting:
            return {"error": str(e)}
        cell = {"error": str(e)}
    cell["measured"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cache.put(key, cell)
    return cell


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_models = ",".join([*EXAMPLES, *CORPUS])
    parser.add_argument("--models", default=default_models, help="comma-separated subset")
    parser.add_argument("--precisions", default="fp32,int8", help="fp32, int8 or both")
    parser.add_argument("--side", type=int, default=224, help="image side of corpus models")
    parser.add_argument("--repeat", type=int, default=30, help="x86 timed runs per model")
    parser.add_argument("--no-x86", action="store_true", help="skip the x86 columns")
    parser.add_argument("--no-arm", action="store_true", help="skip the rpi4 columns")
    parser.add_argument("--armcount", help="armcount directory (default: ../shared/armcount)")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "edgec-out" / "perf.json",
        help="cache of measured cells (default: edgec-out/perf.json)",
    )
    parser.add_argument("--fresh", action="store_true", help="re-measure cached cells")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per build or count")
    extras = parser.add_argument_group("x86 extras, fp32 only (a second table)")
    extras.add_argument("--eager", action="store_true", help="PyTorch eager p50")
    extras.add_argument("--tune", type=int, default=0, help="MetaSchedule trials (0: skip)")
    extras.add_argument(
        "--unscheduled", action="store_true", help="TVM's pipeline without edgec's rules"
    )
    args = parser.parse_args()
    chosen = models(args.models, args.side)
    precisions = args.precisions.split(",")
    if unknown := [p for p in precisions if p not in PRECISIONS]:
        raise SystemExit(f"perf.py: error: unknown precision {unknown[0]}; known: fp32, int8")
    args.armcount = None if args.no_arm else find_armcount(args.armcount)

    from edgec.targets import get_target

    cores = get_target("x86").capabilities.cores
    cpu, state = cpu_model(), source_state()
    cache = Cache(args.json, args.fresh)
    extras_wanted = args.eager or args.tune or args.unscheduled
    results, skipped = [], []
    for model in chosen:
        for precision in precisions:
            result: dict[str, Any] = {"model": model.name, "precision": precision}
            results.append(result)
            name = model.name if not model.corpus else f"{model.name}@{model.shape[-1]}"
            with tempfile.TemporaryDirectory(prefix="edgec-perf-") as tmp:
                if not args.no_x86:
                    key = cache.key(name, precision, f"x86 {cpu}, r{args.repeat}", state)
                    what = f"{name} {precision} x86"
                    result["x86"] = measure(
                        cache, key, what, measure_x86, model, precision, args, Path(tmp)
                    )
                if args.armcount is not None:
                    column = f"rpi4 armcount {armcount_state(args.armcount)}"
                    key = cache.key(name, precision, column, state)
                    what = f"{name} {precision} rpi4"
                    result["rpi4"] = measure(
                        cache, key, what, count_rpi4, model, precision, args, Path(tmp)
                    )
                if extras_wanted and precision == "fp32":
                    column = f"x86 extras {cpu}, r{args.repeat}, e{args.eager}, t{args.tune}, "
                    column += f"u{args.unscheduled}"
                    key = cache.key(name, precision, column, state)
                    what = f"{name} x86 extras"
                    result["extras"] = measure(
                        cache, key, what, measure_extras, model, args, Path(tmp), cores
                    )

    cells = [c for r in results for c in (r.get("x86"), r.get("rpi4"), r.get("extras")) if c]
    stamps = sorted(c["measured"] for c in cells if "measured" in c)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    when = f"measured {stamps[0]} to {stamps[-1]}" if stamps else now
    branch = git("rev-parse", "--abbrev-ref", "HEAD").decode().strip()
    commit = git("rev-parse", "--short", "HEAD").decode().strip()
    dirty = " (uncommitted changes)" if "+" in state else ""
    print(f"\n`bench/perf.py`, {when}, branch {branch} at {commit}{dirty}, sources {state}")
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if not args.no_x86:
        print(f"x86: p50 of {args.repeat} runs, {cores} threads for edgec and ONNX Runtime")
    arms = [arm_cell(r["rpi4"]) for r in results if r.get("rpi4") and "error" not in r["rpi4"]]
    if arms:
        print(
            f"rpi4: instructions per inference, qemu-aarch64 -cpu {arms[0]['cpu']}, one thread, "
            f"ONNX Runtime {arms[0]['onnxruntime']} aarch64; vec ld+st/FMLA where FMLA does the "
            f"MACs (≥ {FMLA_COVERAGE} lanes per MAC)"
        )
    if "int8" in precisions:
        print(
            f"int8: every layer int8, calibrated on {CALIBRATION_SAMPLES} random inputs; "
            "ONNX Runtime runs the bundle's QDQ model"
        )
    notes: list[str] = []
    print()
    print(main_table(results, notes))
    if notes or skipped:
        print()
    for i, note in enumerate(notes, 1):
        print(f"({i}) {note}")
    for line in skipped:
        print(line)
    if extras_wanted:
        print()
        print(extras_table(results))
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
