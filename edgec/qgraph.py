"""The int8 graph: edgec's one source of truth for a quantized model, and its numpy reference.

A QGraph is a list of nodes over named tensors. An int8 tensor carries one scale (symmetric,
zero point 0: padding stays exact and no zero-point correction terms are needed); weights are
int8 with one scale per output channel; biases are int32 at scale (input scale × weight scale).

Requantization is fixed-point and exact in every back-end (numpy here, TVM, C):

    out = clamp((acc × M + 2^(n−1)) >> n, lo, hi)        (64-bit product, arithmetic shift)

with M in [2^30, 2^31) and n the shift, so M × 2^−n is the real multiplier to 31 bits. A fused
ReLU or clip is just lo/hi. The reference computes int8 × int8 sums in float64, which is exact
for any layer with fewer than 2^38 products per output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
# Ops and what they do; "int8" nodes compute on int8 tensors, "float" ones on float32.
# requantize their results; each can run in int8 or stay float
COMPUTE_OPS = ("conv", "dense", "add", "global_avgpool", "avgpool", "concat", "softmax")
SOFTMAX_BITS = 16  # exp(-d * scale) in the softmax table, as a fixed-point fraction
CAST_OPS = ("quantize", "dequantize")


@dataclass(frozen=True)
class QNode:
    """One operator. `params` holds its constants (weights, biases, multipliers), `attrs` its
    settings (strides, pads, groups, kernel, shape, lo/hi)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    output: str
    precision: str  # "int8" or "float"
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QGraph:
    """Nodes in execution order; `scales` for every int8 tensor; float32 input and outputs."""

    nodes: tuple[QNode, ...]
    scales: dict[str, float]
    shapes: dict[str, tuple[int, ...]]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def int8_ops(self) -> int:
        return sum(n.op in COMPUTE_OPS and n.precision == "int8" for n in self.nodes)

    @property
    def float_ops(self) -> int:
        return sum(n.op in COMPUTE_OPS and n.precision == "float" for n in self.nodes)

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for n in self.nodes for k, a in n.params.items() if k in ("w", "b"))


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


