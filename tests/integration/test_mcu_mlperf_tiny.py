"""The four MLPerf Tiny reference architectures (examples/), seeded weights, calibrated on
synthetic inputs of the right shape: each builds for Cortex-M4 with int8 kernels and runs under
qemu-system-arm bit-exact with edgec's int8 reference."""

from __future__ import annotations

from pathlib import Path

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

pytestmark = [pytest.mark.integration, needs("arm-none-eabi-gcc", "qemu-system-arm")]
CALIBRATION = 16  # synthetic samples: enough for ranges, cheap to run through ORT

CONV = ("edgec_conv_s8", "edgec_global_avgpool_s8", "edgec_dense_s8")
# (example, multiply-accumulates of the reference architecture, the entry points it calls)
MODELS = [
    pytest.param("resnet8", 12_501_632, {*CONV, "edgec_add_s8"}, id="resnet8-image-classification"),
    pytest.param("dscnn", 2_656_768, set(CONV), id="dscnn-keyword-spotting"),
    pytest.param("mobilenetv1", 7_489_664, set(CONV), id="mobilenetv1-0.25-visual-wake-words"),
    pytest.param("autoencoder", 264_192, {"edgec_dense_s8"}, id="autoencoder-anomaly-detection"),
]


@pytest.mark.parametrize(("example", "macs", "kernels"), MODELS)
def test_mlperf_tiny_model_runs_bit_exact_on_cortex_m4(
    example: str, macs: int, kernels: set[str], tmp_path: Path
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
