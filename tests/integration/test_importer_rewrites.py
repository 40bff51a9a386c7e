"""Graphs TVM's importer refuses but can take after an exact ONNX rewrite build with edgec build
and match ONNX Runtime (the bundle keeps the graph as given as its reference)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from edgec.cli import main

pytestmark = pytest.mark.integration


def _pow_int_exponent() -> Any:
    """conv → Pow(float, int64 exponent): ONNX allows it, TVM's importer refuses mixed dtypes."""
    weights = np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
            helper.make_node("Pow", ["c", "e"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array(2), "e")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


CASES = {"pow-int64-exponent": _pow_int_exponent}


@pytest.mark.parametrize("make", list(CASES.values()), ids=list(CASES))
def test_a_graph_the_importer_refuses_builds_after_an_exact_rewrite(
    make: Any, tmp_path: Path
) -> None:
    source = tmp_path / "model.onnx"
    onnx.save(make(), source)
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["build", str(source), "--target", "x86", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["ok"]
    assert onnx.load(out / "model.onnx") == onnx.load(source)  # the reference is as given
