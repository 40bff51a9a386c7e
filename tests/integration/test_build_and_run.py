"""Real builds of the example CNN: x86 natively, rpi4 cross-compiled and run under qemu-aarch64."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgec.backends.tvm import find_gpu
from edgec.cli import main
from tests.conftest import EXAMPLE, needs

pytestmark = pytest.mark.integration

REPORT_KEYS = {
    ("model", "params"),
    ("model", "size_bytes"),
    ("model", "macs"),
    ("latency_ms", "p50"),
    ("latency_ms", "p90"),
    ("latency_ms", "p99"),
    ("latency_ms", "where"),
    ("memory", "peak_rss_bytes"),
    ("memory", "planned_bytes"),
    ("parity", "max_abs_diff"),
}


def _edgec(*args: str) -> dict:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.stderr
    return result


def _report(bundle: Path) -> dict:
    return json.loads((bundle / "report.json").read_text())


@pytest.fixture(scope="module")
def x86_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("x86") / "cnn-x86"
    _edgec("build", EXAMPLE, "--target", "x86", "-o", str(out), "--repeat", "5")
    return out


@pytest.fixture(scope="module")
def rpi4_onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's acceptance path: an ONNX file built for rpi4 without measuring, then run."""
    tmp = tmp_path_factory.mktemp("rpi4")
    onnx_path = tmp / "cnn.onnx"
    from examples.cnn import make_model

    torch.onnx.export(
        make_model(),
        (torch.randn(1, 3, 32, 32),),
        str(onnx_path),
        opset_version=17,
        input_names=["image"],
        output_names=["logits"],
        dynamo=False,
    )
    out = tmp / "out"
    _edgec("build", str(onnx_path), "--target", "rpi4", "-o", str(out), "--no-measure")
    return out


def test_x86_build_matches_onnxruntime_and_reports_every_field(x86_bundle: Path) -> None:
    report = _report(x86_bundle)
    for section, key in REPORT_KEYS:
        assert report[section][key] is not None, (section, key)
    assert report["latency_ms"]["where"] == "host"
    assert report["parity"]["max_abs_diff"] < 1e-4
    assert report["parity"]["export_max_abs_diff"] < 1e-4
    assert report["baseline"]["onnxruntime"]["p50"] > 0  # measured in the same run
    assert report["model"]["params"] == 26_666
    assert [s["name"] for s in report["stages"]] == [
        "load",
        "export",
        "import",
        "compile",
        "bundle",
        "measure",
    ]


def test_bundle_holds_library_runner_runtime_and_a_verifiable_manifest(x86_bundle: Path) -> None:
    manifest = json.loads((x86_bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "model.so",
        "model.onnx",
        "edgec-run",
        "libtvm_runtime.so",
        "libtvm_ffi.so",
        "libedgec_model.so",
        "libedgec_model.a",
        "edgec_model.h",
        "example.c",
    }
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((x86_bundle / name).read_bytes()).hexdigest() == digest
    assert manifest["inputs"] == [{"name": "input", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert manifest["outputs"] == [{"name": "output", "shape": [1, 10], "dtype": "float32"}]
    assert manifest["versions"]["tvm"] == "0.27.0.post1"
    with tarfile.open(f"{x86_bundle}.tar.gz") as tar:
        assert f"{x86_bundle.name}/model.so" in tar.getnames()


def test_run_with_a_given_input_updates_the_report(x86_bundle: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _edgec("run", str(x86_bundle), "--input", str(tmp_path / "x.npy"), "--repeat", "3")
    report = _report(x86_bundle)
    assert report["latency_ms"]["repeat"] == 3
    assert report["parity"]["max_abs_diff"] < 1e-4


def test_run_rejects_an_input_of_the_wrong_shape(x86_bundle: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    result = CliRunner().invoke(main, ["run", str(x86_bundle), "--input", str(tmp_path / "x.npy")])
    assert result.exit_code == 2
    assert "must be float32 of shape [1, 3, 32, 32]" in result.stderr


def test_tampered_bundle_is_refused(tmp_path: Path, x86_bundle: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(x86_bundle, copy)
    with open(copy / "model.so", "ab") as f:
        f.write(b"\0")
    result = CliRunner().invoke(main, ["run", str(copy)])
    assert result.exit_code == 1
    assert "model.so is modified" in result.stderr


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
def test_rpi4_bundle_is_aarch64_and_runs_emulated_within_1e4(rpi4_onnx_bundle: Path) -> None:
    assert (rpi4_onnx_bundle / "model.so").read_bytes()[18] == 0xB7  # e_machine = EM_AARCH64
    assert _report(rpi4_onnx_bundle)["latency_ms"] == {"where": None, "skipped": "--no-measure"}
    _edgec("run", str(rpi4_onnx_bundle), "--emulate", "--repeat", "2")
    report = _report(rpi4_onnx_bundle)
    assert report["latency_ms"]["where"] == "emulated"
    assert report["parity"]["max_abs_diff"] < 1e-4
    assert report["baseline"] is None  # host ONNX Runtime is no baseline for an emulated Pi


@needs("qemu-aarch64")
def test_rpi4_bundle_without_emulate_says_how_to_run_it(rpi4_onnx_bundle: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(rpi4_onnx_bundle)])
    assert result.exit_code == 2
    assert "add --emulate" in result.stderr


@pytest.mark.parametrize("suffix", ["pt", "pt2"])
def test_torchscript_and_torch_export_files_build(tmp_path: Path, suffix: str) -> None:
    from examples.cnn import make_model

    model, x = make_model(), torch.randn(1, 3, 32, 32)
    path = tmp_path / f"m.{suffix}"
    if suffix == "pt":
        torch.jit.save(torch.jit.trace(model, x), str(path))
        shape = ["--input-shape", "1,3,32,32"]
    else:
        torch.export.save(torch.export.export(model, (x,)), str(path))
        shape = []  # a torch.export program carries its input shapes
    out = tmp_path / "out"
    _edgec("build", str(path), "--target", "x86", "-o", str(out), "--repeat", "2", *shape)
    assert _report(out)["parity"]["max_abs_diff"] < 1e-4


@pytest.mark.skipif(find_gpu() is not None, reason="a GPU is here: the cuda tests run it")
def test_cuda_builds_without_a_gpu_and_says_it_was_not_measured(tmp_path: Path) -> None:
    out = tmp_path / "cuda"
    _edgec("build", EXAMPLE, "--target", "cuda", "-o", str(out))
    report = _report(out)
    assert report["latency_ms"]["where"] is None
    assert "need a cuda device; none found on this machine" in report["latency_ms"]["skipped"]
    assert (out / "model.so").exists()
