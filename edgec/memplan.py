"""Static arena planning: offsets for tensors with known sizes and lifetimes, no allocator.

A tensor lives from the step that writes it to the last step that reads it; two tensors may
share bytes only if their lifetimes do not overlap. Placement is greedy, each tensor at the
lowest offset that clears every placed tensor it is alive with, in several orders (by size as
TFLite Micro does, by size × lifetime, by first use, by lifetime, by the bytes it overlaps,
and a few seeded shuffles); the smallest arena wins.
The lower bound is the largest total size alive at any one step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ALIGN = 4  # word alignment: the DSP kernels load 32-bit words


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first: int  # step that writes it
    last: int  # last step that reads it

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class Plan:
    offsets: dict[str, int]
    arena_bytes: int
    lower_bound: int


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def lower_bound(buffers: list[Buffer]) -> int:
    """The most bytes alive at once: no plan can use less."""
    steps = {b.first for b in buffers} | {b.last for b in buffers}
    return max(
        (sum(_aligned(b.size) for b in buffers if b.first <= s <= b.last) for s in steps),
        default=0,
    )


ORDERS = (
    lambda b: (-b.size, b.first, b.name),
    lambda b: (-b.size * (b.last - b.first + 1), b.first, b.name),
    lambda b: (b.first, -b.size, b.name),
    lambda b: (-(b.last - b.first), -b.size, b.name),
)


SHUFFLES = 32


def plan(buffers: list[Buffer]) -> Plan:
    """Offsets (word-aligned) for every buffer: the best of the greedy orders."""
    pressure = {b.name: sum(o.size for o in buffers if o.overlaps(b)) for b in buffers}
    orders = [sorted(buffers, key=key) for key in ORDERS]
    orders.append(sorted(buffers, key=lambda b: (-pressure[b.name], -b.size, b.name)))
    rng = random.Random(0)
    for _ in range(SHUFFLES):
        orders.append(rng.sample(buffers, len(buffers)))
    best: dict[str, int] | None = None
    for ordered in orders:
        offsets = _greedy(ordered)
        if best is None or _top(buffers, offsets) < _top(buffers, best):
            best = offsets
    assert best is not None
    return Plan(best, _top(buffers, best), lower_bound(buffers))


def _top(buffers: list[Buffer], offsets: dict[str, int]) -> int:
    return max((offsets[b.name] + _aligned(b.size) for b in buffers), default=0)


def _greedy(ordered: list[Buffer]) -> dict[str, int]:
    placed: list[tuple[Buffer, int]] = []
    offsets: dict[str, int] = {}
    for buf in ordered:
        offset = 0
        for other, at in sorted(
            ((o, a) for o, a in placed if o.overlaps(buf)), key=lambda item: item[1]
        ):
            if offset + _aligned(buf.size) <= at:
                break  # fits in the gap below this one
            offset = max(offset, at + _aligned(other.size))
        placed.append((buf, offset))
        offsets[buf.name] = offset
    return offsets
