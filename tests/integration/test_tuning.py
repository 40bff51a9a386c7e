"""MetaSchedule tuning: records cached per target, applied at build time, measured here or over RPC.

The model is a conv2d+bias+relu and a dense layer (three kernels with the flatten between them),
tuned with a few trials: enough to get a record per kernel, not a fast model.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.errors import EdgecError
from edgec.relax.import_onnx import import_onnx
from edgec.relax.target import tvm_target
from edgec.relax.tune import RemoteMeasure, TuningSummary, apply_database, tune
from edgec.stages.load import load
from edgec.targets import get_target
from tests.conftest import needs

pytestmark = pytest.mark.integration

TRIALS = 6  # two per kernel: each kernel gets a record, in about half a minute on 2 cores
RPC_KEY = "x86-test"


def _conv_dense_onnx(path: Path, activation: str = "Relu", classes: int = 10) -> Path:
    """Conv 3->8 (3x3, bias) + activation, flatten, dense to `classes`."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((8, 3, 3, 3)) * 0.2,
        "b": rng.standard_normal(8) * 0.1,
        "g": rng.standard_normal((8 * 16 * 16, classes)) * 0.02,
        "gb": rng.standard_normal(classes) * 0.1,
    }
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node(activation, ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("Gemm", ["f", "g", "gb"], ["y"]),
        ],
        "conv_dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _fused(module: Any, target: Any) -> Any:
    """What the build tunes and compiles: the CPU backend's dispatch, legalization and fusion."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline

    with target:
        passes = pipeline.library_dispatch_passes(target) + pipeline.legalize_passes(target)
        return tvm.transform.Sequential(passes)(module)


def _run(fused: Any, target: Any, x: np.ndarray) -> np.ndarray:
    """Finish the build of a fused module and run it on x in the Relax VM."""
    import tvm
    from tvm import relax

    # tvm.relax.pipeline.dataflow_lower_passes(llvm) raises AttributeError in TVM 0.27: the
    # cpu_generic package does not export it, so the backend module is used directly.
    from tvm.relax.backend.cpu_generic import pipeline

    with target:
        passes = pipeline.dataflow_lower_passes(target) + pipeline.finalize_passes(target)
        lowered = tvm.transform.Sequential(passes)(fused)
    vm = relax.VirtualMachine(tvm.compile(lowered, target=target, relax_pipeline=None), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _import(path: Path) -> Any:
    return import_onnx(load(str(path), None, path.parent)).module


def _default_rules() -> list[Any]:
    """TVM's own CPU dlight rules stand in for the build's: they schedule the dense and conv."""
    from tvm.s_tir import dlight as dl

    return [dl.cpu.GEMV(), dl.cpu.Reduction()]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The conv+dense model imported into Relax (not yet fused)."""
    return _import(_conv_dense_onnx(tmp_path_factory.mktemp("model") / "m.onnx"))


@pytest.fixture(scope="module")
def x86_fused(model: Any) -> Any:
    return _fused(model, tvm_target(get_target("x86")))


