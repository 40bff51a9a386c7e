"""The one place that orders edgec's stages: load → (data → prune → distill) → export →
(quantize) → import → compile → bundle → measure → report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec import onnx_graph, reference, staging
from edgec.accuracy import ModelFacts
from edgec.artifacts import OnnxModel, TorchModel
from edgec.errors import CheckFailed, EdgecError
from edgec.progress import StageLog
from edgec.relax.tune import TuneOptions, TuningSummary
from edgec.stages import report as reporting
from edgec.stages.bundle import MANIFEST, bundle, open_bundle
from edgec.stages.export import export
from edgec.stages.load import load
from edgec.stages.measure import measure, runnable_here
from edgec.stages.preflight import preflight
from edgec.staging import (
    IN_PLACE,
    output_lock,
    replace_file,
    staged_directory,
    update_bundle,
)
from edgec.targets import TargetProfile, get_target, with_cuda_arch

if TYPE_CHECKING:
    from edgec.boards import Board
    from edgec.datasets import Dataset
    from edgec.stages.distill import DistillConfig
    from edgec.stages.prune import PruneConfig
    from edgec.stages.quantize import QuantizeConfig, QuantizedModel


NO_CALIBRATION = (
    "--quantize int8 needs calibration data: --calib-data digits, an .npz or a folder "
    "(or --data); ranges from random inputs would be meaningless"
)


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


@dataclass(frozen=True)
class BuildOptions:
    input_shapes: list[tuple[int, ...]] | None = None
    weights: Path | None = None  # a state dict for a file.py:factory model
    # ONNX inputs folded into constants (integer inputs that carry shapes): name → values
    input_values: dict[str, np.ndarray] | None = None
    compress: CompressOptions = field(default_factory=CompressOptions)
    quantize: QuantizeConfig | None = None  # None: float32
    fp16: bool = False  # half-precision weights and activations, float32 accumulation
    calib_data: str | None = None  # default: compress.data
    repeat: int | None = None  # runner repetitions; None: the target's default
    emulate: bool = True  # measure under the target's emulator when it has one
    measure: bool = True
    tuning: TuneOptions | None = None  # None: build without the tuning database
    board: str | None = None  # MCU targets: the board to link for (default: the target's)
    cuda_arch: str | None = None  # CUDA targets: sm_XY (default: the profile's, "host": this GPU)
    force: bool = False  # replace the output even if edgec did not write it


def build(
    model: str, target_name: str, out: Path, options: BuildOptions, log: StageLog
) -> dict[str, Any]:
    """Build MODEL for the target into the bundle directory `out`; returns the report."""
    profile = with_cuda_arch(get_target(target_name), options.cuda_arch)
    _check_options(profile, options)
    with staged_directory(out, options.force) as work:
        with log.stage("load") as s:
            source = load(model, options.input_shapes, work, options.weights, options.input_values)
            changed = source.load_note() if isinstance(source, OnnxModel) else ""
            s.note(source.source + (f"; {changed}" if changed else ""))
        compressed = compress(source, options.compress, profile.capabilities.channel_multiple, log)
        with log.stage("export") as s:
            onnx_model = export(compressed.model, work)
            model_facts = with_export_accuracy(onnx_model, compressed)
            s.note(export_note(onnx_model, model_facts.get("export")))
        if profile.capabilities.backend == "c":  # hopeless sizes fail before quantizing
            preflight(onnx_model, _mcu_board(profile, options.board))
        quantized, calib = None, None
        if options.quantize is not None:
            with log.stage("quantize") as s:
                quantized, calib = _quantize(onnx_model, options, compressed)
                model_facts = {**model_facts, **_quantized_facts(quantized, model_facts)}
                calibration = json.dumps(quantized.calibration_json(), allow_nan=False)
                replace_file(work / "calibration.json", calibration)
                s.note(quantize_note(quantized))
        if profile.capabilities.backend == "c":
            assert quantized is not None and calib is not None
            data = _build_c(quantized, calib, profile, work, options, model_facts, log)
        else:
            data = _build_tvm(onnx_model, quantized, profile, work, options, model_facts, log)
    _raise_on_parity(data)
    return data


def _check_options(profile: TargetProfile, options: BuildOptions) -> None:
    """Options that cannot work for this target fail before any work is done."""
    if options.quantize is not None and not (options.calib_data or options.compress.data):
        raise EdgecError(NO_CALIBRATION)
    if options.tuning is not None:
        from edgec.relax.compile import check_tuning

        check_tuning(profile, options.tuning)
    if profile.capabilities.backend == "c":
        _mcu_board(profile, options.board)
    elif options.board is not None:
        raise EdgecError(
            f"--board links MCU firmware; {profile.name} bundles go to boards with edgec flash"
        )
    if options.fp16 and not profile.capabilities.has_fp16:
        raise EdgecError(
            f"{profile.name} has no native fp16 arithmetic (it needs CUDA or Armv8.2-A); "
            "use --quantize int8 or none"
        )
    if profile.capabilities.int8_only and options.quantize is None:
        raise EdgecError(
            f"{profile.name} runs int8 only: add --quantize int8 --calib-data DATA "
            "(digits, an .npz or a folder)"
        )


def _build_tvm(
    onnx_model: OnnxModel,
    quantized: QuantizedModel | None,
    profile: TargetProfile,
    work: Path,
    options: BuildOptions,
    model_facts: dict[str, ModelFacts],
    log: StageLog,
) -> dict[str, Any]:
    """import → (tune) → compile → bundle → measure → report, for TVM targets."""
    from edgec.relax.compile import compile_model, tune_model, tuning_database
    from edgec.relax.import_onnx import import_onnx
    from edgec.relax.lower_int8 import import_qgraph
    from edgec.relax.mixed_precision import to_fp16

    with log.stage("import") as s:
        relax_module = import_onnx(onnx_model) if quantized is None else import_qgraph(quantized)
        if options.fp16:
            relax_module = to_fp16(relax_module)
            s.note("fp16 weights and activations, fp32 accumulation")
    db, summary = None, None
    if options.tuning is not None:
        db = tuning_database(profile, options.tuning.database)
        if options.tuning.trials > 0:
            with log.stage("tune") as s:
                summary = tune_model(relax_module, profile, options.tuning, log.say)
                s.note(tuning_note(summary))
    with log.stage("compile") as s:
        built = compile_model(relax_module, profile, work, tuning_db=db)
        parts = (str(built.tvm_target.get(k, "")) for k in ("kind", "mcpu", "arch"))
        target = " ".join(p for p in parts if p)
        if dot := built.schedules.get("int8_dot"):
            target += f"; {dot} int8 kernels on {profile.capabilities.int8_dot}"
        s.note(target)
    with log.stage("bundle") as s:
        result = bundle(built, work)
        s.note(f"{len(result.manifest['files'])} files")
    skipped = runnable_here(profile, options.emulate) if options.measure else "--no-measure"
    measurement = None
    if skipped is None:
        with log.stage("measure") as s:
            inputs = reference.random_inputs(onnx_model.inputs)
            repeat = options.repeat or (50 if profile.capabilities.runs_on_host else 5)
            measurement = measure(result, profile, inputs, repeat=repeat, emulate=options.emulate)
            s.note(
                f"p50 {measurement.latency_ms['p50']:.3f} ms ({measurement.where}), "
                f"max abs diff {measurement.max_abs_diff:.2e}"
            )
    stats = onnx_graph.stats(onnx_graph.read(onnx_model.path))
    data = reporting.report(
        result, built, stats, log.times, measurement, skipped, summary, model_facts
    )
    reporting.write(work, data)
    return data


def _mcu_board(profile: TargetProfile, name: str | None) -> Board:
    from edgec.boards import get_board

    assert profile.board is not None
    board = get_board(name or profile.board)
    if board.target != profile.name:
        raise EdgecError(
            f"board {board.name} takes {board.target} bundles, not {profile.name}; "
            f"build with --target {board.target}"
        )
    return board


def _build_c(
    quantized: QuantizedModel,
    calib: Dataset,
    profile: TargetProfile,
    work: Path,
    options: BuildOptions,
    model_facts: dict[str, ModelFacts],
    log: StageLog,
) -> dict[str, Any]:
    """generate → firmware → bundle → measure (qemu-system-arm) → report, for MCU targets."""
    from edgec.stages import firmware
    from edgec.stages.bundle import bundle_firmware
    from edgec.stages.generate import generate

    board = _mcu_board(profile, options.board)
    with log.stage("generate") as s:
        sample = (calib.val_x if len(calib.val_x) else calib.train_x)[:1]
        library = generate(quantized, profile, work, sample)
        s.note(
            f"{len(library.layers)} layers, arena {library.arena_bytes:,} B "
            f"(lower bound {library.arena_lower_bound:,} B)"
        )
    with log.stage("firmware") as s:
        fw = firmware.link(library, profile, board)
        fp = fw.footprint
        s.note(f"{board.name}: flash {fp.flash_bytes:,} B, RAM {fp.ram_bytes:,} B")
    with log.stage("bundle") as s:
        result = bundle_firmware(fw, quantized, work)
        s.note(f"{len(result.manifest['files'])} files")
    run = None
    skipped = None if options.measure and board.qemu_machine else "--no-measure"
    if board.qemu_machine is None:
        skipped = f"{board.name} is a real board: run it with edgec flash"
    if skipped is None:
        with log.stage("measure") as s:
            assert board.qemu_machine is not None
            run = firmware.emulate(fw.elf, board.qemu_machine)
            s.note(
                f"{run.instructions:,} instructions (emulated {board.qemu_machine}), "
                f"bit-exact: {np.array_equal(run.output, library.expected_output)}"
            )
    stats = onnx_graph.stats(onnx_graph.read(quantized.float_model.path))
    data = reporting.mcu_report(result, fw, quantized, stats, log.times, run, skipped, model_facts)
    reporting.write(work, data)
    return data


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
            s.note(pruned.note + _accuracy_note(record["prune"]))
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
                f"{distilled.teacher_val_accuracy:.1f}%" + _accuracy_note(record["distill"])
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
    return note + (_accuracy_note(exported) if exported is not None else "")


def _quantize(
    onnx_model: OnnxModel, options: BuildOptions, compressed: Compressed
) -> tuple[QuantizedModel, Dataset]:
    """int8 from calibration data (--calib-data, else --data); accuracy on --data's split."""
    from edgec.datasets import load_dataset
    from edgec.stages.quantize import quantize

    assert options.quantize is not None
    spec = options.calib_data or options.compress.data
    if spec is None:
        raise EdgecError(NO_CALIBRATION)
    shape = onnx_model.inputs[0].shape
    out = onnx_model.outputs[0].shape
    classes = out[1] if len(out) == 2 else None
    if options.calib_data is None and compressed.data is not None:
        calib = compressed.data  # --data: the data stage has loaded it already
    else:
        calib = load_dataset(spec, shape, classes=classes)
    validation = None
    data = compressed.data
    if data is None and classes is not None and spec == options.calib_data:
        data = calib
    if data is not None and classes is not None:
        validation = (data.val_x, data.val_y)
    return quantize(onnx_model, calib.train_x, options.quantize, validation), calib


