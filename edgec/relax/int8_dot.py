"""int8 convolutions on the CPU's int8 dot-product instruction (x86 AVX-512 VNNI `vpdpbusd`).

Plain legalization turns `conv2d(int8, int8, out_dtype=int32)` into int32 multiplies (x86
`vpmulld`): slower than float32. On a target whose `int8_dot` capability is "vnni", a conv2d
with int8 constant weights legalizes instead to a kernel built for `vpdpbusd`, which multiplies
64 unsigned 8-bit activations by 64 signed 8-bit weights and adds each group of 4 products into
one of 16 int32 lanes:

- weights are packed once, at build time, to [K/16, KH, KW, C4/4, 16, 4] (16 output channels x
  4 input channels: one 64-byte vector per instruction; C padded to C4, a multiple of 4);
- activations enter as uint8, x + 128 (fused into the padding pass, where padding is 128);
- -128 * sum(w) per output channel is added to the sums, which cancels the +128, so the
  result equals the int8 x int8 sum exactly (integer arithmetic: bit for bit the numpy
  reference's, and the generic build's on any other target).

The schedule rule below register-blocks rows x (16-lane vectors) of accumulators and tensorizes
the innermost 16 x 4 block to the instruction; the requantization epilogue is inlined after it.
Kernels this module makes carry block names starting with `int8dot_`, which is how the rule
finds them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

from edgec.targets import TargetProfile

LANES = 16  # int32 accumulators in one vpdpbusd
GROUP = 4  # int8 products summed into each of them
# Accumulator vectors a register tile may hold (AVX-512 has 32 zmm registers: the rest hold
# weights and broadcast activations). Measured on the digits model's 3x3 convolutions:
# 8 rows x 2 vectors ran at 243 GMAC/s, 8 x 4 at 186.
ACCUMULATORS = 16
PAD = "int8dot_pad"
CONV = "int8dot_conv"
INTRIN = "edgec_int8dot_vnni_16x4"
MARK = "edgec_int8_dot"  # annotation on a kernel's block once it is tensorized


def tensorized(func: Any) -> bool:
    """Whether a scheduled PrimFunc runs its contraction on the dot-product instruction."""
    return MARK in func.script()


def legalize_map(profile: TargetProfile) -> dict[str, Callable[[Any, Any], Any]]:
    """LegalizeOps overrides for `profile`: empty unless it has an int8 dot-product."""
    if profile.capabilities.int8_dot == "none":
        return {}
    return {"relax.nn.conv2d": _legalize_conv2d}


def _legalize_conv2d(bb: Any, call: Any) -> Any:
    import numpy as np
    from tvm import ir, relax

    if not _vnni_conv(call):
        return ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)
    w = call.args[1].value.numpy()  # HWIO
    kh, kw, c, k = w.shape
    # Fewer than 4 channels (an image's first layer): the window's taps and channels gather
    # into one axis instead, so 3x3x1 is 12 products per output, not 3x3x4.
    gather = (kh, kw, c) if c % GROUP else None
    flat = w.reshape(1, 1, kh * kw * c, k) if gather else w
    groups = -(-flat.shape[2] // GROUP)
    padded = np.zeros((*flat.shape[:2], groups * GROUP, k), np.int8)
    padded[:, :, : flat.shape[2]] = flat
    packed = padded.reshape(*flat.shape[:2], groups, GROUP, k // LANES, LANES)
    packed = np.ascontiguousarray(packed.transpose(4, 0, 1, 2, 5, 3))
    # sum((x + 128) * w) - 128 * sum(w) == sum(x * w)
    start = -128 * w.astype(np.int32).sum(axis=(0, 1, 2))
    attrs = call.attrs
    return bb.call_te(
        _conv_te,
        call.args[0],
        relax.const(packed, "int8"),
        relax.const(start.astype(np.int32), "int32"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        gather,
        primfunc_name_hint="conv2d_int8dot",
    )


def _vnni_conv(call: Any) -> bool:
    """Whether `call` is a conv2d the packed kernel computes: int8 NHWC activations, int8 HWIO
    constant weights, int32 out, no groups or dilation, output channels a multiple of 16."""
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
        and int(w.ty.shape[3]) % LANES == 0
    )


def _conv_te(
    x: Any,
    packed: Any,
    start: Any,
    strides: list[int],
    pads: list[int],
    gather: tuple[int, int, int] | None,
) -> Any:
    """x + 128 as uint8 (padded, or gathered into windows), the dot products, plus `start`."""
    from tvm import te, tirx

    n, h, w, _ = (int(d) for d in x.shape)
    k_blocks, kh, kw, c_groups = (int(d) for d in packed.shape[:4])
    top, left, bottom, right = pads
    sh, sw = strides
    taps = gather[:2] if gather else (kh, kw)
    oh = (h + top + bottom - taps[0]) // sh + 1
    ow = (w + left + right - taps[1]) // sw + 1
    zero = tirx.const(128, "uint8")  # int8 0, shifted

    def shifted(b: Any, y: Any, z: Any, ch: Any, *inside: Any) -> Any:
        inside = (y >= top, y < h + top, z >= left, z < w + left, *inside)
        value = (x[b, y - top, z - left, ch].astype("int32") + 128).astype("uint8")
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
        xu = te.compute(
            (n, h + top + bottom, w + left + right, c_groups * GROUP), shifted, name=PAD
        )
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rc = te.reduce_axis((0, c_groups * GROUP), "rc")
    shape = (n, oh, ow, k_blocks * LANES)
    total = te.compute(
        shape,
        lambda b, y, z, o: te.sum(
            xu[b, y * sh + ry, z * sw + rx, rc].astype("int32")
            * packed[o // LANES, ry, rx, rc // GROUP, o % LANES, rc % GROUP].astype("int32"),
            axis=[ry, rx, rc],
        ),
        name=CONV,
    )
    # (te.sum's init= is dropped by create_prim_func in TVM 0.27: the start is its own block,
    # inlined into the write-back like the rest of the epilogue)
    return te.compute(shape, lambda b, y, z, o: total[b, y, z, o] + start[o], name="int8dot_start")


@cache
def _register_intrinsic() -> str:
    """The 16x4 uint8 x int8 -> int32 dot product, described in TIR and implemented with LLVM's
    vpdpbusd intrinsic (whose operands are <64 x i8> in LLVM 20)."""
    from tvm import s_tir
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def description(
        a: T.Buffer((GROUP,), "uint8", offset_factor=1),
        b: T.Buffer((LANES, GROUP), "int8", offset_factor=1),
        c: T.Buffer((LANES,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:LANES], a[0:GROUP], b[0:LANES, 0:GROUP])
            T.writes(c[0:LANES])
            for i, j in T.grid(LANES, GROUP):
                with T.sblock("update"):
                    vi, vj = T.axis.remap("SR", [i, j])
                    c[vi] = c[vi] + T.cast(a[vj], "int32") * T.cast(b[vi, vj], "int32")

    @T.prim_func(s_tir=True)
    def vpdpbusd(
        a: T.Buffer((GROUP,), "uint8", offset_factor=1),
        b: T.Buffer((LANES, GROUP), "int8", offset_factor=1),
        c: T.Buffer((LANES,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(c[0:LANES], a[0:GROUP], b[0:LANES, 0:GROUP])
            T.writes(c[0:LANES])
            four = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            c[T.ramp(T.int32(0), 1, LANES)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(four, LANES), dtype="int8x64"),
                b.vload([0, 0], dtype="int8x64"),
                dtype="int32x16",
            )

    s_tir.TensorIntrin.register(INTRIN, description, vpdpbusd)
    return INTRIN


def schedule_rule() -> Any:
    """The dlight rule for kernels made by `_legalize_conv2d`; None-returning for any other."""
    from tvm import s_tir
    from tvm.s_tir.dlight.base import ScheduleRule

    class Int8DotConv(ScheduleRule):
        def apply(self, func: Any, target: Any, _tunable: bool) -> Any:
            sch = s_tir.Schedule(func)
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
            names = [sch.get(b).name_hint for b in blocks]
            convs = [i for i, name in enumerate(names) if name.startswith(CONV)]
            if len(convs) != 1:
                return None
            at = convs[0]
            conv = blocks[at]
            pads, consumers = blocks[:at], blocks[at + 1 :]
            b, y, ow, k, ry, rx, rc = sch.get_loops(conv)
            vectors = 2 if int(sch.get(k).extent) % (2 * LANES) == 0 else 1
            width = int(sch.get(ow).extent)
            rows = max(r for r in range(1, ACCUMULATORS // vectors + 1) if width % r == 0)
            k_tile, k_vec, k_lane = sch.split(k, [None, vectors, LANES])
            rc_out, rc_in = sch.split(rc, [None, GROUP])
            ow_tile, ow_row = sch.split(ow, [None, rows])
            sch.reorder(k_tile, b, y, ow_tile, ry, rx, rc_out, ow_row, k_vec, k_lane, rc_in)
            tile = sch.fuse(k_tile, b, y, ow_tile)
            write_back = sch.cache_write(conv, 0, "global")
            sch.reverse_compute_at(write_back, tile)
            for block in consumers[:-1]:
                sch.compute_inline(block)
            if consumers:
                sch.reverse_compute_inline(consumers[-1])
            for pad in pads:
                loops = sch.get_loops(pad)
                if int(sch.get(loops[-1]).extent) % LANES == 0:
                    sch.vectorize(loops[-1])
                else:  # a gathered window: constant tap offsets
                    sch.unroll(loops[-1])
                sch.parallel(sch.fuse(*loops[:2]))
            sch.parallel(tile)
            init = sch.decompose_reduction(conv, ry)
            sch.vectorize(sch.get_loops(init)[-1])
            sch.unroll(ow_row)
            sch.unroll(k_vec)
            sch.tensorize(k_lane, _register_intrinsic())
            sch.vectorize(sch.get_loops(write_back)[-1])
            sch.annotate(write_back, MARK, 1)
            return sch

    return Int8DotConv()
