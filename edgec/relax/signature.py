"""signature: main's inputs and outputs, compiled into the model as the VM function
`edgec_signature`, so the C API (codegen/capi/edgec_model.cc) knows every buffer's size before
the first run, with no file beside the model: a system library linked into a program has none.
"""

from __future__ import annotations

from typing import Any

FUNCTION = "edgec_signature"


def signature_text(main: Any) -> str:
    """One line per tensor, inputs then outputs (flattened depth first, as the VM returns them):
    `in float32 1 3 32 32`. A dimension that is not a constant is `?`; a value that is no tensor
    of known rank is `unsupported`, which the C API refuses to open (the runner could never feed
    or write it either) rather than this failing the build."""
    count = (main.attrs or {}).get("num_input")
    params = main.params if count is None else main.params[: int(count)]
    lines = [_line("in", p.ty) for p in params]
    lines += [_line("out", t) for t in _flatten(main.ret_ty)]
    return "".join(lines)


def with_signature(module: Any) -> Any:
    """`module` plus `edgec_signature`, a function of no arguments returning signature_text."""
    import tvm
    from tvm import relax

    if not any(gv.name_hint == "main" for gv in module.get_global_vars()):
        return module  # nothing for the C API to run, nothing to describe
    text = tvm.ir.StringImm(signature_text(module["main"]))
    function = relax.Function([], text, relax.ObjectType()).with_attr("global_symbol", FUNCTION)
    module = module.clone()
    module[FUNCTION] = function
    return module


def _flatten(ty: Any) -> list[Any]:
    fields = getattr(ty, "fields", None)
    if fields is None:
        return [ty]
    return [t for field in fields for t in _flatten(field)]


def _line(kind: str, ty: Any) -> str:
    from tvm import relax

    values = getattr(getattr(ty, "shape", None), "values", None)
    if not isinstance(ty, relax.TensorType) or values is None:
        return f"{kind} unsupported\n"
    dims = [str(int(d)) if hasattr(d, "value") else "?" for d in values]
    return " ".join([kind, str(ty.dtype), *dims]) + "\n"
