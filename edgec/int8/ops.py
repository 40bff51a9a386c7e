"""The int8 op set: each op's typed attributes, and OPS, the one table every back-end covers.

Adding an op: its attributes class and an entry in OPS here, then one function in each
consumer's table — the ONNX import (edgec.int8.from_onnx.FROM_ONNX), the numpy reference
(edgec.int8.reference.KERNELS), the QDQ export (edgec.int8.qdq.EXPORT), the Relax lowering
(edgec.relax.lower_int8.LOWER) and the C generator (edgec.stages.generate.KERNELS).
tests/unit/test_int8_ops.py checks that each of the last four covers every op.

A compute op runs in int8 (its result requantized to the output's scale) or stays float (a
fused ReLU or clip applied in float); its attributes say which by the type of `out`. An ONNX
node no int8 op covers becomes a `float_op`: it runs in float, as ONNX defines it, in every
back-end that has float (a "float island"; the C generator refuses it, naming it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgec.int8.fixed_point import INT8_MAX, INT8_MIN

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # top, left, bottom, right


@dataclass(frozen=True)
class Window:
    """Where a conv or pooling window goes over an NCHW input."""

    kernel: Pair
    strides: Pair
    pads: Pads


@dataclass(frozen=True, eq=False)
class Requantize:
    """An int8 result from integer sums: clamp((acc × multiplier + 2^(shift−1)) >> shift,
    lo, hi); multiplier and shift are int64, one per output channel or one for all."""

    multiplier: np.ndarray
    shift: np.ndarray
    lo: int = INT8_MIN  # a fused ReLU or clip, in steps of the output scale
    hi: int = INT8_MAX


@dataclass(frozen=True, eq=False)
class Rescale:
    """Inputs at their own scales brought to the output's: clamp((x × multipliers[i] +
    2^(shift−1)) >> shift, lo, hi); an add sums the two products before rounding."""

    multipliers: np.ndarray  # int64, one per input
    shift: int
    lo: int = INT8_MIN
    hi: int = INT8_MAX


@dataclass(frozen=True)
class Clip:
    """A float layer's fused activation: ReLU is (0, None); None is unbounded."""

    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, eq=False)
class Weights:
    """A conv or dense layer's constants. int8: symmetric weights with one scale per output
    channel, int32 bias at (input scale × weight scale); float: both float32, no scale."""

    values: np.ndarray  # conv OIHW, dense (out, in)
    bias: np.ndarray  # one per output channel
    scale: np.ndarray | None = None  # float32 per output channel (int8 only)


@dataclass(frozen=True, eq=False)
class Conv:
    window: Window
    dilations: Pair
    groups: int
    weights: Weights
    out: Requantize | Clip


@dataclass(frozen=True, eq=False)
class Dense:
    weights: Weights
    out: Requantize | Clip


@dataclass(frozen=True, eq=False)
class Add:
    out: Rescale | Clip


@dataclass(frozen=True, eq=False)
class GlobalAvgPool:
    out: Requantize | None = None  # the sum over H × W, divided by it (None: float mean)


@dataclass(frozen=True, eq=False)
class AvgPool:
    """Average pooling whose count is the whole window (no padding, or padding counted)."""

    window: Window
    out: Requantize | None = None  # the window's sum, divided by its size (None: float)


@dataclass(frozen=True)
class MaxPool:
    window: Window


@dataclass(frozen=True, eq=False)
class Concat:
    """Concatenation along `axis` (never the batch's)."""

    out: Rescale | None = None  # None: float
    axis: int = 1


@dataclass(frozen=True, eq=False)
class Softmax:
    """Over the last axis. int8: e = table[max − x], out = round(127 × e / Σe): scale 1/127."""

    table: np.ndarray | None = None  # int64 exp(−d × input scale) × 2^SOFTMAX_BITS, d in 0..255


@dataclass(frozen=True)
class Reshape:
    shape: tuple[int, ...]  # the batch (first) dimension stays free


@dataclass(frozen=True)
class Transpose:
    perm: tuple[int, ...]  # perm[0] == 0: the batch stays first


@dataclass(frozen=True)
class Slice:
    """One run of indices along one axis (never the batch's); an ONNX Split is one per output."""

    axis: int
    start: int
    stop: int
    step: int = 1


@dataclass(frozen=True, eq=False)
class FloatOp:
    """An ONNX node int8 does not cover, run in float as it is: a float island, between a
    dequantize of its int8 inputs and a quantize (at the calibrated range) for int8 readers.
    `model` is a one-node ONNX model (its constants inside) whose graph inputs are the QNode's
    inputs, in order, and whose one graph output is the QNode's output."""

    op_type: str
    model: bytes  # serialized onnx.ModelProto
    reason: str  # why int8 does not cover it, for the report


@dataclass(frozen=True)
class Cast:
    """quantize (float → int8 at the output's scale) or dequantize (at the input's)."""


Attrs = (
    Conv
    | Dense
    | Add
    | GlobalAvgPool
    | AvgPool
    | MaxPool
    | Concat
    | Softmax
    | Reshape
    | Transpose
    | Slice
    | FloatOp
    | Cast
)
# compute: a layer that runs in int8 or float and counts as one; layout: moves values, in its
# input's precision and scale; cast: between float and int8, where precision changes
Kind = Literal["compute", "layout", "cast"]


@dataclass(frozen=True)
class OpSpec:
    attrs: type
    kind: Kind


OPS: dict[str, OpSpec] = {
    "conv": OpSpec(Conv, "compute"),
    "dense": OpSpec(Dense, "compute"),
    "add": OpSpec(Add, "compute"),
    "global_avgpool": OpSpec(GlobalAvgPool, "compute"),
    "avgpool": OpSpec(AvgPool, "compute"),
    "concat": OpSpec(Concat, "compute"),
    "softmax": OpSpec(Softmax, "compute"),
    "float_op": OpSpec(FloatOp, "compute"),  # always float: a float island
    "maxpool": OpSpec(MaxPool, "layout"),
    "reshape": OpSpec(Reshape, "layout"),
    "transpose": OpSpec(Transpose, "layout"),
    "slice": OpSpec(Slice, "layout"),
    "quantize": OpSpec(Cast, "cast"),
    "dequantize": OpSpec(Cast, "cast"),
}
COMPUTE_OPS = tuple(op for op, spec in OPS.items() if spec.kind == "compute")
CAST_OPS = tuple(op for op, spec in OPS.items() if spec.kind == "cast")
