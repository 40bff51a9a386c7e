"""Channel shuffles (ShuffleNetV2's units) run channels-last: the Reshape → Transpose → Reshape
and the split after it become one NHWC gather each, with no transposes around them; a shuffle
that does not match exactly stays as it was. Outputs match ONNX Runtime on x86 and rpi4."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import needs

pytestmark = pytest.mark.integration

CHANNELS = 24  # divisible by 2, 3 and 4
SIDE = 8


def _unit(groups: int, split: str, matching: bool = True) -> Any:
    """conv → channel shuffle in `groups` → split in two halves (chunk or slicing) → one half
    through a 1×1 and a depthwise conv → concat → conv: ShuffleNetV2's stride-1 unit."""
    import torch
    from torch import nn

    class Unit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(groups)
            half = CHANNELS // 2
            self.stem = nn.Conv2d(3, CHANNELS, 3, padding=1)
            self.pointwise = nn.Conv2d(half, half, 1)
            self.depthwise = nn.Conv2d(half, half, 3, padding=1, groups=half)
            self.head = nn.Conv2d(CHANNELS, 8, 1)

        def forward(self, x: Any) -> Any:
            x = torch.relu(self.stem(x))
            n, c, h, w = x.shape
            if matching:
                x = x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
            else:  # groups split along the height: not a channel shuffle
                x = x.view(n, c, groups, h // groups, w).transpose(2, 3).reshape(n, c, h, w)
            if split == "chunk":
                a, b = x.chunk(2, dim=1)
            else:
                a, b = x[:, : c // 2], x[:, c // 2 :]
            b = self.depthwise(torch.relu(self.pointwise(b)))
            return self.head(torch.cat([a, b], dim=1))

    return Unit().eval()


CASES = [
    # (id, groups, split, shuffle matches, opset)
    ("g2-chunk-opset17", 2, "chunk", True, 17),
    ("g2-chunk-opset11", 2, "chunk", True, 11),
    ("g3-slices", 3, "slice", True, 13),
    ("g4-chunk", 4, "chunk", True, 17),
    ("height-groups-not-a-shuffle", 2, "chunk", False, 17),
]
PARAMS = [pytest.param(*c[1:], id=c[0]) for c in CASES]


def _onnx(tmp: Path, groups: int, split: str, matching: bool, opset: int) -> Path:
    import torch

    path = tmp / f"unit-{groups}-{split}-{matching}-{opset}.onnx"
    x = torch.randn(1, 3, SIDE, SIDE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter, as edgec's export stage uses
        torch.onnx.export(_unit(groups, split, matching), (x,), str(path), opset_version=opset,
                          input_names=["input"], output_names=["output"], dynamo=False)  # fmt: skip
    return path


def _relax(path: Path, tmp: Path) -> Any:
    """The model as edgec's load and import stages give it to the compiler."""
    from edgec.relax.import_onnx import import_onnx
    from edgec.stages.export import export
    from edgec.stages.load import load

    return import_onnx(export(load(str(path), None, tmp), tmp)).module


def _activation_ops(mod: Any) -> dict[str, int]:
    """Transposes of activations (not weights) and 5-D reshapes in `mod`'s Relax graph."""
    import tvm

    from edgec.relax.traverse import calls

    transposes = [
        c
        for c in calls(mod, "relax.permute_dims")
        if not isinstance(c.args[0], tvm.ir.expr.Constant)
    ]
    five_d = [c for c in calls(mod, "relax.reshape") if int(c.ty.ndim) == 5]
    return {"transposes": len(transposes), "5-D reshapes": len(five_d)}


@pytest.mark.parametrize(("groups", "split", "matching", "opset"), PARAMS)
def test_a_channel_shuffle_becomes_one_gather_with_no_transposes_where_it_matches(
    tmp_path: Path, groups: int, split: str, matching: bool, opset: int
) -> None:
    from tvm import relax

    from edgec.relax.fold_weights import fold_weight_layouts
    from edgec.relax.layout import to_channels_last
    from edgec.relax.traverse import calls

    mod = _relax(_onnx(tmp_path, groups, split, matching, opset), tmp_path)
    mod = relax.transform.DecomposeOpsForInference()(mod)
    fallbacks: dict[str, str] = {}
    converted = to_channels_last(mod, fallbacks)
    layouts = {str(c.attrs.data_layout) for c in calls(converted, "relax.nn.conv2d")}
    assert layouts == {"NHWC"} and "layout: whole model" not in fallbacks
    ops = _activation_ops(fold_weight_layouts(converted))  # weights' transposes: constants
    if matching:  # the model's input to NHWC and its output back: nothing between
        assert ops == {"transposes": 2, "5-D reshapes": 0}
        gathers = [gv for gv in converted.functions if gv.name_hint.startswith("channel_shuffle")]
        assert len(gathers) == 2  # one per half
    else:  # steps aside: the reshapes stay, in NCHW between transposes, and the convs NHWC
        assert ops["5-D reshapes"] == 1
        assert not any(gv.name_hint.startswith("channel_shuffle") for gv in converted.functions)
        assert ops["transposes"] > 2


def test_an_int8_channel_shuffle_unit_has_no_transposes_between_its_convolutions(
    tmp_path: Path,
) -> None:
    # the concat copies its pass-through half (at its scale: edgec.int8.from_onnx.shared_ranges),
    # so nothing but the gather stands between the shuffle and the concat; each conv's own
    # requantization (astype, multiply, shift, clamp) is what the transposes move through
    from tvm import relax

    from edgec.datasets import load_dataset
    from edgec.relax import traverse
    from edgec.relax.fold_weights import fold_weight_layouts
    from edgec.relax.layout import to_channels_last
    from edgec.relax.lower_int8 import import_qgraph
    from edgec.stages.export import export
    from edgec.stages.load import load
    from edgec.stages.quantize import QuantizeConfig, quantize

    model = export(load(str(_onnx(tmp_path, 2, "chunk", True, 17)), None, tmp_path), tmp_path)
    data = load_dataset("synthetic", model.inputs[0].shape)
    qgraph = quantize(model, data.train_x, QuantizeConfig(samples=16, sensitivity=None))
    mod = relax.transform.DecomposeOpsForInference()(import_qgraph(qgraph).module)
    shifts = traverse.calls(mod, "relax.right_shift")  # one per requantization
    assert len(shifts) == len(traverse.calls(mod, "relax.nn.conv2d"))  # none in the concat
    fallbacks: dict[str, str] = {}
    converted = to_channels_last(mod, fallbacks)
    assert fallbacks == {}
    assert _activation_ops(fold_weight_layouts(converted)) == {"transposes": 2, "5-D reshapes": 0}


@pytest.mark.parametrize(("groups", "split", "matching", "opset"), PARAMS)
def test_a_channel_shuffle_unit_built_for_x86_matches_onnxruntime(
    tmp_path: Path, groups: int, split: str, matching: bool, opset: int
) -> None:
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from edgec.relax.compile import lower
    from edgec.targets import get_target

    path = _onnx(tmp_path, groups, split, matching, opset)
    built = lower(_relax(path, tmp_path), get_target("x86"))
    x = np.random.default_rng(0).standard_normal((1, 3, SIDE, SIDE)).astype(np.float32)
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert not any(k.startswith("layout") for k in built.fallbacks)


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_channel_shuffle_unit_built_for_rpi4_matches_under_qemu(
    tmp_path: Path, precision: str
) -> None:
    from edgec.pipeline import BuildOptions, build
    from edgec.progress import StageLog
    from edgec.stages.quantize import QuantizeConfig

    path = _onnx(tmp_path, 2, "chunk", True, 17)
    options = BuildOptions(repeat=1)
    if precision == "int8":
        quantize = QuantizeConfig(samples=16, sensitivity=None)
        options = BuildOptions(repeat=1, quantize=quantize, calib_data="synthetic")
    with open(os.devnull, "w") as quiet:
        report = build(str(path), "rpi4", tmp_path / "b", options, StageLog(stream=quiet))
    parity = report["parity"]
    assert parity["ok"] is True, parity
    if precision == "int8":  # a gather moves int8 values: bit-exact with the QDQ reference
        assert parity["max_abs_diff"] == 0.0, parity
    assert not any(k.startswith("layout") for k in report["schedules"]["fallbacks"])


# (op, constant shape, whether the transposes cancel): an elementwise op with constants between
# two transposes that cancel
CONSTANT_CASES = [
    pytest.param("multiply", (1, 6, 1, 1), True, id="4-d-per-channel-moves-transposed"),
    pytest.param("multiply", (), True, id="scalar-moves"),
    pytest.param("multiply", (6, 1, 1), False, id="3-d-broadcast-from-the-right-stays"),
    # clip's bounds are PrimValues, ir.expr.Constant in TVM 0.27 but with no ndim: they raised,
    # and one clip left every transpose of the model unfolded (efficientnet_b0 int8's islands)
    pytest.param("clip", None, True, id="clip-with-scalar-bounds-moves"),
]


@pytest.mark.parametrize(("op", "shape", "folds"), CONSTANT_CASES)
def test_transposes_fold_through_elementwise_ops_only_where_the_constant_follows(
    op: str, shape: tuple[int, ...] | None, folds: bool
) -> None:
    """transpose → multiply by a constant (or clip) → inverse transpose: the pair cancels where
    the constant can be transposed with it (one value, or 4-D); a [C, 1, 1] constant, broadcast
    from the right, keeps the transposes (moved, it would multiply the wrong axis)."""
    import tvm
    from tvm import relax

    from edgec.relax import traverse
    from edgec.relax.channel_shuffle import fold_transposes

    rng = np.random.default_rng(0)
    scale = rng.standard_normal(shape or ()).astype(np.float32)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)  # NHWC
    bb = relax.BlockBuilder()
    arg = relax.Var("x", relax.TensorType(list(x.shape), "float32"))
    with bb.function("main", [arg]):
        with bb.dataflow():
            nchw = bb.emit(relax.op.permute_dims(arg, [0, 3, 1, 2]))
            if op == "clip":
                scaled = bb.emit(relax.op.clip(nchw, -0.5, 0.5))
            else:
                scaled = bb.emit(relax.op.multiply(nchw, relax.const(scale)))
            out = bb.emit_output(bb.emit(relax.op.permute_dims(scaled, [0, 2, 3, 1])))
        bb.emit_func_output(out)
    folded = fold_transposes(bb.get())
    assert (len(traverse.calls(folded, "relax.permute_dims")) == 0) == folds
    vm = relax.VirtualMachine(tvm.compile(folded, "llvm"), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    nchw_x = np.transpose(x, (0, 3, 1, 2))
    done = np.clip(nchw_x, -0.5, 0.5) if op == "clip" else nchw_x * scale
    want = np.transpose(done, (0, 2, 3, 1))
    np.testing.assert_allclose(got, want, rtol=1e-6)
