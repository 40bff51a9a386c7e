"""bundle: the files a backend built, checksummed under one manifest, in one directory."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgec.artifacts import Bundle
from edgec.errors import CheckFailed, EdgecError
from edgec.manifest import Manifest
from edgec.targets import TargetProfile
from edgec.versions import versions

MANIFEST = "manifest.json"
REPORTS = ("report.json", "report.md")  # rewritten by `edgec run`, so not checksummed


def bundle(directory: Path, manifest: Manifest, files: list[Path]) -> Bundle:
    """Seal `directory` as a bundle of exactly `files` (each already in it): their sha256 and
    `manifest` (its versions and files filled in here) go to manifest.json."""
    for path in files:
        if path.parent != directory or not path.is_file() or path.is_symlink():
            raise EdgecError(f"internal error: {path} is not a file of the bundle {directory}")
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}
    sealed = replace(manifest, versions=versions(), files=digests)
    data = sealed.to_json()
    (directory / MANIFEST).write_text(
        json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return Bundle(directory, data, Manifest.from_json(data, directory))


def checksums(directory: Path) -> dict[str, str]:
    """sha256 of every deployable file in the bundle."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        # a link could point anywhere: edgec never writes one, so it is no part of a bundle
        if p.is_file() and not p.is_symlink() and p.name not in (MANIFEST, *REPORTS)
    }


def open_bundle(path: Path) -> tuple[Bundle, TargetProfile]:
    """Read a bundle from disk, validate its manifest (edgec.manifest) and verify its
    checksums, before anything in it is run, read or copied."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise EdgecError(
            f"{path} is not an edgec bundle (no {MANIFEST}); build one with edgec build"
        )
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgecError(f"{manifest_path} is not valid JSON ({e}); rebuild the bundle") from None
    typed = Manifest.from_json(manifest, path)
    actual = checksums(path)
    for name, digest in typed.files.items():
        if actual.get(name) != digest:
            state = "missing" if name not in actual else "modified"
            raise CheckFailed(
                f"{path}/{name} is {state} (sha256 differs from the manifest); rebuild"
            )
    return Bundle(path, manifest, typed), typed.profile
