"""Hand-made bundles for hostile-input tests: the files of a bundle, a manifest whose checksums
match, and an executable that leaves a marker file if anything ever runs it."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from edgec.stages.bundle import MANIFEST, checksums

REPORT = {"model": {"source": "fake"}, "latency_ms": {"p50": 1.0, "where": "host"}}


def trap(path: Path, marker: Path) -> Path:
    """An executable that creates `marker` when run: proof that something ran it."""
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def tvm_bundle(directory: Path, marker: Path, **changes: Any) -> Path:
    """An x86 bundle whose runner is a trap; `changes` replace manifest keys afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    trap(directory / "edgec-run", marker)
    (directory / "model.so").write_bytes(b"\x7fELF not really")
    (directory / "model.onnx").write_bytes(b"not really onnx")
    manifest = {
        "schema": 1,
        "target": "x86",
        "model": "fake.py:make_model",
        "library": "model.so",
        "reference": "model.onnx",
        "runner": "edgec-run",
        "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": [1, 2], "dtype": "float32"}],
        "parity": {"tolerance": 1e-4, "share": 1.0},
        "files": checksums(directory),
    }
    return _write(directory, {**manifest, **changes})


def mcu_bundle(directory: Path, board: str, memory: dict[str, int], **changes: Any) -> Path:
    """A Cortex-M4 firmware bundle linked (as its manifest says) for `board`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("model.c", "model.h", "edgec_nn.c", "edgec_nn.h", "model.onnx"):
        (directory / name).write_text("/* fake */\n")
    (directory / "firmware.elf").write_bytes(b"\x7fELF fake firmware")
    manifest = {
        "schema": 1,
        "target": "cortex-m4",
        "board": board,
        "memory": memory,
        "model": "fake.py:make_model",
        "library": ["model.c", "model.h", "edgec_nn.c", "edgec_nn.h"],
        "firmware": "firmware.elf",
        "reference": "model.onnx",
        "inputs": [{"name": "input", "shape": [1, 4], "dtype": "int8", "scale": 0.1}],
        "outputs": [{"name": "output", "shape": [1, 2], "dtype": "int8", "scale": 0.1}],
        "expected_output": [0, 0],
        "layers": [],
        "parity": {"tolerance": 0, "share": 1.0},
        "files": checksums(directory),
    }
    return _write(directory, {**manifest, **changes})


def _write(directory: Path, manifest: dict[str, Any]) -> Path:
    (directory / MANIFEST).write_text(json.dumps(manifest))
    (directory / "report.json").write_text(json.dumps(REPORT))
    return directory
