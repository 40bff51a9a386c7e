"""Versions recorded in manifests and reports, read without importing the packages."""

from __future__ import annotations

from importlib import metadata

from edgec import __version__


def versions() -> dict[str, str]:
    def of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"edgec": __version__, "tvm": of("apache-tvm"), "tvm_ffi": of("apache-tvm-ffi")}
