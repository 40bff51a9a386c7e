"""int8: edgec's quantized graph and everything that reads or writes it.

    ops.py          the op set: typed attributes per op and OPS, the table every back-end covers
    graph.py        QGraph / QNode
    fixed_point.py  the integer arithmetic (requantization) all back-ends share
    reference.py    the numpy reference, bit-exact with the back-ends
    from_onnx.py    a float ONNX graph and calibrated ranges → QGraph
    qdq.py          QGraph → ONNX QDQ (ONNX Runtime's reference and baseline)
    model.py        QuantizedModel, the quantize stage's artifact

The back-ends outside this package: edgec.relax.lower_int8 (TVM) and edgec.stages.generate (C).
"""

from __future__ import annotations

from edgec.int8.fixed_point import (
    INT8_MAX,
    INT8_MIN,
    dequantize,
    quantize,
    quantize_multiplier,
    requantize,
)
from edgec.int8.graph import QGraph, QNode
from edgec.int8.model import QuantizedModel
from edgec.int8.ops import OPS
from edgec.int8.reference import run, trace

__all__ = [
    "INT8_MAX",
    "INT8_MIN",
    "OPS",
    "QGraph",
    "QNode",
    "QuantizedModel",
    "dequantize",
    "quantize",
    "quantize_multiplier",
    "requantize",
    "run",
    "trace",
]
