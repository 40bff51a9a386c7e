"""The command line: parse, convert strings to typed values, call the library, map errors to
exit codes (0 ok, 1 a check failed, 2 bad input or internal error) and one-line messages."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from edgec import __version__
from edgec.errors import EdgecError, first_line

if TYPE_CHECKING:
    import numpy as np

    from edgec.compress import CompressOptions
    from edgec.pipeline import BuildOptions
    from edgec.stages.quantize import QuantizeConfig
    from edgec.tuning import TuneOptions

HELP = {
    "target": "Target profile (see `edgec targets`); several, comma-separated, build in parallel.",
    "out": "Bundle directory to write, with a .tar.gz beside it (both replaced together, and "
    "only if edgec wrote them).",
    "input_shape": "Input shape, e.g. 1,3,32,32; repeat the option for several inputs.",
    "repeat": "Timed runs of the runner (default: 50 on the host, 5 emulated).",
    "emulate": "Run a non-host bundle under the target's emulator (e.g. qemu-aarch64).",
    "input": "Input .npy file(s), one per model input (default: a seeded random input).",
    "input_value": "NAME=FILE.npy: fold ONNX input NAME into a constant (an integer input that "
    "carries a shape, e.g. a Reshape's); repeat for several.",
    "trials": "MetaSchedule candidates to measure in all, split over kernels without a record.",
    "trials_per_task": "At most this many candidates per kernel (default: an even split).",
    "tuning_db": "Tuning database directory (default: one per target in edgec's cache).",
    "tracker": "Measure on boards through this TVM RPC tracker, HOST:PORT (needs --key).",
    "key": "The key the boards' rpc_server registered under at the tracker.",
    "static": "aarch64 targets: link runner, model and runtime into one static executable "
    "(no libraries, no loader: Android's adb shell, any aarch64 Linux).",
    "cuda_arch": "CUDA targets: the GPU architecture, e.g. sm_86 (default: the profile's; "
    "for cuda the GPU found here, else sm_80).",
    "tune": "Tune with this many trials, then build with the tuned kernels (0: measure nothing).",
    "weights": "A state dict (torch.save) to load into a file.py:factory model.",
    "data": "Data for accuracy and training: digits, an .npz with x and y, or a class folder.",
    "prune": "Prune this share of channels, in [0, 1) (structured, dependency-aware).",
    "importance": "How channels are ranked: l1, l2 (filter norms), bn (BatchNorm scale), taylor.",
    "scope": "layer: the ratio in every layer; global: ranked across layers.",
    "keep_layer": "A layer (or block) to leave whole, by its module name; repeatable.",
    "prune_steps": "Prune in N steps, fine-tuning between them (with --data).",
    "prune_mode": "structured (remove channels) or unstructured (zero weights: no speed-up).",
    "round_to": "Kept channel counts are multiples of this (default: the target's).",
    "distill": "Recover accuracy by knowledge distillation from the teacher (needs --data).",
    "teacher": "Teacher model, file.py:factory (default: the model before pruning).",
    "teacher_weights": "A state dict for the teacher.",
    "epochs": "Distillation epochs (stops early on a validation plateau).",
    "lr": "Distillation learning rate (Adam, cosine schedule).",
    "temperature": "Distillation temperature T: the KL term is on logits / T, scaled by T².",
    "alpha": "Weight of the teacher's term; 1 - alpha weights cross-entropy on the labels.",
    "hint": "Feature distillation STUDENT_LAYER:TEACHER_LAYER via a 1×1 adapter; repeatable.",
    "quantize": "int8: calibrated integer kernels (weights and activations int8); fp16: half "
    "precision with float32 accumulation (CUDA, Armv8.2+); none: float32.",
    "calib_data": "Calibration data (same forms as --data; default: --data).",
    "calib_samples": "Calibration samples (default 256).",
    "calib_method": "Activation ranges: minmax, percentile (99.99, default) or entropy (KL).",
    "float_layer": "Keep this layer (ONNX node name) in float; repeatable.",
    "sensitivity": "Keep layers in float whose int8 alone moves the output by more than this "
    "relative RMS error (default 0.05; 0 turns the check off).",
    "boards_dir": "Also read board files from this directory (after $EDGEC_BOARDS_DIR).",
    "force": "Replace -o (and its .tar.gz) even if it holds files edgec did not write.",
    "config": "Project file with defaults per command ([build], [prune], ...); flags override it.",
}
CONFIG_FILE = "edgec.toml"


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise EdgecError(f"--input-shape {text!r}: expected positive integers like 1,3,32,32")
    return dims


def _tune_options(
    trials: int,
    trials_per_task: int | None,
    tuning_db: Path | None,
    tracker: str | None,
    key: str | None,
) -> TuneOptions:
    from edgec.tuning import RemoteMeasure, TuneOptions

    if key is not None and tracker is None:
        raise EdgecError("--key needs --tracker HOST:PORT")
    remote = RemoteMeasure.parse(tracker, key or "") if tracker is not None else None
    return TuneOptions(trials, trials_per_task, tuning_db, remote)


def _tuning_flags(f: Any) -> Any:
    """The options edgec tune and edgec build --tune share."""
    f = click.option("--key", default=None, help=HELP["key"])(f)
    f = click.option("--tracker", default=None, help=HELP["tracker"])(f)
    tuning_db = click.Path(path_type=Path)
    f = click.option("--tuning-db", type=tuning_db, default=None, help=HELP["tuning_db"])(f)
    per_task = click.IntRange(min=1)
    return click.option(
        "--trials-per-task", type=per_task, default=None, help=HELP["trials_per_task"]
    )(f)


def _compress_flags(f: Any) -> Any:
    """The options edgec build, prune and distill share: data, pruning and distillation."""
    flags = [
        click.option("--hint", "hints", multiple=True, help=HELP["hint"]),
        click.option("--alpha", type=float, default=None, help=HELP["alpha"]),
        click.option("--temperature", type=float, default=None, help=HELP["temperature"]),
        click.option("--lr", type=float, default=None, help=HELP["lr"]),
        click.option("--epochs", type=int, default=None, help=HELP["epochs"]),
        click.option(
            "--teacher-weights",
            type=click.Path(path_type=Path),
            default=None,
            help=HELP["teacher_weights"],
        ),
        click.option("--teacher", default=None, help=HELP["teacher"]),
        click.option("--round-to", type=int, default=None, help=HELP["round_to"]),
        click.option("--prune-mode", default="structured", help=HELP["prune_mode"]),
        click.option("--prune-steps", type=int, default=1, help=HELP["prune_steps"]),
        click.option("--keep-layer", "keep_layers", multiple=True, help=HELP["keep_layer"]),
        click.option("--scope", default="layer", help=HELP["scope"]),
        click.option("--importance", default="l2", help=HELP["importance"]),
        click.option("--data", default=None, help=HELP["data"]),
        click.option(
            "--weights", type=click.Path(path_type=Path), default=None, help=HELP["weights"]
        ),
    ]
    for flag in flags:
        f = flag(f)
    return f


def _compress_options(
    ratio: float | None, distill: bool, round_to: int | None, flags: dict[str, Any]
) -> CompressOptions:
    """Typed compression settings from the shared flags (validated by their dataclasses)."""
    from edgec.compress import CompressOptions
    from edgec.stages.distill import DistillConfig
    from edgec.stages.prune import PruneConfig

    prune = None
    if ratio is not None:
        prune = PruneConfig(
            ratio,
            importance=flags["importance"],
            scope=flags["scope"],
            keep_layers=tuple(flags["keep_layers"]),
            round_to=round_to or 1,
            steps=flags["prune_steps"],
            mode=flags["prune_mode"],
        )
    training = {
        k: flags[k] for k in ("epochs", "lr", "temperature", "alpha") if flags[k] is not None
    }
    hints = tuple(_hint(h) for h in flags["hints"])
    if (training or hints) and not distill:
        raise EdgecError("--epochs, --lr, --temperature, --alpha and --hint go with --distill")
    return CompressOptions(
        data=flags["data"],
        prune=prune,
        distill=DistillConfig(**training, hints=hints) if distill else None,
        teacher=flags["teacher"],
        teacher_weights=flags["teacher_weights"],
    )


def _hint(text: str) -> tuple[str, str]:
    student, sep, teacher = text.partition(":")
    if not sep or not student or not teacher:
        raise EdgecError(f"--hint {text!r}: expected STUDENT_LAYER:TEACHER_LAYER, e.g. 4.0:4.0")
    return student, teacher


def _load_config(path: Path | None) -> dict[str, Any] | None:
    """The project file as click's default_map: {command: {option: value}}."""
    import tomllib

    if path is None:
        path = Path(CONFIG_FILE)
        if not path.is_file():
            return None
    elif not path.is_file():
        raise EdgecError(f"--config {path} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise EdgecError(f"{path} is not valid TOML ({first_line(e)})") from e
    defaults: dict[str, Any] = {}
    for command, table in data.items():
        if command not in main.commands or not isinstance(table, dict):
            raise EdgecError(
                f"{path}: [{command}] is not a command's table; "
                f"known: {', '.join(sorted(main.commands))}"
            )
        params = {p.name: p for p in main.commands[command].params if p.name}
        values = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            name = {
                "keep_layer": "keep_layers",
                "hint": "hints",
                "input_shape": "input_shapes",
            }.get(name, name)
            if name not in params:
                raise EdgecError(
                    f"{path}: [{command}] has no option {key!r}; see edgec {command} --help"
                )
            values[name] = value
        defaults[command] = values
    return defaults


def _quantize_flags(f: Any) -> Any:
    """The calibration options edgec build --quantize int8 and edgec quantize share."""
    flags = [
        click.option(
            "--sensitivity", type=click.FloatRange(min=0), default=0.05, help=HELP["sensitivity"]
        ),
        click.option("--float-layer", "float_layers", multiple=True, help=HELP["float_layer"]),
        click.option("--calib-method", default="percentile", help=HELP["calib_method"]),
        click.option(
            "--calib-samples", type=click.IntRange(min=1), default=256, help=HELP["calib_samples"]
        ),
    ]
    for flag in flags:
        f = flag(f)
    return f


def _quantize_config(
    method: str, samples: int, sensitivity: float, float_layers: tuple[str, ...]
) -> QuantizeConfig:
    from edgec.stages.quantize import QuantizeConfig

    return QuantizeConfig(
        "int8", method, samples, sensitivity=sensitivity or None, float_layers=float_layers
    )


def _fail(e: EdgecError) -> NoReturn:
    _debug_traceback(e)
    click.echo(f"edgec: error: {e}", err=True)
    sys.exit(e.exit_code)


def _debug_traceback(e: BaseException) -> None:
    """With EDGEC_DEBUG=1, the full traceback and every cause, even one raised `from None`."""
    if not os.environ.get("EDGEC_DEBUG"):
        return
    import traceback

    seen: set[int] = set()
    link: BaseException | None = e
    while link is not None and id(link) not in seen:  # show what `from None` hid
        seen.add(id(link))
        link.__suppress_context__ = False
        link = link.__cause__ or link.__context__
    sys.stderr.write("".join(traceback.format_exception(e)))
    sys.stderr.flush()


def _interrupted(e: KeyboardInterrupt, children_before: set[int]) -> NoReturn:
    from edgec import interrupts, staging

    interrupts.kill_children(keep=children_before)
    _debug_traceback(e)
    signum = e.signum if isinstance(e, interrupts.Interrupted) else 2
    name = signal.Signals(signum).name
    if staging.committed:
        done = f"written before the signal: {', '.join(str(p) for p in staging.committed)}"
    else:
        done = "no output was changed"
    click.echo(f"edgec: interrupted by {name}; {done}", err=True)
    sys.exit(128 + signum)


class _Group(click.Group):
    """Maps edgec's errors to one line and an exit code; anything else is an internal error.
    SIGTERM and SIGHUP stop edgec as Ctrl-C does: temporary files removed, children killed."""

    def invoke(self, ctx: click.Context) -> Any:
        from edgec import interrupts, staging

        staging.committed.clear()
        before = set(interrupts.children())
        try:
            with interrupts.handled():
                return super().invoke(ctx)
        except EdgecError as e:
            _fail(e)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt as e:
            _interrupted(e, before)
        except BrokenPipeError:  # e.g. `edgec boards | head`: the reader has all it wants
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except Exception as e:
            _debug_traceback(e)
            hint = "" if os.environ.get("EDGEC_DEBUG") else " (EDGEC_DEBUG=1 shows the traceback)"
            click.echo(
                f"edgec: internal error: {type(e).__name__}: {first_line(e)}{hint}", err=True
            )
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="edgec")
@click.option("--config", type=click.Path(path_type=Path), default=None, help=HELP["config"])
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """edgec: a PyTorch or ONNX model to a small, fast, verified bundle for an edge device.

    Defaults for any command can come from ./edgec.toml (or --config FILE), one table per
    command, e.g. [build] target = "rpi4", prune = 0.5; flags override the file.
    """
    ctx.default_map = _load_config(config)


@main.command()
@click.argument("model")
@click.option("--target", "-t", required=True, help=HELP["target"])
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help=HELP["out"])
@click.option("--input-shape", "input_shapes", multiple=True, help=HELP["input_shape"])
@click.option("--input", "input_values", multiple=True, help=HELP["input_value"])
@click.option("--repeat", type=click.IntRange(min=1), default=None, help=HELP["repeat"])
@click.option("--no-measure", is_flag=True, help="Build the bundle without running it.")
@click.option("--tune", "trials", type=click.IntRange(min=0), default=None, help=HELP["tune"])
@_tuning_flags
@click.option("--prune", "ratio", type=float, default=None, help=HELP["prune"])
@click.option("--distill", is_flag=True, help=HELP["distill"])
@_compress_flags
@click.option(
    "--quantize",
    "quantize_mode",
    type=click.Choice(["none", "int8", "fp16"]),
    default="none",
    help=HELP["quantize"],
)
@click.option("--calib-data", default=None, help=HELP["calib_data"])
@_quantize_flags
@click.option("--board", default=None, help="MCU targets: link the firmware for this board.")
@click.option("--cuda-arch", default=None, help=HELP["cuda_arch"])
@click.option("--static", is_flag=True, help=HELP["static"])
@click.option("--force", is_flag=True, help=HELP["force"])
def build(
    model: str,
    target: str,
    out: Path | None,
    input_shapes: tuple[str, ...],
    input_values: tuple[str, ...],
    repeat: int | None,
    no_measure: bool,
    trials: int | None,
    trials_per_task: int | None,
    tuning_db: Path | None,
    tracker: str | None,
    key: str | None,
    ratio: float | None,
    distill: bool,
    weights: Path | None,
    round_to: int | None,
    quantize_mode: str,
    calib_data: str | None,
    calib_samples: int,
    calib_method: str,
    float_layers: tuple[str, ...],
    sensitivity: float,
    board: str | None,
    cuda_arch: str | None,
    static: bool,
    force: bool,
    **flags: Any,
) -> None:
    """Compile MODEL for a target into a bundle, run it, and print the report.

    MODEL is a .onnx file, a TorchScript .pt, a torch.export .pt2, or path/to/file.py:factory.
    """
    from edgec.pipeline import BuildOptions
    from edgec.pipeline import build as build_bundle
    from edgec.progress import StageLog
    from edgec.stages.report import markdown
    from edgec.targets import get_target, with_cuda_arch, with_static

    names = [t.strip() for t in target.split(",") if t.strip()]
    profiles = [with_static(get_target(name), static) for name in names]
    if len(names) > 1:  # --cuda-arch is for the CUDA ones among them
        gpus = [p for p in profiles if p.capabilities.device == "cuda"]
        for p in gpus or profiles[:1]:
            with_cuda_arch(p, cuda_arch)
    profile = with_cuda_arch(profiles[0], cuda_arch if len(names) == 1 else None)
    shapes = [_shape(s) for s in input_shapes] or None
    stem = Path(model.split(":")[0]).stem
    if len(names) == 1:
        out = out or Path("edgec-out") / f"{stem}-{profile.name}"
        arch = profile.tvm_target.get("arch")
        click.echo(
            f"edgec build {model} → {out} for {profile.name}"
            + (f" ({arch})" if arch else "")
            + f": {profile.description}",
            err=True,
        )
    tuning = None
    if trials is not None:
        tuning = _tune_options(trials, trials_per_task, tuning_db, tracker, key)
    elif any(v is not None for v in (trials_per_task, tuning_db, tracker, key)):
        raise EdgecError(
            "--trials-per-task, --tuning-db, --tracker and --key go with --tune N "
            "(--tune 0: build with the recorded kernels, measure nothing)"
        )
    quantize = None
    if quantize_mode == "int8":
        quantize = _quantize_config(calib_method, calib_samples, sensitivity, float_layers)
    options = BuildOptions(
        input_shapes=shapes,
        input_values=_input_values(input_values),
        weights=weights,
        compress=_compress_options(ratio, distill, round_to, flags),
        quantize=quantize,
        fp16=quantize_mode == "fp16",
        calib_data=calib_data,
        board=board,
        repeat=repeat,
        measure=not no_measure,
        tuning=tuning,
        cuda_arch=cuda_arch,
        static=static,
        force=force,
    )
    if len(names) > 1:
        _build_targets(model, names, out or Path("edgec-out"), stem, options)
        return
    assert out is not None
    data = build_bundle(model, profile.name, out, options, StageLog())
    click.echo(markdown(data))
    click.echo(f"bundle: {out}  ({out}.tar.gz)", err=True)


