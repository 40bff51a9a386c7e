"""Shared fixtures: the example model, and a tiny ONNX builder for error-path cases."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'cnn.py'}:make_model"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cuda", action="store_true", help="run the CUDA tests even where no GPU is detected"
    )


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--cuda") or _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run with --cuda on a machine that has one")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def needs(*commands: str) -> pytest.MarkDecorator:
    """Skip unless the system commands are installed (scripts/setup.sh installs them)."""
    missing = [c for c in commands if shutil.which(c) is None]
    return pytest.mark.skipif(
        bool(missing), reason=f"not installed: {', '.join(missing)} (run scripts/setup.sh)"
    )


@pytest.fixture(scope="session", autouse=True)
def _quiet_threads() -> None:
    os.environ.setdefault("TVM_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def example() -> str:
    return EXAMPLE
