"""report: everything measured about a build, as report.json (documented schema) and report.md.

The report is assembled from the bundle, the facts its backend gave (edgec.backends.Built) and
a Measurement, whatever its unit; report.md is written from the typed Report
(edgec.report_schema), which every report is validated as before it is written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec import onnx_graph
from edgec.accuracy import ModelFacts
from edgec.artifacts import Measurement
from edgec.report_schema import SCHEMA, Report, Stage
from edgec.staging import replace_bytes

if TYPE_CHECKING:
    from edgec.artifacts import Bundle, OnnxModel
    from edgec.backends import Built


def report(
    built: Built,
    exported: OnnxModel,
    stage_times: list[tuple[str, float]],
    measurement: Measurement | None,
    skipped: str | None,
    model_facts: dict[str, ModelFacts] | None = None,
) -> dict[str, Any]:
    """The report of one build (and its first measurement, unless `skipped` says why not).

    `model_facts` holds params, MACs, size and accuracy after each stage that changed the model
    (load, prune, distill, export): they go on those stages' entries.
    """
    model_facts = model_facts or {}
    stats = onnx_graph.stats(onnx_graph.read(exported.path))
    manifest = built.bundle.typed
    profile = manifest.profile
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "versions": manifest.versions,
        "target": {"name": profile.name, "description": profile.description, **built.target},
        "model": {
            "source": manifest.model,
            "params": stats.params,
            "size_bytes": stats.size_bytes,
            "macs": stats.macs if built.macs is None else built.macs,
            "graph_sha256": manifest.files.get("model.onnx"),  # which model: see compare
            "inputs": [s.to_json() for s in manifest.inputs],
            "outputs": [s.to_json() for s in manifest.outputs],
            **built.model,
        },
        "stages": _stages(stage_times, model_facts),
        "schedules": built.schedules,
        "quantization": built.quantization,
        "tuning": _tuning(built),
        "memory": built.memory,
        "parity": {
            "reference": built.reference,
            "export_max_abs_diff": exported.export_max_abs_diff,
        },
        "bundle": {
            **_bundle_facts(built.bundle),
            "static": built.bundle.typed.static,
            **({"binary": built.binary} if built.binary is not None else {}),
        },
    }
    return with_measurement(data, measurement, skipped)


def _tuning(built: Built) -> dict[str, Any] | None:
    """What tuning did, and the tuned build timed against the untuned one (`check`)."""
    if built.tuning is None and built.tuning_check is None:
        return None
    summary = built.tuning.to_json() if built.tuning else {}
    check = built.tuning_check.to_json() if built.tuning_check else None
    return {**summary, "check": check}


def _bundle_facts(bundle: Bundle) -> dict[str, Any]:
    files = [p for p in bundle.path.iterdir() if p.is_file()]
    return {
        "files": sorted(bundle.typed.files),
        "size_bytes": sum(p.stat().st_size for p in files),
    }


def _stages(
    stage_times: list[tuple[str, float]], model_facts: dict[str, ModelFacts]
) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "seconds": round(s, 3),
            **(model_facts[n].to_json() if n in model_facts else {}),
        }
        for n, s in stage_times
    ]


def with_measurement(
    data: dict[str, Any],
    m: Measurement | None,
    skipped: str | None,
    rerun: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """A copy of the report with the speed, memory and parity of measurement `m`.

    At build time the measure stage's row gets the latency; a later measurement (`rerun`: the
    command, e.g. "run", and its seconds) gets a row of its own, so that no row pairs the
    build's time with another run's latency. Instruction counts go to `mcu` (per inference,
    per MAC, per layer), and `latency_ms` says that they are not time."""
    data = json.loads(json.dumps(data))
    if m is None:
        data["latency_ms"] = {"where": None, "skipped": skipped}
        data["baseline"] = None
        data["parity"].update(
            {"max_abs_diff": None, "tolerance": None, "within_share": None, "ok": None}
        )
        return data
    data["parity"].update(
        {
            "max_abs_diff": m.max_abs_diff,
            "tolerance": m.tolerance,
            "within_share": m.within_share,
            "required_share": m.required_share,
            "ok": m.parity_ok,
        }
    )
    data["baseline"] = (
        {"onnxruntime": {k: round(v, 4) for k, v in m.baseline_ms.items()}}
        if m.baseline_ms
        else None
    )
    if m.unit == "instructions":
        data["latency_ms"] = {"where": m.where, "skipped": "instructions, not time: see mcu"}
        data["mcu"] = _instructions(m, data["model"]["macs"])
        return finite(data)
    assert m.latency_ms is not None
    data["latency_ms"] = {
        **{k: round(v, 4) for k, v in m.latency_ms.items()},
        "where": m.where,
        "repeat": m.repeat,
    }
    data["memory"]["peak_rss_bytes"] = m.peak_rss_bytes
    if m.device_memory_bytes is not None:
        data["memory"]["device_bytes"] = m.device_memory_bytes
    if rerun is None:
        for stage in data["stages"]:
            if stage["name"] == "measure":  # the latency the compression stages bought
                stage["latency_ms_p50"] = data["latency_ms"]["p50"]
                stage["where"] = m.where
    else:
        name, seconds = rerun
        data["stages"] = [s for s in data["stages"] if s["name"] != name]  # the latest only
        data["stages"].append(
            {
                "name": name,
                "seconds": round(seconds, 3),
                "latency_ms_p50": data["latency_ms"]["p50"],
                "where": m.where,
            }
        )
    return finite(data)


def _instructions(m: Measurement, macs: int) -> dict[str, Any]:
    assert m.instructions is not None
    return {
        "emulator": m.counter,
        "instructions": m.instructions,
        "instructions_per_mac": round(m.instructions / macs, 3) if macs else None,
        "layers": [
            {
                "name": layer.name,
                "op": layer.op,
                "macs": layer.macs,
                "instructions": layer.instructions,
                "instructions_per_mac": layer.instructions_per_mac,
            }
            for layer in m.layers
        ],
    }


def write(directory: Path, data: dict[str, Any]) -> None:
    """report.json and report.md in `directory`, each replaced atomically."""
    for name, content in files(data).items():
        replace_bytes(directory / name, content)


def files(data: dict[str, Any]) -> dict[str, bytes]:
    """report.json (strict JSON: no NaN or Infinity) and report.md, as bytes."""
    data = finite(data)
    return {
        "report.json": (json.dumps(data, indent=2, allow_nan=False) + "\n").encode(),
        "report.md": markdown(data).encode(),
    }


def finite(data: Any) -> Any:
    """A copy with every NaN or infinity replaced by null; a dict holding one gets a
    `KEY_reason` entry saying what the number was (JSON has no NaN)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
                out[f"{key}_reason"] = f"not a finite number ({value})"
            elif isinstance(value, (dict, list)) and _has_non_finite(value):
                out[key] = finite(value)
                out.setdefault(f"{key}_reason", "holds numbers that are not finite (NaN or inf)")
            else:
                out[key] = finite(value)
        return out
    if isinstance(data, list):
        return [None if _bad(v) else finite(v) for v in data]
    return data


