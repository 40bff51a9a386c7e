"""Write an output directory atomically: build in a hidden sibling, rename at the end."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgec.errors import EdgecError

MARKER = "manifest.json"  # what makes an existing directory an edgec bundle we may replace


def check_replaceable(out: Path) -> None:
    """Refuse to overwrite anything that is not an earlier edgec bundle."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise EdgecError(f"{out} exists and is not an edgec bundle; choose another -o or remove it")


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """Yield an empty directory that becomes `out` only if the block succeeds."""
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be shared and copied
    try:
        yield work
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    work.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def write_tarball(bundle: Path) -> Path:
    """BUNDLE.tar.gz beside the bundle directory, replaced atomically."""
    archive = bundle.with_name(bundle.name + ".tar.gz")
    partial = archive.with_name(f".{archive.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
    partial.replace(archive)
    return archive


def replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename."""
    replace_bytes(path, text.encode("utf-8"))


def replace_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and a rename."""
    if not path.parent.is_dir():
        raise EdgecError(f"cannot write {path}: {path.parent} is not a directory")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
