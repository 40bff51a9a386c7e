"""ONNX-level rewrites that make a graph TVM's importer rejects importable, without changing what
it computes. Each returns a new model; the input is never modified."""

from __future__ import annotations

import copy
from typing import Any


def importable(model: Any) -> Any:
    """Every exact rewrite a graph gets before TVM's importer (edgec build and edgec.backend)."""
    return normalize_resize(match_pow_dtypes(model))


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


def normalize_resize(model: Any) -> Any:
    """Resize with an `axes` attribute or a keep_aspect_ratio_policy (opset 18), which TVM's
    importer does not read: rewritten with full-rank roi/scales/sizes and the policy's sizes
    worked out, where those inputs are constants, the input's shape is known and (for a
    policy) the sizes scale every axis by the same exact factor."""
    import numpy as np
    from onnx import helper, numpy_helper

    attrs_of = {
        i: {a.name: helper.get_attribute_value(a) for a in n.attribute}
        for i, n in enumerate(model.graph.node)
        if n.op_type == "Resize"
    }
    todo = [
        i
        for i, attrs in attrs_of.items()
        if "axes" in attrs or attrs.get("keep_aspect_ratio_policy", b"stretch") != b"stretch"
    ]
    if not todo:
        return model
    shapes = _static_shapes(model)
    model = copy.deepcopy(model)
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for i in todo:
        node, attrs = model.graph.node[i], attrs_of[i]
        shape = shapes.get(node.input[0])
        inputs = [*node.input, "", "", ""][:4]
        values = [constants.get(name) if name else None for name in inputs]
        if shape is None or any(name and name not in constants for name in inputs[1:]):
            continue  # not static: leave it to TVM
        rank = len(shape)
        axes = [a % rank for a in attrs.get("axes", range(rank))]
        roi, scales, sizes = values[1:]
        if roi is not None and roi.size:
            full = np.array([0.0] * rank + [1.0] * rank, roi.dtype)
            for k, a in enumerate(axes):
                full[a], full[rank + a] = roi[k], roi[len(axes) + k]
            roi = full
        if scales is not None and scales.size:
            full = np.ones(rank, scales.dtype)
            full[axes] = scales
            scales = full
        if sizes is not None and sizes.size:
            full = np.array(shape, sizes.dtype)
            full[axes] = sizes
            policy = attrs.get("keep_aspect_ratio_policy", b"stretch")
            if policy != b"stretch":
                ratios = [full[a] / shape[a] for a in axes]
                scale = min(ratios) if policy == b"not_larger" else max(ratios)
                for a in axes:
                    full[a] = int(scale * shape[a] + 0.5)  # ONNX rounds half up here
                # ONNX maps coordinates with `scale`, TVM with size ratios: same only if exact
                if any(abs(full[a] - scale * shape[a]) > 1e-6 for a in axes):
                    continue
            sizes = full
        name = node.name or node.output[0]
        new_inputs = [node.input[0]]
        for role, value in (("roi", roi), ("scales", scales), ("sizes", sizes)):
            if value is None:
                new_inputs.append("")
                continue
            tensor = f"{name}_full_rank_{role}"
            model.graph.initializer.append(numpy_helper.from_array(value, tensor))
            new_inputs.append(tensor)
        while new_inputs and not new_inputs[-1]:
            new_inputs.pop()
        kept = [a for a in node.attribute if a.name not in ("axes", "keep_aspect_ratio_policy")]
        del node.attribute[:]
        node.attribute.extend(kept)
        del node.input[:]
        node.input.extend(new_inputs)
    return model


def _static_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Tensors whose shape the graph states or shape inference finds, fully static."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # an invalid graph: use what it states
        graph = model.graph
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes
