"""The int8 graph: edgec's one source of truth for a quantized model.

A QGraph is a list of nodes over named tensors, each node one op of edgec.int8.ops.OPS with
that op's typed attributes. Weights are int8 with one scale per output channel; biases are int32
at scale (input scale × weight scale); activations int8 with one scale each (`scales`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgec.int8.ops import COMPUTE_OPS, OPS, Attrs, Conv, Dense, FloatOp

PRECISIONS = ("int8", "float")


@dataclass(frozen=True, eq=False)
class QNode:
    """One operator; checks on construction that `attrs` are its op's."""

    op: str
    name: str
    inputs: tuple[str, ...]
    output: str
    precision: str  # "int8" or "float"
    attrs: Attrs

    def __post_init__(self) -> None:
        spec = OPS.get(self.op)
        if spec is None or not isinstance(self.attrs, spec.attrs):
            raise TypeError(f"int8 node {self.name}: {type(self.attrs).__name__} for {self.op}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"int8 node {self.name}: precision {self.precision!r}")


@dataclass(frozen=True)
class QGraph:
    """Nodes in execution order; `scales` for every int8 tensor; float32 input and outputs."""

    nodes: tuple[QNode, ...]
    scales: dict[str, float]
    shapes: dict[str, tuple[int, ...]]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def int8_ops(self) -> int:
        return sum(n.op in COMPUTE_OPS and n.precision == "int8" for n in self.nodes)

    @property
    def float_ops(self) -> int:
        return sum(n.op in COMPUTE_OPS and n.precision == "float" for n in self.nodes)

    @property
    def float_islands(self) -> dict[str, str]:
        """Each ONNX node int8 does not cover, which runs in float: layer → "Op: why"."""
        return {
            n.name: f"{n.attrs.op_type}: {n.attrs.reason}"
            for n in self.nodes
            if isinstance(n.attrs, FloatOp)
        }

    @property
    def weight_bytes(self) -> int:
        return sum(
            n.attrs.weights.values.nbytes + n.attrs.weights.bias.nbytes
            for n in self.nodes
            if isinstance(n.attrs, Conv | Dense)
        )
