"""import: an ONNX model into a TVM Relax IRModule, naming any op TVM cannot import."""

from __future__ import annotations

from edgec import onnx_graph
from edgec.artifacts import OnnxModel, RelaxModule
from edgec.errors import EdgecError, first_line


def import_onnx(model: OnnxModel) -> RelaxModule:
    """Translate with TVM's ONNX frontend; unsupported ops are listed before anything is tried."""
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    graph = onnx_graph.read(model.path)
    unsupported = sorted(onnx_graph.op_types(graph) - set(_get_convert_map()))
    if unsupported:
        raise EdgecError(
            f"TVM's ONNX importer does not support {', '.join(unsupported)} "
            f"(used by {model.source}); replace these ops or export them as supported ones"
        )
    try:
        module = from_onnx(
            graph,
            shape_dict={s.name: list(s.shape) for s in model.inputs},
            dtype_dict={s.name: s.dtype for s in model.inputs},
        )
    except Exception as e:
        raise EdgecError(f"TVM could not import {model.source}: {first_line(e)}") from None
    return RelaxModule(module, model)