def _input_values(given: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """--input NAME=FILE.npy options as arrays by input name."""
    import numpy as np

    values = {}
    for text in given:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise EdgecError(f"--input {text!r}: expected NAME=FILE.npy, e.g. shape=shape.npy")
        try:
            values[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise EdgecError(f"--input {text}: {path} is not a readable .npy file ({e})") from None
    return values or None


def _build_targets(
    model: str, names: list[str], parent: Path, stem: str, options: BuildOptions
) -> None:
    """Several targets in parallel processes, one bundle each, then the comparison table."""
    from edgec import compare as comparing
    from edgec.commands import build_many

    outs = [parent / f"{stem}-{name}" for name in names]
    click.echo(f"edgec build {model} for {', '.join(names)} → {parent}/", err=True)
    results = build_many(model, names, outs, options)
    for result in results:
        click.echo(f"{result.target}:\n{result.log}", err=True, nl=False)
        if result.error:
            click.echo(f"edgec: error: {result.target}: {result.error}", err=True)
    built = [r.out for r in results if r.error is None and (r.out / "report.json").is_file()]
    if built:
        rows = comparing.load(built)
        click.echo(comparing.text(rows, rows[0]))
    failed = [r for r in results if r.error]
    if failed:
        sys.exit(max(r.exit_code for r in failed))


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--emulate", is_flag=True, help=HELP["emulate"])
@click.option(
    "--input", "inputs", multiple=True, type=click.Path(path_type=Path), help=HELP["input"]
)
@click.option("--repeat", type=click.IntRange(min=1), default=None, help=HELP["repeat"])
def run(bundle: Path, emulate: bool, inputs: tuple[Path, ...], repeat: int | None) -> None:
    """Run BUNDLE (natively, or emulated), check it against ONNX Runtime, update its report."""
    import numpy as np

    from edgec.commands import run as run_bundle
    from edgec.progress import StageLog
    from edgec.stages.report import markdown

    if not bundle.is_dir():
        raise EdgecError(f"bundle directory {bundle} not found; build one with edgec build")
    arrays = []
    for path in inputs:
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as e:
            raise EdgecError(f"--input {path} is not a readable .npy file ({e})") from e
    data = run_bundle(bundle, arrays or None, repeat, emulate, StageLog())
    click.echo(markdown(data))


@main.command()
@click.argument("model")
@click.option("--target", "-t", required=True, help=HELP["target"])
@click.option("--trials", type=click.IntRange(min=0), required=True, help=HELP["trials"])
@_tuning_flags
@click.option("--input-shape", "input_shapes", multiple=True, help=HELP["input_shape"])
def tune(
    model: str,
    target: str,
    trials: int,
    trials_per_task: int | None,
    tuning_db: Path | None,
    tracker: str | None,
    key: str | None,
    input_shapes: tuple[str, ...],
) -> None:
    """Tune MODEL's kernels for a target with MetaSchedule, into the target's tuning database.

    Kernels that already have a record are not measured again; edgec build uses the records.
    """
    import json

    from edgec.commands import tune as tune_kernels
    from edgec.progress import StageLog
    from edgec.targets import get_target

    profile = get_target(target)
    options = _tune_options(trials, trials_per_task, tuning_db, tracker, key)
    shapes = [_shape(s) for s in input_shapes] or None
    click.echo(f"edgec tune {model} for {profile.name}: {profile.description}", err=True)
    summary = tune_kernels(model, profile.name, shapes, options, StageLog())
    from edgec.stages.report import finite

    click.echo(json.dumps(finite(summary.to_json()), indent=2, allow_nan=False))


def _compress_command(
    model: str,
    out: Path,
    target: str | None,
    input_shapes: tuple[str, ...],
    weights: Path | None,
    ratio: float | None,
    distill: bool,
    round_to: int | None,
    flags: dict[str, Any],
) -> None:
    from edgec.commands import compress_to_file
    from edgec.progress import StageLog
    from edgec.targets import get_target

    if round_to is None and target is not None:
        round_to = get_target(target).capabilities.channel_multiple
    options = _compress_options(ratio, distill, round_to, flags)
    shapes = [_shape(s) for s in input_shapes] or None
    facts = compress_to_file(model, shapes, weights, options, round_to or 1, out, StageLog())
    click.echo("| stage | params | MACs | weight bytes | val top-1 |")
    click.echo("|---|---:|---:|---:|---:|")
    for name, f in facts.items():
        accuracy = "" if f.accuracy is None else f"{f.accuracy:.1f}%"
        click.echo(f"| {name} | {f.params:,} | {f.macs:,} | {f.size_bytes:,} | {accuracy} |")
    click.echo(f"wrote {out}: edgec build {out} --target NAME", err=True)


@main.command()
@click.argument("model")
@click.option("--calib-data", required=True, help=HELP["calib_data"])
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The int8 model as ONNX QDQ (its calibration goes beside it as .calibration.json).",
)
@_quantize_flags
@click.option("--input-shape", "input_shapes", multiple=True, help=HELP["input_shape"])
@click.option("--weights", type=click.Path(path_type=Path), default=None, help=HELP["weights"])
def quantize(
    model: str,
    calib_data: str,
    out: Path,
    calib_samples: int,
    calib_method: str,
    float_layers: tuple[str, ...],
    sensitivity: float,
    input_shapes: tuple[str, ...],
    weights: Path | None,
) -> None:
    """Calibrate and quantize MODEL to int8; print each layer's sensitivity and the accuracy."""
    from edgec.commands import quantize_to_file
    from edgec.pipeline import BuildOptions
    from edgec.progress import StageLog

    config = _quantize_config(calib_method, calib_samples, sensitivity, float_layers)
    options = BuildOptions(weights=weights, quantize=config, calib_data=calib_data)
    shapes = [_shape(s) for s in input_shapes] or None
    quantized = quantize_to_file(model, shapes, options, out, StageLog())
    click.echo("| layer | output error with only it in int8 | runs in |\n|---|---:|---|")
    for layer, error in quantized.sensitivity.items():
        where = "float" if layer in quantized.float_layers else "int8"
        click.echo(f"| {layer} | {error:.4f} | {where} |")
    for layer, why in quantized.graph.float_islands.items():
        click.echo(f"| {layer} | - | float island ({why}) |")
    if quantized.accuracy:
        accuracy = quantized.accuracy
        click.echo(f"\nval top-1: {accuracy['fp32']:.1f}% fp32, {accuracy['int8']:.1f}% int8")
    click.echo(f"wrote {out} and {out.with_suffix('.calibration.json')}", err=True)


@main.command()
@click.argument("model")
@click.option("--ratio", type=float, required=True, help=HELP["prune"])
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The pruned model, a TorchScript .pt that edgec build reads.",
)
@click.option(
    "--target", "-t", default=None, help="Round channels to this target's vector multiple."
)
@click.option("--input-shape", "input_shapes", multiple=True, help=HELP["input_shape"])
@click.option("--distill", is_flag=True, help=HELP["distill"])
@_compress_flags
def prune(
    model: str,
    ratio: float,
    out: Path,
    target: str | None,
    input_shapes: tuple[str, ...],
    distill: bool,
    weights: Path | None,
    round_to: int | None,
    **flags: Any,
) -> None:
    """Prune MODEL (file.py:factory) and save it; --distill recovers accuracy from the original."""
    _compress_command(model, out, target, input_shapes, weights, ratio, distill, round_to, flags)


