"""The frozen artifact passed along each link of the pipeline.

TorchModel -> OnnxModel -> (QuantizedModel) -> a backend's build -> Bundle -> Measurement ->
Report (edgec.report_schema).
Each stage takes one of these and returns a new one; none is mutated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edgec.targets import TargetProfile

if TYPE_CHECKING:
    from edgec.manifest import Manifest

Where = Literal["host", "device", "emulated"]
Unit = Literal["ms", "instructions"]


@dataclass(frozen=True)
class TensorSpec:
    """A named, fully static tensor shape and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None  # int8 tensors of an MCU library: the real value of one step

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        return data if self.scale is None else {**data, "scale": self.scale}

    @staticmethod
    def from_json(data: dict[str, Any]) -> TensorSpec:
        scale = data.get("scale")
        return TensorSpec(
            str(data["name"]),
            tuple(int(d) for d in data["shape"]),
            str(data["dtype"]),
            None if scale is None else float(scale),
        )


@dataclass(frozen=True)
class TorchModel:
    """A PyTorch model ready to export: an nn.Module, a ScriptModule or an ExportedProgram."""

    module: Any
    inputs: tuple[TensorSpec, ...]
    source: str


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX file with static input/output shapes; export parity is None for an ONNX source."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: str
    export_max_abs_diff: float | None
    opset: int | None = None  # the default-domain opset of `path`
    upgraded_from: int | None = None  # the opset the source was stamped with, if upgraded
    folded_inputs: tuple[str, ...] = ()  # source inputs folded into constants (--input)
    folded_shape_nodes: int = 0  # shape computations folded into constants at load

    def load_note(self) -> str:
        """What loading changed in an ONNX source, for the load stage's line and the report."""
        notes = []
        if self.upgraded_from is not None:
            notes.append(
                f"opset {self.upgraded_from} upgraded to {self.opset} (onnx version_converter)"
            )
        if self.folded_inputs:
            notes.append(f"folded as constants: {', '.join(self.folded_inputs)}")
        if self.folded_shape_nodes:
            notes.append(f"{self.folded_shape_nodes} shape computations folded to constants")
        return "; ".join(notes)


@dataclass(frozen=True)
class RelaxModule:
    """The model imported into TVM Relax (an IRModule), with the ONNX it came from."""

    module: Any
    onnx: OnnxModel
    quantization: dict[str, Any] | None = None  # int8: what the quantize stage decided


@dataclass(frozen=True)
class BuiltArtifact:
    """A compiled model library for one target."""

    library: Path
    target: TargetProfile
    tvm_target: dict[str, Any]  # the resolved TVM target (host CPU named), as built
    planned_bytes: int  # activation storage from TVM's static memory plan
    onnx: OnnxModel
    schedules: dict[str, Any]  # kernels, how many edgec's rules scheduled, which were left
    quantization: dict[str, Any] | None = None


@dataclass(frozen=True)
class Bundle:
    """A deployable directory: library, runtime, runner, manifest, reference ONNX.

    `manifest` is manifest.json as read; `typed` the same, validated (edgec.manifest): code
    that runs, copies or flashes a file of the bundle takes its name from `typed`."""

    path: Path
    manifest: dict[str, Any]
    typed: Manifest


@dataclass(frozen=True)
class LayerCount:
    """One layer's share of an instruction count."""

    name: str
    op: str
    macs: int
    instructions: int

    @property
    def instructions_per_mac(self) -> float | None:
        return round(self.instructions / self.macs, 3) if self.macs else None


@dataclass(frozen=True)
class Measurement:
    """One run of a bundle: its speed, memory and parity with the bundle's reference.

    The speed is in `unit`: "ms", wall time per inference (latency_ms holds p50, p90, p99,
    mean, min), or "instructions", counted on an emulated core (deterministic: `instructions`
    per inference, `layers` per layer, `counter` says how they were counted). Measure, report
    and compare read the unit, never which backend built the bundle."""

    where: Where
    latency_ms: dict[str, float] | None
    repeat: int
    peak_rss_bytes: int | None
    max_abs_diff: float
    tolerance: float
    baseline_ms: dict[str, float] | None  # ONNX Runtime on the same input, same threads
    within_share: float = 1.0  # share of output values within the tolerance
    required_share: float = 1.0  # int8: 0.99 (≤ 1 step on ≥ 99% of outputs)
    unit: Unit = "ms"
    instructions: int | None = None
    layers: tuple[LayerCount, ...] = ()
    counter: str | None = None  # e.g. "qemu-system-arm -icount shift=0"
    # GPU runs: device memory the runner held (free memory before loading minus after the runs)
    device_memory_bytes: int | None = None

    @property
    def parity_ok(self) -> bool:
        return self.within_share >= self.required_share

    def note(self) -> str:
        """The measure stage's line."""
        if self.unit == "instructions":
            return f"{self.instructions:,} instructions ({self.counter}), " + (
                "bit-exact" if self.max_abs_diff == 0 else f"max abs diff {self.max_abs_diff:g}"
            )
        assert self.latency_ms is not None
        return (
            f"p50 {self.latency_ms['p50']:.3f} ms ({self.where}), "
            f"max abs diff {self.max_abs_diff:.2e}"
        )
