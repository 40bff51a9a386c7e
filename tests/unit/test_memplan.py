"""The static arena planner: valid (no two live tensors share bytes), close to optimal."""

from __future__ import annotations

import random

import pytest

from edgec.memplan import ALIGN, Buffer, lower_bound, plan


def optimum(buffers: list[Buffer]) -> int:
    """The smallest arena by exhaustive search (small inputs only).

    Some optimal packing has every buffer at 0 or directly on top of a buffer it overlaps in
    time (push each one down until it touches), so only those offsets need trying.
    """
    best = sum(_aligned(b.size) for b in buffers)

    def search(remaining: list[Buffer], chosen: list[tuple[Buffer, int]], top: int) -> None:
        nonlocal best
        if top >= best:
            return
        if not remaining:
            best = top
            return
        for i, buf in enumerate(remaining):  # any buffer may be the next one up
            rest = remaining[:i] + remaining[i + 1 :]
            candidates = {0} | {at + _aligned(o.size) for o, at in chosen if o.overlaps(buf)}
            for offset in sorted(candidates):
                end = offset + _aligned(buf.size)
                clash = any(
                    o.overlaps(buf) and offset < at + _aligned(o.size) and at < end
                    for o, at in chosen
                )
                if not clash:
                    search(rest, [*chosen, (buf, offset)], max(top, end))

    search(list(buffers), [], 0)
    return best


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


CASES = [
    pytest.param(
        [Buffer("a", 8, 0, 1), Buffer("b", 8, 1, 2), Buffer("c", 8, 2, 3)], 16, id="chain"
    ),
    pytest.param([Buffer("a", 16, 0, 0), Buffer("b", 16, 1, 1)], 16, id="disjoint-reuse"),
    pytest.param(
        [Buffer("x", 4, 0, 3), Buffer("y", 12, 1, 1), Buffer("z", 12, 2, 2)], 16, id="long-lived"
    ),
    pytest.param([Buffer("odd", 5, 0, 1), Buffer("w", 3, 1, 1)], 12, id="word-aligned"),
]


@pytest.mark.parametrize(("buffers", "arena"), CASES)
def test_known_graphs_get_the_optimal_arena(buffers: list[Buffer], arena: int) -> None:
    result = plan(buffers)
    assert result.arena_bytes == arena == optimum(buffers)
    assert all(offset % 4 == 0 for offset in result.offsets.values())


def _random_graphs(count: int) -> list[list[Buffer]]:
    rng = random.Random(0)
    graphs = []
    for _ in range(count):
        buffers = []
        for i in range(rng.randint(1, 5)):
            first = rng.randint(0, 5)
            buffers.append(
                Buffer(f"t{i}", rng.choice([4, 8, 12, 20, 32]), first, rng.randint(first, 6))
            )
        graphs.append(buffers)
    return graphs


def test_random_small_graphs_are_valid_and_within_ten_percent_of_brute_force() -> None:
    worst = 1.0
    for buffers in _random_graphs(200):
        result = plan(buffers)
        best = optimum(buffers)
        assert lower_bound(buffers) <= best <= result.arena_bytes
        worst = max(worst, result.arena_bytes / best)
        for a in buffers:
            for b in buffers:
                if a is not b and a.overlaps(b):
                    lo, hi = sorted([(result.offsets[a.name], a), (result.offsets[b.name], b)],
                                    key=lambda item: item[0])  # fmt: skip
                    assert lo[0] + lo[1].size <= hi[0]
    assert worst <= 1.1
