"""Walking and rewriting the Relax functions of a module (the graph, not its TIR kernels)."""

from __future__ import annotations

from typing import Any


def calls(mod: Any, *ops: str) -> list[Any]:
    """Every call of the ops named `ops` in `mod`'s Relax functions, in post order."""
    from tvm import ir, relax

    found: list[Any] = []

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, ir.Op) and expr.op.name in ops:
            found.append(expr)

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return found


def rewrite_functions(mutator: Any, mod: Any) -> Any:
    """`mod` with every Relax function passed through `mutator` (a PyExprMutator made on
    `mod`), plus whatever kernels the mutator's block builder added."""
    from tvm import relax

    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()
