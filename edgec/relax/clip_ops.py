"""ONNX Clip as Relax ops: TVM's importer emits Clip (ReLU6 in every MobileNet) as TIR kernels
(`call_tir` of topi's maximum and minimum), which layout conversion cannot see through, so each
ReLU6 between two NHWC convolutions cost a transpose pair (MobileNetV2: 17 of them). A call is
turned back into `R.maximum`/`R.minimum` only where its kernel is structurally the one that op
legalizes to, so the rewrite cannot change what is computed.
"""

from __future__ import annotations

import re
from typing import Any

from edgec.relax import traverse

OPS = ("relax.maximum", "relax.minimum")
_FLOAT_IMM = re.compile(r"T\.float(?:16|32|64)\(([^()]+)\)")


def clip_kernels_as_ops(mod: Any) -> Any:
    """`mod` with each call_tir of a scalar maximum/minimum kernel replaced by the Relax op."""
    from tvm import ir, relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    as_op: dict[Any, Any] = {}  # kernel → (the op it computes, its bound), or None

    def op_of(call: Any) -> tuple[Any, Any] | None:
        gv = call.args[0]
        if gv not in as_op:
            as_op[gv] = _same_kernel_op(mod, call)
        return as_op[gv]

    @mutator
    class Rewrite(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            if not (isinstance(call.op, ir.Op) and call.op.name == "relax.call_tir"):
                return call
            found = op_of(call)
            if found is None:
                return call
            op, bound = found
            return relax.Call(op, [call.args[1].fields[0], bound])

    return relax.transform.DeadCodeElimination()(traverse.rewrite_functions(Rewrite(mod), mod))


def _same_kernel_op(mod: Any, call: Any) -> tuple[Any, Any] | None:
    """(op, bound) if `call`'s kernel is what op(x, bound) legalizes to, op among OPS and
    bound a scalar: passed to the kernel (Clip since opset 11) or inlined in it (Clip-6)."""
    import tvm_ffi
    from tvm import ir, relax

    gv, args = call.args[0], call.args[1]
    if not isinstance(args, relax.Tuple) or len(args.fields) not in (1, 2):
        return None
    kernel = mod[gv]
    x = args.fields[0]
    if len(args.fields) == 2:
        bound = args.fields[1]
        if not (isinstance(bound, ir.expr.Constant) and bound.ty.ndim == 0):
            return None
        # the bound as a variable, as the importer had it (a constant would be inlined)
        params = [relax.Var("x", x.ty), relax.Var("bound", bound.ty)]
    else:
        value = _only_float(kernel)
        if value is None:
            return None
        bound = relax.const(value, x.ty.dtype)
        params = [relax.Var("x", x.ty)]
    for name in OPS:
        op = ir.Op.get(name)
        bb = relax.BlockBuilder()
        with bb.function("f", params):
            operands = [params[0], params[1] if len(params) == 2 else bound]
            bb.emit_func_output(op.get_attr("FLegalize")(bb, relax.Call(op, operands)))
        made = bb.get()
        candidate = next(f for g, f in made.functions.items() if g.name_hint != "f")
        if tvm_ffi.structural_equal(candidate, kernel, map_free_vars=True):
            return op, bound
    return None


def _only_float(kernel: Any) -> float | None:
    """The one floating-point immediate in a kernel, if it has exactly one (read from its
    script: a proposal only, which the structural comparison then proves or rejects)."""
    values = set(_FLOAT_IMM.findall(kernel.script()))
    if len(values) != 1:
        return None
    try:
        return float(values.pop())
    except ValueError:
        return None
