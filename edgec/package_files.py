"""Find edgec's data directories (targets/, boards/, codegen/) in a checkout or a wheel."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory `name` shipped with edgec: inside the wheel, or at the checkout's root."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"edgec is installed without its {name}/ directory")


def cache_dir(*parts: str) -> Path:
    """A directory under edgec's cache ($EDGEC_CACHE_DIR, else $XDG_CACHE_HOME/edgec)."""
    root = (
        os.environ.get("EDGEC_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgec"
    )
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
