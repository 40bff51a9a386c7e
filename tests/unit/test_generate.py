"""The C generator's text, without a cross-compiler: what model.h and model.c say (the MCU
integration tests compile and run it under qemu, bit-exact with the reference)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgec.artifacts import OnnxModel, TensorSpec
from edgec.int8 import QGraph, QNode, QuantizedModel
from edgec.int8.ops import Cast, Conv, Requantize, Weights, Window
from edgec.stages.generate import generate
from edgec.targets import get_target


def _tiny_conv(tmp_path: Path, shift: int = 31) -> QuantizedModel:
    """x → quantize → 3x3 conv (1 → 2 channels, fused ReLU) → dequantize → y."""
    rng = np.random.default_rng(0)
    weights = Weights(
        rng.integers(-127, 128, (2, 1, 3, 3)).astype(np.int8),
        np.array([10, -10], np.int32),
        np.array([0.01, 0.02], np.float32),
    )
    out = Requantize(np.array([1 << 30, 1 << 30]), np.array([shift, shift]), 0, 127)
    window = Window((3, 3), (1, 1), (1, 1, 1, 1))
    nodes = (
        QNode("quantize", "x:q", ("x",), "x:q", "int8", Cast()),
        QNode("conv", "conv", ("x:q",), "y:q", "int8", Conv(window, (1, 1), 1, weights, out)),
        QNode("dequantize", "y", ("y:q",), "y", "float", Cast()),
    )
    graph = QGraph(nodes, {"x:q": 0.05, "y:q": 0.1}, {}, ("x",), ("y",))
    spec_x = TensorSpec("x", (1, 1, 4, 4), "float32")
    spec_y = TensorSpec("y", (1, 2, 4, 4), "float32")
    onnx = OnnxModel(tmp_path / "model.qdq.onnx", (spec_x,), (spec_y,), "tiny-model", None)
    return QuantizedModel(graph, onnx, onnx, {}, {}, ())


def test_generated_c_names_its_model_and_each_struct_field(tmp_path: Path) -> None:
    sample = np.random.default_rng(1).standard_normal((1, 1, 4, 4)).astype(np.float32)
    library = generate(_tiny_conv(tmp_path), get_target("cortex-m0plus"), tmp_path, sample)
    header = (tmp_path / "model.h").read_text()
    source = (tmp_path / "model.c").read_text()
    assert "for cortex-m0plus from tiny-model." in header
    assert "from tiny-model." in source
    assert "#define EDGEC_INPUT_SHAPE {1, 4, 4, 1}" in header
    assert ".in_c = 1," in source and ".out_c = 2," in source and ".lo = 0, .hi = 127," in source
    assert "edgec_conv_s8(&l0, input, output, scratch);" in source
    assert library.layers[0].op == "conv" and library.layers[0].macs == 4 * 4 * 2 * 9


# (board flash, whether the first layer's weights are stored as int16)
WIDENING = [
    pytest.param(None, True, id="no-flash-limit-widens"),
    pytest.param(1 << 20, True, id="fits-the-board-widens"),
    pytest.param(32 * 1024, False, id="would-not-fit-keeps-int8"),
]


@pytest.mark.parametrize(("flash", "widened"), WIDENING)
def test_weights_are_widened_to_int16_only_where_they_fit_the_boards_flash(
    tmp_path: Path, flash: int | None, widened: bool
) -> None:
    sample = np.random.default_rng(1).standard_normal((1, 1, 4, 4)).astype(np.float32)
    model = _tiny_conv(tmp_path, shift=40)  # a shift in (32, 64): the DSP pair path
    library = generate(model, get_target("cortex-m4"), tmp_path, sample, flash)
    source = (tmp_path / "model.c").read_text()
    assert ("int16_t l0_w16" in source) == widened, source
    assert library.widened_bytes == (24 if widened else 0)  # 2 rows of 9 taps, padded to 12
    assert ("int8 weights kept" in library.widening) == (not widened)
