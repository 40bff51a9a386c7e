"""Channel concatenations (SqueezeNet's fire modules, Inception's branches) are written in place:
each input's kernel stores its channels at its offset in the result, and no kernel copies them.
Where that does not hold (another axis, an input used elsewhere too) the concatenation stays a
copy and `fallbacks` says why. Outputs match ONNX Runtime either way, on x86 and rpi4."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import needs

pytestmark = pytest.mark.integration

SIDE = 12


def _model(kind: str) -> Any:
    """A small CNN whose middle is one concatenation of the `kind` given."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Conv2d(3, 16, 3, padding=1)
            self.a = nn.Conv2d(16, 16, 1)  # a fire module's expand 1x1
            self.b = nn.Conv2d(16, 24, 3, padding=1)  # and its expand 3x3
            self.c = nn.Conv2d(16, 8, 1)
            self.pool = nn.MaxPool2d(3, stride=1, padding=1)
            channels = {"inception": 56, "nested": 48, "height": 16}.get(kind, 16 + 24)
            self.head = nn.Conv2d(channels, 10, 1)
            self.side = nn.Conv2d(16, 10, 1)

        def forward(self, x: Any) -> Any:
            x = torch.relu(self.stem(x))
            a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
            if kind == "fire":
                return self.head(torch.cat([a, b], dim=1))
            if kind == "inception":  # four branches, one through max pooling
                c, d = torch.relu(self.c(x)), torch.relu(self.c(self.pool(x)))
                return self.head(torch.cat([a, b, c, d], dim=1))
            if kind == "nested":  # the exporter makes one Concat of it: _onnx nests it again
                inner = torch.cat([b, torch.relu(self.c(x))], dim=1)
                return self.head(torch.cat([a, inner], dim=1))
            if kind == "height":  # along the image's rows, not the channels
                return self.head(torch.cat([a, b[:, :16]], dim=2))
            if kind == "shared":  # `a` also feeds another layer
                return self.head(torch.cat([a, b], dim=1)) + self.side(a)
            raise ValueError(kind)

    return Block().eval()


# (id, kind, in-place calls, why it stays a copy)
CASES = [
    pytest.param("fire", 1, None, id="fire-module-in-place"),
    pytest.param("inception", 3, None, id="inception-four-branches-in-place"),
    pytest.param("nested", 1, "is a concatenation written", id="nested-inner-in-place-outer-copy"),
    pytest.param("height", 0, "on axis 1, not the innermost", id="height-axis-stays-a-copy"),
    pytest.param("shared", 0, "an input is used elsewhere", id="input-used-elsewhere-stays"),
]


def _onnx(tmp: Path, kind: str) -> Path:
    import torch

    path = tmp / f"{kind}.onnx"
    x = torch.randn(1, 3, SIDE, SIDE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter, as edgec's export stage uses
        torch.onnx.export(_model(kind), (x,), str(path), opset_version=17,
                          input_names=["input"], output_names=["output"], dynamo=False)  # fmt: skip
    if kind == "nested":  # Inception-v3's concatenation inside a concatenation
        import onnx

        graph = onnx.load(str(path))
        (concat,) = [n for n in graph.graph.node if n.op_type == "Concat"]
        a, b, c = concat.input
        inner = onnx.helper.make_node("Concat", [b, c], ["inner"], axis=1)
        concat.input[:] = [a, "inner"]
        graph.graph.node.insert(list(graph.graph.node).index(concat), inner)
        onnx.save(graph, str(path))
    return path


def _relax(path: Path, tmp: Path) -> Any:
    """The model as edgec's load and import stages give it to the compiler."""
    from edgec.relax.import_onnx import import_onnx
    from edgec.stages.export import export
    from edgec.stages.load import load

    return import_onnx(export(load(str(path), None, tmp), tmp)).module


@pytest.mark.parametrize(("kind", "in_place", "reason"), CASES)
def test_a_channel_concatenation_is_written_in_place_or_stays_a_copy_and_matches_onnxruntime(
    tmp_path: Path, kind: str, in_place: int, reason: str | None
) -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from edgec.relax import traverse
    from edgec.relax.compile import lower
    from edgec.targets import get_target

    path = _onnx(tmp_path, kind)
    built = lower(_relax(path, tmp_path), get_target("x86"))
    mod = built.scheduled
    assert len(traverse.calls(mod, "relax.call_tir_inplace")) == in_place
    concat_kernels = [  # a copy: fused into a producer's kernel, or its own
        gv for gv, f in mod.functions.items() if "concat" in gv.name_hint
    ]
    notes = [v for k, v in built.fallbacks.items() if k.startswith("concat in place")]
    if reason is None:
        assert not concat_kernels and not notes
    else:
        assert concat_kernels and any(reason in note for note in notes), built.fallbacks
    x = np.random.default_rng(0).standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
def test_an_inception_block_built_for_rpi4_in_place_matches_under_qemu(tmp_path: Path) -> None:
    from edgec.pipeline import BuildOptions, build
    from edgec.progress import StageLog

    path = _onnx(tmp_path, "inception")
    with open(os.devnull, "w") as quiet:
        report = build(str(path), "rpi4", tmp_path / "b", BuildOptions(repeat=1), StageLog(quiet))
    assert report["parity"]["ok"] is True, report["parity"]
    assert not any(k.startswith("concat in place") for k in report["schedules"]["fallbacks"])


@pytest.mark.parametrize(("kind", "in_place"), [("fire", 1), ("inception", 3)])
def test_an_int8_concatenation_written_in_place_matches_the_numpy_reference_bit_for_bit(
    tmp_path: Path, kind: str, in_place: int
) -> None:
    import tvm
    from tvm import relax

    from edgec import int8
    from edgec.relax import traverse
    from edgec.relax.compile import lower
    from edgec.relax.lower_int8 import import_qgraph
    from edgec.stages.export import export
    from edgec.stages.load import load
    from edgec.stages.quantize import QuantizeConfig, quantize
    from edgec.targets import get_target

    model = export(load(str(_onnx(tmp_path, kind)), None, tmp_path), tmp_path)
    calibration = np.random.default_rng(0).standard_normal((16, 3, SIDE, SIDE))
    quantized = quantize(model, calibration.astype(np.float32), QuantizeConfig(sensitivity=None))
    built = lower(import_qgraph(quantized).module, get_target("x86"))
    assert len(traverse.calls(built.scheduled, "relax.call_tir_inplace")) == in_place
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        assert np.array_equal(got, int8.run(quantized.graph, [x])[0])