@main.command()
@click.argument("model")
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The trained student, a TorchScript .pt that edgec build reads.",
)
@click.option("--input-shape", "input_shapes", multiple=True, help=HELP["input_shape"])
@_compress_flags
def distill(
    model: str,
    out: Path,
    input_shapes: tuple[str, ...],
    weights: Path | None,
    round_to: int | None,
    **flags: Any,
) -> None:
    """Train the student MODEL (file.py:factory) against --teacher's logits and the labels."""
    if flags["teacher"] is None:
        raise EdgecError("edgec distill needs --teacher file.py:factory (the model to learn from)")
    _compress_command(model, out, None, input_shapes, weights, None, True, round_to, flags)


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--board", "-b", required=True, help="Board name (see `edgec boards`).")
@click.option("--run", "run_it", is_flag=True, help="Run the bundle there and record it.")
@click.option("--repeat", type=click.IntRange(min=1), default=20, help=HELP["repeat"])
@click.option("--clean", is_flag=True, help="Remove the bundle from the board afterwards.")
@click.option(
    "--dry-run", is_flag=True, help="Print the commands (ssh/scp, adb or the probe's) only."
)
@click.option(
    "--boards-dir", type=click.Path(path_type=Path), default=None, help=HELP["boards_dir"]
)
def flash(
    bundle: Path,
    board: str,
    run_it: bool,
    repeat: int,
    clean: bool,
    dry_run: bool,
    boards_dir: Path | None,
) -> None:
    """Put BUNDLE on a board (ssh, adb, pyOCD/OpenOCD, or an emulator); --run measures it there."""
    from edgec.commands import FlashOptions
    from edgec.commands import flash as flash_bundle
    from edgec.progress import StageLog
    from edgec.stages.report import markdown

    if not bundle.is_dir():
        raise EdgecError(f"bundle directory {bundle} not found; build one with edgec build")
    options = FlashOptions(run_it, repeat, clean, dry_run, boards_dir)
    data = flash_bundle(bundle, board, options, StageLog())
    if dry_run:
        import shlex

        for command in data.get("flash", {}).get("commands", []):
            click.echo(shlex.join(command))
    if run_it and "latency_ms" in data:
        click.echo(markdown(data))


