"""compress: data → prune → distill on a PyTorch model, each only where asked for, with the
model's facts (params, MACs, size, accuracy) after each step that changed it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.accuracy import ModelFacts
from edgec.artifacts import OnnxModel, TorchModel
from edgec.errors import EdgecError
from edgec.progress import StageLog
from edgec.stages.load import load

if TYPE_CHECKING:
    from edgec.datasets import Dataset
    from edgec.stages.distill import DistillConfig
    from edgec.stages.prune import PruneConfig


@dataclass(frozen=True)
class CompressOptions:
    """What happens to a PyTorch model before export; all off by default."""

    data: str | None = None  # digits, an .npz or a class folder: accuracy and training data
    prune: PruneConfig | None = None
    finetune_epochs: int = 3  # between iterative pruning steps (needs data)
    distill: DistillConfig | None = None  # None: no distillation
    teacher: str | None = None  # default: the model as loaded (before pruning)
    teacher_weights: Path | None = None

    @property
    def active(self) -> bool:
        return self.data is not None or self.prune is not None or self.distill is not None


@dataclass(frozen=True)
class Compressed:
    """The model after compression, and the facts after each stage that changed it."""

    model: TorchModel | OnnxModel
    facts: dict[str, ModelFacts]
    data: Dataset | None


def compress(
    source: TorchModel | OnnxModel, options: CompressOptions, round_to: int, log: StageLog
) -> Compressed:
    """data → prune → distill on a loaded PyTorch model, each stage only where asked for."""
    from edgec.accuracy import facts

    if not options.active:
        return Compressed(source, {}, None)
    if not isinstance(source, TorchModel) or not _is_plain_module(source.module):
        raise EdgecError(
            f"{source.source}: --data, --prune and --distill need a PyTorch model given as "
            "file.py:factory (a .onnx, TorchScript or torch.export file cannot be retrained)"
        )
    import torch

    example = torch.zeros(source.inputs[0].shape)
    data = None
    if options.data is not None:
        with log.stage("data") as s:
            data = _dataset(options.data, source, example)
            s.note(f"{data.name}: {len(data.train_x)} train / {len(data.val_x)} val images")
    record = {"load": facts(source.module, example, data)}
    teacher = source
    if options.prune is not None:
        with log.stage("prune") as s:
            pruned = _prune(source, example, options, data, round_to)
            source = replace(source, module=pruned.module)
            record["prune"] = facts(pruned.module, example, data)
            s.note(pruned.note + accuracy_note(record["prune"]))
    if options.distill is not None:
        if options.teacher is not None:
            teacher = _teacher(options, source)
        elif options.prune is None:
            raise EdgecError("--distill needs a teacher: give --teacher file.py:factory or --prune")
        if data is None:
            raise EdgecError("--distill trains on data: give --data digits, an .npz or a folder")
        with log.stage("distill") as s:
            distilled = _distill(source, teacher, data, options.distill, log)
            source = replace(source, module=distilled.module)
            record["distill"] = facts(distilled.module, example, data)
            s.note(
                f"{distilled.epochs_run} epochs, best {distilled.best_epoch}; teacher "
                f"{distilled.teacher_val_accuracy:.1f}%" + accuracy_note(record["distill"])
            )
    return Compressed(source, record, data)


def with_export_accuracy(onnx_model: OnnxModel, compressed: Compressed) -> dict[str, ModelFacts]:
    """The compression facts, plus the exported model's accuracy in ONNX Runtime (with data)."""
    from edgec.accuracy import onnx_top1

    if compressed.data is None:
        return compressed.facts
    data = compressed.data
    last = list(compressed.facts.values())[-1]
    accuracy = onnx_top1(onnx_model.path, data.val_x, data.val_y)
    return {**compressed.facts, "export": replace(last, accuracy=accuracy)}


def export_note(onnx_model: OnnxModel, exported: ModelFacts | None) -> str:
    """The export stage's line: parity with PyTorch, and accuracy where data was given."""
    if onnx_model.export_max_abs_diff is None:
        return ""
    note = f"ONNX opset ≥17, max abs diff vs PyTorch {onnx_model.export_max_abs_diff:.2e}"
    return note + (accuracy_note(exported) if exported is not None else "")


def _is_plain_module(module: Any) -> bool:
    import torch

    return isinstance(module, torch.nn.Module) and not isinstance(module, torch.jit.ScriptModule)


def _dataset(spec: str, source: TorchModel, example: Any) -> Dataset:
    import torch

    from edgec.datasets import load_dataset

    with torch.no_grad():
        logits = source.module(example)
    if logits.dim() != 2:
        raise EdgecError(
            f"{source.source} outputs shape {tuple(logits.shape)}; --data needs a classifier's "
            "(batch, classes) logits"
        )
    return load_dataset(spec, source.inputs[0].shape, classes=int(logits.shape[1]))


def _prune(
    source: TorchModel, example: Any, options: CompressOptions, data: Dataset | None, round_to: int
) -> Any:
    from edgec.stages.distill import DistillConfig, fit
    from edgec.stages.prune import prune

    assert options.prune is not None
    cfg = options.prune if options.prune.round_to > 1 else replace(options.prune, round_to=round_to)
    finetune = None
    if cfg.steps > 1 and data is not None:
        tuning = DistillConfig(epochs=options.finetune_epochs)
        finetune = lambda m: fit(m, data, tuning).module  # noqa: E731
    return prune(source.module, example, cfg, data, finetune)


def _teacher(options: CompressOptions, student: TorchModel) -> TorchModel:
    import tempfile

    assert options.teacher is not None
    shapes = [s.shape for s in student.inputs]
    with tempfile.TemporaryDirectory(prefix="edgec-teacher-") as tmp:
        teacher = load(options.teacher, shapes, Path(tmp), options.teacher_weights)
    if not isinstance(teacher, TorchModel) or not _is_plain_module(teacher.module):
        raise EdgecError(f"--teacher {options.teacher}: give a PyTorch file.py:factory")
    return teacher


def _distill(
    student: TorchModel, teacher: TorchModel, data: Dataset, cfg: DistillConfig, log: StageLog
) -> Any:
    from edgec.stages.distill import distill

    def progress(epoch: int, loss: float, accuracy: float) -> None:
        log.step(epoch, cfg.epochs)
        log.say(f"epoch {epoch}/{cfg.epochs}: loss {loss:.4f}, val top-1 {accuracy:.1f}%")

    return distill(student.module, teacher.module, data, cfg, progress)


def accuracy_note(f: ModelFacts) -> str:
    return "" if f.accuracy is None else f", val top-1 {f.accuracy:.1f}%"
