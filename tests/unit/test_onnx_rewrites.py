"""ONNX-level rewrites before TVM's importer compute what the original graph computes (checked
with ONNX's reference evaluator, no TVM)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from edgec import onnx_rewrites


def _pow_graph(base: int, exponent: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Pow", ["x", "y"], ["z"])],
        "pow",
        [
            helper.make_tensor_value_info("x", base, [3]),
            helper.make_tensor_value_info("y", exponent, [3]),
        ],
        [helper.make_tensor_value_info("z", base, [3])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


@pytest.mark.parametrize(
    ("base", "exponent", "x", "y"),
    [
        pytest.param(
            TensorProto.FLOAT, TensorProto.INT64, [1.5, 2, 3], [2, 3, 0], id="float-int64"
        ),
        pytest.param(
            TensorProto.FLOAT, TensorProto.INT32, [-2, 2, 0.5], [3, 1, 2], id="float-int32"
        ),
        pytest.param(TensorProto.INT32, TensorProto.FLOAT, [1, 2, 3], [4, 5, 6], id="int32-float"),
        pytest.param(
            TensorProto.INT64,
            TensorProto.FLOAT,
            [2, -3, 7],
            [10, 3, 0.5],
            id="int64-float-fraction",
        ),
    ],
)
def test_mixed_dtype_pow_keeps_its_values(base: int, exponent: int, x: list, y: list) -> None:
    model = _pow_graph(base, exponent)
    feeds = {
        "x": np.array(x, helper.tensor_dtype_to_np_dtype(base)),
        "y": np.array(y, helper.tensor_dtype_to_np_dtype(exponent)),
    }
    rewritten = onnx_rewrites.match_pow_dtypes(model)
    assert all(n.op_type != "Pow" or len({*n.input} & {"x", "y"}) < 2 for n in rewritten.graph.node)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = ReferenceEvaluator(rewritten).run(None, feeds)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_same_dtype_pow_is_left_alone() -> None:
    model = _pow_graph(TensorProto.FLOAT, TensorProto.FLOAT)
    assert onnx_rewrites.match_pow_dtypes(model) is model


def test_expanded_layer_norm_keeps_mean_and_inverse_std() -> None:
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "w", "b"], ["y", "mean", "inv"], axis=1)],
        "ln",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4]),
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, [2, 1, 1]),
            helper.make_tensor_value_info("inv", TensorProto.FLOAT, [2, 1, 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rng = np.random.default_rng(0)
    feeds = {
        n: rng.standard_normal(s).astype(np.float32)
        for n, s in (("x", (2, 3, 4)), ("w", (3, 4)), ("b", (3, 4)))
    }
    expanded = onnx_rewrites.expand_functions(model)
    ops = {n.op_type for n in expanded.graph.node}
    assert "LayerNormalization" not in ops and not ops & {"Shape", "Size"}
    for got, want in zip(
        ReferenceEvaluator(expanded).run(None, feeds),
        ReferenceEvaluator(model).run(None, feeds),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _resize_model(
    attrs: dict, roi: list | None, scales: list | None, sizes: list | None
) -> onnx.ModelProto:
    initializers = [
        onnx.numpy_helper.from_array(np.array(v, dtype), name)
        for name, v, dtype in (
            ("roi", roi, np.float32),
            ("scales", scales, np.float32),
            ("sizes", sizes, np.int64),
        )
        if v is not None
    ]
    inputs = ["x", "roi" if roi else "", "scales" if scales else "", "sizes" if sizes else ""]
    while not inputs[-1]:
        inputs.pop()
    graph = helper.make_graph(
        [helper.make_node("Resize", inputs, ["y"], **attrs)],
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


# (attributes, roi, scales, sizes, whether the node is rewritten)
RESIZE_CASES = [
    pytest.param({"axes": [3, 2]}, None, [2.0, 0.5], None, True, id="scales-on-axes"),
    pytest.param({"axes": [2, 3]}, None, None, [3, 8], True, id="sizes-on-axes"),
    pytest.param(
        {"keep_aspect_ratio_policy": "not_larger"}, None, None, [1, 1, 8, 20], True, id="not-larger"
    ),
    pytest.param(
        {"keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]},
        None,
        None,
        [2, 1],
        True,
        id="not-smaller-on-axes",
    ),
    pytest.param(
        # a factor of 1.75 gives 10.5 columns: ONNX and TVM would map coordinates differently
        {"keep_aspect_ratio_policy": "not_smaller", "axes": [2, 3]},
        None,
        None,
        [7, 7],
        False,
        id="inexact-factor-kept",
    ),
    pytest.param(
        {"axes": [2, 3], "coordinate_transformation_mode": "tf_crop_and_resize", "mode": "linear"},
        [0.2, 0.1, 0.8, 0.9],
        None,
        [3, 3],
        True,
        id="crop-on-axes",
    ),
]


@pytest.mark.parametrize(("attrs", "roi", "scales", "sizes", "rewrites"), RESIZE_CASES)
def test_resize_with_axes_or_aspect_policy_becomes_full_rank(
    attrs: dict, roi: list | None, scales: list | None, sizes: list | None, rewrites: bool
) -> None:
    model = _resize_model(attrs, roi, scales, sizes)
    rewritten = onnx_rewrites.normalize_resize(model)
    (node,) = rewritten.graph.node
    left = {a.name for a in node.attribute} & {"axes", "keep_aspect_ratio_policy"}
    assert (not left) is rewrites
    x = np.arange(24, dtype=np.float32).reshape(1, 1, 4, 6)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    got = ReferenceEvaluator(rewritten).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
