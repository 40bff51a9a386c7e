"""edgec's default CPU schedules: dlight-style rules that make an untuned build fast.

TVM 0.27's CPU pipeline leaves every kernel as a naive loop nest. These rules cover what
dominates CNNs and transformers: contractions (conv2d in NHWC/HWIO, dense, batched matmul)
get register-blocked, vectorized over output channels and parallel over tiles; elementwise
and layout kernels get parallel + vectorized; row reductions use dlight's CPU rule.
Each rule returns None (leaving the kernel to the next rule) when its pattern does not match
or its schedule cannot be applied, so a rule can cost speed but never correctness.
"""

from __future__ import annotations

import math
from typing import Any

from edgec.relax import int8_dot as int8_dot_rules
from edgec.relax import pack_dense, pack_weights
from edgec.relax.tiling import (
    budget,
    contraction_tile,
    extent,
    guarded,
    parallel_root,
    register_tile,
    write_back_at,
)
from edgec.targets import Int8Dot


def rules(
    vector_bits: int,
    int8_dot: Int8Dot = "none",
    vector_registers: int = 16,
    lane_fma: bool = False,
) -> list[Any]:
    """The rule list for a CPU with `vector_registers` SIMD registers of `vector_bits` each
    (fp32 lanes = bits/32), the int8 dot-product instruction `int8_dot`, and, if `lane_fma`,
    a multiply-add by one lane of a vector register (AArch64 `fmla v.4s, v.4s, v.s[i]`)."""
    from tvm.s_tir import dlight as dl

    lanes, accumulators, most = budget(vector_bits, vector_registers)
    # int8_dot's rule only matches the kernels its legalization made (on targets that have the
    # instruction); the contraction rule would schedule them too, without the instruction.
    rule = int8_dot_rules.schedule_rule(int8_dot)
    contraction = _contraction(lanes, accumulators, most, lane_fma)
    return [rule, contraction, _injective(lanes), _row_reductions(lanes), dl.cpu.Reduction()]


def _static(info: Any) -> bool:
    from tvm import tirx

    return all(isinstance(i.dom, (int, tirx.IntImm)) for i in info.iters)


def _rows_operand(sch: Any, block: Any) -> int | None:
    """The index of `block`'s read that is the same for every output channel (the activations
    of conv2d, matmul's left operand): the one whose indices do not use the block's last
    spatial variable. None when there is not exactly one."""
    from tvm.tirx.analysis import undefined_vars

    stmt = sch.get(block)
    written = stmt.writes[0].source
    reductions = sum(v.iter_type == 2 for v in stmt.iter_vars)  # 2: IterVar.CommReduce
    channel = stmt.iter_vars[len(stmt.iter_vars) - 1 - reductions]  # spatial first (normalized)
    found = [
        i
        for i, region in enumerate(stmt.reads)
        if not region.source.same_as(written)
        and not any(channel.var.same_as(v) for r in region.region for v in undefined_vars(r.min))
    ]
    return found[0] if len(found) == 1 else None


# Weight bytes a tile loop may re-read from L1 for every row tile (L1D: 32-48 KB on x86 and
# Cortex-A72, shared with the input rows and accumulators).
_SMALL_WEIGHTS = 16 * 1024
# fp32 lanes of the narrowest vector a depthwise tile falls back to (NEON's 64-bit `fmla.2s`)
HALF_VECTOR = 2


def _weight_bytes(sch: Any, block: Any, shared: int | None) -> int:
    """Bytes of the largest buffer `block` reads besides the shared rows operand and its own
    output: the weights of a conv2d or matmul."""
    stmt = sch.get(block)
    written = stmt.writes[0].source
    sizes = [
        math.prod(int(d) for d in region.source.shape) * region.source.dtype.bits // 8
        for i, region in enumerate(stmt.reads)
        if i != shared and not region.source.same_as(written)
    ]
    return max(sizes, default=0)


