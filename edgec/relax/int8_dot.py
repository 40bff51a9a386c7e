"""int8 convolutions on the CPU's int8 dot-product instruction: x86 AVX-512 VNNI `vpdpbusd`,
Arm `sdot` (Armv8.2-A dot product: Cortex-A76, Raspberry Pi 5), and on Armv8.0-A (Cortex-A72,
Raspberry Pi 4), which has none, the classic sequence `smull` + `smlal2` + `sadalp`.

Plain legalization turns `conv2d(int8, int8, out_dtype=int32)` into int32 multiplies (x86
`vpmulld`): slower than float32. On a target whose `int8_dot` capability names an instruction,
a conv2d with int8 constant weights legalizes instead to a kernel built for it. Each adds
groups of 4 int8 products into int32 lanes (16 lanes for vpdpbusd, 4 for sdot and smull):

- weights are packed once, at build time, to [K/L, KH, KW, C4/4, L, 4] (L output channels x
  4 input channels: one vector per instruction; C padded to C4, a multiple of 4; with fewer
  than 4 channels, the window's taps and channels are gathered into one axis instead);
- vpdpbusd multiplies unsigned by signed bytes: activations enter as x + 128 (fused into the
  padding pass, where padding is 128) and -128 * sum(w) per output channel is added to the
  sums, which cancels it; sdot is signed x signed and needs neither;
- Armv8.0 (smull) is signed too: smull multiplies 8 int8 pairs into int16, smlal2 adds 8 more
  products to them, sadalp adds neighbouring int16 into the 4 int32 lanes; its weights are
  packed as [..., 2, L, 2] (channels 0-1 of each lane, then 2-3: one 16-byte vector whose
  halves smull and smlal2 take), the activations spread to match by one `tbl`; two products
  fit int16 only if no weight is -128 (edgec quantizes weights to [-127, 127]; others stay generic);
- on Armv8.0, a layer with 32 or more input channels (a multiple of 16) takes the depth-lane
  kernel instead (`_legalize_depth_lanes`): 16 channels of a pixel and of an output channel
  are one vector each, as they lie in memory, so no activation is spread per output-channel
  group; each output keeps 4 int32 lanes of partial depth, summed by `addp` after the reduction;
- depthwise layers on Arm (smull, sdot) take neither: their activations are widened to int16
  once, in the padding pass, and each tap is `smlal`/`smlal2` on 8 channels (`_legalize_depthwise`,
  `_schedule_depthwise`);
- grouped (not depthwise) layers on Arm with 16 input channels per group or a multiple
  (RegNetX's) take the depth-lane kernel per group (`_legalize_grouped`, `_schedule_grouped`):
  a tile's output channels lie in one group, whose channels are the reduction; on sdot (rpi5)
  one `sdot` adds each 16 products;
- dense layers (`matmul` of int8 activations [..., M, K] by constant weights [K, N]) take the
  same instructions on weights packed to [N/L, K/4, L, 4] (`_legalize_matmul`, `_dense_te`,
  `_schedule_dense`): K padded with zero weights, N with zero columns cut in the write-back;
- so the result equals the int8 x int8 sum exactly (integer arithmetic: bit for bit the numpy
  reference's, and the generic build's on any other target).

The schedule rule below register-blocks rows x (L-lane vectors) of accumulators and tensorizes
the innermost L x 4 block to the instruction; the requantization epilogue is inlined after it.
Kernels this module makes carry block names starting with `int8dot_`, which is how the rule
finds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from edgec.relax import tiling
from edgec.targets import Int8Dot, TargetProfile

GROUP = 4  # int8 products summed into each int32 lane, by both instructions


@dataclass(frozen=True)
class DotInstruction:
    lanes: int  # int32 accumulators one instruction updates
    unsigned: bool  # takes activations as uint8 (x + 128)
    llvm: str  # the LLVM intrinsic
    # Accumulator vectors a register tile may hold (both ISAs have 32 vector registers; the
    # rest hold weights and broadcast activations), and how many of them side by side.
    accumulators: int
    max_vectors: int
    # Armv8.0 has no dot product: 4 int8 products per lane take smull + smlal (int8 -> int16,
    # two products per int16) then sadalp (int16 pairs added into int32), so each vector of
    # weights holds its 4 channels as two halves of channel pairs: [2, L, 2], not [L, 4].
    pairs: bool = False


# Widest first: a layer takes the widest whose lanes divide its output channels.
INSTRUCTIONS: dict[Int8Dot, tuple[DotInstruction, ...]] = {
    "vnni": (
        # 3x3 64->64 at 16x16 on 2 cores: 8 rows x 2 vectors 243 GMAC/s, 8 x 4 186, 16 x 2 208
        DotInstruction(16, True, "llvm.x86.avx512.vpdpbusd.512", 16, 2),
        # the 256-bit form (AVX512-VL) for 8, 24, 40... channels, as pruning leaves them
        DotInstruction(8, True, "llvm.x86.avx512.vpdpbusd.256", 16, 2),
    ),
    # 4 vectors (16 channels) x 4 rows; not timed: no Armv8.2 board here (qemu checks results)
    "sdot": (DotInstruction(4, False, "llvm.aarch64.neon.sdot.v4i32.v16i8", 16, 4),),
    # smull's products are int16: two summed overflow only for (-128) x (-128) twice, so the
    # weights must lie in [-127, 127] (edgec's symmetric quantization gives them that range)
    "smull": (DotInstruction(4, False, "llvm.aarch64.neon.smull.v8i16", 16, 2, pairs=True),),
}
PAD = "int8dot_pad"
CONV = "int8dot_conv"
DW_PAD = "int8dw_pad"
DW_CONV = "int8dw_conv"
DENSE = "int8dot_dense"
CONV_CUT = "int8dot_cut"  # a conv's padded output channels cut (not a CONV prefix: one per kernel)
MARK = "edgec_int8_dot"  # annotation on a kernel's block once it is tensorized


def tensorized(func: Any) -> bool:
    """Whether a scheduled PrimFunc runs its contraction on the dot-product instruction."""
    return MARK in func.script()


def legalize_map(
    profile: TargetProfile, fallbacks: dict[str, str] | None = None
) -> dict[str, Callable[[Any, Any], Any]]:
    """LegalizeOps overrides for `profile`: empty unless it has an int8 dot-product. A conv2d
    the packed kernel cannot take gets TVM's own legalization (said in `fallbacks`)."""
    if profile.capabilities.int8_dot == "none":
        return {}
    family = INSTRUCTIONS[profile.capabilities.int8_dot]
    arm = profile.capabilities.int8_dot in ("smull", "sdot")
    for dot in family:  # before any tuning record that names them is read or replayed
        _register(dot)

    def legalize(bb: Any, call: Any) -> Any:
        from tvm import ir

        try:
            if arm and _depthwise(call):
                return _legalize_depthwise(bb, call)
            if arm and _grouped(call):
                return _legalize_grouped(bb, call, family[0].pairs)
            return _legalize_conv2d(bb, call, family)
        except Exception as e:
            if fallbacks is not None:
                fallbacks[f"int8_dot: conv2d {call.args[0].ty}"] = (
                    f"generic int32 kernel: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                )
            return ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)

    def legalize_matmul(bb: Any, call: Any) -> Any:
        from tvm import ir

        try:
            return _legalize_matmul(bb, call, family)
        except Exception as e:
            if fallbacks is not None:
                fallbacks[f"int8_dot: matmul {call.args[0].ty}"] = (
                    f"generic int32 kernel: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                )
            return ir.Op.get("relax.matmul").get_attr("FLegalize")(bb, call)

    return {
        "relax.nn.conv2d": legalize,
        "relax.matmul": legalize_matmul,
        "relax.multiply": _legalize_multiply,
    }


def _legalize_multiply(bb: Any, call: Any) -> Any:
    """An int64 product by constants that fit int32 (the requantization's multipliers) as
    int64(x) * int64(int32 constant): LLVM then sees both factors sign-extended from 32 bits
    and multiplies with one 32 x 32 -> 64-bit vector instruction (NEON smull, x86 vpmuldq)
    instead of a 64-bit multiply, which NEON lacks (it went lane by lane through general
    registers). Same values; any other multiply keeps TVM's legalization."""
    import numpy as np
    from tvm import ir, relax, topi

    x, m = call.args
    if (
        isinstance(m, ir.expr.Constant)
        and str(x.ty.dtype) == str(m.ty.dtype) == "int64"
        and np.abs(m.value.numpy()).max(initial=0) < 2**31
    ):
        narrow = relax.const(m.value.numpy().astype(np.int32), "int32")
        return bb.call_te(
            lambda a, b: topi.multiply(a, topi.cast(b, "int64")),
            x,
            narrow,
            primfunc_name_hint="multiply_int32_constant",
        )
    return ir.Op.get("relax.multiply").get_attr("FLegalize")(bb, call)


def _legalize_conv2d(bb: Any, call: Any, family: tuple[DotInstruction, ...]) -> Any:
    import numpy as np
    from tvm import ir, relax

    dot = next((d for d in family if _packable(call, d.lanes)), None)
    channels = None  # the real output channels, where the packed weights add zero ones
    if (dot is None and _packable(call, 1)) or _one_vector(call, dot, family):
        dot, call, channels = _padded_outputs(call, family)
    if dot is None:
        return ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)
    w = call.args[1].value.numpy()  # HWIO
    if dot.pairs and w.min() < -127:
        raise ValueError("a weight is -128: two smull products would overflow int16")
    if dot.pairs and channels is None and _depth_lanes_tile(call) is not None:
        return _legalize_depth_lanes(bb, call)
    kh, kw, c, k = w.shape
    # Fewer than 4 channels (an image's first layer): the window's taps and channels gather
    # into one axis instead, so 3x3x1 is 12 products per output, not 3x3x4.
    gather = (kh, kw, c) if c % GROUP else None
    flat = w.reshape(1, 1, kh * kw * c, k) if gather else w
    groups = -(-flat.shape[2] // GROUP)
    padded = np.zeros((*flat.shape[:2], groups * GROUP, k), np.int8)
    padded[:, :, : flat.shape[2]] = flat
    packed = padded.reshape(*flat.shape[:2], groups, GROUP, k // dot.lanes, dot.lanes)
    if dot.pairs:  # [K/L, KH, KW, C4/4, 2, L, 2]: channels (0, 1) of each lane, then (2, 3)
        packed = packed.reshape(*flat.shape[:2], groups, 2, 2, k // dot.lanes, dot.lanes)
        packed = np.ascontiguousarray(packed.transpose(5, 0, 1, 2, 3, 6, 4))
    else:
        packed = np.ascontiguousarray(packed.transpose(4, 0, 1, 2, 5, 3))
    # sum((x + 128) * w) - 128 * sum(w) == sum(x * w)
    start = -128 * w.astype(np.int32).sum(axis=(0, 1, 2)) if dot.unsigned else None
    attrs = call.attrs
    width = None if gather or not dot.pairs else _padded_width(call, dot)
    return bb.call_te(
        _conv_te,
        call.args[0],
        relax.const(packed, "int8"),
        None if start is None else relax.const(start.astype(np.int32), "int32"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        gather,
        channels,
        width,
        primfunc_name_hint="conv2d_int8dot",
    )


WIDE_ROWS = 4  # rows per tile below which a width with no fitting divisor is padded


def _padded_width(call: Any, dot: DotInstruction) -> int | None:
    """The output width to compute for `call` on channel pairs where the real one has no
    divisor of at least WIDE_ROWS among the rows a tile holds (SqueezeNet's 13: 1 row of 2
    vectors, each weight load used once): padded to whole tiles of the rows that waste least
    (13 -> 14, 7 rows), at most 1/8 more columns; the extra columns are cut in the write-back.
    None: the width stays."""
    x, w = call.args
    pads, strides = call.attrs.padding, call.attrs.strides
    width = (int(x.ty.shape[2]) + int(pads[1]) + int(pads[3]) - int(w.ty.shape[1])) // int(
        strides[1]
    ) + 1
    most = dot.accumulators // dot.max_vectors
    if max(r for r in range(1, most + 1) if width % r == 0) >= WIDE_ROWS:
        return None
    padded = min(-(-width // r) * r for r in range(WIDE_ROWS, most + 1))
    return padded if (padded - width) * 8 <= width else None


def _one_vector(call: Any, dot: DotInstruction | None, family: tuple[DotInstruction, ...]) -> bool:
    """Whether `dot`'s tiles would hold one vector of outputs (their count of lane blocks has no
    divisor up to max_vectors: 116 = 29 x 4) where padding to the widest instruction's whole
    tiles adds at most 1/16 more channels (116 -> 120; rpi4 ShuffleNetV2 int8 73.1M -> 71.4M
    instructions). A layer the depth-lane kernel takes keeps it."""
    if dot is None or (dot.pairs and _depth_lanes_tile(call) is not None):
        return False
    k = int(call.args[1].ty.shape[3])
    blocks = k // dot.lanes
    if any(blocks % v == 0 for v in range(2, dot.max_vectors + 1)):
        return False
    step = family[0].lanes * family[0].max_vectors
    return (-(-k // step) * step - k) * 16 <= k


def _padded_outputs(call: Any, family: tuple[DotInstruction, ...]) -> tuple[Any, Any, int]:
    """(instruction, `call` on weights with zero output channels added, the real channels) for
    a conv2d whose output channels no lane count divides (ShuffleNetV2's 58 and 116): padded
    to whole tiles of the widest instruction's vectors, the extra channels cut in the
    write-back. TVM's generic int32 kernel took 2.8 instructions per MAC on rpi4 there."""
    import numpy as np
    from tvm import relax

    dot = family[0]
    w = call.args[1].value.numpy()  # HWIO
    k = w.shape[3]
    step = dot.lanes * dot.max_vectors
    padded = np.zeros((*w.shape[:3], -(-k // step) * step), np.int8)
    padded[..., :k] = w
    wide = relax.Call(call.op, [call.args[0], relax.const(padded, "int8")], call.attrs)
    return dot, wide, k


# Armv8.0 convolutions with the depth in the int32 lanes (as ruy's and gemmlowp's kernels do):
# 16 input channels of one output pixel and of one output channel are one vector each, loaded
# as they lie in memory; `smull` + `smlal2` + `sadalp` add their 16 products into 4 int32 lanes
# that each hold part of the depth, and the 4 lanes are added (`addp`) once per output, after
# the whole reduction. Per 16 channels a tile of R pixels x V output channels loads R + V
# vectors for 3RV multiplies: no activation spread (`tbl`) per pixel and group, as the
# output-channel-lane kernel needs.
DEPTH = 16  # int8 channels per vector
LANE_CONV = "int8lane_conv"
LANE_SUM = "int8lane_sum"
LANE_PAD = "int8lane_pad"
LANE_GATHER = "int8lane_gather"
STRIDE = "edgec_stride_x"  # a depth-lane conv block's stride along the width
ROWS = "edgec_tile_rows"  # a grouped conv block's tile rows, as _grouped_tile chose them


def _depth_lanes_tile(call: Any) -> tuple[int, int] | None:
    """(pixels, output channels) of the depth-lane kernel's register tile for `call`, or None
    where that kernel loses to the channel-lane one (one pixel per tile) or cannot take the
    layer (output channels not a multiple of 4)."""
    plan = _depth_lanes_plan(call)
    return None if plan is None else plan[:2]


def _depth_lanes_plan(call: Any) -> tuple[int, int, int] | None:
    """(pixels, output channels, output width computed) of the depth-lane kernel for `call`
    (`_depth_lanes_tile`). A width whose tiles would hold one pixel (SqueezeNet's 13) is
    computed padded, by at most 1/8, to one that has a tile (13 -> 14: 7 x 2; the classifier's
    512 -> 1000 1x1 and the 3x3 expand layers had taken the channel-lane kernel on 7 x 2 tiles
    of 14 columns), the extra columns cut in the write-back."""
    attrs = call.attrs
    x, w = call.args
    kh, kw, c, k = (int(d) for d in w.ty.shape)
    width = int(x.ty.shape[2])
    ow = (width + int(attrs.padding[1]) + int(attrs.padding[3]) - kw) // int(attrs.strides[1]) + 1
    # Each tile also sums its lanes (3 addp per 4 outputs) and requantizes 4 outputs per row,
    # not 8: with one step of 16 channels (16 in: MobileNetV2's 16 -> 96 at 112 x 112, 8.3M
    # -> 9.1M instructions), 24 padded to 32, or the 3-channel first layer gathered to 32
    # (4.5M -> 4.7M), that costs more than the spread it saves.
    if _gathers_depth(kh, kw, c):
        tile = lanes_tile(k, ow)
        return None if tile is None else (*tile, ow)
    if c % DEPTH or c * kh * kw < 2 * DEPTH:
        return None
    for width in range(ow, ow + ow // 8 + 1):
        tile = lanes_tile(k, width, kw, int(attrs.strides[1]))
        if tile is not None:
            return (*tile, width)
    return None


# An image's first layer (3 channels) with a window of at least this many taps x channels
# gathers them into one depth axis padded to a multiple of 16 (ResNet-18's 7 x 7 stem: 147 of
# 160 lanes hold data); MobileNetV2's 3 x 3 (27 of 32, two steps) stays on channel pairs.
GATHER_DEPTH = 64


def _gathers_depth(kh: int, kw: int, c: int) -> bool:
    """Whether a conv2d with a kh x kw x c window takes the depth-lane kernel on its window
    gathered into one axis (im2col): few channels, a wide window."""
    return c % GROUP != 0 and kh * kw * c >= GATHER_DEPTH


# Added to a shared window's cost per load for tiles of 2 vectors: their lane sums serve 2
# outputs, not 4, and they requantize 2 lanes at a time. Measured on ResNet-18 int8 (rpi4,
# per 3 x 3 layer): 4 x 4 beat 7 x 2 at 28 and 56 wide (0.1-1.1M instructions) and 8 x 2 at 56
# (0.8-1.2M); 7 x 2 beat 2 x 8 at 14 wide (1.1-1.3M) and at 14 wide stride 2 (0.56M).
TWO_VECTORS = 0.05


def lanes_tile(channels: int, width: int, taps: int = 1, stride: int = 1) -> tuple[int, int] | None:
    """The tile (pixels R dividing `width`, output channels V, 2 or a multiple of 4 dividing
    `channels`) with the fewest loads per multiply, (R + V) / RV, that fits NEON's 32
    registers: RV accumulators, V weight vectors, an activation and a product. A window
    `taps` wide has its taps inside each step of 16 channels: the R pixels' taps read
    (R - 1) * `stride` + taps input columns, loaded once for all taps, held with the RV
    accumulators and a tap's V weight vectors."""
    best: tuple[float, int, int] | None = None
    for rows in range(1, 9):
        if width % rows:
            continue
        # input columns a tile loads per step: its own pixels', or a shared window's
        window = (rows - 1) * stride + taps if taps > 1 else rows
        for vectors in (2, 4, 8, 12, 16):  # 2: 7 x 7 layers, as 7 x 2 (7 x 4 spills)
            if channels % vectors or rows * vectors > 24:
                continue
            if taps == 1 and vectors * (rows + 1) + 2 > 30:
                continue
            if taps > 1 and rows * vectors + vectors + window > 32:
                continue
            cost = (window / taps + vectors) / (rows * vectors)
            if taps > 1 and vectors == 2:
                cost += TWO_VECTORS
            if best is None or cost < best[0]:
                best = (cost, rows, vectors)
    # (R + V + 3RV) / 16RV instructions per MAC against the channel-lane kernel's ~0.26
    return None if best is None or best[0] > 0.9 else (best[1], best[2])


def _legalize_depth_lanes(bb: Any, call: Any) -> Any:
    """A conv2d on the depth-lane kernel: weights packed to [K/V, KH, KW, C/16, V, 16], the
    order the tile reads them (V vectors of 16 channels, one per output channel); a window
    gathered into one axis (`_gathers_depth`) as [K/V, 1, 1, D/16, V, 16], zeros past it."""
    import numpy as np
    from tvm import relax

    w = call.args[1].value.numpy()  # HWIO
    kh, kw, c, k = w.shape
    _, vectors, width = _depth_lanes_plan(call)
    gather = (kh, kw, c) if _gathers_depth(kh, kw, c) else None
    if gather:
        depth = -(-kh * kw * c // DEPTH) * DEPTH
        flat = np.zeros((1, 1, depth, k), np.int8)
        flat[0, 0, : kh * kw * c] = w.reshape(kh * kw * c, k)
        w = flat
        kh = kw = 1
        c = depth
    packed = w.reshape(kh, kw, c // DEPTH, DEPTH, k // vectors, vectors)
    packed = np.ascontiguousarray(packed.transpose(4, 0, 1, 2, 5, 3))
    attrs = call.attrs
    return bb.call_te(
        _depth_lanes_te,
        call.args[0],
        relax.const(packed, "int8"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        gather,
        width,
        primfunc_name_hint="conv2d_int8lanes",
    )


def _depth_lanes_te(
    x: Any,
    packed: Any,
    strides: list[int],
    pads: list[int],
    gather: tuple[int, int, int] | None = None,
    width: int | None = None,
) -> Any:
    """Partial sums with the depth in 4 lanes per output (lane l: channels 2l, 2l + 1, 2l + 8
    and 2l + 9 of every 16, as smull + smlal2 + sadalp add them), then their sum; over
    `width` output columns if given (zero input columns added), cut to the real ones."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in x.shape)
    k_blocks, kh, kw, d_blocks, vectors = (int(d) for d in packed.shape[:5])
    top, left, bottom, right = pads
    sh, sw = strides
    taps = gather[:2] if gather else (kh, kw)
    oh = (h + top + bottom - taps[0]) // sh + 1
    ow = (w + left + right - taps[1]) // sw + 1
    real_ow, ow = ow, width or ow
    extra = (ow - real_ow) * sw  # zero columns the padded output width reads

    def padded(b: Any, y: Any, z: Any, ch: Any) -> Any:
        inside = tirx.all(y >= top, y < h + top, z >= left, z < w + left)
        return tirx.if_then_else(inside, x[b, y - top, z - left, ch], tirx.const(0, "int8"))

    if any(pads) or extra:
        shape = (n, h + top + bottom, w + left + right + extra, c)
        source = te.compute(shape, padded, name=LANE_PAD)
    else:  # a 1x1 layer reads its input where it lies: no copy
        source = x
    if gather:
        # the window's taps x channels of each output pixel, read from the padded image with
        # no bounds checks, so each tap row's kw x c bytes are contiguous reads
        _, gw, gc = gather
        size, window = math.prod(gather), source

        def tap(b: Any, y: Any, z: Any, r: Any) -> Any:
            value = window[b, y * sh + r // (gw * gc), z * sw + r // gc % gw, r % gc]
            return tirx.if_then_else(r < size, value, tirx.const(0, "int8"))

        source = te.compute((n, oh, ow, d_blocks * DEPTH), tap, name=LANE_GATHER)
        sh = sw = 1
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rc = te.reduce_axis((0, d_blocks), "rc")
    rh = te.reduce_axis((0, 2), "rh")
    re = te.reduce_axis((0, 2), "re")

    def part(b: Any, y: Any, z: Any, o: Any, lane: Any) -> Any:
        ch = rh * 8 + lane * 2 + re
        xs = source[b, y * sh + ry, z * sw + rx, rc * DEPTH + ch]
        ws = packed[o // vectors, ry, rx, rc, o % vectors, ch]
        return te.sum(xs.astype("int32") * ws.astype("int32"), axis=[ry, rx, rc, rh, re])

    shape = (n, oh, ow, k_blocks * vectors)
    # the stride along the width, for the schedule's tile (`lanes_tile`: a window's taps
    # share the columns they load)
    parts = te.compute((*shape, 4), part, name=LANE_CONV, attrs={STRIDE: sw})
    # a reduction over the lanes, not four reads at constant lanes: reverse_compute_at cannot
    # place a block whose read index is a constant ("TensorRegion pattern match failed")
    lane = te.reduce_axis((0, 4), "lane")
    sums = te.compute(
        shape, lambda b, y, z, o: te.sum(parts[b, y, z, o, lane], axis=lane), name=LANE_SUM
    )
    if real_ow == ow:
        return sums
    return te.compute((n, oh, real_ow, shape[-1]), lambda *i: sums(*i), name=CONV_CUT)


@cache
def _register_depth_lanes() -> tuple[str, str, str]:
    """The instructions of the depth-lane kernel: 16 int8 products added into 4 int32 lanes
    (smull of the low halves, smlal2 of the high, sadalp), and 4 outputs' lanes summed (two
    levels of addp), or 2 outputs' (the same, the low half kept)."""
    from tvm import s_tir
    from tvm.script import tirx as T

    smull, saddlp = "llvm.aarch64.neon.smull.v8i16", "llvm.aarch64.neon.saddlp.v4i32.v8i16"
    addp = "llvm.aarch64.neon.addp.v4i32"
    low, high = list(range(8)), list(range(8, 16))

    @T.prim_func(s_tir=True)
    def dot_description(
        a: T.Buffer((DEPTH,), "int8", offset_factor=1),
        b: T.Buffer((DEPTH,), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:4], a[0:DEPTH], b[0:DEPTH])
            T.writes(c[0:4])
            for i, h, e in T.grid(4, 2, 2):
                with T.sblock("update"):
                    vi, vh, ve = T.axis.remap("SRR", [i, h, e])
                    c[vi] = c[vi] + T.cast(a[vh * 8 + vi * 2 + ve], "int32") * T.cast(
                        b[vh * 8 + vi * 2 + ve], "int32"
                    )

    @T.prim_func(s_tir=True)
    def dot_instruction(
        a: T.Buffer((DEPTH,), "int8", offset_factor=1),
        b: T.Buffer((DEPTH,), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:4], a[0:DEPTH], b[0:DEPTH])
            T.writes(c[0:4])
            # (operands inline: a TVMScript local would be a buffer, allocated per tile)
            c[T.ramp(T.int32(0), 1, 4)] = c.vload([0], dtype="int32x4") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(saddlp),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(smull),
                    T.Shuffle([a.vload([0], dtype="int8x16")], low),
                    T.Shuffle([b.vload([0], dtype="int8x16")], low),
                    dtype="int16x8",
                )
                + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(smull),
                    T.Shuffle([a.vload([0], dtype="int8x16")], high),
                    T.Shuffle([b.vload([0], dtype="int8x16")], high),
                    dtype="int16x8",
                ),
                dtype="int32x4",
            )

    @T.prim_func(s_tir=True)
    def sum_description(
        p: T.Buffer((4, 4), "int32", offset_factor=1),
        s: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(s[0:4], p[0:4, 0:4])
            T.writes(s[0:4])
            for i, j in T.grid(4, 4):
                with T.sblock("sum"):
                    vi, vj = T.axis.remap("SR", [i, j])
                    s[vi] = s[vi] + p[vi, vj]

    def pair(p: Any, i: int) -> Any:
        return T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(addp),
            p.vload([i, 0], dtype="int32x4"),
            p.vload([i + 1, 0], dtype="int32x4"),
            dtype="int32x4",
        )

    @T.prim_func(s_tir=True)
    def sum_instruction(
        p: T.Buffer((4, 4), "int32", offset_factor=1),
        s: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(s[0:4], p[0:4, 0:4])
            T.writes(s[0:4])
            # (s is the reduction's zero: LLVM folds the add away)
            s[T.ramp(T.int32(0), 1, 4)] = s.vload([0], dtype="int32x4") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(addp), pair(p, 0), pair(p, 2), dtype="int32x4"
            )

    @T.prim_func(s_tir=True)
    def sum2_description(
        p: T.Buffer((2, 4), "int32", offset_factor=1),
        s: T.Buffer((2,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(s[0:2], p[0:2, 0:4])
            T.writes(s[0:2])
            for i, j in T.grid(2, 4):
                with T.sblock("sum"):
                    vi, vj = T.axis.remap("SR", [i, j])
                    s[vi] = s[vi] + p[vi, vj]

    @T.prim_func(s_tir=True)
    def sum2_instruction(
        p: T.Buffer((2, 4), "int32", offset_factor=1),
        s: T.Buffer((2,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(s[0:2], p[0:2, 0:4])
            T.writes(s[0:2])
            s[T.ramp(T.int32(0), 1, 2)] = s.vload([0], dtype="int32x2") + T.Shuffle(
                [
                    T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id(addp), pair(p, 0), pair(p, 0), dtype="int32x4"
                    )
                ],
                [0, 1],
            )

    names = ("edgec_smull_depth_lanes", "edgec_addp_lane_sums", "edgec_addp_lane_sums2")
    s_tir.TensorIntrin.register(names[0], dot_description, dot_instruction)
    s_tir.TensorIntrin.register(names[1], sum_description, sum_instruction)
    s_tir.TensorIntrin.register(names[2], sum2_description, sum2_instruction)
    return names


def _schedule_depth_lanes(sch: Any, blocks: list[Any], at: int) -> Any:
    """Tiles of R pixels x V output channels, each output's 4 depth lanes in one register
    across the whole reduction; after it, the lanes summed by addp into a local row of
    outputs, which the write-back requantizes."""
    conv = blocks[at]
    pads, lane_sum, consumers = blocks[:at], blocks[at + 1], blocks[at + 2 :]
    b, y, z, o, lane, ry, rx, rc, rh, re = sch.get_loops(conv)
    weights = [r.source.shape for r in sch.get(conv).reads if len(r.region) == 6]
    (vectors,) = {int(shape[4]) for shape in weights}
    width, taps = int(sch.get(z).extent), int(sch.get(rx).extent)
    stride = int(sch.get(conv).annotations.get(STRIDE, 1))
    rows = lanes_tile(int(sch.get(o).extent), width, taps, stride)
    if rows is None or rows[1] != vectors:
        return None
    rows = rows[0]
    o_tile, o_vec = sch.split(o, [None, vectors])
    z_tile, z_row = sch.split(z, [None, rows])
    steps = int(sch.get(rc).extent)
    rc, rc_pair = sch.split(rc, [None, next(u for u in (8, 4, 2, 1) if steps % u == 0)])
    if taps > 1:  # the taps inside the step: neighbouring pixels share the columns loaded
        sch.reorder(o_tile, b, y, z_tile, ry, rc, rc_pair, rx, z_row, o_vec, lane, rh, re)
        sch.unroll(rx)
    else:
        sch.reorder(o_tile, b, y, z_tile, ry, rx, rc, rc_pair, z_row, o_vec, lane, rh, re)
    tile = sch.fuse(o_tile, b, y, z_tile)
    sch.reverse_compute_at(lane_sum, tile)
    write_back = tiling.write_back_at(sch, lane_sum, tile, consumers)
    for pad in pads:
        loops = sch.get_loops(pad)
        if sch.get(pad).name_hint == LANE_GATHER:
            sch.unroll(loops[-1])  # constant tap offsets (vectorized: div/mod per lane)
        else:
            sch.vectorize(loops[-1])
        sch.parallel(sch.fuse(*loops[:2]))
    sch.parallel(tile)
    init = sch.decompose_reduction(conv, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    for loop in sch.get_loops(init)[-3:-1]:
        sch.unroll(loop)
    sch.unroll(rc_pair)
    sch.unroll(z_row)
    sch.unroll(o_vec)
    dot, add4, add2 = _register_depth_lanes()
    sch.tensorize(lane, dot)
    *_, s_row, s_o, _ = sch.get_loops(lane_sum)
    group = min(4, vectors)  # outputs one lane sum writes
    s_vec, s_group = sch.split(s_o, [None, group])
    s_init = sch.decompose_reduction(lane_sum, s_group)
    sch.vectorize(sch.get_loops(s_init)[-1])
    sch.unroll(s_row)
    sch.unroll(s_vec)
    sch.tensorize(s_group, add4 if group == 4 else add2)
    sch.vectorize(sch.get_loops(write_back)[-1])
    sch.annotate(write_back, MARK, 1)
    return sch


def _depthwise(call: Any) -> bool:
    """Whether `call` is a depthwise conv2d the int16 kernel computes: int8 NHWC activations of
    static shape, int8 HWIO constant weights (one per channel), int32 out, no dilation."""
    from tvm import ir, tirx

    attrs = call.attrs
    x, w = call.args
    return (
        isinstance(w, ir.expr.Constant)
        and str(x.ty.dtype) == "int8"
        and str(w.ty.dtype) == "int8"
        and str(attrs.out_dtype) == "int32"
        and attrs.data_layout == "NHWC"
        and attrs.kernel_layout == "HWIO"
        and attrs.out_layout == "NHWC"
        and all(isinstance(d, tirx.IntImm) for d in x.ty.shape)
        and int(w.ty.shape[2]) == 1
        and int(attrs.groups) == int(x.ty.shape[3]) == int(w.ty.shape[3])
        and all(int(d) == 1 for d in attrs.dilation)
    )


def _legalize_depthwise(bb: Any, call: Any) -> Any:
    """A depthwise int8 conv2d on Arm with its activations widened to int16 once, in the padding
    pass, and int16 weights: each product is then one `smlal` (int16 x int16 + int32, 4 lanes)
    on vectors of channels, not a widening of both operands per tap. Exact: integer sums.

    Channels not a multiple of 8 (ShuffleNetV2's 58, 116) run over channels padded to one: zero
    weights and zero activations for the extra channels (added in the padding pass, which
    widens to int16 anyway), cut in the write-back. Unpadded, such a layer's schedule stepped
    aside to a scalar loop (12-14 instructions per MAC on rpi4)."""
    import numpy as np
    from tvm import relax

    w = call.args[1].value.numpy()  # [KH, KW, 1, C]
    channels = w.shape[3]
    weights = np.zeros((*w.shape[:2], -(-channels // DW_VECTOR) * DW_VECTOR), np.int16)
    weights[..., :channels] = w[:, :, 0, :]
    attrs = call.attrs
    return bb.call_te(
        _depthwise_te,
        call.args[0],
        relax.const(weights, "int16"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        primfunc_name_hint="conv2d_depthwise_int16",
    )


def _depthwise_te(x: Any, w: Any, strides: list[int], pads: list[int]) -> Any:
    """The depthwise sum over `w`'s channels: the input's own ones, then zeros where `w` has
    more, cut back to the input's channels."""
    from tvm import te, tirx

    n, h, width, c = (int(d) for d in x.shape)
    kh, kw, wide = (int(d) for d in w.shape)
    top, left, bottom, right = pads
    sh, sw = strides
    oh = (h + top + bottom - kh) // sh + 1
    ow = (width + left + right - kw) // sw + 1

    def padded(b: Any, y: Any, z: Any, ch: Any) -> Any:
        if wide == c:
            inside = tirx.all(y >= top, y < h + top, z >= left, z < width + left)
            value = x[b, y - top, z - left, ch].astype("int16")
        else:
            inside = tirx.all(y >= top, y < h + top, z >= left, z < width + left, ch < c)
            value = x[b, y - top, z - left, tirx.min(ch, c - 1)].astype("int16")
        return tirx.if_then_else(inside, value, tirx.const(0, "int16"))

    xp = te.compute((n, h + top + bottom, width + left + right, wide), padded, name=DW_PAD)
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    total = te.compute(
        (n, oh, ow, wide),
        lambda b, y, z, ch: te.sum(
            xp[b, y * sh + ry, z * sw + rx, ch].astype("int32") * w[ry, rx, ch].astype("int32"),
            axis=[ry, rx],
        ),
        name=DW_CONV,
    )
    if wide == c:
        return total
    return te.compute((n, oh, ow, c), lambda *i: total(*i), name=CONV_CUT)


def _packable(call: Any, lanes: int) -> bool:
    """Whether `call` is a conv2d the packed kernel computes: int8 NHWC activations, int8 HWIO
    constant weights, int32 out, no groups or dilation, output channels a multiple of lanes."""
    from tvm import ir, tirx

    attrs = call.attrs
    x, w = call.args
    return (
        isinstance(w, ir.expr.Constant)
        and str(x.ty.dtype) == "int8"
        and str(w.ty.dtype) == "int8"
        and str(attrs.out_dtype) == "int32"
        and attrs.data_layout == "NHWC"
        and attrs.kernel_layout == "HWIO"
        and attrs.out_layout == "NHWC"
        and int(attrs.groups) == 1
        and all(int(d) == 1 for d in attrs.dilation)
        and all(isinstance(d, tirx.IntImm) for d in x.ty.shape)
        and int(w.ty.shape[3]) % lanes == 0
    )


def _conv_te(
    x: Any,
    packed: Any,
    start: Any | None,
    strides: list[int],
    pads: list[int],
    gather: tuple[int, int, int] | None,
    channels: int | None = None,
    width: int | None = None,
) -> Any:
    """The activations padded or gathered into windows (as uint8 x + 128 when `start` is
    given), the dot products, plus `start`, cut to the first `channels` if given and to the
    first real output columns if `width` (the columns computed) is given."""
    from tvm import te, tirx

    n, h, w, _ = (int(d) for d in x.shape)
    k_blocks, kh, kw, c_groups = (int(d) for d in packed.shape[:4])
    top, left, bottom, right = pads
    sh, sw = strides
    taps = gather[:2] if gather else (kh, kw)
    oh = (h + top + bottom - taps[0]) // sh + 1
    ow = (w + left + right - taps[1]) // sw + 1
    real_ow, ow = ow, width or ow
    zero = tirx.const(0, "int8") if start is None else tirx.const(128, "uint8")  # int8 zero

    def shifted(b: Any, y: Any, z: Any, ch: Any, *inside: Any) -> Any:
        inside = (y >= top, y < h + top, z >= left, z < w + left, *inside)
        value = x[b, y - top, z - left, ch]
        if start is not None:
            value = (value.astype("int32") + 128).astype("uint8")
        return tirx.if_then_else(tirx.all(*inside), value, zero)

    if gather:
        _, gw, gc = gather
        size = math.prod(gather)  # the taps x channels that hold data; the rest meet zeros
        xu = te.compute(
            (n, oh, ow, c_groups * GROUP),
            lambda b, y, z, r: shifted(
                b, y * sh + r // (gw * gc), z * sw + r // gc % gw, r % gc, r < size
            ),
            name=PAD,
        )
        sh = sw = 1
    else:
        extra = (ow - real_ow) * sw  # zero columns the padded output width reads
        xu = te.compute(
            (n, h + top + bottom, w + left + right + extra, c_groups * GROUP), shifted, name=PAD
        )
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    if len(packed.shape) == 7:  # channel pairs (smull): the group's 4 channels as 2 x 2
        lanes = int(packed.shape[5])
        rc = te.reduce_axis((0, c_groups), "rc")
        rh = te.reduce_axis((0, 2), "rh")
        re = te.reduce_axis((0, 2), "re")
        axes = [ry, rx, rc, rh, re]

        def product(b: Any, y: Any, z: Any, o: Any) -> Any:
            xs = xu[b, y * sh + ry, z * sw + rx, rc * GROUP + rh * 2 + re]
            ws = packed[o // lanes, ry, rx, rc, rh, o % lanes, re]
            return xs.astype("int32") * ws.astype("int32")

    else:
        lanes = int(packed.shape[4])
        rc = te.reduce_axis((0, c_groups * GROUP), "rc")
        axes = [ry, rx, rc]

        def product(b: Any, y: Any, z: Any, o: Any) -> Any:
            xs = xu[b, y * sh + ry, z * sw + rx, rc]
            ws = packed[o // lanes, ry, rx, rc // GROUP, o % lanes, rc % GROUP]
            return xs.astype("int32") * ws.astype("int32")

    shape = (n, oh, ow, k_blocks * lanes)
    total = te.compute(shape, lambda b, y, z, o: te.sum(product(b, y, z, o), axis=axes), name=CONV)
    if start is not None:
        # (te.sum's init= is dropped by create_prim_func in TVM 0.27: the start is its own
        # block, inlined into the write-back like the rest of the epilogue)
        sums = total
        total = te.compute(shape, lambda *i: sums(*i) + start[i[-1]], name="int8dot_start")
    channels = channels or shape[-1]
    if channels == shape[-1] and real_ow == ow:
        return total
    return te.compute((n, oh, real_ow, channels), lambda *i: total(*i), name=CONV_CUT)


@cache
def _register(dot: DotInstruction) -> str:
    """The L x 4 int8 dot product, described in TIR and implemented with the LLVM intrinsic
    (whose byte operands are <4L x i8> in LLVM 20)."""
    from tvm import s_tir
    from tvm.script import tirx as T

    if dot.pairs:
        return _register_pairs(dot)
    lanes = dot.lanes
    a_type = "uint8" if dot.unsigned else "int8"
    acc, four_bytes = f"int32x{lanes}", f"{a_type}x{GROUP}"
    operand = f"int8x{lanes * GROUP}"

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((GROUP,), a_type, offset_factor=1),
        b: T.Buffer((lanes, GROUP), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:GROUP], b[0:lanes, 0:GROUP])
            T.writes(c[0:lanes])
            for i, j in T.grid(lanes, GROUP):
                with T.sblock("update"):
                    vi, vj = T.axis.remap("SR", [i, j])
                    c[vi] = c[vi] + T.cast(a[vj], "int32") * T.cast(b[vi, vj], "int32")

    @T.prim_func(s_tir=True)
    def instruction(
        a: T.Buffer((GROUP,), a_type, offset_factor=1),
        b: T.Buffer((lanes, GROUP), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:GROUP], b[0:lanes, 0:GROUP])
            T.writes(c[0:lanes])
            # (the 4 bytes inline, not in a local variable: TVMScript makes that a buffer, and
            # the kernel allocated it from the workspace pool in every tile)
            c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(dot.llvm),
                c.vload([0], dtype=acc),
                T.reinterpret(
                    T.broadcast(T.reinterpret(a.vload([0], four_bytes), dtype="int32"), lanes),
                    dtype=operand,
                ),
                b.vload([0, 0], dtype=operand),
                dtype=acc,
            )

    name = "edgec_" + dot.llvm.replace(".", "_")
    s_tir.TensorIntrin.register(name, description, instruction)
    return name


def _register_pairs(dot: DotInstruction) -> str:
    """The L x 4 int8 dot product on Armv8.0 NEON: smull multiplies channels (0, 1) of every
    lane, smlal2 adds channels (2, 3) to them (int16: weights in [-127, 127] keep it exact),
    sadalp adds each pair of int16 into its int32 lane."""
    from tvm import s_tir
    from tvm.script import tirx as T

    lanes = dot.lanes

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((GROUP,), "int8", offset_factor=1),
        b: T.Buffer((2, lanes, 2), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:GROUP], b[0:2, 0:lanes, 0:2])
            T.writes(c[0:lanes])
            for i, h, e in T.grid(lanes, 2, 2):
                with T.sblock("update"):
                    vi, vh, ve = T.axis.remap("SRR", [i, h, e])
                    c[vi] = c[vi] + T.cast(a[vh * 2 + ve], "int32") * T.cast(b[vh, vi, ve], "int32")

    smull, saddlp = dot.llvm, f"llvm.aarch64.neon.saddlp.v{lanes}i32.v{2 * lanes}i16"
    pair, acc, full = f"int16x{2 * lanes}", f"int32x{lanes}", f"int8x{4 * lanes}"
    low, high = list(range(2 * lanes)), list(range(2 * lanes, 4 * lanes))
    # tbl indices: activation bytes (0, 1) for each lane, then (2, 3)
    indices = [2 * h + e for h in range(2) for _ in range(lanes) for e in range(2)]

    def spread(a: Any) -> Any:
        table = T.Shuffle([a.vload([0], "int8x4"), T.Broadcast(T.int8(0), 12)], list(range(16)))
        index = T.Shuffle([T.Ramp(T.int8(0), T.int8(1), 16)], indices)
        return T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.tbl1"), table, index, dtype=full
        )

    @T.prim_func(s_tir=True)
    def instruction(
        a: T.Buffer((GROUP,), "int8", offset_factor=1),
        b: T.Buffer((2, lanes, 2), "int8", offset_factor=1),
        c: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:GROUP], b[0:2, 0:lanes, 0:2])
            T.writes(c[0:lanes])
            # The 4 activation bytes, one 32-bit load into lane 0 of a zeroed vector (`ldr s`),
            # spread by one `tbl`: channels (0, 1) repeated per lane in the low 8 bytes, (2, 3)
            # in the high 8 (two `dup` by element before: one instruction more per row and
            # group, 121.2M -> 111.7M on MobileNetV2). The group's 16 weight bytes load as one
            # vector: LLVM makes `smull` of the low halves, `smlal2` of the high halves, and
            # `sadalp` of add(saddlp). (Two groups per call, sharing an 8-byte load, lost: LLVM
            # reassociated c + saddlp(x0) + saddlp(x1) to c + (saddlp(x0) + saddlp(x1)), a
            # saddlp and an add more, 113.3M. No local variables: TVMScript makes each a
            # buffer, which became two workspace allocations per tile.)
            c[T.ramp(T.int32(0), 1, lanes)] = c.vload([0], dtype=acc) + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(saddlp),
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(smull),
                    T.Shuffle([spread(a)], low),
                    T.Shuffle([b.vload([0, 0, 0], dtype=full)], low),
                    dtype=pair,
                )
                + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(smull),
                    T.Shuffle([spread(a)], high),
                    T.Shuffle([b.vload([0, 0, 0], dtype=full)], high),
                    dtype=pair,
                ),
                dtype=acc,
            )

    name = "edgec_" + dot.llvm.replace(".", "_") + "_sadalp"
    s_tir.TensorIntrin.register(name, description, instruction)
    return name


# A pointwise layer on channel pairs (16 or 24 input channels) spreads each row's activations
# (a load and a `tbl`) for 4 output vectors instead of 2: 4 x 4 tiles, not 8 x 2. Only over a
# short reduction (at most this many groups of 4 channels, unrolled whole): ShuffleNetV2's
# 58- to 232-channel layers at 28, 14 and 7 pixels wide lost rows to it (14 wide: 2 x 4
# instead of 7 x 2; rpi4 int8 71.4M -> 83.7M instructions). Nor where padded output channels
# are cut in the write-back: ShuffleNetV2's 24 -> 58 at 56 wide took 6.1M instructions on
# 4 x 4 tiles over 64 channels, 3.6M on 8 x 2.
POINTWISE_PAIR_VECTORS = 4
SHORT_REDUCTION = 8
UNROLLED_PAIRS = 4  # channel groups of 4 up to which a 4 x 4 tile's reduction is unrolled


def schedule_rule(int8_dot: Int8Dot) -> Any:
    """The dlight rule for kernels made by `_legalize_conv2d` (None for every other kernel)."""
    from tvm import s_tir
    from tvm.s_tir.dlight.base import ScheduleRule

    @tiling.guarded  # a kernel with no root block (scatter_elements) goes to the next rule
    class Int8DotConv(ScheduleRule):
        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
            names = [sch.get(b).name_hint for b in blocks]
            if int8_dot == "none":
                return None
            if names.count(DW_CONV) == 1:
                return _schedule_depthwise(sch, blocks, names.index(DW_CONV))
            if names.count(LANE_CONV) == 1:
                return _schedule_depth_lanes(sch, blocks, names.index(LANE_CONV))
            if names.count(GROUP_CONV) == 1:
                return _schedule_grouped(sch, blocks, names.index(GROUP_CONV), int8_dot)
            if names.count(DENSE) == 1:
                return _schedule_dense(sch, blocks, names.index(DENSE), int8_dot)
            convs = [i for i, name in enumerate(names) if name.startswith(CONV)]
            if len(convs) != 1:
                return None
            at = convs[0]
            conv = blocks[at]
            # the instruction the weights were packed for: their [K/L, KH, KW, C/4, L, 4] shape
            # ([K/L, KH, KW, C/4, 2, L, 2] in channel pairs)
            weights = [r.source.shape for r in sch.get(conv).reads if len(r.region) in (6, 7)]
            (lanes,) = {int(shape[-2]) for shape in weights}
            dot = next(d for d in INSTRUCTIONS[int8_dot] if d.lanes == lanes)
            pads, consumers = blocks[:at], blocks[at + 1 :]
            b, y, ow, k, ry, rx, rc, *pair = sch.get_loops(conv)
            blocks_of_k = int(sch.get(k).extent) // dot.lanes
            widest = dot.max_vectors
            pointwise = int(sch.get(ry).extent) * int(sch.get(rx).extent) == 1
            short = dot.pairs and pointwise and int(sch.get(rc).extent) <= SHORT_REDUCTION
            cut = any(sch.get(c).name_hint == CONV_CUT for c in consumers)
            if short and not cut:
                widest = POINTWISE_PAIR_VECTORS
            vectors = max(v for v in range(1, widest + 1) if blocks_of_k % v == 0)
            width = int(sch.get(ow).extent)
            rows = max(r for r in range(1, dot.accumulators // vectors + 1) if width % r == 0)
            k_tile, k_vec, k_lane = sch.split(k, [None, vectors, dot.lanes])
            rc_out, *rc_in = [rc, *pair] if dot.pairs else sch.split(rc, [None, GROUP])
            ow_tile, ow_row = sch.split(ow, [None, rows])
            sch.reorder(k_tile, b, y, ow_tile, ry, rx, rc_out, ow_row, k_vec, k_lane, *rc_in)
            tile = sch.fuse(k_tile, b, y, ow_tile)
            write_back = tiling.write_back_at(sch, conv, tile, consumers)
            for pad in pads:
                loops = sch.get_loops(pad)
                if int(sch.get(loops[-1]).extent) % 16 == 0:
                    sch.vectorize(loops[-1])
                else:  # a gathered window: constant tap offsets
                    sch.unroll(loops[-1])
                sch.parallel(sch.fuse(*loops[:2]))
            sch.parallel(tile)
            init = sch.decompose_reduction(conv, ry)
            sch.vectorize(sch.get_loops(init)[-1])
            # A short reduction unrolled: no loop, and the first step needs no zeros. On 4 x 4
            # tiles past 4 groups LLVM computes the tile's int16 products ahead of their
            # `sadalp` and spills them (MobileNetV2 rpi4: the 24 -> 144 layers, 6 groups,
            # 7.86M -> 7.38M as a loop; the gathered first layer, 7 groups, 4.42M -> 4.07M;
            # 16 -> 96, 4 groups, stays unrolled: 7.28M, 7.42M as a loop)
            groups = int(sch.get(rc_out).extent)
            if short and (widest != POINTWISE_PAIR_VECTORS or groups <= UNROLLED_PAIRS):
                sch.unroll(rc_out)
            sch.unroll(ow_row)
            sch.unroll(k_vec)
            sch.tensorize(k_lane, _register(dot))
            sch.vectorize(sch.get_loops(write_back)[-1])
            sch.annotate(write_back, MARK, 1)
            return sch

    return Int8DotConv()


DW_VECTOR = 8  # int16 lanes of one NEON register: one smlal + one smlal2 per tap
DW_ROWS = 7  # output columns per tile: 14 accumulators + 9 weight vectors + inputs in 32


def _schedule_depthwise(sch: Any, blocks: list[Any], at: int) -> Any:
    """Tiles of (up to 7 output columns) x (8 channels): 14 int32 accumulators and the 9 int16
    weight vectors of the 3x3 window held in registers, the window and the columns unrolled so
    that neighbouring columns share input loads. Channels not a multiple of 8 step aside (None:
    the contraction rule takes the kernel)."""
    conv = blocks[at]
    pads, consumers = blocks[:at], blocks[at + 1 :]
    b, y, x, ch, ry, rx = sch.get_loops(conv)
    channels, width = (int(sch.get(loop).extent) for loop in (ch, x))
    if channels % DW_VECTOR:
        return None
    rows = max(r for r in range(1, DW_ROWS + 1) if width % r == 0)
    ch_tile, ch_vec = sch.split(ch, [None, DW_VECTOR])
    x_tile, x_row = sch.split(x, [None, rows])
    sch.reorder(b, y, x_tile, ch_tile, ry, rx, x_row, ch_vec)
    # parallel over output rows only: the tile's column and channel blocks stay plain loops
    # (fused, each tile would recover them by division)
    rows_of_image = sch.fuse(b, y)
    write_back = tiling.write_back_at(sch, conv, ch_tile, consumers)
    for pad in pads:
        loops = sch.get_loops(pad)
        vector = sch.split(loops[-1], [None, DW_VECTOR])[1]
        sch.vectorize(vector)
        sch.parallel(sch.fuse(*loops[:2]))
    sch.parallel(rows_of_image)
    sch.unroll(rx)
    sch.unroll(x_row)
    sch.vectorize(ch_vec)
    init = sch.decompose_reduction(conv, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ry)
    sch.vectorize(sch.get_loops(write_back)[-1])
    return sch


# ---- dense and batched matmul: activations [..., M, K] x constant weights [K, N] ----


def _dense_packable(call: Any) -> bool:
    """Whether `call` is a matmul the packed kernel computes: int8 activations of static shape
    [..., M, K], int8 constant weights [K, N], int32 out."""
    from tvm import ir, tirx

    x, w = call.args
    return (
        isinstance(w, ir.expr.Constant)
        and str(x.ty.dtype) == "int8"
        and str(w.ty.dtype) == "int8"
        and str(call.attrs.out_dtype) == "int32"
        and len(w.ty.shape) == 2
        and len(x.ty.shape) >= 2
        and all(isinstance(d, tirx.IntImm) for d in x.ty.shape)
    )


def _legalize_matmul(bb: Any, call: Any, family: tuple[DotInstruction, ...]) -> Any:
    """An int8 matmul by constant weights on the dot-product instruction: the weights packed to
    [N'/L, K'/4, L, 4] ([N'/L, K'/4, 2, L, 2] in channel pairs), K padded with zero weights to a
    multiple of 4 and N with zero columns to a multiple of L (cut in the write-back)."""
    import numpy as np
    from tvm import ir, relax

    if not _dense_packable(call):
        return ir.Op.get("relax.matmul").get_attr("FLegalize")(bb, call)
    w = call.args[1].value.numpy()  # [K, N]
    k, n = w.shape
    # the widest instruction whose lanes divide N; else the widest, on zero columns
    dot = next((d for d in family if n % d.lanes == 0), family[0])
    if dot.pairs and w.min() < -127:
        raise ValueError("a weight is -128: two smull products would overflow int16")
    groups = -(-k // GROUP)
    blocks = -(-n // dot.lanes)
    padded = np.zeros((groups * GROUP, blocks * dot.lanes), np.int8)
    padded[:k, :n] = w
    packed = padded.reshape(groups, GROUP, blocks, dot.lanes)
    if dot.pairs:  # [N/L, K/4, 2, L, 2]: channels (0, 1) of each lane, then (2, 3)
        packed = packed.reshape(groups, 2, 2, blocks, dot.lanes).transpose(3, 0, 1, 4, 2)
    else:  # [N/L, K/4, L, 4]
        packed = packed.transpose(2, 0, 3, 1)
    # sum((x + 128) * w) - 128 * sum(w) == sum(x * w)
    start = -128 * w.astype(np.int32).sum(axis=0) if dot.unsigned else None
    return bb.call_te(
        _dense_te,
        call.args[0],
        relax.const(np.ascontiguousarray(packed), "int8"),
        None if start is None else relax.const(start.astype(np.int32), "int32"),
        n,
        primfunc_name_hint="matmul_int8dot",
    )


def _dense_te(x: Any, packed: Any, start: Any | None, channels: int) -> Any:
    """The activations with K padded to the packed groups (as uint8 x + 128 when `start` is
    given), their dot products with the packed weights, plus `start`, cut to `channels`."""
    from tvm import te, tirx

    *batch, rows, k = (int(d) for d in x.shape)
    blocks, groups = (int(d) for d in packed.shape[:2])

    def shifted(*i: Any) -> Any:
        value = x[(*i[:-1], tirx.min(i[-1], k - 1))]
        if start is not None:
            value = (value.astype("int32") + 128).astype("uint8")
        return value  # the padded K meets zero weights: its value does not matter

    xu = te.compute((*batch, rows, groups * GROUP), shifted, name=PAD)
    if len(packed.shape) == 5:  # channel pairs (smull): the group's 4 channels as 2 x 2
        lanes = int(packed.shape[3])
        rc = te.reduce_axis((0, groups), "rc")
        rh = te.reduce_axis((0, 2), "rh")
        re = te.reduce_axis((0, 2), "re")
        axes = [rc, rh, re]

        def product(i: tuple[Any, ...], o: Any) -> Any:
            xs = xu[(*i, rc * GROUP + rh * 2 + re)]
            ws = packed[o // lanes, rc, rh, o % lanes, re]
            return xs.astype("int32") * ws.astype("int32")

    else:
        lanes = int(packed.shape[2])
        rc = te.reduce_axis((0, groups * GROUP), "rc")
        axes = [rc]

        def product(i: tuple[Any, ...], o: Any) -> Any:
            xs = xu[(*i, rc)]
            ws = packed[o // lanes, rc // GROUP, o % lanes, rc % GROUP]
            return xs.astype("int32") * ws.astype("int32")

    padded_shape = (*batch, rows, blocks * lanes)
    total = te.compute(
        padded_shape, lambda *i: te.sum(product(i[:-1], i[-1]), axis=axes), name=DENSE
    )
    if start is None and blocks * lanes == channels:
        return total
    return te.compute(
        (*batch, rows, channels),
        lambda *i: total(*i) if start is None else total(*i) + start[i[-1]],
        name="int8dot_dense_cut",
    )


# Accumulator vectors side by side in a dense tile where they differ from the convolutions':
# on smull a row's activation spread (a load and a `tbl`) then serves 4 vectors, not 2; one
# 128x256x1024 layer on rpi4, 8 rows x 2 vectors 0.291 instructions per MAC, 4 x 4 0.268
# (6 x 4 spilled: 0.355)
DENSE_VECTORS: dict[Int8Dot, int] = {"smull": 4}


def _schedule_dense(sch: Any, blocks: list[Any], at: int, int8_dot: Int8Dot) -> Any:
    """Register tiles of rows x vectors of accumulators across the whole reduction, the L x 4
    block tensorized to the instruction, parallel over tiles; the epilogue in the write-back."""
    dense = blocks[at]
    pads, consumers = blocks[:at], blocks[at + 1 :]
    written = [sch.get(p).writes[0].source for p in pads]
    weights = [
        r.source.shape
        for r in sch.get(dense).reads
        if not any(r.source.same_as(b) for b in written)
        and not r.source.same_as(sch.get(dense).writes[0].source)
    ]
    (lanes,) = {int(shape[-2]) for shape in weights}
    dot = next(d for d in INSTRUCTIONS[int8_dot] if d.lanes == lanes)
    loops = sch.get_loops(dense)
    spatial = len(sch.get(dense).writes[0].source.shape)  # [..., M, N']
    *batch, m, n = loops[:spatial]
    rc, *pair = loops[spatial:]  # K' (or its groups, then the pairs' 2 x 2)
    blocks_of_n = int(sch.get(n).extent) // dot.lanes
    widest = DENSE_VECTORS.get(int8_dot, dot.max_vectors)
    vectors = max(v for v in range(1, widest + 1) if blocks_of_n % v == 0)
    height = int(sch.get(m).extent)
    rows = max(r for r in range(1, dot.accumulators // vectors + 1) if height % r == 0)
    n_tile, n_vec, n_lane = sch.split(n, [None, vectors, dot.lanes])
    rc_out, *rc_in = [rc, *pair] if dot.pairs else sch.split(rc, [None, GROUP])
    m_tile, m_row = sch.split(m, [None, rows])
    sch.reorder(n_tile, *batch, m_tile, rc_out, m_row, n_vec, n_lane, *rc_in)
    tile = sch.fuse(n_tile, *batch, m_tile)
    # A float island fused after the requantization (GELU after a Linear layer): its int8
    # input is computed once per tile, then the float epilogue reads it; inlined into the
    # float expression, the int64 requantization was repeated at each use of x
    dtypes = [str(sch.get(c).writes[0].source.dtype) for c in consumers]
    floats = [i for i, d in enumerate(dtypes) if d.startswith("float")]
    split = next(
        (i for i, d in enumerate(dtypes) if d == "int8" and floats and i < floats[-1]), None
    )
    if split is not None:
        write_back = tiling.write_back_at(sch, dense, tile, consumers[: split + 1])
        for consumer in consumers[split + 1 : -1]:
            sch.compute_inline(consumer)
        sch.reverse_compute_at(consumers[-1], tile)
        sch.vectorize(sch.get_loops(consumers[-1])[-1])
    else:
        write_back = tiling.write_back_at(sch, dense, tile, consumers)
    for pad in pads:  # [..., M, K']: parallel over rows, vectorized along K
        *outer, last = sch.get_loops(pad)
        if int(sch.get(last).extent) % 16 == 0:
            sch.vectorize(last)
        if outer:
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    sch.parallel(tile)
    init = sch.decompose_reduction(dense, rc_out)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(m_row)
    sch.unroll(n_vec)
    sch.tensorize(n_lane, _register(dot))
    sch.vectorize(sch.get_loops(write_back)[-1])
    sch.annotate(write_back, MARK, 1)
    return sch


# ---- grouped convolutions (RegNetX: 16 channels per group) on Arm's depth lanes ----
#
# Each group is a small convolution whose reduction is the group's own input channels: with 16
# (or a multiple) of them, one vector per pixel and tap, as the depth-lane kernel reads them. A
# tile of R pixels x V output channels of one group (V divides the group's outputs) keeps its
# R x V accumulators of 4 partial-depth int32 lanes in registers across the window, then sums
# the lanes (addp). Each 16 products: smull + smlal2 + sadalp on Armv8.0 (rpi4), one sdot on
# Armv8.2 (rpi5). TVM's generic int32 kernel took 1.85 instructions per MAC on them (RegNetX
# int8 rpi4: 95M of 187M).
GROUP_PAD = "int8group_pad"
GROUP_CONV = "int8group_conv"
GROUP_SUM = "int8group_sum"


def _grouped(call: Any) -> bool:
    """Whether `call` is a grouped, not depthwise, conv2d the grouped depth-lane kernel takes:
    int8 NHWC activations of static shape, int8 HWIO constant weights, int32 out, no dilation,
    input channels per group a multiple of 16 and a tile that divides its output channels."""
    from tvm import ir, tirx

    attrs = call.attrs
    x, w = call.args
    if not (
        isinstance(w, ir.expr.Constant)
        and str(x.ty.dtype) == "int8"
        and str(w.ty.dtype) == "int8"
        and str(attrs.out_dtype) == "int32"
        and attrs.data_layout == "NHWC"
        and attrs.kernel_layout == "HWIO"
        and attrs.out_layout == "NHWC"
        and all(isinstance(d, tirx.IntImm) for d in x.ty.shape)
        and all(int(d) == 1 for d in attrs.dilation)
        and int(attrs.groups) > 1
    ):
        return False
    groups = int(attrs.groups)
    per_group, k = int(w.ty.shape[2]), int(w.ty.shape[3])
    if per_group % DEPTH or k % groups or per_group * groups != int(x.ty.shape[3]):
        return False
    return _grouped_tile(call) is not None


def _grouped_tile(call: Any) -> tuple[int, int] | None:
    """(pixels, output channels of one group) of the grouped kernel's tile for `call`, or None
    where no tile width divides a group's outputs."""
    attrs = call.attrs
    x, w = call.args
    kw, k = int(w.ty.shape[1]), int(w.ty.shape[3])
    width = int(x.ty.shape[2])
    ow = (width + int(attrs.padding[1]) + int(attrs.padding[3]) - kw) // int(attrs.strides[1]) + 1
    per_group = k // int(attrs.groups)
    tile = lanes_tile(per_group, ow)
    if tile is None:
        # A width with no divisor of 2 to 8 (11, 13): one pixel per tile, which lanes_tile
        # leaves to the channel-lane kernel, is still far below the generic kernel here
        # (~0.3 instructions per MAC against 1.85); as many outputs as fit beside it
        widths = [v for v in (2, 4, 8, 12) if per_group % v == 0]
        tile = (1, max(widths)) if widths else None
    return tile


def _legalize_grouped(bb: Any, call: Any, pairs: bool) -> Any:
    """A grouped conv2d on the depth-lane kernel: weights packed to [K/V, KH, KW, I/16, V, 16]
    (I: a group's input channels), V output channels of one group per block; `pairs`: on
    Armv8.0's smull, else sdot."""
    import numpy as np
    from tvm import relax

    w = call.args[1].value.numpy()  # HWIO, I = a group's input channels
    if pairs and w.min() < -127:
        raise ValueError("a weight is -128: two smull products would overflow int16")
    kh, kw, c, k = w.shape
    rows, vectors = _grouped_tile(call)
    packed = w.reshape(kh, kw, c // DEPTH, DEPTH, k // vectors, vectors)
    packed = np.ascontiguousarray(packed.transpose(4, 0, 1, 2, 5, 3))
    attrs = call.attrs
    return bb.call_te(
        _grouped_te,
        call.args[0],
        relax.const(packed, "int8"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        int(attrs.groups),
        pairs,
        rows,
        primfunc_name_hint="conv2d_int8groups",
    )


def _grouped_te(
    x: Any,
    packed: Any,
    strides: list[int],
    pads: list[int],
    groups: int,
    pairs: bool,
    rows: int,
) -> Any:
    """Partial sums with each group's depth in 4 lanes per output (lane l: channels 2l, 2l + 1,
    2l + 8 and 2l + 9 of every 16 of its group, as smull + smlal2 + sadalp add them; without
    `pairs`, channels 4l to 4l + 3, as sdot does), then their sum. The tile's `rows` go to the
    schedule as the block's annotation ROWS."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in x.shape)
    k_blocks, kh, kw, d_blocks, vectors = (int(d) for d in packed.shape[:5])
    per_in, per_out = c // groups, k_blocks * vectors // groups
    top, left, bottom, right = pads
    sh, sw = strides
    oh = (h + top + bottom - kh) // sh + 1
    ow = (w + left + right - kw) // sw + 1

    def padded(b: Any, y: Any, z: Any, ch: Any) -> Any:
        inside = tirx.all(y >= top, y < h + top, z >= left, z < w + left)
        return tirx.if_then_else(inside, x[b, y - top, z - left, ch], tirx.const(0, "int8"))

    if any(pads):
        source = te.compute((n, h + top + bottom, w + left + right, c), padded, name=GROUP_PAD)
    else:
        source = x
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rc = te.reduce_axis((0, d_blocks), "rc")
    rh = te.reduce_axis((0, 2), "rh")
    re = te.reduce_axis((0, 2), "re")

    def part(b: Any, y: Any, z: Any, o: Any, lane: Any) -> Any:
        ch = rh * 8 + lane * 2 + re if pairs else lane * 4 + rh * 2 + re
        first = o // per_out * per_in  # the group's first input channel
        xs = source[b, y * sh + ry, z * sw + rx, first + rc * DEPTH + ch]
        ws = packed[o // vectors, ry, rx, rc, o % vectors, ch]
        return te.sum(xs.astype("int32") * ws.astype("int32"), axis=[ry, rx, rc, rh, re])

    shape = (n, oh, ow, k_blocks * vectors)
    parts = te.compute((*shape, 4), part, name=GROUP_CONV, attrs={ROWS: rows})
    lane = te.reduce_axis((0, 4), "lane")
    return te.compute(
        shape, lambda b, y, z, o: te.sum(parts[b, y, z, o, lane], axis=lane), name=GROUP_SUM
    )


def _schedule_grouped(sch: Any, blocks: list[Any], at: int, int8_dot: Int8Dot) -> Any:
    """Tiles of R pixels x V output channels of one group, each output's 4 depth lanes in one
    register across the group's window; then the lanes summed by addp, requantized in the
    write-back."""
    conv = blocks[at]
    pads, lane_sum, consumers = blocks[:at], blocks[at + 1], blocks[at + 2 :]
    b, y, z, o, lane, ry, rx, rc, rh, re = sch.get_loops(conv)
    weights = [r.source.shape for r in sch.get(conv).reads if len(r.region) == 6]
    (vectors,) = {int(shape[4]) for shape in weights}
    rows = int(sch.get(conv).annotations[ROWS])  # the tile _legalize_grouped packed for
    o_tile, o_vec = sch.split(o, [None, vectors])
    z_tile, z_row = sch.split(z, [None, rows])
    sch.reorder(o_tile, b, y, z_tile, ry, rx, rc, z_row, o_vec, lane, rh, re)
    tile = sch.fuse(o_tile, b, y, z_tile)
    sch.reverse_compute_at(lane_sum, tile)
    write_back = tiling.write_back_at(sch, lane_sum, tile, consumers)
    for pad in pads:
        # 16 channels per vector: vectorized whole (400 lanes, RegNetX's last stage), LLVM
        # copied the padded row byte by byte through the stack (a fifth of its instructions)
        loops = sch.get_loops(pad)
        sch.vectorize(sch.split(loops[-1], [None, DEPTH])[1])
        sch.parallel(sch.fuse(*loops[:2]))
    sch.parallel(tile)
    init = sch.decompose_reduction(conv, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    # Loops inside the tile (the outermost loop) only: one-pixel tiles have no row loop in
    # the lane sum, whose last-but-two loop is then the tile loop (unrolled: 484 tiles, 20 s
    # of LLVM for one layer)
    for loop in sch.get_loops(init)[1:-1]:
        sch.unroll(loop)
    sch.unroll(z_row)
    sch.unroll(o_vec)
    dot, add4, add2 = _register_depth_lanes()
    sch.tensorize(lane, dot if int8_dot == "smull" else _register_sdot_depth_lanes())
    *s_rows, s_o, _ = sch.get_loops(lane_sum)[1:]
    group = min(4, vectors)  # outputs one lane sum writes
    s_vec, s_group = sch.split(s_o, [None, group])
    s_init = sch.decompose_reduction(lane_sum, s_group)
    sch.vectorize(sch.get_loops(s_init)[-1])
    for loop in s_rows:
        sch.unroll(loop)
    sch.unroll(s_vec)
    sch.tensorize(s_group, add4 if group == 4 else add2)
    sch.vectorize(sch.get_loops(write_back)[-1])
    sch.annotate(write_back, MARK, 1)
    return sch


@cache
def _register_sdot_depth_lanes() -> str:
    """16 int8 products added into 4 int32 lanes by one Armv8.2 `sdot` (lane l: products 4l to
    4l + 3)."""
    from tvm import s_tir
    from tvm.script import tirx as T

    sdot = INSTRUCTIONS["sdot"][0].llvm

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((DEPTH,), "int8", offset_factor=1),
        b: T.Buffer((DEPTH,), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:4], a[0:DEPTH], b[0:DEPTH])
            T.writes(c[0:4])
            for i, h, e in T.grid(4, 2, 2):
                with T.sblock("update"):
                    vi, vh, ve = T.axis.remap("SRR", [i, h, e])
                    c[vi] = c[vi] + T.cast(a[vi * 4 + vh * 2 + ve], "int32") * T.cast(
                        b[vi * 4 + vh * 2 + ve], "int32"
                    )

    @T.prim_func(s_tir=True)
    def instruction(
        a: T.Buffer((DEPTH,), "int8", offset_factor=1),
        b: T.Buffer((DEPTH,), "int8", offset_factor=1),
        c: T.Buffer((4,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:4], a[0:DEPTH], b[0:DEPTH])
            T.writes(c[0:4])
            c[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(sdot),
                c.vload([0], dtype="int32x4"),
                a.vload([0], dtype="int8x16"),
                b.vload([0], dtype="int8x16"),
                dtype="int32x4",
            )

    name = "edgec_sdot_depth_lanes"
    s_tir.TensorIntrin.register(name, description, instruction)
    return name
