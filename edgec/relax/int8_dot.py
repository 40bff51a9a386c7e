"""int8 convolutions on the CPU's int8 dot-product instruction: x86 AVX-512 VNNI `vpdpbusd`,
Arm `sdot` (Armv8.2-A dot product: Cortex-A76, Raspberry Pi 5).

Plain legalization turns `conv2d(int8, int8, out_dtype=int32)` into int32 multiplies (x86
`vpmulld`): slower than float32. On a target whose `int8_dot` capability names an instruction,
a conv2d with int8 constant weights legalizes instead to a kernel built for it. Both add each
group of 4 int8 products into one int32 lane (16 lanes for vpdpbusd, 4 for sdot):

- weights are packed once, at build time, to [K/L, KH, KW, C4/4, L, 4] (L output channels x
  4 input channels: one vector per instruction; C padded to C4, a multiple of 4; with fewer
  than 4 channels, the window's taps and channels are gathered into one axis instead);
- vpdpbusd multiplies unsigned by signed bytes: activations enter as x + 128 (fused into the
  padding pass, where padding is 128) and -128 * sum(w) per output channel is added to the
  sums, which cancels it; sdot is signed x signed and needs neither;
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
}
PAD = "int8dot_pad"
CONV = "int8dot_conv"
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
    for dot in family:  # before any tuning record that names them is read or replayed
        _register(dot)

    def legalize(bb: Any, call: Any) -> Any:
        from tvm import ir

        try:
            return _legalize_conv2d(bb, call, family)
        except Exception as e:
            if fallbacks is not None:
                fallbacks[f"int8_dot: conv2d {call.args[0].ty}"] = (
                    f"generic int32 kernel: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                )
            return ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)

    return {"relax.nn.conv2d": legalize}


def _legalize_conv2d(bb: Any, call: Any, family: tuple[DotInstruction, ...]) -> Any:
    import numpy as np
    from tvm import ir, relax

    dot = next((d for d in family if _packable(call, d.lanes)), None)
    if dot is None:
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
    packed = padded.reshape(*flat.shape[:2], groups, GROUP, k // dot.lanes, dot.lanes)
    packed = np.ascontiguousarray(packed.transpose(4, 0, 1, 2, 5, 3))
    # sum((x + 128) * w) - 128 * sum(w) == sum(x * w)
    start = -128 * w.astype(np.int32).sum(axis=(0, 1, 2)) if dot.unsigned else None
    attrs = call.attrs
    return bb.call_te(
        _conv_te,
        call.args[0],
        relax.const(packed, "int8"),
        None if start is None else relax.const(start.astype(np.int32), "int32"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        gather,
        primfunc_name_hint="conv2d_int8dot",
    )


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
) -> Any:
    """The activations padded or gathered into windows (as uint8 x + 128 when `start` is
    given), the dot products, plus `start`."""
    from tvm import te, tirx

    n, h, w, _ = (int(d) for d in x.shape)
    k_blocks, kh, kw, c_groups = (int(d) for d in packed.shape[:4])
    top, left, bottom, right = pads
    sh, sw = strides
    taps = gather[:2] if gather else (kh, kw)
    oh = (h + top + bottom - taps[0]) // sh + 1
    ow = (w + left + right - taps[1]) // sw + 1
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
        xu = te.compute(
            (n, h + top + bottom, w + left + right, c_groups * GROUP), shifted, name=PAD
        )
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rc = te.reduce_axis((0, c_groups * GROUP), "rc")
    lanes = int(packed.shape[4])
    shape = (n, oh, ow, k_blocks * lanes)
    total = te.compute(
        shape,
        lambda b, y, z, o: te.sum(
            xu[b, y * sh + ry, z * sw + rx, rc].astype("int32")
            * packed[o // lanes, ry, rx, rc // GROUP, o % lanes, rc % GROUP].astype("int32"),
            axis=[ry, rx, rc],
        ),
        name=CONV,
    )
    if start is None:
        return total
    # (te.sum's init= is dropped by create_prim_func in TVM 0.27: the start is its own block,
    # inlined into the write-back like the rest of the epilogue)
    return te.compute(shape, lambda b, y, z, o: total[b, y, z, o] + start[o], name="int8dot_start")


@cache
def _register(dot: DotInstruction) -> str:
    """The L x 4 int8 dot product, described in TIR and implemented with the LLVM intrinsic
    (whose byte operands are <4L x i8> in LLVM 20)."""
    from tvm import s_tir
    from tvm.script import tirx as T

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
            four = T.reinterpret(a.vload([0], four_bytes), dtype="int32")
            c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(dot.llvm),
                c.vload([0], dtype=acc),
                T.reinterpret(T.broadcast(four, lanes), dtype=operand),
                b.vload([0, 0], dtype=operand),
                dtype=acc,
            )

    name = "edgec_" + dot.llvm.replace(".", "_")
    s_tir.TensorIntrin.register(name, description, instruction)
    return name


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
            convs = [i for i, name in enumerate(names) if name.startswith(CONV)]
            if len(convs) != 1 or int8_dot == "none":
                return None
            at = convs[0]
            conv = blocks[at]
            # the instruction the weights were packed for: their [K/L, KH, KW, C/4, L, 4] shape
            (lanes,) = {int(r.source.shape[4]) for r in sch.get(conv).reads if len(r.region) == 6}
            dot = next(d for d in INSTRUCTIONS[int8_dot] if d.lanes == lanes)
            pads, consumers = blocks[:at], blocks[at + 1 :]
            b, y, ow, k, ry, rx, rc = sch.get_loops(conv)
            blocks_of_k = int(sch.get(k).extent) // dot.lanes
            vectors = max(v for v in range(1, dot.max_vectors + 1) if blocks_of_k % v == 0)
            width = int(sch.get(ow).extent)
            rows = max(r for r in range(1, dot.accumulators // vectors + 1) if width % r == 0)
            k_tile, k_vec, k_lane = sch.split(k, [None, vectors, dot.lanes])
            rc_out, rc_in = sch.split(rc, [None, GROUP])
            ow_tile, ow_row = sch.split(ow, [None, rows])
            sch.reorder(k_tile, b, y, ow_tile, ry, rx, rc_out, ow_row, k_vec, k_lane, rc_in)
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
            sch.unroll(ow_row)
            sch.unroll(k_vec)
            sch.tensorize(k_lane, _register(dot))
            sch.vectorize(sch.get_loops(write_back)[-1])
            sch.annotate(write_back, MARK, 1)
            return sch

    return Int8DotConv()
