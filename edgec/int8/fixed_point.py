"""edgec's int8 arithmetic, shared by every back-end (numpy here, TVM, C).

An int8 tensor carries one scale (symmetric, zero point 0: padding stays exact and no
zero-point correction terms are needed). Requantization is fixed-point and exact:

    out = clamp((acc × M + 2^(n−1)) >> n, lo, hi)        (64-bit product, arithmetic shift)

with M in [2^30, 2^31) and n the shift, so M × 2^−n is the real multiplier to 31 bits. A fused
ReLU or clip is just lo/hi.
"""

from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
SOFTMAX_BITS = 16  # exp(-d * scale) in the softmax table, as a fixed-point fraction


def quantize_multiplier(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point (M, n) per element with M × 2^−n ≈ real, M in [2^30, 2^31) (0 for 0)."""
    real = np.asarray(real, dtype=np.float64)
    exponent = np.floor(np.log2(np.where(real > 0, real, 1.0)))
    shift = (30 - exponent).astype(np.int64)
    multiplier = np.round(real * np.exp2(shift.astype(np.float64))).astype(np.int64)
    overflow = multiplier >= 2**31  # rounding reached 2^31: one bit less precision
    multiplier = np.where(overflow, multiplier // 2, multiplier)
    shift = np.where(overflow, shift - 1, shift)
    zero = real <= 0
    multiplier = np.where(zero, 0, multiplier)
    shift = np.where(zero, 31, shift)
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(f"requantization multiplier out of range: {real.max():.3g}")
    return multiplier, shift


def requantize(acc: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, lo: int, hi: int):
    """clamp((acc × M + 2^(n−1)) >> n, lo, hi) as int8, in int64 like every back-end."""
    acc = acc.astype(np.int64)
    rounding = np.left_shift(np.int64(1), shift - 1)
    return np.clip((acc * multiplier + rounding) >> shift, lo, hi).astype(np.int8)


def quantize(x: np.ndarray, scale: float) -> np.ndarray:
    """float32 → int8: round half to even of x × (1/scale), saturated."""
    inverse = np.float32(1.0 / scale)
    return np.clip(np.round(x.astype(np.float32) * inverse), INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    return q.astype(np.float32) * np.float32(scale)


# |acc + bias| below this keeps every int32 step of `requantize_int32` exact
INT32_HEADROOM = 1 << 30


def int32_form(
    multiplier: np.ndarray, shift: np.ndarray, bound: int
) -> tuple[int, np.ndarray] | None:
    """How `requantize_int32` computes a layer whose |acc + bias| stays below `bound`: (doubled,
    k per channel), or None where int32 cannot be exact (keep the int64 form).

    With y = acc + bias, 0 <= M < 2^31 and n = 31 + k, k >= 1:
        floor((y·M + 2^(n-1)) / 2^n) = floor((floor(y·M / 2^31) + 2^(k-1)) / 2^k)
    (write y·M = q·2^31 + r, 0 <= r < 2^31; floor((A + f) / 2^k) = floor(A / 2^k) for an integer
    A and 0 <= f < 1). floor(y·M / 2^31) is NEON's `sqdmulh` (it saturates only for
    -2^31 · -2^31), and the rounding add and shift stay in int32 while |y| < 2^30. A layer with
    a channel at n = 31 (k = 0) takes 2y and k + 1 instead: the same identity with 2^30."""
    live = multiplier != 0  # a zero multiplier gives 0 whatever its shift
    if np.any(multiplier < 0) or np.any(multiplier >= 2**31) or np.any(shift[live] < 31):
        return None
    if np.all(shift[live] >= 32) and np.all(shift <= 62) and bound < INT32_HEADROOM:
        return 0, np.where(live, shift - 31, 1)
    if np.all(shift[live] <= 61) and 2 * bound < INT32_HEADROOM:
        return 1, np.where(live, shift - 30, 1)
    return None


def requantize_int32(
    y: np.ndarray, multiplier: np.ndarray, k: np.ndarray, doubled: int, lo: int, hi: int
) -> np.ndarray:
    """`requantize` of y = acc + bias the way the Arm kernels compute it (see `int32_form`): the
    same int8 values. Every intermediate fits int32 (asserted)."""
    y = y.astype(np.int64) << doubled
    high = (y * multiplier) >> 31  # sqdmulh
    out = (high + (np.int64(1) << (k - 1))) >> k
    assert np.abs(y).max(initial=0) < INT32_HEADROOM and np.abs(high).max(initial=0) < 2**31
    return np.clip(out, lo, hi).astype(np.int8)


def add_int32_form(multipliers: np.ndarray, shift: int) -> tuple[int, ...] | None:
    """(h0, l0, h1, l1, rounding, k) for `rescale_add_int32`, or None where int32 cannot be
    exact (keep the int64 form): each multiplier split as M = h·2^16 + l, 0 <= l < 2^16.

    For int8 a, b and 0 <= M0, M1 < 2^31, with A = a·h0 + b·h1 (|A| <= 2^23) and
    B = a·l0 + b·l1 (|B| <= 2^24), the residual add's (a·M0 + b·M1 + 2^(s-1)) >> s is
    (A + (B >> 16) + 2^(s-17)) >> (s - 16) exactly (a floor of a floor over 2^16; the
    rounding constant is a multiple of 2^16 for s >= 17), every step in int32 for s <= 47.
    NEON has no 64-bit multiply, min or max: the int64 form cost ~25 instructions per 4 outputs."""
    m = np.asarray(multipliers, dtype=np.int64)
    if m.shape != (2,) or np.any(m < 0) or np.any(m >= 2**31) or not 17 <= shift <= 47:
        return None
    (h0, h1), (l0, l1) = (m >> 16).tolist(), (m & 0xFFFF).tolist()
    return h0, l0, h1, l1, 1 << (shift - 17), shift - 16


def rescale_add_int32(
    a: np.ndarray, b: np.ndarray, form: tuple[int, ...], lo: int, hi: int
) -> np.ndarray:
    """The residual add of two int8 tensors the way the Arm kernels compute it (see
    `add_int32_form`): the same int8 values as the int64 form. Intermediates fit int32
    (asserted)."""
    h0, l0, h1, l1, rounding, k = form
    a, b = a.astype(np.int64), b.astype(np.int64)
    high, low = a * h0 + b * h1, a * l0 + b * l1
    total = high + (low >> 16) + rounding
    assert max(np.abs(x).max(initial=0) for x in (high, low, total)) < 2**31
    return np.clip(total >> k, lo, hi).astype(np.int8)
