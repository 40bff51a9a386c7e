"""report.json as a typed, frozen value, validated once when it is read.

`edgec build`, `run` and `flash` write report.json; report.md and `edgec compare` read it only
through `Report.from_json`, so a report that is not one (hand-edited, truncated, another tool's)
is refused in one line instead of failing halfway through a table. The speed of a run is in one
of two units, and nothing here asks which backend made the bundle: "ms" (latency_ms: p50, p90,
p99; where: host, device or emulated) or "instructions" (mcu: counted on an emulated core).

`to_json` gives back the JSON the report was read from: sections that no reader needs typed
(inputs, tuning, firmware sections, ...) are carried along unchanged, and keys a newer edgec
adds survive a rewrite by an older reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgec.artifacts import LayerCount
from edgec.errors import EdgecError
from edgec.tuning import TunedAgainstUntuned

SCHEMA = 1
Unit = Literal["ms", "instructions"]
_WHERE = ("host", "device", "emulated")


class _Bad(Exception):
    """A field that is not what the schema says; becomes one EdgecError naming the file."""


def _table(data: Any, key: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{key} must be a table")
    return value


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"{key} must be a number, not {value!r}"[:120])
    return value


def _int(data: dict[str, Any], key: str) -> int | None:
    value = _number(data, key)
    if value is not None and not isinstance(value, int):
        raise _Bad(f"{key} must be an integer, not {value!r}")
    return value


def _text(data: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _Bad(f"{key} must be a string")
    return value


def _flag(data: dict[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise _Bad(f"{key} must be true, false or null")
    return value


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    isa: str | None = None
    device: str | None = None  # cpu, cuda, or mcu
    board: str | None = None  # MCU reports: the board the firmware was linked for


@dataclass(frozen=True)
class Model:
    source: str
    params: int | None
    size_bytes: int | None
    macs: int | None
    graph_sha256: str | None  # of the exported model.onnx: which model this is (compare)


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    params: int | None = None
    macs: int | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    latency_ms_p50: float | None = None
    where: str | None = None


@dataclass(frozen=True)
class Speed:
    """How fast one run was, in `unit`; unit None: not measured (`skipped` says why)."""

    unit: Unit | None
    where: str | None
    skipped: str | None = None
    p50: float | None = None  # ms, or instructions per inference
    p90: float | None = None  # ms only: an instruction count has no spread
    p99: float | None = None
    repeat: int | None = None
    baseline_p50: float | None = None  # ONNX Runtime on the same input (host runs)
    counter: str | None = None  # instructions: how they were counted
    per_mac: float | None = None  # instructions per MAC
    layers: tuple[LayerCount, ...] = ()


@dataclass(frozen=True)
class Memory:
    planned_bytes: int | None = None
    peak_rss_bytes: int | None = None
    device_bytes: int | None = None  # GPU runs: the device memory the runner held
    flash_bytes: int | None = None  # MCU: flash and RAM of the linked library
    ram_bytes: int | None = None
    board_flash_bytes: int | None = None
    board_ram_bytes: int | None = None
    flash: dict[str, int] = field(default_factory=dict)  # code, weights_and_tables, data
    flash_functions: dict[str, int] = field(default_factory=dict)  # linked code, by symbol
    ram: dict[str, int] = field(default_factory=dict)  # arena, lower bound, scratch, stack


@dataclass(frozen=True)
class Parity:
    reference: str
    export_max_abs_diff: float | None = None
    max_abs_diff: float | None = None
    max_abs_diff_reason: str | None = None  # why max_abs_diff is null (NaN or inf)
    tolerance: float | None = None
    within_share: float | None = None
    required_share: float | None = None
    ok: bool | None = None


@dataclass(frozen=True)
class Quantization:
    mode: str  # int8 or fp16
    calibration: str | None = None
    int8_ops: int | None = None
    float_ops: int | None = None
    float_layers: tuple[str, ...] = ()
    float_islands: dict[str, str] = field(default_factory=dict)  # layer → "Op: why float"
    weight_bytes: int | None = None
    float_weight_bytes: int | None = None
    accuracy: dict[str, float] = field(default_factory=dict)  # fp32, int8: val top-1 %
    # int8: output steps ONNX Runtime's QDQ run spreads from edgec's arithmetic (the tolerance)
    reference_steps: int | None = None


@dataclass(frozen=True)
class Schedules:
    kernels: int = 0
    default_rules: int = 0
    tuned: int = 0
    int8_dot: int = 0
    unscheduled: tuple[str, ...] = ()
    fallbacks: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Binary:
    """A static bundle's one executable: its stripped size and where the bytes go."""

    total_bytes: int
    runtime_bytes: int  # runner, TVM runtime, C and C++ libraries
    kernels_bytes: int  # the model's compiled kernels
    weights_bytes: int  # the model's VM executable: weights and bytecode


