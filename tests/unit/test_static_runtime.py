"""The static runtime's build plan: which sources, in which compile units (no compiling here;
tests/integration/test_static_bundles.py builds and runs the result)."""

from __future__ import annotations

import pytest

from edgec import static_runtime


@pytest.mark.parametrize("cores", [1, 2, 3, 16], ids=lambda c: f"{c}-cores")
def test_every_source_is_compiled_once_in_order_in_about_one_unit_per_core(cores: int) -> None:
    sources = static_runtime._sources()
    units = static_runtime._units(sources, cores)
    for kind in ("runtime", "ffi"):
        listed = [path for k, path in sources if k == kind]
        assert [p for k, run in units if k == kind for p in run] == listed
    assert all(run for _, run in units) and len(units) <= cores + 1  # ffi gets at least one


def test_the_installed_wheels_hold_every_source_and_no_left_out_part_is_listed() -> None:
    names = [str(path) for _, path in static_runtime._sources()]
    assert len(names) == len(static_runtime.FFI_SOURCES) + len(static_runtime.RUNTIME_SOURCES)
    for left_out in ("kv_cache", "paged_kv", "lm_support", "disco", "rpc", "timer", "testing"):
        assert not any(left_out in name for name in names), left_out