def _quantized_facts(
    quantized: QuantizedModel, before: dict[str, ModelFacts]
) -> dict[str, ModelFacts]:
    if not before:
        return {}
    last = list(before.values())[-1]
    accuracy = quantized.accuracy.get("int8")
    return {"quantize": replace(last, size_bytes=quantized.graph.weight_bytes, accuracy=accuracy)}


def quantize_note(quantized: QuantizedModel) -> str:
    """The quantize stage's line: what runs in int8, and what accuracy it kept."""
    graph = quantized.graph
    note = f"{graph.int8_ops} int8 ops, {graph.float_ops} float ({quantized.method} ranges)"
    if quantized.float_layers:
        note += f"; kept in float: {', '.join(quantized.float_layers)}"
    if quantized.accuracy:
        note += f"; val top-1 {quantized.accuracy['fp32']:.1f}% fp32 → "
        note += f"{quantized.accuracy['int8']:.1f}% int8"
    return note


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


def _accuracy_note(f: ModelFacts) -> str:
    return "" if f.accuracy is None else f", val top-1 {f.accuracy:.1f}%"


def compress_to_file(
    model: str,
    input_shapes: list[tuple[int, ...]] | None,
    weights: Path | None,
    options: CompressOptions,
    round_to: int,
    out: Path,
    log: StageLog,
) -> dict[str, ModelFacts]:
    """load → data → prune → distill, saved as a TorchScript .pt that edgec build reads."""
    import tempfile

    from edgec.stages.load import save_torchscript

    if out.suffix != ".pt":
        raise EdgecError(f"-o {out}: the compressed model is written as TorchScript, name it .pt")
    with tempfile.TemporaryDirectory(prefix="edgec-compress-") as tmp:
        with log.stage("load") as s:
            source = load(model, input_shapes, Path(tmp), weights)
            s.note(source.source)
        compressed = compress(source, options, round_to, log)
        assert isinstance(compressed.model, TorchModel)
        with log.stage("save") as s:
            out.parent.mkdir(parents=True, exist_ok=True)
            save_torchscript(compressed.model, out)
            s.note(str(out))
    return compressed.facts


