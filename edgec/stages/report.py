"""report: everything measured about a build, as report.json (documented schema) and report.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.accuracy import ModelFacts
from edgec.artifacts import BuiltArtifact, Bundle, Measurement
from edgec.onnx_graph import ModelStats
from edgec.relax.tune import TuningSummary
from edgec.staging import replace_bytes

if TYPE_CHECKING:
    from edgec.stages.firmware import Firmware, McuRun
    from edgec.stages.quantize import QuantizedModel

SCHEMA = 1


def report(
    bundle: Bundle,
    built: BuiltArtifact,
    stats: ModelStats,
    stage_times: list[tuple[str, float]],
    measurement: Measurement | None,
    skipped: str | None,
    tuning: TuningSummary | None = None,
    model_facts: dict[str, ModelFacts] | None = None,
) -> dict[str, Any]:
    """The report of one build (and its first measurement, unless `skipped` says why not).

    `model_facts` holds params, MACs, size and accuracy after each stage that changed the model
    (load, prune, distill, export): they go on those stages' entries.
    """
    model_facts = model_facts or {}
    manifest, profile = bundle.manifest, built.target
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "versions": manifest["versions"],
        "target": {
            "name": profile.name,
            "description": profile.description,
            "tvm_target": manifest["tvm_target"],
            "isa": profile.capabilities.isa,
            "device": profile.capabilities.device,
        },
        "model": {
            "source": manifest["model"],
            "params": stats.params,
            "size_bytes": stats.size_bytes,
            "macs": stats.macs,
            "graph_sha256": manifest["files"].get("model.onnx"),  # which model: see compare
            "inputs": manifest["inputs"],
            "outputs": manifest["outputs"],
            "onnx_opset": built.onnx.opset,
            # a source stamped below opset 7, upgraded by onnx's version converter at load
            "upgraded_from_opset": built.onnx.upgraded_from,
            "folded_inputs": list(built.onnx.folded_inputs),
            "folded_shape_nodes": built.onnx.folded_shape_nodes,
        },
        "stages": _stages(stage_times, model_facts),
        "schedules": built.schedules,
        "quantization": built.quantization,
        "tuning": tuning.to_json() if tuning else None,
        "memory": {"planned_bytes": built.planned_bytes, "peak_rss_bytes": None},
        "parity": {
            "reference": "onnxruntime",
            "export_max_abs_diff": built.onnx.export_max_abs_diff,
        },
        "bundle": _bundle_facts(bundle),
    }
    return with_measurement(data, measurement, skipped)


def mcu_report(
    bundle: Bundle,
    fw: Firmware,
    quantized: QuantizedModel,
    stats: ModelStats,
    stage_times: list[tuple[str, float]],
    run: McuRun | None,
    skipped: str | None,
    model_facts: dict[str, ModelFacts],
) -> dict[str, Any]:
    """The report of a microcontroller build: flash and RAM against the board, instructions
    per inference and per MAC on the emulated core, bit-exact parity with the reference."""
    from edgec.targets import get_target

    manifest, library, fp, board = bundle.manifest, fw.library, fw.footprint, fw.board
    profile = get_target(manifest["target"])
    macs = sum(layer.macs for layer in library.layers)
    assert board.memory is not None
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "versions": manifest["versions"],
        "target": {
            "name": profile.name,
            "description": profile.description,
            "board": board.name,
            "isa": profile.capabilities.isa,
            "device": "mcu",
            "dsp": profile.capabilities.has_dsp,
        },
        "model": {
            "source": manifest["model"],
            "params": stats.params,
            "size_bytes": stats.size_bytes,
            "macs": macs,
            "graph_sha256": manifest["files"].get("model.onnx"),  # which model: see compare
            "inputs": manifest["inputs"],
            "outputs": manifest["outputs"],
        },
        "stages": _stages(stage_times, model_facts),
        "quantization": quantized.to_json(),
        "memory": {
            "flash_bytes": fp.flash_bytes,
            "ram_bytes": fp.ram_bytes,
            "flash": {
                "code": fp.code_bytes,
                "weights_and_tables": fp.const_bytes,
                "data": fp.data_bytes,
            },
            "ram": {
                "arena": library.arena_bytes,
                "arena_lower_bound": library.arena_lower_bound,
                "scratch": library.scratch_bytes,
                "bss_and_data": fp.bss_bytes + fp.data_bytes,
                "stack": fp.stack_bytes,
            },
            "board_flash_bytes": board.memory.flash_bytes,
            "board_ram_bytes": board.memory.ram_bytes,
            "firmware_sections": fw.elf_sections,
            "planned_bytes": library.arena_bytes,
            "peak_rss_bytes": None,
        },
        "mcu": None,
        "latency_ms": {"where": None, "skipped": skipped},
        "baseline": None,
        "schedules": None,
        "tuning": None,
        "parity": {
            "reference": "edgec int8 reference (numpy)",
            "export_max_abs_diff": quantized.onnx.export_max_abs_diff,
        },
        "bundle": _bundle_facts(bundle),
    }
    return with_mcu_run(data, library.layers, run, manifest["expected_output"])


def with_mcu_run(
    data: dict[str, Any], layers: Any, run: McuRun | None, expected: list[int]
) -> dict[str, Any]:
    """A copy of an MCU report with one emulated run's instructions and parity."""
    data = json.loads(json.dumps(data))
    if run is None:
        data["parity"].update({"max_abs_diff": None, "tolerance": 0, "ok": None})
        return data
    diff = int(np.max(np.abs(run.output.astype(np.int32) - np.array(expected)), initial=0))
    macs = data["model"]["macs"]
    data["parity"].update(
        {
            "max_abs_diff": diff,
            "tolerance": 0,
            "within_share": float(diff == 0),
            "required_share": 1.0,
            "ok": diff == 0,
        }
    )
    data["latency_ms"] = {"where": "emulated", "skipped": "instructions, not time: see mcu"}
    data["mcu"] = {
        "emulator": "qemu-system-arm -icount shift=0",
        "instructions": run.instructions,
        "instructions_per_mac": round(run.instructions / macs, 3) if macs else None,
        "layers": [
            {
                "name": layer["name"] if isinstance(layer, dict) else layer.name,
                "op": layer["op"] if isinstance(layer, dict) else layer.op,
                "macs": (m := layer["macs"] if isinstance(layer, dict) else layer.macs),
                "instructions": n,
                "instructions_per_mac": round(n / m, 3) if m else None,
            }
            for layer, n in zip(layers, run.layer_instructions, strict=True)
        ],
    }
    return finite(data)


