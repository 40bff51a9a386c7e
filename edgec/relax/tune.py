"""tune: MetaSchedule kernels for a fused Relax module, cached per target, measured on the target.

The module to tune is the one the build compiles: after legalization and fusion (LegalizeOps,
AnnotateTIROpPattern, FoldConstant, FuseOps, FuseTIR), because MetaSchedule's tasks are the
fused TIR functions; a module before legalization has no TIR and yields no tasks. Records live
in a JSON database per target profile and resolved TVM target, so only kernels without a record
are measured, and a second build of the same model measures nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgec.errors import EdgecError, first_line
from edgec.package_files import cache_dir
from edgec.relax.ms_workarounds import (
    meta_schedule_log,
    reusable_builder,
    target_intrinsics_only,
    tune_context,
)
from edgec.targets import TargetProfile
from edgec.tuning import RemoteMeasure, TuneOptions, TuningSummary, faster_build

__all__ = ["RemoteMeasure", "TuneOptions", "TuningSummary", "apply_database", "tune"]

# Kernels are keyed by their anchor block (the conv2d or matmul), not the whole fused function,
# so a conv tuned with a bias+relu epilogue also serves the same conv with another epilogue, in
# this model or the next; TVM replays the anchor's trace and inlines the different epilogue.
MODULE_EQUALITY = "anchor-block"

# Kernels whose default schedule takes less than this share of the model's time (measured
# before the search) are not searched: ResNet-18 has 20 kernels, 10 of them under 0.4 ms of
# ~25 together; an even split gave each 10 of 200 trials, half the budget where the most a
# search can save is a fraction of a millisecond.
_MIN_SHARE = 0.02

# A kernel whose tuned record beat its default schedule's: both measured again, alternately,
# this many times each (edgec.relax.tune._recheck_winners).
_RECHECK_PAIRS = 3

# Seconds to reach the tracker before giving up (TVM itself retries for 60 s).
_TRACKER_TIMEOUT_S = 5.0
# One remote measurement: connect, upload the .so, load it, run it; a Pi needs more than 10 s.
_RPC_SESSION_TIMEOUT_S = 60


Progress = Callable[[str], None]


def database_dir(profile_name: str, tvm_target: dict[str, Any], override: Path | None) -> Path:
    """The tuning database directory: `override` as given, else one per profile and target."""
    if override is not None:
        return override
    # Records are only valid for the CPU they were measured on and the TVM that wrote them.
    try:
        tvm_version = metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        tvm_version = "unknown"
    key = json.dumps({"target": tvm_target, "tvm": tvm_version}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir("tuning", f"{profile_name}-{digest}")


def tune(
    mod: Any,
    profile: TargetProfile,
    *,
    trials: int,
    trials_per_task: int | None = None,
    db_dir: Path,
    remote: RemoteMeasure | None = None,
    progress: Progress | None = None,
    baseline_rules: Sequence[Any] = (),
    searchable: Callable[[Any], bool] = lambda _: True,
) -> TuningSummary:
    """Tune the kernels of fused module `mod` that have no record in db_dir, within `trials`.

    With `baseline_rules` (the dlight rules the build schedules untuned kernels with), each
    kernel's schedule from them is measured first: tuning only replaces it where faster.
    Kernels (PrimFuncs) that `searchable` refuses are left to the default rules, unmeasured,
    and the trials go to the others.
    """
    from tvm.s_tir.meta_schedule import relax_integration

    from edgec.relax.target import tvm_target

    if trials < 0 or (trials_per_task is not None and trials_per_task < 1):
        raise EdgecError(f"trials {trials}, per task {trials_per_task}: expected >= 0 and >= 1")
    start = time.perf_counter()
    say = progress or (lambda _: None)
    target = tvm_target(profile)
    db_dir.mkdir(parents=True, exist_ok=True)
    with target_intrinsics_only(target):
        database = _open_database(db_dir)
        tasks = relax_integration.extract_tasks(mod, target, module_equality=MODULE_EQUALITY)
        pending = [t for t in tasks if not _has_record(database, t, target)]
        say(f"{len(tasks)} kernels, {len(tasks) - len(pending)} of them in {db_dir}")
        kept = [searchable(t.dispatched[0]["main"]) for t in pending]
        search = [t for t, keep in zip(pending, kept, strict=True) if keep]
        if not all(kept):
            left = [t.task_name for t, keep in zip(pending, kept, strict=True) if not keep]
            say(f"left to the default rules, not searched: {', '.join(left)}")
        measured = 0
        if search and trials > 0:
            if remote is None and not profile.capabilities.runs_on_host:
                raise EdgecError(
                    f"tuning {profile.name} needs measurements on the board: "
                    "give --tracker HOST:PORT --key KEY"
                )
            measured = _search(
                search,
                profile,
                database,
                db_dir,
                trials,
                trials_per_task,
                remote,
                baseline_rules,
                say,
            )
        untuned = [t for t in pending if not _has_record(database, t, target)]
    return TuningSummary(
        tasks=len(tasks),
        tuned=len(pending) - len(untuned),
        from_database=len(tasks) - len(pending),
        default_rules=len(untuned),
        measurements=measured,
        seconds=round(time.perf_counter() - start, 2),
        database=str(db_dir),
    )


def apply_database(mod: Any, target: Any, db_dir: Path) -> Any:
    """Replace each fused TIR function that has a record in db_dir by its best schedule."""
    from tvm import IRModule, relax, tirx

    if not (db_dir / "database_tuning_record.json").is_file():
        return mod
    result = mod.clone()
    with target_intrinsics_only(target), target, _open_database(db_dir):
        # The pass reads the target when it is made and the database when it runs.
        apply = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or (func.attrs or {}).get("tirx.is_scheduled"):
                continue
            # One kernel at a time: a record that does not replay on this kernel (an anchor
            # trace from another epilogue can fail TVM's checks) leaves it to the default rules
            # instead of failing the build.
            try:
                result[gv] = apply(IRModule({gv: func}))[gv]
            except Exception:
                continue
    return result


def _search(
    tasks: list[Any],
    profile: TargetProfile,
    database: Any,
    db_dir: Path,
    trials: int,
    trials_per_task: int | None,
    remote: RemoteMeasure | None,
    baseline_rules: Sequence[Any],
    say: Progress,
) -> int:
    """Run MetaSchedule on `tasks`, committing records to `database`; returns measurements."""
    from tvm.s_tir import meta_schedule as ms

    runner, where = _runner(remote)
    log = db_dir / "tuning.log"  # this call's MetaSchedule log: why candidates failed, if any
    try:
        with meta_schedule_log(log), reusable_builder(profile.cxx) as builder:
            defaults = _measure_baseline(tasks, baseline_rules, builder, runner, database, say)
            seconds = [d.seconds if d is not None else None for d in defaults]
            baseline = sum(s is not None for s in seconds)
            keep = worth_searching(seconds, [float(t.weight) for t in tasks])
            if not all(keep):
                small = ", ".join(t.task_name for t, k in zip(tasks, keep, strict=True) if not k)
                say(f"not searched, under {_MIN_SHARE:.0%} of the time by default: {small}")
            searched = [(t, d) for t, d, k in zip(tasks, defaults, keep, strict=True) if k]
            tasks = [t for t, _ in searched]
            per_task = trials_per_task or math.ceil(trials / len(tasks))
            say(
                f"tuning {len(tasks)} with {trials} trials (at most {per_task} each), "
                f"measured {where}"
            )
            counter = _MeasureCounter([t.task_name for t in tasks], say, log)
            contexts = [tune_context(i, task, per_task) for i, task in enumerate(tasks)]
            ms.tune.tune_tasks(
                tasks=contexts,
                task_weights=[float(t.weight) for t in tasks],
                work_dir=str(db_dir),
                max_trials_global=trials,
                max_trials_per_task=per_task,
                num_trials_per_iter=min(64, per_task),
                builder=builder,
                runner=runner,
                database=database,
                measure_callbacks=[*ms.MeasureCallback.create("default"), counter.callback()],
                module_equality=MODULE_EQUALITY,
            )
            rechecked = _recheck_winners(searched, builder, runner, database, say)
    except Exception as e:
        # Records measured so far are already in the database; a rerun continues from them.
        raise EdgecError(
            f"MetaSchedule failed tuning for {profile.name}: {first_line(e)} (log: {log})"
        ) from None
    return baseline + counter.measured + rechecked


def worth_searching(seconds: list[float | None], calls: list[float]) -> list[bool]:
    """Which kernels to search: those whose default schedule (`seconds` per call, None if not
    measured, `calls` per inference) takes at least _MIN_SHARE of the measured time, the
    heaviest in any case, and those not measured."""
    shares = [s * c if s is not None else None for s, c in zip(seconds, calls, strict=True)]
    measured = [s for s in shares if s is not None]
    if not measured:
        return [True] * len(shares)
    bar = min(_MIN_SHARE * sum(measured), max(measured))
    return [s is None or s >= bar for s in shares]


@dataclass(frozen=True)
class _Default:
    """A kernel's schedule by edgec's rules, and its mean seconds as first measured."""

    schedule: Any
    seconds: float


def _measure_baseline(
    tasks: list[Any], rules: Sequence[Any], builder: Any, runner: Any, database: Any, say: Progress
) -> list[_Default | None]:
    """Record each task's schedule from `rules`, measured like a candidate; returns each task's
    schedule and mean seconds (None where nothing was measured)."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import remove_build_dir

    if not rules:
        return [None] * len(tasks)
    target = tasks[0].target
    device = "cpu" if target.kind.name == "llvm" else target.kind.name  # where the runner runs
    with target:
        scheduled = [(t, _first_schedule(rules, t.dispatched[0]["main"], target)) for t in tasks]
    candidates = [(i, task, sch) for i, (task, sch) in enumerate(scheduled) if sch is not None]
    builds = builder.build([ms.builder.BuilderInput(sch.mod, target) for _, _, sch in candidates])
    runs = []
    for (i, task, sch), built in zip(candidates, builds, strict=True):
        if built.error_msg is None:
            args = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            inputs = ms.runner.RunnerInput(built.artifact_path, device, args)
            runs.append((i, task, sch, args, built.artifact_path, runner.run([inputs])[0]))
    times: list[_Default | None] = [None] * len(tasks)
    for i, task, sch, args, artifact, future in runs:
        run = future.result()
        remove_build_dir(artifact)
        if run.error_msg is not None or not run.run_secs:
            continue
        seconds = [float(s) for s in run.run_secs]
        # The database serves a kernel's fastest record: this one until tuning beats it.
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(
            ms.database.TuningRecord(sch.trace, workload, seconds, target, args)
        )
        times[i] = _Default(sch, sum(seconds) / len(seconds))
        say(f"  {task.task_name}: default rules {times[i].seconds * 1e3:.3f} ms")
    return times


