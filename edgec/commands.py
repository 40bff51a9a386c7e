"""edgec's commands beside `build` (edgec/pipeline.py): run and flash an existing bundle, tune,
build for several targets at once, and the commands that write one model file (compress,
quantize). The CLI parses options and calls these."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec import backends, staging
from edgec.accuracy import ModelFacts
from edgec.artifacts import TorchModel
from edgec.compress import CompressOptions, compress
from edgec.errors import EdgecError
from edgec.pipeline import BuildOptions, build, measure_stage, raise_on_parity
from edgec.progress import StageLog
from edgec.report_schema import Report
from edgec.stages import report as reporting
from edgec.stages.bundle import MANIFEST, open_bundle
from edgec.stages.calibration import NO_CALIBRATION, quantize_note, quantize_with_data
from edgec.stages.export import export
from edgec.stages.load import load
from edgec.staging import IN_PLACE, output_lock, replace_file, replace_written, update_bundle
from edgec.targets import get_target, with_cuda_arch
from edgec.tuning import TuneOptions, TuningSummary

if TYPE_CHECKING:
    from edgec.int8 import QuantizedModel


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
    bundle, _ = open_bundle(path)
    report_path = path / "report.json"
    if not report_path.is_file():
        raise EdgecError(f"{path} has no report.json; rebuild the bundle")
    measurement = measure_stage(bundle, backends.How(inputs, repeat, emulate), log)
    old = Report.read(report_path).to_json()
    data = reporting.with_measurement(old, measurement, None, ("run", log.times[-1][1]))
    update_bundle(path, reporting.files(data))
    raise_on_parity(data)
    return data


@dataclass(frozen=True)
class FlashOptions:
    run: bool = False  # run the bundle on the board and record the measurement
    repeat: int = 20
    clean: bool = False  # remove the bundle from the board afterwards
    dry_run: bool = False  # print the commands (ssh/scp, adb, or the probe's), run none
    boards_dir: Path | None = None


def flash(path: Path, board_name: str, options: FlashOptions, log: StageLog) -> dict[str, Any]:
    """Put a verified bundle on a board; with options.run, measure it there and update the
    bundle's report (latency_ms.where = "device", or "emulated" behind an emulator)."""
    from edgec.boards import get_board
    from edgec.package_files import cache_dir
    from edgec.stages import flash as flashing

    board = get_board(board_name, options.boards_dir)
    bundle, _ = open_bundle(path)  # checksums first: a corrupted bundle never leaves
    flashing.check_target(bundle, board)
    report_path = path / "report.json"
    if board.transport in ("ssh", "adb"):
        with log.stage("flash") as s:
            if board.transport == "adb":
                from edgec.stages.adb import flash_adb

                flashed = flash_adb(
                    bundle, board, options.run, options.repeat, options.clean, options.dry_run
                )
            else:
                assert board.ssh is not None
                known_hosts = Path(board.ssh.known_hosts or cache_dir() / "known_hosts")
                flashed = flashing.flash_ssh(
                    bundle,
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
            flashed = flashing.flash_probe(bundle, board, options.dry_run)
            s.note(flashing.probe_note(flashed, options.dry_run, options.run))
        # nothing is read back through a probe: the report's old measurement is not shown as new
        return {"flash": {"board": board.name, "command": list(flashed.command)}}
    else:  # this machine, natively or under an emulator: running is measuring
        return run(path, None, options.repeat, emulate=True, log=log)
    data: dict[str, Any] = {}
    if flashed.measurement is not None:
        data = Report.read(report_path).to_json()
        data = reporting.with_measurement(
            data, flashed.measurement, None, ("flash", log.times[-1][1])
        )
        data["board"] = board.name
        update_bundle(path, reporting.files(data))
        raise_on_parity(data)
    return data


def tune(
    model: str,
    target_name: str,
    input_shapes: list[tuple[int, ...]] | None,
    options: TuneOptions,
    log: StageLog,
) -> TuningSummary:
    """Tune MODEL's kernels for the target into its tuning database; writes nothing else."""
    import tempfile

    from edgec.relax.compile import tune_model
    from edgec.relax.import_onnx import import_onnx

    profile = with_cuda_arch(get_target(target_name), None)  # "host": the GPU measuring them
    backends.backend(profile).check(profile, None, options)  # CUDA: a GPU here or a tracker
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
            s.note(summary.note())
    return summary


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
            gpu = get_target(name).capabilities.device == "cuda"
            arch = options.cuda_arch if gpu else None  # --cuda-arch: for the CUDA targets only
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


def _measure_one(built: BuiltTarget, options: BuildOptions) -> BuiltTarget:
    import io

    bundle, profile = open_bundle(built.out)
    if backends.backend(profile).unavailable(bundle, options.emulate) is not None:
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
    assert options.quantize is not None
    with tempfile.TemporaryDirectory(prefix="edgec-quantize-") as tmp:
        work = Path(tmp)
        with log.stage("load") as s:
            source = load(model, input_shapes, work, options.weights)
            s.note(source.source)
        with log.stage("export"):
            onnx_model = export(source, work)
        with log.stage("quantize") as s:
            quantized, _ = quantize_with_data(
                onnx_model, options.quantize, options.calib_data, options.compress.data
            )
            s.note(quantize_note(quantized))
        out.parent.mkdir(parents=True, exist_ok=True)
        calibration = json.dumps(quantized.calibration_json(), allow_nan=False)

        def write(partial: Path) -> None:  # the model appears only with its calibration
            shutil.copyfile(quantized.onnx.path, partial)
            replace_file(out.with_suffix(".calibration.json"), calibration)

        replace_written(out, write)
    return quantized