def _bad(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, list):
        return any(_bad(v) for v in value)
    return False


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:.2f} MiB"


def markdown(report: Report | dict[str, Any]) -> str:
    """The report for people, from the typed report (a dict is validated as one first)."""
    r = report if isinstance(report, Report) else Report.from_json(report)
    model, speed, mem, parity = r.model, r.speed, r.memory, r.parity
    lines = [
        f"# edgec report: {model.source} for {r.target.name}",
        "",
        f"{r.target.description}. "
        f"edgec {r.versions.get('edgec', '?')}, TVM {r.versions.get('tvm', '?')}.",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {_count(model.params)} ({_mib(model.size_bytes)}) |",
        f"| MACs per inference | {_count(model.macs)} |",
    ]
    if speed.unit == "instructions":
        lines.append(
            f"| instructions per inference | {_count(speed.p50)} "
            f"({speed.per_mac} per MAC; {speed.counter}: EMULATED, not time) |"
        )
    elif speed.where is None:
        lines.append(f"| latency | not measured: {speed.skipped} |")
    else:
        label = {
            "host": "on this host",
            "device": "on the device",
            "emulated": "EMULATED, not device time",
        }
        lines.append(
            f"| latency p50 / p90 / p99 | "
            f"{_ms(speed.p50)} / {_ms(speed.p90)} / {_ms(speed.p99)} ms "
            f"({label[speed.where]}, {speed.repeat} runs) |"
        )
    if speed.baseline_p50 is not None:
        ort = speed.baseline_p50
        ratio = speed.p50 / ort if ort and speed.p50 is not None else float("nan")
        lines.append(
            f"| ONNX Runtime p50 (same input, threads) | {ort:.3f} ms (edgec/ORT = {ratio:.2f}×) |"
        )
    if mem.flash_bytes is not None:
        flash, ram = mem.flash, mem.ram
        lines += [
            f"| flash | {mem.flash_bytes:,} B of {_count(mem.board_flash_bytes)} "
            f"(code {_count(flash.get('code'))}, weights and tables "
            f"{_count(flash.get('weights_and_tables'))}) |",
            "| code in the linked image | "
            + ", ".join(f"{name} {size:,}" for name, size in mem.flash_functions.items())
            + " |",
            f"| RAM | {_count(mem.ram_bytes)} B of {_count(mem.board_ram_bytes)} (arena "
            f"{_count(ram.get('arena'))}, lower bound {_count(ram.get('arena_lower_bound'))}; "
            f"scratch {_count(ram.get('scratch'))}; stack {_count(ram.get('stack'))}) |",
        ]
    else:
        lines += [
            f"| planned activation memory | {_mib(mem.planned_bytes)} |",
            f"| peak RSS of the runner | {_mib(mem.peak_rss_bytes)} |",
        ]
        if mem.device_bytes is not None:
            lines.append(f"| GPU memory of the runner | {_mib(mem.device_bytes)} |")
    if parity.export_max_abs_diff is not None:
        lines.append(
            f"| export parity (PyTorch vs ONNX) | max abs diff {parity.export_max_abs_diff:.2e} |"
        )
    verdict = "ok" if parity.ok else "FAILED"
    if parity.max_abs_diff is not None:
        lines.append(
            f"| output parity vs {parity.reference} | max abs diff "
            f"{parity.max_abs_diff:.3g} (tolerance {parity.tolerance or 0:.3g}, {verdict}) |"
        )
    elif parity.max_abs_diff_reason:
        lines.append(
            f"| output parity vs {parity.reference} | max abs diff "
            f"{parity.max_abs_diff_reason} ({verdict}) |"
        )
    quant = r.quantization
    if quant and quant.mode == "fp16":
        lines.append("| quantization | fp16 weights and activations, float32 accumulation |")
    elif quant:
        kept = f"; float: {', '.join(quant.float_layers)}" if quant.float_layers else ""
        if quant.float_islands:  # ops int8 does not cover, by type: the full list is in the JSON
            types = sorted({why.split(":")[0] for why in quant.float_islands.values()})
            kept += f"; {len(quant.float_islands)} float islands ({', '.join(types)})"
        if quant.accuracy:
            kept += (
                f"; val top-1 {quant.accuracy['fp32']:.1f}% fp32 → "
                f"{quant.accuracy['int8']:.1f}% int8"
            )
        lines.append(
            f"| quantization | int8 ({quant.calibration} ranges): {quant.int8_ops} int8 ops, "
            f"{quant.float_ops} float{kept}; weights {_count(quant.weight_bytes)} B "
            f"(fp32 {_count(quant.float_weight_bytes)} B) |"
        )
    sched = r.schedules
    if sched and sched.kernels:
        lines.append(
            f"| kernels | {sched.kernels}: {sched.default_rules} by edgec's default rules"
            + (f", {sched.tuned} tuned" if sched.tuned else "")
            + (f"; {sched.int8_dot} on int8 dot products" if sched.int8_dot else "")
            + (f", unscheduled: {', '.join(sched.unscheduled)}" if sched.unscheduled else "")
            + " |"
        )
    if r.tuning_check is not None:
        lines.append(f"| tuned vs untuned | {r.tuning_check.note()} |")
    for where, why in (sched.fallbacks if sched else {}).items():
        lines.append(f"| fallback | {where}: {why} |")
    lines.append(f"| bundle | {_mib(r.bundle_size_bytes)}, {len(r.bundle_files)} files |")
    if r.bundle_binary is not None:
        b = r.bundle_binary
        lines.append(
            f"| static executable | {_mib(b.total_bytes)}: runtime {_mib(b.runtime_bytes)}, "
            f"kernels {_mib(b.kernels_bytes)}, weights {_mib(b.weights_bytes)} |"
        )
    lines += ["", "| stage | seconds | params | MACs | weights | val top-1 | p50 |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    lines += [_stage_row(s) for s in r.stages]
    if speed.layers:
        lines += ["", "| layer | op | MACs | instructions | per MAC |", "|---|---|---:|---:|---:|"]
        lines += [
            f"| {x.name} | {x.op} | {x.macs:,} | {x.instructions:,} "
            f"| {x.instructions_per_mac or ''} |"
            for x in speed.layers
        ]
    return "\n".join(lines) + "\n"


def _count(n: float | None) -> str:
    return "—" if n is None else f"{n:,}"


def _ms(n: float | None) -> str:
    return "—" if n is None else f"{n:.3f}"


def _stage_row(stage: Stage) -> str:
    def number(value: int | None) -> str:
        return f"{value:,}" if value is not None else ""

    accuracy = f"{stage.accuracy:.1f}%" if stage.accuracy is not None else ""
    latency = (
        f"{stage.latency_ms_p50:.3f} ms ({stage.where})" if stage.latency_ms_p50 is not None else ""
    )
    weights = _mib(stage.size_bytes) if stage.size_bytes is not None else ""
    cells = [stage.name, f"{stage.seconds:.2f}", number(stage.params), number(stage.macs), weights]
    return "| " + " | ".join([*cells, accuracy, latency]) + " |"
