"""The int8 op table: every back-end covers every op in edgec.int8.OPS, and a node's typed
attributes are checked against its op when it is made."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.int8 import OPS, QNode, qdq, reference
from edgec.int8.ops import Cast, MaxPool, Reshape, Window
from edgec.relax import lower_int8
from edgec.stages import generate

BACKENDS = [
    pytest.param(set(reference.KERNELS), id="numpy-reference"),
    pytest.param(set(lower_int8.LOWER), id="relax-lowering"),
    pytest.param(set(qdq.EXPORT), id="qdq-export"),
    # the C library takes and returns int8: the casts are the caller's, at its edges
    pytest.param(set(generate.KERNELS) | set(generate.AT_EDGES), id="c-generator"),
]


@pytest.mark.parametrize("covered", BACKENDS)
def test_every_backend_covers_every_int8_op(covered: set[str]) -> None:
    assert covered == set(OPS)


def test_casts_are_only_at_the_edges_of_the_c_library() -> None:
    assert not set(generate.KERNELS) & set(generate.AT_EDGES)
    assert {op for op, spec in OPS.items() if spec.kind == "cast"} == set(generate.AT_EDGES)


NODES = [
    pytest.param("maxpool", Reshape((1, 4)), TypeError, id="attrs-of-another-op"),
    pytest.param("gelu", Cast(), TypeError, id="unknown-op"),
]


@pytest.mark.parametrize(("op", "attrs", "error"), NODES)
def test_a_node_with_the_wrong_attributes_is_refused(op: str, attrs: object, error: type) -> None:
    with pytest.raises(error):
        QNode(op, "n", ("x",), "y", "int8", attrs)  # type: ignore[arg-type]


def test_int8_maxpool_keeps_the_window_maximum() -> None:
    window = Window((2, 2), (2, 2), (0, 0, 0, 0))
    node = QNode("maxpool", "pool", ("x",), "y", "int8", MaxPool(window))
    x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    out = reference.KERNELS["maxpool"](node, None, x)
    assert out.dtype == np.int8 and out.tolist() == [[[[5, 7], [13, 15]]]]