def tune(
    model: str,
    target_name: str,
    input_shapes: list[tuple[int, ...]] | None,
    options: TuneOptions,
    log: StageLog,
) -> TuningSummary:
    """Tune MODEL's kernels for the target into its tuning database; writes nothing else."""
    import tempfile

    from edgec.relax.compile import check_tuning, tune_model
    from edgec.relax.import_onnx import import_onnx

    profile = with_cuda_arch(get_target(target_name), None)  # "host": the GPU measuring them
    check_tuning(profile, options)
    with tempfile.TemporaryDirectory(prefix="edgec-tune-") as tmp:
        work = Path(tmp)
        with log.stage("load") as s:
            source = load(model, input_shapes, work)
            s.note(source.source)
        with log.stage("export"):
            onnx_model = export(source, work)
        with log.stage("import"):
            relax_module = import_onnx(onnx_model)
        with log.stage("tune") as s:
            summary = tune_model(relax_module, profile, options, log.say)
            s.note(tuning_note(summary))
    return summary


def tuning_note(summary: TuningSummary) -> str:
    """The tune stage's line: what was measured, what came from the database."""
    return (
        f"{summary.tasks} kernels: {summary.tuned} tuned, {summary.from_database} from the "
        f"database, {summary.default_rules} untuned; {summary.measurements} measurements"
    )