@pytest.fixture(scope="module")
def x86_tuned(
    x86_fused: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TuningSummary, list[str]]:
    """The first tuning of the model into a fresh database, and its progress lines."""
    lines: list[str] = []
    db_dir = tmp_path_factory.mktemp("x86-db")
    summary = tune(
        x86_fused,
        get_target("x86"),
        trials=TRIALS,
        db_dir=db_dir,
        progress=lines.append,
        baseline_rules=_default_rules(),
    )
    return summary, lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    # Each in its own session: the tracker and servers fork workers, ended with them at teardown.
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for(ready: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"{failure} within 60 s")
        time.sleep(0.5)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _free_servers(port: int) -> int:
    from tvm import rpc

    try:
        summary = rpc.connect_tracker("127.0.0.1", port).summary()
    except (OSError, RuntimeError):
        return 0
    return int(summary["queue_info"].get(RPC_KEY, {}).get("free", 0))


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """An RPC tracker on loopback with two x86 servers under RPC_KEY; yields its port."""
    logs = tmp_path_factory.mktemp("rpc")
    port = _free_port()
    tracker_args = ["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port)]
    procs = [_start([*tracker_args, "--port-end", str(port + 1)], logs / "tracker.log")]
    try:
        # A server that finds no tracker retries only every 5 s: start them once it listens.
        _wait_for(lambda: _listening(port), f"the tracker did not listen; log in {logs}")
        for i in range(2):
            server_port = _free_port()
            server = ["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", RPC_KEY]
            address = ["--host", "127.0.0.1", "--port", str(server_port)]
            end = ["--port-end", str(server_port + 1)]
            procs.append(_start([*server, *address, *end], logs / f"server{i}.log"))
        _wait_for(lambda: _free_servers(port) == 2, f"the servers did not register; logs in {logs}")
        yield port
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def test_second_tuning_of_the_same_model_measures_nothing(
    x86_fused: Any, x86_tuned: tuple[TuningSummary, list[str]]
) -> None:
    first, _ = x86_tuned
    assert first.tasks == 3  # conv2d+add+relu, reshape, matmul+add
    assert first.measurements > 0
    assert first.tuned + first.from_database + first.default_rules == first.tasks
    assert first.tuned == first.tasks
    second = tune(x86_fused, get_target("x86"), trials=TRIALS, db_dir=Path(first.database))
    assert second.measurements == 0
    assert second.from_database == second.tasks == first.tasks
    assert second.tuned == second.default_rules == 0


def test_zero_trials_leave_every_kernel_to_the_default_rules(
    x86_fused: Any, tmp_path: Path
) -> None:
    summary = tune(x86_fused, get_target("x86"), trials=0, db_dir=tmp_path / "db")
    assert summary.default_rules == summary.tasks == 3
    assert summary.measurements == summary.tuned == summary.from_database == 0


# a default schedule's measurement ("  fused_conv2d: default rules 0.123 ms"), not a recheck's
# line ("  fused_conv2d: tuned 2.5 vs 1.2 ms by the default rules, rechecked: default rules kept")
DEFAULT_MEASURED = re.compile(r"^\s+(\S+): default rules ([0-9.]+) ms$")


def test_default_rules_are_measured_before_the_search_and_the_faster_schedule_is_kept(
    x86_tuned: tuple[TuningSummary, list[str]],
) -> None:
    from edgec.relax.tune import _open_database

    summary, lines = x86_tuned
    measured = {i: DEFAULT_MEASURED.match(line) for i, line in enumerate(lines)}
    defaults = {m[1]: float(m[2]) for m in measured.values() if m}
    searched = [i for i, line in enumerate(lines) if "candidates ran" in line]
    assert "fused_matmul_add1" in defaults and searched, lines
    last_default = max(i for i, m in measured.items() if m)
    assert last_default < searched[0]  # every default measured before the first candidate
    assert summary.measurements > len(defaults)  # and MetaSchedule's candidates ran too
    # The default rules' record competes with the candidates' in the database, which serves a
    # kernel's fastest record: the default schedule stays unless a candidate ran faster.
    database = _open_database(Path(summary.database))
    kernels: dict[str, tuple[Any, list[float]]] = {}
    for record in database.get_all_tuning_records():
        if record.run_secs:
            _, times = kernels.setdefault(str(record.workload.mod), (record.workload, []))
            times.append(_mean_ms(record))
    for task, default in defaults.items():
        assert any(abs(t - default) <= 5e-4 for _, ts in kernels.values() for t in ts), task
    for workload, times in kernels.values():
        (served,) = database.get_top_k(workload, 1)
        assert _mean_ms(served) == pytest.approx(min(times))


def _mean_ms(record: Any) -> float:
    secs = [float(s) for s in record.run_secs]
    return sum(secs) / len(secs) * 1e3


def _scheduled(module: Any) -> list[str]:
    import tvm

    return [
        gv.name_hint
        for gv, f in module.functions.items()
        if isinstance(f, tvm.tirx.PrimFunc) and f.attrs.get("tirx.is_scheduled")
    ]


def test_tuned_build_gives_the_untuned_build_outputs(
    x86_fused: Any, x86_tuned: tuple[TuningSummary, list[str]]
) -> None:
    target = tvm_target(get_target("x86"))
    tuned = apply_database(x86_fused, target, Path(x86_tuned[0].database))
    assert len(_scheduled(tuned)) == 3
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(tuned, target, x), _run(x86_fused, target, x), atol=1e-4)


