"""A keyword-spotting DS-CNN (Zhang et al., "Hello Edge", the small variant): 49 MFCC frames x
10 coefficients in, 12 keywords out; a 10x4 strided conv, four depthwise-separable blocks of 64
channels, global pooling and a linear head (about 2.7 M multiply-accumulates).

No speech data set is available offline, so the weights are seeded random: this example is
for cost and bit-exactness on microcontrollers, not accuracy.

    edgec build examples/dscnn.py:make_model --target cortex-m4 --quantize int8 --calib-data digits
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 49, 10)


def block(cin: int, cout: int, kernel: tuple[int, int], stride: int, pad: tuple[int, int],
          groups: int = 1) -> nn.Sequential:  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class DSCNN(nn.Module):
    def __init__(self, keywords: int = 12, width: int = 64) -> None:
        super().__init__()
        layers = [block(1, width, (10, 4), 2, (5, 1))]
        for _ in range(4):
            layers.append(block(width, width, (3, 3), 1, (1, 1), groups=width))  # depthwise
            layers.append(block(width, width, (1, 1), 1, (0, 0)))  # pointwise
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, keywords)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model() -> nn.Module:
    """The DS-CNN with seeded random weights; its BatchNorm statistics are measured on seeded
    random inputs, so every layer's output depends on the input (seeded statistics alone
    shrank the activations layer by layer until the output was the classifier's bias)."""
    torch.manual_seed(0)
    model = DSCNN()
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
