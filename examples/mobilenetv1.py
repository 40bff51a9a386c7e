"""MobileNetV1 at width 0.25, the MLPerf Tiny visual-wake-words reference: 96x96x3 in, 2 classes
out; a strided 3x3 conv of 8 channels, thirteen depthwise-separable blocks (16 to 256
channels, five strided), average pooling and a linear head (about 7.5 M multiply-accumulates;
the reference's final softmax is left to the caller).

No VWW data set is available offline, so the weights are seeded random and calibration uses
synthetic inputs of the right shape (seeded normal, as bench/mcu.py
and the tests make them): this example is for cost and bit-exactness on microcontrollers, not
accuracy.

    edgec build examples/mobilenetv1.py:make_model --target cortex-m4 --quantize int8 \
        --calib-data digits --sensitivity 0
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPE = (1, 3, 96, 96)
# (output channels, stride) of each depthwise-separable block at width 1.0
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))  # fmt: skip


def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class MobileNetV1(nn.Module):
    def __init__(self, width: float = 0.25, classes: int = 2) -> None:
        super().__init__()
        cin = int(32 * width)
        layers = [conv_bn(3, cin, 3, 2)]
        for channels, stride in BLOCKS:
            cout = int(channels * width)
            layers.append(conv_bn(cin, cin, 3, stride, groups=cin))  # depthwise
            layers.append(conv_bn(cin, cout, 1, 1))  # pointwise
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model() -> nn.Module:
    """MobileNetV1 0.25 with seeded random weights; BatchNorm statistics measured on seeded
    random inputs, so that every layer's output depends on the input."""
    torch.manual_seed(0)
    model = MobileNetV1()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            m.momentum = None  # a plain average over the batches below
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(32, *INPUT_SHAPE[1:], generator=generator))
    return model.eval()
