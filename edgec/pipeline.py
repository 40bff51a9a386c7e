"""The one place that orders edgec's stages: load → export → import → compile → bundle →
measure → report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec import onnx_graph, reference
from edgec.artifacts import TensorSpec
from edgec.errors import CheckFailed, EdgecError
from edgec.progress import StageLog
from edgec.relax.tune import TuneOptions, TuningSummary
from edgec.stages import report as reporting
from edgec.stages.bundle import bundle, open_bundle
from edgec.stages.export import export
from edgec.stages.load import load
from edgec.stages.measure import measure, runnable_here
from edgec.staging import staged_directory, write_tarball
from edgec.targets import get_target


@dataclass(frozen=True)
class BuildOptions:
    input_shapes: list[tuple[int, ...]] | None = None
    repeat: int | None = None  # runner repetitions; None: the target's default
    emulate: bool = True  # measure under the target's emulator when it has one
    measure: bool = True
    tuning: TuneOptions | None = None  # None: build without the tuning database


def build(
    model: str, target_name: str, out: Path, options: BuildOptions, log: StageLog
) -> dict[str, Any]:
    """Build MODEL for the target into the bundle directory `out`; returns the report."""
    from edgec.relax.compile import compile_model, tune_model, tuning_database
    from edgec.relax.import_onnx import import_onnx

    profile = get_target(target_name)
    with staged_directory(out) as work:
        with log.stage("load") as s:
            source = load(model, options.input_shapes, work)
            s.note(source.source)
        with log.stage("export") as s:
            onnx_model = export(source, work)
            if onnx_model.export_max_abs_diff is not None:
                s.note(
                    f"ONNX opset ≥17, max abs diff vs PyTorch {onnx_model.export_max_abs_diff:.2e}"
                )
        with log.stage("import"):
            relax_module = import_onnx(onnx_model)
        db, summary = None, None
        if options.tuning is not None:
            db = tuning_database(profile, options.tuning.database)
            if options.tuning.trials > 0:
                with log.stage("tune") as s:
                    summary = tune_model(relax_module, profile, options.tuning, log.say)
                    s.note(tuning_note(summary))
        with log.stage("compile") as s:
            built = compile_model(relax_module, profile, work, tuning_db=db)
            s.note(
                " ".join(str(built.tvm_target.get(k, "")) for k in ("kind", "mcpu", "arch")).strip()
            )
        with log.stage("bundle") as s:
            result = bundle(built, work)
            s.note(f"{len(result.manifest['files'])} files")
        skipped = runnable_here(profile, options.emulate) if options.measure else "--no-measure"
        measurement = None
        if skipped is None:
            with log.stage("measure") as s:
                inputs = reference.random_inputs(onnx_model.inputs)
                repeat = options.repeat or (50 if profile.capabilities.runs_on_host else 5)
                measurement = measure(
                    result, profile, inputs, repeat=repeat, emulate=options.emulate
                )
                s.note(
                    f"p50 {measurement.latency_ms['p50']:.3f} ms ({measurement.where}), "
                    f"max abs diff {measurement.max_abs_diff:.2e}"
                )
        stats = onnx_graph.stats(onnx_graph.read(onnx_model.path))
        data = reporting.report(result, built, stats, log.times, measurement, skipped, summary)
        reporting.write(work, data)
    write_tarball(out)
    _raise_on_parity(data)
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

    profile = get_target(target_name)
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
    """Run an existing bundle, check it against ONNX Runtime, and update its report."""
    result, profile = open_bundle(path)
    specs = tuple(TensorSpec.from_json(s) for s in result.manifest["inputs"])
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
    report_path = path / "report.json"
    if not report_path.is_file():
        raise EdgecError(f"{path} has no report.json; rebuild the bundle")
    data = reporting.with_measurement(
        json.loads(report_path.read_text(encoding="utf-8")), measurement, None
    )
    reporting.write(path, data)
    write_tarball(path)
    _raise_on_parity(data)
    return data


def _raise_on_parity(data: dict[str, Any]) -> None:
    parity = data["parity"]
    if parity.get("ok") is False:
        raise CheckFailed(
            f"outputs differ from ONNX Runtime by {parity['max_abs_diff']:.3g} "
            f"(> {parity['tolerance']}); the report is written, the build is suspect"
        )