@main.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="Compare against this report (default: the first one).",
)
@click.option("--markdown", "as_markdown", is_flag=True, help="Print a Markdown table.")
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Write latency and memory charts to this PNG.",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a self-contained HTML page with the table and charts.",
)
@click.option(
    "--fail-if-slower",
    type=click.FloatRange(min=0),
    default=None,
    metavar="PCT",
    help="Exit 1 if a report's p50 is more than PCT % above the baseline's.",
)
def compare(
    reports: tuple[Path, ...],
    baseline: Path | None,
    as_markdown: bool,
    plot: Path | None,
    html_out: Path | None,
    fail_if_slower: float | None,
) -> None:
    """Compare REPORTs (report.json files or bundle directories) across boards and variants."""
    from edgec import compare as comparing
    from edgec.errors import CheckFailed
    from edgec.staging import replace_bytes

    rows = comparing.load(list(reports))
    base = comparing.load([baseline])[0] if baseline else rows[0]
    table = [base, *rows] if baseline else rows
    click.echo(comparing.markdown(table, base) if as_markdown else comparing.text(table, base))
    if plot is not None:
        replace_bytes(plot, comparing.plot(table))
    if html_out is not None:
        replace_bytes(html_out, comparing.page(table, base).encode())
    if fail_if_slower is not None:
        slow = comparing.regressions(rows, base, fail_if_slower)
        if slow:
            raise CheckFailed(
                f"{len(slow)} report(s) slower than {base.name} by more than {fail_if_slower}%: "
                + "; ".join(slow)
            )