# (the other model's activation, whether the conv's record must replay on it)
OTHER_EPILOGUES = [
    pytest.param("Relu", True, id="same-epilogue-relu"),
    # Found by its anchor block (the conv), but whether the trace replays on a sigmoid
    # epilogue depends on which candidate won: under load a tuned candidate can beat the
    # default schedule, and its trace may not replay; the build then keeps the default rules
    # for that kernel, and its outputs must be right either way.
    pytest.param("Sigmoid", False, id="other-epilogue-sigmoid"),
]


@pytest.mark.parametrize(("activation", "replays"), OTHER_EPILOGUES)
def test_a_conv_tuned_in_one_model_serves_the_same_conv_in_another(
    x86_tuned: tuple[TuningSummary, list[str]], tmp_path: Path, activation: str, replays: bool
) -> None:
    # Same conv, a 4-class head: the conv (by its anchor block) and the flatten match, the
    # dense does not.
    other = _fused(
        _import(_conv_dense_onnx(tmp_path / "other.onnx", activation=activation, classes=4)),
        tvm_target(get_target("x86")),
    )
    db_dir = Path(x86_tuned[0].database)
    summary = tune(other, get_target("x86"), trials=0, db_dir=db_dir)
    assert summary.from_database == 2  # the conv, and the flatten (same shapes)
    assert summary.default_rules == 1  # the 4-class dense
    target = tvm_target(get_target("x86"))
    tuned = apply_database(other, target, db_dir)
    if replays:
        assert any("conv2d" in name for name in _scheduled(tuned))
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(_run(tuned, target, x), _run(other, target, x), atol=1e-4)


def test_tuning_over_rpc_records_measurements_from_the_servers(
    x86_fused: Any, tracker: int, tmp_path: Path
) -> None:
    remote = RemoteMeasure("127.0.0.1", tracker, RPC_KEY)
    summary = tune(x86_fused, get_target("x86"), trials=3, db_dir=tmp_path / "db", remote=remote)
    assert summary.measurements > 0
    assert summary.tuned > 0
    assert (tmp_path / "db" / "database_tuning_record.json").stat().st_size > 0


def test_tuning_under_a_key_without_servers_names_tracker_and_key(
    x86_fused: Any, tracker: int, tmp_path: Path
) -> None:
    remote = RemoteMeasure("127.0.0.1", tracker, "no-such-board")
    with pytest.raises(EdgecError, match=f"127.0.0.1:{tracker} has no free server under key"):
        tune(x86_fused, get_target("x86"), trials=3, db_dir=tmp_path / "db", remote=remote)


def test_rpi4_tuning_without_a_tracker_is_refused(model: Any, tmp_path: Path) -> None:
    rpi4 = get_target("rpi4")
    fused = _fused(model, tvm_target(rpi4))
    with pytest.raises(EdgecError, match="tuning rpi4 needs measurements on the board"):
        tune(fused, rpi4, trials=3, db_dir=tmp_path / "db")


