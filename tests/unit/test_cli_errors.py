"""Every bad input gives one line naming the problem, exit code 2, and no output directory."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgec.cli import main
from tests.conftest import ROOT

EXAMPLE_FILE = ROOT / "examples" / "cnn.py"


def _det_model(path: Path) -> None:
    """An ONNX model using Det, an op TVM's importer lacks."""
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"])],
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        str(path),
    )


def _reshape_by_input(path: Path) -> None:
    """An ONNX model whose Reshape takes its target shape from an int64 graph input."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
        "reshape",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        str(path),
    )


def _files(tmp: Path) -> dict[str, str]:
    (tmp / "junk.onnx").write_bytes(b"\x08\x01garbage\xff\xfe" * 8)
    (tmp / "weights.pt").write_bytes(b"PK\x03\x04 not torchscript")
    (tmp / "model.txt").write_text("hello")
    (tmp / "raises.py").write_text("def make():\n    raise ValueError('no weights for you')\n")
    (tmp / "notmodule.py").write_text("def make():\n    return 42\n")
    _det_model(tmp / "det.onnx")
    _reshape_by_input(tmp / "reshape.onnx")
    np.save(tmp / "floats.npy", np.ones(2, np.float32))
    return {"tmp": str(tmp)}


BAD_INPUTS = [
    pytest.param(
        ["{tmp}/missing.onnx", "-t", "x86"],
        "model file .*missing.onnx not found",
        id="missing-file",
    ),
    pytest.param(
        ["{tmp}/junk.onnx", "-t", "x86"], "junk.onnx is not a valid ONNX model", id="not-a-model"
    ),
    pytest.param(
        ["{tmp}/weights.pt", "-t", "x86", "--input-shape", "1,3,8,8"],
        "is not a TorchScript model",
        id="pt-not-torchscript",
    ),
    pytest.param(
        ["{tmp}/model.txt", "-t", "x86"], "unknown model format '.txt'", id="unknown-format"
    ),
    pytest.param(
        [f"{EXAMPLE_FILE}:make_modle", "-t", "x86"],
        "has no factory 'make_modle'; it defines: .*make_model",
        id="factory-missing",
    ),
    pytest.param(
        ["{tmp}/raises.py:make", "-t", "x86", "--input-shape", "1,3"],
        "raised ValueError: no weights for you",
        id="factory-raises",
    ),
    pytest.param(
        ["{tmp}/notmodule.py:make", "-t", "x86", "--input-shape", "1,3"],
        "returned int, not a torch.nn.Module",
        id="factory-not-module",
    ),
    pytest.param(
        [f"{EXAMPLE_FILE}:make_model", "-t", "rpi3"],
        "unknown target 'rpi3'; known: android-arm64, android-arm64-v8a, cortex-m0plus, "
        "cortex-m4, cortex-m7, cuda, jetson-orin, rpi4, rpi5, x86",
        id="unknown-target",
    ),
    pytest.param(
        [f"{EXAMPLE_FILE}:make_model", "-t", "x86", "--input-shape", "1,three"],
        "expected positive integers",
        id="input-shape-syntax",
    ),
    pytest.param(
        [f"{EXAMPLE_FILE}:make_model", "-t", "x86", "--input-shape", "1,5,32,32"],
        "fails on an input of shape 1,5,32,32 .*check --input-shape",
        id="input-shape-wrong",
    ),
    pytest.param(["{tmp}/det.onnx", "-t", "x86"], "does not support Det", id="unsupported-op"),
    pytest.param(
        ["{tmp}/reshape.onnx", "-t", "x86"],
        r"input 'shape' is an integer tensor feeding the shape operand of Reshape node "
        r"'reshape'.* give them with --input shape=VALUES.npy",
        id="shape-input-not-given",
    ),
    pytest.param(
        ["{tmp}/reshape.onnx", "-t", "x86", "--input", "shape"],
        "--input 'shape': expected NAME=FILE.npy",
        id="input-value-without-file",
    ),
    pytest.param(
        ["{tmp}/reshape.onnx", "-t", "x86", "--input", "shape={tmp}/floats.npy"],
        "input 'shape' takes integers",
        id="input-value-not-integers",
    ),
    pytest.param(
        ["{tmp}/reshape.onnx", "-t", "x86", "--input", "nope={tmp}/floats.npy"],
        "input 'shape' is an integer tensor",
        id="input-value-for-another-input",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_gives_one_line_exit_2_and_no_output(
    tmp_path: Path, args: list[str], message: str
) -> None:
    names = _files(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", *(a.format(**names) for a in args), "-o", str(out)])
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgec: ")]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("edgec: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_run_on_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not an edgec bundle" in result.stderr


def test_targets_lists_every_profile_with_how_it_runs() -> None:
    result = CliRunner().invoke(main, ["targets"])
    assert result.exit_code == 0
    assert "emulated (qemu-aarch64)" in result.output and "device only" in result.output
