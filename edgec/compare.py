"""compare: reports side by side, relative to a baseline, as text, Markdown, a PNG and HTML.

A report's latency is only compared with a baseline of the same model (the same exported
graph) measured the same way (host, device or emulated); emulated timings, reports whose parity
failed and reports from another edgec version are marked, never mixed silently.
Microcontroller reports compare by instructions per inference instead of time.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from edgec.errors import EdgecError
from edgec.report_schema import Report


@dataclass(frozen=True)
class Row:
    name: str
    target: str
    board: str
    where: str  # host, device, emulated, or "-" (not measured)
    p50: float | None  # ms, or instructions for MCU reports
    p90: float | None
    unit: str  # "ms" or "insn"
    memory: int | None  # peak RSS, or RAM for MCU reports
    flash: int | None
    size: int | None
    accuracy: float | None
    version: str
    graph: str | None = None  # sha256 of the exported model.onnx: which model this is
    parity_ok: bool | None = None  # False: the outputs were wrong, the timing means little

    def same_model(self, base: Row) -> bool:
        return self.graph is not None and self.graph == base.graph

    def comparable(self, base: Row) -> bool:
        return (
            self.unit == base.unit
            and self.where == base.where
            and self.p50 is not None
            and self.same_model(base)
        )


def load(paths: list[Path]) -> list[Row]:
    """One row per report.json (or bundle directory holding one)."""
    rows = []
    for path in paths:
        file = path / "report.json" if path.is_dir() else path
        rows.append(_row(file, Report.read(file)))
    return rows


def _row(file: Path, report: Report) -> Row:
    speed, memory = report.speed, report.memory
    name = file.parent.name if file.name == "report.json" else file.stem
    accuracy = (report.quantization.accuracy if report.quantization else {}).get("int8")
    if accuracy is None:
        with_accuracy = [s for s in report.stages if s.accuracy is not None]
        accuracy = with_accuracy[-1].accuracy if with_accuracy else None
    counted = speed.unit == "instructions"  # deterministic: one count, no spread
    return Row(
        name=name,
        target=report.target.name,
        board=report.board or report.target.board or "-",
        where=speed.where or "-",
        p50=None if speed.p50 is None else float(speed.p50),
        p90=speed.p90,
        unit="insn" if counted else "ms",
        memory=memory.ram_bytes if counted else memory.peak_rss_bytes,
        flash=memory.flash_bytes,
        size=report.bundle_size_bytes,
        accuracy=accuracy,
        version=report.versions.get("edgec", "?"),
        graph=report.model.graph_sha256,
        parity_ok=report.parity.ok,
    )


HEADER = ("report", "target", "board", "measured", "p50", "p90", "vs baseline", "memory",
          "flash", "bundle", "accuracy")  # fmt: skip


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _speed(row: Row, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} insn" if row.unit == "insn" else f"{value:.3f} ms"


def cells(rows: list[Row], base: Row) -> list[tuple[str, ...]]:
    """The table's cells; the baseline row's ratio is 1.00×."""
    out = []
    for row in rows:
        if row.comparable(base) and base.p50:
            ratio = f"{row.p50 / base.p50:.2f}×"  # type: ignore[operator]
        elif row.p50 is None:
            ratio = "n/a"
        elif not row.same_model(base):  # a ratio of two different models means nothing
            ratio = "n/a (model unknown)" if row.graph is None else "n/a (another model)"
        else:
            ratio = f"n/a ({row.where} vs {base.where})"
        marks = "" if row.version == base.version else f" (edgec {row.version})"
        if row.parity_ok is False:
            marks += " (PARITY FAILED)"
        where = row.where.upper() if row.where == "emulated" else row.where
        out.append((
            row.name + marks, row.target, row.board, where, _speed(row, row.p50),
            _speed(row, row.p90), ratio, _bytes(row.memory), _bytes(row.flash), _bytes(row.size),
            "-" if row.accuracy is None else f"{row.accuracy:.1f}%",
        ))  # fmt: skip
    return out


def text(rows: list[Row], base: Row) -> str:
    table = [HEADER, *cells(rows, base)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in table]
    return "\n".join(lines) + f"\n(baseline: {base.name}; EMULATED times are not device times)\n"


def markdown(rows: list[Row], base: Row) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in cells(rows, base)]
    return "\n".join(lines) + f"\n\nBaseline: {base.name}. EMULATED times are not device times.\n"


def regressions(rows: list[Row], base: Row, percent: float) -> list[str]:
    """Rows slower than the baseline by more than `percent` (same way of measuring only)."""
    slow = []
    for row in rows:
        if row is not base and row.p50 is not None and not row.same_model(base):
            which = "has no model digest" if row.graph is None or base.graph is None else "differ"
            raise EdgecError(
                f"{row.name} and the baseline {base.name} are not known to be the same model "
                f"(exported graph sha256 {which}); --fail-if-slower gates builds of one model"
            )
        if row is base or not row.comparable(base) or not base.p50:
            continue
        if row.p50 > base.p50 * (1 + percent / 100):  # type: ignore[operator]
            slow.append(f"{row.name}: p50 {_speed(row, row.p50)} vs {_speed(base, base.p50)}")
    return slow


def panels(rows: list[Row]) -> list[tuple[str, str, list[Row]]]:
    """The chart's panels: (title, unit, rows). Host, device and EMULATED latencies differ by
    orders of magnitude, so each gets its own panel and axis; instructions and memory too."""
    out = []
    for where in ("host", "device", "emulated", "-"):
        timed = [r for r in rows if r.unit == "ms" and r.p50 is not None and r.where == where]
        if timed:
            label = "EMULATED" if where == "emulated" else where
            out.append((f"p50 latency: {label}", "ms", timed))
    counted = [r for r in rows if r.unit == "insn" and r.p50 is not None]
    if counted:
        out.append(("instructions per inference (MCU)", "millions", counted))
    out.append(("memory: peak RSS, or MCU RAM", "MiB", rows))
    return out


def plot(rows: list[Row]) -> bytes:
    """A PNG, one panel per way of measuring (see `panels`), memory last; a panel whose values
    span more than 100× gets a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = panels(rows)
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen) + 1, 4.2))
    axes = list(axes) if len(chosen) > 1 else [axes]
    colors = {"ms": "#2b6cb0", "millions": "#805ad5", "MiB": "#38a169"}
    for axis, (title, unit, panel) in zip(axes, chosen, strict=True):
        if unit == "MiB":
            values = [(r.memory or 0) / 2**20 for r in panel]
        elif unit == "millions":
            values = [(r.p50 or 0) / 1e6 for r in panel]
        else:
            values = [r.p50 or 0 for r in panel]
        color = "#d98c2b" if "EMULATED" in title else colors[unit]
        axis.bar([r.name for r in panel], values, color=color)
        axis.set_title(title)
        axis.set_ylabel(unit)
        positive = [v for v in values if v > 0]
        if positive and max(positive) > 100 * min(positive):
            axis.set_yscale("log")
        axis.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def page(rows: list[Row], base: Row) -> str:
    """A self-contained HTML page: the table and the chart (inline PNG)."""
    chart = base64.b64encode(plot(rows)).decode()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r in cells(rows, base)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>edgec compare</title><style>"
        "body{font-family:sans-serif;margin:2em;background:#fff;color:#111}"
        "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:4px 8px}"
        "th{background:#eef}</style></head><body><h1>edgec: reports compared</h1>"
        f"<p>Baseline: {html.escape(base.name)}. EMULATED times are not device times.</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        f"<p><img alt='latency and memory' src='data:image/png;base64,{chart}'></p>"
        "</body></html>\n"
    )
