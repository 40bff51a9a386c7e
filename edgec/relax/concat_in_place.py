"""Channel concatenations without copies: each input's kernel writes into its slice of the result.

SqueezeNet's fire modules, Inception's branches: several convolutions concatenated on the
channel axis. In NHWC that concatenation interleaves its inputs, a copy of every element (the
55x55 one took 0.83-0.92 ms on x86 against ONNX Runtime's 0.15 ms). Instead the first input's
kernel allocates the concatenation and writes its channels at offset 0, and each next kernel
writes its own channels at its offset into that same buffer (`call_tir_inplace`): no copy.

Two steps around fusion. Before legalization, each concatenation whose inputs are made by
calls used nowhere else becomes an opaque kernel of its own (`mark_concats`), so FuseOps leaves
it out of its producers' kernels (it would fuse it into one of them, copying the others). After
FuseTIR, each such kernel's producers are retargeted to write their slice of the result
(`write_in_place`). Steps aside locally, the concatenation staying its own copy kernel: a
concatenation on another axis than the innermost, an input used elsewhere (DenseNet's running
features), an input that is itself a concatenation written in place (Inception-v3 nests
them), an input whose fused kernel is not a plain `call_tir` with one output that it only
stores to (a max pooling reduces into its output: two of Inception-v3's concatenations).
"""

from __future__ import annotations

from typing import Any

from edgec.errors import first_line

KERNEL = "concat_in_place"
_ATTR = "edgec.concat_in_place"
_OPAQUE = 8  # relax's OpPatternKind.kOpaque: FuseOps fuses nothing into it


def mark_concats(mod: Any, fallbacks: dict[str, str]) -> Any:
    """`mod` with every concatenation that qualifies as an opaque kernel of its own; why the
    others stay copies goes into `fallbacks`."""
    from tvm import relax, topi
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from edgec.relax import traverse

    wanted: list[Any] = []
    for func in mod.functions.values():
        if isinstance(func, relax.Function) and isinstance(func.body, relax.SeqExpr):
            for call, reason in _concats(func):
                if reason is None:
                    wanted.append(call)
                else:
                    fallbacks[f"concat in place {_shape(call)}"] = f"stays a copy: {reason}"
    if not wanted:
        return mod
    attrs = {"op_pattern": _OPAQUE, _ATTR: True}

    @mutator
    class Mark(PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            new = self.visit_expr_post_order(call)
            if not any(call.same_as(w) for w in wanted):
                return new
            axis = int(call.attrs.axis) % len(call.ty.shape)
            return self.builder_.call_te(
                topi.concatenate,
                list(new.args[0].fields),
                axis,
                primfunc_name_hint=KERNEL,
                primfunc_attrs=attrs,
            )

    return traverse.rewrite_functions(Mark(mod), mod)


def _concats(func: Any) -> list[tuple[Any, str | None]]:
    """Each concat call of `func`, with why it cannot be written in place (None if it can: on
    the innermost axis, every input the result of a call used by nothing else)."""
    from tvm import ir, relax

    uses = _uses(func)
    made_by_call: set[Any] = set()
    found: list[tuple[Any, str | None]] = []
    for block in func.body.blocks:
        for binding in block.bindings:
            value = getattr(binding, "value", None)
            if isinstance(value, relax.Call):
                made_by_call.add(binding.var)
            if (
                isinstance(value, relax.Call)
                and isinstance(value.op, ir.Op)
                and value.op.name == "relax.concat"
            ):
                if isinstance(value.args[0], relax.Tuple) and len(value.args[0].fields) < 2:
                    continue  # one input: a copy TVM's own passes remove, not a concatenation
                found.append((value, _why_not(value, made_by_call, uses)))
    return found


def _why_not(call: Any, made_by_call: set[Any], uses: dict[Any, int]) -> str | None:
    from tvm import relax

    if not isinstance(call.args[0], relax.Tuple) or not _static(call.ty):
        return "inputs or shape not known at build time"
    fields = list(call.args[0].fields)
    ndim = len(call.ty.shape)
    axis = int(call.attrs.axis) % ndim
    if axis != ndim - 1:
        return f"on axis {axis}, not the innermost (channels in NHWC)"
    if not all(f in made_by_call and uses.get(f, 0) == 1 for f in fields):
        return "an input is used elsewhere too, or is not made by a kernel"
    return None


def _static(ty: Any) -> bool:
    from tvm import relax, tirx

    return (
        isinstance(ty, relax.TensorType)
        and ty.shape is not None
        and all(isinstance(d, tirx.IntImm) for d in ty.shape)
    )


def _uses(func: Any) -> dict[Any, int]:
    """How many times each variable of `func` is read."""
    from tvm import relax

    counts: dict[Any, int] = {}

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1

    for block in func.body.blocks:
        for binding in block.bindings:
            relax.analysis.post_order_visit(binding.value, visit)
    relax.analysis.post_order_visit(func.body.body, visit)
    return counts


def write_in_place(mod: Any, fallbacks: dict[str, str]) -> Any:
    """`mod` with each marked concatenation's producers writing into its result; where that
    does not hold the concatenation stays a copy and `fallbacks` says why."""
    from tvm import relax

    builder = relax.BlockBuilder(mod)  # gives the retargeted kernels typed GlobalVars
    retargeted: dict[tuple[str, tuple[int, ...], int], Any] = {}
    rewritten = {}
    replaced: set[str] = set()
    for gv, func in mod.functions.items():
        if not isinstance(func, relax.Function) or not isinstance(func.body, relax.SeqExpr):
            continue
        uses = _uses(func)
        blocks = [
            _rewrite_block(mod, builder, block, uses, retargeted, replaced, fallbacks)
            for block in func.body.blocks
        ]
        body = relax.SeqExpr(blocks, func.body.body)
        rewritten[gv] = relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs)
    out = builder.get()
    for gv, func in rewritten.items():
        out[gv] = func
    return _without_unused(out, replaced)


