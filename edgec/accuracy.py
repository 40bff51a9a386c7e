"""Top-1 accuracy, parameters, MACs and weight bytes of a torch classifier, for stage reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn


def top1(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Percent of `x` whose highest logit is the label in `y` (eval mode, no gradients)."""
    import torch

    if len(x) == 0:
        return 0.0
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch):
                logits = model(torch.from_numpy(x[start : start + batch]))
                correct += int((logits.argmax(1).numpy() == y[start : start + batch]).sum())
    finally:
        model.train(was_training)
    return 100.0 * correct / len(x)


def stats(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Parameters, and multiply-accumulates of the convolutions and Linear layers on `example`."""
    import torch
    from torch import nn

    macs = 0

    def conv(layer: nn.modules.conv._ConvNd, _: object, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * (layer.in_channels // layer.groups) * int(np.prod(layer.kernel_size))

    def linear(layer: nn.Linear, _: object, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * layer.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return sum(p.numel() for p in model.parameters()), macs


def size_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers (BatchNorm statistics) as stored, zeros included."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
