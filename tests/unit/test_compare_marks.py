"""edgec compare: a ratio only between reports of the same model measured the same way; a report
whose parity failed is marked; host and EMULATED latencies are drawn on separate axes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgec import compare
from edgec.cli import main
from tests.conftest import ROOT

OTHER = "f" * 64


def _report(directory: Path, name: str, p50: float, **changes: Any) -> Path:
    data = json.loads((ROOT / "tests" / "data" / "report.json").read_text())
    data["latency_ms"].update({"p50": p50, "p90": p50 * 1.1, "where": changes.get("where", "host")})
    if "graph" in changes:
        data["model"]["graph_sha256"] = changes["graph"]
    if "parity_ok" in changes:
        data["parity"]["ok"] = changes["parity_ok"]
    (directory / name).mkdir()
    (directory / name / "report.json").write_text(json.dumps(data))
    return directory / name


CASES = [
    pytest.param({}, "0.50×", id="same-model-same-way"),
    pytest.param({"graph": OTHER}, "n/a (another model)", id="another-model"),
    pytest.param({"graph": None}, "n/a (model unknown)", id="report-without-digest"),
    pytest.param({"where": "emulated"}, "n/a (emulated vs host)", id="emulated-vs-host"),
    pytest.param({"parity_ok": False}, "new (PARITY FAILED)", id="parity-failed"),
]


@pytest.mark.parametrize(("changes", "shown"), CASES)
def test_compare_marks_what_cannot_be_compared(
    tmp_path: Path, changes: dict[str, Any], shown: str
) -> None:
    base = _report(tmp_path, "base", 2.0)
    new = _report(tmp_path, "new", 1.0, **changes)
    result = CliRunner().invoke(main, ["compare", str(base), str(new)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("new"))
    assert shown in line, line


@pytest.mark.parametrize(
    ("graph", "why"),
    [pytest.param(OTHER, "differ", id="another-model"),
     pytest.param(None, "has no model digest", id="no-digest")],
)  # fmt: skip
def test_the_gate_refuses_a_report_of_another_model(
    tmp_path: Path, graph: str | None, why: str
) -> None:
    base = _report(tmp_path, "base", 1.0)
    new = _report(tmp_path, "new", 175.0, graph=graph)
    result = CliRunner().invoke(
        main, ["compare", str(new), "--baseline", str(base), "--fail-if-slower", "10"]
    )
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert f"not known to be the same model (exported graph sha256 {why})" in errors[0]


def test_host_and_emulated_latencies_get_separate_panels(tmp_path: Path) -> None:
    rows = compare.load([_report(tmp_path, "host", 0.4), _report(tmp_path, "qemu", 90.0,
                         where="emulated")])  # fmt: skip
    titles = [(title, [r.name for r in panel]) for title, _, panel in compare.panels(rows)]
    assert titles[:2] == [("p50 latency: host", ["host"]), ("p50 latency: EMULATED", ["qemu"])]
    assert compare.plot(rows)[:8] == b"\x89PNG\r\n\x1a\n"