def run(
    path: Path, inputs: list[np.ndarray] | None, repeat: int | None, emulate: bool, log: StageLog
) -> dict[str, Any]:
    """Run an existing bundle, check it against its reference, and update its report."""
    if not (path / MANIFEST).is_file():
        open_bundle(path)  # its one-line refusal, before a lock file is made beside `path`
    with output_lock(path, IN_PLACE):  # a build replacing it meanwhile would mix two bundles
        return _run(path, inputs, repeat, emulate, log)


def _run(
    path: Path, inputs: list[np.ndarray] | None, repeat: int | None, emulate: bool, log: StageLog
) -> dict[str, Any]:
    result, profile = open_bundle(path)
    report_path = path / "report.json"
    if not report_path.is_file():
        raise EdgecError(f"{path} has no report.json; rebuild the bundle")
    if profile.capabilities.backend == "c":
        return _run_firmware(path, result.manifest, result.typed.firmware, inputs, emulate, log)
    specs = result.typed.inputs
    with log.stage("measure") as s:
        measurement = measure(
            result,
            profile,
            inputs or reference.random_inputs(specs),
            repeat=repeat or (50 if profile.capabilities.runs_on_host else 5),
            emulate=emulate,
        )
        s.note(
            f"p50 {measurement.latency_ms['p50']:.3f} ms ({measurement.where}), "
            f"max abs diff {measurement.max_abs_diff:.2e}"
        )
    old = json.loads(report_path.read_text(encoding="utf-8"))
    data = reporting.with_measurement(old, measurement, None, ("run", log.times[-1][1]))
    update_bundle(path, reporting.files(data))
    _raise_on_parity(data)
    return data