def _recheck_winners(
    searched: list[tuple[Any, _Default | None]],
    builder: Any,
    runner: Any,
    database: Any,
    say: Progress,
) -> int:
    """Where a candidate's record beats the default schedule's, measure both again, alternately
    in one batch (same load), and keep the candidate only if it is faster there too; returns
    the measurements made.

    The first records were taken minutes apart on a host whose speed moves by a third: a
    candidate could win alone and lose in the model. Where the default schedule wins the
    recheck, it is committed again with its time in the frame of the candidate's record (the
    candidate's recorded time × default/candidate as rechecked), so the database, which serves
    a kernel's fastest record, serves it."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.utils import remove_build_dir

    measured = 0
    for task, default in searched:
        if default is None:
            continue
        target = task.target
        best = database.query_tuning_record(task.dispatched[0], target, task.task_name)
        if best is None or _mean(best.run_secs) >= default.seconds:
            continue  # the default schedule's own record is served
        winner = database.query_schedule(task.dispatched[0], target, task.task_name)
        if winner is None:  # the record does not replay: the build's apply_database steps aside
            say(f"  {task.task_name}: tuned record does not replay, not rechecked")
            continue
        schedules = (default.schedule, winner)
        builds = builder.build([ms.builder.BuilderInput(s.mod, target) for s in schedules])
        try:
            if any(b.error_msg is not None for b in builds):
                say(f"  {task.task_name}: not rechecked, a build failed")
                continue
            args = [
                ms.arg_info.ArgInfo.from_entry_func(s.mod, remove_preproc=True) for s in schedules
            ]
            device = "cpu" if target.kind.name == "llvm" else target.kind.name
            inputs = [
                ms.runner.RunnerInput(builds[i % 2].artifact_path, device, args[i % 2])
                for i in range(2 * _RECHECK_PAIRS)
            ]
            runs = [future.result() for future in runner.run(inputs)]
        finally:
            for b in builds:
                if b.error_msg is None:
                    remove_build_dir(b.artifact_path)
        if any(r.error_msg is not None or not r.run_secs for r in runs):
            say(f"  {task.task_name}: not rechecked, a run failed")
            continue
        measured += len(runs)
        ours = sum(_mean(r.run_secs) for r in runs[0::2]) / _RECHECK_PAIRS
        theirs = sum(_mean(r.run_secs) for r in runs[1::2]) / _RECHECK_PAIRS
        name, figures = task.task_name, f"{theirs * 1e3:.3f} vs {ours * 1e3:.3f} ms"
        if faster_build(theirs, ours) == "tuned":
            say(f"  {name}: tuned {figures} by the default rules, rechecked: tuned kept")
            continue
        recorded = _mean(best.run_secs) * ours / theirs
        # strictly below the candidate's record: a tie keeps edgec's own schedule
        seconds = min(recorded, math.nextafter(_mean(best.run_secs), 0.0))
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(
            ms.database.TuningRecord(default.schedule.trace, workload, [seconds], target, args[0])
        )
        say(f"  {name}: tuned {figures} by the default rules, rechecked: default rules kept")
    return measured


def _mean(run_secs: Any) -> float:
    values = [float(s) for s in run_secs]
    return sum(values) / len(values)


def _first_schedule(rules: Sequence[Any], func: Any, target: Any) -> Any:
    """The schedule of the first rule that applies to `func`, as dlight would pick it."""
    for rule in rules:
        sch = rule.apply(func, target, False)
        if isinstance(sch, list):
            sch = sch[0] if sch else None
        if sch is not None:
            return sch
    return None


def _open_database(db_dir: Path) -> Any:
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.JSONDatabase(work_dir=str(db_dir), module_equality=MODULE_EQUALITY)
    except Exception as e:
        raise EdgecError(
            f"tuning database {db_dir} is unreadable ({first_line(e)}); delete it to start afresh"
        ) from None


def _has_record(database: Any, task: Any, target: Any) -> bool:
    """Whether the task has a measured (valid) record; failed candidates do not count."""
    return database.query_tuning_record(task.dispatched[0], target, task.task_name) is not None


def _runner(remote: RemoteMeasure | None) -> tuple[Any, str]:
    """MetaSchedule's runner and where it measures, in words."""
    from tvm.s_tir import meta_schedule as ms

    if remote is None:
        return ms.runner.LocalRunner(), "on this host"
    servers = _free_servers(remote)
    config = ms.runner.RPCConfig(
        tracker_host=remote.tracker_host,
        tracker_port=remote.tracker_port,
        tracker_key=remote.key,
        session_timeout_sec=_RPC_SESSION_TIMEOUT_S,
    )
    # One measurement per free board at a time: the boards, not this host, bound the rate.
    runner = ms.runner.RPCRunner(config, max_workers=servers)
    return runner, f"on {servers} server(s) at {remote}"


