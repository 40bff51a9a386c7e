"""edgec's default CPU schedules: dlight-style rules that make an untuned build fast.

TVM 0.27's CPU pipeline leaves every kernel as a naive loop nest. These rules cover what
dominates CNNs and transformers: contractions (conv2d in NHWC/HWIO, dense, batched matmul)
get register-blocked, vectorized over output channels and parallel over tiles; elementwise
and layout kernels get parallel + vectorized; row reductions use dlight's CPU rule.
Each rule returns None (leaving the kernel to the next rule) when its pattern does not match
or its schedule cannot be applied, so a rule can cost speed but never correctness.
"""

from __future__ import annotations

from typing import Any

from edgec.relax import int8_dot as int8_dot_rules
from edgec.relax.tiling import extent, guarded, parallel_root, write_back_at
from edgec.targets import Int8Dot

# Accumulators (rows x vectors) a register tile holds, by the number of SIMD registers: the
# rest hold the weight vectors and a broadcast. With 32 (AArch64 NEON) a 6-row x 4-vector tile
# reads 10 vectors per 24 FMLAs; rpi4 instructions per inference, cnn 4.02M -> 2.95M and
# MobileNetV2 198.9M -> 153.4M (armcount) against 12 accumulators x at most 2 vectors.
# x86 keeps 12: on AVX-512's 32 zmm, 24 accumulators cut ResNet-18's kernel time 15% but cost
# MobileNetV2 up to 10% (bench/kernels.py): the tile should be chosen per layer first.
ACCUMULATORS = {16: 12, 32: 24}


def rules(vector_bits: int, int8_dot: Int8Dot = "none", vector_registers: int = 16) -> list[Any]:
    """The rule list for a CPU with `vector_registers` SIMD registers of `vector_bits` each
    (fp32 lanes = bits/32) and the int8 dot-product instruction `int8_dot`."""
    from tvm.s_tir import dlight as dl

    lanes = max(1, vector_bits // 32)
    # int8_dot's rule only matches the kernels its legalization made (on targets that have the
    # instruction); the contraction rule would schedule them too, without the instruction.
    rule = int8_dot_rules.schedule_rule(int8_dot)
    accumulators = ACCUMULATORS[32 if vector_registers >= 32 else 16]
    contraction = _contraction(lanes, accumulators)
    return [rule, contraction, _injective(lanes), dl.cpu.Reduction()]


def _static(info: Any) -> bool:
    from tvm import tirx

    return all(isinstance(i.dom, (int, tirx.IntImm)) for i in info.iters)


def _contraction(lanes: int, accumulators: int) -> Any:
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import ScheduleRule

    @guarded
    class Contraction(ScheduleRule):
        """out[..., m, n] = sum_k a[..., m, k] * b[k, n] shapes: conv2d NHWC/HWIO, matmul."""

        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
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
            # Pick (rows, vector columns) with the most accumulators that fit in registers;
            # rows divide the row extent so a tile never straddles two rows of the output
            # (the write-back region would otherwise cover elements other tiles own).
            best: tuple[int, int] | None = None
            # Narrower vectors (half or quarter registers) when the channel count is not a
            # multiple of the full width: MobileNetV2's 24-channel layers on AVX-512, a
            # 1000-class head.
            widest = (4 * lanes,) if accumulators > 12 else ()  # 4 vectors when registers allow
            widths = [w for w in (*widest, 2 * lanes, lanes, lanes // 2, lanes // 4) if w >= 4]
            for cols in widths:
                if n_ext % cols:
                    continue
                budget = accumulators // max(1, cols // lanes)
                rows = max(f for f in range(1, budget + 1) if row_ext % f == 0)
                if best is None or rows * cols > best[0] * best[1]:
                    best = (rows, cols)
            if best is None:
                if n_ext > 4 * lanes:
                    return None
                best = (1, n_ext)
            rows, cols = best
            n_out, n_in = sch.split(spatial[-1], [None, cols])
            if len(spatial) > 1:
                m = sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0]
                m_out, m_in = sch.split(m, [None, rows])
                # Output-channel tiles outermost: one tile of weights stays in cache while
                # all rows of the input stream past it.
                tiles, inner = [n_out, m_out], [m_in, n_in]
            else:
                tiles, inner = [n_out], [n_in]
            sch.reorder(*tiles, *reduce, *inner)
            tile = sch.fuse(*tiles) if len(tiles) > 1 else tiles[0]
            write_back = write_back_at(sch, main, tile, consumers)
            for block in producers:
                parallel_root(sch, block)
            sch.parallel(tile)
            if len(inner) == 2:
                sch.unroll(inner[0])
            sch.vectorize(inner[-1])
            init = sch.decompose_reduction(main, reduce[0])
            sch.vectorize(sch.get_loops(init)[-1])
            wb_loops = sch.get_loops(write_back)  # now also computes the inlined epilogue
            if extent(sch, wb_loops[-1]) % lanes == 0:
                sch.vectorize(wb_loops[-1])
            return sch

    return Contraction()


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
            for block in rest:
                sch.compute_inline(block.block_rv)
            loops = sch.get_loops(last.block_rv)
            if not loops:
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