def _run_firmware(
    path: Path,
    manifest: dict[str, Any],
    elf: str | None,  # validated by open_bundle: a plain file name in the bundle
    inputs: list[np.ndarray] | None,
    emulate: bool,
    log: StageLog,
) -> dict[str, Any]:
    """Run an MCU bundle's firmware in qemu-system-arm; bit-exact against its expected output."""
    from edgec.boards import get_board
    from edgec.stages import firmware

    if inputs:
        raise EdgecError("an MCU bundle runs its embedded test input; --input does not apply")
    board = get_board(manifest["board"])
    if board.qemu_machine is None:
        raise EdgecError(f"{board.name} is a real board: run the bundle with edgec flash")
    if not emulate:
        raise EdgecError(f"{manifest['target']} bundles run on the board; add --emulate for qemu")
    if elf is None:
        raise EdgecError(f"{path} holds no firmware; rebuild it")
    with log.stage("measure") as s:
        run = firmware.emulate(path / elf, board.qemu_machine)
        s.note(f"{run.instructions:,} instructions (emulated {board.qemu_machine})")
    old = json.loads((path / "report.json").read_text(encoding="utf-8"))
    data = reporting.with_mcu_run(old, manifest["layers"], run, manifest["expected_output"])
    update_bundle(path, reporting.files(data))
    _raise_on_parity(data)
    return data


def _raise_on_parity(data: dict[str, Any]) -> None:
    parity = data["parity"]
    if parity.get("ok") is False and parity.get("max_abs_diff") is None:
        raise CheckFailed(
            f"the outputs cannot be compared with {parity['reference']}: max abs diff is "
            f"{parity.get('max_abs_diff_reason', 'unknown')} (does the input hold NaN or inf?); "
            "the report is written"
        )
    if parity.get("ok") is False:
        raise CheckFailed(
            f"outputs differ from {parity['reference']} by up to {parity['max_abs_diff']:.3g}; "
            f"{parity['within_share']:.1%} are within {parity['tolerance']:.3g} "
            f"(needed: {parity['required_share']:.0%}); the report is written, the build is suspect"
        )


@dataclass(frozen=True)
class FlashOptions:
    run: bool = False  # run the bundle on the board and record the measurement
    repeat: int = 20
    clean: bool = False  # remove the bundle from the board afterwards
    dry_run: bool = False  # print the commands (ssh/scp, or the probe's), run none
    boards_dir: Path | None = None


def flash(path: Path, board_name: str, options: FlashOptions, log: StageLog) -> dict[str, Any]:
    """Put a verified bundle on a board; with options.run, measure it there and update the
    bundle's report (latency_ms.where = "device", or "emulated" behind an emulator)."""
    from edgec.boards import get_board
    from edgec.package_files import cache_dir
    from edgec.stages import flash as flashing

    board = get_board(board_name, options.boards_dir)
    result, _ = open_bundle(path)  # checksums first: a corrupted bundle never leaves
    flashing.check_target(result, board)
    report_path = path / "report.json"
    data = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    if board.transport == "ssh":
        with log.stage("flash") as s:
            assert board.ssh is not None
            known_hosts = Path(board.ssh.known_hosts or cache_dir() / "known_hosts")
            flashed = flashing.flash_ssh(
                result,
                board,
                known_hosts,
                options.run,
                options.repeat,
                options.clean,
                options.dry_run,
            )
            dry = "dry run, nothing sent: " if options.dry_run else ""
            s.note(f"{dry}{board.name}:{flashed.location}")
        if options.dry_run:
            return {"flash": {"board": board.name, "commands": [list(c) for c in flashed.sent]}}
    elif board.transport in ("pyocd", "openocd"):
        with log.stage("flash") as s:
            flashed = flashing.flash_probe(result, board, options.dry_run)
            s.note(flashing.probe_note(flashed, options.dry_run, options.run))
        # nothing is read back through a probe: the report's old measurement is not shown as new
        return {"flash": {"board": board.name, "command": list(flashed.command)}}
    else:  # this machine, natively or under an emulator: running is measuring
        return run(path, None, options.repeat, emulate=True, log=log)
    if flashed.measurement is not None:
        data = reporting.with_measurement(
            data, flashed.measurement, None, ("flash", log.times[-1][1])
        )
        data["board"] = board.name
        update_bundle(path, reporting.files(data))
        _raise_on_parity(data)
    return data


@dataclass(frozen=True)
class BuiltTarget:
    """One target's outcome in a multi-target build."""

    target: str
    out: Path
    log: str  # the stage lines, printed once the build is done
    error: str | None  # one line, or None
    exit_code: int


