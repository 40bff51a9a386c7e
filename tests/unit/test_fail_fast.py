"""Hopeless inputs fail in one line before the slow stages: a model too big for a board's flash
or RAM before calibration and quantization, a custom-domain op before ONNX Runtime or TVM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgec.artifacts import OnnxModel, TensorSpec
from edgec.boards import get_board
from edgec.cli import main
from edgec.stages.preflight import lower_bounds, preflight
from tests.conftest import ROOT

RESNET18 = f"{ROOT / 'examples' / 'resnet18.py'}:make_model"


def _save(path: Path, nodes: list[Any], x: list[int], y: list[int], inits: list[Any] = (),
          domains: tuple[str, ...] = ()) -> Path:  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y)],
        list(inits),
    )
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domains)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    return path


def _wide_matmul(path: Path) -> Path:
    """5.1 M weights: 5.1 MB of int8 at least, more than the 4 MB of the MPS2 boards' flash."""
    w = numpy_helper.from_array(np.zeros((1024, 5000), np.float32), "w")
    return _save(path, [helper.make_node("MatMul", ["x", "w"], ["y"])], [1, 1024], [1, 5000], [w])


def _huge_image(path: Path) -> Path:
    """A 3x3 convolution on a 1x3x1400x1400 image: input and output alone are 11.8 MB."""
    w = numpy_helper.from_array(np.zeros((3, 3, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return _save(path, [conv], [1, 3, 1400, 1400], [1, 3, 1400, 1400], [w])


def _custom_op(path: Path) -> Path:
    node = helper.make_node("FancyRelu", ["x"], ["y"], domain="com.example", name="fancy")
    return _save(path, [node], [1, 4], [1, 4], domains=("com.example",))


def _custom_op_in_a_branch(path: Path) -> Path:
    branch = helper.make_graph(
        [helper.make_node("Gelu2", ["x"], ["z"], domain="org.acme")],
        "then",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z2"])],
        "else",
        [],
        [helper.make_tensor_value_info("z2", TensorProto.FLOAT, [1, 4])],
    )
    c = numpy_helper.from_array(np.array(True), "c")
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)
    return _save(path, [node], [1, 4], [1, 4], [c], domains=("org.acme",))


def _ort_refuses(path: Path) -> Path:
    """Det of a 1x4 matrix: ONNX Runtime's shape inference refuses it when loading."""
    return _save(path, [helper.make_node("Det", ["x"], ["y"])], [1, 4], [1, 4])


CASES = [
    pytest.param(_wide_matmul, ["-t", "cortex-m0plus", "--quantize", "int8", "--calib-data",
                                "digits"],
                 "mps2-an385's flash: its int8 weights alone need at least 5,120,000 B",
                 id="weights-over-flash"),
    pytest.param(_huge_image, ["-t", "cortex-m4", "--quantize", "int8", "--calib-data", "digits"],
                 "does not fit mps2-an386's RAM: node 'Conv' alone holds at least 11,760,000 B",
                 id="activations-over-ram"),
    pytest.param(_custom_op, ["-t", "x86"],
                 "uses FancyRelu from the custom domain 'com.example' (node 'fancy'), which ONNX "
                 "Runtime and TVM cannot run; export the model with standard ONNX ops",
                 id="custom-domain-op"),
    pytest.param(_custom_op_in_a_branch, ["-t", "x86"],
                 "uses Gelu2 from the custom domain 'org.acme'", id="custom-domain-op-in-a-branch"),
    pytest.param(_ort_refuses, ["-t", "x86"], "model.onnx failed:", id="ort-names-the-users-file"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "args", "message"), CASES)
def test_a_hopeless_model_fails_in_one_line_before_the_slow_stages(
    tmp_path: Path, make: Any, args: list[str], message: str
) -> None:
    model = make(tmp_path / "model.onnx")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(model), *args, "-o", str(out)])
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert message in errors[0], errors[0]
    assert "quantize" not in result.stderr and ".out." not in errors[0]  # no temp path named
    assert not out.exists()


def test_a_model_that_fits_passes_the_preflight(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.zeros((64, 10), np.float32), "w")
    path = _save(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [1, 64],
                 [1, 10], [w])  # fmt: skip
    model = OnnxModel(path, (TensorSpec("x", (1, 64), "float32"),), (), "m", None)
    preflight(model, get_board("mps2-an385"))
    bounds = lower_bounds(onnx.load(str(path)))
    assert (bounds.weight_bytes, bounds.activation_bytes) == (640, 74)


def test_resnet18_is_refused_for_cortex_m0plus_before_quantizing(tmp_path: Path) -> None:
    out = tmp_path / "r18"
    args = ["-t", "cortex-m0plus", "--quantize", "int8", "--calib-data", "digits"]
    result = CliRunner().invoke(main, ["build", RESNET18, *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "int8 weights alone need at least 11,686,752 B > 4,194,304 B" in result.stderr
    assert "export" in result.stderr and "quantize" not in result.stderr
    assert not out.exists()
