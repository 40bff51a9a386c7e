"""The four MLPerf Tiny reference architectures (examples/), seeded weights, calibrated on
synthetic inputs of the right shape: each builds for Cortex-M4 with int8 kernels and runs under
qemu-system-arm bit-exact with edgec's int8 reference; and small models that take the DSP and
portable kernels to the edges of their shapes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from edgec.boards import get_board
from edgec.stages import firmware
from edgec.stages.export import export
from edgec.stages.generate import generate
from edgec.stages.load import load
from edgec.stages.quantize import QuantizeConfig, quantize
from edgec.targets import get_target
from tests.conftest import ROOT, needs

if TYPE_CHECKING:
    import torch

pytestmark = [pytest.mark.integration, needs("arm-none-eabi-gcc", "qemu-system-arm")]
CALIBRATION = 16  # synthetic samples: enough for ranges, cheap to run through ORT

CONV = ("edgec_conv_s8", "edgec_global_avgpool_s8", "edgec_dense_s8")
DEPTHWISE = "edgec_depthwise_s8"
# (example, multiply-accumulates of the reference architecture, the entry points it calls,
# instructions per MAC at most on the emulated Cortex-M4 over all layers and over the depthwise
# ones): qemu -icount counts are deterministic. Seen on 2026-11-29 (bench/mcu.py): 1.33, 1.24,
# 1.39, 1.57 overall; depthwise 2.31 (DS-CNN) and 2.78 (MobileNetV1). The DS-CNN's 1.5 and
# 2.5 are issue #17's goals (X-CUBE-AI's cycles are 1.58, 1.96, 1.43, 2.20 per MAC).
MODELS = [
    pytest.param("resnet8", 12_501_632, {*CONV, "edgec_add_s8"}, 1.36, None,
                 id="resnet8-image-classification"),
    pytest.param("dscnn", 2_656_768, {*CONV, DEPTHWISE}, 1.3, 2.4, id="dscnn-keyword-spotting"),
    pytest.param("mobilenetv1", 7_489_664, {*CONV, DEPTHWISE}, 1.43, 2.9,
                 id="mobilenetv1-0.25-visual-wake-words"),
    pytest.param("autoencoder", 264_192, {"edgec_dense_s8"}, 1.6, None,
                 id="autoencoder-anomaly-detection"),
]  # fmt: skip


@pytest.mark.parametrize(("example", "macs", "kernels", "per_mac", "depthwise"), MODELS)
def test_mlperf_tiny_model_runs_bit_exact_on_cortex_m4(
    example: str,
    macs: int,
    kernels: set[str],
    per_mac: float,
    depthwise: float | None,
    tmp_path: Path,
) -> None:
    path = ROOT / "examples" / f"{example}.py"
    onnx_model = export(load(f"{path}:make_model", None, tmp_path), tmp_path)
    shape = (CALIBRATION + 1, *onnx_model.inputs[0].shape[1:])
    data = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    quantized = quantize(onnx_model, data[1:], QuantizeConfig(sensitivity=None))
    profile = get_target("cortex-m4")
    out = tmp_path / "c"
    out.mkdir()
    library = generate(quantized, profile, out, data[:1])
    assert sum(layer.macs for layer in library.layers) == macs
    fw = firmware.link(library, profile, get_board(profile.board or ""))
    # flash counts the code the linked image holds: the kernels this model calls
    kept = {name for name, _ in fw.footprint.functions if name.startswith("edgec_")}
    assert kept == {*kernels, "edgec_model_run"}
    assert fw.footprint.code_bytes == sum(size for _, size in fw.footprint.functions)
    assert fw.footprint.code_bytes < firmware.footprint(library, profile).code_bytes
    run = firmware.emulate(fw.elf, fw.board.qemu_machine or "")
    assert np.array_equal(run.output, library.expected_output)
    assert len(set(run.output.tolist())) > 1  # not a constant: the input reaches the output
    assert run.instructions <= per_mac * macs, run.instructions
    counts = zip(library.layers, run.layer_instructions, strict=True)
    dw = [(layer.macs, n) for layer, n in counts if layer.op == "depthwise"]
    if depthwise is not None:
        dw_macs, dw_instructions = (sum(column) for column in zip(*dw, strict=True))
        assert dw_instructions <= depthwise * dw_macs, dw_instructions / dw_macs


def _edge_model(case: str) -> torch.nn.Module:
    from torch import nn

    pool = (nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if case == "depthwise-1x1":
        first = (nn.Conv2d(3, 12, 3, padding=1), nn.ReLU())
        return nn.Sequential(*first, nn.Conv2d(12, 12, 1, groups=12), *pool, nn.Linear(12, 6))
    if case == "depthwise-5x5-stride-2-dilated":
        first = (nn.Conv2d(2, 8, 3, padding=1), nn.ReLU())
        dw = nn.Conv2d(8, 8, 5, 2, 4, dilation=2, groups=8)
        return nn.Sequential(*first, dw, nn.ReLU6(), *pool, nn.Linear(8, 5))
    if case == "depthwise-3x3-stride-2-relu6":  # odd output width, strided pairs, any clamp
        first = (nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        dw = nn.Conv2d(6, 6, 3, 2, 1, groups=6)
        return nn.Sequential(*first, dw, nn.ReLU6(), *pool, nn.Linear(6, 4))
    if case == "depthwise-3x3-stride-2-tall":  # taller than wide: runs transposed, a ReLU
        first = (nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        dw = nn.Conv2d(6, 6, 3, 2, 1, groups=6)
        return nn.Sequential(*first, dw, nn.ReLU(), *pool, nn.Linear(6, 4))
    if case == "depthwise-3x3-relu":  # stride 1: rows of fours, a pair and a single
        first = (nn.Conv2d(2, 6, 3, padding=1), nn.ReLU())
        dw = nn.Conv2d(6, 6, 3, 1, 1, groups=6)
        return nn.Sequential(*first, dw, nn.ReLU(), *pool, nn.Linear(6, 3))
    if case == "depthwise-3x3-unpadded":  # stride 1, one output per row, no activation
        first = (nn.Conv2d(2, 5, 3, padding=1), nn.ReLU())
        dw = nn.Conv2d(5, 5, 3, groups=5)
        return nn.Sequential(*first, dw, *pool, nn.Linear(5, 3))
    if case == "depthwise-2x3-even-taps":
        first = (nn.Conv2d(1, 4, (3, 1), padding=(1, 0)), nn.ReLU())
        dw = nn.Conv2d(4, 4, (2, 3), padding=1, groups=4)
        return nn.Sequential(*first, dw, *pool, nn.Linear(4, 3))
    # a 3-channel 5x5 strided conv to an odd channel count, a 1x1 conv, dense layers whose
    # inputs are not a multiple of 4
    convs = (nn.Conv2d(3, 7, 5, 2, 2), nn.ReLU(), nn.Conv2d(7, 5, 1), nn.ReLU(), nn.Flatten())
    return nn.Sequential(*convs, nn.Linear(5 * 5 * 5, 9), nn.ReLU(), nn.Linear(9, 4))


# (case, input shape): kernel paths at their edges (no pair of taps, even and odd tap counts,
# dilation, tail rows and channels, portable dense on a DSP core)
EDGES = [
    pytest.param("depthwise-1x1", (1, 3, 6, 6), id="depthwise-1x1"),
    pytest.param("depthwise-5x5-stride-2-dilated", (1, 2, 11, 9), id="depthwise-5x5-s2-d2"),
    pytest.param("depthwise-2x3-even-taps", (1, 1, 7, 5), id="depthwise-2x3"),
    pytest.param("depthwise-3x3-stride-2-relu6", (1, 3, 9, 7), id="depthwise-3x3-s2-relu6"),
    pytest.param("depthwise-3x3-stride-2-tall", (1, 3, 13, 6), id="depthwise-3x3-s2-tall"),
    pytest.param("depthwise-3x3-relu", (1, 2, 7, 7), id="depthwise-3x3-rows-of-7"),
    pytest.param("depthwise-3x3-relu", (1, 2, 2, 3), id="depthwise-3x3-rows-of-3"),
    # a plane wider than edgec_nn.c's DW_PITCH either way round: portable C on its own pitch
    pytest.param("depthwise-3x3-relu", (1, 2, 63, 66), id="depthwise-3x3-wider-than-pitch"),
    pytest.param("depthwise-3x3-unpadded", (1, 2, 6, 3), id="depthwise-3x3-unpadded"),
    pytest.param("depthwise-3x3-unpadded", (1, 2, 5, 6), id="depthwise-3x3-unpadded-even"),
    pytest.param("conv-and-dense-tails", (1, 3, 10, 10), id="conv-and-dense-tails"),
]


@pytest.mark.parametrize(("case", "shape"), EDGES)
def test_kernel_edge_shapes_are_bit_exact_on_dsp_and_portable_cores(
    case: str, shape: tuple[int, ...], tmp_path: Path
) -> None:
    import torch

    from edgec.artifacts import OnnxModel, TensorSpec

    torch.manual_seed(0)
    net = _edge_model(case).eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(net, (torch.zeros(shape),), str(path), opset_version=17,
                      input_names=["x"], output_names=["y"], dynamo=False)  # fmt: skip
    outputs = net(torch.zeros(shape)).shape
    model = OnnxModel(path, (TensorSpec("x", shape, "float32"),),
                      (TensorSpec("y", tuple(outputs), "float32"),), case, None)  # fmt: skip
    data = np.random.default_rng(2).standard_normal((CALIBRATION + 1, *shape[1:]))
    quantized = quantize(model, data[1:].astype(np.float32), QuantizeConfig(sensitivity=None))
    for core in ("cortex-m4", "cortex-m0plus"):
        profile = get_target(core)
        out = tmp_path / core
        out.mkdir()
        library = generate(quantized, profile, out, data[:1].astype(np.float32))
        fw = firmware.link(library, profile, get_board(profile.board or ""))
        run = firmware.emulate(fw.elf, fw.board.qemu_machine or "")
        assert np.array_equal(run.output, library.expected_output), core
