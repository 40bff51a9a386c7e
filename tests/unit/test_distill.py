"""The distill stage: Hinton KD loss, recovery of a pruned student, early stopping, errors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402

from edgec.accuracy import top1  # noqa: E402
from edgec.datasets import Dataset, load_dataset  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.stages.distill import DistillConfig, distill, kd_loss, train  # noqa: E402
from edgec.stages.prune import PruneConfig, prune  # noqa: E402

SHAPE = (1, 1, 16, 16)
torch.set_num_threads(1)  # the test machine is shared: tiny models do not gain from threads


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 2, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 10),
    ).eval()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    full = load_dataset("digits", SHAPE)
    return Dataset(
        "digits-small",
        full.train_x[:512],
        full.train_y[:512],
        full.val_x[:160],
        full.val_y[:160],
        10,
    )


def test_kd_loss_matches_a_hand_computed_value() -> None:
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0]])
    labels = torch.tensor([0])
    # T = 2: p_t = softmax([0, .5]) = [.37754, .62246], p_s = softmax([.5, 0]) = [.62246, .37754]
    # KL(p_t || p_s) = (.62246 - .37754) * ln(.62246 / .37754) = .24492 * .5 = .12246
    # CE(student, 0) = ln(1 + e^-1) = .31326
    # loss = .25 * 4 * .12246 + .75 * .31326 = .12246 + .23495 = .35741
    got = kd_loss(student, teacher, labels, temperature=2.0, alpha=0.25)
    assert math.isclose(float(got), 0.35741, abs_tol=1e-4)


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.31326), (1.0, 4 * 0.12246)])
def test_kd_loss_alpha_ends_are_pure_labels_and_pure_teacher(alpha: float, expected: float) -> None:
    got = kd_loss(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 2.0, alpha
    )
    assert math.isclose(float(got), expected, abs_tol=1e-4)


def test_distill_recovers_a_pruned_student_without_touching_its_inputs(digits: Dataset) -> None:
    teacher = train(small_net(), digits, epochs=4, lr=3e-3)
    assert top1(teacher, digits.val_x, digits.val_y) > 70
    student = prune(teacher, torch.randn(SHAPE), PruneConfig(0.75)).module
    before = {k: v.clone() for k, v in student.state_dict().items()}
    seen: list[int] = []
    cfg = DistillConfig(epochs=3, lr=3e-3)
    result = distill(student, teacher, digits, cfg, lambda e, _loss, _acc: seen.append(e))
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    assert seen == list(range(1, result.epochs_run + 1))
    accuracy = top1(result.module, digits.val_x, digits.val_y)
    assert result.val_accuracy == accuracy > top1(student, digits.val_x, digits.val_y)
    assert result.teacher_val_accuracy == top1(teacher, digits.val_x, digits.val_y)


def test_hints_train_through_an_adapter_and_leave_no_hooks(digits: Dataset) -> None:
    teacher = small_net()
    student = prune(teacher, torch.randn(SHAPE), PruneConfig(0.5)).module
    cfg = DistillConfig(epochs=1, hints=(("6", "6"),))  # 16 → 32 channels vs 32: a 1×1 adapter
    result = distill(student, teacher, digits, cfg)
    assert not any(m._forward_hooks for m in result.module.modules())
    assert not any(m._forward_hooks for m in teacher.modules())


def test_distill_stops_early_when_validation_stalls(digits: Dataset) -> None:
    cfg = DistillConfig(epochs=50, lr=1e-9, patience=2)
    model = small_net()
    result = distill(model, model, digits, cfg)  # lr 1e-9: only BatchNorm statistics move
    assert result.epochs_run == result.best_epoch + 2 < 50


CONFIG_ERRORS = [
    pytest.param({"alpha": 2}, "alpha 2 is outside [0, 1]", id="alpha"),
    pytest.param({"temperature": 0}, "temperature 0 must be positive", id="temperature"),
    pytest.param({"epochs": 0}, "epochs 0 must be at least 1", id="epochs"),
    pytest.param({"lr": -1.0}, "learning rate -1.0 must be positive", id="lr"),
    pytest.param({"optimizer": "lion"}, "known: adam, sgd", id="optimizer"),
]


@pytest.mark.parametrize(("fields", "message"), CONFIG_ERRORS)
def test_bad_config_is_a_one_line_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(EdgecError) as caught:
        DistillConfig(**fields)  # type: ignore[arg-type]
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_teacher_and_student_outputs_must_match(digits: Dataset) -> None:
    wide = nn.Sequential(nn.Flatten(), nn.Linear(256, 5))
    with pytest.raises(EdgecError, match=r"student outputs \(2, 5\) but teacher outputs \(2, 10\)"):
        distill(wide, small_net(), digits, DistillConfig(epochs=1))


def test_hint_layers_must_exist(digits: Dataset) -> None:
    with pytest.raises(EdgecError, match="hint layer 'nope' is not in the student"):
        distill(small_net(), small_net(), digits, DistillConfig(epochs=1, hints=(("nope", "6"),)))