def _without_unused(mod: Any, replaced: set[str]) -> Any:
    """`mod` less the `replaced` kernels (copies, producers that were retargeted) that no
    Relax function calls any more, so they are neither scheduled nor built."""
    from edgec.relax import traverse

    called = {
        call.args[0].name_hint
        for call in traverse.calls(mod, "relax.call_tir", "relax.call_tir_inplace")
    }
    for gv in [gv for gv in mod.get_global_vars() if gv.name_hint in replaced - called]:
        del mod[gv]
    return mod


def _rewrite_block(
    mod: Any,
    builder: Any,
    block: Any,
    uses: dict[Any, int],
    retargeted: dict[tuple[str, tuple[int, ...], int], Any],
    replaced: set[str],
    fallbacks: dict[str, str],
) -> Any:
    from tvm import relax

    if not isinstance(block, relax.DataflowBlock):
        return block
    bindings = list(block.bindings)
    made = {b.var: i for i, b in enumerate(bindings)}
    dropped: set[int] = set()
    chains: dict[int, list[Any]] = {}
    for i, binding in enumerate(bindings):
        call = binding.value
        if not _is_marked(mod, call):
            continue
        try:
            chain, producers = _chain(
                mod, builder, call, binding.var, bindings, made, uses, retargeted
            )
        except _StepAside as e:
            fallbacks[f"concat in place {_shape(call)}"] = f"stays a copy: {e}"
            continue
        except Exception as e:  # a TIR shape not foreseen: the copy is always right
            fallbacks[f"concat in place {_shape(call)}"] = f"stays a copy: {first_line(e)}"
            continue
        dropped.update(producers)
        chains[i] = chain
        replaced.add(call.args[0].name_hint)
        replaced.update(bindings[at].value.args[0].name_hint for at in producers)
    out: list[Any] = []
    for i, binding in enumerate(bindings):
        if i in dropped:
            continue
        out.extend(chains.get(i, [binding]))
    return relax.DataflowBlock(out)


class _StepAside(Exception):
    """This concatenation cannot be written in place: the reason."""


def _is_marked(mod: Any, call: Any) -> bool:
    from tvm import ir, relax, tirx

    if not (
        isinstance(call, relax.Call)
        and isinstance(call.op, ir.Op)
        and call.op.name == "relax.call_tir"
    ):
        return False
    func = mod[call.args[0]]
    return isinstance(func, tirx.PrimFunc) and bool(func.attrs and func.attrs.get(_ATTR))


