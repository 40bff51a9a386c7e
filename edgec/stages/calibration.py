"""calibration: which data the int8 quantize stage calibrates on and validates with, and what
the stage reports; quantize() itself (stages/quantize.py) takes the arrays it is given."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from edgec.accuracy import ModelFacts
from edgec.artifacts import OnnxModel
from edgec.errors import EdgecError

if TYPE_CHECKING:
    from edgec.datasets import Dataset
    from edgec.stages.quantize import QuantizeConfig, QuantizedModel

NO_CALIBRATION = (
    "--quantize int8 needs calibration data: --calib-data digits, an .npz or a folder "
    "(or --data); ranges from random inputs mean nothing for accuracy (--calib-data synthetic "
    "takes them anyway, to build and time)"
)


def quantize_with_data(
    model: OnnxModel,
    config: QuantizeConfig,
    calib_data: str | None,
    data: str | None,
    loaded: Dataset | None = None,
) -> tuple[QuantizedModel, Dataset]:
    """int8 from calibration data (`calib_data`, else `data`, the --data of compression, which
    may be `loaded` already); accuracy on --data's validation split, or on --calib-data's when
    it is the only data and the model is a classifier."""
    from edgec.datasets import SYNTHETIC, load_dataset
    from edgec.stages.quantize import quantize

    spec = calib_data or data
    if spec is None:
        raise EdgecError(NO_CALIBRATION)
    shape = model.inputs[0].shape
    out = model.outputs[0].shape
    classes = out[1] if len(out) == 2 else None
    if calib_data is None and loaded is not None:
        calib = loaded  # --data: the data stage has loaded it already
    else:
        calib = load_dataset(spec, shape, classes=classes, dtype=model.inputs[0].dtype)
    validation = None
    if loaded is None and classes is not None and spec == calib_data != SYNTHETIC:
        loaded = calib
    if loaded is not None and classes is not None:
        validation = (loaded.val_x, loaded.val_y)
    return quantize(model, calib.train_x, config, validation), calib


def quantized_facts(
    quantized: QuantizedModel, before: dict[str, ModelFacts]
) -> dict[str, ModelFacts]:
    """The quantize stage's row of model facts: int8 weight bytes and int8 accuracy."""
    if not before:
        return {}
    last = list(before.values())[-1]
    accuracy = quantized.accuracy.get("int8")
    return {"quantize": replace(last, size_bytes=quantized.graph.weight_bytes, accuracy=accuracy)}


def quantize_note(quantized: QuantizedModel) -> str:
    """The quantize stage's line: what runs in int8, and what accuracy it kept."""
    graph = quantized.graph
    note = f"{graph.int8_ops} int8 ops, {graph.float_ops} float ({quantized.method} ranges)"
    if quantized.float_layers:
        note += f"; kept in float: {', '.join(quantized.float_layers)}"
    if quantized.accuracy:
        note += f"; val top-1 {quantized.accuracy['fp32']:.1f}% fp32 → "
        note += f"{quantized.accuracy['int8']:.1f}% int8"
    return note
