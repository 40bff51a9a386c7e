"""prune: remove channels (structured) or zero weights (unstructured) of a copy of a torch model.

Structured pruning uses Torch-Pruning's dependency graph, so every layer coupled to a removed
channel (BatchNorm, residual adds, concatenations, depthwise convolutions, the Linear after a
flatten) shrinks with it and the model stays runnable and exportable.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgec.errors import EdgecError, known

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgec.datasets import Dataset

IMPORTANCES = ("l1", "l2", "bn", "taylor")
SCOPES = ("layer", "global")
MODES = ("structured", "unstructured")
TAYLOR_BATCHES = 4  # a few batches estimate the gradient well enough to rank channels
TAYLOR_BATCH = 64

# Trains the model it is given and returns it (or a trained copy of the same architecture).
FineTune = Callable[["nn.Module"], "nn.Module"]


@dataclass(frozen=True)
class PruneConfig:
    """How much to prune and how to rank what goes; validated on construction.

    ratio: the share of each layer's channels removed ("layer" scope), or of all prunable
    channels ranked together ("global"); in unstructured mode, the share of weights zeroed.
    round_to: kept channel counts are multiples of this (the target's channel_multiple); a layer
    that the ratio would leave with fewer keeps round_to channels (or all it has, if fewer).
    steps: prune in this many equal steps, fine-tuning in between when given a fine-tune.
    """

    ratio: float
    importance: str = "l2"
    scope: str = "layer"
    keep_layers: tuple[str, ...] = ()
    round_to: int = 1
    steps: int = 1
    mode: str = "structured"

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise EdgecError(f"prune ratio {self.ratio} is outside [0, 1)")
        if self.importance not in IMPORTANCES:
            raise known("prune importance", self.importance, IMPORTANCES)
        if self.scope not in SCOPES:
            raise known("prune scope", self.scope, SCOPES)
        if self.mode not in MODES:
            raise known("prune mode", self.mode, MODES)
        if self.round_to < 1:
            raise EdgecError(f"prune round_to {self.round_to} must be at least 1")
        if self.steps < 1:
            raise EdgecError(f"prune steps {self.steps} must be at least 1")
        if self.mode == "unstructured" and self.importance not in ("l1", "l2"):
            raise EdgecError(
                f"unstructured pruning ranks single weights by magnitude (l1 or l2), "
                f"not {self.importance}"
            )


@dataclass(frozen=True)
class PrunedModel:
    """The pruned copy (eval mode) and what pruning did to it."""

    module: nn.Module
    mode: str
    params_before: int
    params_after: int
    sparsity: float  # share of zero weights over all Conv/Linear layers, kept ones included
    kept: tuple[str, ...]  # layers left whole: keep_layers and the classifier
    narrowed: tuple[tuple[str, int, int], ...]  # (layer, output channels before, after)
    at_minimum: tuple[str, ...] = ()  # narrowed layers the ratio would have left narrower
    minimum: int = 1  # the fewest channels a layer keeps: round_to, or all it has if fewer

    @property
    def note(self) -> str:
        """The stage's one-line summary."""
        if self.mode == "unstructured":
            return (
                f"{self.sparsity:.1%} of weights zeroed, {self.params_after:,} params stay "
                "dense: dense kernels do not get faster, only compress better"
            )
        shrink = self.params_before / max(self.params_after, 1)
        floor = (
            f"; {len(self.at_minimum)} stopped at their minimum of {self.minimum} "
            f"channel{'s' if self.minimum > 1 else ''}"
            if self.at_minimum
            else ""
        )
        return (
            f"{self.params_before:,} → {self.params_after:,} params ({shrink:.2f}× fewer), "
            f"{len(self.narrowed)} layers narrowed{floor}"
        )


def prune(
    model: nn.Module,
    example: torch.Tensor,
    cfg: PruneConfig,
    data: Dataset | None = None,
    finetune: FineTune | None = None,
) -> PrunedModel:
    """Prune a deep copy of `model`; `finetune`, if given, runs after every step."""
    import torch

    module = copy.deepcopy(model).eval()  # eval: tracing must not move BatchNorm statistics
    names = {layer: name for name, layer in module.named_modules()}
    before = _params(module)
    widths = {names[layer]: _out_channels(layer) for layer in _weighted_layers(module)}
    with torch.no_grad():
        out_shape = module(example).shape
    frozen = _kept_modules(module, cfg.keep_layers)
    classifier = _classifier(module, example)
    prunable = [layer for layer in _weighted_layers(module) if layer not in {*frozen, classifier}]
    if not prunable:
        raise EdgecError(f"nothing to prune in {type(model).__name__}: every layer is kept")
    if cfg.importance == "taylor" and data is None:
        raise EdgecError("taylor importance needs a data set for its gradients; or use l1, l2, bn")
    if cfg.mode == "unstructured":
        _zero_weights(module, prunable, cfg, finetune)
    else:
        _remove_channels(module, example, cfg, [*frozen, classifier], data, finetune)
    module.eval()
    with torch.no_grad():
        if module(example).shape != out_shape:  # a guard on Torch-Pruning, not on the user
            raise EdgecError(f"pruning changed {type(model).__name__}'s output shape; report this")
    after = {names[layer]: _out_channels(layer) for layer in _weighted_layers(module)}
    narrowed = tuple((n, widths[n], after[n]) for n in widths if after[n] != widths[n])
    kept = tuple(dict.fromkeys([*cfg.keep_layers, names[classifier]]))
    if cfg.mode == "structured" and cfg.ratio > 0 and not narrowed:
        raise EdgecError(
            f"--prune {cfg.ratio} narrows no layer of {type(model).__name__}: every prunable "
            f"layer is at its minimum of {cfg.round_to} channels (the target's channel multiple)"
        )
    # asked for fewer channels than round_to allows: kept at the minimum, and the note says so
    floor = tuple(
        n for n, b, a in narrowed if a == min(cfg.round_to, b) and a > int(b * (1 - cfg.ratio))
    )
    return PrunedModel(
        module, cfg.mode, before, _params(module), _sparsity(module), kept, narrowed, floor,
        cfg.round_to,
    )  # fmt: skip


def _remove_channels(
    module: nn.Module,
    example: torch.Tensor,
    cfg: PruneConfig,
    kept: list[nn.Module],
    data: Dataset | None,
    finetune: FineTune | None,
) -> None:
    import torch_pruning as tp

    importance = {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn": lambda: tp.importance.BNScaleImportance(),
        "taylor": lambda: tp.importance.GroupTaylorImportance(),
    }[cfg.importance]()

    class FlooredPruner(tp.pruner.BasePruner):
        """Torch-Pruning rounds a kept count down to a multiple of round_to, and skips a group
        that would so keep no channel (at 0.95 of 16 channels, or 0.9 of 16 with round_to 8):
        high ratios narrowed nothing. Here a group keeps at least round_to channels."""

        def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
            kept = current_channels - n_pruned
            kept = max(kept - kept % round_to, min(round_to, current_channels))
            return max(current_channels - kept, 0)

    def pruner(ignored: list[nn.Module]) -> tp.pruner.BasePruner:
        return FlooredPruner(
            module,
            example,
            importance=importance,
            global_pruning=cfg.scope == "global",
            pruning_ratio=cfg.ratio,
            iterative_steps=cfg.steps,
            ignored_layers=ignored,
            round_to=cfg.round_to,  # 1 too: the floor above applies only where round_to is set
        )

    # Torch-Pruning's ignored_layers keeps a layer's outputs only: its inputs still shrink with
    # the layer before. A kept layer keeps both, so the groups reaching its inputs are ignored
    # too, through their root layers. The classifier's inputs may shrink: only its outputs
    # (the classes) must stay.
    frozen = set(kept[:-1])
    first = pruner(kept)
    ignored = list(kept)
    for group in first.DG.get_all_groups(first.ignored_layers, first.root_module_types):
        if any(dep.target.module in frozen for dep, _ in group):
            ignored.append(group[0].dep.target.module)
    steps = pruner(ignored) if len(ignored) > len(kept) else first
    if not list(steps.DG.get_all_groups(steps.ignored_layers, steps.root_module_types)):
        raise EdgecError(f"nothing to prune in {type(module).__name__}: every channel is kept")
    for _ in range(cfg.steps):
        module.eval()  # fine-tuning leaves it in training mode
        if cfg.importance == "taylor":
            assert data is not None
            _accumulate_gradients(module, data)
        steps.step()
        module.zero_grad(set_to_none=True)
        if finetune is not None:
            _finetune(module, finetune)


def _zero_weights(
    module: nn.Module, layers: list[nn.Module], cfg: PruneConfig, finetune: FineTune | None
) -> None:
    import torch

    for step in range(1, cfg.steps + 1):
        ratio = cfg.ratio * step / cfg.steps
        with torch.no_grad():
            if cfg.scope == "global":
                threshold = _threshold([layer.weight for layer in layers], ratio)
                masks = [layer.weight.abs() > threshold for layer in layers]
            else:
                masks = [layer.weight.abs() > _threshold([layer.weight], ratio) for layer in layers]
            for layer, mask in zip(layers, masks, strict=True):
                layer.weight.mul_(mask)
        if finetune is not None:
            _finetune(module, finetune)
            with torch.no_grad():  # training regrows zeroed weights: the mask holds
                for layer, mask in zip(layers, masks, strict=True):
                    layer.weight.mul_(mask)


def _threshold(weights: list[torch.Tensor], ratio: float) -> float:
    """The magnitude at or below which `ratio` of `weights` lie (-1: zero nothing)."""
    import torch

    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
    cut = int(ratio * magnitudes.numel())
    return float(magnitudes.kthvalue(cut).values) if cut > 0 else -1.0


def _finetune(module: nn.Module, finetune: FineTune) -> None:
    # Torch-Pruning's graph holds this module's layers: train, then copy the weights back in.
    trained = finetune(module)
    if trained is not module:
        module.load_state_dict(trained.state_dict())


def _accumulate_gradients(module: nn.Module, data: Dataset) -> None:
    import torch

    module.zero_grad(set_to_none=True)
    for start in range(0, min(len(data.train_x), TAYLOR_BATCHES * TAYLOR_BATCH), TAYLOR_BATCH):
        x = torch.from_numpy(data.train_x[start : start + TAYLOR_BATCH])
        y = torch.from_numpy(data.train_y[start : start + TAYLOR_BATCH])
        torch.nn.functional.cross_entropy(module(x), y).backward()


def _kept_modules(module: nn.Module, keep: tuple[str, ...]) -> list[nn.Module]:
    """The named layers and everything inside them (naming a block keeps all its layers)."""
    named = dict(module.named_modules())
    missing = [name for name in keep if name not in named]
    if missing:
        layers = [n for n, m in named.items() if n and _is_weighted(m)]
        shown = ", ".join(layers[:8]) + (", ..." if len(layers) > 8 else "")
        raise EdgecError(f"keep layer {missing[0]!r} is not in the model; its layers: {shown}")
    return list(dict.fromkeys(m for name in keep for m in named[name].modules()))


def _classifier(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """The last Conv/Linear to run: it produces the classes, so its outputs must stay."""
    from edgec.accuracy import forward_with_hooks

    order: list[nn.Module] = []
    record = lambda m, _i, _o: order.append(m)  # noqa: E731
    forward_with_hooks(module, example, [(layer, record) for layer in _weighted_layers(module)])
    if not order:
        raise EdgecError(f"nothing to prune in {type(module).__name__}: no Conv or Linear layer")
    return order[-1]


def _is_weighted(layer: nn.Module) -> bool:
    from torch import nn

    return isinstance(layer, nn.modules.conv._ConvNd | nn.Linear)


def _weighted_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if _is_weighted(m)]


def _out_channels(layer: nn.Module) -> int:
    return int(getattr(layer, "out_channels", None) or layer.out_features)


def _sparsity(module: nn.Module) -> float:
    weights = [layer.weight for layer in _weighted_layers(module)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / total if total else 0.0


def _params(module: nn.Module) -> int:
    from edgec.accuracy import count_params

    return count_params(module)  # as the report counts them: BatchNorm folded
