"""A concatenation's inputs take its output's scale (as TFLite's converter gives them): a layer
feeding it requantizes once, straight to that scale, and an input that comes through layout ops
from an earlier concat (ShuffleNetV2's pass-through half) is already at it, so the concat copies
it (multiplier 2^shift: x exactly). The numpy reference still matches ONNX Runtime's QDQ run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from edgec import int8, reference
from edgec.artifacts import OnnxModel
from edgec.int8 import QuantizedModel
from edgec.stages.quantize import QuantizeConfig, quantize
from tests.unit.test_int8_coverage import _const, _model, _weight


def _shuffle(x: str, out: str, channels: int, side: int) -> list[onnx.NodeProto]:
    """A channel shuffle in 2 groups, then its split in halves: `out`0 and `out`1."""
    return [
        helper.make_node("Reshape", [x, f"s5_{channels}"], [f"{out}g"]),
        helper.make_node("Transpose", [f"{out}g"], [f"{out}t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", [f"{out}t", f"s4_{channels}"], [f"{out}s"]),
        helper.make_node("Split", [f"{out}s", f"halves_{channels}"], [f"{out}0", f"{out}1"],
                         axis=1),
    ]  # fmt: skip


def _branch(x: str, out: str, half: int) -> tuple[list, list]:
    """1x1 conv + ReLU, depthwise 3x3, 1x1 conv + ReLU: a ShuffleNetV2 unit's branch."""
    nodes = [
        helper.make_node("Conv", [x, f"{out}w1"], [f"{out}c1"]),
        helper.make_node("Relu", [f"{out}c1"], [f"{out}r1"]),
        helper.make_node("Conv", [f"{out}r1", f"{out}wd"], [f"{out}d"], pads=[1] * 4, group=half),
        helper.make_node("Conv", [f"{out}d", f"{out}w2"], [f"{out}c2"]),
        helper.make_node("Relu", [f"{out}c2"], [out]),
    ]
    inits = [_weight(f"{out}w1", (half, half, 1, 1)), _weight(f"{out}wd", (half, 1, 3, 3)),
             _weight(f"{out}w2", (half, half, 1, 1))]  # fmt: skip
    return nodes, inits


def _shapes(channels: int, side: int) -> list[onnx.TensorProto]:
    return [
        _const(f"s5_{channels}", np.array([1, 2, channels // 2, side, side], np.int64)),
        _const(f"s4_{channels}", np.array([1, channels, side, side], np.int64)),
        _const(f"halves_{channels}", np.array([channels // 2] * 2, np.int64)),
    ]


def shufflenet_units(path: Path) -> OnnxModel:
    """stem conv → two ShuffleNetV2 stride-1 units (shuffle, split, branch, concat) → conv."""
    c, side = 8, 6
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1] * 4),
             helper.make_node("Relu", ["c0"], ["r0"])]  # fmt: skip
    inits = [_weight("w0", (c, 3, 3, 3)), _weight("wh", (4, c, 1, 1)), *_shapes(c, side)]
    x = "r0"
    for unit in ("u1", "u2"):
        nodes += _shuffle(x, unit, c, side)
        branch, weights = _branch(f"{unit}1", f"{unit}b", c // 2)
        nodes += [*branch, helper.make_node("Concat", [f"{unit}0", f"{unit}b"], [unit], axis=1)]
        inits += weights
        x = unit
    nodes.append(helper.make_node("Conv", [x, "wh"], ["y"]))
    return _model(path, nodes, inits, (1, 3, side, side), (1, 4, side, side))


def fire_module(path: Path) -> OnnxModel:
    """SqueezeNet's fire module: squeeze 1x1 → expand 1x1 and expand 3x3 (+ ReLU) → concat."""
    nodes = [
        helper.make_node("Conv", ["x", "ws"], ["s"]),
        helper.make_node("Relu", ["s"], ["rs"]),
        helper.make_node("Conv", ["rs", "w1"], ["e1"]),
        helper.make_node("Relu", ["e1"], ["r1"]),
        helper.make_node("Conv", ["rs", "w3"], ["e3"], pads=[1] * 4),
        helper.make_node("Relu", ["e3"], ["r3"]),
        helper.make_node("Concat", ["r1", "r3"], ["y"], axis=1),
    ]
    inits = [_weight("ws", (4, 3, 1, 1)), _weight("w1", (6, 4, 1, 1)), _weight("w3", (6, 4, 3, 3))]
    return _model(path, nodes, inits, (1, 3, 5, 5), (1, 12, 5, 5))


def island_input(path: Path) -> OnnxModel:
    """A float island (Sigmoid) and a conv concatenated: the island's quantize takes the
    concat's scale too."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
        helper.make_node("Sigmoid", ["x"], ["sx"]),
        helper.make_node("Concat", ["c", "sx"], ["y"], axis=1),
    ]
    return _model(path, nodes, [_weight("w", (5, 3, 3, 3))], (1, 3, 4, 4), (1, 8, 4, 4))


# (graph, concats, tensors that must share one scale)
GRAPHS = [
    pytest.param(
        shufflenet_units,
        2,
        {"u1", "u10", "u11", "u1b", "u2", "u20", "u2b"},
        id="shufflenet-pass-through-chain",
    ),
    pytest.param(fire_module, 1, {"r1", "r3", "y:q"}, id="fire-two-convs"),
    pytest.param(island_input, 1, {"c", "sx:q", "y:q"}, id="float-island-input"),
]


def _quantized(make: Callable[[Path], OnnxModel], directory: Path) -> QuantizedModel:
    model = make(directory / "model.onnx")
    shape = model.inputs[0].shape
    calibration = np.random.default_rng(1).standard_normal((16, *shape[1:]), np.float32)
    return quantize(model, calibration, QuantizeConfig(sensitivity=None))


@pytest.mark.parametrize(("make", "concats", "shared"), GRAPHS)
def test_a_concats_inputs_share_its_scale_and_are_copied(
    make: Callable[[Path], OnnxModel], concats: int, shared: set[str], tmp_path: Path
) -> None:
    q = _quantized(make, tmp_path)
    nodes = [n for n in q.graph.nodes if n.op == "concat"]
    assert len(nodes) == concats and all(n.precision == "int8" for n in nodes)
    for node in nodes:  # every input at the output's scale: x · 2^n >> n, a copy
        out = node.attrs.out
        assert all(m == 1 << out.shift for m in out.multipliers), node.name
        assert {q.graph.scales[i] for i in node.inputs} == {q.graph.scales[node.output]}
    assert len({q.graph.scales[t] for t in shared}) == 1
    # the shared scale is the largest calibrated range of them: nothing clips more than before
    written = {t.removesuffix(":q") for t in shared}
    peak = max(q.ranges[t] for t in written if t in q.ranges)
    assert q.graph.scales[next(iter(shared))] == pytest.approx(peak / 127)
    x = np.random.default_rng(2).standard_normal((8, *q.onnx.inputs[0].shape[1:]), np.float32)
    ours = int8.run(q.graph, [x])[0]
    ort = np.concatenate([reference.run(q.onnx.path, [x[i : i + 1]])[0] for i in range(8)])
    assert np.mean(np.abs(ours - ort) / q.output_scale <= 1.0001) >= 0.99