def run(graph: QGraph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The graph's outputs on `inputs` (any batch size)."""
    values = trace(graph, inputs)
    return [values[name] for name in graph.outputs]


def trace(graph: QGraph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the graph on `inputs`."""
    values: dict[str, np.ndarray] = dict(zip(graph.inputs, inputs, strict=True))
    for node in graph.nodes:
        args = [values[name] for name in node.inputs]
        values[node.output] = _KERNELS[node.op](node, graph, *args)
    return values


def _conv(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    acc = conv_sums(x, node.params["w"], a["strides"], a["pads"], a["dilations"], a["groups"])
    acc += node.params["b"].astype(np.float64).reshape(1, -1, 1, 1)
    return _finish(node, acc, channel_axis=1)


EXACT_F32_TERMS = 1024  # int8 products are < 2^14: float32 sums of up to 1024 are exact
BLOCK_ELEMENTS = 1 << 23  # one im2col block (32 MB in float32): memory stays bounded


def conv_sums(
    x: np.ndarray,
    w: np.ndarray,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    groups: int,
) -> np.ndarray:
    """Each output's sum of input × weight over its window, (N, O, OH, OW) in float64, with
    zero padding. int8 × int8 sums are exact: blocks of at most 1024 products are summed by a
    float32 GEMM (every partial sum is an integer below 2^24) and the blocks in float64."""
    out_channels, per_group, kh, kw = w.shape
    exact = x.dtype == np.int8 and w.dtype == np.int8 and kh * kw <= EXACT_F32_TERMS
    dtype = np.float32 if exact else np.float64
    top, left, bottom, right = pads
    x = np.pad(x.astype(dtype), ((0, 0), (0, 0), (top, bottom), (left, right)))
    w = w.astype(dtype)
    (dh, dw), (sh, sw) = dilations, strides
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    windows = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # N, C, OH, OW, kh, kw
    n, _, oh, ow = windows.shape[:4]
    per_out = out_channels // groups
    acc = np.zeros((n, groups, per_out, oh, ow))
    if per_group == 1:  # depthwise: one multiply-add per tap, no im2col
        taps = w.reshape(groups, per_out, kh, kw)
        for i in range(kh):
            for j in range(kw):
                tap = windows[..., i, j][:, :, None]  # N, G, 1, OH, OW
                acc += tap * taps[None, :, :, i, j, None, None]
        return acc.reshape(n, out_channels, oh, ow)
    step = max(1, EXACT_F32_TERMS // (kh * kw)) if exact else per_group  # channels per block
    for g in range(groups):
        for c in range(0, per_group, step):
            channels = slice(g * per_group + c, g * per_group + min(c + step, per_group))
            block = w[g * per_out : (g + 1) * per_out, c : c + step].reshape(per_out, -1)
            images = max(1, BLOCK_ELEMENTS // (block.shape[1] * oh * ow))
            for start in range(0, n, images):
                part = windows[start : start + images, channels].transpose(0, 2, 3, 1, 4, 5)
                cols = part.reshape(-1, block.shape[1])  # im2col: one copy, one GEMM
                sums = (cols @ block.T).reshape(len(part), oh, ow, per_out)
                acc[start : start + images, g] += sums.transpose(0, 3, 1, 2)
    return acc.reshape(n, out_channels, oh, ow)


def _dense(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    acc = x.astype(np.float64) @ node.params["w"].astype(np.float64).T
    acc += node.params["b"].astype(np.float64)
    return _finish(node, acc, channel_axis=1)


def _add(node: QNode, graph: QGraph, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if node.precision == "float":
        return _activate(node, a + b)
    p = node.params
    total = a.astype(np.int64) * p["ma"] + b.astype(np.int64) * p["mb"]
    rounding = np.int64(1) << (p["n"] - 1)
    lo, hi = node.attrs["lo"], node.attrs["hi"]
    return np.clip((total + rounding) >> p["n"], lo, hi).astype(np.int8)


def _global_avgpool(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    if node.precision == "float":
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True)
    p, a = node.params, node.attrs
    return requantize(total, p["m"], p["n"], a["lo"], a["hi"])


def _windows(x: np.ndarray, a: dict[str, Any], pad: float) -> np.ndarray:
    """N, C, OH, OW, kh, kw views of the padded input."""
    top, left, bottom, right = a["pads"]
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad)
    windows = np.lib.stride_tricks.sliding_window_view(x, tuple(a["kernel"]), axis=(2, 3))
    sh, sw = a["strides"]
    return windows[:, :, ::sh, ::sw]


def _avgpool(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    """Average pooling whose count is the whole window (no padding, or padding counted)."""
    windows = _windows(x, node.attrs, 0)
    if node.precision == "float":
        return windows.mean(axis=(4, 5), dtype=np.float32)
    total = windows.astype(np.int64).sum(axis=(4, 5))
    p, a = node.params, node.attrs
    return requantize(total, p["m"], p["n"], a["lo"], a["hi"])


def _concat(node: QNode, graph: QGraph, *xs: np.ndarray) -> np.ndarray:
    """Channel concatenation; int8 inputs are first brought to the output's scale."""
    if node.precision == "float":
        return np.concatenate(xs, axis=1)
    p = node.params
    rounding = np.int64(1) << (p["n"] - 1)
    parts = [
        np.clip((x.astype(np.int64) * m + rounding) >> p["n"], INT8_MIN, INT8_MAX)
        for x, m in zip(xs, p["m"], strict=True)
    ]
    return np.concatenate(parts, axis=1).astype(np.int8)


def _softmax(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis. int8: e = table[max - x] (exp to 16 fractional bits), then
    out = round(127 * e / sum(e)) in integers: the output scale is 1/127."""
    if node.precision == "float":
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)
    d = x.max(axis=-1, keepdims=True).astype(np.int64) - x.astype(np.int64)
    e = node.params["table"][d]
    total = e.sum(axis=-1, keepdims=True)
    return np.clip((2 * INT8_MAX * e + total) // (2 * total), 0, INT8_MAX).astype(np.int8)


def _maxpool(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    top, left, bottom, right = a["pads"]
    pad = INT8_MIN if x.dtype == np.int8 else -np.inf
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad)
    windows = np.lib.stride_tricks.sliding_window_view(x, tuple(a["kernel"]), axis=(2, 3))
    sh, sw = a["strides"]
    return windows[:, :, ::sh, ::sw].max(axis=(4, 5))


def _reshape(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *node.attrs["shape"][1:])  # the batch stays free


def _quantize(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    return quantize(x, graph.scales[node.output])


def _dequantize(node: QNode, graph: QGraph, q: np.ndarray) -> np.ndarray:
    return dequantize(q, graph.scales[node.inputs[0]])


def _finish(node: QNode, acc: np.ndarray, channel_axis: int) -> np.ndarray:
    """Requantize an int8 node's int32 sums per channel; apply a float node's activation."""
    if node.precision == "float":
        return _activate(node, acc.astype(np.float32))
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    p, a = node.params, node.attrs
    return requantize(acc, p["m"].reshape(shape), p["n"].reshape(shape), a["lo"], a["hi"])


def _activate(node: QNode, x: np.ndarray) -> np.ndarray:
    low, high = node.attrs.get("clip", (None, None))
    return x if low is None and high is None else np.clip(x, low, high).astype(np.float32)


_KERNELS = {
    "conv": _conv,
    "dense": _dense,
    "add": _add,
    "global_avgpool": _global_avgpool,
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "concat": _concat,
    "softmax": _softmax,
    "reshape": _reshape,
    "quantize": _quantize,
    "dequantize": _dequantize,
}
