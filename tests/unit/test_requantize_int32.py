"""The Arm kernels' int32 requantization (sqdmulh + rounding shift) gives the int64 reference's
int8 values, bit for bit, at the edges: multipliers near 2^31, shifts 31 and above, the most
negative sums the bound allows, zero multipliers."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.int8.fixed_point import (
    INT32_HEADROOM,
    int32_form,
    quantize_multiplier,
    requantize,
    requantize_int32,
)

TOP = 2**31 - 1  # the largest multiplier quantize_multiplier gives
# (multipliers, shifts, |acc + bias| bound, the form int32_form picks: doubled or not)
CASES = [
    pytest.param([TOP, 2**30, 1_234_567_890], [32, 40, 62], INT32_HEADROOM - 1, 0, id="n>31"),
    pytest.param([TOP, 2**30, TOP, 0], [31, 31, 33, 31], INT32_HEADROOM // 2 - 1, 1, id="n=31-2y"),
    pytest.param([TOP, TOP, 2**30 + 1], [31, 61, 45], 75_000_000, 1, id="n=31-and-61"),
    pytest.param([0, 0], [31, 31], 1000, 0, id="all-zero-multipliers"),
]


def _edges(bound: int, rng: np.random.Generator) -> np.ndarray:
    """The extremes of y = acc + bias, around 0 and around every power of 2, and random."""
    powers = [p for p in 2 ** np.arange(31, dtype=np.int64) if p < bound]
    near = [v + d for p in powers for v in (p, -p) for d in (-1, 0, 1)]
    values = [-bound + 1, bound - 1, -1, 0, 1, *near, *rng.integers(-bound + 1, bound, 5000)]
    return np.clip(np.array(values, np.int64), -bound + 1, bound - 1)


@pytest.mark.parametrize(("multipliers", "shifts", "bound", "doubled"), CASES)
def test_int32_requantization_equals_the_int64_reference(
    multipliers: list[int], shifts: list[int], bound: int, doubled: int
) -> None:
    m, n = np.array(multipliers, np.int64), np.array(shifts, np.int64)
    form = int32_form(m, n, bound)
    assert form is not None and form[0] == doubled
    y = _edges(bound, np.random.default_rng(0))[:, None]  # every value on every channel
    for lo, hi in ((-128, 127), (0, 127), (0, 42)):
        want = requantize(y, m, n, lo, hi)
        assert np.array_equal(requantize_int32(y, m, form[1], form[0], lo, hi), want)


def test_int32_requantization_of_quantize_multipliers_equals_the_reference() -> None:
    rng = np.random.default_rng(1)
    m, n = quantize_multiplier(np.exp(rng.uniform(np.log(1e-6), np.log(0.9999), 64)))
    form = int32_form(m, n, 40_000_000)
    assert form is not None
    y = rng.integers(-40_000_000, 40_000_000, (1000, 64))
    assert np.array_equal(requantize_int32(y, m, form[1], form[0], -128, 127),
                          requantize(y, m, n, -128, 127))  # fmt: skip


# where int32 cannot be exact, the int64 form stays
REFUSED = [
    pytest.param([2**30], [30], 1000, id="multiplier-above-1"),
    pytest.param([TOP], [32], INT32_HEADROOM, id="sums-too-large"),
    pytest.param([TOP, TOP], [31, 32], INT32_HEADROOM // 2, id="2y-sums-too-large"),
    pytest.param([TOP, TOP], [31, 62], 1000, id="n=31-with-n=62"),
    pytest.param([2**31], [32], 1000, id="multiplier-2^31"),
]


@pytest.mark.parametrize(("multipliers", "shifts", "bound"), REFUSED)
def test_int32_form_refuses_what_int32_cannot_compute_exactly(
    multipliers: list[int], shifts: list[int], bound: int
) -> None:
    assert int32_form(np.array(multipliers), np.array(shifts), bound) is None


# (multipliers, shift, lo, hi, whether int32 is exact): the residual add's two rescales
ADD_CASES = [
    pytest.param([TOP, TOP], 31, -128, 127, True, id="both-top-shift-31"),
    pytest.param([TOP, 2**30 + 12345], 32, 0, 127, True, id="relu"),
    pytest.param([2**16 - 1, 2**16], 17, -128, 127, True, id="low-halves-shift-17"),
    pytest.param([1_234_567_890, 987_654_321], 47, -128, 6, True, id="shift-47-clipped"),
    pytest.param([0, TOP], 40, -128, 127, True, id="zero-multiplier"),
    pytest.param([TOP, TOP], 48, -128, 127, False, id="shift-48-stays-int64"),
    pytest.param([TOP, TOP], 16, -128, 127, False, id="shift-16-stays-int64"),
    pytest.param([2**31, 1], 32, -128, 127, False, id="multiplier-2^31-stays-int64"),
]


@pytest.mark.parametrize(("multipliers", "shift", "lo", "hi", "exact"), ADD_CASES)
def test_int32_residual_add_equals_the_int64_reference_for_every_int8_pair(
    multipliers: list[int], shift: int, lo: int, hi: int, exact: bool
) -> None:
    from edgec.int8.fixed_point import add_int32_form, rescale_add_int32

    form = add_int32_form(np.array(multipliers, np.int64), shift)
    assert (form is not None) == exact
    if form is None:
        return
    a, b = (v.ravel() for v in np.meshgrid(*[np.arange(-128, 128, dtype=np.int8)] * 2))
    ma, mb = multipliers
    total = a.astype(np.int64) * ma + b.astype(np.int64) * mb + (np.int64(1) << (shift - 1))
    want = np.clip(total >> shift, lo, hi).astype(np.int8)
    np.testing.assert_array_equal(rescale_add_int32(a, b, form, lo, hi), want)
