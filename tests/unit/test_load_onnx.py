"""ONNX sources from old or unusual exporters: opsets below 7 are upgraded before anything else,
integer inputs that carry shapes are folded from given values (or refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bench import legacy_graphs
from edgec import reference
from edgec.errors import EdgecError
from edgec.stages.load import load

# Cases of the onnx wheel's pytorch-converted test data, stamped opset 6 (IR 3, weights listed as
# graph inputs): ONNX Runtime refuses them as they are ("Could not find an implementation for
# Gemm(6)").
OPSET6_CASES = [
    pytest.param("test_Linear", id="gemm"),
    pytest.param("test_Conv2d_depthwise_strided", id="depthwise-conv"),
    pytest.param("test_BatchNorm2d_eval", id="batchnorm"),
    pytest.param("test_AvgPool2d", id="avgpool"),
]


@pytest.mark.parametrize("case", OPSET6_CASES)
def test_opset6_graph_is_upgraded_and_onnxruntime_matches_its_expected_output(
    tmp_path: Path, case: str
) -> None:
    (path,) = legacy_graphs.wheel_cases([case])
    assert onnx.load(str(path)).opset_import[0].version == 6
    model = load(str(path), None, tmp_path)
    assert (model.upgraded_from, model.opset) == (6, 13)
    assert "opset 6 upgraded to 13" in model.load_note()
    data = path.parent / "test_data_set_0"
    x = onnx.numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb")))
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb")))
    (got,) = reference.run(model.path, [x])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_recent_opsets_are_not_touched(tmp_path: Path) -> None:
    path = legacy_graphs.write("alexnet_style", tmp_path / "src")
    model = load(str(path), None, tmp_path)
    assert (model.upgraded_from, model.opset, model.load_note()) == (None, 8, "")
    assert model.path.read_bytes() == path.read_bytes()


def _reshape_by_input(path: Path) -> Path:
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
            helper.make_node("Relu", ["r"], ["y"]),
        ],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b", "c"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def test_shape_input_without_values_is_refused_naming_the_input(tmp_path: Path) -> None:
    with pytest.raises(EdgecError, match=r"input 'shape' .* Reshape node 'reshape'.* --input"):
        load(str(_reshape_by_input(tmp_path / "m.onnx")), None, tmp_path)


def test_shape_input_values_are_folded_as_constants(tmp_path: Path) -> None:
    path = _reshape_by_input(tmp_path / "m.onnx")
    model = load(str(path), None, tmp_path, input_values={"shape": np.array([3, 2, 2])})
    assert [s.name for s in model.inputs] == ["x"]
    assert model.outputs[0].shape == (3, 2, 2)
    assert model.folded_inputs == ("shape",)
    assert model.load_note() == "folded as constants: shape"


def _flatten_by_shape(path: Path) -> Path:
    """torch's `x.view(x.size(0), -1)` as the TorchScript exporter writes it."""
    const = helper.make_tensor("zero", TensorProto.INT64, [], [0])
    minus_one = helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Constant", [], ["zero"], value=const),
            helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
            helper.make_node(
                "Constant",
                [],
                ["axes"],
                value=helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
            ),
            helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
            helper.make_node("Constant", [], ["minus_one"], value=minus_one),
            helper.make_node("Concat", ["batch1", "minus_one"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["y"]),
        ],
        "view",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 24])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.save(model, str(path))
    return path


def test_shape_computations_are_folded_once_input_shapes_are_static(tmp_path: Path) -> None:
    path = _flatten_by_shape(tmp_path / "view.onnx")
    model = load(str(path), [(3, 2, 3, 4)], tmp_path)
    assert model.folded_shape_nodes == 4  # Shape, Gather, Unsqueeze, Concat
    assert [n.op_type for n in onnx.load(str(model.path)).graph.node] == ["Reshape"]
    x = np.random.default_rng(0).standard_normal((3, 2, 3, 4)).astype(np.float32)
    (got,) = reference.run(model.path, [x])
    np.testing.assert_array_equal(got, x.reshape(3, 24))
