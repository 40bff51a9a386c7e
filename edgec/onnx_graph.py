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


# The opset edgec writes: PyTorch's export, and the int8 model's QDQ form.
OPSET = 17
# The oldest default-domain opset ONNX Runtime still implements ("Could not find an
# implementation for Gemm(6)"); older graphs are upgraded to UPGRADE_TO before anything else.
MIN_OPSET = 7
UPGRADE_TO = 13


def opset(model: Any) -> int:
    """The graph's default-domain ("ai.onnx") opset version."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def upgraded(model: Any) -> tuple[Any, int | None]:
    """`model`, upgraded with onnx's version converter if it is stamped below MIN_OPSET; and the
    opset it was stamped with when it was upgraded (None otherwise)."""
    import onnx
    from onnx import version_converter

    stamped = opset(model)
    if stamped >= MIN_OPSET:
        return model, None
    try:
        converted = version_converter.convert_version(model, UPGRADE_TO)
        onnx.checker.check_model(converted)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgecError(
            f"the model is stamped opset {stamped} (below {MIN_OPSET}, which ONNX Runtime and "
            f"TVM refuse) and onnx's version converter cannot upgrade it: {first}; re-export "
            f"it at opset {UPGRADE_TO} or newer"
        ) from None
    return converted, stamped


# Operand positions that carry shapes, axes, sizes or counts: an integer graph input there makes
# the output shape depend on data, so its values are needed at build time.
SHAPE_OPERANDS = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "ConstantOfShape": (0,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1,),
    "Resize": (3,),
    "Upsample": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Range": (0, 1, 2),
    "TopK": (1,),
    "OneHot": (1,),
}


def shape_inputs(model: Any) -> dict[str, str]:
    """Integer graph inputs that feed a shape operand: input name → the first consumer, as
    'Reshape node "name"'."""
    integer = {
        i.name for i in graph_inputs(model) if i.type.tensor_type.elem_type in _INTEGER_TYPES
    }
    found: dict[str, str] = {}
    for node in model.graph.node:
        for position in SHAPE_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] in integer:
                found.setdefault(node.input[position], f"{node.op_type} node {node.name!r}")
    return found


def fold_inputs(model: Any, values: dict[str, Any]) -> Any:
    """A copy of `model` with the named graph inputs replaced by constants of these values."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    by_name = {i.name: i for i in graph_inputs(folded)}
    for name, value in values.items():
        if name not in by_name:
            raise EdgecError(
                f"the model has no input {name!r}; its inputs are: {', '.join(by_name)}"
            )
        want = onnx.helper.tensor_dtype_to_np_dtype(by_name[name].type.tensor_type.elem_type)
        array = np.asarray(value)
        if array.dtype.kind not in "iu":
            raise EdgecError(
                f"input {name!r} takes integers ({want}), the file holds {array.dtype}"
            )
        folded.graph.input.remove(by_name[name])
        folded.graph.initializer.append(numpy_helper.from_array(array.astype(want), name))
    return folded


_INTEGER_TYPES = (6, 7, 12, 13)  # TensorProto INT32, INT64, UINT32, UINT64


# Ops that compute shapes in exported graphs (torch's `x.chunk(2, 1)` becomes Shape → Gather →
# Div → Slice; `x.view(b, -1)` Shape → Gather → Unsqueeze → Concat → Reshape). With static input
# shapes their values are known before run time, and TVM's importer cannot compile the dynamic
# form ("CodeGenVM cannot emit this Relax operator directly").
SHAPE_OPS = frozenset(
    {
        "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast",
        "Add", "Sub", "Mul", "Div", "Floor", "Ceil", "Identity", "Range", "ConstantOfShape",
        "Equal", "Where", "Max", "Min", "Neg", "ReduceProd", "Reshape", "Mod", "Abs", "Less",
        "Greater", "Not", "And", "Or", "Expand", "Tile",
    }
)  # fmt: skip
SMALL = 64  # a shape computation works on a few values; larger constants are left alone


def fold_shape_computations(model: Any) -> tuple[Any, int]:
    """`model` with every shape computation whose value static input shapes decide replaced by
    a constant; and how many nodes were folded. Needs static input shapes."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    inferred = onnx.shape_inference.infer_shapes(model)
    static: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = _dims(vi)
        if vi.type.tensor_type.HasField("shape") and all(isinstance(d, int) for d in dims):
            static[vi.name] = [int(d) for d in dims]
    known = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    opsets = {o.domain or "": o.version for o in model.opset_import}
    folded: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if node.op_type not in SHAPE_OPS or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Shape" and node.input[0] in static:
            attrs = {a.name: a.i for a in node.attribute}
            shape = static[node.input[0]]
            start, end = attrs.get("start", 0), attrs.get("end", len(shape))
            value = np.array(shape[start:end] if "end" in attrs else shape[start:], np.int64)
        elif node.op_type != "Shape" and all(i in known for i in node.input if i):
            args = [known[i] for i in node.input if i]
            if not args or any(a.size > SMALL for a in args):
                continue
            try:
                evaluator = ReferenceEvaluator(node, opsets={"": opsets.get("", 1)})
                value = evaluator.run(None, dict(zip(node.input, args, strict=False)))[0]
            except Exception:
                continue  # an op the reference cannot evaluate stays in the graph
        else:
            continue
        known[node.output[0]] = folded[node.output[0]] = np.asarray(value)
    if not folded:
        return model, 0
    # All or nothing: a shape computation left half folded mixes constant tensors with the
    # shapes TVM's importer tracks itself, which it cannot import (ViT: "Reshape requires the
    # input new shape to be Shape"); the graph as given is what plain TVM takes.
    half_folded = any(
        node.op_type in SHAPE_OPS
        and node.output[0] not in folded
        and any(i in folded for i in _shape_operands(node))
        for node in model.graph.node
    )
    if half_folded:
        return model, 0
    return _replace_with_constants(model, folded), len(folded)


# Ops that also act on data (their first input), taking shapes or indices in their others: only a
# folded first input makes them part of a shape computation.
_DATA_FIRST = frozenset({"Slice", "Reshape", "Expand", "Tile", "Gather", "Unsqueeze", "Squeeze"})


def _shape_operands(node: Any) -> list[str]:
    return list(node.input[:1]) if node.op_type in _DATA_FIRST else list(node.input)


def _replace_with_constants(model: Any, folded: dict[str, Any]) -> Any:
    """A copy of `model`: folded outputs become initializers; nodes nothing reads are dropped."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = [n for n in graph.node if not (n.output and n.output[0] in folded)]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in folded.items())
    # drop what no longer feeds anything (the Shape nodes' sources stay: they feed the model)
    while True:
        used = {i for n in keep for i in n.input} | {o.name for o in graph.output}
        for n in keep:
            for attr in n.attribute:
                for g in [attr.g, *attr.graphs]:
                    used |= {i for sub in g.node for i in sub.input}
        pruned = [n for n in keep if any(o in used for o in n.output)]
        if len(pruned) == len(keep):
            break
        keep = pruned
    del graph.node[:]
    graph.node.extend(keep)
    names = {i for n in keep for i in n.input} | {o.name for o in graph.output}
    inits = [i for i in graph.initializer if i.name in names]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return out
