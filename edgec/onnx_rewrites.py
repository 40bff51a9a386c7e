"""ONNX-level rewrites that make a graph TVM's importer rejects importable, without changing what
it computes. Each returns a new model; the input is never modified."""

from __future__ import annotations

import copy
from typing import Any


def match_pow_dtypes(model: Any) -> Any:
    """Pow with a base and an exponent of different dtypes (allowed by ONNX, refused by TVM's
    importer: "Binary operators must have the same datatype"): a float exponent is cast to the
    float base's dtype; an integer base is raised in float64 and cast back."""
    from onnx import TensorProto, helper

    dtypes = _elem_types(model)
    mixed = {
        i
        for i, n in enumerate(model.graph.node)
        if n.op_type == "Pow"
        and len(n.input) == 2
        and None not in (dtypes.get(n.input[0]), dtypes.get(n.input[1]))
        and dtypes[n.input[0]] != dtypes[n.input[1]]
    }
    if not mixed:
        return model
    model = copy.deepcopy(model)
    nodes = []
    for i, node in enumerate(model.graph.node):
        if i not in mixed:
            nodes.append(node)
            continue
        base, exponent = node.input
        base_type = dtypes[base]
        name = node.name or node.output[0]
        if _is_float(base_type):
            cast = f"{name}_exponent_as_base"
            nodes.append(helper.make_node("Cast", [exponent], [cast], to=base_type))
            nodes.append(helper.make_node("Pow", [base, cast], list(node.output)))
            continue
        wide_base, wide_exp, wide_out = (f"{name}_{s}_f64" for s in ("base", "exponent", "out"))
        nodes += [
            helper.make_node("Cast", [base], [wide_base], to=TensorProto.DOUBLE),
            helper.make_node("Cast", [exponent], [wide_exp], to=TensorProto.DOUBLE),
            helper.make_node("Pow", [wide_base, wide_exp], [wide_out]),
            helper.make_node("Cast", [wide_out], list(node.output), to=base_type),
        ]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def expand_functions(model: Any) -> Any:
    """Ops that ONNX defines as functions (LayerNormalization with its Mean and InvStdDev
    outputs, ...) replaced by their bodies, and the shape arithmetic those bodies do on static
    shapes folded to constants (onnxscript's optimizer), so TVM imports the plain ops."""
    import onnx.inliner
    import onnxscript.optimizer

    inlined = onnx.inliner.inline_selected_functions(
        model, [], exclude=True, inline_schema_functions=True
    )
    return onnxscript.optimizer.optimize(inlined)


def _elem_types(model: Any) -> dict[str, int]:
    """Every tensor's element type that the graph states or shape inference finds."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an invalid graph: use what it states
        inferred = model
    graph = inferred.graph
    types = {i.name: i.data_type for i in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            types[info.name] = info.type.tensor_type.elem_type
    return types


def _is_float(elem_type: int) -> bool:
    from onnx import TensorProto

    return elem_type in (
        TensorProto.FLOAT,
        TensorProto.DOUBLE,
        TensorProto.FLOAT16,
        TensorProto.BFLOAT16,
    )
