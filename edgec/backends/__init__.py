"""Backends: what turns the front half's model into a bundle, and runs that bundle.

A target profile's `backend` capability picks one: "tvm" (a TVM library and the native runner,
edgec/backends/tvm.py) or "c" (edgec's int8 C library and firmware for microcontrollers,
edgec/backends/c.py). Each module has the same five functions (the `Backend` protocol);
pipeline.py calls them and never asks which backend it holds, and measure, report and compare
read only the bundle and the `Measurement` a backend returns. A new backend (a static mobile
executable, CUDA on a board) is a module here and one entry in BACKENDS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgec.errors import known

if TYPE_CHECKING:
    import numpy as np

    from edgec.artifacts import Bundle, Measurement, OnnxModel
    from edgec.datasets import Dataset
    from edgec.int8 import QuantizedModel
    from edgec.progress import StageLog
    from edgec.targets import TargetProfile
    from edgec.tuning import TunedAgainstUntuned, TuneOptions, TuningSummary

# capability → module; imported on first use (the tvm backend imports tvm when it builds)
BACKENDS = {"tvm": "edgec.backends.tvm", "c": "edgec.backends.c"}


@dataclass(frozen=True)
class Model:
    """What the front half hands a backend: the exported model, and its int8 form if asked."""

    onnx: OnnxModel
    quantized: QuantizedModel | None = None
    calibration: Dataset | None = None  # the data the int8 ranges came from
    fp16: bool = False
    tuning: TuneOptions | None = None  # None: build without the tuning database
    board: str | None = None  # the board to link for, where the backend links for one
    extras: tuple[Path, ...] = ()  # files the front half made that the bundle ships (calibration)


@dataclass(frozen=True)
class Built:
    """A sealed bundle and what only its backend knows about it, for the report."""

    bundle: Bundle
    reference: str  # what the outputs are checked against, in words
    target: dict[str, Any]  # the report's target section beyond name and description
    model: dict[str, Any]  # the report's model section beyond the graph's own facts
    memory: dict[str, Any]  # the report's memory section
    schedules: dict[str, Any] | None = None  # how the kernels were made (TVM)
    quantization: dict[str, Any] | None = None
    macs: int | None = None  # MACs per inference as the backend counts them (None: the graph's)
    tuning: TuningSummary | None = None
    tuning_check: TunedAgainstUntuned | None = None  # the tuned build timed against the untuned
    # a static executable's size and its parts: total, runtime, kernels, weights (bytes)
    binary: dict[str, int] | None = None


@dataclass(frozen=True)
class How:
    """How to run a bundle."""

    inputs: list[np.ndarray] | None = None  # None: random inputs (or the bundle's own)
    repeat: int | None = None  # None: the backend's default for where it runs
    emulate: bool = True  # under the target's emulator, where the bundle cannot run natively


class Backend(Protocol):
    def check(
        self, profile: TargetProfile, board: str | None, tuning: TuneOptions | None = None
    ) -> None:
        """Refuse options this backend cannot honour, before any work is done."""

    def preflight(self, model: OnnxModel, profile: TargetProfile, board: str | None) -> None:
        """Refuse, from the float model alone, what cannot fit (before quantizing)."""

    def build(self, model: Model, profile: TargetProfile, work: Path, log: StageLog) -> Built:
        """Build `model` into the bundle directory `work`."""

    def unavailable(self, bundle: Bundle, emulate: bool) -> str | None:
        """Why `bundle` cannot run on this machine now, or None if it can."""

    def run(self, bundle: Bundle, how: How) -> Measurement:
        """Run `bundle` once as `how` says, checked against its reference."""


def backend(profile: TargetProfile) -> Backend:
    """The backend that builds and runs `profile`'s bundles."""
    name = profile.capabilities.backend
    if name not in BACKENDS:
        raise known(f"backend of target {profile.name}:", name, list(BACKENDS))
    module: Any = importlib.import_module(BACKENDS[name])
    return module  # type: ignore[no-any-return]
