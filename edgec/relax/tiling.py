"""Tiling helpers shared by the CPU schedule rules (edgec.relax.cpu_schedules, int8_dot)."""

from __future__ import annotations

from typing import Any, NamedTuple

# Accumulators (rows x vectors) a register tile holds, by the number of SIMD registers: the
# rest hold the weight vectors and a broadcast. With 32 (AArch64 NEON) a 6-row x 4-vector tile
# reads 10 vectors per 24 FMLAs; rpi4 instructions per inference, cnn 4.02M -> 2.95M and
# MobileNetV2 198.9M -> 153.4M (armcount) against 12 accumulators x at most 2 vectors.
# x86 keeps 12: on AVX-512's 32 zmm, 24 accumulators everywhere cut ResNet-18's kernel time 15%
# but cost MobileNetV2 up to 10% (bench/kernels.py); so only a tile that 12 leave short of rows
# (7x7, 14x14 layers) takes more (most_accumulators, contraction_tile).
ACCUMULATORS = {16: 12, 32: 24}


def tile_accumulators(vector_registers: int) -> int:
    """Accumulator vectors a register tile may hold on a CPU with `vector_registers`."""
    return ACCUMULATORS[32 if vector_registers >= 32 else 16]


def most_accumulators(vector_registers: int, vector_bits: int) -> int:
    """Accumulators a tile may hold where the usual budget leaves it short of rows: AVX-512
    has 32 zmm registers even where the profile counts AVX2's 16. ResNet-18's 7x7 and 14x14
    layers (rows must divide 7) hold 7 x 16 in 12; 7 x 32 ran 10-38% faster (1 thread)."""
    return tile_accumulators(32 if vector_bits >= 512 else vector_registers)


class Budget(NamedTuple):
    """What a float32 register tile may use on a CPU."""

    lanes: int  # float32 lanes of one vector register
    accumulators: int  # tile_accumulators
    most: int  # most_accumulators


