"""Winograd F(2,3) for float32 3x3 stride-1 convolutions: 16 multiplies per 2x2 output tile and
channel pair instead of 36.

A conv2d (NHWC, HWIO, constant weights) becomes three stages:
- input transform: V[a, b, p, c] = (B^T d_p B)[a, b], d_p the 4x4 padded input tile p;
- a batched GEMM over the 16 tile positions, M[a, b, p, k] = sum_c V[a, b, p, c] U[a, b, c, k],
  with U = G g G^T computed in numpy at build time and packed [K/cols, 4, 4, C, cols] like
  edgec.relax.pack_weights, register-tiled;
- output transform: Y = A^T M A, with bias, residual add and activation fused after it.
The transforms' coefficients are constant Select chains over the tile position; their schedules
unroll those loops so the chains fold to the few nonzero terms.

V and M are 4x the activation (3.2 MB each for 64 channels at 56x56): written whole, they
stream through L3. Where V is that large and U small enough to stay in L2 (`fused`) the three
stages are one kernel (fused_rule) that computes V, M and the output one tile row at a time, in
parallel over tile rows; elsewhere (V fits L2, or U does not and every tile row would read all
of it) they are three kernels (gemm_rule, transform_rules), each over all tiles.

A conv2d it does not hold for (stride, dilation, groups, kernel size, dtype, layout, weights
not constant, few channels) keeps its usual legalization (`inner`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgec.relax.pack_weights import plain_float
from edgec.relax.tiling import budget, contraction_tile, extent
from edgec.targets import TargetProfile

INPUT = "winograd_input"
GEMM = "winograd_gemm"
OUTPUT = "winograd_output"
# F(2,3) (Lavin & Gray): Y = A^T [(G g G^T) * (B^T d B)] A; small integers and halves, exact in
# float32, so its error is the GEMM's own rounding (F(4,3)'s larger constants amplify it).
# F(m,3) by its output tile side m: (B^T, G, A^T), tiles of alpha = m + 2 inputs.
FORMS = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], "float64"),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], "float64"),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], "float64"),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            "float64",
        ),
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ],
            "float64",
        ),
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
            "float64",
        ),
    ),
}
# F(2,3): on single ResNet layers F(4,3) was 1.2-1.6x faster but had 10-15x its error
# (docs/performance.md), and F(2,3)'s error was below the direct kernel's.
M_OUT = 2
# Fewer channels than this: the transforms cost more than the multiplies they save.
MIN_CHANNELS = 16
# Fewer output tiles than this (ResNet-18's 7x7 layers: 16 tiles covering 8x8): the GEMM streams
# 16 transformed weights per 9 original ones through too few rows (x86, bench/kernels.py, one
# thread: 3x3 512 at 7x7 11.0 ms as Winograd's GEMM against 4.5 ms direct).
MIN_TILES = 32
# TVM's op pattern "opaque": nothing fuses into the input transform or the GEMM (an injective
# producer fused in would be recomputed 16 times per input; the output transform fused into the
# GEMM would leave it without a register tile).
_OPAQUE = 8
# TVM's op pattern "out-elemwise-fusable" (as conv2d): bias, residual add and activation fuse
# into the one-kernel form's output transform.
_OUT_ELEMWISE_FUSABLE = 4
FUSED = "winograd_fused"
# Prefix of the one-kernel form's parameters that V and M move to (_call_fused).
_SCRATCH = "scratch_"
# One kernel where the three would stream V through L3 (V larger than FUSED_MIN_V_BYTES) and
# every tile row can read all of U from L2 (U up to FUSED_WEIGHT_BYTES). x86, 2 MB L2 per core,
# 1 thread, ResNet-18 in context: the four 64-channel layers at 56x56 (V 3.2 MB, U 256 KB)
# 5.4 -> 4.0 ms, the three 128-channel ones at 28x28 (V 1.6 MB, U 1 MB) 3.5 -> 2.9 ms; one
# 256-channel layer at 14x14 alone (U 4 MB) 1.6 -> 1.9 ms (worse). Smaller V stays in L2 as
# three kernels.
FUSED_WEIGHT_BYTES = 1 << 20
FUSED_MIN_V_BYTES = 1 << 20


def fused(weight_bytes: int, v_bytes: int) -> bool:
    """Whether a layer with `weight_bytes` of transformed weights and a V of `v_bytes` runs as
    one kernel."""
    return weight_bytes <= FUSED_WEIGHT_BYTES and v_bytes > FUSED_MIN_V_BYTES


def legalize_map(
    profile: TargetProfile, inner: dict[str, Callable[[Any, Any], Any]]
) -> dict[str, Callable[[Any, Any], Any]]:
    """LegalizeOps overrides: Winograd for the float32 3x3 stride-1 conv2d it holds for; every
    other conv2d goes to `inner`'s legalization, else TVM's own."""
    from tvm import ir

    caps = profile.capabilities
    if caps.device != "cpu" or not caps.winograd:
        return inner
    lanes, accumulators, most = budget(caps.vector_bits, caps.vector_registers)
    otherwise = inner.get("relax.nn.conv2d") or ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")

    def legalize(bb: Any, call: Any) -> Any:
        cols = _gemm_cols(call, lanes, accumulators, most)
        if cols is None:
            return otherwise(bb, call)
        return _legalize(bb, call, cols, caps.cores)

    return {**inner, "relax.nn.conv2d": legalize}


def applies(call: Any) -> bool:
    """Whether `call` (a relax.nn.conv2d) is a conv Winograd F(2,3) computes."""
    from tvm import tirx

    attrs = call.attrs
    x, w = call.args
    if not (
        plain_float(call)
        and int(attrs.groups) == 1
        and all(int(s) == 1 for s in attrs.strides)
        and all(isinstance(d, tirx.IntImm) for d in x.ty.shape)
    ):
        return False
    kh, kw, c, k = (int(d) for d in w.ty.shape)
    n, oh, ow, _ = (int(d) for d in call.ty.shape)
    tiles = n * -(-oh // M_OUT) * -(-ow // M_OUT)
    return (kh, kw) == (3, 3) and min(c, k) >= MIN_CHANNELS and tiles >= MIN_TILES


def _gemm_cols(call: Any, lanes: int, accumulators: int, most: int) -> int | None:
    """The GEMM's register tile width (what U is packed for), or None if Winograd steps aside."""
    if not applies(call):
        return None
    n, oh, ow, k = (int(d) for d in call.ty.shape)
    tiles = n * -(-oh // M_OUT) * -(-ow // M_OUT)
    tile = contraction_tile(k, tiles, lanes, accumulators, most)
    return tile[1] if tile is not None and tile[1] >= min(lanes, k) else None


def transformed_weights(w: np.ndarray, cols: int, m: int = M_OUT) -> np.ndarray:
    """HWIO 3x3 weights as U = G g G^T (in float64), packed [K/cols, alpha, alpha, C, cols]."""
    _, _, c, k = w.shape
    g = FORMS[m][1]
    u = np.einsum("ai,ijck,bj->abck", g, w.astype("float64"), g).astype("float32")
    alpha = m + 2
    return np.ascontiguousarray(
        u.reshape(alpha, alpha, c, k // cols, cols).transpose(3, 0, 1, 2, 4)
    )


def _legalize(bb: Any, call: Any, cols: int, cores: int) -> Any:
    from tvm import relax

    x, w = call.args
    packed = transformed_weights(w.value.numpy(), cols, M_OUT)
    pads = [int(p) for p in call.attrs.padding]
    n, oh, ow, _ = (int(d) for d in call.ty.shape)
    c = int(x.ty.shape[3])
    v_bytes = (M_OUT + 2) ** 2 * n * -(-oh // M_OUT) * -(-ow // M_OUT) * c * 4
    if fused(packed.nbytes, v_bytes):
        return _call_fused(bb, x, relax.const(packed, "float32"), pads, oh, ow, cores)
    opaque = {"op_pattern": _OPAQUE}
    v = bb.emit(
        bb.call_te(_input_te, x, pads, oh, ow, primfunc_name_hint=INPUT, primfunc_attrs=opaque)
    )
    m = bb.emit(
        bb.call_te(
            _gemm_te,
            v,
            relax.const(packed, "float32"),
            primfunc_name_hint=GEMM,
            primfunc_attrs=opaque,
        )
    )
    return bb.call_te(_output_te, m, n, oh, ow, primfunc_name_hint=OUTPUT)


def _call_fused(bb: Any, x: Any, u: Any, pads: list[int], oh: int, ow: int, cores: int) -> Any:
    """The one-kernel form as a call that also passes scratch for V and M, allocated by
    Relax's static memory plan: one slot of a tile row's V and M per parallel task (`cores` of
    them), which the task's tile rows reuse in turn. A kernel's own buffer computed per tile row
    is compacted to one row inside the parallel loop and allocated from the workspace pool in
    every row (2 calls per tile row, ~300 per ResNet-18 inference). The kernel takes the
    scratch as parameters it does not use until fused_rule's schedule moves V and M there."""
    from tvm import relax, te

    x_te = te.placeholder([int(d) for d in x.ty.shape], "float32", "x")
    u_te = te.placeholder([int(d) for d in u.ty.shape], "float32", "u")
    y = _fused_te(x_te, u_te, pads, oh, ow)
    v, mm = (_stage(y, name) for name in (INPUT, GEMM))
    rows = int(v.shape[0]) * int(v.shape[1])  # batch x tile rows
    slots = -(-rows // -(-rows // max(1, cores)))  # one per parallel task
    scratch = [
        te.placeholder([slots, *t.shape[2:]], "float32", _SCRATCH + t.op.name) for t in (v, mm)
    ]
    func = te.create_prim_func([x_te, u_te, *scratch, y], "int64").without_attr("global_symbol")
    gv = bb.add_func(func.with_attr("op_pattern", _OUT_ELEMWISE_FUSABLE), FUSED)
    buffers = [
        bb.emit(
            relax.op.builtin.alloc_tensor(relax.ShapeExpr([int(d) for d in t.shape]), "float32", 0),
            name_hint=t.op.name,
        )
        for t in scratch
    ]
    return relax.call_tir(
        gv, [x, u, *buffers], relax.TensorType([int(d) for d in y.shape], "float32")
    )


def _stage(tensor: Any, name: str) -> Any:
    """The TE stage `name` that `tensor` is computed from."""
    for t in tensor.op.input_tensors:
        if t.op.name == name:
            return t
        found = _stage(t, name) if hasattr(t.op, "input_tensors") else None
        if found is not None:
            return found
    return None


def _coefficient(table: np.ndarray, row: int, index: Any) -> Any:
    """table[row, index] for a symbolic `index`: a Select chain that folds once `index` is a
    constant (an unrolled loop)."""
    from tvm import tirx

    values = [float(v) for v in table[row]]
    expr = tirx.const(values[-1], "float32")
    for i in range(len(values) - 2, -1, -1):
        expr = tirx.Select(index == i, tirx.const(values[i], "float32"), expr)
    return expr


def _input_te(x: Any, pads: list[int], oh: int, ow: int) -> Any:
    """V[a, b, p, c] = sum_ij B^T[a, i] d_p[i, j, c] B^T[b, j] over a zero-padded input."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in x.shape)
    top, left = pads[0], pads[1]
    m, alpha = M_OUT, M_OUT + 2
    th, tw = -(-oh // m), -(-ow // m)
    rows, cols_ = th * m + 2, tw * m + 2
    padded = te.compute(
        (n, rows, cols_, c),
        lambda b, y, z, ch: tirx.if_then_else(
            tirx.all(y >= top, y < h + top, z >= left, z < w + left),
            x[b, y - top, z - left, ch],
            tirx.const(0.0, "float32"),
        ),
        name="pad_temp",
    )

    return te.compute(
        (alpha, alpha, n * th * tw, c),
        lambda a, b, p, ch: _transform_sum(padded, FORMS[m][0], a, b, p, ch, th, tw),
        name=INPUT,
    )


def _transform_sum(
    padded: Any, bt: np.ndarray, a: Any, b: Any, p: Any, ch: Any, th: int, tw: int
) -> Any:
    batch, rest = p // (th * tw), p % (th * tw)
    m = len(bt) - 2
    y, z = rest // tw * m, rest % tw * m
    total = None
    for i in range(m + 2):
        for j in range(m + 2):
            term = (
                _coefficient(bt.T, i, a)
                * _coefficient(bt.T, j, b)
                * padded[batch, y + i, z + j, ch]
            )
            total = term if total is None else total + term
    return total


def _fused_te(x: Any, u: Any, pads: list[int], oh: int, ow: int) -> Any:
    """The three stages in one function, tiles indexed (n, tile row, tile column) so the
    schedule can compute V and M per tile row: V[n, ty, a, b, tx, c], M[n, ty, a, b, tx, k],
    Y[n, y, z, k] from M[n, y // 2, ., ., z // 2, k]; a tile row of V or M is contiguous."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in x.shape)
    top, left = pads[0], pads[1]
    m, alpha = M_OUT, M_OUT + 2
    th, tw = -(-oh // m), -(-ow // m)
    padded = te.compute(
        (n, th * m + 2, tw * m + 2, c),
        lambda b, y, z, ch: tirx.if_then_else(
            tirx.all(y >= top, y < h + top, z >= left, z < w + left),
            x[b, y - top, z - left, ch],
            tirx.const(0.0, "float32"),
        ),
        name="pad_temp",
    )
    bt = FORMS[m][0]

    def transform(bn: Any, ty: Any, a: Any, b: Any, tx: Any, ch: Any) -> Any:
        total = None
        for i in range(alpha):
            for j in range(alpha):
                term = (
                    _coefficient(bt.T, i, a)
                    * _coefficient(bt.T, j, b)
                    * padded[bn, ty * m + i, tx * m + j, ch]
                )
                total = term if total is None else total + term
        return total

    v = te.compute((n, th, alpha, alpha, tw, c), transform, name=INPUT)
    blocks, _, _, _, cols = (int(d) for d in u.shape)
    rc = te.reduce_axis((0, c), "rc")
    mm = te.compute(
        (n, th, alpha, alpha, tw, blocks * cols),
        lambda bn, ty, a, b, tx, k: te.sum(
            v[bn, ty, a, b, tx, rc] * u[k // cols, a, b, rc, k % cols], axis=rc
        ),
        name=GEMM,
    )
    at = FORMS[m][2]

    def value(bn: Any, y: Any, z: Any, ch: Any) -> Any:
        total = None
        for i in range(alpha):
            for j in range(alpha):
                term = (
                    _coefficient(at.T, i, y % m)
                    * _coefficient(at.T, j, z % m)
                    * mm[bn, y // m, i, j, z // m, ch]
                )
                total = term if total is None else total + term
        return total

    return te.compute((n, oh, ow, blocks * cols), value, name=OUTPUT)


def _gemm_te(v: Any, u: Any) -> Any:
    """M[a, b, p, k] = sum_c V[a, b, p, c] U[k // cols, a, b, c, k % cols]."""
    from tvm import te

    alpha, _, tiles, c = (int(d) for d in v.shape)
    blocks, _, _, _, cols = (int(d) for d in u.shape)
    rc = te.reduce_axis((0, c), "rc")
    return te.compute(
        (alpha, alpha, tiles, blocks * cols),
        lambda a, b, p, k: te.sum(v[a, b, p, rc] * u[k // cols, a, b, rc, k % cols], axis=rc),
        name=GEMM,
    )


def _output_te(m: Any, n: int, oh: int, ow: int) -> Any:
    """Y[n, y, z, k] = sum_ab A^T[y % 2, a] M[a, b, tile(y, z), k] A^T[z % 2, b]."""
    from tvm import te

    alpha, k = int(m.shape[0]), int(m.shape[3])
    size = alpha - 2
    at = FORMS[size][2]
    th, tw = -(-oh // size), -(-ow // size)

    def value(b: Any, y: Any, z: Any, ch: Any) -> Any:
        p = (b * th + y // size) * tw + z // size
        total = None
        for i in range(alpha):
            for j in range(alpha):
                term = (
                    _coefficient(at.T, i, y % size)
                    * _coefficient(at.T, j, z % size)
                    * m[i, j, p, ch]
                )
                total = term if total is None else total + term
        return total

    return te.compute((n, oh, ow, k), value, name=OUTPUT)


def _register_tile(
    sch: Any,
    block: Any,
    rc: Any,
    rows: Any,
    cols: Any,
    write_back: Any,
    lanes: int,
    lane_fma: bool,
) -> None:
    """The GEMM's register tile (both Winograd forms): `rows` unrolled, `cols` vectorized, the
    accumulators zeroed as vectors and written back as vectors where the lanes divide them.
    NEON multiplies by one lane of a register: there each row's 4 inputs are one vector load,
    each lane used once (as the contraction rule does)."""
    if lane_fma and extent(sch, rc) % lanes == 0:
        rc_out, rc_in = sch.split(rc, [None, lanes])
        sch.unroll(rc_in)
        cache = sch.cache_read(block, 0, "global")
        sch.compute_at(cache, rc_out)
        cache_loops = sch.get_loops(cache)
        sch.vectorize(cache_loops[-1])
        sch.unroll(cache_loops[-2])
        rc = rc_out
    sch.unroll(rows)
    sch.vectorize(cols)
    init = sch.decompose_reduction(block, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    wb_loops = sch.get_loops(write_back)
    if extent(sch, wb_loops[-1]) % lanes == 0:
        sch.vectorize(wb_loops[-1])


def gemm_rule(lanes: int, accumulators: int, most: int, lane_fma: bool) -> Any:
    """The batched GEMM's schedule: register tiles of rows x cols (as the contraction rule's),
    but with the output-channel tiles innermost, so a tile's rows of V and the 16 positions'
    weights stay in cache while every channel tile reads them."""
    from tvm import s_tir
    from tvm.s_tir.dlight.base import ScheduleRule

    from edgec.relax.tiling import extent, guarded, write_back_at

    @guarded
    class WinogradGemm(ScheduleRule):
        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            block = _block(sch, GEMM)
            if block is None:
                return None
            a, b, p, k, rc = sch.get_loops(block)
            cols = int(sch.get(block).reads[1].source.shape[4])
            tile = contraction_tile(extent(sch, k), extent(sch, p), lanes, accumulators, most, cols)
            if tile is None:
                return None
            rows, cols = tile
            p_out, p_in = sch.split(p, [None, rows])
            k_out, k_in = sch.split(k, [None, cols])
            sch.reorder(a, b, p_out, k_out, rc, p_in, k_in)
            fused = sch.fuse(a, b, p_out, k_out)
            write_back = write_back_at(sch, block, fused, [])
            _register_tile(sch, block, rc, p_in, k_in, write_back, lanes, lane_fma)
            sch.parallel(fused)
            return sch

    return WinogradGemm()


def transform_rules(lanes: int) -> list[Any]:
    """Schedule rules for the input and output transforms: parallel over tiles, the 4x4 (or
    2x2) tile positions unrolled so each coefficient is a constant and the zero terms fold
    away, channels in vectors. Put them before the generic injective rule."""
    from tvm import s_tir
    from tvm.s_tir.dlight.base import ScheduleRule

    from edgec.relax.tiling import extent, guarded, parallel_root

    def vectorize(sch: Any, loop: Any) -> Any:
        """Split `loop` into vectors of `lanes`; return the outer loop (or None)."""
        if extent(sch, loop) % lanes:
            return None
        outer, inner = sch.split(loop, [None, lanes])
        sch.vectorize(inner)
        return outer

    @guarded
    class InputTransform(ScheduleRule):
        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            block = _block(sch, INPUT)
            if block is None:
                return None
            for producer in sch.get_producers(block):
                parallel_root(sch, producer)  # the zero-padded copy: read without tests
            a, b, p, c = sch.get_loops(block)
            c_out = vectorize(sch, c)
            sch.reorder(p, *([c_out] if c_out is not None else []), a, b)
            sch.parallel(p)
            sch.unroll(a)
            sch.unroll(b)
            return sch

    @guarded
    class OutputTransform(ScheduleRule):
        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            if _block(sch, OUTPUT) is None:
                return None
            size = _tile_side(sch)
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
            *rest, last = blocks
            for block in rest:  # the transform, bias, residual: computed in the last block
                sch.compute_inline(block)
            n, y, z, k = sch.get_loops(last)
            y_out, y_in = sch.split(y, [None, size])
            z_out, z_in = sch.split(z, [None, size])
            k_out = vectorize(sch, k)
            sch.reorder(n, y_out, z_out, *([k_out] if k_out is not None else []), y_in, z_in)
            sch.parallel(sch.fuse(n, y_out))
            sch.unroll(y_in)
            sch.unroll(z_in)
            return sch

    return [InputTransform(), OutputTransform()]


def searchable(func: Any) -> bool:
    """Whether MetaSchedule may search schedules for kernel `func`: not for the one-kernel form.
    Its space has no input transform computed per tile row of the GEMM: with 10 trials each
    (`edgec tune`, 200 for ResNet-18) its best candidates for the 56x56 and 28x28 layers took
    9.6 ms against 2.3 ms for fused_rule's schedule, and their search was the slowest of all
    kernels (~8 s per evolution round against ~1 s)."""
    from tvm import s_tir

    try:
        sch = s_tir.Schedule(func)
    except Exception:  # not a kernel s_tir can read: MetaSchedule decides
        return True
    return not (_block(sch, INPUT) is not None and _block(sch, GEMM) is not None)


def _tile_side(sch: Any) -> int:
    """m of the F(m,3) whose output transform `sch` schedules: alpha - 2 of its input."""
    block = _block(sch, OUTPUT)
    return int(sch.get(block).reads[0].source.shape[0]) - 2


def _block(sch: Any, name: str) -> Any:
    """The block `name` of `sch`'s function, or None."""
    blocks = [
        b for b in sch.get_child_blocks(sch.get_sblock("root")) if sch.get(b).name_hint == name
    ]
    return blocks[0] if blocks else None


def fused_rule(lanes: int, accumulators: int, most: int, lane_fma: bool) -> Any:
    """The one-kernel form's schedule: parallel over tile rows; per tile row the input
    transform into V (16 x tiles x C), the GEMM in register tiles into M, and the output
    transform with its epilogue, so V and M stay in L2. Tile rows are split into one run per
    scratch slot (_call_fused), the runs parallel; V and M become those slots, indexed by run
    (`transform_layout` after `compute_at`: a many-to-one map it accepts), then parameters
    (_scratch_as_params). Left as the kernel's buffers they would be compacted to one tile row
    inside the parallel loop and allocated from TVM's workspace pool in every iteration (a
    stack array would need `disable_lower_builtin` on the allocation, which TVM 0.27's
    schedules cannot set)."""
    from tvm import s_tir
    from tvm.s_tir.dlight.base import ScheduleRule

    from edgec.relax.tiling import extent, guarded, parallel_root, write_back_at

    @guarded
    class WinogradFused(ScheduleRule):
        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            gemm, transform = _block(sch, GEMM), _block(sch, INPUT)
            if gemm is None or transform is None or _block(sch, OUTPUT) is None:
                return None
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
            after = blocks[[sch.get(b).name_hint for b in blocks].index(GEMM) + 1 :]
            *rest, last = after
            for block in rest:  # output transform, bias, residual: computed in the last
                sch.compute_inline(block)
            n, y, z, k = sch.get_loops(last)
            ty, yi = sch.split(y, [None, M_OUT])
            tx, zi = sch.split(z, [None, M_OUT])
            k_out, k_in = sch.split(k, [None, lanes]) if extent(sch, k) % lanes == 0 else (k, None)
            sch.reorder(n, ty, tx, k_out, yi, zi, *([k_in] if k_in is not None else []))
            sch.compute_at(gemm, ty)
            sch.compute_at(transform, ty)
            # V and M: one slot per parallel task, which its tile rows reuse in turn
            slots = _scratch_slots(func)
            rows = extent(sch, n) * extent(sch, ty)
            per_slot = -(-rows // slots) if slots else 1  # so rows // per_slot < slots
            tiles_y = extent(sch, ty)
            if slots:
                for block in (transform, gemm):
                    sch.transform_layout(
                        block,
                        ("write", 0),
                        lambda bn, r, a, b, t, c: ((bn * tiles_y + r) // per_slot, a, b, t, c),
                    )
            for producer in sch.get_producers(transform):
                parallel_root(sch, producer)  # the zero-padded copy: its own pass
            task, _ = sch.split(sch.fuse(n, ty), [None, per_slot])
            sch.parallel(task)
            sch.unroll(yi)
            sch.unroll(zi)
            if k_in is not None:
                sch.vectorize(k_in)
            # V per tile row: channels in vectors, the 4x4 positions unrolled
            a, b, tv, c = sch.get_loops(transform)[-4:]  # below the tile-row loop
            if extent(sch, c) % lanes == 0:
                c_out, c_in = sch.split(c, [None, lanes])
                sch.reorder(tv, c_out, a, b, c_in)
                sch.vectorize(c_in)
            else:
                sch.reorder(tv, c, a, b)
            sch.unroll(a)
            sch.unroll(b)
            # the GEMM: register tiles of tiles x output channels
            a, b, tx_, kk, rc = sch.get_loops(gemm)[-5:]
            cols = int(sch.get(gemm).reads[1].source.shape[4])
            tile = contraction_tile(
                extent(sch, kk), extent(sch, tx_), lanes, accumulators, most, cols
            )
            if tile is None:
                return None
            rows, cols = tile
            p_out, p_in = sch.split(tx_, [None, rows])
            kk_out, kk_in = sch.split(kk, [None, cols])
            sch.reorder(a, b, p_out, kk_out, rc, p_in, kk_in)
            write_back = write_back_at(sch, gemm, kk_out, [])
            _register_tile(sch, gemm, rc, p_in, kk_in, write_back, lanes, lane_fma)
            scheduled = _scratch_as_params(sch.mod["main"])
            if "global_symbol" not in (func.attrs or {}):  # Schedule names its function main
                scheduled = scheduled.without_attr("global_symbol")
            return s_tir.Schedule(scheduled)

    return WinogradFused()


def _scratch_slots(func: Any) -> int:
    """The slots of the scratch V that _call_fused passes `func` (0 if it passes none)."""
    shapes = [p.ty.shape for p in func.params if p.name == _SCRATCH + INPUT]
    return int(shapes[0][0]) if shapes else 0


def _scratch_as_params(func: Any) -> Any:
    """`func` with its V and M buffers as the scratch parameters _call_fused passes (the same
    shapes): a parameter is not compacted to the region one parallel iteration uses, so V and M
    take no workspace allocation; each parallel run of tile rows reuses its own slot."""
    from tvm import s_tir, tirx

    realize = func.body
    root = realize.block
    own = {b.name: b for b in root.alloc_buffers}
    params = [
        own.get(p.name.removeprefix(_SCRATCH), p) if p.name.startswith(_SCRATCH) else p
        for p in func.params
    ]
    moved = [p for p, old in zip(params, func.params, strict=True) if not p.same_as(old)]
    if not moved:
        return func
    block = s_tir.stmt.SBlock(
        root.iter_vars,
        root.reads,
        root.writes,
        root.name_hint,
        root.body,
        root.init,
        [b for b in root.alloc_buffers if not any(b.same_as(m) for m in moved)],
        root.match_buffers,
        root.annotations,
    )
    body = s_tir.stmt.SBlockRealize(realize.iter_values, realize.predicate, block)
    return tirx.PrimFunc(params, body, func.ret_type, func.attrs)
