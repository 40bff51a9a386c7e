"""int8 covers what it can and steps aside locally for the rest: ops with a native int8 form
(ceil-mode max pooling, channel shuffles, splits, slices, spatial means, a MatMul's bias) run
in int8; any other ONNX node runs in float between a dequantize and a quantize (a float
island), named with its reason. Each graph's numpy reference matches ONNX Runtime running the
same int8 model as QDQ within one output step; the C generator refuses what it cannot run in
one line naming it. (tests/integration/test_int8_coverage.py builds the same graphs with TVM.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgec import int8, reference
from edgec.artifacts import OnnxModel, TensorSpec
from edgec.errors import EdgecError
from edgec.int8 import QuantizedModel
from edgec.stages.generate import generate
from edgec.stages.quantize import QuantizeConfig, quantize
from edgec.targets import get_target

_RNG = np.random.default_rng(0)


def _const(name: str, values: np.ndarray) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(values), name)


def _weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return _const(name, (_RNG.standard_normal(shape) * 0.3).astype(np.float32))


def _model(path: Path, nodes: list, inits: list, x: tuple, y: tuple) -> OnnxModel:
    graph = helper.make_graph(
        nodes,
        "coverage",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    specs = (TensorSpec("x", x, "float32"),), (TensorSpec("y", y, "float32"),)
    return OnnxModel(path, *specs, path.stem, None)


def cnn_families(path: Path) -> OnnxModel:
    """conv+relu → ceil-mode max pool → channel shuffle (reshape, transpose, reshape) → split
    → [sigmoid (an island) → conv] and [slice] → concat → mean over H, W → dense."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node(
            "MaxPool", ["r1"], ["p"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1
        ),
        helper.make_node("Reshape", ["p", "s5"], ["g"]),
        helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "s4"], ["shuffled"]),
        helper.make_node("Split", ["shuffled", "halves"], ["a", "b"], axis=1),
        helper.make_node("Sigmoid", ["a"], ["sa"]),
        helper.make_node("Conv", ["sa", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Slice", ["b", "start", "stop", "axis"], ["bs"]),
        helper.make_node("Concat", ["c2", "bs", "b"], ["cat"], axis=1),
        helper.make_node("ReduceMean", ["cat"], ["m"], axes=[2, 3], keepdims=0),
        helper.make_node("Gemm", ["m", "w3", "b3"], ["y"], transB=1),
    ]
    inits = [
        _weight("w1", (8, 4, 3, 3)), _weight("b1", (8,)), _weight("w2", (4, 4, 3, 3)),
        _weight("b2", (4,)), _weight("w3", (10, 10)), _weight("b3", (10,)),
        _const("s5", np.array([1, 2, 4, 5, 5], np.int64)),
        _const("s4", np.array([1, 8, 5, 5], np.int64)),
        _const("halves", np.array([4, 4], np.int64)),
        _const("start", np.array([1], np.int64)), _const("stop", np.array([3], np.int64)),
        _const("axis", np.array([1], np.int64)),
    ]  # fmt: skip
    return _model(path, nodes, inits, (1, 4, 10, 10), (1, 10))


def sequence_families(path: Path) -> OnnxModel:
    """A transformer block's pieces on (1, 6, 16) features: layer norm (an island) → MatMul +
    bias (int8) → GELU's Erf and Muls (islands) → a MatMul of two activations (an island) →
    residual add (int8)."""
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["n"], axis=-1),
        helper.make_node("MatMul", ["n", "wq"], ["q0"]),
        helper.make_node("Add", ["q0", "bq"], ["q"]),
        helper.make_node("Erf", ["q"], ["e"]),
        helper.make_node("Mul", ["q", "e"], ["g"]),
        helper.make_node("Transpose", ["n"], ["nt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["nt", "g"], ["attn"]),  # (1, 16, 16)
        helper.make_node("MatMul", ["n", "attn"], ["mixed"]),  # (1, 6, 16)
        helper.make_node("Add", ["x", "mixed"], ["y"]),
    ]
    inits = [
        _const("gamma", np.ones(16, np.float32)), _const("beta", np.zeros(16, np.float32)),
        _weight("wq", (16, 16)), _weight("bq", (16,)),
    ]  # fmt: skip
    return _model(path, nodes, inits, (1, 6, 16), (1, 6, 16))


def preactivation(path: Path) -> OnnxModel:
    """conv → relu → a standalone BatchNormalization (DenseNet's pre-activation: nothing to fold
    it into) → relu → 1x1 conv."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("BatchNormalization", ["r1", "g", "beta", "mean", "var"], ["n"]),
        helper.make_node("Relu", ["n"], ["r2"]),
        helper.make_node("Conv", ["r2", "w2", "b2"], ["y"]),
    ]
    rng = np.random.default_rng(3)
    inits = [
        _weight("w1", (16, 3, 3, 3)), _weight("b1", (16,)), _weight("w2", (8, 16, 1, 1)),
        _weight("b2", (8,)), _const("g", rng.uniform(0.5, 2, 16).astype(np.float32)),
        _const("beta", rng.uniform(-0.5, 0.5, 16).astype(np.float32)),
        _const("mean", rng.uniform(0, 0.5, 16).astype(np.float32)),
        _const("var", rng.uniform(0.5, 2, 16).astype(np.float32)),
    ]  # fmt: skip
    return _model(path, nodes, inits, (1, 3, 8, 8), (1, 8, 8, 8))


# (graph, ops that must run in int8, ONNX ops that must be float islands)
GRAPHS = [
    pytest.param(
        cnn_families,
        {"conv", "maxpool", "reshape", "transpose", "slice", "concat", "global_avgpool", "dense"},
        {"Sigmoid"},
        id="cnn-ceil-maxpool-shuffle-split-slice-mean",
    ),
    pytest.param(
        sequence_families,
        {"dense", "add"},
        {"LayerNormalization", "Erf", "Mul", "MatMul"},
        id="sequence-layernorm-matmul-bias-gelu",
    ),
]


def quantized(make: Callable[[Path], OnnxModel], directory: Path) -> QuantizedModel:
    model = make(directory / "model.onnx")
    shape = model.inputs[0].shape
    calibration = np.random.default_rng(1).standard_normal((16, *shape[1:]), np.float32)
    return quantize(model, calibration, QuantizeConfig(sensitivity=None))


@pytest.mark.parametrize(("make", "int8_ops", "islands"), GRAPHS)
def test_uncovered_ops_become_float_islands_and_the_rest_stays_int8(
    make: Callable[[Path], OnnxModel], int8_ops: set[str], islands: set[str], tmp_path: Path
) -> None:
    q = quantized(make, tmp_path)
    assert int8_ops <= {n.op for n in q.graph.nodes if n.precision == "int8"}
    reasons = q.graph.float_islands
    assert {why.split(":")[0] for why in reasons.values()} == islands
    assert all(why.split(": ", 1)[1] for why in reasons.values())  # each says why
    assert q.to_json()["float_islands"] == reasons
    x = np.random.default_rng(2).standard_normal((8, *q.onnx.inputs[0].shape[1:]), np.float32)
    ours = int8.run(q.graph, [x])[0]
    ort = np.concatenate([reference.run(q.onnx.path, [x[i : i + 1]])[0] for i in range(8)])
    steps = np.abs(ours - ort) / q.output_scale
    assert np.mean(steps <= 1.0001) >= 0.99, steps.max()


def test_a_torch_linear_on_a_sequence_is_one_int8_dense(tmp_path: Path) -> None:
    q = quantized(sequence_families, tmp_path)
    (dense,) = [n for n in q.graph.nodes if n.op == "dense"]
    assert dense.precision == "int8" and dense.output == "q"  # the bias Add folded into it
    assert dense.attrs.weights.bias.any()


CEIL_POOLS = [  # (input side, kernel, stride, pads): ceil_mode gives one more window than floor
    pytest.param(10, 3, 2, 0, id="10-k3-s2"),
    pytest.param(8, 3, 2, 0, id="8-k3-s2"),
    pytest.param(13, 2, 2, 0, id="13-k2-s2"),
    pytest.param(12, 3, 3, 1, id="12-k3-s3-pad1"),
    # ONNX drops a last window that would start in the padding: floor's count
    pytest.param(11, 3, 3, 1, id="11-k3-s3-pad1-last-window-dropped"),
]


@pytest.mark.parametrize(("side", "kernel", "stride", "pad"), CEIL_POOLS)
def test_ceil_mode_max_pooling_is_int8_and_matches_onnxruntime(
    tmp_path: Path, side: int, kernel: int, stride: int, pad: int
) -> None:
    out = -(-(side + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= side + pad:
        out -= 1
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[kernel] * 2,
                         strides=[stride] * 2, pads=[pad] * 4, ceil_mode=1),
    ]  # fmt: skip
    inits = [_weight("w", (2, 2, 1, 1))]
    model = _model(tmp_path / "pool.onnx", nodes, inits, (1, 2, side, side), (1, 2, out, out))
    calibration = np.random.default_rng(1).standard_normal((8, 2, side, side), np.float32)
    q = quantize(model, calibration, QuantizeConfig(sensitivity=None))
    ops = [(n.op, n.precision) for n in q.graph.nodes]
    assert ops == [("quantize", "int8"), ("conv", "int8"), ("maxpool", "int8"),
                   ("dequantize", "float")]  # fmt: skip
    x = calibration[:1]
    ours, ort = int8.run(q.graph, [x])[0], reference.run(q.onnx.path, [x])[0]
    assert ours.shape == (1, 2, out, out)
    assert np.abs(ours - ort).max() <= q.output_scale * 1.0001


def test_the_c_generator_refuses_a_float_island_naming_it(tmp_path: Path) -> None:
    q = quantized(cnn_families, tmp_path)
    sample = np.zeros((1, 4, 10, 10), np.float32)
    with pytest.raises(EdgecError, match=r"does not cover these ONNX nodes: sa \(Sigmoid\)"):
        generate(q, get_target("cortex-m4"), tmp_path, sample)


def test_the_c_generator_refuses_an_int8_channel_shuffle_in_one_line(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "s5"], ["g"]),
        helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "s4"], ["y"]),
    ]
    inits = [_weight("w1", (4, 2, 3, 3)), _const("s5", np.array([1, 2, 2, 4, 4], np.int64)),
             _const("s4", np.array([1, 4, 4, 4], np.int64))]  # fmt: skip
    model = _model(tmp_path / "model.onnx", nodes, inits, (1, 2, 4, 4), (1, 4, 4, 4))
    calibration = np.random.default_rng(1).standard_normal((8, 2, 4, 4), np.float32)
    q = quantize(model, calibration, QuantizeConfig(sensitivity=None))
    assert not q.graph.float_islands and q.graph.float_ops == 0
    with pytest.raises(EdgecError, match=r"no kernel for int8 transpose \(t\)") as caught:
        generate(q, get_target("cortex-m4"), tmp_path, calibration[:1])
    assert "\n" not in str(caught.value)


# old-converter graphs (bench/legacy_graphs.py): what each keeps in float islands (a standalone
# BatchNormalization is an int8 1x1 depthwise conv)
LEGACY = [
    pytest.param("alexnet_style", {"LRN"}, id="alexnet-lrn"),
    pytest.param("shufflenet_style", {"Sum"}, id="shufflenet-sum-of-three"),
    pytest.param("inception_style", {"Relu"}, id="inception-relu-after-concat"),
    pytest.param("squeezenet_style", {"Dropout", "Sum"}, id="squeezenet-dropout-mask"),
]


@pytest.mark.parametrize(("name", "islands"), LEGACY)
def test_old_converter_graphs_quantize_with_float_islands_and_match_onnxruntime(
    tmp_path: Path, name: str, islands: set[str]
) -> None:
    from bench import legacy_graphs
    from edgec.stages.load import load

    model = load(str(legacy_graphs.write(name, tmp_path / "src")), None, tmp_path)
    shape = model.inputs[0].shape
    calibration = np.random.default_rng(1).standard_normal((8, *shape[1:]), np.float32)
    q = quantize(model, calibration, QuantizeConfig(sensitivity=None))
    assert {why.split(":")[0] for why in q.graph.float_islands.values()} == islands
    assert q.graph.int8_ops > 0
    x = calibration[:4]
    ours = int8.run(q.graph, [x])[0]
    ort = np.concatenate([reference.run(q.onnx.path, [x[i : i + 1]])[0] for i in range(4)])
    assert np.mean(np.abs(ours - ort) <= q.output_scale * 1.0001) >= 0.99


def test_quantize_command_calibrates_a_sequence_model_on_synthetic_data(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgec.cli import main

    model = sequence_families(tmp_path / "seq.onnx")
    out = tmp_path / "seq.int8.onnx"
    args = ["quantize", str(model.path), "--calib-data", "synthetic", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| q0 | " in result.stdout  # the Linear's MatMul, int8, its bias Add folded in
    assert "| e | - | float island (Erf: int8 has no Erf) |" in result.stdout
    x = np.zeros((1, 6, 16), np.float32)
    assert reference.run(out, [x])[0].shape == (1, 6, 16)


def test_a_standalone_batchnorm_is_an_int8_depthwise_conv_with_its_relu(tmp_path: Path) -> None:
    channels = 6
    stats = [np.abs(_RNG.standard_normal(channels)).astype(np.float32) + 0.5 for _ in range(4)]
    names = ["gamma", "beta", "mean", "var"]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["c", "x"], ["cat"], axis=1),
        helper.make_node("BatchNormalization", ["cat", *names], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["y"]),
    ]
    inits = [_weight("w", (3, 3, 3, 3)), *(_const(n, v) for n, v in zip(names, stats, strict=True))]
    model = _model(tmp_path / "bn.onnx", nodes, inits, (1, 3, 5, 5), (1, 6, 5, 5))
    calibration = np.random.default_rng(1).standard_normal((8, 3, 5, 5), np.float32)
    q = quantize(model, calibration, QuantizeConfig(sensitivity=None))
    bn = next(n for n in q.graph.nodes if n.name == "bn")
    assert bn.op == "conv" and bn.precision == "int8" and bn.attrs.groups == channels
    assert bn.output == "y:q" and bn.attrs.out.lo == 0  # the ReLU folded into it
    x = calibration[:4]
    ours = int8.run(q.graph, [x])[0]
    ort = np.concatenate([reference.run(q.onnx.path, [x[i : i + 1]])[0] for i in range(4)])
    assert np.abs(ours - ort).max() <= q.output_scale * 1.0001
    exact = np.concatenate([reference.run(model.path, [x[i : i + 1]])[0] for i in range(4)])
    assert np.abs(ours - exact).max() <= 3 * q.output_scale


def test_a_token_id_model_quantizes_with_its_embedding_as_a_float_island(tmp_path: Path) -> None:
    from edgec.datasets import load_dataset

    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"]),
        helper.make_node("MatMul", ["e", "w"], ["t"]),
        helper.make_node("Add", ["t", "b"], ["y"]),
    ]
    inits = [_weight("emb", (50, 16)), _weight("w", (16, 8)), _weight("b", (8,))]
    graph = helper.make_graph(
        nodes,
        "tokens",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12, 8])],
        inits,
    )
    path = tmp_path / "tokens.onnx"
    opsets = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), str(path))
    specs = (TensorSpec("ids", (1, 12), "int64"),), (TensorSpec("y", (1, 12, 8), "float32"),)
    model = OnnxModel(path, *specs, "tokens", None)
    ids = load_dataset("synthetic", (1, 12), dtype="int64").train_x
    q = quantize(model, ids, QuantizeConfig())  # sensitivity too: ONNX Runtime parts take ids
    assert q.graph.float_islands == {"e": "Gather: input ids is not float32"}
    assert [n.op for n in q.graph.nodes if n.precision == "int8"] == ["quantize", "dense"]
    ours = int8.run(q.graph, [ids[:1]])[0]
    assert np.abs(ours - reference.run(q.onnx.path, [ids[:1]])[0]).max() <= q.output_scale
