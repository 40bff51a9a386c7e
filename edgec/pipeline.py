"""The one place that orders edgec's stages for a build:

load → compress (data → prune → distill) → export → quantize → the backend's build → measure →
report. Which backend builds is the target's `backend` capability (edgec/backends/); the other
commands (run, flash, tune, several targets at once, the file-writing ones) are in
edgec/commands.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec import backends
from edgec.artifacts import Bundle, Measurement, OnnxModel
from edgec.compress import CompressOptions, compress, export_note, with_export_accuracy
from edgec.errors import CheckFailed, EdgecError
from edgec.progress import StageLog
from edgec.stages import report as reporting
from edgec.stages.calibration import NO_CALIBRATION, quantize_note, quantized_facts
from edgec.stages.export import export
from edgec.stages.load import load
from edgec.stages.measure import measure
from edgec.staging import replace_file, staged_directory
from edgec.targets import TargetProfile, get_target, with_cuda_arch, with_static
from edgec.tuning import TuneOptions

if TYPE_CHECKING:
    from edgec.stages.quantize import QuantizeConfig


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
    static: bool = False  # aarch64 targets: one static executable (--static)
    force: bool = False  # replace the output even if edgec did not write it


def build(
    model: str, target_name: str, out: Path, options: BuildOptions, log: StageLog
) -> dict[str, Any]:
    """Build MODEL for the target into the bundle directory `out`; returns the report."""
    profile = with_static(
        with_cuda_arch(get_target(target_name), options.cuda_arch), options.static
    )
    backend = backends.backend(profile)
    check_options(profile, options)
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
        backend.preflight(onnx_model, profile, options.board)  # hopeless sizes fail here
        to_build = backends.Model(
            onnx_model, fp16=options.fp16, tuning=options.tuning, board=options.board
        )
        if options.quantize is not None:
            with log.stage("quantize") as s:
                to_build = _quantize(to_build, options, compressed.data, work)
                assert to_build.quantized is not None
                model_facts = {**model_facts, **quantized_facts(to_build.quantized, model_facts)}
                s.note(quantize_note(to_build.quantized))
        built = backend.build(to_build, profile, work, log)
        measurement, skipped = None, "--no-measure"
        if options.measure:
            skipped = backend.unavailable(built.bundle, options.emulate)
        if skipped is None:
            how = backends.How(None, options.repeat, options.emulate)
            measurement = measure_stage(built.bundle, how, log)
        data = reporting.report(built, onnx_model, log.times, measurement, skipped, model_facts)
        reporting.write(work, data)
    raise_on_parity(data)
    return data


def check_options(profile: TargetProfile, options: BuildOptions) -> None:
    """Options that cannot work for this target fail before any work is done."""
    if options.quantize is not None and not (options.calib_data or options.compress.data):
        raise EdgecError(NO_CALIBRATION)
    backends.backend(profile).check(profile, options.board, options.tuning)
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


def _quantize(
    model: backends.Model, options: BuildOptions, data: Any, work: Path
) -> backends.Model:
    """The int8 model and its calibration record (calibration.json, shipped in the bundle)."""
    from edgec.stages.calibration import quantize_with_data

    assert options.quantize is not None
    quantized, calib = quantize_with_data(
        model.onnx, options.quantize, options.calib_data, options.compress.data, data
    )
    record = work / "calibration.json"
    replace_file(record, json.dumps(quantized.calibration_json(), allow_nan=False))
    return replace(model, quantized=quantized, calibration=calib, extras=(record,))


def measure_stage(bundle: Bundle, how: backends.How, log: StageLog) -> Measurement:
    """The measure stage: one run of the bundle by its backend, and its line."""
    with log.stage("measure") as s:
        measurement = measure(bundle, how)
        s.note(measurement.note())
    return measurement


def raise_on_parity(data: dict[str, Any]) -> None:
    """A report whose outputs failed their parity check fails the command (exit 1)."""
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
