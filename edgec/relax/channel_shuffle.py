"""Channel shuffles (ShuffleNet) as one gather over the channels-last axis, no NCHW round trip.

The ONNX exporters write a shuffle of C channels in g groups as Reshape(N, g, C/g, H, W) →
Transpose(0, 2, 1, 3, 4) → Reshape(N, C, H, W), usually followed by the next unit's split of the
channels in two (Slice or Split). ConvertLayout has no rule for 5-D tensors and reshapes, so the
shuffle ran in NCHW with transposes on either side. Output channel k of a shuffle is input
channel (k mod g)·(C/g) + k div g: a fixed permutation, and a slice of the shuffled channels is a
fixed selection of the input's. `shuffles_as_gathers` writes each as a `take` on the last axis
of the NHWC view of its input (transposes that `fold_transposes` cancels against the ones
ConvertLayout puts around the convolutions). Anything that does not match exactly is left alone.
"""

from __future__ import annotations

import itertools
from typing import Any

from edgec.relax import traverse

# Ops that act on each element alone (constant operands broadcast): a transpose commutes with them.
ELEMENTWISE = frozenset(
    f"relax.{name}"
    for name in [
        "astype",
        "add",
        "subtract",
        "multiply",
        "divide",
        "floor_divide",
        "maximum",
        "minimum",
        "right_shift",
        "left_shift",
        "round",
        "floor",
        "ceil",
        "clip",
        "nn.relu",
        "sigmoid",
        "tanh",
        "exp",
        "negative",
        "abs",
        "sqrt",
        "rsqrt",
    ]
)
TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def shuffles_as_gathers(mod: Any) -> Any:
    """`mod` with every exact channel shuffle (and the slices and splits of its channels) as a
    gather of the input's channels in NHWC; shuffles that do not match stay as they are."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    if not traverse.calls(mod, "relax.permute_dims"):
        return mod

    bindings = _bindings(mod)

    @mutator
    class Rewrite(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            name = getattr(call.op, "name", None)
            found = None
            if name == "relax.reshape":
                found = _shuffle(bindings, call)
                if found is not None:
                    source, channels, groups = found
                    return _gather(self, self.visit_expr(source), groups, 0, channels)
            elif name in ("relax.strided_slice", "relax.split"):
                found = _shuffle(bindings, bindings.get(call.args[0]))
                picked = None if found is None else _pick(call, found[1])
                if found is not None and picked is not None:
                    source, groups = self.visit_expr(found[0]), found[2]
                    gathers = [_gather(self, source, groups, b, e) for b, e in picked]
                    if name == "relax.strided_slice":
                        return gathers[0]
                    return relax.Tuple([self.builder_.emit(g) for g in gathers])
            return self.visit_expr_post_order(call)

    rewritten = traverse.rewrite_functions(Rewrite(mod), mod)
    return relax.transform.DeadCodeElimination()(rewritten)


def _bindings(mod: Any) -> dict[Any, Any]:
    """Every variable of `mod`'s Relax functions and the value bound to it."""
    from tvm import relax

    out: dict[Any, Any] = {}
    for func in mod.functions.values():
        if isinstance(func, relax.Function) and isinstance(func.body, relax.SeqExpr):
            for block in func.body.blocks:
                for binding in block.bindings:
                    if isinstance(binding, relax.VarBinding):
                        out[binding.var] = binding.value
    return out