def _free_servers(remote: RemoteMeasure) -> int:
    """How many servers under the key are free now; errors name the tracker and key."""
    from tvm import rpc

    where = f"{remote.tracker_host}:{remote.tracker_port}"
    # TVM's own connect retries a refused connection for a minute; a CLI should say so at once.
    try:
        socket.create_connection(
            (remote.tracker_host, remote.tracker_port), _TRACKER_TIMEOUT_S
        ).close()
        summary = rpc.connect_tracker(remote.tracker_host, remote.tracker_port).summary()
    except (OSError, RuntimeError) as e:
        raise EdgecError(
            f"cannot reach the RPC tracker at {where} ({first_line(e)}); "
            "start one with python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port PORT"
        ) from None
    queue = summary.get("queue_info", {}).get(remote.key, {})
    free = int(queue.get("free", 0))
    if free == 0:
        known = sorted(summary.get("queue_info", {}))
        raise EdgecError(
            f"the RPC tracker at {where} has no free server under key {remote.key!r} "
            f"(keys: {', '.join(known) or 'none'}); on the board run python -m "
            f"tvm.exec.rpc_server --tracker {where} --key {remote.key}"
        )
    return free


class _MeasureCounter:
    """Counts candidates that ran on the hardware and reports each batch."""

    def __init__(self, task_names: list[str], say: Progress, log: Path) -> None:
        self.task_names = task_names
        self.say = say
        self.log = log
        self.measured = 0
        self.best: dict[int, float] = {}

    def callback(self) -> Any:
        from tvm.ir.utils import derived_object
        from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

        counter = self

        @derived_object
        class _Count(PyMeasureCallback):
            def apply(self, scheduler: Any, task_id: int, candidates: Any, builds: Any, runs: Any):
                counter.record(task_id, builds, runs)

        return _Count()

    def record(self, task_id: int, builds: Any, runs: Any) -> None:
        if not runs:  # a task whose design space is exhausted is still offered rounds
            return
        seconds = [
            sum(float(s) for s in run.run_secs) / len(run.run_secs)
            for build, run in zip(builds, runs, strict=True)
            if build.error_msg is None and run.error_msg is None and run.run_secs
        ]
        self.measured += len(seconds)
        if seconds:
            self.best[task_id] = min(min(seconds), self.best.get(task_id, math.inf))
        best = self.best.get(task_id)
        self.say(
            f"  {self.task_names[task_id]}: {len(seconds)}/{len(runs)} candidates ran"
            + (f", best {best * 1e3:.3f} ms" if best is not None else "")
            + ("" if seconds else f" (why: {self.log})")
        )
