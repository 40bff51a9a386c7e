"""load: a model file or `file.py:factory` to a TorchModel, or an ONNX file to an OnnxModel."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgec import onnx_graph, reference
from edgec.artifacts import OnnxModel, TensorSpec, TorchModel
from edgec.errors import EdgecError, first_line
from edgec.staging import replace_written

Shapes = list[tuple[int, ...]]


SHAPES_FILE = "edgec_input_shapes.json"  # what edgec prune/distill store inside a TorchScript .pt


def load(
    spec: str,
    input_shapes: Shapes | None,
    workdir: Path,
    weights: Path | None = None,
    input_values: dict[str, np.ndarray] | None = None,
) -> TorchModel | OnnxModel:
    """Load MODEL as given on the command line: .onnx, .pt (TorchScript), .pt2
    (torch.export), or path/to/file.py:factory (with `weights`, a state dict, loaded into it).

    `input_values` are ONNX inputs folded into the graph as constants (integer inputs that carry
    shapes: a Reshape's target shape, an Expand's)."""
    path_text, _, factory = spec.partition(":") if ".py:" in spec else (spec, "", "")
    path = Path(path_text)
    if not path.is_file():
        raise EdgecError(f"model file {path} not found; give a .onnx, .pt, .pt2 or file.py:factory")
    suffix = path.suffix.lower()
    if weights is not None and suffix != ".py":
        raise EdgecError(f"--weights loads a state dict into a file.py:factory model, not {path}")
    if suffix == ".py":
        if not factory:
            raise EdgecError(f"{path} is Python: name its factory as {path}:make_model")
        model = _load_factory(path, factory, input_shapes, spec)
        return model if weights is None else _with_weights(model, weights)
    if input_values and suffix != ".onnx":
        raise EdgecError(f"--input NAME=FILE.npy folds an ONNX model's input; {path} is not ONNX")
    if suffix == ".onnx":
        return _load_onnx(path, input_shapes, workdir, input_values or {})
    if suffix in (".pt", ".pth", ".pt2"):
        return _load_torch_file(path, input_shapes, spec)
    raise EdgecError(
        f"{path}: unknown model format {suffix or '(no suffix)'!r}; "
        "give a .onnx, .pt (TorchScript), .pt2 (torch.export) or file.py:factory"
    )


def _load_onnx(
    path: Path, input_shapes: Shapes | None, workdir: Path, values: dict[str, np.ndarray]
) -> OnnxModel:
    """Read, upgrade (opset < 7), fold shape-carrying inputs, fix input shapes; the result is
    the reference ONNX Runtime and TVM both take."""
    import onnx

    read = onnx_graph.read(path)
    onnx_graph.check_standard_ops(read, path)
    # Before anything else: ONNX Runtime has no kernels for opsets below 7 (Gemm(6)).
    model, upgraded_from = onnx_graph.upgraded(read)
    needed = onnx_graph.shape_inputs(model)
    missing = [name for name in needed if name not in values]
    if missing:
        name = missing[0]
        raise EdgecError(
            f"input {name!r} is an integer tensor feeding the shape operand of {needed[name]}: "
            f"its values decide the model's shapes, so random data cannot stand in; give them "
            f"with --input {name}=VALUES.npy (edgec folds them as constants)"
        )
    if values:
        model = onnx_graph.fold_inputs(model, values)
    inputs = onnx_graph.fix_input_shapes(model, input_shapes)
    # Shapes are static now: Shape → Gather → ... chains are constants TVM can compile.
    model, shape_nodes = onnx_graph.fold_shape_computations(model)
    fixed = workdir / "model.onnx"
    if model is read and input_shapes is None:
        shutil.copyfile(path, fixed)
    else:
        onnx.save(model, str(fixed))
    try:
        outputs = reference.output_specs(fixed, inputs)
    except Exception as e:
        why = first_line(e).replace(str(fixed), str(path))  # not edgec's temporary copy
        raise EdgecError(f"ONNX Runtime cannot run {path}: {why}") from None
    return OnnxModel(
        fixed,
        tuple(inputs),
        tuple(outputs),
        str(path),
        export_max_abs_diff=None,
        opset=onnx_graph.opset(model),
        upgraded_from=upgraded_from,
        folded_inputs=tuple(values),
        folded_shape_nodes=shape_nodes,
    )


def _load_factory(path: Path, factory: str, input_shapes: Shapes | None, spec: str) -> TorchModel:
    import torch

    module = _import_file(path)
    fn = getattr(module, factory, None)
    if not callable(fn):
        defined = sorted(
            n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
        )
        raise EdgecError(
            f"{path} has no factory {factory!r}; "
            f"it defines: {', '.join(defined) or 'nothing callable'}"
        )
    try:
        model = fn()
    except Exception as e:
        raise EdgecError(f"{spec} raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise EdgecError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    shapes = input_shapes or _declared_shapes(module)
    if shapes is None:
        raise EdgecError(f"{spec}: give the input shape, e.g. --input-shape 1,3,32,32")
    return TorchModel(model.eval(), specs(shapes), spec)


def _load_torch_file(path: Path, input_shapes: Shapes | None, spec: str) -> TorchModel:
    import torch

    if path.suffix.lower() == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as e:
            raise EdgecError(f"{path} is not a torch.export program ({first_line(e)})") from None
        shapes = input_shapes or _program_shapes(program)
        return TorchModel(program, specs(shapes), spec)
    extra = {SHAPES_FILE: ""}
    try:
        scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise EdgecError(
            f"{path} is not a TorchScript model ({first_line(e)}); save it with torch.jit.save, "
            "or use torch.export.save (.pt2) or ONNX"
        ) from None
    stored = [tuple(s) for s in json.loads(extra[SHAPES_FILE])] if extra[SHAPES_FILE] else None
    shapes = input_shapes or stored
    if shapes is None:
        raise EdgecError(f"{path}: give the input shape, e.g. --input-shape 1,3,32,32")
    return TorchModel(scripted.eval(), specs(shapes), spec)


def _with_weights(model: TorchModel, weights: Path) -> TorchModel:
    import torch

    if not weights.is_file():
        raise EdgecError(f"weights file {weights} not found; give a state dict saved by torch.save")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgecError(f"{weights} is not a torch state dict ({first_line(e)})") from None
    if not isinstance(state, dict):
        raise EdgecError(f"{weights} holds a {type(state).__name__}, not a state dict")
    try:
        model.module.load_state_dict(state)
    except RuntimeError as e:
        # torch lists every missing and unexpected key over many lines: the first says enough
        detail = " ".join(str(e).split())[:300]
        raise EdgecError(f"{weights} does not fit {model.source}: {detail}") from None
    return TorchModel(model.module.eval(), model.inputs, f"{model.source} + {weights}")


def save_torchscript(model: TorchModel, path: Path) -> None:
    """Trace MODEL to a TorchScript .pt at `path` (atomically) that load() reads back, input
    shapes included."""
    import torch

    example = tuple(torch.zeros(s.shape) for s in model.inputs)
    with torch.no_grad():
        traced = torch.jit.trace(model.module.eval(), example)
    shapes = json.dumps([list(s.shape) for s in model.inputs])
    replace_written(
        path,
        lambda partial: torch.jit.save(traced, str(partial), _extra_files={SHAPES_FILE: shapes}),
    )


def _import_file(path: Path) -> Any:
    name = f"edgec_user_{abs(hash(path.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise EdgecError(f"{path} cannot be imported as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent.resolve()))  # let the file import its neighbours
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        raise EdgecError(f"importing {path} raised {type(e).__name__}: {first_line(e)}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path.parent.resolve()))
    return module


def _declared_shapes(module: Any) -> Shapes | None:
    """A module-level INPUT_SHAPE (one shape, or a list of shapes) in the model file."""
    declared = getattr(module, "INPUT_SHAPE", None)
    if declared is None:
        return None
    if all(isinstance(d, int) for d in declared):
        return [tuple(declared)]
    return [tuple(s) for s in declared]


def _program_shapes(program: Any) -> Shapes:
    shapes = []
    user_inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            shapes.append(tuple(int(d) for d in node.meta["val"].shape))
    return shapes


def specs(shapes: Shapes) -> tuple[TensorSpec, ...]:
    names = ["input"] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
    return tuple(TensorSpec(n, tuple(s), "float32") for n, s in zip(names, shapes, strict=True))
