"""Bundles and boards are untrusted input: every name a manifest gives is a plain file of the
bundle, validated once before anything runs, is read or is flashed; board files cannot smuggle
shell syntax; a probe board is really flashed, only with firmware linked for it, and with its
path quoted for OpenOCD's Tcl. Each hostile case is one line, exit 2, and runs nothing."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from edgec.cli import main
from edgec.manifest import Manifest
from edgec.stages.bundle import checksums
from tests.fake_bundles import mcu_bundle, trap, tvm_bundle

MPS2 = {"flash_origin": 0, "flash_bytes": 4_194_304, "ram_origin": 0x20000000}
L4R5 = {"flash_origin": 0x08000000, "flash_bytes": 2_097_152, "ram_origin": 0x20000000}


def _edgec(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def _one_line(result: Any, code: int = 2) -> str:
    errors = [x for x in result.stderr.splitlines() if x.startswith("edgec: ")]
    assert result.exit_code == code and len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def _outside(tmp_path: Path) -> Path:
    """A directory beside the bundle with an evil script and a file a manifest may point at."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.onnx").write_bytes(b"the user's own model")
    trap(base / "evil.sh", tmp_path / "RAN")
    return base


# (what the manifest is made to say, the words of the one-line refusal)
HOSTILE_MANIFESTS = [
    pytest.param({"runner": "edgec-run; touch X; ./edgec-run"}, "not a plain file name",
                 id="runner-shell-line"),
    pytest.param({"runner": "../evil.sh"}, "'../evil.sh' is not a plain file name",
                 id="runner-parent-dir"),
    pytest.param({"runner": "{base}/evil.sh"}, "is not a plain file name", id="runner-absolute"),
    pytest.param({"reference": "../base/model.onnx"}, "reference '../base/model.onnx'",
                 id="reference-parent-dir"),
    pytest.param({"reference": "{base}/model.onnx"}, "is not a plain file name",
                 id="reference-absolute"),
    pytest.param({"library": "-rf"}, "library '-rf' is not a plain file name",
                 id="library-option-lookalike"),
    pytest.param({"runner": "."}, "runner '.' is not a plain file name", id="runner-dot"),
    pytest.param({"runner": "edgec-run\u0000x"}, "is not a plain file name", id="runner-nul"),
    pytest.param({"runner": "other.sh"}, "'other.sh' is not in the bundle's checksummed files",
                 id="runner-not-checksummed"),
    pytest.param({"files": {"../x": "0" * 64}}, "file '../x' is not a plain file name",
                 id="files-parent-dir"),
    pytest.param({"target": "../../etc"}, "unknown target '../../etc'; known: ",
                 id="target-unknown"),
    pytest.param({"inputs": [{"name": "x", "shape": [-1], "dtype": "float32"}]},
                 "inputs tensor", id="inputs-negative-shape"),
    pytest.param({"outputs": "all"}, "outputs must be a non-empty list", id="outputs-not-a-list"),
    pytest.param({"runner": 7}, "runner 7 is not a plain file name", id="runner-not-a-string"),
    pytest.param({"static": True}, "static must be true only for a runner without a library",
                 id="static-with-a-library"),
    pytest.param({"static": "yes"}, "static must be true only", id="static-not-a-bool"),
    pytest.param({"tuning": {"kept": "fastest"}}, "kept build 'fastest'", id="tuning-kept-unknown"),
]  # fmt: skip


def _dead_ssh_board(tmp_path: Path) -> list[str]:
    """`flash --run` to an ssh board nobody answers for: a bundle refused first never tries."""
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "pi.toml").write_text(
        'name = "pi"\ntarget = "x86"\ntransport = "ssh"\n[ssh]\nhost = "127.0.0.1"\n'
        f'user = "pi"\nport = 1\nknown_hosts = "{tmp_path / "known_hosts"}"\n'
    )
    return ["--board", "pi", "--run", "--boards-dir", str(boards)]


