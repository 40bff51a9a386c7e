"""report.json is read as a typed Report, validated once: what is malformed is named in one
line; a report of either unit (milliseconds, instructions) reads without asking the backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgec.cli import main
from edgec.errors import EdgecError
from edgec.report_schema import Report
from tests.conftest import ROOT


def _data() -> dict[str, Any]:
    return json.loads((ROOT / "tests" / "data" / "report.json").read_text())


MALFORMED = [
    pytest.param(("latency_ms", "p50"), "fast", "p50 must be a number", id="latency-not-a-number"),
    pytest.param(("latency_ms", "where"), "moon", "where must be one of", id="unknown-where"),
    pytest.param(("parity", "ok"), "yes", "ok must be true, false or null", id="parity-not-bool"),
    pytest.param(("model", "params"), 1.5, "params must be an integer", id="fractional-params"),
    pytest.param(("target",), "x86", "target must be a table", id="target-not-a-table"),
    pytest.param(("bundle", "static"), "yes", "static must be true, false or null",
                 id="static-not-bool"),
    pytest.param(("bundle", "binary"), {"total_bytes": 3}, "bundle binary needs total_bytes",
                 id="binary-without-its-parts"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "value", "named"), MALFORMED)
def test_a_malformed_report_is_refused_in_one_line_naming_the_field(
    keys: tuple[str, ...], value: Any, named: str
) -> None:
    data = _data()
    table = data
    for key in keys[:-1]:
        table = table[key]
    table[keys[-1]] = value
    with pytest.raises(EdgecError, match=named) as raised:
        Report.from_json(data, "r.json")
    assert len(str(raised.value).splitlines()) == 1
    assert str(raised.value).startswith("r.json is not a valid edgec report")


def test_a_report_round_trips_unchanged() -> None:
    data = _data()
    assert Report.from_json(data).to_json() == data


def test_a_static_bundles_executable_sizes_read_as_typed_fields() -> None:
    data = _data()
    sizes = {"total_bytes": 10, "runtime_bytes": 7, "kernels_bytes": 1, "weights_bytes": 2}
    data["bundle"].update(static=True, binary=sizes)
    report = Report.from_json(data)
    assert report.bundle_static and report.bundle_binary is not None
    assert report.bundle_binary.runtime_bytes == 7 and report.to_json() == data


def test_an_instruction_count_report_compares_by_instructions(tmp_path: Path) -> None:
    data = _data()
    data["latency_ms"] = {"where": "emulated", "skipped": "instructions, not time: see mcu"}
    data["memory"] = {"ram_bytes": 4096, "flash_bytes": 8192, "peak_rss_bytes": None}
    data["mcu"] = {"emulator": "qemu", "instructions": 123456, "instructions_per_mac": 1.2,
                   "layers": []}  # fmt: skip
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "report.json").write_text(json.dumps(data))
    report = Report.read(tmp_path / "m")
    assert (report.speed.unit, report.speed.p50) == ("instructions", 123456)
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "123,456 insn" in result.output and "EMULATED" in result.output
