"""import: an ONNX model into a TVM Relax IRModule, naming any op TVM cannot import."""

from __future__ import annotations

import contextlib
import io

from edgec import onnx_graph, onnx_rewrites
from edgec.artifacts import OnnxModel, RelaxModule
from edgec.errors import EdgecError, first_line


def import_onnx(model: OnnxModel) -> RelaxModule:
    """Translate with TVM's ONNX frontend; unsupported ops are listed before anything is tried."""
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    # exact ONNX rewrites for what TVM's importer refuses but could take (mixed-dtype Pow,
    # Resize with axes or an aspect policy); the bundle's reference model.onnx stays as given
    graph = onnx_rewrites.importable(onnx_graph.read(model.path))
    unsupported = sorted(onnx_graph.op_types(graph) - set(_get_convert_map()))
    if unsupported:
        raise EdgecError(
            f"TVM's ONNX importer does not support {', '.join(unsupported)} "
            f"(used by {model.source}); replace these ops or export them as supported ones"
        )
    try:
        # the importer prints its own "Error converting operator" line; the error says it better
        with contextlib.redirect_stdout(io.StringIO()):
            module = from_onnx(
                graph,
                shape_dict={s.name: list(s.shape) for s in model.inputs},
                dtype_dict={s.name: s.dtype for s in model.inputs},
            )
    except Exception as e:
        raise EdgecError(
            f"TVM could not import {model.source}{_failing_node(e)}: {first_line(e)}"
        ) from e
    return RelaxModule(module, model)


def _failing_node(e: BaseException) -> str:
    """`at node NAME (OpType, input shapes)`, read from the importer's frame in the traceback."""
    tb = e.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_construct_nodes" and "node" in frame.f_locals:
            node = frame.f_locals["node"]
            shapes = [_shape(x) for x in frame.f_locals.get("inputs") or []]
            return f" at node {node.name or '(unnamed)'} ({node.op_type}, inputs {shapes})"
        tb = tb.tb_next
    return ""


def _shape(value: object) -> str:
    ty = getattr(value, "ty", None)
    shape = getattr(ty, "shape", None)
    if shape is None:
        return "?" if value is not None else "none"
    dims = "x".join(str(getattr(d, "value", d)) for d in shape)  # IntImm → its value
    return f"{dims} {getattr(ty, 'dtype', '')}".rstrip()
