"""int8: calibration ranges, fixed-point requantization, the int8 graph against ONNX Runtime's
QDQ execution, mixed precision, and the quantize stage's errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgec import calibrate, int8, reference
from edgec.artifacts import OnnxModel, TensorSpec
from edgec.errors import EdgecError
from edgec.sensitivity import error
from edgec.stages.quantize import SENSITIVITY_SAMPLES, QuantizeConfig, quantize


def _identity_model(path: Path, size: int) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _calibrate(tmp_path: Path, values: np.ndarray, method: str) -> float:
    path = _identity_model(tmp_path / "id.onnx", values.shape[1])
    samples = [values[i : i + 1].astype(np.float32) for i in range(len(values))]
    return calibrate.ranges(path, samples, method)["y"]


def test_minmax_is_the_largest_magnitude(tmp_path: Path) -> None:
    values = np.random.default_rng(0).uniform(-3, 2, size=(8, 1000))
    assert _calibrate(tmp_path, values, "minmax") == pytest.approx(np.abs(values).max(), rel=1e-6)


def test_percentile_cuts_at_the_quantile_of_a_normal(tmp_path: Path) -> None:
    values = np.random.default_rng(0).standard_normal(size=(16, 20000))
    got = _calibrate(tmp_path, values, "percentile")  # 99.99 % of |N(0,1)| lie below 3.89
    assert 3.6 < got < 4.2 and got < np.abs(values).max()


def test_entropy_clips_rare_outliers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal(size=(8, 20000))
    values[0, :4] = 60.0  # four outliers stretch minmax 15-fold
    got = _calibrate(tmp_path, values, "entropy")
    assert 2.0 < got < 10.0


def test_unknown_calibration_method_lists_the_known(tmp_path: Path) -> None:
    with pytest.raises(EdgecError, match="known: entropy, minmax, percentile"):
        _calibrate(tmp_path, np.ones((1, 4)), "mse")


@pytest.mark.parametrize("real", [1e-6, 0.0123, 0.25, 0.5, 0.999999999, 1.0, 3.7, 1000.0])
def test_multiplier_and_shift_represent_the_real_to_31_bits(real: float) -> None:
    m, n = int8.quantize_multiplier(np.array([real]))
    assert 2**30 <= m[0] < 2**31
    assert abs(float(Fraction(int(m[0]), 2 ** int(n[0]))) - real) <= real * 2**-30


REQUANT = [
    pytest.param(3, 0.5, -128, 127, 2, id="half-rounds-up"),
    pytest.param(-3, 0.5, -128, 127, -1, id="negative-half-rounds-up"),
    pytest.param(5, 0.5, -128, 127, 3, id="2.5-to-3"),
    pytest.param(1000, 1.0, -128, 127, 127, id="saturates-high"),
    pytest.param(-1000, 1.0, -128, 127, -128, id="saturates-low"),
    pytest.param(-50, 0.3, 0, 127, 0, id="fused-relu"),
    pytest.param(2**30, 2**-24, -128, 127, 64, id="large-accumulator"),
]


@pytest.mark.parametrize(("acc", "real", "lo", "hi", "want"), REQUANT)
def test_requantize_rounds_half_up_and_saturates(
    acc: int, real: float, lo: int, hi: int, want: int
) -> None:
    m, n = int8.quantize_multiplier(np.array(real))
    assert int(int8.requantize(np.array([acc]), m, n, lo, hi)[0]) == want


def test_requantize_matches_exact_rationals_per_channel() -> None:
    rng = np.random.default_rng(1)
    acc = rng.integers(-(2**20), 2**20, size=(64, 4))
    real = np.array([0.0007, 0.013, 0.2, 0.9])
    m, n = int8.quantize_multiplier(real)
    got = int8.requantize(acc, m, n, -128, 127)
    for (i, c), value in np.ndenumerate(got):
        exact = Fraction(int(acc[i, c]) * int(m[c]), 2 ** int(n[c])) + Fraction(1, 2)
        assert value == max(-128, min(127, exact.__floor__()))


CONV_SUMS = [  # input shape, weight shape, strides, pads (top, left, bottom, right), dilations
    pytest.param((2, 16, 9, 9), (8, 16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, id="3x3"),
    pytest.param((2, 600, 6, 6), (4, 600, 3, 3), (2, 2), (1, 0, 2, 1), (1, 1), 1, id="K-5400"),
    pytest.param((2, 8, 10, 10), (16, 1, 3, 3), (2, 1), (1, 1, 1, 1), (2, 2), 8, id="depthwise"),
    pytest.param((2, 12, 7, 7), (6, 4, 3, 2), (1, 1), (0, 1, 0, 1), (1, 2), 3, id="grouped"),
    pytest.param((1, 2, 36, 36), (2, 2, 33, 33), (1, 1), (0, 0, 0, 0), (1, 1), 1, id="33x33"),
]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "strides", "pads", "dilations", "groups"), CONV_SUMS
)
def test_int8_conv_sums_are_exact_at_the_largest_magnitudes(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    groups: int,
) -> None:
    # -128 x -127 everywhere: the partial sums the float32 GEMM blocks must hold exactly
    x = np.full(x_shape, -128, np.int8)
    x.flat[::7] = 127
    w = np.full(w_shape, -127, np.int8)
    got = int8.reference.conv_sums(x, w, strides, pads, dilations, groups)
    top, left, bottom, right = pads
    padded = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    (kh, kw), (dh, dw), (sh, sw) = w_shape[2:], dilations, strides
    per_group, per_out = x_shape[1] // groups, w_shape[0] // groups
    want = np.zeros(got.shape, np.int64)
    for o in range(w_shape[0]):
        g = o // per_out
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * got.shape[2], sh)
                cols = slice(j * dw, j * dw + sw * got.shape[3], sw)
                part = padded[:, g * per_group : (g + 1) * per_group, rows, cols]
                want[:, o] += np.einsum("nchw,c->nhw", part, w[o, :, i, j].astype(np.int64))
    assert got.dtype == np.float64 and np.array_equal(got, want)


# conv-relu, a residual add with relu6, a depthwise conv, max pooling, a concat with a 3x3
# average pooling of itself, global pooling, a dense layer and softmax: every int8 op
def _cnn(path: Path) -> OnnxModel:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1, groups=8), nn.ReLU())
            self.pool = nn.MaxPool2d(2)
            self.smooth = nn.AvgPool2d(3, 1, 1)
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10), nn.Softmax(-1)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.a(x)
            pooled = self.pool(self.dw(a + self.b(a)))
            return self.head(torch.cat([pooled, self.smooth(pooled)], 1))

    torch.manual_seed(0)
    net = Net().eval()
    torch.onnx.export(net, (torch.zeros(1, 1, 16, 16),), str(path), opset_version=17,
                      input_names=["x"], output_names=["y"], dynamo=False)  # fmt: skip
    spec_in = TensorSpec("x", (1, 1, 16, 16), "float32")
    spec_out = TensorSpec("y", (1, 10), "float32")
    return OnnxModel(path, (spec_in,), (spec_out,), "test-cnn", None)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    pytest.importorskip("torch")
    return _cnn(tmp_path_factory.mktemp("q") / "model.onnx")


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((64, 1, 16, 16)).astype(np.float32)


def test_every_op_runs_int8_and_matches_onnxruntime_qdq(
    cnn: OnnxModel, calibration: np.ndarray
) -> None:
    q = quantize(cnn, calibration, QuantizeConfig(sensitivity=None))
    ops = {n.op for n in q.graph.nodes if n.precision == "int8"}
    assert {"conv", "add", "maxpool", "global_avgpool", "dense", "reshape"} <= ops
    assert {"avgpool", "concat", "softmax"} <= ops
    assert q.graph.float_ops == 0 and q.graph.int8_ops == 9
    x = np.random.default_rng(1).standard_normal((32, 1, 16, 16)).astype(np.float32)
    ours = int8.run(q.graph, [x])[0]
    ort = np.concatenate([reference.run(q.onnx.path, [x[i : i + 1]])[0] for i in range(len(x))])
    steps = np.abs(ours - ort) / q.output_scale
    assert np.mean(steps <= 1.0001) >= 0.99
    float_out = np.concatenate([reference.run(cnn.path, [x[i : i + 1]])[0] for i in range(32)])
    assert np.abs(ours - float_out).max() < 0.1 * np.abs(float_out).max()


def test_int8_weights_are_a_quarter_of_the_float_ones(
    cnn: OnnxModel, calibration: np.ndarray
) -> None:
    q = quantize(cnn, calibration, QuantizeConfig(sensitivity=None)).to_json()
    assert q["weight_bytes"] <= 0.3 * q["float_weight_bytes"]


def test_sensitive_and_named_layers_stay_in_float(cnn: OnnxModel, calibration: np.ndarray) -> None:
    strict = quantize(cnn, calibration, QuantizeConfig(sensitivity=1e-9))
    assert strict.graph.int8_ops == 0 and strict.graph.float_ops == 9
    assert set(strict.float_layers) == set(strict.sensitivity)
    first = next(iter(strict.sensitivity))
    named = quantize(cnn, calibration, QuantizeConfig(sensitivity=None, float_layers=(first,)))
    assert named.float_layers == (first,) and named.graph.float_ops == 1
    casts = [(n.op, n.inputs[0]) for n in named.graph.nodes if n.op in ("quantize", "dequantize")]
    # the first layer reads the float input as it is; only its output is quantized, once
    assert [op for op, _ in casts] == ["quantize", "dequantize"] and casts[0][1] != "x"


def test_sensitivity_from_cached_float_activations_equals_whole_graph_runs(
    cnn: OnnxModel, calibration: np.ndarray
) -> None:
    # the straightforward way: each layer's whole graph, only that layer int8, in numpy
    probe = calibration[:SENSITIVITY_SAMPLES]
    expected = np.concatenate([reference.run(cnn.path, [x[None]])[0] for x in probe])
    fast = quantize(cnn, calibration, QuantizeConfig(sensitivity=1.0))
    layers = tuple(fast.sensitivity)
    slow = {}
    for layer in layers:
        others = tuple(n for n in layers if n != layer)
        alone = quantize(cnn, calibration, QuantizeConfig(sensitivity=None, float_layers=others))
        slow[layer] = error(int8.run(alone.graph, [probe])[0], expected)
    assert fast.sensitivity == pytest.approx(slow, rel=1e-3)
    # a threshold between two layers' errors: the same layers stay float, the same int8 graph
    ordered = sorted(slow.values())
    threshold = (ordered[len(ordered) // 2] + ordered[len(ordered) // 2 + 1]) / 2
    chosen = quantize(cnn, calibration, QuantizeConfig(sensitivity=threshold))
    chosen_qdq = chosen.onnx.path.read_bytes()
    sensitive = tuple(n for n in layers if slow[n] > threshold)
    assert chosen.float_layers == sensitive and 0 < len(sensitive) < len(layers)
    named = quantize(cnn, calibration, QuantizeConfig(sensitivity=None, float_layers=sensitive))
    assert chosen.graph.scales == named.graph.scales
    assert chosen_qdq == named.onnx.path.read_bytes()


def _sigmoid_model(path: Path) -> OnnxModel:
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["y"])],
        "s",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    spec = TensorSpec("x", (1, 4), "float32")
    return OnnxModel(path, (spec,), (TensorSpec("y", (1, 4), "float32"),), "sig", None)


def test_an_op_int8_does_not_cover_runs_as_a_float_island(tmp_path: Path) -> None:
    calibration = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    q = quantize(_sigmoid_model(tmp_path / "s.onnx"), calibration, QuantizeConfig())
    assert [n.op for n in q.graph.nodes] == ["float_op"]
    assert q.graph.float_islands == {"y": "Sigmoid: int8 has no Sigmoid"}
    x = calibration[:1]
    assert np.allclose(int8.run(q.graph, [x])[0], 1 / (1 + np.exp(-x)), atol=1e-6)


def test_unknown_float_layer_lists_the_layers(cnn: OnnxModel, calibration: np.ndarray) -> None:
    with pytest.raises(EdgecError, match="--float-layer 'conv9' is not a layer; layers: "):
        quantize(cnn, calibration, QuantizeConfig(float_layers=("conv9",)))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"mode": "int4"}, "unknown quantization 'int4'", id="mode"),
        pytest.param({"method": "mse"}, "unknown calibration method 'mse'", id="method"),
        pytest.param({"samples": 0}, "samples 0 must be at least 1", id="samples"),
        pytest.param({"percentile": 30.0}, r"percentile 30.0 is outside \(50, 100\]", id="pct"),
    ],
)
def test_bad_config_is_a_one_line_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(EdgecError, match=message):
        QuantizeConfig(**fields)  # type: ignore[arg-type]


def test_identity_nodes_on_weights_and_activations_pass_through(tmp_path: Path) -> None:
    # torch's exporter writes Identity for a weight two layers share, and nn.Identity stays one
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 3, 3], rng.standard_normal(144) * 0.3)
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["w"], ["w_shared"]),
            helper.make_node("Conv", ["x", "w_shared"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Identity", ["r"], ["y"]),
        ],
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        initializer=[w],
    )
    path = tmp_path / "shared.onnx"
    opset = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opset, ir_version=8), str(path))
    spec = TensorSpec("x", (1, 4, 6, 6), "float32")
    model = OnnxModel(path, (spec,), (TensorSpec("y", (1, 4, 6, 6), "float32"),), "id", None)
    x = rng.standard_normal((16, 4, 6, 6)).astype(np.float32)
    q = quantize(model, x, QuantizeConfig(sensitivity=None))
    assert q.graph.int8_ops == 1 and q.graph.float_ops == 0
    ours = int8.run(q.graph, [x[:1]])[0]
    assert np.abs(ours - reference.run(q.onnx.path, [x[:1]])[0]).max() <= 1.0001 * q.output_scale


def test_a_bias_too_large_for_int32_keeps_its_layer_in_float(tmp_path: Path) -> None:
    # weights near zero and a large bias: bias / (input scale x weight scale) > 2^31
    rng = np.random.default_rng(0)
    inits = [
        helper.make_tensor("w", TensorProto.FLOAT, [8, 4], rng.standard_normal(32) * 1e-7),
        helper.make_tensor("b", TensorProto.FLOAT, [4], [1e3, -1e3, 5.0, 0.0]),
    ]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=inits,
    )
    path = tmp_path / "gemm.onnx"
    opset = [helper.make_opsetid("", 17)]
    onnx.save(helper.make_model(graph, opset_imports=opset, ir_version=8), str(path))
    spec = TensorSpec("x", (1, 8), "float32")
    model = OnnxModel(path, (spec,), (TensorSpec("y", (1, 4), "float32"),), "gemm", None)
    x = rng.standard_normal((16, 8)).astype(np.float32)
    q = quantize(model, x, QuantizeConfig())
    assert q.float_layers == ("y",)  # an unnamed node goes by its output
    assert q.graph.int8_ops == 0 and q.graph.float_ops == 1
