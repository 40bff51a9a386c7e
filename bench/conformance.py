"""ONNX's conformance suite against edgec (edgec.backend) and plain TVM, per op category.

    .venv/bin/python bench/conformance.py                 # everything: node + model tests
    .venv/bin/python bench/conformance.py --cnn           # the CNN-relevant node cases only
    .venv/bin/python bench/conformance.py -k resize --verbose

Each case runs in a worker process (a TVM crash takes the worker, not the bench, and the case
counts as failed). A case passes when every output matches the suite's reference within the
case's own rtol/atol (ONNX's runner: 1e-3 / 1e-7 unless the case says otherwise). Failures are
split into expected (listed in tests/data/onnx_expected_failures.toml, with TVM's reason) and
not. Plain TVM (from_onnx → tvm.compile for llvm → Relax VM, no inputs folded) is the yardstick.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import selectors
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgec import conformance

COMPILERS = ("edgec", "plain")
HANG_S = 300  # a case still running after this long counts as failed


def run_case(case: conformance.Case, compiler: str) -> dict[str, Any]:
    """Prepare and run one case; the outcome as a JSON-able dict."""
    import numpy as np
    from onnx.backend.test.runner import Runner

    from edgec import backend

    chosen = backend.EdgecBackend if compiler == "edgec" else backend.PlainTVMBackend
    start = time.perf_counter()
    try:
        rep = chosen.prepare(case.model())
        for inputs, expected in case.data_sets():
            outputs = rep.run(inputs)
            Runner.assert_similar_outputs(
                [np.asarray(e) for e in expected], list(outputs), case.rtol, case.atol
            )
        status, reason, folded, fallbacks = "pass", "", list(rep.folded), rep.fallbacks
    except Exception as e:
        text = " ".join(str(e).split()) or type(e).__name__
        status, reason, folded, fallbacks = "fail", f"{type(e).__name__}: {text}"[:500], [], {}
    return {
        "status": status,
        "reason": reason,
        "seconds": time.perf_counter() - start,
        "folded": folded,
        "fallbacks": fallbacks,  # where edgec's rewrites stepped aside
    }


def worker(names: list[str], compiler: str) -> None:
    """Run the named cases in order, one JSON line each (after a START line)."""
    import tvm  # noqa: F401  (imported before the first case is timed)

    by_name = {c.name: c for c in conformance.cases()}
    for name in names:
        print(json.dumps({"start": name}), flush=True)
        print(json.dumps({"name": name, **run_case(by_name[name], compiler)}), flush=True)


def run_all(names: list[str], compiler: str, log: Any) -> dict[str, dict[str, Any]]:
    """Every case in worker processes; a crashed or hung worker costs only its current case."""
    results: dict[str, dict[str, Any]] = {}
    pending = list(names)
    while pending:
        command = [sys.executable, __file__, "--worker", compiler, *pending]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        current = None
        while True:
            if not selector.select(timeout=HANG_S):
                process.kill()
                break
            line = process.stdout.readline()
            if not line:
                break
            if not line.startswith("{"):
                continue  # something TVM printed
            message = json.loads(line)
            if "start" in message:
                current = message["start"]
                continue
            results[message.pop("name")] = message
            log(compiler, current, message)
            current = None
        process.wait()
        done = set(results)
        if current is not None:
            reason = f"worker died (exit {process.returncode})"
            results[current] = {"status": "fail", "reason": reason, "seconds": 0.0, "folded": []}
            log(compiler, current, results[current])
            done.add(current)
        pending = [n for n in pending if n not in done]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cnn", action="store_true", help="only the CNN-relevant node cases")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--compilers", default=",".join(COMPILERS))
    parser.add_argument("--json", type=Path, help="write every case's outcome here")
    parser.add_argument("--verbose", action="store_true", help="print every case")
    parser.add_argument("--from-json", type=Path, help="print the table of a saved --json run")
    parser.add_argument(
        "--write-expected",
        action="store_true",
        help="rewrite the expected-failure file: every case both edgec and plain TVM fail",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[1:], args.worker[0])
        return

    all_cases = conformance.cases()
    categories = {c.name: c.category() for c in all_cases}
    chosen = [
        c.name
        for c in all_cases
        if args.k in c.name and (not args.cnn or categories[c.name] in conformance.CNN_CATEGORIES)
    ]
    expected = conformance.expected_failures()

    def log(compiler: str, name: str, result: dict[str, Any]) -> None:
        if args.verbose or (
            result["status"] == "fail"
            and compiler == "edgec"
            and conformance.expected_reason(name, expected) is None
        ):
            print(
                f"  {compiler:5} {result['status']:4} {result['seconds']:6.2f}s {name} "
                f"{result['reason'][:200]}",
                flush=True,
            )

    results, wall = {}, {}
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        results, wall = saved["results"], saved.get("wall", {})
        chosen = [n for n in chosen if all(n in r for r in results.values())]
    for compiler in [] if args.from_json else args.compilers.split(","):
        start = time.perf_counter()
        results[compiler] = run_all(chosen, compiler, log)
        wall[compiler] = time.perf_counter() - start
    if args.json:
        args.json.write_text(json.dumps({"results": results, "wall": wall}, indent=1))
    if args.write_expected:
        write_expected(chosen, results, all_cases)
        expected = conformance.expected_failures()
    print_table(chosen, categories, results, expected, wall)


def print_table(
    names: list[str],
    categories: dict[str, str],
    results: dict[str, dict[str, dict[str, Any]]],
    expected: dict[str, str],
    wall: dict[str, float],
) -> None:
    compilers = list(results)
    rows: dict[str, Counter] = defaultdict(Counter)
    for name in names:
        cnn = categories[name] in conformance.CNN_CATEGORIES
        for group in (categories[name], "CNN set", "all") if cnn else (categories[name], "all"):
            rows[group]["cases"] += 1
            for compiler in compilers:
                passed = results[compiler][name]["status"] == "pass"
                listed = conformance.expected_reason(name, expected) is not None
                outcome = (
                    ("xpass" if listed else "pass") if passed else "xfail" if listed else "fail"
                )
                rows[group][f"{compiler} {outcome}"] += 1
    header = ["category", "cases"] + [
        f"{c} {o}" for c in compilers for o in ("pass", "xfail", "fail", "xpass")
    ]
    order = [
        *conformance.CNN_CATEGORIES,
        "CNN set",
        "node: expanded functions",
        "node: other ops",
        *conformance.MODEL_KINDS,
        "all",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for group in [g for g in order if g in rows]:
        print("| " + " | ".join([group] + [str(rows[group][h]) for h in header[1:]]) + " |")
    for compiler in compilers:
        seconds = [r["seconds"] for r in results[compiler].values()]
        print(
            f"{compiler}: {len(seconds)} cases in {wall[compiler]:.0f} s wall, "
            f"{sum(seconds) / max(1, len(seconds)):.2f} s/case compile+run"
        )
    if set(compilers) == set(COMPILERS):
        regressions = [
            n
            for n in names
            if results["plain"][n]["status"] == "pass" and results["edgec"][n]["status"] != "pass"
        ]
        print(f"plain TVM passes, edgec fails: {len(regressions)}")
        for name in regressions:
            print(f"  {name}: {results['edgec'][name]['reason'][:300]}")


def write_expected(
    names: list[str], results: dict[str, dict[str, Any]], cases: list[conformance.Case]
) -> None:
    """The expected-failure file from a run: every case that edgec and plain TVM both fail,
    with TVM's reason; a family of cases that all fail for one reason becomes one glob."""
    failed = {
        n: tvm_reason(n, results["edgec"][n]["reason"])
        for n in names
        if results["edgec"][n]["status"] != "pass" and results["plain"][n]["status"] != "pass"
    }
    everything = [c.name for c in cases]
    entries: dict[str, str] = {}
    for family in sorted({n.split("_")[1] for n in failed}):
        glob = f"test_{family}*"
        members = [n for n in everything if fnmatch.fnmatchcase(n, glob)]
        reasons = {failed.get(n) for n in members}
        if len(reasons) == 1 and None not in reasons:
            entries[glob] = reasons.pop()
        else:
            entries.update((n, failed[n]) for n in members if n in failed)
    lines = [
        "# ONNX conformance cases that TVM itself fails: edgec.backend and plain TVM (from_onnx →",
        "# tvm.compile for llvm) both fail them. Test name or glob → TVM's reason, never edgec's.",
        "# Written by `bench/conformance.py --write-expected`; read by bench/conformance.py and",
        "# tests/integration/test_onnx_conformance.py (strict xfail).",
        "[expected]",
        *(f"{json.dumps(k)} = {json.dumps(v, ensure_ascii=False)}" for k, v in entries.items()),
    ]
    conformance.EXPECTED_FAILURES.write_text("\n".join(lines) + "\n")