def fold_transposes(mod: Any) -> Any:
    """`mod` with each transpose of a transpose made one (none where they cancel), and a concat
    of tensors transposed alike made a transpose of their concat, so that it folds too."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Fold(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            if _op(call) == "relax.concat":
                return _concat_first(self, call)
            if _op(call) in ELEMENTWISE:
                return _elementwise_first(self, call)
            if _op(call) != "relax.permute_dims":
                return call
            inner = _bound(self, call.args[0])
            outer_axes = _axes(call)
            if outer_axes is not None and outer_axes == sorted(outer_axes):
                return call.args[0]  # ConvertLayout's rewrite of an NHWC gather's transpose
            inner_axes = _axes(inner) if _op(inner) == "relax.permute_dims" else None
            if outer_axes is None or inner_axes is None:
                return call
            axes = [inner_axes[a] for a in outer_axes]
            if axes == sorted(axes):
                return inner.args[0]
            return relax.op.permute_dims(inner.args[0], axes)

    if not traverse.calls(mod, "relax.permute_dims"):
        return mod
    folded = traverse.rewrite_functions(Fold(mod), mod)
    return relax.transform.DeadCodeElimination()(folded)


def _elementwise_first(mutator: Any, call: Any) -> Any:
    """op(transpose(x, p), constants) as transpose(op(x, constants'), p), else `call`: so that
    a transpose after a requantization or activation meets the next one and folds."""
    import numpy as np
    from tvm import ir, relax

    axes, args = None, []
    for arg in call.args:
        inner = _bound(mutator, arg) if isinstance(arg, relax.Var) else None
        if _op(inner) == "relax.permute_dims":
            if axes not in (None, _axes(inner)) or _axes(inner) is None:
                return call
            axes = _axes(inner)
            args.append(inner.args[0])
        elif isinstance(arg, ir.expr.Constant) and isinstance(arg.ty, relax.TensorType):
            # (a PrimValue, clip's bounds, is an ir.expr.Constant too in TVM 0.27: no ndim)
            if int(arg.ty.ndim) not in (0, 4) and arg.value.numpy().size != 1:
                return call  # [C, 1, 1] broadcast from the right: its axes would move
            args.append(arg)  # one value, or a 4-D tensor to transpose once p is known
        elif isinstance(arg, relax.Var | relax.Call) or not isinstance(arg, relax.Expr):
            return call  # another tensor: it would need a transpose of its own
        else:
            args.append(arg)  # a PrimValue (clip's bounds) or a shape
    if axes is None or len(axes) != 4:
        return call
    inverse = list(np.argsort(axes))
    args = [
        relax.const(np.transpose(a.value.numpy(), inverse))
        if isinstance(a, ir.expr.Constant)
        and isinstance(a.ty, relax.TensorType)
        and int(a.ty.ndim) == 4
        else a
        for a in args
    ]
    moved = mutator.builder_.emit(relax.Call(call.op, args, call.attrs, call.ty_args))
    return relax.op.permute_dims(moved, axes)


def _concat_first(mutator: Any, call: Any) -> Any:
    """concat(transpose(a, p), transpose(b, p)) as transpose(concat(a, b), p), else `call`."""
    from tvm import relax

    fields = call.args[0].fields if isinstance(call.args[0], relax.Tuple) else None
    if not fields:
        return call
    inner = [_bound(mutator, f) for f in fields]
    if any(_op(i) != "relax.permute_dims" for i in inner):
        return call
    axes = [_axes(i) for i in inner]
    if axes[0] is None or any(a != axes[0] for a in axes):
        return call
    axis = axes[0][int(call.attrs.axis) % len(axes[0])]
    joined = mutator.builder_.emit(relax.op.concat([i.args[0] for i in inner], axis=axis))
    return relax.op.permute_dims(joined, axes[0])


def _op(value: Any) -> str | None:
    """The name of the op `value` calls, or None."""
    return getattr(getattr(value, "op", None), "name", None)


def _bound(mutator: Any, expr: Any) -> Any:
    from tvm import relax

    if isinstance(expr, relax.Var):
        return mutator.lookup_binding(expr)
    return expr


def _axes(call: Any) -> list[int] | None:
    """A permute_dims' axes, or None if not all given (None means reversed)."""
    rank = _shape(call.args[0])
    axes = call.attrs.axes
    if rank is None:
        return None
    if axes is None:
        return list(range(len(rank)))[::-1]
    return [int(a) for a in axes]


def _shape(expr: Any) -> list[int] | None:
    """A tensor's static shape, or None."""
    from tvm import relax, tirx

    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    shape = getattr(ty.shape, "values", None)
    if shape is None or not all(isinstance(d, tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def _shuffle(bindings: dict[Any, Any], call: Any) -> tuple[Any, int, int] | None:
    """(input, channels, groups) if `call` is the last reshape of a 4-D channel shuffle."""
    if getattr(getattr(call, "op", None), "name", None) != "relax.reshape":
        return None
    out = _shape(call)
    transpose = bindings.get(call.args[0])
    if out is None or len(out) != 4 or _op(transpose) != "relax.permute_dims":
        return None
    if _axes(transpose) != [0, 2, 1, 3, 4]:
        return None
    split = bindings.get(transpose.args[0])
    if _op(split) != "relax.reshape":
        return None
    source = split.args[0]
    grouped, shape = _shape(split), _shape(source)
    if grouped is None or shape is None or shape != out or len(grouped) != 5:
        return None
    n, c, h, w = shape
    if grouped[0] != n or grouped[3:] != [h, w] or grouped[1] * grouped[2] != c:
        return None
    return source, c, grouped[1]


def _pick(call: Any, channels: int) -> list[tuple[int, int]] | None:
    """The channel range [begin, end) each output of a slice or split of the channels reads, or
    None if `call` is something else."""
    if call.op.name == "relax.split":
        if int(call.attrs.axis) % 4 != 1:
            return None
        sections = call.attrs.indices_or_sections
        if _int(sections) is not None:
            count = _int(sections)
            if not count or channels % count:
                return None
            bounds = list(range(0, channels + 1, channels // count))
        else:
            bounds = [0, *(_int(i) for i in sections), channels]
            if None in bounds or bounds != sorted(bounds) or bounds[-1] > channels:
                return None
        return list(itertools.pairwise(bounds))
    if len(call.args) < 5:
        return None
    axes, begin, end, strides = (list(getattr(a, "fields", [])) for a in call.args[1:5])
    if [_int(a) for a in axes] != [1] or not (begin and end and strides):
        return None
    values = [_int(begin[0]), _int(end[0]), _int(strides[0])]
    if None in values or values[2] != 1:
        return None
    b, e = (min(max(v + channels if v < 0 else v, 0), channels) for v in values[:2])
    return [(b, e)] if b < e else None


def _int(value: Any) -> int | None:
    """An integer from a PrimValue, IntImm or int; None for anything symbolic."""
    while hasattr(value, "value"):
        value = value.value
    return int(value) if isinstance(value, int) else None


def _gather(mutator: Any, source: Any, groups: int, begin: int, end: int) -> Any:
    """Channels [begin, end) of the shuffle of NCHW `source` in `groups`, gathered in NHWC."""
    from tvm import relax, te

    def shuffled(x: Any) -> Any:
        n, h, w, c = x.shape
        per_group = int(c) // groups

        def read(i: Any, y: Any, z: Any, k: Any) -> Any:
            j = k + begin  # the output channel of the whole shuffle
            return x[i, y, z, (j % groups) * per_group + j // groups]

        return te.compute((n, h, w, end - begin), read, name="channel_shuffle")

    nhwc = mutator.builder_.emit(relax.op.permute_dims(source, list(TO_NHWC)))
    picked = mutator.builder_.emit_te(shuffled, nhwc, primfunc_name_hint="channel_shuffle")
    return relax.op.permute_dims(picked, list(TO_NCHW))
