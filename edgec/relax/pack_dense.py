"""float32 dense layers (matmul by constant weights) with weights packed in register-tile order.

A Linear layer imports as `matmul(x[..., M, K], w[K, N])`. Its register tile of `cols` output
columns reads, per reduction step, one `cols`-wide slice of a row `N` floats long: consecutive
steps are `N * 4` bytes apart (3 KB for the transformer's 256 -> 768 projection), so on AArch64
each weight vector is its own `ldr q` (an `ldp` pair reaches +-1008 bytes), and on x86 the
steps of a 32 KB tile of weights fall into a few L1 sets. Packed to [N/cols, K, cols], a tile's
weights are one contiguous stream over the whole reduction, as pack_weights does for conv2d and
as ONNX Runtime's MLAS packs its GEMM's B panels (rpi4: vector loads per FMLA 0.29 -> 0.2).

On NEON (multiply by one lane of a register) two more layouts, both copied inside the kernel:
a dense layer whose rows 8 divide reads its activations as [M/8, K, 8] and tiles 8 rows x 2
vectors (ROW_BLOCK, _blocks_rows), and a matmul of two activations (attention's QKᵀ and AV)
reads its right operand as [..., N/cols, K, cols] (activation_cols). rpi4 transformer, armprof:
dense layers 1.25 -> 1.17 instructions per FMLA, QKᵀ 1.38 -> 1.24, AV 1.27 -> 1.22.

A matmul this does not take (weights not constant or not 2-D, another dtype, dynamic shapes,
one output row, where the matrix-vector rule streams the weights instead, or no tile width
narrower than N that divides it) keeps its usual legalization.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from edgec.relax.tiling import budget, contraction_tile
from edgec.targets import TargetProfile

DENSE = "matmul_packed"
ROWS = "matmul_rows"  # activations packed as [M/ROW_BLOCK, K, ROW_BLOCK] on NEON
ROW_BLOCK = 8
ROWS_MIN_COLUMNS = 128  # N / 4 FMLA x 0.06 loads saved > 1.2 instructions of copy: N > 80
PACK = "matmul_pack"  # an activation operand packed in the kernel (activation_cols)


def legalize_map(
    profile: TargetProfile, inner: dict[str, Callable[[Any, Any], Any]]
) -> dict[str, Callable[[Any, Any], Any]]:
    """LegalizeOps overrides: float32 dense layers with packed weights on CPUs; every other
    matmul goes to `inner`'s legalization (int8 dense layers), else TVM's own."""
    from tvm import ir

    caps = profile.capabilities
    if caps.device != "cpu":
        return inner
    lanes, accumulators, most = budget(caps.vector_bits, caps.vector_registers)
    otherwise = inner.get("relax.matmul") or ir.Op.get("relax.matmul").get_attr("FLegalize")

    lane_fma = caps.isa == "aarch64"  # the rule's row vectors (cpu_schedules._contraction)

    def legalize(bb: Any, call: Any) -> Any:
        cols = packed_cols(call, lanes, accumulators, most)
        if cols is not None:
            if lane_fma and _blocks_rows(call, lanes):
                return _legalize(bb, call, 2 * lanes, ROW_BLOCK)
            return _legalize(bb, call, cols)
        cols = activation_cols(call, lanes, accumulators, most) if lane_fma else None
        if cols is not None:
            return bb.call_te(_batched_te, *call.args, cols, primfunc_name_hint="matmul")
        return otherwise(bb, call)

    return {**inner, "relax.matmul": legalize}


def packed_cols(call: Any, lanes: int, accumulators: int, most: int) -> int | None:
    """The width of the register tile `call`'s weights are packed for, or None if they stay
    as they are."""
    from tvm import ir, tirx

    x, w = call.args
    if not isinstance(w, ir.expr.Constant) or len(w.ty.shape) != 2 or len(x.ty.shape) < 2:
        return None
    if not all(isinstance(d, tirx.IntImm) for d in (*x.ty.shape, *call.ty.shape)):
        return None
    if not str(x.ty.dtype) == str(w.ty.dtype) == str(call.ty.dtype) == "float32":
        return None
    *batch, rows, _ = (int(d) for d in x.ty.shape)
    if math.prod(batch) * rows == 1:
        return None  # a matrix-vector product: the rule streams the weights row by row
    channels = int(w.ty.shape[1])
    tile = contraction_tile(channels, rows, lanes, accumulators, most)
    if tile is None or tile[1] == channels:  # one block: [K, N] is already that order
        return None
    return tile[1]


def _blocks_rows(call: Any, lanes: int) -> bool:
    """Whether a packed dense layer on NEON copies its activations as [M/8, K, 8] and tiles 8
    rows x 2 vectors: per 4 reduction steps its tile then loads the 8 rows' inputs with 4
    `ldp q` (as 8 row vectors, `ldr q` each, they left room for 4 rows only) and 8 weight
    vectors, 8 loads per 64 FMLA instead of 12. The copy, about 1.2 instructions per input,
    pays where the N / 4 FMLA per input save more: N >= ROWS_MIN_COLUMNS."""
    rows, channels = int(call.args[0].ty.shape[-2]), int(call.ty.shape[-1])
    return rows % ROW_BLOCK == 0 and channels % (2 * lanes) == 0 and channels >= ROWS_MIN_COLUMNS


def activation_cols(call: Any, lanes: int, accumulators: int, most: int) -> int | None:
    """The register tile width for which a float32 matmul of two activations with the same
    batch dimensions (attention's QKᵀ and AV) packs its right operand in the kernel, or None.
    In [K, N] its rows are N * 4 bytes apart (512 for QKᵀ at sequence 128): the tile's weight
    vectors past the first two steps are beyond `ldp q`'s reach, one `ldr q` each."""
    from tvm import tirx

    x, w = call.args
    shapes = [x.ty.shape, w.ty.shape, call.ty.shape]
    if any(s is None or not all(isinstance(d, tirx.IntImm) for d in s) for s in shapes):
        return None
    if not str(x.ty.dtype) == str(w.ty.dtype) == str(call.ty.dtype) == "float32":
        return None
    x_shape, w_shape = ([int(d) for d in s] for s in shapes[:2])
    if len(x_shape) != len(w_shape) or len(w_shape) < 3 or x_shape[:-2] != w_shape[:-2]:
        return None
    rows, channels = x_shape[-2], w_shape[-1]
    if rows == 1:
        return None
    tile = contraction_tile(channels, rows, lanes, accumulators, most)
    if tile is None or tile[1] == channels or tile[1] < lanes:
        return None
    return tile[1]


def _batched_te(x: Any, w: Any, cols: int) -> Any:
    """x[..., M, K] times w[..., K, N], w copied as [..., N/cols, K, cols] first (a pass over
    w per call: 1 / (rows of x) of the products' loads)."""
    from tvm import te

    *batch, k, n = (int(d) for d in w.shape)
    packed = te.compute(
        (*batch, n // cols, k, cols),
        lambda *i: w[(*i[:-3], i[-2], i[-3] * cols + i[-1])],
        name=PACK,
    )
    rows = int(x.shape[-2])
    rk = te.reduce_axis((0, k), "rk")
    return te.compute(
        (*batch, rows, n),
        lambda *i: te.sum(
            x[(*i[:-1], rk)] * packed[(*i[:-2], i[-1] // cols, rk, i[-1] % cols)], axis=rk
        ),
        name=DENSE,
    )


def _legalize(bb: Any, call: Any, cols: int, row_block: int = 0) -> Any:
    import numpy as np
    from tvm import relax

    w = call.args[1].value.numpy()  # [K, N]
    k, n = w.shape
    packed = np.ascontiguousarray(w.reshape(k, n // cols, cols).transpose(1, 0, 2))
    return bb.call_te(
        _dense_te,
        call.args[0],
        relax.const(packed, "float32"),
        row_block,
        primfunc_name_hint="matmul",
    )


def _dense_te(x: Any, packed: Any, row_block: int = 0) -> Any:
    """x[..., M, K] times weights packed as [N/cols, K, cols]; with `row_block`, x copied as
    [..., M/row_block, K, row_block] first."""
    from tvm import te

    *batch, rows, k = (int(d) for d in x.shape)
    blocks, _, cols = (int(d) for d in packed.shape)
    rk = te.reduce_axis((0, k), "rk")
    if not row_block:
        return te.compute(
            (*batch, rows, blocks * cols),
            lambda *i: te.sum(x[(*i[:-1], rk)] * packed[i[-1] // cols, rk, i[-1] % cols], axis=rk),
            name=DENSE,
        )
    r = row_block
    xp = te.compute(
        (*batch, rows // r, k, r), lambda *i: x[(*i[:-3], i[-3] * r + i[-1], i[-2])], name=ROWS
    )
    return te.compute(
        (*batch, rows, blocks * cols),
        lambda *i: te.sum(
            xp[(*i[:-2], i[-2] // r, rk, i[-2] % r)] * packed[i[-1] // cols, rk, i[-1] % cols],
            axis=rk,
        ),
        name=DENSE,
    )
