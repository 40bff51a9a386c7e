"""A small image classifier (CIFAR-sized input): conv-BN-ReLU blocks, one residual block, one
depthwise-separable block, global pooling and a linear head. Used by the README's first command.

    edgec build examples/cnn.py:make_model --target rpi4
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 3, 32, 32)


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    kernel = 3
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16),
            conv_bn(16, 32, stride=2),
            Residual(32),
            conv_bn(32, 32, stride=2, groups=32),  # depthwise
            nn.Conv2d(32, 64, 1, bias=False),  # pointwise
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def make_model() -> nn.Module:
    """The example network with fixed random weights (no download: the machine is offline)."""
    torch.manual_seed(0)
    model = SmallCNN()
    # Non-trivial BatchNorm statistics, so the folded weights are not the identity.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()
