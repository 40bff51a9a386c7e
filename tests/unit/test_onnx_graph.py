from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgec import onnx_graph
from edgec.errors import EdgecError


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, dynamic: bool = False) -> Path:
    kwargs = {"dynamic_axes": {"input": {0: "batch"}}} if dynamic else {}
    torch.onnx.export(
        model.eval(),
        (torch.randn(*shape),),
        str(path),
        opset_version=17,
        input_names=["input"],
        output_names=["output"],
        dynamo=False,
        **kwargs,
    )
    return path


def test_stats_count_conv_and_linear_macs_and_params(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    stats = onnx_graph.stats(onnx_graph.read(_export(model, (1, 3, 4, 4), tmp_path / "m.onnx")))
    conv_macs = (8 * 4 * 4) * (3 * 3 * 3)
    linear_macs = 5 * 128
    assert stats.macs == conv_macs + linear_macs
    assert stats.params == sum(p.numel() for p in model.parameters())
    assert stats.size_bytes == 4 * stats.params


def test_depthwise_conv_macs_count_one_input_channel_per_output(tmp_path: Path) -> None:
    model = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
    stats = onnx_graph.stats(onnx_graph.read(_export(model, (1, 16, 8, 8), tmp_path / "m.onnx")))
    assert stats.macs == 16 * 8 * 8 * 9


def test_dynamic_input_needs_a_shape_and_takes_the_given_one(tmp_path: Path) -> None:
    path = _export(nn.Conv2d(3, 4, 1), (1, 3, 8, 8), tmp_path / "m.onnx", dynamic=True)
    with pytest.raises(EdgecError, match=r"dynamic shape .* --input-shape"):
        onnx_graph.fix_input_shapes(onnx_graph.read(path), None)
    specs = onnx_graph.fix_input_shapes(onnx_graph.read(path), [(2, 3, 8, 8)])
    assert specs[0].shape == (2, 3, 8, 8) and specs[0].dtype == "float32"


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        pytest.param((1, 3, 8), "rank 4", id="wrong-rank"),
        pytest.param((1, 5, 8, 8), "does not fit input 'input'", id="wrong-static-dim"),
    ],
)
def test_input_shape_that_contradicts_the_graph_is_rejected(
    tmp_path: Path, shape: tuple[int, ...], message: str
) -> None:
    path = _export(nn.Conv2d(3, 4, 1), (1, 3, 8, 8), tmp_path / "m.onnx", dynamic=True)
    with pytest.raises(EdgecError, match=message):
        onnx_graph.fix_input_shapes(onnx_graph.read(path), [shape])


def test_non_onnx_file_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    with pytest.raises(EdgecError, match=r"junk\.onnx is not a valid ONNX model"):
        onnx_graph.read(path)
