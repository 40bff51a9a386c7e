"""ResNet-8, the MLPerf Tiny image-classification reference (CIFAR-10): 32x32x3 in, 10 classes
out; a 3x3 conv of 16 channels, three residual stacks of 16, 32 and 64 channels (the last two
strided, with 1x1 projection shortcuts), average pooling and a linear head (about 12.5 M
multiply-accumulates; the reference's final softmax is left to the caller).

No CIFAR-10 is available offline, so the weights are seeded random and calibration uses
synthetic inputs of the right shape (seeded normal, as bench/mcu.py
and the tests make them): this example is for cost and bit-exactness on microcontrollers, not
accuracy.

    edgec build examples/resnet8.py:make_model --target cortex-m4 --quantize int8 \
        --calib-data digits --sensitivity 0
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 3, 32, 32)


def conv_bn(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)
    )


class Stack(nn.Module):
    """conv-BN-ReLU, conv-BN, plus the input (projected by a strided 1x1 conv when the shape
    changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 3, stride), nn.ReLU(), conv_bn(cout, cout, 3, 1)
        )
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride)
        )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet8(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 1),
            nn.ReLU(),
            Stack(16, 16, 1),
            Stack(16, 32, 2),
            Stack(32, 64, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model() -> nn.Module:
    """ResNet-8 with seeded random weights; BatchNorm statistics measured on seeded random
    inputs, so that every layer's output depends on the input."""
    torch.manual_seed(0)
    model = ResNet8()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            m.momentum = None  # a plain average over the batches below
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(64, *INPUT_SHAPE[1:], generator=generator))
    return model.eval()
