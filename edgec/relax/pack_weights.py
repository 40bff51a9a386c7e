"""float32 conv2d weights packed at build time in the order the register tile reads them.

In HWIO a register tile of `cols` output channels reads, per reduction step, one `cols`-wide
slice of a row `O` floats long: consecutive steps are `O * 4` bytes apart, so a 3x3 512->512
layer touches a new cache line (and, at a 2 KB stride, the same few L1 sets) for every vector
it loads. Packed to [O/cols, KH, KW, I, cols] the tile's weights are one contiguous stream over
the whole reduction. The rule (edgec.relax.cpu_schedules) reads `cols` from the packed shape,
so its split lands exactly on the packed blocks.

Where no exact tile keeps the registers busy (1000 or 58 output channels, 13 output columns),
the kernel computes a padded grid instead (edgec.relax.tiling.padded_tile): zero weights for
the extra channels, a wider padded input for the extra columns, and the write-back stores only
the real outputs.

A grouped conv2d (not depthwise: each group has several input channels) is packed the same
way, in blocks of whole vectors within one group: its register tile then reads one group's
inputs as broadcasts and one contiguous stream of that group's weights, instead of the
depthwise path's tile, whose vectors could span two groups and gather their inputs lane by
lane (RegNetX-400MF's group-width-16 3x3 layers).

A conv2d this does not take (dilated, not NHWC/HWIO, weights not constant, another dtype, no
tile width that divides its channels, or its groups' output channels) keeps its usual
legalization.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgec.relax.tiling import budget, padded_tile, tile_widths
from edgec.targets import TargetProfile

CONV = "conv2d_nhwc_packed"
GROUPED = "conv2d_nhwc_grouped_packed"


def legalize_map(
    profile: TargetProfile, inner: dict[str, Callable[[Any, Any], Any]]
) -> dict[str, Callable[[Any, Any], Any]]:
    """LegalizeOps overrides: float32 conv2d with packed weights on CPUs; every other conv2d
    goes to `inner`'s legalization (int8 dot products), else TVM's own."""
    from tvm import ir

    caps = profile.capabilities
    if caps.device != "cpu":
        return inner
    lanes, accumulators, most = budget(caps.vector_bits, caps.vector_registers)
    otherwise = inner.get("relax.nn.conv2d") or ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")

    # grouped convs on x86 only: measured there (issue 14); Arm keeps its counted kernels
    grouped = caps.isa == "x86_64"

    def legalize(bb: Any, call: Any) -> Any:
        group_cols = _grouped_cols(call, lanes, accumulators) if grouped else None
        if group_cols is not None:
            return _legalize_grouped(bb, call, group_cols)
        tile = _packed_tile(call, lanes, accumulators, most)
        if tile is None:
            return otherwise(bb, call)
        return _legalize(bb, call, *tile)

    return {**inner, "relax.nn.conv2d": legalize}


def plain_float(call: Any) -> bool:
    """Whether `call` is a float32 NHWC/HWIO conv2d, undilated, on constant weights, of a
    static output shape."""
    from tvm import ir, tirx

    attrs = call.attrs
    x, w = call.args
    return (
        isinstance(w, ir.expr.Constant)
        and str(x.ty.dtype) == "float32"
        and str(w.ty.dtype) == "float32"
        and str(attrs.out_dtype) in ("", "None", "void", "float32")  # unset: the input dtype
        and attrs.data_layout == "NHWC"
        and attrs.kernel_layout == "HWIO"
        and attrs.out_layout == "NHWC"
        and all(int(d) == 1 for d in attrs.dilation)
        and all(isinstance(d, tirx.IntImm) for d in call.ty.shape)
    )


def _grouped_cols(call: Any, lanes: int, accumulators: int) -> int | None:
    """The width of the blocks a grouped (not depthwise) conv2d's weights are packed in: the
    widest register tile width that divides each group's output channels, so a tile's
    vectors never span two groups. None for other convolutions."""
    groups = int(call.attrs.groups)
    if groups == 1 or not plain_float(call):
        return None
    inputs = int(call.args[1].ty.shape[2])  # HWIO: I is the group's input channels
    per_group = int(call.ty.shape[3]) // groups
    if inputs == 1:
        return None  # depthwise (or a channel multiplier): its own tile (cpu_schedules)
    return next((w for w in tile_widths(lanes, accumulators) if per_group % w == 0), None)


def _packed_tile(
    call: Any, lanes: int, accumulators: int, most: int
) -> tuple[int, int, int] | None:
    """The register tile's vector columns and the padded channels and output width it is
    computed on for `call`, or None if it is not packable."""
    if int(call.attrs.groups) != 1 or not plain_float(call):
        return None
    _, _, out_width, channels = (int(d) for d in call.ty.shape)
    tile = padded_tile(channels, out_width, lanes, accumulators, most)
    if tile is None or tile[1] == channels:  # one block: HWIO is already that order
        return None
    _, cols, padded_channels, padded_width = tile
    return cols, padded_channels, padded_width


def _legalize(bb: Any, call: Any, cols: int, padded_channels: int, padded_width: int) -> Any:
    import numpy as np
    from tvm import relax

    w = call.args[1].value.numpy()  # HWIO
    kh, kw, c, k = w.shape
    w = np.pad(w, [(0, 0), (0, 0), (0, 0), (0, padded_channels - k)])  # zero extra channels
    blocks = padded_channels // cols
    packed = np.ascontiguousarray(w.reshape(kh, kw, c, blocks, cols).transpose(3, 0, 1, 2, 4))
    attrs = call.attrs
    return bb.call_te(
        _conv_te,
        call.args[0],
        relax.const(packed, "float32"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        k,
        padded_width,
        primfunc_name_hint="conv2d",
    )


def _conv_te(
    x: Any, packed: Any, strides: list[int], pads: list[int], channels: int, padded_width: int
) -> Any:
    """NHWC conv2d (padding as its own stage, as TOPI's) on weights [O/cols, KH, KW, I, cols],
    computed on `padded_width` output columns and the packed channels, cut to the real
    output (`channels`) where that grid is larger."""
    from tvm import te, tirx

    n, h, w, c = (int(d) for d in x.shape)
    blocks, kh, kw, _, cols = (int(d) for d in packed.shape)
    top, left, bottom, right = pads
    sh, sw = strides
    oh = (h + top + bottom - kh) // sh + 1
    ow = (w + left + right - kw) // sw + 1
    # input columns the padded grid reads (at least the padded input itself)
    width = max(w + left + right, (padded_width - 1) * sw + kw)
    if any(pads) or width > w:
        source = te.compute(
            (n, h + top + bottom, width, c),
            lambda b, y, z, ch: tirx.if_then_else(
                tirx.all(y >= top, y < h + top, z >= left, z < w + left),
                x[b, y - top, z - left, ch],
                tirx.const(0.0, "float32"),
            ),
            name="pad_temp",
        )
    else:
        source = x
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rc = te.reduce_axis((0, c), "rc")
    conv = te.compute(
        (n, oh, padded_width, blocks * cols),
        lambda b, y, z, o: te.sum(
            source[b, y * sh + ry, z * sw + rx, rc] * packed[o // cols, ry, rx, rc, o % cols],
            axis=[ry, rx, rc],
        ),
        name=CONV,
    )
    if (padded_width, blocks * cols) == (ow, channels):
        return conv
    return te.compute((n, oh, ow, channels), lambda *i: conv(*i), name="conv2d_nhwc_cut")


def _legalize_grouped(bb: Any, call: Any, cols: int) -> Any:
    import numpy as np
    from tvm import relax

    w = call.args[1].value.numpy()  # HWIO, I the channels of one group
    kh, kw, c, k = w.shape
    packed = np.ascontiguousarray(w.reshape(kh, kw, c, k // cols, cols).transpose(3, 0, 1, 2, 4))
    attrs = call.attrs
    return bb.call_te(
        _grouped_te,
        call.args[0],
        relax.const(packed, "float32"),
        [int(s) for s in attrs.strides],
        [int(p) for p in attrs.padding],
        int(attrs.groups),
        primfunc_name_hint="conv2d",
    )


def _grouped_te(x: Any, packed: Any, strides: list[int], pads: list[int], groups: int) -> Any:
    """Grouped NHWC conv2d (padding as its own stage) on weights [O/cols, KH, KW, I/groups,
    cols]: output channel o reads its group's input channels and block o // cols."""
    from tvm import te, topi

    n, h, w, _ = (int(d) for d in x.shape)
    blocks, kh, kw, c, cols = (int(d) for d in packed.shape)
    per_group = blocks * cols // groups
    top, left, bottom, right = pads
    sh, sw = strides
    oh = (h + top + bottom - kh) // sh + 1
    ow = (w + left + right - kw) // sw + 1
    source = x
    if any(pads):
        source = topi.nn.pad(x, [0, top, left, 0], [0, bottom, right, 0], name="pad_temp")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    rc = te.reduce_axis((0, c), "rc")
    return te.compute(
        (n, oh, ow, blocks * cols),
        lambda b, y, z, o: te.sum(
            source[b, y * sh + ry, z * sw + rx, o // per_group * c + rc]
            * packed[o // cols, ry, rx, rc, o % cols],
            axis=[ry, rx, rc],
        ),
        name=GROUPED,
    )
