"""Models no one here wrote build and match ONNX Runtime: torchvision classifiers (random weights)
at opsets 11, 13 and 17, old-converter-style graphs, and opset-6 graphs from the onnx wheel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench import legacy_graphs, zoo
from edgec.pipeline import BuildOptions, build
from edgec.progress import StageLog
from tests.conftest import needs

pytestmark = pytest.mark.integration

SIDE = 32  # every model below ends in adaptive pooling: small inputs keep the runs short

# Small torchvision classifiers, each at another opset: depthwise and grouped convolutions,
# channel shuffle, squeeze-excitation, hard-swish, fire modules, inception branches.
X86_CORPUS = [
    pytest.param("squeezenet1_1", 11, id="squeezenet1_1-opset11"),
    pytest.param("mobilenet_v3_small", 13, id="mobilenet_v3_small-opset13"),
    pytest.param("shufflenet_v2_x0_5", 17, id="shufflenet_v2_x0_5-opset17"),
    pytest.param("mnasnet0_5", 11, id="mnasnet0_5-opset11"),
    pytest.param("regnet_x_400mf", 13, id="regnet_x_400mf-opset13"),
    pytest.param("googlenet", 17, id="googlenet-opset17"),
]
RPI4_CORPUS = [
    pytest.param("mobilenet_v3_small", 17, id="mobilenet_v3_small-opset17"),
    pytest.param("shufflenet_v2_x0_5", 11, id="shufflenet_v2_x0_5-opset11"),
]
LEGACY = [pytest.param(name, id=name) for name in legacy_graphs.GRAPHS]
OPSET6 = [  # the onnx wheel's pytorch-converted cases, stamped opset 6
    pytest.param("test_Linear", id="gemm"),
    pytest.param("test_Conv2d_depthwise_strided", id="depthwise-conv"),
    pytest.param("test_MaxPool2d", id="maxpool"),
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("corpus")


def _build(model: Path, target: str, out: Path) -> dict[str, Any]:
    """A real build; pipeline.build raises CheckFailed if parity with ONNX Runtime fails."""
    with open(os.devnull, "w") as quiet:
        return build(str(model), target, out, BuildOptions(repeat=2), StageLog(stream=quiet))


def _assert_matches_onnxruntime(report: dict[str, Any]) -> None:
    parity = report["parity"]
    assert parity["ok"] is True, parity
    assert parity["tolerance"] >= 1e-4  # 1e-4 × max(1, max |reference|)
    assert parity["max_abs_diff"] <= parity["tolerance"]
    assert isinstance(report["schedules"]["fallbacks"], dict)


@pytest.mark.parametrize(("name", "opset"), X86_CORPUS)
def test_torchvision_classifier_builds_for_x86_and_matches_onnxruntime(
    corpus_dir: Path, tmp_path: Path, name: str, opset: int
) -> None:
    model = zoo.export(name, opset, SIDE, corpus_dir)
    report = _build(model, "x86", tmp_path / "b")
    _assert_matches_onnxruntime(report)
    assert report["model"]["onnx_opset"] == opset
    assert report["latency_ms"]["where"] == "host"


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
@pytest.mark.parametrize(("name", "opset"), RPI4_CORPUS)
def test_torchvision_classifier_builds_for_rpi4_and_matches_under_qemu(
    corpus_dir: Path, tmp_path: Path, name: str, opset: int
) -> None:
    model = zoo.export(name, opset, SIDE, corpus_dir)
    report = _build(model, "rpi4", tmp_path / "b")
    _assert_matches_onnxruntime(report)
    assert report["latency_ms"]["where"] == "emulated"


@pytest.mark.parametrize("name", LEGACY)
def test_old_converter_style_graph_builds_and_matches_onnxruntime(
    tmp_path: Path, name: str
) -> None:
    model = legacy_graphs.write(name, tmp_path / "src")
    report = _build(model, "x86", tmp_path / "b")
    _assert_matches_onnxruntime(report)
    assert report["model"]["onnx_opset"] <= 9
    assert report["model"]["upgraded_from_opset"] is None


@pytest.mark.parametrize("case", OPSET6)
def test_opset6_graph_is_upgraded_then_builds_and_matches_onnxruntime(
    tmp_path: Path, case: str
) -> None:
    (model,) = legacy_graphs.wheel_cases([case])
    report = _build(model, "x86", tmp_path / "b")
    _assert_matches_onnxruntime(report)
    assert report["model"]["upgraded_from_opset"] == 6
    assert report["model"]["onnx_opset"] == 13
