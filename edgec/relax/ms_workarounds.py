"""Workarounds for MetaSchedule in TVM 0.27, each with the measured reason it exists.

edgec/relax/tune.py says what to tune and when; this module holds how MetaSchedule has to be
driven so that it works and finishes in reasonable time on a small host: a builder whose
workers outlive a round, tune contexts made without reconfiguring logging, only the target's
tensor intrinsics registered, and MetaSchedule's log sent to a file.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The logger MetaSchedule's modules log under (its task scheduler, cost model, builders).
LOGGER = "tvm.s_tir.meta_schedule"
# One candidate's build in a builder worker (MetaSchedule's LocalBuilder allows 30 s).
BUILD_TIMEOUT_S = 60


def tune_context(index: int, task: Any, per_task: int) -> Any:
    """MetaSchedule's search state for one task, logging to a child of MetaSchedule's logger."""
    from tvm.s_tir import meta_schedule as ms

    # relax_integration.extracted_tasks_to_tune_contexts would do this, but it reconfigures the
    # process's logging with dictConfig, which fails on unnamed handlers (pytest adds some).
    logger = logging.getLogger(f"{LOGGER}.task_{index}_{task.task_name[:100]}")
    return ms.TuneContext(
        mod=task.dispatched[0],
        target=task.target,
        space_generator="post-order-apply",
        # Evolving MetaSchedule's default 512 schedules to pick a few to measure costs more
        # than measuring them; the population grows with the budget up to that default.
        search_strategy=ms.search_strategy.EvolutionarySearch(
            population_size=min(512, max(64, 8 * per_task))
        ),
        task_name=task.task_name,
        logger=logger,
    ).clone()


@contextmanager
def reusable_builder(cxx: str) -> Iterator[Any]:
    """MetaSchedule's LocalBuilder, but with worker processes that outlive a round."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    # LocalBuilder starts fresh workers every round, and each imports tvm (and torch, which
    # tvm_ffi imports): ~5 s a round on 2 cores, more than building the round's candidates.
    # Recycling a worker after some builds bounds the leak LocalBuilder restarts them for.
    pool = PopenPoolExecutor(
        max_workers=os.cpu_count(),
        timeout=BUILD_TIMEOUT_S,
        maximum_process_uses=32,
        initializer=register_edgec_ops,
    )

    def result(done: Any) -> Any:
        if done.status == StatusKind.COMPLETE:
            return BuilderResult(done.value, None)
        if done.status == StatusKind.TIMEOUT:
            return BuilderResult(None, f"build timed out after {BUILD_TIMEOUT_S} s")
        return BuilderResult(None, f"build failed: {done.value}")

    @derived_object
    class _Builder(PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            jobs = [(cxx, i.mod, i.target) for i in build_inputs]
            return [result(done) for done in pool.map_with_error_catching(_build_job, jobs)]

    try:
        yield _Builder()
    finally:
        pool.shutdown()


def register_edgec_ops() -> None:
    """Register the TIR ops edgec's kernels call (a builder worker unpickles such kernels)."""
    from edgec.relax.lower_int8 import register_ops

    register_ops()


def _build_job(job: tuple[str, Any, Any]) -> str:
    """Build one scheduled candidate into a shared library (runs in a builder worker)."""
    # MetaSchedule's default build also imports tvm.s_tir.tensor_intrin, which is slow (see
    # target_intrinsics_only) and not needed: tensorized blocks already hold the intrinsics.
    from tvm.driver import build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    cxx, mod, target = job
    kernel = build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)
    return export_shared_library(cxx, kernel)


def export_shared_library(cxx: str, module: Any) -> str:
    """Link a candidate into a .so here with `cxx`, so a board needs no compiler of its own."""
    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="edgec-tune-"), "candidate.so")
    module.export_library(path, fcompile=cc.cross_compiler(cxx))
    return path


# Tensor intrinsics MetaSchedule may tensorize with: modules of tvm.s_tir.tensor_intrin by the
# target's kind, or for LLVM by the start of its triple.
_INTRINSICS = {
    "x86_64": "x86",
    "i686": "x86",
    "aarch64": "arm_cpu",
    "arm": "arm_cpu",
    "riscv": "riscv_cpu",
    "cuda": "cuda",
}


def _intrinsics_module(target: Any) -> str | None:
    kind = target.kind.name
    if kind != "llvm":
        return _INTRINSICS.get(kind)
    from tvm.target import codegen

    triple = str(target.attrs.get("mtriple") or codegen.llvm_get_system_triple())
    return next((m for arch, m in _INTRINSICS.items() if triple.startswith(arch)), None)


@contextmanager
def target_intrinsics_only(target: Any) -> Iterator[None]:
    """Register only the target's tensor intrinsics while MetaSchedule runs."""
    # MetaSchedule does `import tvm.s_tir.tensor_intrin`, which parses ~500 TVMScript functions
    # for every backend. tvm_ffi imports torch, and TVMScript calls inspect.stack(), whose cost
    # grows with sys.modules: ~35 s on 2 cores, per process (and past LocalBuilder's 30 s
    # timeout in each build worker). The package is made importable without its __init__, so
    # only the submodules this target uses are parsed; other submodules still import on demand.
    name = "tvm.s_tir.tensor_intrin"
    submodule = _intrinsics_module(target)
    if name in sys.modules or submodule is None:
        yield
        return
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations is not None
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        with _shallow_stacks():
            importlib.import_module(f"{name}.{submodule}")
        yield
    finally:
        # A later plain import runs the real __init__, which finds these submodules loaded.
        del sys.modules[name]


# The frames of inspect.stack() whose source line TVMScript's parser reads (the decorator's
# caller's caller: `@T.prim_func` inside a class); of the others it reads only frame objects.
_FRAMES_WITH_SOURCE = 3


@contextmanager
def _shallow_stacks() -> Iterator[None]:
    """inspect.stack() without the source lines of frames past the first few, while TVMScript
    parses a module of functions. Each `@T.prim_func` calls inspect.stack(), which looks up
    every frame's source file; for frames of frozen modules (importlib's, under an import)
    that scans sys.modules, once per frame and call. Importing CUDA's tensor intrinsics
    (360 functions) took 45 s on 2 cores, 38 s of it in inspect.stack()."""
    import inspect

    full = inspect.stack

    def stack(context: int = 1) -> list[inspect.FrameInfo]:
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            if len(frames) < _FRAMES_WITH_SOURCE:
                frames.append(inspect.FrameInfo(frame, *inspect.getframeinfo(frame, context)))
            else:
                code = frame.f_code
                line = frame.f_lineno
                frames.append(
                    inspect.FrameInfo(frame, code.co_filename, line, code.co_name, None, None)
                )
            frame = frame.f_back
        return frames

    inspect.stack = stack
    try:
        yield
    finally:
        inspect.stack = full


@contextmanager
def meta_schedule_log(path: Path) -> Iterator[None]:
    """Send all of MetaSchedule's logging to `path` (replaced), none to the console."""
    logger = logging.getLogger(LOGGER)
    saved = logger.level, logger.propagate
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # its per-round tables would flood the terminal
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
