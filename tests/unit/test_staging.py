from __future__ import annotations

from pathlib import Path

import pytest

from edgec.errors import EdgecError
from edgec.staging import staged_directory


def test_failed_block_leaves_no_output_and_no_temp_dir(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError), staged_directory(out) as work:
        (work / "model.so").write_text("half")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []


def test_success_replaces_an_earlier_bundle_whole(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "manifest.json").write_text('{"versions": {"edgec": "0.1.0"}, "files": {"old.so": ""}}')
    (out / "old.so").write_text("old")
    with staged_directory(out) as work:
        (work / "manifest.json").write_text('{"new": 1}')
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle.tar.gz"]


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(EdgecError, match="is not a bundle edgec wrote"), staged_directory(out):
        pass
    assert (out / "thesis.tex").exists()
