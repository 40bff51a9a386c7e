"""Which kernels a tuning run searches: those whose default schedule takes a real share of the
model's time (measured before the search), so the trials go where a search can save time."""

from __future__ import annotations

import pytest

from edgec.relax.tune import worth_searching

# (default seconds per call, None = not measured; calls per inference; searched)
CASES = [
    pytest.param(
        [2.6e-3, 5e-6, 1.2e-3, 3e-5, 8e-6],
        [3, 1, 2, 4, 1],
        [True, False, True, False, False],
        id="resnet-like-small-kernels-not-searched",
    ),
    pytest.param(
        [1e-3, None, 1e-6], [1, 1, 1], [True, True, False], id="unmeasured-kernels-searched"
    ),
    pytest.param([1e-4] * 60, [1] * 60, [True] * 60, id="many-equal-kernels-all-searched"),
    pytest.param([None, None], [1, 1], [True, True], id="nothing-measured-all-searched"),
    pytest.param([5e-4, 1e-5], [1, 100], [True, True], id="calls-count-with-the-time"),
]


@pytest.mark.parametrize(("seconds", "calls", "searched"), CASES)
def test_tuning_searches_the_kernels_worth_its_trials(
    seconds: list[float | None], calls: list[float], searched: list[bool]
) -> None:
    assert worth_searching(seconds, calls) == searched
