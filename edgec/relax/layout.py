"""Channels-last (NHWC/HWIO) convolutions where layout conversion is proven to hold, NCHW elsewhere.

TVM's ConvertLayout propagates a layout through every op that has a layout-inference rule, and
some of those rules abort on graphs from the wild: tuple-valued ops (`dropout`, `split`: "Expected
nested to match tuple") and tensors that are not 4-D (LRN's avg_pool3d, a 5-D channel shuffle:
"Invalid SLayout: can't find S in source layout ABCDE"). So before ConvertLayout runs, every op
outside a small set whose rules hold on 4-D tensors is fenced: legalized to its TIR kernel
(`call_tir`, what LegalizeOps would make of it later anyway), which ConvertLayout treats as opaque
and feeds in NCHW. The rest of the model keeps the channels-last fast path; only the fenced ops
see a layout transform around them. If ConvertLayout still fails, the module stays NCHW whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgec.errors import first_line
from edgec.relax import channel_shuffle, traverse

# Ops whose layout-inference rule holds for 4-D tensors (and scalars): the channels-last chain
# may run through them. Everything else is fenced.
CHANNELS_LAST_OPS = frozenset(
    {
        "relax.nn.conv2d",
        "relax.nn.max_pool2d",
        "relax.nn.avg_pool2d",
        "relax.nn.adaptive_avg_pool2d",
        "relax.nn.relu",
        "relax.nn.gelu",
        "relax.nn.silu",
        "relax.nn.leakyrelu",
        "relax.clip",
        "relax.sigmoid",
        "relax.tanh",
        "relax.exp",
        "relax.sqrt",
        "relax.rsqrt",
        "relax.erf",
        "relax.negative",
        "relax.abs",
        "relax.astype",
        "relax.add",
        "relax.subtract",
        "relax.multiply",
        "relax.divide",
        "relax.power",
        "relax.maximum",
        "relax.minimum",
        "relax.floor_divide",
        "relax.right_shift",  # int8 requantization
        "relax.left_shift",
        "relax.round",
        "relax.floor",
        "relax.ceil",
        "relax.log",
        "relax.square",
        "relax.mean",  # global average pooling
        "relax.max",
        "relax.sum",
        "relax.concat",  # of 4-D tensors only (Inception, DenseNet, SqueezeNet)
        "relax.permute_dims",  # 4-D: a channel shuffle's way to and from its gather
    }
)
LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"]}


def to_channels_last(mod: Any, fallbacks: dict[str, str]) -> Any:
    """`mod` with its conv2d chains in NHWC/HWIO; what had to stay NCHW goes into `fallbacks`
    (op or scope → reason)."""
    from tvm import relax

    if not _has_conv2d(mod):
        return mod  # nothing to convert
    original = mod
    try:  # channel shuffles as NHWC gathers, with transposes that cancel below
        mod = channel_shuffle.shuffles_as_gathers(mod)
    except Exception as e:
        fallbacks["layout: channel shuffle"] = f"runs in NCHW: {first_line(e)}"
    fenced, reasons = _fence(mod)
    try:
        converted = relax.transform.ConvertLayout(LAYOUTS)(fenced)
    except Exception as e:  # a rule we did not foresee: the whole module stays NCHW
        fallbacks["layout: whole model"] = f"stays NCHW, ConvertLayout failed: {first_line(e)}"
        return original
    fallbacks.update(reasons)
    try:  # ConvertLayout's transposes back to NCHW against the gathers' to NHWC
        return channel_shuffle.fold_transposes(converted)
    except Exception as e:
        fallbacks["layout: transposes"] = f"left unfolded: {first_line(e)}"
        return converted


def _fence(mod: Any) -> tuple[Any, dict[str, str]]:
    """Legalize every call ConvertLayout must not propagate through; say which and why."""
    from tvm.relax.expr_functor import PyExprMutator, mutator

    reasons: dict[str, str] = {}
    chain = set().union(*(_channels_last_vars(f) for f in mod.functions.values()))

    @mutator
    class Fence(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            reason = _fence_reason(call)
            if reason is None:
                return call
            legalize: Callable[[Any, Any], Any] | None = call.op.get_attr("FLegalize")
            if legalize is None:
                return call
            if any(arg in chain for arg in _tensors(call.args)):  # where NHWC would reach
                reasons.setdefault(f"layout: {call.op.name}", reason)
            return legalize(self.builder_, call)

    return traverse.rewrite_functions(Fence(mod), mod), reasons  # + the fenced ops' kernels


def _fence_reason(call: Any) -> str | None:
    """Why ConvertLayout must not see `call`, or None if its rule is known to hold."""
    from tvm import ir

    if not isinstance(call.op, ir.Op) or call.op.get_attr("FRelaxInferLayout") is None:
        return None  # no layout rule: ConvertLayout already feeds it NCHW
    name = call.op.name
    if name not in CHANNELS_LAST_OPS:
        return "no proven channels-last rule: runs in NCHW"
    if _ndim(call) is None:
        return "gives a tuple: runs in NCHW"
    for value in [*_tensors(call.args), call]:
        ndim = _ndim(value)
        if ndim is None:
            return "takes a nested tuple: runs in NCHW"
        lower_rank_constant = isinstance(value, ir.expr.Constant) and name != "relax.nn.conv2d"
        if ndim not in (0, 4) and not lower_rank_constant and value is not call:
            return f"{ndim}-D input: runs in NCHW"
    return None


def _has_conv2d(mod: Any) -> bool:
    return any(_channels_last_vars(f) for f in mod.functions.values())


def _channels_last_vars(func: Any) -> set[Any]:
    """The variables ConvertLayout would make channels-last: conv2d outputs and what the
    unfenced ops compute from them."""
    from tvm import relax

    chain: set[Any] = set()
    if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
        return chain
    for block in func.body.blocks:
        for binding in block.bindings:
            value = getattr(binding, "value", None)
            if not isinstance(value, relax.Call) or not hasattr(value.op, "name"):
                continue
            is_conv = value.op.name == "relax.nn.conv2d"
            fed = any(arg in chain for arg in _tensors(value.args))
            if is_conv or (fed and value.op.name in CHANNELS_LAST_OPS and not _fence_reason(value)):
                chain.add(binding.var)
    return chain


def _tensors(args: Any) -> list[Any]:
    """Call arguments with tuples (concat's) flattened one level."""
    from tvm import relax

    out = []
    for arg in args:
        out.extend(arg.fields if isinstance(arg, relax.Tuple) else [arg])
    return out


def _ndim(value: Any) -> int | None:
    """A tensor's rank, or None for anything that is not a tensor."""
    from tvm import relax

    ty = value.ty
    return int(ty.ndim) if isinstance(ty, relax.TensorType) else None
