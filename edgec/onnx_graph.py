"""Facts read off an ONNX graph: tensor specs, parameter count, size and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifacts import TensorSpec
from edgec.errors import EdgecError


@dataclass(frozen=True)
class ModelStats:
    params: int
    size_bytes: int  # bytes of the parameters as stored
    macs: int  # multiply-accumulates of conv / gemm / matmul for one inference


def read(path: Path) -> Any:
    """Load and check an ONNX file; a file that is not ONNX gets a one-line error."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises DecodeError, ValidationError, ... for a non-model
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgecError(f"{path} is not a valid ONNX model ({first})") from None
    return model


STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")  # what ORT and TVM know


def check_standard_ops(model: Any, path: Path | str) -> None:
    """A node from a custom domain (e.g. com.example) has no implementation in ONNX Runtime or
    TVM: name it, its domain and what to do, before either one is asked to load the graph."""
    local = {f.domain for f in model.functions}  # model-local functions are inlined

    def walk(graph: Any) -> None:
        for node in graph.node:
            if node.domain not in STANDARD_DOMAINS and node.domain not in local:
                name = f" (node {node.name!r})" if node.name else ""
                raise EdgecError(
                    f"{path} uses {node.op_type} from the custom domain {node.domain!r}{name}, "
                    "which ONNX Runtime and TVM cannot run; export the model with standard ONNX "
                    "ops (write the op with standard PyTorch ops) or replace that node"
                )
            for attr in node.attribute:
                for g in (attr.g, *attr.graphs) if attr.g.node else attr.graphs:
                    walk(g)

    walk(model.graph)


def op_types(model: Any) -> set[str]:
    """Every operator type used in the graph and its subgraphs."""
    found: set[str] = set()

    def walk(graph: Any) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.g.node:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return found


def graph_inputs(model: Any) -> list[Any]:
    """The graph's real inputs (initializers listed as inputs in old exports excluded)."""
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _dims(value_info: Any) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value_info.type.tensor_type.shape.dim
    ]


def _dtype(value_info: Any) -> str:
    import onnx

    return str(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type))


def fix_input_shapes(model: Any, shapes: list[tuple[int, ...]] | None) -> list[TensorSpec]:
    """Make every input's shape static, from `shapes` where given; returns the input specs."""
    inputs = graph_inputs(model)
    if shapes is not None and len(shapes) != len(inputs):
        raise EdgecError(
            f"the model has {len(inputs)} input(s) but {len(shapes)} --input-shape were given"
        )
    specs = []
    for i, value_info in enumerate(inputs):
        dims = _dims(value_info)
        if shapes is not None:
            shape = shapes[i]
            conflict = len(shape) != len(dims) or any(
                isinstance(d, int) and d > 0 and d != s for d, s in zip(dims, shape, strict=False)
            )
            if conflict:
                raise EdgecError(
                    f"--input-shape {','.join(map(str, shape))} does not fit input "
                    f"{value_info.name!r} of shape {dims}; give a shape of rank {len(dims)}"
                )
            for d, s in zip(value_info.type.tensor_type.shape.dim, shape, strict=True):
                d.ClearField("dim_param")
                d.dim_value = s
        elif not all(isinstance(d, int) and d > 0 for d in dims):
            raise EdgecError(
                f"input {value_info.name!r} has dynamic shape {dims}; give it with --input-shape"
            )
        specs.append(TensorSpec(value_info.name, tuple(_dims(value_info)), _dtype(value_info)))
    return specs


def stats(model: Any) -> ModelStats:
    """Parameters, their bytes, and the MACs of conv/gemm/matmul from inferred shapes."""
    import onnx
    from onnx import numpy_helper

    params = size = 0
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype.kind == "f" or array.ndim > 1:  # skip shape/axes constants
            params += array.size
            size += array.nbytes
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int | str]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        shapes[vi.name] = _dims(vi)
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return ModelStats(params, size, sum(_node_macs(n, shapes) for n in inferred.graph.node))


def _numel(dims: list[int | str] | None) -> int:
    if not dims or not all(isinstance(d, int) for d in dims):
        return 0
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _node_macs(node: Any, shapes: dict[str, list[int | str]]) -> int:
    out = _numel(shapes.get(node.output[0]))
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
        weight = shapes.get(node.input[1]) or []
        per_output = _numel(weight[1:]) if len(weight) > 1 else 0  # Cin/groups * kernel
        if node.op_type == "ConvTranspose":
            return _numel(shapes.get(node.input[0])) * _numel(weight[1:2]) * _numel(weight[2:])
        return out * per_output
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes.get(node.input[0]) or []
        if not a or not isinstance(a[-1], int):
            return 0
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        k = a[-2] if trans_a and len(a) > 1 else a[-1]
        return out * int(k)
    return 0
