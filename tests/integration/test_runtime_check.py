"""A model whose executable calls a function the target's runtime lacks (ONNX Unique →
relax.run.unique, registered by TVM's compiler library but not by libtvm_runtime.so) fails at
build time in one line naming the ONNX op, instead of building a bundle that can never load."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgec.cli import main
from edgec.relax.runtime_check import runtime_lacks
from edgec.runtime import runtime_libs
from edgec.targets import get_target

pytestmark = pytest.mark.integration


def _unique_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["y"])],
        "unique",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("target", ["x86", "rpi4"])
def test_an_op_the_runtime_lacks_fails_the_build_naming_the_onnx_op(
    tmp_path: Path, target: str
) -> None:
    out = tmp_path / "out"
    model = _unique_model(tmp_path / "unique.onnx")
    result = CliRunner().invoke(
        main, ["build", str(model), "-t", target, "--no-measure", "-o", str(out)]
    )
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert (
        f"the model's ONNX op Unique compiles to a call of relax.run.unique, which the {target} "
        "runtime" in errors[0]
    ), errors[0]
    assert not out.exists()


def test_the_runtime_registers_the_vm_builtins_and_not_the_compilers_functions() -> None:
    libs = runtime_libs(get_target("x86"))
    names = ["vm.builtin.alloc_storage", "vm.builtin.match_shape", "relax.run.unique"]
    assert runtime_lacks(names, libs) == ["relax.run.unique"]
