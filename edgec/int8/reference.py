"""The numpy reference: what every int8 back-end must compute, bit for bit.

It computes int8 × int8 sums in float64, which is exact for any layer with fewer than 2^38
products per output, and requantizes with edgec.int8.fixed_point like the back-ends do.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from edgec.int8.fixed_point import INT8_MAX, INT8_MIN, dequantize, quantize, requantize
from edgec.int8.graph import QGraph, QNode
from edgec.int8.ops import Clip, FloatOp, Requantize, Window


def run(graph: QGraph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The graph's outputs on `inputs` (any batch size)."""
    values = trace(graph, inputs)
    return [values[name] for name in graph.outputs]


def trace(graph: QGraph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor of the graph on `inputs`."""
    batch = (graph.shapes.get(graph.inputs[0]) or (1,))[0] or 1
    if len(inputs[0]) > batch and any(n.op == "float_op" for n in graph.nodes):
        # a float island is an ONNX node of the batch-sized model (a Reshape to (1, ...)):
        # the graph runs one model-sized batch at a time
        parts = [trace(graph, [x[k : k + batch] for x in inputs])
                 for k in range(0, len(inputs[0]), batch)]  # fmt: skip
        return {name: np.concatenate([p[name] for p in parts]) if v.ndim else v
                for name, v in parts[0].items()}  # fmt: skip
    values: dict[str, np.ndarray] = dict(zip(graph.inputs, inputs, strict=True))
    for node in graph.nodes:
        args = [values[name] for name in node.inputs]
        values[node.output] = KERNELS[node.op](node, graph, *args)
    return values


def _conv(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    w = a.weights.values
    acc = conv_sums(x, w, a.window.strides, a.window.pads, a.dilations, a.groups)
    acc += a.weights.bias.astype(np.float64).reshape(1, -1, 1, 1)
    return _finish(a.out, acc, channel_axis=1)


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
    a = node.attrs
    acc = x.astype(np.float64) @ a.weights.values.astype(np.float64).T
    acc += a.weights.bias.astype(np.float64)
    return _finish(a.out, acc, channel_axis=-1)


def _add(node: QNode, graph: QGraph, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = node.attrs.out
    if isinstance(out, Clip):
        return _activate(out, a + b)
    ma, mb = out.multipliers
    total = a.astype(np.int64) * ma + b.astype(np.int64) * mb
    rounding = np.int64(1) << (out.shift - 1)
    return np.clip((total + rounding) >> out.shift, out.lo, out.hi).astype(np.int8)


def _global_avgpool(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    out = node.attrs.out
    if out is None:
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True)
    return requantize(total, out.multiplier, out.shift, out.lo, out.hi)


def _windows(x: np.ndarray, window: Window, pad: float) -> np.ndarray:
    """N, C, OH, OW, kh, kw views of the padded input."""
    top, left, bottom, right = window.pads
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad)
    windows = np.lib.stride_tricks.sliding_window_view(x, window.kernel, axis=(2, 3))
    sh, sw = window.strides
    return windows[:, :, ::sh, ::sw]


def _avgpool(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    windows = _windows(x, a.window, 0)
    if a.out is None:
        return windows.mean(axis=(4, 5), dtype=np.float32)
    total = windows.astype(np.int64).sum(axis=(4, 5))
    return requantize(total, a.out.multiplier, a.out.shift, a.out.lo, a.out.hi)


def _maxpool(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    pad = INT8_MIN if x.dtype == np.int8 else -np.inf
    return _windows(x, node.attrs.window, pad).max(axis=(4, 5))


def _concat(node: QNode, graph: QGraph, *xs: np.ndarray) -> np.ndarray:
    """int8 inputs are first brought to the output's scale."""
    out, axis = node.attrs.out, node.attrs.axis
    if out is None:
        return np.concatenate(xs, axis=axis)
    rounding = np.int64(1) << (out.shift - 1)
    parts = [
        np.clip((x.astype(np.int64) * m + rounding) >> out.shift, out.lo, out.hi)
        for x, m in zip(xs, out.multipliers, strict=True)
    ]
    return np.concatenate(parts, axis=axis).astype(np.int8)


def _softmax(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    table = node.attrs.table
    if table is None:
        shifted = np.exp(x - x.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)
    d = x.max(axis=-1, keepdims=True).astype(np.int64) - x.astype(np.int64)
    e = table[d]
    total = e.sum(axis=-1, keepdims=True)
    return np.clip((2 * INT8_MAX * e + total) // (2 * total), 0, INT8_MAX).astype(np.int8)


def _reshape(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], *node.attrs.shape[1:])  # the batch stays free


def _transpose(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(node.attrs.perm))


def _slice(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    a = node.attrs
    index = [slice(None)] * x.ndim
    index[a.axis] = slice(a.start, a.stop, a.step)
    return np.ascontiguousarray(x[tuple(index)])


_SESSIONS: weakref.WeakKeyDictionary[FloatOp, Any] = weakref.WeakKeyDictionary()


def _float_op(node: QNode, graph: QGraph, *xs: np.ndarray) -> np.ndarray:
    """The ONNX node, in ONNX Runtime."""
    from edgec.reference import session

    a = node.attrs
    if a not in _SESSIONS:
        _SESSIONS[a] = session(a.model, 1)
    sess = _SESSIONS[a]
    feed = {spec.name: x for spec, x in zip(sess.get_inputs(), xs, strict=True)}
    return sess.run(None, feed)[0]


def _quantize(node: QNode, graph: QGraph, x: np.ndarray) -> np.ndarray:
    return quantize(x, graph.scales[node.output])


def _dequantize(node: QNode, graph: QGraph, q: np.ndarray) -> np.ndarray:
    return dequantize(q, graph.scales[node.inputs[0]])


def _finish(out: Requantize | Clip, acc: np.ndarray, channel_axis: int) -> np.ndarray:
    """Requantize an int8 layer's sums per channel; apply a float layer's activation."""
    if isinstance(out, Clip):
        return _activate(out, acc.astype(np.float32))
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m, n = out.multiplier.reshape(shape), out.shift.reshape(shape)
    return requantize(acc, m, n, out.lo, out.hi)


def _activate(clip: Clip, x: np.ndarray) -> np.ndarray:
    if clip.low is None and clip.high is None:
        return x
    return np.clip(x, clip.low, clip.high).astype(np.float32)


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "conv": _conv,
    "dense": _dense,
    "add": _add,
    "global_avgpool": _global_avgpool,
    "avgpool": _avgpool,
    "concat": _concat,
    "softmax": _softmax,
    "maxpool": _maxpool,
    "reshape": _reshape,
    "transpose": _transpose,
    "slice": _slice,
    "float_op": _float_op,
    "quantize": _quantize,
    "dequantize": _dequantize,
}
