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


def _one_node(
    node: onnx.NodeProto, inputs: dict[str, np.ndarray], outputs: list[str]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        node.op_type,
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in inputs.items()
        ],
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


X = np.array([[3.0, 1.0, 4.0, 1.0, 5.0]], np.float32)

# (node, inputs, expected outputs): kernels that once sent the whole model to TVM's plain pipeline
FAST_PATH_CASES = [
    pytest.param(
        helper.make_node("CumSum", ["x", "axis"], ["y"]),
        {"x": X, "axis": np.array(1, np.int64)},
        [np.cumsum(X, axis=1)],
        id="cumsum-needs-target-context",
    ),
    pytest.param(
        helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=1),
        {"x": X, "k": np.array([2], np.int64)},
        [np.array([[5.0, 4.0]], np.float32), np.array([[4, 2]], np.int64)],
        id="topk-needs-target-context",
    ),
    pytest.param(
        helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1),
        {"x": X, "i": np.array([[0, 4]], np.int64), "u": np.array([[9.0, 8.0]], np.float32)},
        [np.array([[9.0, 1.0, 4.0, 1.0, 8.0]], np.float32)],
        id="scatter-kernel-without-root-block",
    ),
]


@pytest.mark.parametrize(("node", "inputs", "expected"), FAST_PATH_CASES)
def test_kernel_keeps_edgecs_pipeline(node: onnx.NodeProto, inputs: dict, expected: list) -> None:
    model = _one_node(node, inputs, list(node.output))
    rep = edgec.backend.prepare(model)
    outputs = rep.run(list(inputs.values()))
    assert "whole model" not in rep.fallbacks
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got, want)
