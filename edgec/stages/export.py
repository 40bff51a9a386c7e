"""export: a TorchModel to ONNX (opset 17), checked against PyTorch on a random input."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgec import reference
from edgec.artifacts import OnnxModel, TorchModel
from edgec.errors import CheckFailed, EdgecError, first_line
from edgec.onnx_graph import OPSET

TOLERANCE = reference.FLOAT_TOLERANCE  # max abs difference between PyTorch and ONNX Runtime


def export(model: TorchModel | OnnxModel, workdir: Path) -> OnnxModel:
    """Export to workdir/model.onnx and record the max abs diff against PyTorch."""
    if isinstance(model, OnnxModel):
        return model
    import torch

    arrays = reference.random_inputs(model.inputs)
    args = tuple(torch.from_numpy(a) for a in arrays)
    program = isinstance(model.module, torch.export.ExportedProgram)
    runnable = model.module.module() if program else model.module
    try:
        with torch.no_grad():
            expected = _flatten(runnable(*args))
    except Exception as e:
        shapes = " and ".join(",".join(map(str, s.shape)) for s in model.inputs)
        raise EdgecError(
            f"{model.source} fails on an input of shape {shapes} "
            f"({type(e).__name__}: {first_line(e)}); check --input-shape"
        ) from None
    names = ["output"] if len(expected) == 1 else [f"output_{i}" for i in range(len(expected))]
    path = workdir / "model.onnx"
    try:
        _torch_export(model.module, args, path, [s.name for s in model.inputs], names, program)
    except Exception as e:
        raise EdgecError(f"PyTorch cannot export {model.source} to ONNX: {first_line(e)}") from None
    outputs = reference.output_specs(path, list(model.inputs))
    got = reference.run(path, arrays)
    diff = max(
        float(np.max(np.abs(g - e), initial=0.0)) for g, e in zip(got, expected, strict=True)
    )
    if not diff <= TOLERANCE:
        raise CheckFailed(
            f"ONNX export of {model.source} differs from PyTorch by {diff:.3g} (> {TOLERANCE}); "
            "the model may use an op the exporter translates inexactly"
        )
    return OnnxModel(path, model.inputs, tuple(outputs), model.source, export_max_abs_diff=diff)


def _torch_export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    inputs: list[str],
    outputs: list[str],
    program: bool,
) -> None:
    import torch

    # The TorchScript exporter is quick and quiet for nn.Module/ScriptModule; an ExportedProgram
    # needs the dynamo exporter, which prints progress we do not want on the user's terminal.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            opset_version=OPSET if not program else None,
            input_names=inputs,
            output_names=outputs,
            dynamo=program,
            **({"verbose": False} if program else {}),
        )


def _flatten(value: Any) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in _flatten(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _flatten(v)]
    return [value.detach().cpu().numpy()]