def _streams_weights(sch: Any, block: Any, spatial: list[Any], shared: int | None) -> bool:
    """Whether `block` is a matrix-vector product over weights larger than L1: one output row,
    each weight used once."""
    rows = math.prod(extent(sch, loop) for loop in spatial[:-1])
    return shared is not None and rows == 1 and _weight_bytes(sch, block, shared) > _SMALL_WEIGHTS


def _gemv(
    sch: Any,
    block: Any,
    spatial: list[Any],
    reduce: list[Any],
    producers: list[Any],
    consumers: list[Any],
    lanes: int,
    accumulators: int,
) -> Any:
    """y[n] += x[k] * w[k, n] with the reduction outside the output vectors: each weight row is
    read once, contiguously, by a few parallel chunks of outputs that stay in L1. A register
    tile of one row instead walks down a column strip of the weights (MobileNetV2's 1280 ->
    1000 classifier: one 8-wide strip, 32 of every 4000 bytes per row)."""
    channels = extent(sch, spatial[-1])
    width = next((w for w in (lanes, lanes // 2, lanes // 4) if w >= 4 and channels % w == 0), 0)
    if not width:
        return None  # nothing scheduled yet: the register tile takes it
    vectors = channels // width
    # each chunk's outputs as many accumulators as registers allow, the chunks in parallel
    budget = accumulators * lanes // width
    held = max(d for d in range(1, min(vectors, budget) + 1) if vectors % d == 0)
    outer, mid, vec = sch.split(spatial[-1], [None, held, width])
    sch.reorder(*spatial[:-1], outer, *reduce, mid, vec)
    write_back = write_back_at(sch, block, outer, consumers)
    for producer in producers:
        parallel_root(sch, producer)
    sch.parallel(outer)
    sch.unroll(mid)  # the chunk's accumulators stay in registers across the reduction
    sch.vectorize(vec)
    init = sch.decompose_reduction(block, reduce[0])
    sch.vectorize(sch.get_loops(init)[-1])
    loops = sch.get_loops(write_back)
    if extent(sch, loops[-1]) % width == 0:
        _, inner = sch.split(loops[-1], [None, width])
        sch.vectorize(inner)
    return sch


def _gathers(sch: Any, block: Any, lanes: int) -> bool:
    """Whether `block` copies from another buffer in a different axis order (a transpose)
    with an innermost output axis too short for whole vectors."""
    from tvm import ir, tirx

    stmt = sch.get(block)
    body = stmt.body
    if not isinstance(body, tirx.stmt.BufferStore) or not isinstance(body.value, ir.TensorLoad):
        return False
    if not all(isinstance(i, (tirx.Var, tirx.IntImm)) for i in body.value.indices):
        # computed indices (a resize, a gather): not a transpose. A nearest resize computes
        # its source index in float32; unrolled, LLVM folds it differently and picks the
        # neighbouring pixel (ONNX's resize_upsample_sizes_nearest cases, off by 2)
        return False
    inner = extent(sch, sch.get_loops(block)[-1])
    last = body.indices[-1]
    moved = not any(last.same_as(i) for i in body.value.indices[-1:])
    return moved and inner % lanes != 0 and inner <= 2 * lanes


def _transposes_computed(sch: Any, block: Any, lanes: int) -> bool:
    """Whether `block` computes each element from a buffer read in another axis order whose
    innermost axis is the block's second-to-last (an image quantized to int8 while NCHW becomes
    NHWC), with a last axis too short for whole vectors but whole vectors along the one before."""
    from tvm import ir, tirx

    stmt = sch.get(block)
    body = stmt.body
    loops = sch.get_loops(block)
    if not isinstance(body, tirx.stmt.BufferStore) or isinstance(body.value, ir.TensorLoad):
        return False
    if len(loops) < 3 or not all(isinstance(i, tirx.Var) for i in body.indices[-2:]):
        return False
    inner, row = extent(sch, loops[-1]), extent(sch, loops[-2])
    if inner % lanes == 0 or inner > 2 * lanes or row % lanes:
        return False
    *_, along, last = body.indices
    sources = [[r.min for r in read.region] for read in stmt.reads if read.region]
    return all(all(isinstance(i, (tirx.Var, tirx.IntImm)) for i in s) for s in sources) and any(
        s[-1].same_as(along) and not s[-1].same_as(last) for s in sources
    )


def _copies(sch: Any, block: Any) -> bool:
    """Whether `block` copies a buffer of its own shape element by element (a padding stage
    that pads nothing)."""
    from tvm import ir, tirx

    stmt = sch.get(block)
    if len(stmt.reads) != 1 or not isinstance(stmt.body, tirx.stmt.BufferStore):
        return False
    shape = [int(d) for d in stmt.writes[0].source.shape]
    return isinstance(stmt.body.value, ir.TensorLoad) and shape == [
        int(d) for d in stmt.reads[0].source.shape
    ]


def _packed_cols(sch: Any, block: Any, channels: int) -> int | None:
    """The block width of weights packed as [channels/cols, KH, KW, I, cols] that `block`
    reads (edgec.relax.pack_weights), or as [channels/cols, K, cols] by a dense layer
    (edgec.relax.pack_dense), or None."""
    reads = sch.get(block).reads
    if sch.get(block).name_hint == pack_dense.DENSE:  # x * packed: the weights read last
        shape = [int(d) for d in reads[-1].source.shape]
        return shape[-1] if len(shape) >= 3 and shape[-3] * shape[-1] == channels else None
    for region in reads:
        shape = [int(d) for d in region.source.shape]
        if len(shape) == 5 and shape[0] * shape[4] == channels:
            return shape[4]
    return None


# Row vectors of a packed dense layer's reduction loaded per loop iteration on NEON
_STEPS_UNROLLED = 4
# Arithmetic operations per element of a write-back beyond which it is computed one vector at
# a time (GELU's: 120 as TVM counts its expression tree; a bias and residual add: 2)
_LONG_EPILOGUE = 16


def _operations(stmt: Any) -> float:
    """Arithmetic operations `stmt` computes once."""
    from tvm.s_tir.analysis import estimate_tir_flops

    return float(estimate_tir_flops(stmt))


def _copy_rows_in_vectors(sch: Any, block: Any, lanes: int) -> None:
    """x[..., M, K] copied as [..., M/rows, K, rows] (pack_dense.ROWS): vectors along K, a
    source row's contiguous axis, each lane stored into its own `rows`-wide group."""
    *outer, k, rows = sch.get_loops(block)
    if extent(sch, k) % lanes:
        parallel_root(sch, block)
        return
    k_out, k_in = sch.split(k, [None, lanes])
    sch.reorder(k_out, rows, k_in)
    sch.parallel(sch.fuse(*outer))
    sch.unroll(rows)
    sch.vectorize(k_in)


def _contraction(lanes: int, accumulators: int, most: int, lane_fma: bool = False) -> Any:
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import ScheduleRule

    @guarded
    class Contraction(ScheduleRule):
        """out[..., m, n] = sum_k a[..., m, k] * b[k, n] shapes: conv2d NHWC/HWIO, matmul."""

        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            try:
                return self.tile(func, lane_fma)
            except Exception:  # the vector row loads do not hold here: schedule without them
                return self.tile(func, False) if lane_fma else None

        def tile(self, func: Any, vector_rows: bool, streams: bool = True) -> Any:
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if infos is None:
                return None
            reductions = [i for i, b in enumerate(infos) if b.is_reduction()]
            if len(reductions) != 1:
                return None
            at = reductions[0]
            main = infos[at].block_rv
            producers = [b.block_rv for b in infos[:at]]  # padding, input transforms
            consumers = [b.block_rv for b in infos[at + 1 :]]  # bias, residual add, activation
            info = normalize_prim_func(sch)[at]
            kinds = "".join(i.kind for i in info.iters)
            if not _static(info) or not kinds.startswith("S") or not kinds.endswith("R"):
                return None
            spatial = [i.loop_rv for i in info.iters if i.kind == "S"]
            reduce = [i.loop_rv for i in info.iters if i.kind == "R"]
            if len(spatial) + len(reduce) != len(kinds) or "RS" in kinds:
                return None
            n_ext = extent(sch, spatial[-1])
            row_ext = extent(sch, spatial[-2]) if len(spatial) > 1 else 1
            # Inputs shared by all output channels (conv2d, matmul) or each channel its own
            # (depthwise: channelwise, no operand is read by every channel).
            shared = _rows_operand(sch, main)
            # A grouped conv2d with packed weights (edgec.relax.pack_weights, x86) reads its
            # input through the group of the output channel: a convolution's tile all the same,
            # its vectors within one group, so each input is one broadcast per row. A tile
            # spans its group's channels (all 16 of RegNetX's on AVX-512), so like a depthwise
            # window it reads each input about once: rows first, the border tested in the
            # loads (RegNetX-400MF's 32-channel stride-2 layer at 112x112: 0.58 -> 0.30 ms
            # with both, 1 thread).
            grouped = sch.get(main).name_hint == pack_weights.GROUPED
            channelwise = shared is None and not grouped
            cols = _packed_cols(sch, main, n_ext)  # the tile the weights were packed for
            dense = sch.get(main).name_hint == pack_dense.DENSE
            if streams and _streams_weights(sch, main, spatial, shared):
                try:
                    gemv = _gemv(
                        sch, main, spatial, reduce, producers, consumers, lanes, accumulators
                    )
                except Exception:  # steps aside: the register tile below, on a fresh schedule
                    return self.tile(func, vector_rows, streams=False)
                if gemv is not None:
                    return gemv
            if channelwise:  # depthwise: the window's input loads need registers too
                tile_shape = register_tile(n_ext, row_ext, lanes, accumulators, True)
                if tile_shape is None and n_ext % HALF_VECTOR == 0:
                    # channels no whole vector divides, too many to take whole (ShuffleNetV2's
                    # 58 on NEON): 2-lane vectors, not the plain loop nest (scalar, div/mod
                    # per tap: 10.7 instructions per MAC on rpi4, 17M of the model's 83M)
                    tile_shape = register_tile(
                        n_ext, row_ext, lanes, accumulators, True, cols=HALF_VECTOR
                    )
            else:
                tile_shape = contraction_tile(n_ext, row_ext, lanes, accumulators, most, cols)
            if tile_shape is None:
                return None
            rows, cols = tile_shape
            n_out, n_in = sch.split(spatial[-1], [None, cols])
            if len(spatial) > 1:
                # Rows split from the innermost row axis alone (not from all of them fused),
                # so the row index stays affine in the unrolled row: input regions per tile
                # are exact (no div/mod by the image width).
                m_out, m_in = sch.split(spatial[-2], [None, rows])
                # Output-channel tiles outermost: one tile of weights stays in cache while
                # all rows of the input stream past it. Depthwise tiles share no input and
                # their weights are a few vectors: channel tiles innermost, so consecutive
                # tiles read consecutive memory (MobileNetV2's depthwise kernels -12% on x86).
                # Weights that fit in L1 with room to spare (pointwise layers with few input
                # channels: MobileNetV2's 16 -> 96 at 112x112, 6 KB) stay cached either way:
                # channel tiles innermost there too, so each row's outputs are written once,
                # contiguously, and its inputs read once instead of once per channel tile.
                # Not with rows read as vectors (NEON): there the row buffer's region per tile
                # was no longer exact and became a heap workspace per tile (cnn: 4 -> 68 calls
                # per inference).
                small = not vector_rows and _weight_bytes(sch, main, shared) <= _SMALL_WEIGHTS
                rows_first = channelwise or grouped or small
                tiles = (
                    [*spatial[:-2], m_out, n_out] if rows_first else [n_out, *spatial[:-2], m_out]
                )
                inner = [m_in, n_in]
            else:
                tiles, inner = [n_out], [n_in]
            sch.reorder(*tiles, *reduce, *inner)
            tile = sch.fuse(*tiles) if len(tiles) > 1 else tiles[0]
            rows_operand = shared if vector_rows and len(inner) == 2 else None
            write_back = write_back_at(sch, main, tile, consumers)
            if rows_operand is not None and extent(sch, reduce[-1]) % lanes == 0:
                # NEON multiplies by one lane of a register: load `lanes` consecutive inputs
                # of each row with one vector load and use each lane once per reduction step,
                # instead of one broadcast load per row per step.
                steps = extent(sch, reduce[-1]) // lanes
                if dense and steps % _STEPS_UNROLLED == 0:
                    # A dense layer's packed weights are one stream: `_STEPS_UNROLLED` row
                    # vectors per iteration, so its counter, compare, branch and pointer bumps
                    # come once per 4 x 64 FMLA instead of once per 64 (rpi4 transformer's
                    # dense layers, 4 x 4-vector tile: 1.25 -> 1.20 instructions per FMLA).
                    # Not a matmul of two activations: its [K, N] rows are N * 4 bytes apart,
                    # 16 of them beyond `ldp q`'s +-1008-byte offsets (attention x V: 8 ldp
                    # per 64 FMLA became 14.5 ldr + 2.7 ldp, 5.33M -> 5.49M)
                    k_out, k_step, k_in = sch.split(reduce[-1], [None, _STEPS_UNROLLED, lanes])
                    reduce = [*reduce[:-1], k_out, k_step, k_in]
                    sch.unroll(k_step)
                else:
                    k_step, k_in = sch.split(reduce[-1], [None, lanes])
                    reduce = [*reduce[:-1], k_step, k_in]
                sch.unroll(k_in)
                cache = sch.cache_read(main, rows_operand, "global")
                sch.compute_at(cache, k_step)
                cache_loops = sch.get_loops(cache)
                sch.vectorize(cache_loops[-1])
                sch.unroll(cache_loops[-2])
            if channelwise and len(inner) == 2 and extent(sch, reduce[-1]) <= 7:
                # The window's columns unrolled beside the rows: row i at column j reads the
                # input row i + 1 reads at column j - 1, so each input vector loads once.
                sch.unroll(reduce[-1])
            for block in producers:
                if sch.get(block).name_hint == pack_dense.ROWS:
                    _copy_rows_in_vectors(sch, block, lanes)
                    continue
                if channelwise or grouped or _copies(sch, block):
                    # A depthwise window reads each padded input about once: test the border
                    # in the loads instead of writing a padded copy first (x86: MobileNetV2's
                    # depthwise kernels 1.75 -> 0.82 ms; rpi4 113.4M -> 112.3M instructions).
                    # Convolutions read each input once per channel tile: they keep the copy
                    # (ResNet-18 kernels +8% with the test in the loads), unless it pads
                    # nothing (TOPI's 1x1 conv2d copies its whole input: MobileNetV2's 32 -> 16
                    # layer at 112x112 spent half its time in that scalar copy).
                    try:
                        sch.compute_inline(block)
                        continue
                    except Exception:  # not inlinable here: computed as its own pass
                        pass
                parallel_root(sch, block)
            sch.parallel(tile)
            if len(inner) == 2:
                sch.unroll(inner[0])
            sch.vectorize(inner[-1])
            init = sch.decompose_reduction(main, reduce[0])
            sch.vectorize(sch.get_loops(init)[-1])
            wb_loops = sch.get_loops(write_back)  # now also computes the inlined epilogue
            if extent(sch, wb_loops[-1]) % lanes == 0:
                if lane_fma and dense and _operations(sch.get(write_back).body) > _LONG_EPILOGUE:
                    # A long epilogue (GELU: erf's polynomial) a vector at a time on NEON: 16
                    # wide, its 4 registers per value spilled the constants to the stack (rpi4
                    # transformer FFN write-back 5.1M -> 4.9M); bias and residual adds keep it
                    sch.vectorize(sch.split(wb_loops[-1], [None, lanes])[1])
                else:
                    sch.vectorize(wb_loops[-1])
            return sch

    return Contraction()


def _int8_moves(sch: Any, block: Any) -> bool:
    """Whether `block` writes int8 values read at another last-axis index (a concat, a channel
    gather): an elementwise block keeps its flat vectors, whose index stays affine."""
    from tvm_ffi import structural_equal  # (tvm.ir has no structural_equal in 0.27)

    stmt = sch.get(block)
    write = stmt.writes[0]
    if str(write.source.dtype) != "int8":
        return False
    last = write.region[-1].min
    return any(not structural_equal(r.region[-1].min, last) for r in stmt.reads)


def _output_blocks(sch: Any, infos: list[Any]) -> list[Any]:
    """The blocks of `infos` that write one of the kernel's outputs (a buffer it does not
    allocate itself)."""
    inner = list(sch.get(sch.get_sblock("root")).alloc_buffers)
    return [
        info.block_rv
        for info in infos
        if not any(w.source.same_as(b) for w in sch.get(info.block_rv).writes for b in inner)
    ]


def _outputs_in_vectors(sch: Any, outputs: list[Any], infos: list[Any], lanes: int) -> Any:
    """A kernel with several outputs (a reshape split in three: the transformer's q, k and v):
    the intermediate stages inlined into each output, each output's rows in parallel and whole
    vectors along its last axis. Left unscheduled, the 3 x 32K-element split took 0.3-0.5 ms
    as scalar loops with a division and modulo per element (x86, 1 thread)."""
    for info in infos:
        if not any(info.block_rv.same_as(o) for o in outputs):
            sch.compute_inline(info.block_rv)
    for block in outputs:
        loops = sch.get_loops(block)
        if len(loops) > 1 and extent(sch, loops[-1]) % lanes == 0:
            sch.parallel(sch.fuse(*loops[:-1]))
            sch.vectorize(sch.split(loops[-1], [None, lanes])[1])
        elif loops:
            sch.parallel(sch.fuse(*loops))
    return sch


def _injective(lanes: int) -> Any:
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import ScheduleRule

    @guarded
    class Injective(ScheduleRule):
        """Elementwise, broadcast, transpose, pad, pooling windows: parallel and vectorized."""

        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if infos is None or any(b.is_reduction() for b in infos):
                return None
            *rest, last = infos
            outputs = _output_blocks(sch, rest)
            if outputs:
                return _outputs_in_vectors(sch, [*outputs, last.block_rv], rest, lanes)
            for block in rest:
                sch.compute_inline(block.block_rv)
            loops = sch.get_loops(last.block_rv)
            if not loops:
                return sch
            if len(loops) > 1 and _gathers(sch, last.block_rv, lanes):
                # A transpose whose innermost output axis is short and ragged (NCHW -> NHWC of
                # a 3-channel image): vectors over the fused axis load through a division and
                # modulo per lane (MobileNetV2's input transpose 0.33 ms, 1 thread). Rows in
                # parallel, each row's few elements as plain loads and stores instead.
                rows = sch.fuse(*loops[:-1])
                sch.parallel(rows)
                sch.unroll(loops[-1])
                return sch
            if _transposes_computed(sch, last.block_rv, lanes):
                # Vectors along the source's contiguous axis, the short last axis unrolled:
                # contiguous loads, each lane stored on its own. Over the fused flat index,
                # every lane's address took a division and modulo (MobileNetV2's int8 input
                # quantize + NHWC transpose: 26 instructions per element on rpi4, 4.0M).
                *outer, along, last_loop = loops
                sch.parallel(sch.fuse(*outer))
                along_out, along_in = sch.split(along, [None, lanes])
                sch.reorder(along_out, last_loop, along_in)
                sch.unroll(last_loop)
                sch.vectorize(along_in)
                return sch
            innermost = extent(sch, loops[-1])
            if len(loops) > 1 and innermost % lanes and _int8_moves(sch, last.block_rv):
                # int8 channels no fp32 vector divides (ShuffleNetV2's 116, 232 on AVX-512's 16
                # lanes): narrower vectors along the last axis, not a div/mod per lane of a
                # flat index (x86 int8 gathers and concats)
                narrow = next((n for n in (8, 4) if n < lanes and innermost % n == 0), None)
                if narrow is not None:
                    sch.parallel(sch.fuse(*loops[:-1]))
                    sch.vectorize(sch.split(loops[-1], [None, narrow])[1])
                    return sch
            if len(loops) > 1 and innermost % lanes == 0:
                # Vectors along the last axis alone (NHWC channels: concats, channel gathers):
                # each lane's index stays affine in the loops, no div/mod of a flat index.
                sch.parallel(sch.fuse(*loops[:-1]))
                sch.vectorize(sch.split(loops[-1], [None, lanes])[1])
                return sch
            fused = sch.fuse(*loops)
            size = extent(sch, fused)
            if size % lanes == 0 and size >= 4 * lanes:
                outer, vector = sch.split(fused, [None, lanes])
                sch.parallel(outer)
                sch.vectorize(vector)
            elif size >= 1024:
                sch.parallel(fused)
            return sch

    return Injective()


def _row_reductions(lanes: int) -> Any:
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import ScheduleRule

    @guarded
    class RowReductions(ScheduleRule):
        """Softmax, layer norm: rows in parallel, each row's sums and maxima over its innermost
        axis as `lanes` partial results in one vector register, folded into one at the end
        (rfactor). dlight's CPU rule leaves them a scalar chain of dependent adds: the
        transformer's layer norms took 1.0 ms of 13.3 on x86 (1 thread), its softmax 0.7."""

        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if infos is None or len(infos) < 2 or not infos[-1].is_injective():
                return None
            kinds = [info.dom_kind() for info in infos]
            if not all(k.startswith("S") for k in kinds) or not _static(infos[-1]):
                return None
            rows = min(len(k) - len(k.lstrip("S")) for k in kinds)  # the axes of one row
            reductions = [info for info in infos if not info.is_injective()]
            if not reductions:
                return None
            for info in reductions:
                # one reduced axis, innermost, in whole vectors (else dlight's rule takes it)
                if (
                    info.dom_kind() != "S" * rows + "R"
                    or extent(sch, info.iters[-1].loop_rv) % lanes
                ):
                    return None
            partial = {}
            for info in reductions:
                _, lane = sch.split(info.iters[-1].loop_rv, [None, lanes])
                axis = len(sch.get(info.block_rv).writes[0].source.shape)
                partial[sch.get(info.block_rv).name_hint] = sch.rfactor(lane, factor_axis=axis)
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
            loops = sch.get_loops(blocks[-1])
            row = sch.fuse(*loops[:rows]) if rows > 1 else loops[0]
            sch.parallel(row)
            for block in reversed(blocks[:-1]):
                sch.compute_at(block, row, preserve_unit_loops=True)
            lanes_of = {sch.get(b).name_hint for b in partial.values()}
            for block in blocks:
                loops = sch.get_loops(block)
                name = sch.get(block).name_hint
                if name in lanes_of:
                    # the partial results' loops come as (lane, row, reduced): the lane inside
                    lane, reduced = loops[1], loops[-1]
                    sch.reorder(reduced, lane)
                    sch.vectorize(lane)
                    init = sch.decompose_reduction(block, reduced)
                    sch.vectorize(sch.get_loops(init)[-1])
                elif name not in partial and extent(sch, loops[-1]) % lanes == 0 < len(loops) - 1:
                    sch.vectorize(sch.split(loops[-1], [None, lanes])[1])  # not a final fold
            return sch

    return RowReductions()