def _chain(
    mod: Any,
    builder: Any,
    call: Any,
    result: Any,
    bindings: list[Any],
    made: dict[Any, int],
    uses: dict[Any, int],
    retargeted: dict[tuple[str, tuple[int, ...], int], Any],
) -> tuple[list[Any], list[int]]:
    """The bindings that replace the concatenation `result = call`, and the indices of the
    producer bindings they replace."""
    from tvm import ir, relax

    out_ty = call.ty
    shape = tuple(int(d) for d in out_ty.shape)
    plan = []
    offset = 0
    for field in call.args[1].fields:
        at = made.get(field)
        if at is None or uses.get(field, 0) != 1:
            raise _StepAside("an input is used elsewhere or made outside the block")
        producer = bindings[at].value
        if not (
            isinstance(producer, relax.Call)
            and isinstance(producer.op, ir.Op)
            and producer.op.name == "relax.call_tir"
            and len(producer.args) == 2  # a third: symbolic shape values
            and isinstance(producer.ty, relax.TensorType)
        ):
            raise _StepAside("an input is not one kernel's single output")
        if _is_marked(mod, producer):  # Inception-v3's nested concats: the inner is in place
            raise _StepAside("an input is a concatenation written in place itself")
        width = int(field.ty.shape[-1])
        key = (producer.args[0].name_hint, shape, offset)
        if key not in retargeted:
            func = _write_at(mod[producer.args[0]], shape, offset)
            name = f"{producer.args[0].name_hint}_into{shape[-1]}_at{offset}"
            retargeted[key] = builder.add_func(func, name)
        plan.append((at, retargeted[key], list(producer.args[1].fields)))
        offset += width
    chain: list[Any] = []
    buffer = None
    for n, (_, gv, args) in enumerate(plan):
        last = n == len(plan) - 1
        var = result if last else relax.DataflowVar(f"{result.name}_part{n}", out_ty)
        if buffer is None:
            value = relax.call_tir(gv, relax.Tuple(args), out_ty)
        else:
            value = relax.op.call_tir_inplace(gv, relax.Tuple([*args, buffer]), [len(args)], out_ty)
        chain.append(relax.VarBinding(var, value))
        buffer = var
    return chain, [at for at, _, _ in plan]


def _write_at(func: Any, shape: tuple[int, ...], offset: int) -> Any:
    """`func` (a kernel whose last parameter is its output) writing its output into a buffer of
    `shape` at `offset` along the innermost axis."""
    from tvm import ir, tirx

    old = func.params[-1]
    old_shape = [int(d) for d in old.shape]
    if len(old_shape) != len(shape) or old_shape[:-1] != list(shape[:-1]):
        raise _StepAside("an input's shape differs from the result's outside the channels")
    new = tirx.decl_buffer(shape, old.dtype, old.name)

    def region(r: Any) -> Any:
        if not r.source.same_as(old):
            return r
        ranges = list(r.region)
        last = ranges[-1]
        moved = ir.Range.from_min_extent(last.min + offset, last.extent)
        return tirx.BufferRegion(new, [*ranges[:-1], moved])

    def reads_old(expr: Any) -> bool:
        return any(v.same_as(old) for v in tirx.analysis.undefined_vars(expr))

    def stmt(s: Any) -> Any:
        from tvm.s_tir import stmt as sb

        if isinstance(s, tirx.SeqStmt):
            return tirx.SeqStmt([stmt(x) for x in s.seq])
        if isinstance(s, tirx.For):
            return tirx.For(
                s.loop_var,
                s.min,
                s.extent,
                s.kind,
                stmt(s.body),
                s.thread_binding,
                s.annotations,
                s.step,
            )
        if isinstance(s, sb.SBlockRealize):
            return sb.SBlockRealize(s.iter_values, s.predicate, stmt(s.block))
        if isinstance(s, sb.SBlock):
            if any(r.source.same_as(old) for r in s.reads) or s.match_buffers:
                raise _StepAside("an input's kernel reads its own output")
            return sb.SBlock(
                s.iter_vars,
                s.reads,
                [region(r) for r in s.writes],
                s.name_hint,
                stmt(s.body),
                stmt(s.init) if s.init is not None else None,
                s.alloc_buffers,
                s.match_buffers,
                s.annotations,
            )
        if isinstance(s, tirx.BufferStore):
            if reads_old(s.value) or any(reads_old(i) for i in s.indices):
                raise _StepAside("an input's kernel reads its own output")
            if not s.buffer.same_as(old):
                return s
            indices = list(s.indices)
            return tirx.BufferStore(new, s.value, [*indices[:-1], indices[-1] + offset])
        raise _StepAside(f"an input's kernel holds a {type(s).__name__}")

    return tirx.PrimFunc([*func.params[:-1], new], stmt(func.body), func.ret_type, func.attrs)


def _shape(call: Any) -> str:
    return "(" + "x".join(str(int(d)) for d in call.ty.shape) + ")"