@pytest.mark.parametrize("verb", ["run", "flash"])
@pytest.mark.parametrize(("changes", "message"), HOSTILE_MANIFESTS)
def test_a_hostile_manifest_is_refused_before_anything_runs(
    tmp_path: Path, changes: dict[str, Any], message: str, verb: str
) -> None:
    base = _outside(tmp_path)
    changes = {k: v.replace("{base}", str(base)) if isinstance(v, str) else v
               for k, v in changes.items()}  # fmt: skip
    bundle = tvm_bundle(tmp_path / "bundle", tmp_path / "RAN")
    (bundle / "other.sh").write_text("#!/bin/sh\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    extra = _dead_ssh_board(tmp_path) if verb == "flash" else []
    before = sorted(p.name for p in tmp_path.rglob("*"))
    line = _one_line(_edgec(verb, str(bundle), *extra))
    assert message in line, line
    assert not (tmp_path / "RAN").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_runner_linked_out_of_the_bundle_is_refused(tmp_path: Path) -> None:
    base = _outside(tmp_path)
    bundle = tvm_bundle(tmp_path / "bundle", tmp_path / "RAN")
    (bundle / "edgec-run").unlink()
    (bundle / "edgec-run").symlink_to(base / "evil.sh")
    line = _one_line(_edgec("run", str(bundle)))
    assert "runner 'edgec-run' is not a file in" in line
    assert not (tmp_path / "RAN").exists()


def test_a_manifest_that_is_not_an_object_is_one_line(tmp_path: Path) -> None:
    bundle = tvm_bundle(tmp_path / "bundle", tmp_path / "RAN")
    (bundle / "manifest.json").write_text("[1, 2]")
    assert "is not a JSON object" in _one_line(_edgec("run", str(bundle)))


HOSTILE_MCU_MANIFESTS = [
    pytest.param({"firmware": "../other.elf"}, "firmware '../other.elf' is not a plain file name",
                 id="firmware-parent-dir"),
    pytest.param({"library": ["model.c", "../../etc/passwd"]}, "library '../../etc/passwd'",
                 id="c-source-parent-dir"),
    pytest.param({"board": "../boards/x"}, "board '../boards/x' is not a board name",
                 id="board-path"),
    pytest.param({"expected_output": [0, 1000]}, "expected_output must be int8 values",
                 id="expected-output-out-of-range"),
    pytest.param({"layers": [{"name": "a"}]}, "layers must name each layer's op and MACs",
                 id="layers-malformed"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "message"), HOSTILE_MCU_MANIFESTS)
def test_a_hostile_firmware_manifest_is_refused_before_qemu_runs(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    changes = dict(changes)  # the table's dict stays as written
    bundle = mcu_bundle(tmp_path / "b", changes.pop("board", "mps2-an386"), MPS2, **changes)
    line = _one_line(_edgec("run", str(bundle), "--emulate"))
    assert message in line, line


def test_both_bundle_shapes_load_as_a_typed_manifest(tmp_path: Path) -> None:
    tvm = tvm_bundle(tmp_path / "tvm", tmp_path / "RAN")
    mcu = mcu_bundle(tmp_path / "mcu", "mps2-an386", MPS2)
    a = Manifest.from_json(json.loads((tvm / "manifest.json").read_text()), tvm)
    b = Manifest.from_json(json.loads((mcu / "manifest.json").read_text()), mcu)
    assert (a.runner, a.library, a.firmware) == ("edgec-run", "model.so", None)
    assert (b.runner, b.firmware, b.board) == (None, "firmware.elf", "mps2-an386")
    assert b.c_sources == ("model.c", "model.h", "edgec_nn.c", "edgec_nn.h")


HOSTILE_BOARDS = [
    pytest.param('[env]\n"A;rm" = "x"\n', "pi", "[env] key 'A;rm' is not a variable name",
                 id="env-key-semicolon"),
    pytest.param('[env]\n"A B" = "x"\n', "pi", "[env] key 'A B' is not a variable name",
                 id="env-key-space"),
    pytest.param('[env]\n"$(touch X)" = "x"\n', "pi", "is not a variable name",
                 id="env-key-subshell"),
    pytest.param("", "-oProxyCommand=touch X", "[ssh] user '-oProxyCommand=touch X' is not a",
                 id="ssh-user-option"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "user", "message"), HOSTILE_BOARDS)
def test_a_hostile_board_file_is_refused_at_load(
    tmp_path: Path, extra: str, user: str, message: str
) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "hostile.toml").write_text(
        'name = "hostile"\ntarget = "x86"\ntransport = "ssh"\n[ssh]\nhost = "127.0.0.1"\n'
        f"user = {json.dumps(user)}\n{extra}"
    )
    bundle = tvm_bundle(tmp_path / "bundle", tmp_path / "RAN")
    line = _one_line(
        _edgec("flash", str(bundle), "--board", "hostile", "--boards-dir", str(boards))
    )
    assert message in line, line
    assert not (tmp_path / "RAN").exists() and not Path("X").exists()


def _fake_probe(bin_dir: Path, name: str) -> Path:
    """A stand-in for the probe tool on PATH: it records its argv, one word per line."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / f"{name}.argv"
    tool = bin_dir / name
    tool.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "{log}"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return log


def _path_with(bin_dir: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


F746 = {"flash_origin": 0x08000000, "flash_bytes": 1_048_576, "ram_origin": 0x20000000}
PROBES = [
    pytest.param("nucleo-l4r5zi", "cortex-m4", L4R5, "openocd", "my bundles/digits l4",
                 ["-f", "board/st_nucleo_l4.cfg", "-c", "program {{elf}} verify reset exit"],
                 id="openocd-path-with-spaces-is-one-tcl-word"),
    pytest.param("nucleo-f746zg", "cortex-m7", F746, "pyocd", "my {bundles}/it's; digits",
                 ["flash", "--target", "stm32f746zgtx", "{elf}"],
                 id="pyocd-path-with-braces-is-one-argv-word"),
]  # fmt: skip


@pytest.mark.parametrize(("board", "target", "memory", "tool", "where", "expected"), PROBES)
def test_flash_without_run_runs_the_probe_with_the_elf_quoted(
    tmp_path: Path,
    board: str,
    target: str,
    memory: dict[str, int],
    tool: str,
    where: str,
    expected: list[str],
) -> None:
    bundle = mcu_bundle(tmp_path / where, board, memory, target=target)
    log = _fake_probe(tmp_path / "bin", tool)
    result = _edgec("flash", str(bundle), "--board", board, env=_path_with(tmp_path / "bin"))
    assert result.exit_code == 0, result.output
    elf = str((bundle / "firmware.elf").resolve())
    assert log.read_text().splitlines() == [w.replace("{elf}", elf) for w in expected]
    assert f"flashed with {tool}" in result.stderr


def test_flash_dry_run_says_so_and_runs_nothing(tmp_path: Path) -> None:
    bundle = mcu_bundle(tmp_path / "b", "nucleo-l4r5zi", L4R5)
    log = _fake_probe(tmp_path / "bin", "openocd")
    result = _edgec("flash", str(bundle), "--board", "nucleo-l4r5zi", "--dry-run",
                    env=_path_with(tmp_path / "bin"))  # fmt: skip
    assert result.exit_code == 0 and "dry run: openocd" in result.stderr, result.output
    assert not log.exists()


def test_flash_run_on_a_probe_board_never_shows_the_old_measurement(tmp_path: Path) -> None:
    bundle = mcu_bundle(tmp_path / "b", "nucleo-l4r5zi", L4R5)
    log = _fake_probe(tmp_path / "bin", "openocd")
    result = _edgec("flash", str(bundle), "--board", "nucleo-l4r5zi", "--run",
                    env=_path_with(tmp_path / "bin"))  # fmt: skip
    assert result.exit_code == 0 and log.exists(), result.output
    assert "reads no measurement back" in result.stderr
    assert "latency" not in result.stdout and "p50" not in result.stdout


HOSTILE_FLASHES = [
    pytest.param("mps2-an386", MPS2, "nucleo-l4r5zi",
                 "linked for mps2-an386 (flash at 0x0), not for nucleo-l4r5zi (flash at "
                 "0x8000000); rebuild with --target cortex-m4 --board nucleo-l4r5zi",
                 id="mps2-firmware-to-stm32"),
    pytest.param("nucleo-l4r5zi", L4R5, "mps2-an386", "not for mps2-an386 (flash at 0x0)",
                 id="stm32-firmware-to-mps2"),
]  # fmt: skip


@pytest.mark.parametrize(("linked", "memory", "board", "message"), HOSTILE_FLASHES)
def test_firmware_linked_for_another_memory_map_is_refused(
    tmp_path: Path, linked: str, memory: dict[str, int], board: str, message: str
) -> None:
    bundle = mcu_bundle(tmp_path / "b", linked, memory)
    log = _fake_probe(tmp_path / "bin", "openocd")
    line = _one_line(_edgec("flash", str(bundle), "--board", board, "--run",
                            env=_path_with(tmp_path / "bin")))  # fmt: skip
    assert message in line, line
    assert not log.exists()


@pytest.mark.parametrize(
    "name", ["a{b", "a}b", "a\\b"], ids=["open-brace", "close-brace", "backslash"]
)
def test_an_elf_path_tcl_cannot_quote_is_refused(tmp_path: Path, name: str) -> None:
    bundle = mcu_bundle(tmp_path / name / "b", "nucleo-l4r5zi", L4R5)
    log = _fake_probe(tmp_path / "bin", "openocd")
    line = _one_line(
        _edgec("flash", str(bundle), "--board", "nucleo-l4r5zi", env=_path_with(tmp_path / "bin"))
    )
    assert "OpenOCD's Tcl cannot take" in line, line
    assert not log.exists()


RESULT = {"latency_ms": dict.fromkeys(("p50", "p90", "p99", "mean", "min"), 1.0),
          "peak_rss_bytes": 1}  # fmt: skip
HOSTILE_REPLIES = [
    pytest.param([{"file": "../../evil.npy"}], "the runner named outputs '../../evil.npy'",
                 id="output-outside"),
    pytest.param([{"file": "/etc/passwd"}], "the runner named outputs '/etc/passwd'",
                 id="output-absolute"),
    pytest.param("x", "the runner's result line is not what edgec-run prints",
                 id="outputs-not-a-list"),
]  # fmt: skip


@pytest.mark.parametrize(("outputs", "message"), HOSTILE_REPLIES)
def test_edgec_run_reads_only_the_output_files_it_expects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outputs: Any, message: str
) -> None:
    host_tmp = tmp_path / "host" / "tmp"
    host_tmp.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(host_tmp))
    bundle = tvm_bundle(tmp_path / "bundle", tmp_path / "RAN")
    reply = json.dumps({**RESULT, "outputs": outputs})
    (bundle / "edgec-run").write_text(
        f"#!/bin/sh\necho x > {tmp_path}/host/evil.npy\necho '{reply}'\n"
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = checksums(bundle)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    line = _one_line(_edgec("run", str(bundle)))
    assert message in line, line
    assert list(host_tmp.iterdir()) == []  # its private temporary directory is gone
