"""Channels-last layout conversion steps aside locally: ops whose layout rule is not proven stay
NCHW, and every convolution around them keeps the NHWC fast path."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(0)


def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array, name)


def _weights(name: str, *shape: int) -> onnx.TensorProto:
    return _const(name, (RNG.standard_normal(shape) * 0.1).astype(np.float32))


def _graph(middle: list[onnx.NodeProto], inits: list[onnx.TensorProto], opset: int) -> Any:
    """conv(3→8) → MIDDLE (reads c1, writes m) → conv(8→8): the middle op decides the layout."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        *middle,
        helper.make_node("Conv", ["m", "w2"], ["y"], kernel_shape=[1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [_weights("w1", 8, 3, 3, 3), _weights("w2", 8, 8, 1, 1), *inits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 4
    return model


def _shuffle() -> Any:
    shape5 = _const("s5", np.array([1, 2, 4, 8, 8], np.int64))
    shape4 = _const("s4", np.array([1, 8, 8, 8], np.int64))
    middle = [
        helper.make_node("Reshape", ["c1", "s5"], ["r5"]),
        helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "s4"], ["m"]),
    ]
    return _graph(middle, [shape5, shape4], 9)


def _split_sum() -> Any:
    middle = [
        helper.make_node("Split", ["c1"], ["a", "b"], axis=1),
        helper.make_node("Concat", ["b", "a"], ["ba"], axis=1),
        helper.make_node("Sum", ["ba", "c1", "c1"], ["m"]),
    ]
    return _graph(middle, [], 9)


CASES = [
    # (id, model, the op that must stay NCHW, or None when the chain is all channels-last)
    (
        "dropout",
        lambda: _graph([helper.make_node("Dropout", ["c1"], ["m"], ratio=0.5)], [], 9),
        "relax.nn.dropout",
    ),
    (
        "lrn",
        lambda: _graph([helper.make_node("LRN", ["c1"], ["m"], size=5)], [], 9),
        "relax.expand_dims",  # LRN: x² → 5-D window sum
    ),
    ("5d_channel_shuffle", _shuffle, None),
    ("split_concat_sum", _split_sum, "relax.split"),
    (
        "relu_maxpool",
        lambda: _graph(
            [
                helper.make_node("Relu", ["c1"], ["r"]),
                helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            ],
            [],
            13,
        ),
        None,
    ),
]


def _imported(model: Any) -> Any:
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(model, shape_dict={"x": [1, 3, 8, 8]})
    return relax.transform.DecomposeOpsForInference()(mod)


def _conv_layouts(mod: Any) -> list[str]:
    from edgec.relax.traverse import calls

    return [str(call.attrs.data_layout) for call in calls(mod, "relax.nn.conv2d")]


@pytest.mark.parametrize(("make", "nchw_op"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_convolution_stays_channels_last_around_an_op_without_a_proven_rule(
    make: Any, nchw_op: str | None
) -> None:
    from edgec.relax.layout import to_channels_last

    fallbacks: dict[str, str] = {}
    converted = to_channels_last(_imported(make()), fallbacks)
    assert _conv_layouts(converted) == ["NHWC", "NHWC"]
    assert "layout: whole model" not in fallbacks
    if nchw_op is None:
        assert fallbacks == {}
    else:
        assert f"layout: {nchw_op}" in fallbacks


def test_a_model_without_convolutions_is_left_as_it_is() -> None:
    from tvm.relax.frontend.onnx import from_onnx

    from edgec.relax.layout import to_channels_last

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Softmax", ["h"], ["y"], axis=-1),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [_weights("w", 4, 4)],
    )
    mod = from_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    fallbacks: dict[str, str] = {}
    assert to_channels_last(mod, fallbacks).same_as(mod)
    assert fallbacks == {}


def test_an_import_failure_names_the_onnx_node_its_op_and_input_shapes(tmp_path: Any) -> None:
    from edgec.artifacts import OnnxModel, TensorSpec
    from edgec.errors import EdgecError
    from edgec.relax.import_onnx import import_onnx

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape_by_input")],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    specs = (TensorSpec("x", (1, 4), "float32"), TensorSpec("s", (2,), "int64"))
    model = OnnxModel(path, specs, (TensorSpec("y", (2, 2), "float32"),), "m.onnx", None)
    with pytest.raises(EdgecError) as e:
        import_onnx(model)
    assert "at node reshape_by_input (Reshape, inputs ['1x4 float32', '2 int64'])" in str(e.value)


def _clip(opset: int) -> Any:
    if opset < 11:  # bounds as attributes
        node = helper.make_node("Clip", ["c1"], ["m"], min=0.0, max=6.0)
        return _graph([node], [], opset)
    bounds = [_const("lo", np.array(0.0, np.float32)), _const("hi", np.array(6.0, np.float32))]
    return _graph([helper.make_node("Clip", ["c1", "lo", "hi"], ["m"])], bounds, opset)


@pytest.mark.parametrize("opset", [6, 11, 13], ids=lambda o: f"opset{o}")
def test_relu6_between_convolutions_costs_no_transpose(opset: int) -> None:
    import tvm
    from tvm import relax

    from edgec.relax.clip_ops import clip_kernels_as_ops
    from edgec.relax.layout import to_channels_last
    from edgec.relax.traverse import calls

    fallbacks: dict[str, str] = {}
    mod = clip_kernels_as_ops(relax.transform.FoldConstant()(_imported(_clip(opset))))
    converted = to_channels_last(mod, fallbacks)
    transposes = [  # of activations: the weights' fold into constants
        call
        for call in calls(converted, "relax.permute_dims")
        if not isinstance(call.args[0], tvm.ir.expr.Constant)
    ]
    assert len(transposes) == 2  # the model's input to NHWC and its output back, nothing between
    assert fallbacks == {}
