"""The C API a bundle ships (edgec_model.h, libedgec_model.so/.a, example.c): programs compiled
against the bundle's own files, run natively on x86 and under qemu-aarch64 for rpi4, give the
runner's outputs; its error paths answer with a message instead of aborting."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgec import runtime
from edgec.cli import main
from edgec.targets import get_target
from tests.conftest import ROOT, needs

pytestmark = pytest.mark.integration

PROBE = ROOT / "tests" / "data" / "capi_probe.c"
C_COMPILERS = {"x86": "gcc", "rpi4": "aarch64-linux-gnu-gcc"}
# What a program linking the static archive adds itself: the runtime (its initialisers register
# the VM loader, so not as-needed) and the C++ library the API is written against.
STATIC_LINK = ["-Wl,--no-as-needed", "-ltvm_ffi", "-ltvm_runtime", "-Wl,--as-needed", "-lstdc++",
               "-lm", "-lpthread", "-ldl"]  # fmt: skip


class TwoOutputs(torch.nn.Module):
    """A tiny CNN with two outputs: a feature map and logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(x))
        return features, self.fc(features.flatten(1))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capi") / "two_outputs.onnx"
    torch.onnx.export(TwoOutputs().eval(), (torch.randn(1, 3, 8, 8),), str(path),
                      opset_version=17, input_names=["x"], output_names=["features", "logits"],
                      dynamo=False)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def bundles(onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model built for each target once (the runner and C API come from the cache)."""
    built = {}
    for target in C_COMPILERS:
        out = tmp_path_factory.mktemp(target) / "bundle"
        result = CliRunner().invoke(
            main, ["build", str(onnx_model), "--target", target, "-o", str(out), "--no-measure"]
        )
        assert result.exit_code == 0, result.stderr
        built[target] = out
    return built


def _pattern(shape: tuple[int, ...]) -> np.ndarray:
    """example.c's input: element k is (k % 17) / 8 - 1."""
    return (np.arange(np.prod(shape)) % 17 / 8 - 1).astype(np.float32).reshape(shape)


def _emulated(target: str) -> tuple[list[str], dict[str, str]]:
    profile, env = get_target(target), dict(os.environ)
    if profile.emulator is None:
        return [], env
    env.update(profile.emulator.env)
    return list(profile.emulator.command), env


def _compile(target: str, source: Path, bundle: Path, out: Path, link: str) -> Path:
    """`source` compiled against the bundle's header and its shared or static C API."""
    libs = ["-ledgec_model"] if link == "shared" else [str(bundle / "libedgec_model.a")]
    if link == "static":
        libs += STATIC_LINK
    cmd = [C_COMPILERS[target], "-std=c11", "-Wall", "-Wextra", "-Werror", str(source),
           f"-I{bundle}", f"-L{bundle}", *libs, f"-Wl,-rpath,{bundle}", "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def _run(target: str, *cmd: str) -> str:
    prefix, env = _emulated(target)
    done = subprocess.run([*prefix, *cmd], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _printed(stdout: str) -> list[np.ndarray]:
    """The outputs example.c prints, one line each: `output I: float32, N bytes: v0 v1 ...`."""
    lines = [line for line in stdout.splitlines() if line.startswith("output ")]
    return [np.array(line.split(":", 2)[2].split(), dtype=np.float32) for line in lines]


def _runner_outputs(target: str, bundle: Path, tmp: Path) -> list[np.ndarray]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    np.save(tmp / "x.npy", _pattern(tuple(manifest["inputs"][0]["shape"])))
    args = runtime.runner_arguments(str(bundle / "model.so"), [str(tmp / "x.npy")], str(tmp), 1, 0)
    _run(target, str(bundle / "edgec-run"), *args)
    return [np.load(tmp / f"output_{i}.npy").ravel() for i in range(len(manifest["outputs"]))]


EXAMPLE_CASES = [
    pytest.param("x86", "shared", id="x86-libedgec_model.so"),
    pytest.param("x86", "static", id="x86-libedgec_model.a"),
    pytest.param("rpi4", "shared", id="rpi4-libedgec_model.so-qemu",
                 marks=needs("aarch64-linux-gnu-gcc", "qemu-aarch64")),
    pytest.param("rpi4", "static", id="rpi4-libedgec_model.a-qemu",
                 marks=needs("aarch64-linux-gnu-gcc", "qemu-aarch64")),
]  # fmt: skip


@pytest.mark.parametrize(("target", "link"), EXAMPLE_CASES)
def test_bundle_example_prints_the_runners_outputs(
    bundles: dict[str, Path], target: str, link: str, tmp_path: Path
) -> None:
    bundle = bundles[target]
    example = _compile(target, bundle / "example.c", bundle, tmp_path / "example", link)
    printed = _printed(_run(target, str(example), str(bundle)))
    expected = _runner_outputs(target, bundle, tmp_path)
    assert [p.shape for p in printed] == [(4 * 8 * 8,), (5,)]
    for got, want in zip(printed, expected, strict=True):
        np.testing.assert_array_equal(got, want)  # the same code on the same inputs


def test_api_describes_the_manifests_inputs_and_outputs(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = bundles["x86"]
    probe = _compile("x86", PROBE, bundle, tmp_path / "probe", "shared")
    manifest = json.loads((bundle / "manifest.json").read_text())
    expected = [
        f"{kind} {t['dtype']} {' '.join(map(str, t['shape']))} bytes={4 * np.prod(t['shape'])}"
        for kind, key in (("in", "inputs"), ("out", "outputs"))
        for t in manifest[key]
    ]
    assert _run("x86", str(probe), "describe", str(bundle)).splitlines() == expected


ERROR_CASES = [
    pytest.param("open", "missing", "open failed: cannot open model '{missing}': No such file",
                 id="missing-model-file"),
    pytest.param("open", "not-a-model", "open failed: cannot load model '{not_a_model}'",
                 id="file-that-is-no-model"),
    pytest.param("short-input", "bundle",
                 "-1: input 0 is float32 [1, 3, 8, 8], 768 bytes; got a buffer of 767",
                 id="input-buffer-too-small"),
    pytest.param("long-input", "bundle", "-1: input 0 is float32 [1, 3, 8, 8], 768 bytes; got a "
                 "buffer of 769", id="input-buffer-too-large"),
    pytest.param("null-input", "bundle", "-1: input 0: buffer is NULL", id="null-input-buffer"),
    pytest.param("no-such-input", "bundle", "NULL: input 1 does not exist: the model has 1",
                 id="input-index-out-of-range"),
    pytest.param("no-such-output", "bundle", "NULL: output -1 does not exist: the model has 2",
                 id="negative-output-index"),
    pytest.param("output-before-run", "bundle", "-1: the model has not run yet",
                 id="output-before-any-run"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "model", "message"), ERROR_CASES)
def test_api_errors_return_a_message_instead_of_aborting(
    bundles: dict[str, Path], case: str, model: str, message: str, tmp_path: Path
) -> None:
    bundle = bundles["x86"]
    paths = {
        "missing": tmp_path / "missing" / "model.so",
        "not_a_model": tmp_path / "notes.so",
        "bundle": bundle,
    }
    paths["not_a_model"].write_text("not a shared library\n")
    probe = _compile("x86", PROBE, bundle, tmp_path / "probe", "shared")
    stdout = _run("x86", str(probe), case, str(paths[model.replace("-", "_")]))
    assert stdout.startswith(message.format(**paths)), stdout


THREAD_CASES = [
    pytest.param(None, False, id="unpinned-by-default"),
    pytest.param("1", True, id="the-users-choice-kept"),
]  # fmt: skip


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one CPU: nothing to pin to")
@pytest.mark.parametrize(("bind", "pinned"), THREAD_CASES)
def test_the_runtimes_threads_float_across_cores_unless_the_user_pins_them(
    bundles: dict[str, Path], tmp_path: Path, bind: str | None, pinned: bool
) -> None:
    bundle = bundles["x86"]
    probe = _compile("x86", PROBE, bundle, tmp_path / "probe", "shared")
    env = {k: v for k, v in os.environ.items() if k != "TVM_BIND_THREADS"}
    env["TVM_NUM_THREADS"] = "2"
    if bind is not None:
        env["TVM_BIND_THREADS"] = bind
    done = subprocess.run([str(probe), "threads", str(bundle)], capture_output=True, text=True,
                          env=env)  # fmt: skip
    allowed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("thread ")]
    assert len(allowed) >= 2, done.stdout  # the caller and the runtime's worker
    everywhere = os.sched_getaffinity(0)
    cpus = [_cpus(a) for a in allowed]
    assert all(c == everywhere for c in cpus) != pinned, allowed


def _cpus(allowed: str) -> set[int]:
    """A Cpus_allowed_list ("0-1,3") as a set."""
    out: set[int] = set()
    for part in allowed.split(","):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def test_runner_refuses_an_input_of_another_shape_in_one_line(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = bundles["x86"]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 4, 4), np.float32))
    x = [str(tmp_path / "x.npy")]
    args = runtime.runner_arguments(str(bundle / "model.so"), x, str(tmp_path), 1, 0)
    done = subprocess.run([str(bundle / "edgec-run"), *args], capture_output=True, text=True)
    errors = [line for line in done.stderr.splitlines() if "Scope" not in line]
    assert done.returncode == 2
    assert errors == [
        f"edgec-run: error: input 0 ('{tmp_path}/x.npy') is float32 (1, 3, 4, 4); "
        "the model takes float32 (1, 3, 8, 8)"
    ]


@pytest.fixture(scope="module")
def system_lib_objects(onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The tiny model as TVM system-library objects (relax.build(..., system_lib=True)), which
    register themselves at start-up in whatever program links them."""
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from edgec.relax.signature import with_signature

    tmp = tmp_path_factory.mktemp("system-lib")
    module = with_signature(from_onnx(onnx.load(onnx_model)))
    executable = relax.build(module, tvm.target.Target({"kind": "llvm"}), system_lib=True)
    executable.export_library(str(tmp / "model.tar"))
    with tarfile.open(tmp / "model.tar") as tar:
        tar.extractall(tmp / "objects", filter="data")
    return sorted(map(str, (tmp / "objects").glob("*.o")))


def _probe_with_model(bundle: Path, objects: list[str], out: Path) -> list[str]:
    """tests/data/capi_probe.c, run without a path: it opens the linked-in model."""
    cmd = ["gcc", "-std=c11", str(PROBE), f"-I{bundle}", *objects,
           str(bundle / "libedgec_model.a"), f"-L{bundle}", *STATIC_LINK, f"-Wl,-rpath,{bundle}",
           "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [str(out), "run"]


def _runner_with_model(bundle: Path, objects: list[str], out: Path) -> list[str]:
    """edgec-run compiled with -DEDGEC_SYSTEM_LIB (as the static build compiles it), run with
    the runner's arguments less MODEL_SO; its output_0.npy... are read back."""
    runner = ROOT / "codegen" / runtime.RUNNER_SOURCES[0]
    cmd = ["g++", "-std=c++17", "-DEDGEC_SYSTEM_LIB", "-isystem", str(runtime.ffi_include_dir()),
           str(runner), *objects, str(bundle / "libedgec_model.a"), f"-L{bundle}", *STATIC_LINK,
           f"-Wl,-rpath,{bundle}", "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    x = out.parent / "x.npy"
    np.save(x, _pattern((1, 3, 8, 8)))
    return [str(out), "--input", str(x), "--output-dir", str(out.parent), "--repeat", "1"]


SYSTEM_LIB_CASES = [
    pytest.param(_probe_with_model, id="c-program-edgec_model_open_system"),
    pytest.param(_runner_with_model, id="runner-built-with-EDGEC_SYSTEM_LIB"),
]


@needs("gcc")
@pytest.mark.parametrize("program", SYSTEM_LIB_CASES)
def test_system_library_linked_into_a_program_opens_without_a_path(
    bundles: dict[str, Path], system_lib_objects: list[str], program: Any, tmp_path: Path
) -> None:
    """The static build's contract: a model compiled with system_lib=True and linked into the
    program is opened by edgec_model_open_system(), by the runner too when built with
    -DEDGEC_SYSTEM_LIB; outputs as the bundle's runner gives them."""
    bundle = bundles["x86"]
    cmd = program(bundle, system_lib_objects, tmp_path / "program")
    stdout = _run("x86", *cmd)
    if program is _runner_with_model:
        got = [np.load(tmp_path / f"output_{i}.npy").ravel() for i in range(2)]
        assert json.loads(stdout.splitlines()[-1])["outputs"][1]["shape"] == [1, 5]
    else:
        got = _printed(stdout)
    (tmp_path / "reference").mkdir()
    expected = _runner_outputs("x86", bundle, tmp_path / "reference")
    for printed, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(printed, want, atol=1e-5)  # TVM's plain pipeline vs edgec's


def _function(param: tuple[tuple[object, ...], str], body: str) -> object:
    """main(x) with x of the given (shape, dtype), returning x, (x, (x,)) or a shape value."""
    import tvm
    from tvm import relax
    from tvm.script import relax as R

    shape, dtype = param
    dims = [tvm.tirx.Var(d, "int64") if isinstance(d, str) else d for d in shape]
    x = relax.Var("x", R.Tensor(dims, dtype))
    results = {
        "x": x,
        "nested": relax.Tuple([x, relax.Tuple([x])]),
        "shape": relax.ShapeExpr([3]),
    }
    return relax.Function([x], results[body])


SIGNATURE_CASES = [
    pytest.param(((1, 4), "float32"), "x", "in float32 1 4\nout float32 1 4\n", id="static"),
    pytest.param((("n", 4), "int8"), "x", "in int8 ? 4\nout int8 ? 4\n", id="symbolic-dim-is-?"),
    pytest.param(((2,), "float16"), "nested", "in float16 2\n" + "out float16 2\n" * 2,
                 id="nested-tuples-depth-first"),
    pytest.param(((3,), "int64"), "shape", "in int64 3\nout unsupported\n",
                 id="non-tensor-is-unsupported"),
]  # fmt: skip


@pytest.mark.parametrize(("param", "body", "text"), SIGNATURE_CASES)
def test_signature_lists_mains_tensors(param: tuple, body: str, text: str) -> None:
    from edgec.relax.signature import signature_text

    assert signature_text(_function(param, body)) == text