def build_many(
    model: str, targets: list[str], outs: list[Path], options: BuildOptions
) -> list[BuiltTarget]:
    """Build MODEL for several targets at once, one process each, then measure the bundles one
    after another (parallel runs would skew each other's timings); every target is attempted
    even when another fails."""
    import concurrent.futures
    import multiprocessing
    import os

    for name in targets:
        get_target(name)  # an unknown name fails before anything starts
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(len(targets), os.cpu_count() or 1))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        jobs = []
        for name, out in zip(targets, outs, strict=True):
            arch = options.cuda_arch if _on_gpu(name) else None  # for the CUDA targets only
            job = replace(options, measure=False, cuda_arch=arch)
            jobs.append(pool.submit(_build_one, model, name, out, job))
        try:
            built = [job.result() for job in jobs]
        except BaseException:  # Ctrl-C or SIGTERM here: stop the workers, which clean up
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            for job, out in zip(jobs, outs, strict=True):  # for a true last message
                finished = job.done() and not job.cancelled() and job.exception() is None
                if finished and job.result().error is None:
                    staging.committed.append(out)
            raise
    if not options.measure:
        return built
    return [_measure_one(b, options) if b.error is None else b for b in built]


def _on_gpu(target: str) -> bool:
    return get_target(target).capabilities.device == "cuda"


def _measure_one(built: BuiltTarget, options: BuildOptions) -> BuiltTarget:
    import io

    arch = options.cuda_arch if _on_gpu(built.target) else None
    if runnable_here(with_cuda_arch(get_target(built.target), arch), options.emulate) is not None:
        return built  # e.g. a GPU bundle here: the report says why it was not measured
    stream = io.StringIO()
    try:
        run(built.out, None, options.repeat, options.emulate, StageLog(stream))
    except EdgecError as e:
        return replace(
            built, log=built.log + stream.getvalue(), error=str(e), exit_code=e.exit_code
        )
    return replace(built, log=built.log + stream.getvalue())


def _build_one(model: str, target: str, out: Path, options: BuildOptions) -> BuiltTarget:
    import io

    from edgec import interrupts

    stream = io.StringIO()
    try:
        with interrupts.handled():  # SIGTERM from build_many: remove the staging area, then stop
            build(model, target, out, options, StageLog(stream))
    except EdgecError as e:
        return BuiltTarget(target, out, stream.getvalue(), str(e), e.exit_code)
    except Exception as e:  # an internal error in one target must not hide the others
        return BuiltTarget(target, out, stream.getvalue(), f"internal error: {e!r}", 2)
    return BuiltTarget(target, out, stream.getvalue(), None, 0)


def quantize_to_file(
    model: str,
    input_shapes: list[tuple[int, ...]] | None,
    options: BuildOptions,
    out: Path,
    log: StageLog,
) -> QuantizedModel:
    """load → export → quantize, written as an ONNX QDQ model (what ONNX Runtime or any QDQ
    consumer runs) with its calibration beside it (OUT.calibration.json)."""
    import shutil
    import tempfile

    if out.suffix != ".onnx":
        raise EdgecError(f"-o {out}: the quantized model is written as ONNX QDQ, name it .onnx")
    if not (options.calib_data or options.compress.data):
        raise EdgecError(NO_CALIBRATION)
    with tempfile.TemporaryDirectory(prefix="edgec-quantize-") as tmp:
        work = Path(tmp)
        with log.stage("load") as s:
            source = load(model, input_shapes, work, options.weights)
            s.note(source.source)
        with log.stage("export"):
            onnx_model = export(source, work)
        with log.stage("quantize") as s:
            compressed = Compressed(onnx_model, {}, None)
            quantized, _ = _quantize(onnx_model, options, compressed)
            s.note(quantize_note(quantized))
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        try:
            shutil.copyfile(quantized.onnx.path, partial)
            calibration = json.dumps(quantized.calibration_json(), allow_nan=False)
            replace_file(out.with_suffix(".calibration.json"), calibration)
            partial.replace(out)
        except BaseException:  # a full disk, Ctrl-C, SIGTERM: no .partial left behind
            partial.unlink(missing_ok=True)
            raise
    return quantized
