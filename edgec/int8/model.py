"""QuantizedModel: the quantize stage's artifact, what the int8 back-ends build from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.artifacts import OnnxModel
from edgec.int8.graph import QGraph


@dataclass(frozen=True)
class QuantizedModel:
    """The int8 graph, the QDQ reference ONNX beside it, and what calibration decided."""

    graph: QGraph
    onnx: OnnxModel  # the QDQ model: what ONNX Runtime runs as this build's reference
    float_model: OnnxModel
    ranges: dict[str, float]
    sensitivity: dict[str, float]  # layer → output error with only that layer in int8
    float_layers: tuple[str, ...]
    accuracy: dict[str, float] = field(default_factory=dict)  # fp32 / int8 val top-1 (%)
    method: str = "percentile"
    # output steps within which ONNX Runtime's run of the QDQ reference comes to edgec's exact
    # arithmetic (edgec.int8.agreement): the bundle's parity tolerance is at least this
    reference_steps: int = 1

    @property
    def output_scale(self) -> float:
        """One int8 step of the output: the unit of the parity tolerance."""
        last = self.graph.nodes[-1]
        if last.op == "dequantize":
            return self.graph.scales[last.inputs[0]]
        return max(self.ranges.get(self.graph.outputs[0], 0.0), 1e-12) / 127

    def calibration_json(self) -> dict[str, Any]:
        """What calibration decided, kept in the bundle: every activation's range and scale."""
        return {
            "method": self.method,
            "ranges": {k: float(v) for k, v in sorted(self.ranges.items())},
            "scales": {k: float(v) for k, v in sorted(self.graph.scales.items())},
            "sensitivity": self.sensitivity,
            "float_layers": list(self.float_layers),
            "float_islands": self.graph.float_islands,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "int8",
            "calibration": self.method,
            "output_scale": self.output_scale,
            "int8_ops": self.graph.int8_ops,
            "float_ops": self.graph.float_ops,
            "float_layers": list(self.float_layers),
            "float_islands": self.graph.float_islands,
            "sensitivity": {k: round(v, 5) for k, v in self.sensitivity.items()},
            "weight_bytes": self.graph.weight_bytes,
            "float_weight_bytes": _float_weight_bytes(self.float_model.path),
            "accuracy": {k: round(v, 2) for k, v in self.accuracy.items()},
            "reference_steps": self.reference_steps,
        }


def _float_weight_bytes(path: Path) -> int:
    import onnx

    return sum(
        int(np.prod(i.dims)) * 4 for i in onnx.load(str(path)).graph.initializer if len(i.dims)
    )
