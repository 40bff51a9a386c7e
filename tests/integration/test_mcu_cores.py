"""Every core × model, several inputs: the firmware's int8 output equals edgec's int8
reference bit for bit under qemu-system-arm; and the DSP path's instruction savings on the same
core (Cortex-M4 with its SMLAD kernels against the same M4 built portable)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgec.boards import get_board
from edgec.int8 import QuantizedModel
from edgec.stages import firmware
from edgec.stages.generate import generate
from edgec.targets import TargetProfile, get_target
from tests.conftest import ROOT, needs

pytestmark = [pytest.mark.integration, needs("arm-none-eabi-gcc", "qemu-system-arm")]

MODELS = {
    "digits": f"{ROOT / 'examples' / 'digits.py'}:make_model",
    "dscnn": f"{ROOT / 'examples' / 'dscnn.py'}:make_model",
}
CORES = ["cortex-m0plus", "cortex-m4", "cortex-m7"]
INPUTS = 3  # validation images of the digits set, resized to each model's input


@pytest.fixture(scope="module")
def quantized(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[QuantizedModel, np.ndarray]]:
    """Each model exported and quantized once (percentile calibration on digits, as
    bench/mcu.py does), with the inputs the firmware runs."""
    from edgec.datasets import load_dataset
    from edgec.stages.export import export
    from edgec.stages.load import load
    from edgec.stages.quantize import QuantizeConfig, quantize

    models = {}
    for name, spec in MODELS.items():
        work = tmp_path_factory.mktemp(name)
        onnx_model = export(load(spec, None, work), work)
        data = load_dataset("digits", onnx_model.inputs[0].shape)
        model = quantize(onnx_model, data.train_x, QuantizeConfig(sensitivity=None))
        models[name] = (model, data.val_x[:INPUTS])
    return models


def _emulate(
    model: QuantizedModel, profile: TargetProfile, sample: np.ndarray, out: Path
) -> tuple[firmware.McuRun, np.ndarray]:
    out.mkdir(parents=True)
    library = generate(model, profile, out, sample[None])
    fw = firmware.link(library, profile, get_board(profile.board or ""))
    return firmware.emulate(fw.elf, fw.board.qemu_machine or ""), library.expected_output


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("core", CORES)
def test_firmware_is_bit_exact_on_every_core_for_every_model_and_input(
    quantized: dict[str, tuple[QuantizedModel, np.ndarray]], core: str, model: str, tmp_path: Path
) -> None:
    qmodel, samples = quantized[model]
    outputs = []
    for i, sample in enumerate(samples):
        run, expected = _emulate(qmodel, get_target(core), sample, tmp_path / str(i))
        assert np.array_equal(run.output, expected), f"input {i}"
        outputs.append(run.output.tolist())
    assert len({str(o) for o in outputs}) > 1  # the inputs are not all alike to the model


def _portable(m4: TargetProfile) -> TargetProfile:
    """The same Cortex-M4 with its DSP kernels off (as bench/mcu.py builds it)."""
    return replace(
        m4,
        cflags=(*m4.cflags, "-DEDGEC_PORTABLE"),
        capabilities=replace(m4.capabilities, has_dsp=False),
    )


# (model, portable / DSP instructions as the README's bench table gives them)
DSP_SAVINGS = [
    pytest.param("digits", "12.1", id="digits-12.1x"),
    pytest.param("dscnn", "15.0", id="dscnn-15.0x"),
]


@pytest.mark.parametrize(("model", "ratio"), DSP_SAVINGS)
def test_dsp_path_takes_fewer_instructions_than_portable_c_on_the_same_core(
    quantized: dict[str, tuple[QuantizedModel, np.ndarray]], model: str, ratio: str, tmp_path: Path
) -> None:
    # instruction counts under qemu -icount are deterministic: no machine load in them
    qmodel, samples = quantized[model]
    m4 = get_target("cortex-m4")
    assert m4.capabilities.has_dsp
    dsp, expected = _emulate(qmodel, m4, samples[0], tmp_path / "dsp")
    portable, _ = _emulate(qmodel, _portable(m4), samples[0], tmp_path / "portable")
    assert np.array_equal(dsp.output, expected) and np.array_equal(portable.output, expected)
    assert f"{portable.instructions / dsp.instructions:.1f}" == ratio  # goal: at least 1.8