def budget(vector_bits: int, vector_registers: int) -> Budget:
    """The register-tile budget of a CPU with `vector_registers` SIMD registers of
    `vector_bits` each."""
    return Budget(
        max(1, vector_bits // 32),
        tile_accumulators(vector_registers),
        most_accumulators(vector_registers, vector_bits),
    )


def contraction_tile(
    channels: int,
    row_extent: int,
    lanes: int,
    accumulators: int,
    most: int,
    cols: int | None = None,
) -> tuple[int, int] | None:
    """register_tile within `accumulators`, or within `most` where that keeps more busy."""
    tile = register_tile(channels, row_extent, lanes, accumulators, cols=cols)
    if most > accumulators and (tile is None or _busy(*tile, lanes) < _BUSY):
        wider = register_tile(channels, row_extent, lanes, most, cols=cols)
        full = wider is not None and wider[1] >= lanes  # not more half-width rows
        if full and (tile is None or _busy(*wider, lanes) > _busy(*tile, lanes)):
            return wider
    return tile


def register_tile(
    channels: int,
    row_extent: int,
    lanes: int,
    accumulators: int,
    prefer_rows: bool = False,
    cols: int | None = None,
) -> tuple[int, int] | None:
    """(rows, vector columns) of a contraction's register tile: the most accumulators that fit
    in registers, columns dividing the `channels` (the vectorized output axis), rows dividing
    the `row_extent` (the output's next axis) so a tile never straddles two rows of the
    output. None when the channels are too many to take whole and no width divides them.
    Between equal tiles the widest wins, or with `prefer_rows` the tallest (a depthwise
    window's neighbouring rows share input vectors; channels share nothing). `cols`, if given,
    is the only width tried (the block width weights were packed for)."""
    best: tuple[int, int] | None = None
    # Narrower vectors (half or quarter registers) when the channel count is not a multiple of
    # the full width: MobileNetV2's 24-channel layers on AVX-512, a 1000-class head.
    widths = [cols] if cols else tile_widths(lanes, accumulators)
    for width in widths:
        if channels % width:
            continue
        budget = accumulators // max(1, width // lanes)
        rows = max(f for f in range(1, budget + 1) if row_extent % f == 0)
        better = rows * width > best[0] * best[1] if best else True
        if better or (prefer_rows and best and rows * width == best[0] * best[1]):
            best = (rows, width)
    if best is None and channels <= 4 * lanes:
        best = (1, channels)
    return best


def tile_widths(lanes: int, accumulators: int) -> list[int]:
    """A register tile's candidate widths in fp32 lanes, widest first."""
    widest = (4 * lanes,) if accumulators > 12 else ()  # 4 vectors when registers allow
    return [w for w in (*widest, 2 * lanes, lanes, lanes // 2, lanes // 4) if w >= 4]


def padded_tile(
    channels: int, row_extent: int, lanes: int, accumulators: int, most: int | None = None
) -> tuple[int, int, int, int] | None:
    """(rows, cols, padded channels, padded row extent) of a register tile for a contraction
    whose output may be computed on a padded grid (packed conv2d weights: zero channels cost
    nothing to add at build time, extra rows read a wider padded input) and cut back in the
    write-back. Padding is taken only where the exact tile (register_tile) keeps fewer than
    half the accumulators busy, in full-width vector equivalents: SqueezeNet's 1000-class
    1x1 layer at 13x13 took 1 row x 8 channels (12 ms; 13 x 16 on 1008 x 13: 1.5 ms), and
    ShuffleNetV2's 58-channel layers one row of 58 (1.1 ms; 8 x 16 on 64: 0.19 ms)."""
    exact = contraction_tile(channels, row_extent, lanes, accumulators, most or accumulators)
    exact_score = _busy(*exact, lanes) if exact else 0.0
    if exact and exact_score >= accumulators / 2:
        return (*exact, channels, row_extent)
    best = (*exact, channels, row_extent) if exact else None
    best_score = exact_score
    for cols in tile_widths(lanes, accumulators):
        if cols < lanes:
            continue  # full vectors only: a padded channel is as dear as a real one
        padded_channels = -(-channels // cols) * cols
        # a one-wide output keeps one row: its extra rows would be all padding (no tile
        # gains from them), and its cut could not be inlined (_reads_one_of_many). Rows up to
        # `most`, as contraction_tile allows: SqueezeNet's 1000-class layer at 13x13 took
        # 5 x 32 on 1024 x 15 (15% of the grid padding, 1.84 ms) where 13 x 16 on 1008 x 13
        # pads 1% (1.47 ms; ONNX Runtime 1.16 ms), 1 thread
        most_rows = 1 if row_extent == 1 else (most or accumulators) // max(1, cols // lanes)
        for rows in range(1, most_rows + 1):
            padded_rows = -(-row_extent // rows) * rows
            useful = channels * row_extent / (padded_channels * padded_rows)
            score = _busy(rows, cols, lanes) * useful
            if score > best_score * 1.25 if best is exact else score > best_score:
                best, best_score = (rows, cols, padded_channels, padded_rows), score
    return best


# Accumulator vectors beyond this add little on x86 or NEON (FMA latency x issue width is
# about 8 in flight): counting them all made tiles pad rows they did not need.
_BUSY = 8


def _busy(rows: int, cols: int, lanes: int) -> float:
    """Accumulators a tile keeps busy, in full-width vectors, up to what hides FMA latency."""
    return min(_BUSY, rows * cols / lanes)


def extent(sch: Any, loop: Any) -> int:
    """A loop's static extent."""
    return int(sch.get(loop).extent)


def guarded(cls: type) -> type:
    """Wrap a rule's apply so a schedule error falls through to the next rule."""
    apply = cls.apply

    def safe_apply(self: Any, func: Any, target: Any, tunable: bool) -> Any:
        try:
            return apply(self, func, target, tunable)
        except Exception:  # a failed primitive: leave this kernel to the next rule
            return None

    cls.apply = safe_apply
    return cls


def write_back_at(sch: Any, block: Any, tile: Any, consumers: list[Any]) -> Any:
    """Accumulate `block`'s register tile locally and write it back once per `tile` iteration,
    with the elementwise `consumers` (bias, requantization, activation) computed in the
    write-back. Several consumers (GELU: add, divide, erf, add, multiply, multiply): inline
    all but the last, then reverse-inline the last (reverse-inlining each in turn gave
    "buffer used before its definition")."""
    write_back = sch.cache_write(block, 0, "global")
    flatten_rows(sch, block)
    sch.reverse_compute_at(write_back, tile)
    for consumer in consumers[:-1]:
        sch.compute_inline(consumer)
    if consumers and not _reads_one_of_many(sch, consumers[-1], write_back):
        sch.reverse_compute_inline(consumers[-1])
    return write_back


def _reads_one_of_many(sch: Any, consumer: Any, write_back: Any) -> bool:
    """Whether `consumer` reads the write-back's output at a constant index along an axis the
    output spans more than once: a cut of a padded grid to a one-wide output, whose unit axis
    dlight's normalize_prim_func turned into the constant 0. TVM 0.27's reverse_compute_inline
    takes such a consumer but drops the index's constraint (it keeps `T.where(i < 2)` for a
    cut to 2 of 3 rows, nothing for a cut to row 0): every padded row wrote the output, and
    the last, wrong one stayed (regnet_x_400mf's 1x1 layers at a 1x1 output). Such a
    consumer stays its own loop after the write-back."""
    from tvm.tirx.analysis import undefined_vars

    out = sch.get(write_back).writes[0].source
    for region in sch.get(consumer).reads:
        if not region.source.same_as(out):
            continue
        for r, size in zip(region.region, out.shape, strict=True):
            if int(size) > 1 and not undefined_vars(r.min) and int(r.extent) == 1:
                return True
    return False


def flatten_rows(sch: Any, block: Any) -> None:
    """View the accumulator buffer as [rows, channels]. Its region per tile is then exact, so
    it is compacted to the tile (rows x vectors, a stack array) instead of a bounding box over
    image rows (MobileNetV2: 57 KB from the heap, allocated in every tile iteration)."""
    shape = [int(d) for d in sch.get(block).writes[0].source.shape]
    if len(shape) <= 2:
        return

    def index_map(*idx: Any) -> Any:
        row = idx[0]
        for i, size in zip(idx[1:-1], shape[1:-1], strict=True):
            row = row * size + i
        return [row, idx[-1]]

    sch.transform_layout(block, ("write", 0), index_map)


def parallel_root(sch: Any, block: Any) -> None:
    """Compute a producer (e.g. padding) as its own parallel pass over its outer loops."""
    loops = sch.get_loops(block)
    if len(loops) > 1:
        sch.parallel(sch.fuse(*loops[:2]))
    elif loops:
        sch.parallel(loops[0])