@dataclass(frozen=True)
class Report:
    """report.json, checked."""

    versions: dict[str, str]
    target: Target
    model: Model
    stages: tuple[Stage, ...]
    speed: Speed
    memory: Memory
    parity: Parity
    bundle_size_bytes: int | None
    bundle_files: tuple[str, ...]
    quantization: Quantization | None = None
    schedules: Schedules | None = None
    board: str | None = None  # the board `edgec flash --run` measured it on
    bundle_static: bool = False  # one static executable holds runner, model and runtime
    bundle_binary: Binary | None = None  # static bundles: that executable's sizes
    tuning_check: TunedAgainstUntuned | None = None  # tuned builds: timed against the untuned
    json: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.json))

    @staticmethod
    def from_json(data: object, where: str = "report.json") -> Report:
        """Validate a parsed report.json; what is wrong is named in one line."""
        if not isinstance(data, dict) or "target" not in data or "latency_ms" not in data:
            raise EdgecError(f"{where} is not an edgec report (no target or latency_ms)")
        try:
            return _parse(data)
        except _Bad as e:
            raise EdgecError(f"{where} is not a valid edgec report: {e}") from None

    @staticmethod
    def read(path: Path) -> Report:
        """A report file, or a bundle directory holding one."""
        file = path / "report.json" if path.is_dir() else path
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EdgecError(f"{file} is not a readable edgec report ({e})") from None
        return Report.from_json(data, str(file))


def _parse(data: dict[str, Any]) -> Report:
    target = _table(data, "target")
    model = _table(data, "model")
    versions = _table(data, "versions", required=False)
    stages = data.get("stages") or []
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise _Bad("stages must be a list of tables")
    quant = _table(data, "quantization", required=False)
    sched = _table(data, "schedules", required=False)
    bundle = _table(data, "bundle", required=False)
    files = bundle.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise _Bad("bundle files must be a list of names")
    return Report(
        versions={str(k): str(v) for k, v in versions.items()},
        target=Target(
            name=_text(target, "name", required=True) or "",
            description=_text(target, "description") or "",
            isa=_text(target, "isa"),
            device=_text(target, "device"),
            board=_text(target, "board"),
        ),
        model=Model(
            source=_text(model, "source", required=True) or "",
            params=_int(model, "params"),
            size_bytes=_int(model, "size_bytes"),
            macs=_int(model, "macs"),
            graph_sha256=_text(model, "graph_sha256"),
        ),
        stages=tuple(_stage(s) for s in stages),
        speed=_speed(data),
        memory=_memory(_table(data, "memory", required=False)),
        parity=_parity(_table(data, "parity", required=False)),
        bundle_size_bytes=_int(bundle, "size_bytes"),
        bundle_files=tuple(files),
        quantization=_quantization(quant) if quant else None,
        schedules=_schedules(sched) if sched else None,
        board=_text(data, "board"),
        bundle_static=bool(_flag(bundle, "static")),
        bundle_binary=_binary(_table(bundle, "binary", required=False)),
        tuning_check=_tuning_check(_table(data, "tuning", required=False)),
        json=data,
    )


def _tuning_check(tuning: dict[str, Any]) -> TunedAgainstUntuned | None:
    if tuning.get("check") is None:
        return None
    try:
        return TunedAgainstUntuned.from_json(tuning["check"])
    except EdgecError as e:
        raise _Bad(str(e)) from None


def _binary(data: dict[str, Any]) -> Binary | None:
    if not data:
        return None
    keys = ("total_bytes", "runtime_bytes", "kernels_bytes", "weights_bytes")
    sizes = {k: _int(data, k) for k in keys}
    if any(v is None or v < 0 for v in sizes.values()):
        raise _Bad(f"bundle binary needs {', '.join(keys)} as byte counts")
    return Binary(**sizes)  # type: ignore[arg-type]


