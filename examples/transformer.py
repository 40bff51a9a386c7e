"""A small transformer encoder: 4 pre-norm layers, width 256, 4 heads, FFN 1024, sequence 128.
Input: token embeddings (1x128x256). Random weights, fixed seed: a benchmark workload.
Attention is written with plain matmuls so it exports to ONNX the same way on every exporter.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INPUT_SHAPE = (1, 128, 256)


class EncoderLayer(nn.Module):
    def __init__(self, width: int = 256, heads: int = 4, ffn: int = 1024) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Linear(ffn, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, s, 3, self.heads, w // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, heads, s, head_dim)
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, s, w))
        return x + self.ffn(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, layers: int = 4) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(EncoderLayer() for _ in range(layers)))
        self.norm = nn.LayerNorm(256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layers(x))


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return Encoder().eval()
