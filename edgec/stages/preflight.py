"""preflight: refuse a model that cannot fit a microcontroller board, from the ONNX graph alone,
before calibration and quantization (which take minutes and gigabytes for a large model).

Both figures are lower bounds, so a refusal is certain: every weight of a Conv, Gemm or MatMul
is at least one int8 byte in flash (biases four); every activation is in RAM at some point, and
a convolution, matrix product or pooling cannot write over its own input, so its input and
output are in RAM at once (elementwise ops may run in place: only their largest tensor counts),
one int8 byte per value. The linked footprint is checked
exactly later (stages/firmware.py); this only catches the hopeless cases in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgec import onnx_graph
from edgec.artifacts import OnnxModel
from edgec.boards import Board
from edgec.errors import EdgecError

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
NOT_IN_PLACE = (*WEIGHTED, "MaxPool", "AveragePool", "GlobalAveragePool")


@dataclass(frozen=True)
class LowerBounds:
    weight_bytes: int  # int8 weights and int32 biases of the multiplying layers
    activation_bytes: int  # the largest input + output of one node, int8
    node: str  # the node that needs activation_bytes


def lower_bounds(model: Any) -> LowerBounds:
    """Flash and RAM the quantized model needs at least, read off the float ONNX graph."""
    import onnx

    sizes = {i.name: _count(list(i.dims)) for i in model.graph.initializer}
    weights = 0
    for node in model.graph.node:
        if node.op_type in WEIGHTED:
            for index, name in enumerate(node.input[1:3], start=1):
                weights += sizes.get(name, 0) * (1 if index == 1 else 4)
    inferred = onnx.shape_inference.infer_shapes(model)
    activations: dict[str, int] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = [
            d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim
        ]
        activations[vi.name] = _count(dims)
    worst, where = 0, ""
    for node in inferred.graph.node:
        tensors = [activations.get(n, 0) for n in (*node.input, *node.output) if n not in sizes]
        live = sum(tensors) if node.op_type in NOT_IN_PLACE else max(tensors, default=0)
        if live > worst:
            worst, where = live, node.name or node.op_type
    return LowerBounds(weights, worst, where)


def preflight(onnx_model: OnnxModel, board: Board) -> None:
    """One line, before any quantization, when the model cannot fit `board`."""
    if board.memory is None:
        raise EdgecError(f"board {board.name} has no [memory]: it cannot take firmware")
    bounds = lower_bounds(onnx_graph.read(onnx_model.path))
    memory = board.memory
    if bounds.weight_bytes > memory.flash_bytes:
        raise EdgecError(
            f"the model does not fit {board.name}'s flash: its int8 weights alone need at least "
            f"{bounds.weight_bytes:,} B > {memory.flash_bytes:,} B (checked before quantizing); "
            "prune (--prune), use a smaller model or a board with more flash"
        )
    if bounds.activation_bytes > memory.ram_bytes:
        raise EdgecError(
            f"the model does not fit {board.name}'s RAM: node {bounds.node!r} alone holds at "
            f"least {bounds.activation_bytes:,} B of int8 activations > {memory.ram_bytes:,} B "
            "(checked before quantizing); use a smaller input, a smaller model or a bigger board"
        )


def _count(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= max(int(d), 0)
    return n