def _stage(s: dict[str, Any]) -> Stage:
    return Stage(
        name=_text(s, "name", required=True) or "",
        seconds=_number(s, "seconds") or 0.0,
        params=_int(s, "params"),
        macs=_int(s, "macs"),
        size_bytes=_int(s, "size_bytes"),
        accuracy=_number(s, "accuracy"),
        latency_ms_p50=_number(s, "latency_ms_p50"),
        where=_text(s, "where"),
    )


def _speed(data: dict[str, Any]) -> Speed:
    latency = _table(data, "latency_ms")
    where = _text(latency, "where")
    if where is not None and where not in _WHERE:
        raise _Bad(f"latency_ms where must be one of {', '.join(_WHERE)}, not {where!r}")
    counted = _table(data, "mcu", required=False)
    if counted:  # instructions on an emulated core
        layers = counted.get("layers") or []
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise _Bad("mcu layers must be a list of tables")
        return Speed(
            unit="instructions",
            where=where or "emulated",
            skipped=_text(latency, "skipped"),
            p50=_int(counted, "instructions"),
            counter=_text(counted, "emulator"),
            per_mac=_number(counted, "instructions_per_mac"),
            layers=tuple(
                LayerCount(
                    name=_text(x, "name", required=True) or "",
                    op=_text(x, "op", required=True) or "",
                    macs=_int(x, "macs") or 0,
                    instructions=_int(x, "instructions") or 0,
                )
                for x in layers
            ),
        )
    baseline = _table(_table(data, "baseline", required=False), "onnxruntime", required=False)
    return Speed(
        unit=None if where is None or _number(latency, "p50") is None else "ms",
        where=where,
        skipped=_text(latency, "skipped"),
        p50=_number(latency, "p50"),
        p90=_number(latency, "p90"),
        p99=_number(latency, "p99"),
        repeat=_int(latency, "repeat"),
        baseline_p50=_number(baseline, "p50"),
    )


def _memory(m: dict[str, Any]) -> Memory:
    def sizes(key: str) -> dict[str, int]:
        table = _table(m, key, required=False)
        return {k: v for k in table if (v := _int(table, k)) is not None}

    return Memory(
        planned_bytes=_int(m, "planned_bytes"),
        peak_rss_bytes=_int(m, "peak_rss_bytes"),
        device_bytes=_int(m, "device_bytes"),
        flash_bytes=_int(m, "flash_bytes"),
        ram_bytes=_int(m, "ram_bytes"),
        board_flash_bytes=_int(m, "board_flash_bytes"),
        board_ram_bytes=_int(m, "board_ram_bytes"),
        flash=sizes("flash"),
        flash_functions=sizes("flash_functions"),
        ram=sizes("ram"),
    )


def _parity(p: dict[str, Any]) -> Parity:
    return Parity(
        reference=_text(p, "reference") or "the reference",
        export_max_abs_diff=_number(p, "export_max_abs_diff"),
        max_abs_diff=_number(p, "max_abs_diff"),
        max_abs_diff_reason=_text(p, "max_abs_diff_reason"),
        tolerance=_number(p, "tolerance"),
        within_share=_number(p, "within_share"),
        required_share=_number(p, "required_share"),
        ok=_flag(p, "ok"),
    )


def _quantization(q: dict[str, Any]) -> Quantization:
    layers = q.get("float_layers") or []
    accuracy = _table(q, "accuracy", required=False)
    return Quantization(
        mode=_text(q, "mode", required=True) or "",
        calibration=_text(q, "calibration"),
        int8_ops=_int(q, "int8_ops"),
        float_ops=_int(q, "float_ops"),
        float_layers=tuple(str(x) for x in layers),
        float_islands={
            str(k): str(v) for k, v in _table(q, "float_islands", required=False).items()
        },
        weight_bytes=_int(q, "weight_bytes"),
        float_weight_bytes=_int(q, "float_weight_bytes"),
        accuracy={k: v for k in accuracy if (v := _number(accuracy, k)) is not None},
        reference_steps=_int(q, "reference_steps"),
    )


def _schedules(s: dict[str, Any]) -> Schedules:
    unscheduled = s.get("unscheduled") or []
    fallbacks = _table(s, "fallbacks", required=False)
    return Schedules(
        kernels=_int(s, "kernels") or 0,
        default_rules=_int(s, "default_rules") or 0,
        tuned=_int(s, "tuned") or 0,
        int8_dot=_int(s, "int8_dot") or 0,
        unscheduled=tuple(str(x) for x in unscheduled),
        fallbacks={str(k): str(v) for k, v in fallbacks.items()},
    )
