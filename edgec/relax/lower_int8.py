"""import for int8 builds: an edgec QGraph to a Relax module of integer operators.

Each int8 conv or dense is `conv2d/matmul(int8, int8, out_dtype=int32)` plus an int32 bias,
then the fixed-point requantization of edgec.int8 (int64 multiply, rounding add, arithmetic
right shift, clamp, cast to int8), which FuseOps folds into the kernel's epilogue. Activations
stay int8 between integer operators; float only at the model's edges and around layers kept in
float. The arithmetic is the numpy reference's, so outputs match it bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from edgec.artifacts import RelaxModule
from edgec.errors import EdgecError, first_line
from edgec.int8 import QGraph, QNode, QuantizedModel
from edgec.int8.fixed_point import INT8_MAX, INT8_MIN, add_int32_form, int32_form
from edgec.int8.ops import Clip, Requantize
from edgec.relax import traverse


def import_qgraph(model: QuantizedModel) -> RelaxModule:
    """The QGraph as a Relax IRModule whose `main` takes and returns float32, like the ONNX."""
    from tvm import relax

    graph = model.graph
    spec = model.onnx.inputs[0]
    bb = relax.BlockBuilder()
    x = relax.Var(spec.name, relax.TensorType(list(spec.shape), spec.dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            values: dict[str, Any] = {spec.name: x}
            for node in graph.nodes:
                args = [values[name] for name in node.inputs]
                values[node.output] = bb.emit(LOWER[node.op](node, graph, args))
            out = bb.emit_output(values[graph.outputs[0]])
        bb.emit_func_output(out)
    module = bb.get()
    module["main"] = module["main"].with_attr("num_input", 1)
    contractions = int8_contractions(module)
    # int8 average pooling sums its windows as a depthwise conv with ones: a contraction too;
    # a conv that only scales channels is an elementwise product (`_scales_channels`)
    expected = sum(
        n.op in CONTRACTIONS
        and n.precision == "int8"
        and not (n.op == "conv" and _scales_channels(n))
        for n in graph.nodes
    )
    if contractions["int8"] != expected:  # a guard on this lowering, not on the user's model
        raise EdgecError(f"internal: {contractions['int8']} int8 contractions, {expected} planned")
    quantization = {**model.to_json(), "relax_contractions": contractions}
    return RelaxModule(module, model.onnx, quantization)


def int8_contractions(module: Any) -> dict[str, int]:
    """Count conv2d/matmul calls in a Relax module by input dtype: the proof that "int8" is not
    fake quantization."""
    counts = {"int8": 0, "float": 0}
    for call in traverse.calls(module, "relax.nn.conv2d", "relax.matmul"):
        counts["int8" if str(call.args[0].ty.dtype) == "int8" else "float"] += 1
    return counts


def _const(value: np.ndarray | float | int, dtype: str) -> Any:
    from tvm import relax

    return relax.const(np.asarray(value, dtype=dtype), dtype)


def _requantize(acc: Any, out: Requantize, shape: list[int], bias: np.ndarray | None = None) -> Any:
    from tvm.relax import op

    m, n = out.multiplier, out.shift
    wide = op.astype(acc, "int64")
    rounding = np.left_shift(np.int64(1), n.astype(np.int64) - 1)
    # (acc + bias) * m == acc * m + bias * m: the bias joins the rounding constant, so the
    # multiply's operand is the accumulator itself, sign-extended from int32, which LLVM
    # multiplies as 32 x 32 -> 64 bits (NEON smull; the add before it made a 64-bit multiply,
    # lane by lane in general registers: most of an Armv8.0 int8 conv's instructions)
    if bias is not None:
        rounding = rounding + bias.astype(np.int64) * m.astype(np.int64)
    scaled = op.add(op.multiply(wide, _const(m.reshape(shape), "int64")),
                    _const(rounding.reshape(shape), "int64"))  # fmt: skip
    shifted = op.right_shift(scaled, _const(n.reshape(shape), "int64"))
    return op.astype(_clamp(shifted, out.lo, out.hi), "int8")


def _clamp(value: Any, lo: int, hi: int) -> Any:
    """min/max against scalars: elementwise ops that layout conversion passes through (clip is
    not, and would cost a transpose on each side)."""
    from tvm.relax import op

    return op.minimum(op.maximum(value, _const(lo, "int64")), _const(hi, "int64"))


def _activate(clip: Clip, value: Any) -> Any:
    from tvm.relax import op

    low, high = clip.low, clip.high
    if low is None and high is None:
        return value
    if low == 0.0 and high is None:
        return op.nn.relu(value)
    return op.clip(value, -np.inf if low is None else low, np.inf if high is None else high)


def _quantize(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    inverse = np.float32(1.0 / graph.scales[node.output])
    scaled = op.round(op.multiply(args[0], _const(inverse, "float32")))
    return op.astype(op.clip(scaled, -128, 127), "int8")


def _dequantize(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    scale = np.float32(graph.scales[node.inputs[0]])
    return op.multiply(op.astype(args[0], "float32"), _const(scale, "float32"))


def _conv(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    a = node.attrs
    w, b = a.weights.values, a.weights.bias
    if _scales_channels(node):
        conv = _channel_scale(node, args[0])
    else:
        conv = op.nn.conv2d(
            args[0],
            _const(w, str(w.dtype)),
            strides=list(a.window.strides),
            padding=list(a.window.pads),
            dilation=list(a.dilations),
            groups=a.groups,
            out_dtype="int32" if node.precision == "int8" else "float32",
        )
    channels = [1, -1, 1, 1]
    if isinstance(a.out, Clip):
        return _activate(a.out, op.add(conv, _const(b.reshape(channels), str(b.dtype))))
    return _requantize(conv, a.out, channels, bias=b)


def _scales_channels(node: QNode) -> bool:
    """Whether an int8 conv is a 1x1 depthwise one with no stride or padding: a standalone
    BatchNormalization (DenseNet's pre-activations), each channel times its own weight."""
    a = node.attrs
    w = a.weights.values
    return (
        node.precision == "int8"
        and a.groups == w.shape[0] > 1
        and w.shape[1:] == (1, 1, 1)
        and tuple(a.window.strides) == (1, 1)
        and not any(a.window.pads)
        and all(d == 1 for d in a.dilations)
    )


def _channel_scale(node: QNode, x: Any) -> Any:
    """`_scales_channels`' conv as the elementwise product it is, in int32 (exact, as the conv):
    injective, so the requantization fuses and vectorizes with it. As a conv2d, no CPU rule
    schedules a reduction over one tap: its kernel stayed a plain loop nest (62 of DenseNet-121's
    int8 kernels on x86)."""
    from tvm.relax import op

    w = node.attrs.weights.values.astype(np.int32).reshape(1, -1, 1, 1)
    return op.multiply(op.astype(x, "int32"), _const(w, "int32"))


def _dense(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    a = node.attrs
    w, b = a.weights.values, a.weights.bias
    weights = _const(np.ascontiguousarray(w.T), str(w.dtype))
    out_dtype = "int32" if node.precision == "int8" else "float32"
    product = op.matmul(args[0], weights, out_dtype=out_dtype)
    if isinstance(a.out, Clip):
        return _activate(a.out, op.add(product, _const(b.reshape(1, -1), str(b.dtype))))
    return _requantize(product, a.out, [1, -1], bias=b)


def _add(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    out = node.attrs.out
    if isinstance(out, Clip):
        return _activate(out, op.add(args[0], args[1]))
    left = op.multiply(op.astype(args[0], "int64"), _const(out.multipliers[0], "int64"))
    right = op.multiply(op.astype(args[1], "int64"), _const(out.multipliers[1], "int64"))
    total = op.add(op.add(left, right), _const(np.int64(1) << (out.shift - 1), "int64"))
    shifted = op.right_shift(total, _const(out.shift, "int64"))
    return op.astype(_clamp(shifted, out.lo, out.hi), "int8")


def _global_avgpool(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    out = node.attrs.out
    if out is None:
        return op.mean(args[0], axis=[2, 3], keepdims=True)
    total = op.sum(op.astype(args[0], "int32"), axis=[2, 3], keepdims=True)
    return _requantize(total, out, [1])


def _avgpool(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    a = node.attrs
    window = {"pool_size": list(a.window.kernel), "strides": list(a.window.strides),
              "padding": list(a.window.pads)}  # fmt: skip
    if a.out is None:
        return op.nn.avg_pool2d(args[0], count_include_pad=True, **window)
    # the window's int32 sum, as a depthwise convolution with ones
    channels = int(args[0].ty.shape[1])
    ones = np.ones((channels, 1, *a.window.kernel), np.int8)
    total = op.nn.conv2d(
        args[0],
        _const(ones, "int8"),
        strides=window["strides"],
        padding=window["padding"],
        groups=channels,
        out_dtype="int32",
    )
    return _requantize(total, a.out, [1])


def _concat(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    out, axis = node.attrs.out, node.attrs.axis
    if out is None:
        return op.concat(args, axis=axis)
    parts = []
    for x, m in zip(args, out.multipliers, strict=True):
        if m == 1 << out.shift and (out.lo, out.hi) == (INT8_MIN, INT8_MAX):
            parts.append(x)  # already at the output's scale (shared_ranges): x exactly
            continue
        scaled = op.multiply(op.astype(x, "int64"), _const(np.int64(m), "int64"))
        rounded = op.add(scaled, _const(np.int64(1) << (out.shift - 1), "int64"))
        shifted = op.right_shift(rounded, _const(out.shift, "int64"))
        parts.append(op.astype(_clamp(shifted, out.lo, out.hi), "int8"))
    return op.concat(parts, axis=axis)


def _softmax(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    table = node.attrs.table
    if table is None:
        return op.nn.softmax(args[0], axis=-1)
    x = op.astype(args[0], "int32")
    d = op.subtract(op.max(x, axis=[-1], keepdims=True), x)
    e = op.take(_const(table, "int64"), d, axis=0)
    total = op.sum(e, axis=[-1], keepdims=True)
    numerator = op.add(op.multiply(e, _const(np.int64(254), "int64")), total)
    ratio = op.floor_divide(numerator, op.multiply(total, _const(np.int64(2), "int64")))
    return op.astype(_clamp(ratio, 0, 127), "int8")


def _maxpool(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    w = node.attrs.window
    return op.nn.max_pool2d(
        args[0], pool_size=list(w.kernel), strides=list(w.strides), padding=list(w.pads)
    )


def _reshape(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    return op.reshape(args[0], list(node.attrs.shape))


def _transpose(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    return op.permute_dims(args[0], list(node.attrs.perm))


def _slice(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    from tvm.relax import op

    a = node.attrs
    return op.strided_slice(args[0], axes=[a.axis], begin=[a.start], end=[a.stop],
                            strides=[a.step])  # fmt: skip


def _float_op(node: QNode, graph: QGraph, args: list[Any]) -> Any:
    """A float island: the node through TVM's own ONNX importer (what a float build does with
    it), its bindings emitted in place, reading `args`."""
    import contextlib
    import io

    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load_from_string(node.attrs.model)
    names = [i.name for i in model.graph.input]
    if any(getattr(a.ty, "shape", None) is None for a in args):
        raise EdgecError(
            f"the float island {node.name} ({node.attrs.op_type}) reads a tensor of unknown "
            "shape; fix the model's input shapes (--input-shape)"
        )
    shapes = {n: [int(d) for d in a.ty.shape] for n, a in zip(names, args, strict=True)}
    dtypes = {n: str(a.ty.dtype) for n, a in zip(names, args, strict=True)}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the importer's own error lines
            func = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes)["main"]
    except Exception as e:
        raise EdgecError(
            f"TVM could not import the float island {node.name} ({node.attrs.op_type}): "
            f"{first_line(e)}"
        ) from e
    func = func.bind_params(dict(zip(func.params, args, strict=True)))
    bb = relax.BlockBuilder.current()
    for block in func.body.blocks:
        for binding in block.bindings:
            bb.emit_normalized(binding)
    result = func.body.body
    # the importer keeps a Shape's result as a shape value: the QGraph's tensors are tensors
    if isinstance(result.ty, relax.ShapeType):
        return relax.op.shape_to_tensor(result)
    return result


# the ops whose int8 lowering holds one conv2d or matmul on int8 inputs
CONTRACTIONS = ("conv", "dense", "avgpool")
LOWER: dict[str, Callable[[QNode, QGraph, list[Any]], Any]] = {
    "conv": _conv,
    "dense": _dense,
    "add": _add,
    "global_avgpool": _global_avgpool,
    "avgpool": _avgpool,
    "concat": _concat,
    "softmax": _softmax,
    "maxpool": _maxpool,
    "reshape": _reshape,
    "transpose": _transpose,
    "slice": _slice,
    "float_op": _float_op,
    "quantize": _quantize,
    "dequantize": _dequantize,
}


# ---- Arm: the requantization in int32 lanes ----


def requantize_in_int32(module: Any) -> Any:
    """Each conv/dense requantization `_requantize` emitted in int64, rewritten to int32 where
    the layer's weights bound its sums well inside int32 (edgec.int8.fixed_point.int32_form
    proves it the same): NEON has no 64-bit multiply, min or max, and the int64 form cost ~16
    instructions per 4 outputs, this one ~8 (sqadd, sqdmulh, srshl, smax, smin, narrow).
    The bound is 128 · sum|w| per output channel plus |bias|; a layer without it keeps int64."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Rewrite(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            plan = _int32_plan(call, self.lookup_binding)
            if plan is None:
                return call
            acc, consts, doubled, lo, hi = plan
            return self.builder_.call_te(
                _requantize_int32_te,
                acc,
                *(relax.const(c, "int32") for c in consts),
                doubled,
                lo,
                hi,
                primfunc_name_hint="requantize_int32",
            )

    rewrite = Rewrite(module)
    for gv, func in module.functions_items():
        if isinstance(func, relax.Function):
            new = relax.analysis.remove_all_unused(rewrite.visit_expr(func))
            rewrite.builder_.update_func(gv, new)
    return rewrite.builder_.get()


def _int32_plan(call: Any, binding: Callable[[Any], Any]) -> Any:
    """(acc, [bias, multiplier, -k], doubled, lo, hi) if `call` ends an int64
    requantization of a conv2d/matmul with constant weights that int32 computes exactly."""
    from tvm import ir, relax

    def producer(expr: Any, op: str) -> Any:
        value = binding(expr) if isinstance(expr, relax.Var) else expr
        if isinstance(value, relax.Call) and value.op == ir.Op.get(op):
            return value
        return None

    def const(expr: Any) -> np.ndarray | None:
        return expr.value.numpy() if isinstance(expr, ir.expr.Constant) else None

    if call.op != ir.Op.get("relax.astype") or str(call.ty.dtype) != "int8":
        return None
    chain = [call]
    for op in ("relax.minimum", "relax.maximum", "relax.right_shift", "relax.add",
               "relax.multiply", "relax.astype"):  # fmt: skip
        found = producer(chain[-1].args[0], op)
        if found is None:
            return None
        chain.append(found)
    _, minimum, maximum, shift, add, mul, wide = chain
    acc = wide.args[0]
    hi, lo, n, rounding, m = (const(c.args[1]) for c in (minimum, maximum, shift, add, mul))
    if any(v is None for v in (hi, lo, n, rounding, m)) or str(acc.ty.dtype) != "int32":
        return None
    if not (n.shape == rounding.shape == m.shape) or hi.ndim or lo.ndim:
        return None
    conv = producer(acc, "relax.nn.conv2d")
    bound = _sum_bound(conv if conv is not None else producer(acc, "relax.matmul"))
    if bound is None or np.any(n < 1) or np.any(n > 62):
        return None
    # `_requantize` folded the bias into the rounding constant: b·M + 2^(n-1)
    live = m != 0
    half = np.left_shift(np.int64(1), n - 1)
    bias = np.where(live, (rounding - half) // np.where(live, m, 1), 0)
    if not np.array_equal(np.where(live, bias * m + half, rounding), rounding):
        return None  # not the form `_requantize` emits
    form = int32_form(m, n, bound + int(np.abs(bias).max(initial=0)))
    if form is None:
        return None
    doubled, k = form
    consts = [bias, m, -k]
    return acc, [c.astype(np.int32) for c in consts], doubled, int(lo), int(hi)


def _sum_bound(contraction: Any) -> int | None:
    """The largest |sum of x·w| an int8 conv2d/matmul with constant weights can give: 128 times
    the largest sum of |w| over one output channel's weights."""
    from tvm import ir

    if contraction is None or not isinstance(contraction.args[1], ir.expr.Constant):
        return None
    if str(contraction.args[0].ty.dtype) != "int8":
        return None
    w = np.abs(contraction.args[1].value.numpy().astype(np.int64))
    if contraction.op == ir.Op.get("relax.matmul"):
        if w.ndim != 2:
            return None
        per_out = w.sum(axis=0)  # (in, out)
    else:
        out_axis = str(contraction.attrs.kernel_layout).index("O")
        per_out = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1).sum(axis=1)
    return 128 * int(per_out.max(initial=0))


def _requantize_int32_te(
    acc: Any, bias: Any, m: Any, shift: Any, doubled: int, lo: int, hi: int
) -> Any:
    """edgec.int8.fixed_point.requantize_int32 in TE, per-channel constants broadcast; `shift`
    holds -k (srshl's operand: a negative shift is a rounding shift right)."""
    from tvm import te, tirx

    rounding_shift = _register_rounding_shift()

    def at(c: Any, index: tuple[Any, ...]) -> Any:
        # broadcast from the right: a dense layer's [1, N] constants on [..., M, N] sums
        index = index[len(index) - len(c.shape) :]
        return c[tuple(i if int(d) != 1 else 0 for i, d in zip(index, c.shape, strict=True))]

    def value(*i: Any) -> Any:
        # A saturating add that never saturates (the bound): LLVM turns sext(acc + bias) into
        # two 64-bit widening adds and then multiplies 64 x 64 bits (lane by lane on NEON);
        # after sadd.sat it multiplies sext(y) x sext(M) as `sqdmulh` (`sqadd` on NEON).
        y = tirx.call_llvm_pure_intrin("int32", "llvm.sadd.sat", acc[i], at(bias, i))
        if doubled:  # a channel at n = 31: floor(2y·M / 2^31) = floor(y·M / 2^30)
            y = tirx.call_llvm_pure_intrin("int32", "llvm.sadd.sat", y, y)
        wide = y.astype("int64") * at(m, i).astype("int64")
        high = tirx.min(wide >> 31, tirx.const(2**31 - 1, "int64")).astype("int32")  # sqdmulh
        out = tirx.call_intrin("int32", rounding_shift, high, at(shift, i))
        return tirx.max(tirx.min(out, hi), lo).astype("int8")

    return te.compute(acc.shape, value, name="requantize_int32")


ROUNDING_SHIFT = "edgec.rounding_shift"


def register_ops() -> None:
    """Register edgec's own TIR ops in this process: a process that reads a kernel calling
    one (a MetaSchedule builder worker) needs them before it can unpickle the kernel."""
    _register_rounding_shift()


@cache
def _register_rounding_shift() -> str:
    """A TIR op for (x + 2^(k-1)) >> k given s = -k, k >= 1, lowered after vectorization: on
    4 lanes (and 2) to NEON's `srshl` (one instruction for the add and the shift, exact: its
    rounding add does not overflow), wider vectors split into 4-lane parts, anything else to
    the plain add and shift. The `llvm.aarch64.neon.srshl` intrinsic itself cannot be written
    in the kernel: LLVM aborts the process on it at 8 or 16 lanes and on scalars (STACK-NOTES),
    and a kernel's lane count is known only once its schedule is applied. Emitted only for
    aarch64 targets (`compile.py`): the lowering is registered for every llvm target, since a
    lowering function does not see the target."""
    from tvm import tirx
    from tvm.ir.op import register_op_attr
    from tvm.tirx.expr import CallEffectKind

    srshl = "llvm.aarch64.neon.srshl"
    register_op_attr(ROUNDING_SHIFT, "TCallEffectKind", CallEffectKind.Pure.value)
    register_op_attr(ROUNDING_SHIFT, "TVectorizable", True)

    def lower(call: Any) -> Any:
        dtype = call.ty.dtype
        lanes = dtype.lanes
        x, s = (a if a.ty.dtype.lanes == lanes else tirx.Broadcast(a, lanes) for a in call.args)
        if lanes in (2, 4):
            return tirx.call_llvm_pure_intrin(dtype, srshl, x, s)
        if lanes % 4 == 0:  # 4-lane parts: shuffles of halves of registers cost nothing
            xv, sv = tirx.Var("x", dtype), tirx.Var("s", dtype)

            def part(v: Any, at: int) -> Any:
                return tirx.Shuffle([v], [tirx.const(j) for j in range(at, at + 4)])

            parts = [
                tirx.call_llvm_pure_intrin("int32x4", srshl, part(xv, at), part(sv, at))
                for at in range(0, lanes, 4)
            ]
            whole = tirx.Shuffle(parts, [tirx.const(j) for j in range(lanes)])
            return tirx.Let(xv, x, tirx.Let(sv, s, whole))
        one = (
            tirx.const(1, "int32") if lanes == 1 else tirx.Broadcast(tirx.const(1, "int32"), lanes)
        )
        return (x + (one << (-s - one))) >> -s

    tirx.op.register_intrin_lowering(ROUNDING_SHIFT, "llvm", f=lower, level=99)
    return ROUNDING_SHIFT


def adds_in_int32(module: Any) -> Any:
    """Each residual add `_add` emitted in int64 (two int8 inputs rescaled to the output's
    scale), rewritten to int32 where edgec.int8.fixed_point.add_int32_form proves it exact:
    each multiplier split into 16-bit halves, so every product of an int8 fits int32 (NEON has
    no 64-bit multiply, min or max). An add of another form keeps int64."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    @mutator
    class Rewrite(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            plan = _add_int32_plan(call, self.lookup_binding)
            if plan is None:
                return call
            a, b, form, lo, hi = plan
            return self.builder_.call_te(
                _add_int32_te, a, b, form, lo, hi, primfunc_name_hint="add_int32"
            )

    rewrite = Rewrite(module)
    for gv, func in module.functions_items():
        if isinstance(func, relax.Function):
            new = relax.analysis.remove_all_unused(rewrite.visit_expr(func))
            rewrite.builder_.update_func(gv, new)
    return rewrite.builder_.get()


def _add_int32_plan(call: Any, binding: Callable[[Any], Any]) -> Any:
    """(a, b, form, lo, hi) if `call` ends `_add`'s int64 rescale of two int8 tensors of one
    static shape that int32 computes exactly."""
    from tvm import ir, relax, tirx

    def producer(expr: Any, op: str) -> Any:
        value = binding(expr) if isinstance(expr, relax.Var) else expr
        if isinstance(value, relax.Call) and value.op == ir.Op.get(op):
            return value
        return None

    def scalar(expr: Any) -> int | None:
        if not isinstance(expr, ir.expr.Constant) or expr.value.numpy().ndim:
            return None
        return int(expr.value.numpy())

    if call.op != ir.Op.get("relax.astype") or str(call.ty.dtype) != "int8":
        return None
    chain = [call]
    for op in ("relax.minimum", "relax.maximum", "relax.right_shift", "relax.add", "relax.add"):
        found = producer(chain[-1].args[0], op)
        if found is None:
            return None
        chain.append(found)
    _, minimum, maximum, shift, rounding, total = chain
    hi, lo, s, r = (scalar(c.args[1]) for c in (minimum, maximum, shift, rounding))
    if any(v is None for v in (hi, lo, s, r)) or r != 1 << (s - 1):
        return None
    inputs, multipliers = [], []
    for side in total.args:
        product = producer(side, "relax.multiply")
        wide = None if product is None else producer(product.args[0], "relax.astype")
        m = None if product is None else scalar(product.args[1])
        if wide is None or m is None or str(wide.args[0].ty.dtype) != "int8":
            return None
        inputs.append(wide.args[0])
        multipliers.append(m)
    a, b = inputs
    shapes = [getattr(x.ty, "shape", None) for x in inputs]  # static and equal: no broadcast
    if any(sh is None or not all(isinstance(d, tirx.IntImm) for d in sh) for sh in shapes):
        return None
    if [int(d) for d in shapes[0]] != [int(d) for d in shapes[1]]:
        return None
    form = add_int32_form(np.array(multipliers, np.int64), s)
    if form is None:
        return None
    return a, b, list(form), lo, hi


def _add_int32_te(a: Any, b: Any, form: list[int], lo: int, hi: int) -> Any:
    """edgec.int8.fixed_point.rescale_add_int32 in TE."""
    from tvm import te, tirx

    h0, l0, h1, l1, rounding, k = form

    def value(*i: Any) -> Any:
        x, y = a[i].astype("int32"), b[i].astype("int32")
        high = x * h0 + y * h1
        low = x * l0 + y * l1
        total = high + (low >> 16) + rounding
        return tirx.max(tirx.min(total >> k, hi), lo).astype("int8")

    return te.compute(a.shape, value, name="add_int32")
