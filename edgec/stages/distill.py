"""distill: train a copy of a student to match a teacher's softened logits and the labels.

The loss is Hinton et al.'s, with alpha weighting the teacher's term:

    alpha * T² * KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 - alpha) * CE(student, y)

so alpha = 1 learns from the teacher only and alpha = 0 is plain training on the labels.
Optional hints (FitNets) add hint_weight * MSE(adapter(student feature), teacher feature) for
named layer pairs, through a learned 1×1 convolution (a Linear for flat features) that is
dropped after training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgec.errors import EdgecError, known

if TYPE_CHECKING:
    import torch
    from torch import nn

    from edgec.datasets import Dataset

OPTIMIZERS = ("adam", "sgd")
SGD_MOMENTUM = 0.9

# Called after every epoch with (epoch, mean training loss, validation top-1 in percent).
Progress = Callable[[int, float, float], None]
Loss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass(frozen=True)
class DistillConfig:
    """Training settings for distillation and fine-tuning; validated on construction.

    Training stops early when validation top-1 has not improved for `patience` epochs, and the
    best epoch's weights are kept. The learning rate follows a cosine schedule down to zero.
    """

    epochs: int = 20
    lr: float = 1e-3
    temperature: float = 4.0
    alpha: float = 0.7
    batch: int = 64
    patience: int = 5
    optimizer: str = "adam"
    hints: tuple[tuple[str, str], ...] = ()  # (student layer, teacher layer) feature pairs
    hint_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise EdgecError(f"distill epochs {self.epochs} must be at least 1")
        if self.lr <= 0:
            raise EdgecError(f"distill learning rate {self.lr} must be positive")
        if self.temperature <= 0:
            raise EdgecError(f"distill temperature {self.temperature} must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            raise EdgecError(f"distill alpha {self.alpha} is outside [0, 1]")
        if self.batch < 2:
            raise EdgecError(f"distill batch {self.batch} must be at least 2 (BatchNorm)")
        if self.patience < 1:
            raise EdgecError(f"distill patience {self.patience} must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise known("optimizer", self.optimizer, OPTIMIZERS)
        if self.hint_weight < 0:
            raise EdgecError(f"distill hint_weight {self.hint_weight} must not be negative")


@dataclass(frozen=True)
class DistilledModel:
    """The trained student (the best validation epoch's weights, eval mode) and its record."""

    module: nn.Module
    epochs_run: int
    best_epoch: int  # 0: no epoch beat the student as given
    val_accuracy: float  # top-1 (%) of `module` on the validation split
    teacher_val_accuracy: float | None  # None for plain fine-tuning


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T² * KL(teacher_T ‖ student_T) + (1 - alpha) * CE(student, labels), batch mean."""
    import torch.nn.functional as F

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    # T² keeps the soft targets' gradients on the scale of the hard labels' (Hinton et al.)
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def distill(
    student: nn.Module,
    teacher: nn.Module,
    data: Dataset,
    cfg: DistillConfig,
    progress: Progress | None = None,
) -> DistilledModel:
    """Train a copy of `student` against `teacher` and the labels; neither input changes."""
    import torch

    from edgec.accuracy import top1

    module = copy.deepcopy(student)
    teacher = copy.deepcopy(teacher).eval()
    probe = torch.from_numpy(data.train_x[:2])
    with torch.no_grad():
        student_shape = tuple(module.eval()(probe).shape)
        teacher_shape = tuple(teacher(probe).shape)
    if student_shape != teacher_shape:
        raise EdgecError(
            f"student outputs {student_shape} but teacher outputs {teacher_shape}; "
            "distillation needs logits of the same shape"
        )
    torch.manual_seed(cfg.seed)  # the adapters' initial weights
    hints = _Hints(module, teacher, cfg.hints, probe)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(x)
        kd = kd_loss(module(x), target, y, cfg.temperature, cfg.alpha)
        return kd + cfg.hint_weight * hints.loss() if cfg.hints else kd

    try:
        result = _fit(module, data, cfg, loss, hints.adapters.parameters(), progress)
    finally:
        hints.remove()
    return DistilledModel(
        result.module,
        result.epochs_run,
        result.best_epoch,
        result.val_accuracy,
        top1(teacher, data.val_x, data.val_y),
    )


def train(
    model: nn.Module,
    data: Dataset,
    epochs: int,
    lr: float,
    seed: int = 0,
    progress: Progress | None = None,
) -> nn.Module:
    """Fine-tune a copy of `model` on the labels (cross-entropy); returns the best epoch's."""
    return fit(model, data, DistillConfig(epochs=epochs, lr=lr, seed=seed), progress).module


def fit(
    model: nn.Module, data: Dataset, cfg: DistillConfig, progress: Progress | None = None
) -> DistilledModel:
    """Fine-tune a copy of `model` on the labels with `cfg`'s schedule and early stopping."""
    import torch.nn.functional as F

    module = copy.deepcopy(model)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(module(x), y)

    return _fit(module, data, cfg, loss, [], progress)


class _Hints:
    """Forward hooks that capture named layers' outputs, and the adapters mapping them."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        pairs: tuple[tuple[str, str], ...],
        probe: torch.Tensor,
    ) -> None:
        import torch
        from torch import nn

        self.pairs = pairs
        self.features: dict[tuple[str, str], torch.Tensor] = {}
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []
        for side, model in (("student", student), ("teacher", teacher)):
            layers = dict(model.named_modules())
            for pair in pairs:
                name = pair[0] if side == "student" else pair[1]
                if name not in layers:
                    raise EdgecError(f"hint layer {name!r} is not in the {side}")
                self.hooks.append(layers[name].register_forward_hook(self._keep(side, name)))
        self.adapters = nn.ModuleList()
        with torch.no_grad():
            student.eval()(probe)
            teacher(probe)
        for s_name, t_name in pairs:
            s, t = self.features["student", s_name], self.features["teacher", t_name]
            if s.dim() != t.dim() or s.shape[2:] != t.shape[2:]:
                raise EdgecError(
                    f"hint {s_name} {tuple(s.shape[1:])} cannot map onto {t_name} "
                    f"{tuple(t.shape[1:])}: only the channel counts may differ"
                )
            if s.dim() == 2:
                self.adapters.append(nn.Linear(s.shape[1], t.shape[1]))
            else:
                self.adapters.append(nn.Conv2d(s.shape[1], t.shape[1], 1, bias=False))

    def _keep(self, side: str, name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            self.features[side, name] = out

        return hook

    def loss(self) -> torch.Tensor:
        """The mean-squared error of every adapted student feature against its teacher's."""
        import torch.nn.functional as F

        errors = [
            F.mse_loss(adapter(self.features["student", s]), self.features["teacher", t])
            for adapter, (s, t) in zip(self.adapters, self.pairs, strict=True)
        ]
        return sum(errors[1:], errors[0])

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.features.clear()


def _fit(
    module: nn.Module,
    data: Dataset,
    cfg: DistillConfig,
    loss: Loss,
    extra: Iterable[nn.Parameter],
    progress: Progress | None,
) -> DistilledModel:
    """Train `module` in place; on return it holds the best validation epoch's weights."""
    import torch

    from edgec.accuracy import top1

    generator = torch.Generator().manual_seed(cfg.seed)
    params = [*module.parameters(), *extra]
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=cfg.lr, momentum=SGD_MOMENTUM, nesterov=True
        )
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs)
    x_all, y_all = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    best, best_epoch = top1(module, data.val_x, data.val_y), 0
    best_state = copy.deepcopy(module.state_dict())
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        module.train()
        order = torch.randperm(len(x_all), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(order), cfg.batch):
            batch = order[start : start + cfg.batch]
            if len(batch) < 2:
                continue  # BatchNorm cannot normalise a single sample
            optimizer.zero_grad()
            value = loss(x_all[batch], y_all[batch])
            value.backward()
            optimizer.step()
            total, batches = total + value.item(), batches + 1
        schedule.step()
        accuracy = top1(module, data.val_x, data.val_y)
        if progress is not None:
            progress(epoch, total / max(batches, 1), accuracy)
        if accuracy > best:
            best, best_epoch, best_state = accuracy, epoch, copy.deepcopy(module.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    module.load_state_dict(best_state)
    module.eval()
    return DistilledModel(module, epoch, best_epoch, best, None)
