"""The prune stage: dependency-consistent channel removal, magnitude zeroing, and its errors."""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402

from edgec.accuracy import stats  # noqa: E402
from edgec.datasets import Dataset, load_dataset  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.stages.prune import PruneConfig, prune  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SHAPE = (1, 1, 16, 16)
torch.set_num_threads(1)  # the test machine is shared: tiny models do not gain from threads


def conv_bn(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class ResidualNet(nn.Module):
    """A residual add couples stem and body; the head flattens 16×8×8 into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16)
        self.body = nn.Sequential(conv_bn(16, 16), conv_bn(16, 16))
        self.tail = conv_bn(16, 16, stride=2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        return self.head(self.tail(stem + self.body(stem)))


class ConcatNet(nn.Module):
    """Two branches concatenated on channels, then a pointwise conv."""

    def __init__(self) -> None:
        super().__init__()
        self.left, self.right = conv_bn(1, 16), conv_bn(1, 16)
        self.mix = conv_bn(32, 16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(torch.cat([self.left(x), self.right(x)], 1)))


def depthwise_net() -> nn.Module:
    return nn.Sequential(
        conv_bn(1, 16),
        conv_bn(16, 16, stride=2, groups=16),  # depthwise: its channels follow the stem's
        nn.Conv2d(16, 32, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def digits_cnn() -> nn.Module:
    spec = importlib.util.spec_from_file_location("digits", ROOT / "examples" / "digits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DigitsCNN()


# (factory, a conv layer to keep whole, a block to keep whole)
NETS = [
    pytest.param(ResidualNet, "body.0.0", "tail", id="residual"),
    pytest.param(depthwise_net, "0.0", "1", id="depthwise"),
    pytest.param(ConcatNet, "left.0", "right", id="concat"),
    pytest.param(digits_cnn, "features.0.0", "features.2", id="digits-example"),
]


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", SHAPE)


def seeded(factory: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    model = factory()
    for layer in model.modules():
        if isinstance(layer, nn.BatchNorm2d):
            nn.init.uniform_(layer.weight, 0.5, 1.5)  # fresh BN scales all tie at 1: no ranking
    return model.eval()


def layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize(("factory", "_layer", "_block"), NETS)
def test_structured_prune_shrinks_a_copy_that_runs_and_exports_to_onnx(
    factory: Callable[[], nn.Module], _layer: str, _block: str, tmp_path: Path
) -> None:
    import onnxruntime as ort

    model = seeded(factory)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.randn(SHAPE)
    pruned = prune(model, example, PruneConfig(0.5))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert pruned.params_before == stats(model, example)[0]
    assert pruned.params_after == stats(pruned.module, example)[0] < pruned.params_before / 2
    assert pruned.narrowed and pruned.sparsity == 0.0 and "params" in pruned.note
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(pruned.module, (example,), str(path), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    with torch.no_grad():
        want = pruned.module(example).numpy()
    assert want.shape == (1, 10)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("round_to", [4, 8])
@pytest.mark.parametrize(("factory", "_layer", "_block"), NETS)
def test_kept_channel_counts_are_multiples_of_round_to(
    factory: Callable[[], nn.Module], _layer: str, _block: str, round_to: int
) -> None:
    pruned = prune(seeded(factory), torch.randn(SHAPE), PruneConfig(0.4, round_to=round_to))
    assert pruned.narrowed
    assert all(after % round_to == 0 for _name, _before, after in pruned.narrowed)


@pytest.mark.parametrize("keep", ["layer", "block"])
@pytest.mark.parametrize(("factory", "layer", "block"), NETS)
def test_kept_layers_keep_their_input_and_output_channels(
    factory: Callable[[], nn.Module], layer: str, block: str, keep: str
) -> None:
    model = seeded(factory)
    name = layer if keep == "layer" else block
    pruned = prune(model, torch.randn(SHAPE), PruneConfig(0.5, keep_layers=(name,)))
    before, after = layers(model), layers(pruned.module)
    inside = [n for n in before if n == name or n.startswith(f"{name}.")]
    assert inside and name in pruned.kept
    for n in inside:
        assert after[n].weight.shape == before[n].weight.shape, n
    classifier = next(reversed(before))
    assert after[classifier].weight.shape[0] == 10 and classifier in pruned.kept
    assert pruned.params_after < pruned.params_before


@pytest.mark.parametrize("importance", ["l1", "l2", "bn", "taylor"])
@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize(("factory", "_layer", "_block"), NETS[:2])
def test_each_importance_prunes_in_each_scope(
    factory: Callable[[], nn.Module],
    _layer: str,
    _block: str,
    importance: str,
    scope: str,
    digits: Dataset,
) -> None:
    example = torch.randn(SHAPE)
    cfg = PruneConfig(0.5, importance=importance, scope=scope)
    pruned = prune(seeded(factory), example, cfg, data=digits)
    assert pruned.params_after < pruned.params_before
    assert pruned.module(example).shape == (1, 10)


def test_importance_decides_which_channels_go() -> None:
    model = seeded(depthwise_net)
    with torch.no_grad():
        model[2].weight[:16].mul_(100)  # the pointwise conv's first 16 filters dominate
    pruned = prune(model, torch.randn(SHAPE), PruneConfig(0.5, keep_layers=("0.0",)))
    kept = pruned.module[2].weight
    assert kept.shape[0] == 16
    assert torch.allclose(kept, model[2].weight[:16, :, :, :])


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("mode", ["structured", "unstructured"])
def test_finetune_runs_after_every_step_and_reaches_the_ratio(mode: str, steps: int) -> None:
    calls: list[int] = []

    def finetune(module: nn.Module) -> nn.Module:
        calls.append(1)
        return module

    cfg = PruneConfig(0.5, steps=steps, mode=mode)
    stepped = prune(seeded(depthwise_net), torch.randn(SHAPE), cfg, finetune=finetune)
    once = prune(seeded(depthwise_net), torch.randn(SHAPE), PruneConfig(0.5, mode=mode))
    assert len(calls) == steps
    assert stepped.params_after == once.params_after
    assert stepped.sparsity == pytest.approx(once.sparsity, abs=1e-3)


def test_a_trained_copy_from_finetune_is_loaded_back() -> None:
    def finetune(module: nn.Module) -> nn.Module:
        trained = copy.deepcopy(module)
        for p in trained.parameters():
            p.data.fill_(0.5)
        return trained

    pruned = prune(seeded(depthwise_net), torch.randn(SHAPE), PruneConfig(0.5), finetune=finetune)
    assert all(bool((p == 0.5).all()) for p in pruned.module.parameters())


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.8])
def test_unstructured_prune_zeroes_the_ratio_and_keeps_shapes(ratio: float, scope: str) -> None:
    model = seeded(ResidualNet)
    cfg = PruneConfig(ratio, mode="unstructured", scope=scope)
    pruned = prune(model, torch.randn(SHAPE), cfg)
    assert pruned.params_after == pruned.params_before and not pruned.narrowed
    convs = [m.weight for m in pruned.module.modules() if isinstance(m, nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in convs) / sum(w.numel() for w in convs)
    assert zeros == pytest.approx(ratio, abs=0.01)
    if scope == "layer":
        assert all(float((w == 0).float().mean()) == pytest.approx(ratio, abs=0.02) for w in convs)
    # the kept classifier holds most of ResidualNet's weights: the whole-model share is lower
    assert 0 < pruned.sparsity < ratio
    assert bool((pruned.module.head[1].weight != 0).all())
    assert "dense kernels do not get faster" in pruned.note


def test_unstructured_zeros_stay_zero_through_finetuning() -> None:
    def finetune(module: nn.Module) -> nn.Module:
        for p in module.parameters():
            p.data.add_(1.0)  # as if training regrew every weight
        return module

    cfg = PruneConfig(0.5, mode="unstructured", steps=2)
    pruned = prune(seeded(ResidualNet), torch.randn(SHAPE), cfg, finetune=finetune)
    convs = [m.weight for m in pruned.module.modules() if isinstance(m, nn.Conv2d)]
    zeros = sum(int((w == 0).sum()) for w in convs) / sum(w.numel() for w in convs)
    assert zeros == pytest.approx(0.5, abs=0.01)


CONFIG_ERRORS = [
    pytest.param({"ratio": 1.0}, "prune ratio 1.0 is outside [0, 1)", id="ratio-one"),
    pytest.param({"ratio": 1.2}, "prune ratio 1.2 is outside [0, 1)", id="ratio-above"),
    pytest.param({"ratio": -0.1}, "prune ratio -0.1 is outside [0, 1)", id="ratio-negative"),
    pytest.param({"importance": "l3"}, "known: bn, l1, l2, taylor", id="importance"),
    pytest.param({"scope": "net"}, "known: global, layer", id="scope"),
    pytest.param({"mode": "2:4"}, "known: structured, unstructured", id="mode"),
    pytest.param({"round_to": 0}, "round_to 0 must be at least 1", id="round-to"),
    pytest.param({"steps": 0}, "steps 0 must be at least 1", id="steps"),
    pytest.param(
        {"mode": "unstructured", "importance": "bn"}, "by magnitude (l1 or l2)", id="unstr-bn"
    ),
]


@pytest.mark.parametrize(("fields", "message"), CONFIG_ERRORS)
def test_bad_config_is_a_one_line_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(EdgecError) as caught:
        PruneConfig(**{"ratio": 0.5, **fields})  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def linear_only() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 10))


def no_weights() -> nn.Module:
    return nn.Sequential(nn.AvgPool2d(4), nn.Flatten())


PRUNE_ERRORS = [
    pytest.param(linear_only, {}, "nothing to prune in Sequential: every layer", id="only-head"),
    pytest.param(no_weights, {}, "nothing to prune in Sequential: no Conv", id="no-weights"),
    pytest.param(
        depthwise_net,
        {"keep_layers": ("0", "1", "2")},
        "nothing to prune in Sequential: every layer is kept",
        id="all-kept",
    ),
    pytest.param(
        depthwise_net,
        {"keep_layers": ("2",)},  # the stem's channels reach it through the depthwise conv
        "nothing to prune in Sequential: every channel is kept",
        id="all-channels-kept",
    ),
    pytest.param(
        depthwise_net, {"importance": "taylor"}, "taylor importance needs a data set", id="taylor"
    ),
    pytest.param(
        depthwise_net,
        {"keep_layers": ("nope",)},
        "keep layer 'nope' is not in the model; its layers: 0.0, 1.0, 2, 7",
        id="unknown-keep",
    ),
]


@pytest.mark.parametrize(("factory", "fields", "message"), PRUNE_ERRORS)
def test_unprunable_input_is_a_one_line_error(
    factory: Callable[[], nn.Module], fields: dict[str, object], message: str
) -> None:
    with pytest.raises(EdgecError) as caught:
        prune(factory(), torch.randn(SHAPE), PruneConfig(0.5, **fields))  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


# (ratio, layers the ratio would leave with fewer than round_to=8 channels): digits' widths
# are 32, 64, 64, 64, 64, 128 (the residual block's two convs share one channel group)
HIGH_RATIOS = [
    pytest.param(0.5, 0, id="0.5"),
    pytest.param(0.9, 5, id="0.9"),
    pytest.param(0.95, 6, id="0.95"),
    pytest.param(0.99, 6, id="0.99"),
]


@pytest.mark.parametrize(("ratio", "floored"), HIGH_RATIOS)
def test_a_high_ratio_prunes_every_layer_down_to_its_minimum_and_says_so(
    ratio: float, floored: int
) -> None:
    model = seeded(digits_cnn)
    example = torch.randn(1, 1, 32, 32)
    pruned = prune(model, example, PruneConfig(ratio, round_to=8))
    prunable = [n for n in layers(model) if n not in pruned.kept]
    assert sorted(n for n, _b, _a in pruned.narrowed) == sorted(prunable)
    for name, before, after in pruned.narrowed:
        assert after % 8 == 0 and max(8, int(before * (1 - ratio)) // 8 * 8) == after, name
    assert len(pruned.at_minimum) == floored
    assert (f"{floored} stopped at their minimum of 8 channels" in pruned.note) == (floored > 0)
    assert pruned.params_after < pruned.params_before / 3.5
    assert pruned.module(example).shape == (1, 10)


def test_a_ratio_that_can_narrow_nothing_is_a_one_line_error() -> None:
    model = nn.Sequential(conv_bn(1, 8), conv_bn(8, 8), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    with pytest.raises(EdgecError) as caught:
        prune(seeded(lambda: model), torch.randn(SHAPE), PruneConfig(0.9, round_to=8))
    message = str(caught.value)
    assert "narrows no layer of Sequential" in message and "minimum of 8 channels" in message
    assert "\n" not in message
