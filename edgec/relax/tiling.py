"""Tiling helpers shared by the CPU schedule rules (edgec.relax.cpu_schedules, int8_dot)."""

from __future__ import annotations

from typing import Any


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
    if consumers:
        sch.reverse_compute_inline(consumers[-1])
    return write_back


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
