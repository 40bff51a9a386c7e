"""edgec.backend: ONNX's Backend interface over edgec's host pipeline, specializing on inputs that
carry shapes (folded as constants, compiled once per value)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgec.backend

pytestmark = pytest.mark.integration


def _reshape_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape"], ["y"]),
            helper.make_node("Relu", ["y"], ["z"]),
        ],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 2]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_input_is_folded_and_each_value_compiled_once() -> None:
    rep = edgec.backend.prepare(_reshape_model())
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(2, 3, 2)
    for shape in ([2, 6], [3, 4], [2, 6], [-1, 3]):
        (z,) = rep.run([x, np.array(shape, np.int64)])
        np.testing.assert_array_equal(z, np.maximum(x.reshape(shape), 0))
        assert rep.folded == ("shape",)
    assert rep.compilations == 3


def test_inputs_by_name_and_run_model() -> None:
    x = np.ones((2, 3, 2), np.float32)
    (z,) = edgec.backend.run_model(_reshape_model(), {"x": x, "shape": np.array([12], np.int64)})
    np.testing.assert_array_equal(z, np.ones(12, np.float32))


def test_run_node_runs_one_node() -> None:
    x = np.array([[-1.0, 2.0]], np.float32)
    (y,) = edgec.backend.run_node(helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, [[0.0, 2.0]])


@pytest.mark.parametrize(
    ("device", "supported"),
    [("CPU", True), ("CPU:0", True), ("CUDA", False), ("CUDA:1", False)],
    ids=["cpu", "cpu-0", "gpu", "gpu-1"],
)
def test_runs_on_cpu_only(device: str, supported: bool) -> None:
    assert edgec.backend.supports_device(device) is supported
    if not supported:
        with pytest.raises(ValueError, match="runs on CPU"):
            edgec.backend.prepare(_reshape_model(), device)