# (pattern in the error or test name, reason): the first match names why TVM fails a case.
TVM_REASONS: list[tuple[str, str]] = [
    (
        r"not supported for frontend ONNX: ([A-Za-z0-9_, ]+)",
        "TVM's ONNX importer has no converter for {0}",
    ),
    (r"training", "training mode: TVM's importer builds inference graphs only"),
    (
        r"(INT4|UINT4|INT2|UINT2|FLOAT4|FLOAT8|E4M3|E5M2|bits % 8|float8|float4)",
        "a sub-byte or float8 dtype: TVM's CPU target has no kernel for it",
    ),
    (r"(bfloat16|BFLOAT16)", "bfloat16: TVM's CPU kernels do not take it here"),
    (r"(string|STRING)", "string tensors: TVM has no string dtype"),
    (
        r"(ShapeExpr|Only constant|currently unsupported|Dynamic|requires the input new shape)",
        "dynamic shapes: TVM's importer needs this value as a constant ({0})",
    ),
    (r"(incorrect shape|declares)", "TVM's result has the wrong shape or dtype ({0})"),
    (
        r"(Mismatched elements|location mismatch|Not equal to tolerance)",
        "TVM's result differs from ONNX's reference ({0})",
    ),
    (r"^test\S* '(\w+)'$", "TVM's importer requires an attribute ONNX lets default ({0})"),
]


def tvm_reason(name: str, error: str) -> str:
    """A short reason for the expected-failure file, from the case's name and the error of
    edgec's first (most specialized) attempt: TVM's own message, edgec's wording stripped."""
    detail = re.sub(r"^\w+: ", "", error.strip())
    if "cannot compile this graph: " in detail:
        first_attempt = detail.split("cannot compile this graph: ", 1)[1].split("; ")[0]
        detail = re.sub(r"^[^:]*?(folded|expanded): ", "", first_attempt)
    detail = re.sub(r"^TVM cannot compile this model for \S+, with or without [^:]*: ", "", detail)
    mismatch = re.search(
        r"Mismatched elements: \d+ / \d+|(nan|inf) location mismatch|incorrect shape"
        r"|ACTUAL: dtype\('\w+'\) DESIRED: dtype\('\w+'\)",
        detail,
    )
    if mismatch:
        detail = mismatch.group(0)
    for pattern, reason in TVM_REASONS:
        if match := re.search(pattern, f"{name} {detail}"):
            groups = match.groups()
            found = groups[0] if pattern.startswith(("not supported", "^test")) else detail[:120]
            return reason.format(found if groups else "")
    return f"TVM: {detail[:160]}"


if __name__ == "__main__":
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    main()