def _bundle_facts(bundle: Bundle) -> dict[str, Any]:
    files = [p for p in bundle.path.iterdir() if p.is_file()]
    return {
        "files": sorted(bundle.manifest["files"]),
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
    """A copy of the report with the latency, memory and parity of measurement `m`.

    At build time the measure stage's row gets the latency; a later measurement (`rerun`: the
    command, e.g. "run", and its seconds) gets a row of its own, so that no row pairs the
    build's time with another run's latency."""
    data = json.loads(json.dumps(data))
    if m is None:
        data["latency_ms"] = {"where": None, "skipped": skipped}
        data["baseline"] = None
        data["parity"].update(
            {"max_abs_diff": None, "tolerance": None, "within_share": None, "ok": None}
        )
        return data
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
    return finite(data)


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


def markdown(data: dict[str, Any]) -> str:
    """The report for people."""
    model, lat, mem, parity = data["model"], data["latency_ms"], data["memory"], data["parity"]
    lines = [
        f"# edgec report: {model['source']} for {data['target']['name']}",
        "",
        f"{data['target']['description']}. "
        f"edgec {data['versions']['edgec']}, TVM {data['versions']['tvm']}.",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {model['params']:,} ({_mib(model['size_bytes'])}) |",
        f"| MACs per inference | {model['macs']:,} |",
    ]
    mcu = data.get("mcu")
    if mcu:
        lines.append(
            f"| instructions per inference | {mcu['instructions']:,} "
            f"({mcu['instructions_per_mac']} per MAC; {mcu['emulator']}: EMULATED, not time) |"
        )
    elif lat.get("where") is None:
        lines.append(f"| latency | not measured: {lat.get('skipped')} |")
    else:
        label = {
            "host": "on this host",
            "device": "on the device",
            "emulated": "EMULATED, not device time",
        }
        lines.append(
            f"| latency p50 / p90 / p99 | "
            f"{lat['p50']:.3f} / {lat['p90']:.3f} / {lat['p99']:.3f} ms "
            f"({label[lat['where']]}, {lat['repeat']} runs) |"
        )
    if data.get("baseline"):
        ort = data["baseline"]["onnxruntime"]
        ratio = lat["p50"] / ort["p50"] if ort["p50"] else float("nan")
        lines.append(
            f"| ONNX Runtime p50 (same input, threads) | {ort['p50']:.3f} ms "
            f"(edgec/ORT = {ratio:.2f}×) |"
        )
    if "flash_bytes" in mem:
        flash, ram = mem["flash"], mem["ram"]
        lines += [
            f"| flash | {mem['flash_bytes']:,} B of {mem['board_flash_bytes']:,} "
            f"(code {flash['code']:,}, weights and tables {flash['weights_and_tables']:,}) |",
            f"| RAM | {mem['ram_bytes']:,} B of {mem['board_ram_bytes']:,} (arena "
            f"{ram['arena']:,}, lower bound {ram['arena_lower_bound']:,}; scratch "
            f"{ram['scratch']:,}; stack {ram['stack']:,}) |",
        ]
    else:
        lines += [
            f"| planned activation memory | {_mib(mem['planned_bytes'])} |",
            f"| peak RSS of the runner | {_mib(mem['peak_rss_bytes'])} |",
        ]
        if mem.get("device_bytes") is not None:
            lines.append(f"| GPU memory of the runner | {_mib(mem['device_bytes'])} |")
    if parity.get("export_max_abs_diff") is not None:
        lines.append(
            "| export parity (PyTorch vs ONNX) | "
            f"max abs diff {parity['export_max_abs_diff']:.2e} |"
        )
    if parity.get("max_abs_diff") is not None:
        verdict = "ok" if parity["ok"] else "FAILED"
        lines.append(
            f"| output parity vs {parity['reference']} | max abs diff "
            f"{parity['max_abs_diff']:.3g} (tolerance {parity['tolerance']:.3g}, {verdict}) |"
        )
    elif parity.get("max_abs_diff_reason"):
        lines.append(
            f"| output parity vs {parity['reference']} | max abs diff "
            f"{parity['max_abs_diff_reason']} ({'ok' if parity['ok'] else 'FAILED'}) |"
        )
    quant = data.get("quantization")
    if quant and quant["mode"] == "fp16":
        lines.append("| quantization | fp16 weights and activations, float32 accumulation |")
    elif quant:
        kept = f"; float: {', '.join(quant['float_layers'])}" if quant["float_layers"] else ""
        accuracy = quant.get("accuracy") or {}
        if accuracy:
            kept += f"; val top-1 {accuracy['fp32']:.1f}% fp32 → {accuracy['int8']:.1f}% int8"
        lines.append(
            f"| quantization | int8 ({quant['calibration']} ranges): {quant['int8_ops']} int8 ops, "
            f"{quant['float_ops']} float{kept}; weights {quant['weight_bytes']:,} B "
            f"(fp32 {quant['float_weight_bytes']:,} B) |"
        )
    sched = data.get("schedules") or {}
    if sched.get("kernels"):
        lines.append(
            f"| kernels | {sched['kernels']}: {sched['default_rules']} by edgec's default rules"
            + (f", {sched['tuned']} tuned" if sched.get("tuned") else "")
            + (f"; {sched['int8_dot']} on int8 dot products" if sched.get("int8_dot") else "")
            + (f", unscheduled: {', '.join(sched['unscheduled'])}" if sched["unscheduled"] else "")
            + " |"
        )
    for where, why in (sched.get("fallbacks") or {}).items():
        lines.append(f"| fallback | {where}: {why} |")
    lines.append(
        f"| bundle | {_mib(data['bundle']['size_bytes'])}, {len(data['bundle']['files'])} files |"
    )
    lines += ["", "| stage | seconds | params | MACs | weights | val top-1 | p50 |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    lines += [_stage_row(s) for s in data["stages"]]
    if mcu:
        lines += ["", "| layer | op | MACs | instructions | per MAC |", "|---|---|---:|---:|---:|"]
        lines += [
            f"| {layer['name']} | {layer['op']} | {layer['macs']:,} | {layer['instructions']:,} "
            f"| {layer['instructions_per_mac'] or ''} |"
            for layer in mcu["layers"]
        ]
    return "\n".join(lines) + "\n"


def _stage_row(stage: dict[str, Any]) -> str:
    def number(key: str) -> str:
        return f"{stage[key]:,}" if stage.get(key) is not None else ""

    accuracy = f"{stage['accuracy']:.1f}%" if stage.get("accuracy") is not None else ""
    latency = (
        f"{stage['latency_ms_p50']:.3f} ms ({stage['where']})"
        if stage.get("latency_ms_p50") is not None
        else ""
    )
    weights = _mib(stage["size_bytes"]) if stage.get("size_bytes") is not None else ""
    cells = [stage["name"], f"{stage['seconds']:.2f}", number("params"), number("macs"), weights]
    return "| " + " | ".join([*cells, accuracy, latency]) + " |"
