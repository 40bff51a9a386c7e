"""Shared fixtures: the example model, and a tiny ONNX builder for error-path cases."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'cnn.py'}:make_model"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cuda", action="store_true", help="run the CUDA tests even where no GPU is detected"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from edgec.backends.tvm import find_gpu

    # the marker, not item.keywords: those hold every parent's name, e.g. a checkout dir "cuda"
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if config.getoption("--cuda") or not marked:
        return
    if find_gpu() is not None:
        return
    skip = pytest.mark.skip(
        reason="needs a CUDA GPU: nvidia-smi lists none and there is no /dev/nvidia0 "
        "(--cuda runs them anyway)"
    )
    for item in marked:
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
