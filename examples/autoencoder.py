"""The fully connected autoencoder of MLPerf Tiny's anomaly detection (ToyADMOS): 640 inputs (5
frames of 128 log-mel bins, here shaped 1x1x5x128 and flattened first) through four layers of
128, a bottleneck of 8, four layers of 128 and back to 640 (about 0.26 M multiply-accumulates).
Its BatchNorm layers are folded into the linear layers they follow.

No audio data set is available offline, so the weights are seeded random and calibration uses
synthetic inputs of the right shape (seeded normal, as bench/mcu.py
and the tests make them): this example is for cost and bit-exactness on microcontrollers, not
accuracy.

    edgec build examples/autoencoder.py:make_model --target cortex-m4 --quantize int8 \
        --calib-data digits --sensitivity 0
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 5, 128)
WIDTHS = (640, 128, 128, 128, 128, 8, 128, 128, 128, 128)


class Autoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for cin, cout in itertools.pairwise(WIDTHS):
            layers += [nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU()]
        layers.append(nn.Linear(WIDTHS[-1], WIDTHS[0]))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _fold(linear: nn.Linear, norm: nn.BatchNorm1d) -> nn.Linear:
    """The linear layer with the (eval-mode) BatchNorm after it folded in."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = nn.Linear(linear.in_features, linear.out_features)
    with torch.no_grad():
        folded.weight.copy_(linear.weight * scale[:, None])
        folded.bias.copy_((linear.bias - norm.running_mean) * scale + norm.bias)
    return folded


def make_model() -> nn.Module:
    """The autoencoder with seeded random weights; BatchNorm statistics measured on seeded
    random inputs (so every layer's output depends on the input), then folded."""
    torch.manual_seed(0)
    model = Autoencoder()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            m.momentum = None  # a plain average over the batches below
    generator = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(64, *INPUT_SHAPE[1:], generator=generator))
    model.eval()
    modules = list(model.layers)
    folded: list[nn.Module] = []
    for m in modules:
        if isinstance(m, nn.BatchNorm1d):
            folded[-1] = _fold(folded[-1], m)
        else:
            folded.append(m)
    model.layers = nn.Sequential(*folded)
    return model
