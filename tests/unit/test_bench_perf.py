"""bench/perf.py's side-by-side table: count.sh's JSON rows read into the Arm columns, the
Markdown table, and the cache that makes a partial run resumable (no build, no qemu)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import perf


def count_row(
    edgec_insns: float, ort_insns: float, edgec_fmla: tuple[int, int, int], macs: int | None
) -> dict[str, Any]:
    """A row as `count.sh --mix --json` writes it; fmla = (FMLA, FMLA lanes, vec ld+st)."""
    fmla, lanes, ldst = edgec_fmla
    return {
        "model": "m",
        "target": "rpi4",
        "cpu": "cortex-a72",
        "onnxruntime": "1.31.1",
        "macs": macs,
        "edgec_insns": edgec_insns,
        "ort_insns": ort_insns,
        "edgec_over_ort": edgec_insns / ort_insns,
        "max_abs_diff": 1.5e-08,
        "outputs_agree": True,
        "mix": {
            "edgec": {
                "insns": edgec_insns,
                "fmla": fmla,
                "fmla_lanes": lanes,
                "simd_fp_ldst": ldst,
            },
            "ort": {
                "insns": ort_insns,
                "fmla": 1_632_768,
                "fmla_lanes": 6_531_072,
                "simd_fp_ldst": 636_614,
            },
        },
    }


MACS = 6_490_752


@pytest.mark.parametrize(
    ("row", "edgec", "ort"),
    [
        # every MAC on an FMLA lane: loads+stores per FMLA, both runtimes
        (count_row(2.95e6, 3.54e6, (1_622_688, 6_490_752, 811_344), MACS), 0.5, 0.3899),
        # int8 kernels multiply in integer lanes: no FMLA, no ratio
        (count_row(4.33e6, 3.88e6, (0, 0, 549_619), MACS), None, 0.3899),
        # a few FMLA (a float tail) do not stand for the model's MACs
        (count_row(4.33e6, 3.88e6, (100, 400, 549_619), MACS), None, 0.3899),
        # no MACs in the report: any FMLA counts
        (count_row(2.95e6, 3.54e6, (1_622_688, 6_490_752, 811_344), None), 0.5, 0.3899),
    ],
    ids=["fp32", "int8-no-fmla", "few-fmla", "no-macs"],
)
def test_arm_columns_come_from_count_json(
    row: dict[str, Any], edgec: float | None, ort: float
) -> None:
    cell = perf.arm_cell(row)
    assert cell["edgec_insns"] == row["edgec_insns"] and cell["ort_insns"] == row["ort_insns"]
    assert cell["edgec_vec_ldst_per_fmla"] == (None if edgec is None else pytest.approx(edgec))
    assert cell["ort_vec_ldst_per_fmla"] == pytest.approx(ort, abs=1e-4)


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (2_953_120, "2.95M"), (153_412_000, "153.4M"), (1_154_600_000, "1,154.6M")],
    ids=["missing", "small", "hundreds", "thousands"],
)
def test_instruction_counts_print_in_millions(value: float | None, text: str) -> None:
    assert perf.millions(value) == text


def table_rows(results: list[dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    notes: list[str] = []
    lines = perf.main_table(results, notes).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == perf.MAIN_HEADER
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert all(len(r) == len(header) for r in rows)
    return [dict(zip(header, r, strict=True)) for r in rows], notes


X86 = {"macs": MACS, "edgec_p50": 0.165, "ort_p50": 0.110, "max_abs_diff": 7.5e-09}


def test_table_puts_x86_and_arm_side_by_side() -> None:
    fp32 = count_row(3.0e6, 3.5e6, (1_622_688, 6_490_752, 811_344), MACS)
    int8 = count_row(4.5e6, 3.9e6, (0, 0, 549_619), MACS)
    rows, notes = table_rows(
        [
            {"model": "cnn", "precision": "fp32", "x86": X86, "rpi4": fp32},
            {"model": "cnn", "precision": "int8", "x86": X86, "rpi4": int8},
        ]
    )
    assert notes == []
    assert rows[0]["x86 edgec/ORT"] == "1.50×" and rows[0]["rpi4 edgec/ORT"] == "0.86×"
    assert rows[0]["rpi4 edgec insns"] == "3.00M" and rows[0]["MACs"] == "6.49M"
    assert rows[0]["vec ld+st/FMLA edgec, ORT"] == "0.50, 0.39"
    assert rows[0]["rpi4 edgec int8/fp32"] == "-"
    assert rows[1]["rpi4 edgec int8/fp32"] == "1.50×"
    assert rows[1]["vec ld+st/FMLA edgec, ORT"] == "-, 0.39"


def test_partial_and_failed_cells_show_as_such() -> None:
    rows, notes = table_rows(
        [
            {"model": "a", "precision": "fp32", "x86": X86},  # --no-arm
            {"model": "b", "precision": "fp32", "rpi4": {"error": "edgec build: boom"}},
            {
                "model": "c",
                "precision": "int8",
                "x86": {"error": "no int8"},
                "rpi4": {"error": "no int8"},
            },
        ]
    )
    assert rows[0]["rpi4 edgec insns"] == "-" and rows[0]["x86 edgec ms"] == "0.165"
    assert rows[1]["rpi4 edgec insns"] == "fails (1)" and rows[1]["x86 edgec ms"] == "-"
    assert rows[2]["x86 edgec ms"] == rows[2]["rpi4 edgec insns"] == "fails (2)"
    assert notes == ["b fp32 rpi4: edgec build: boom", "c int8 x86, rpi4: no int8"]


def test_cache_resumes_a_run_and_keys_by_source_state(tmp_path: Path) -> None:
    path = tmp_path / "perf.json"
    key = perf.Cache.key("cnn", "fp32", "rpi4", "tree1")
    perf.Cache(path).put(key, {"edgec_insns": 1})
    assert perf.Cache(path).get(key) == {"edgec_insns": 1}
    assert perf.Cache(path).get(perf.Cache.key("cnn", "fp32", "rpi4", "tree2")) is None
    assert perf.Cache(path, fresh=True).get(key) is None


def test_measuring_stores_cells_and_lasting_failures_only(tmp_path: Path) -> None:
    cache = perf.Cache(tmp_path / "perf.json")

    def fails() -> dict[str, Any]:
        raise perf.BenchError("count.sh: no qemu")

    assert perf.measure(cache, "k", "what", fails) == {"error": "count.sh: no qemu"}
    assert cache.get("k") is None
    cell = perf.measure(cache, "k", "what", lambda: {"edgec_p50": 1.0})
    assert cell["edgec_p50"] == 1.0 and cell["measured"].endswith("UTC")
    assert perf.measure(cache, "k", "what", fails) == cell  # cached

    def refused() -> dict[str, Any]:
        raise perf.BenchError("edgec build: edgec: error: int8 does not support X", lasting=True)

    assert perf.measure(cache, "j", "what", refused)["error"].endswith("support X")
    assert perf.measure(cache, "j", "what", fails)["error"].endswith("support X")  # cached