def test_unreachable_tracker_is_named_in_one_line(x86_fused: Any, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    remote = RemoteMeasure("127.0.0.1", port, RPC_KEY)
    with pytest.raises(EdgecError, match=f"cannot reach the RPC tracker at 127.0.0.1:{port}") as e:
        tune(x86_fused, get_target("x86"), trials=3, db_dir=tmp_path / "db", remote=remote)
    assert "\n" not in str(e.value)


@needs("aarch64-linux-gnu-g++")
def test_candidates_for_a_board_are_cross_linked_into_a_shared_object() -> None:
    import tvm
    from tvm import te

    from edgec.relax.ms_workarounds import export_shared_library

    a = te.placeholder((8,), name="a")
    b = te.compute((8,), lambda i: a[i] + 1.0, name="b")
    kernel = tvm.IRModule({"main": te.create_prim_func([a, b])})
    built = tvm.compile(kernel, target=tvm_target(get_target("rpi4")))
    path = Path(export_shared_library("aarch64-linux-gnu-g++", built))
    try:
        assert path.suffix == ".so"
        assert path.read_bytes()[18] == 0xB7  # e_machine = EM_AARCH64: the board loads it as is
    finally:
        shutil.rmtree(path.parent)  # in tuning, MetaSchedule's RemoveBuildArtifact does this


@needs("aarch64-linux-gnu-g++")
def test_a_builder_worker_builds_candidates_that_call_edgec_ops() -> None:
    # rpi4 int8 requantization calls edgec's own TIR op (edgec.rounding_shift): a builder
    # worker that has not registered it cannot even unpickle such a candidate
    from tvm import s_tir, te, tirx
    from tvm.s_tir import meta_schedule as ms

    from edgec.relax.lower_int8 import ROUNDING_SHIFT, register_ops
    from edgec.relax.ms_workarounds import reusable_builder

    register_ops()
    a = te.placeholder((16,), "int32", name="a")
    shift = tirx.const(-3, "int32")
    b = te.compute((16,), lambda i: tirx.call_intrin("int32", ROUNDING_SHIFT, a[i], shift))
    sch = s_tir.Schedule(te.create_prim_func([a, b]))
    sch.vectorize(sch.split(sch.get_loops(sch.get_sblock("compute"))[0], [None, 4])[1])
    with reusable_builder("aarch64-linux-gnu-g++") as builder:
        (result,) = builder.build(
            [ms.builder.BuilderInput(sch.mod, tvm_target(get_target("rpi4")))]
        )
    assert result.error_msg is None, result.error_msg
    path = Path(result.artifact_path)
    try:
        assert path.read_bytes()[18] == 0xB7
    finally:
        shutil.rmtree(path.parent)


def test_a_recheck_keeps_in_the_database_the_schedule_it_says_it_kept(
    x86_fused: Any, tmp_path: Path
) -> None:
    # A plain loop nest recorded as if it beat the default rules' schedule: the recheck runs
    # both again, and whichever it keeps (no timing asserted) is what the database serves.
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule import relax_integration

    from edgec.relax.ms_workarounds import reusable_builder, target_intrinsics_only
    from edgec.relax.tune import (
        MODULE_EQUALITY,
        _Default,
        _first_schedule,
        _open_database,
        _recheck_winners,
    )

    profile = get_target("x86")
    target = tvm_target(profile)
    lines: list[str] = []
    with target_intrinsics_only(target):
        tasks = relax_integration.extract_tasks(x86_fused, target, module_equality=MODULE_EQUALITY)
        task = next(t for t in tasks if "matmul" in t.task_name)
        func = task.dispatched[0]["main"]
        with target:
            ours = _first_schedule(_default_rules(), func, target)
        plain = tvm.s_tir.Schedule(task.dispatched[0])
        # a record with an empty trace is never served (get_top_k skips it): one lookup step
        plain.get_child_blocks(plain.get_sblock("root", func_name="main"))
        database = _open_database(tmp_path)
        args = ms.arg_info.ArgInfo.from_entry_func(plain.mod, remove_preproc=True)
        workload = database.commit_workload(task.dispatched[0])
        database.commit_tuning_record(
            ms.database.TuningRecord(plain.trace, workload, [1e-9], target, args)
        )
        with reusable_builder(profile.cxx) as builder:
            measured = _recheck_winners(
                [(task, _Default(ours, 1.0))],
                builder,
                ms.runner.LocalRunner(),
                database,
                lines.append,
            )
        served = database.query_tuning_record(task.dispatched[0], target, task.task_name)
    assert measured == 6, lines
    (line,) = lines
    kept = ours if line.endswith("default rules kept") else plain
    assert line.endswith(("default rules kept", "tuned kept")), line
    assert str(served.trace) == str(kept.trace)
