"""Top-1 accuracy, parameters, MACs and weight bytes of a torch classifier, for stage reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgec.datasets import Dataset


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
    from torch import nn

    macs = 0

    def conv(layer: nn.modules.conv._ConvNd, _: object, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * (layer.in_channels // layer.groups) * int(np.prod(layer.kernel_size))

    def linear(layer: nn.Linear, _: object, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * layer.in_features

    hooks: list[tuple[nn.Module, Callable[..., None]]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            hooks.append((module, conv))
        elif isinstance(module, nn.Linear):
            hooks.append((module, linear))
    forward_with_hooks(model, example, hooks)
    return count_params(model), macs


def count_params(model: nn.Module) -> int:
    """Parameters as the exported graph holds them: BatchNorm folded into the convolution
    before it (as the ONNX export does), so every figure counts one model one way."""
    return sum(p.numel() for p in deployed(model).parameters())


def forward_with_hooks(
    model: nn.Module, example: torch.Tensor, hooks: list[tuple[nn.Module, Callable[..., None]]]
) -> None:
    """One forward pass in eval mode without gradients, with forward hooks on some layers;
    the hooks are removed and the model's training mode restored afterwards."""
    import torch

    handles = [layer.register_forward_hook(hook) for layer, hook in hooks]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def size_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers (BatchNorm statistics) as stored, zeros included."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class ModelFacts:
    """What a compression stage left: size, cost and (with data) validation top-1."""

    params: int
    macs: int
    size_bytes: int
    accuracy: float | None  # percent, on the validation split; None without data

    def to_json(self) -> dict[str, Any]:
        accuracy = None if self.accuracy is None else round(self.accuracy, 2)
        return {
            "params": self.params,
            "macs": self.macs,
            "size_bytes": self.size_bytes,
            "accuracy": accuracy,
        }


def facts(model: nn.Module, example: torch.Tensor, data: Dataset | None) -> ModelFacts:
    """Parameters, MACs, weight bytes and (with data) validation top-1 of a torch model.

    Parameters and bytes are counted as the exported graph holds them (see count_params), so
    that a stage's row and the report's summary count one model one way."""
    params, macs = stats(model, example)
    accuracy = None if data is None else top1(model, data.val_x, data.val_y)
    return ModelFacts(params, macs, size_bytes(deployed(model)), accuracy)


def deployed(model: nn.Module) -> nn.Module:
    """A copy with each BatchNorm that follows a convolution folded into it (eval mode); the
    model itself where torch.fx cannot trace it."""
    from torch.fx.experimental.optimization import fuse

    was_training = model.training
    try:
        return fuse(model.eval(), inplace=False)
    except Exception:  # untraceable control flow: count the model as it is
        return model
    finally:
        model.train(was_training)


def onnx_top1(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Percent of `x` an exported ONNX model (batch 1) classifies as `y`, in ONNX Runtime."""
    from edgec.reference import session

    sess = session(path, 1)
    name = sess.get_inputs()[0].name
    correct = sum(
        int(np.argmax(sess.run(None, {name: x[i : i + 1]})[0]) == y[i]) for i in range(len(x))
    )
    return 100.0 * correct / len(x) if len(x) else 0.0