@main.command()
@click.option(
    "--boards-dir", type=click.Path(path_type=Path), default=None, help=HELP["boards_dir"]
)
def boards(boards_dir: Path | None) -> None:
    """List the boards: their target, transport and limits."""
    from edgec.boards import all_boards

    def size(n: int | None) -> str:
        if n is None:
            return "-"
        return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / 2**10:.0f} KiB"

    rows = [("name", "target", "transport", "flash", "RAM", "description")]
    for b in all_boards(boards_dir).values():
        rows.append((b.name, b.target, b.transport, size(b.flash_bytes), size(b.ram_bytes),
                     b.description))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])


@main.command()
def targets() -> None:
    """List the target profiles."""
    from edgec.targets import all_targets

    rows = [("name", "isa", "device", "cores", "vector", "runs", "description")]
    for p in all_targets().values():
        c = p.capabilities
        if c.runs_on_host:
            runs = "host GPU" if c.device == "cuda" else "host"
        elif c.backend == "c":
            runs = f"emulated (qemu-system-arm, board {p.board})"
        else:
            runs = f"emulated ({p.emulator.command[0]})" if p.emulator else "device only"
        rows.append(
            (p.name, c.isa, c.device, str(c.cores), f"{c.vector_bits}-bit", runs, p.description)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])
