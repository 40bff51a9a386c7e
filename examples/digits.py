"""A small digit classifier for 1x32x32 images (sklearn's 8x8 digits, upscaled): conv-BN-ReLU
blocks, one residual block, one depthwise-separable block, global pooling and a linear head
(about 24 M multiply-accumulates, so that compute rather than per-kernel overhead sets its
latency). Used by the compression benchmark; `python examples/digits.py` trains it (about a
minute on two cores) and saves digits.pth. Its inputs are pixels in [0, 1] normalized as
edgec.datasets.load_dataset("digits", ...) does: (x - 0.3053) / 0.3760.

    edgec build examples/digits.py:make_model --target rpi4
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 32, 32)
WEIGHTS = Path(__file__).with_name("digits.pth")


def conv_bn(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DigitsCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, 32),
            conv_bn(32, 64, stride=2),  # 16x16
            Residual(64),
            conv_bn(64, 64, stride=2, groups=64),  # depthwise, 8x8
            conv_bn(64, 128, kernel=1),  # pointwise
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model() -> nn.Module:
    """The digits CNN, with the trained weights when examples/digits.pth exists."""
    model = DigitsCNN()
    if WEIGHTS.is_file():
        model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval()


if __name__ == "__main__":
    import time

    from edgec.accuracy import top1
    from edgec.datasets import load_dataset
    from edgec.stages.distill import train

    torch.manual_seed(0)  # the initial weights: the same digits.pth on every run
    start = time.perf_counter()
    data = load_dataset("digits", INPUT_SHAPE)
    trained = train(DigitsCNN(), data, epochs=15, lr=3e-3)
    accuracy = top1(trained, data.val_x, data.val_y)
    torch.save(trained.state_dict(), WEIGHTS)
    print(f"val top-1 {accuracy:.1f}% in {time.perf_counter() - start:.0f} s; saved {WEIGHTS}")
