"""bench/mcu_vs_cmsis.py without CMSIS-NN (CI has none): it refuses a missing or wrong checkout
in one line with exit status 2, and its conversion of edgec's requantization to CMSIS-NN's
(multiplier, shift) keeps the arithmetic: exact under CMSIS-NN's single rounding, at most one
step away under its default double rounding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import mcu_vs_cmsis
from edgec import int8
from edgec.int8 import QGraph, QNode
from edgec.int8.fixed_point import quantize_multiplier, requantize
from edgec.int8.ops import (
    Add,
    Cast,
    Conv,
    Dense,
    GlobalAvgPool,
    Requantize,
    Rescale,
    Reshape,
    Weights,
    Window,
)

ROOT = Path(__file__).resolve().parents[2]


def _headers_only(root: Path) -> Path:
    (root / "Include").mkdir()
    (root / "Include" / "arm_nnfunctions.h").write_text("")
    return root


@pytest.mark.parametrize(
    "checkout",
    [
        pytest.param(None, id="no-option"),
        pytest.param("-O3", id="no-option-after-opt-level"),
        pytest.param(lambda tmp: tmp / "absent", id="missing-dir"),
        pytest.param(lambda tmp: tmp, id="empty-dir"),
        pytest.param(_headers_only, id="headers-without-sources"),
    ],
)
def test_bench_refuses_a_missing_or_invalid_cmsis_nn_checkout_in_one_line(
    checkout, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if checkout is None or isinstance(checkout, str):  # `--opt -O3` parses as a level
        argv = [] if checkout is None else ["--opt", checkout]
    else:
        argv = ["--cmsis-nn", str(checkout(tmp_path))]
    assert mcu_vs_cmsis.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mcu_vs_cmsis: error: ")
    assert "git clone https://github.com/ARM-software/CMSIS-NN" in err


def test_bench_script_exits_2_without_a_traceback(tmp_path: Path) -> None:
    script = ROOT / "bench" / "mcu_vs_cmsis.py"
    done = subprocess.run(
        [sys.executable, str(script), "--cmsis-nn", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("multiplier", "shift", "expected"),
    [
        pytest.param(2**30, 1, (2**30, 30), id="largest-left-shift"),
        pytest.param(2**31 - 1, 62, (2**31 - 1, -31), id="largest-right-shift"),
        pytest.param(0, 31, (0, 0), id="zero-multiplier"),
        pytest.param(1_534_751_065, 35, (1_534_751_065, -4), id="typical-conv"),
        pytest.param(1_073_741_824, 31, (1_073_741_824, 0), id="no-shift"),
    ],
)
def test_edgec_requantization_becomes_cmsis_nn_multiplier_and_shift(
    multiplier: int, shift: int, expected: tuple[int, int]
) -> None:
    m, s = mcu_vs_cmsis.to_cmsis(np.array([multiplier]), np.array([shift]))
    assert (int(m[0]), int(s[0])) == expected
    assert m.dtype == s.dtype == np.int32


@pytest.mark.parametrize(
    ("multiplier", "shift"),
    [
        pytest.param(2**30, 0, id="shift-too-small"),
        pytest.param(2**30, 63, id="shift-too-large"),
        pytest.param(2**31, 40, id="multiplier-past-q31"),
        pytest.param(-5, 40, id="negative-multiplier"),
    ],
)
def test_requantization_outside_cmsis_nn_range_is_refused(multiplier: int, shift: int) -> None:
    with pytest.raises(ValueError, match="CMSIS-NN's range"):
        mcu_vs_cmsis.to_cmsis(np.array([multiplier]), np.array([shift]))


def _cmsis_single(acc: np.ndarray, m: int, s: int) -> np.ndarray:
    """arm_nn_requantize with CMSIS_NN_USE_SINGLE_ROUNDING."""
    total = 31 - s
    return ((acc * m) >> (total - 1)) + 1 >> 1


def _cmsis_double(acc: np.ndarray, m: int, s: int) -> np.ndarray:
    """arm_nn_requantize by default: a rounding doubling high multiply, then a rounding shift."""
    high = ((acc << max(s, 0)) * m + (1 << 30)) >> 31
    exponent = max(-s, 0)
    mask = (1 << exponent) - 1
    result = high >> exponent
    threshold = (mask >> 1) + (result < 0)
    return result + ((high & mask) > threshold)


@pytest.mark.parametrize(
    "real",
    [
        pytest.param(0.0021, id="conv"),
        pytest.param(0.49999, id="below-half"),
        pytest.param(1.75, id="above-one"),
        pytest.param(2.0**-25, id="tiny"),
    ],
)
def test_converted_requantization_matches_edgec_under_cmsis_nn_rounding(real: float) -> None:
    multiplier, shift = quantize_multiplier(np.array([real]))
    m, s = (int(v[0]) for v in mcu_vs_cmsis.to_cmsis(multiplier, shift))
    acc = np.random.default_rng(0).integers(-(2**20), 2**20, 20_000, dtype=np.int64)
    acc = np.concatenate([acc, np.arange(-300, 300)])
    ours = (acc * int(multiplier[0]) + (1 << int(shift[0] - 1))) >> int(shift[0])
    assert np.array_equal(_cmsis_single(acc, m, s), ours)
    assert np.abs(_cmsis_double(acc, m, s) - ours).max() <= 1
    clamped = requantize(acc, multiplier, shift, -128, 127)
    assert np.array_equal(np.clip(_cmsis_single(acc, m, s), -128, 127), clamped)


def test_add_parameters_follow_tflite_twice_the_larger_input_scale() -> None:
    (m1, s1), (m2, s2), (mo, so) = mcu_vs_cmsis.add_params(0.04, 0.02, 0.05)
    assert m1 * 2.0 ** (s1 - 31) == pytest.approx(0.5)
    assert m2 * 2.0 ** (s2 - 31) == pytest.approx(0.25)
    assert mo * 2.0 ** (so - 31) == pytest.approx(0.08 / (2**20 * 0.05))


def _residual_graph() -> QGraph:
    """x → conv 3x3 (1 → 4) → a; conv 1x1 a → b; add(b, a) → c; global average → d; flatten
    → e; dense (4 → 3) → y: every layer kind the bench maps."""
    rng = np.random.default_rng(0)

    def weights(shape: tuple[int, ...]) -> Weights:
        values = rng.integers(-127, 128, shape).astype(np.int8)
        return Weights(values, rng.integers(-99, 99, shape[0]).astype(np.int32), None)

    def out(n: int, shift: int) -> Requantize:
        return Requantize(np.full(n, 1_500_000_000), np.full(n, shift), 0, 127)

    same, one = Window((3, 3), (1, 1), (1, 1, 1, 1)), Window((1, 1), (1, 1), (0, 0, 0, 0))
    conv1 = Conv(same, (1, 1), 1, weights((4, 1, 3, 3)), out(4, 38))
    conv2 = Conv(one, (1, 1), 1, weights((4, 4, 1, 1)), out(4, 37))
    add = Add(Rescale(np.array([1 << 30, 1 << 29]), 31))
    nodes = (
        QNode("quantize", "x:q", ("x",), "x:q", "int8", Cast()),
        QNode("conv", "c1", ("x:q",), "a", "int8", conv1),
        QNode("conv", "c2", ("a",), "b", "int8", conv2),
        QNode("add", "add", ("b", "a"), "c", "int8", add),
        QNode("global_avgpool", "gap", ("c",), "d", "int8", GlobalAvgPool(out(1, 35))),
        QNode("reshape", "flat", ("d",), "e", "int8", Reshape((1, 4))),
        QNode("dense", "fc", ("e",), "y:q", "int8", Dense(weights((3, 4)), out(3, 38))),
        QNode("dequantize", "y", ("y:q",), "y", "float", Cast()),
    )  # fmt: skip
    scales = {"x:q": 0.05, "a": 0.1, "b": 0.1, "c": 0.12, "d": 0.03, "e": 0.03, "y:q": 0.2}
    return QGraph(nodes, scales, {}, ("x",), ("y",))


def test_cmsis_model_c_calls_each_layer_in_order_with_edgec_arena_places() -> None:
    graph = _residual_graph()
    sample = np.random.default_rng(1).standard_normal((1, 1, 5, 5)).astype(np.float32)
    values = int8.trace(graph, [sample])
    shapes = {name: tuple(int(d) for d in v.shape) for name, v in values.items()}
    model = mcu_vs_cmsis.cmsis_model(graph, shapes)
    assert [layer.kind for layer in model.layers] == [
        "conv", "conv", "add", "avgpool", "reshape", "dense",
    ]  # fmt: skip
    sizes = {t: int(np.prod(s)) for t, s in shapes.items()}
    source = mcu_vs_cmsis.model_c(model, sizes, scratch=100, provenance="tiny")
    calls = [line.strip() for line in source.splitlines() if line.startswith("    arm_")]
    assert calls[0].startswith("arm_convolve_wrapper_s8(&ctx, &l0_p, &l0_q, &l0_id, input,")
    assert calls[1].startswith("arm_convolve_wrapper_s8(&ctx, &l1_p")
    # b dies at the add, which writes over it: CMSIS-NN's add reads each element first
    b = calls[1].split(", ")[-1].removesuffix(");")
    assert calls[2].startswith(f"arm_elementwise_add_s8({b}, ")
    assert f", 20, {b}, 0, " in calls[2]
    assert calls[3].endswith("&l5_od, output);")
    assert "arm_nn_requantize(sum, 1500000000, -4);" in source  # the mean: shift 35 → -4
    assert "static const int32_t l0_s[4] __attribute__((aligned(4))) = {\n    -7, -7" in source
    assert "static int32_t scratch[25];" in source
    assert [f"EDGEC_LAYER_DONE({k});" in source for k in range(6)] == [True] * 6
    assert "#define EDGEC_LAYERS 6" in mcu_vs_cmsis.model_h(model)
