"""Static bundles: one aarch64 executable holding runner, model and TVM runtime, run under
qemu-aarch64 with no library prefix (android-arm64, or any aarch64 target with --static)."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgec.cli import main
from tests.conftest import EXAMPLE, ROOT, needs

pytestmark = [pytest.mark.integration, needs("qemu-aarch64", "aarch64-linux-gnu-g++")]
DIGITS = f"{ROOT / 'examples' / 'digits.py'}:make_model"
INT8 = ("--quantize", "int8", "--data", "digits", "--calib-samples", "32")

# (model, target, extra build flags): the test CNN in float, the digits CNN in int8 (sdot
# kernels), and an rpi4 bundle made static by the flag (Armv8.0, qemu -cpu cortex-a72).
CASES = {
    "android-arm64-float": (EXAMPLE, "android-arm64", ()),
    "android-arm64-int8": (DIGITS, "android-arm64", INT8),
    "rpi4-static-float": (EXAMPLE, "rpi4", ("--static",)),
}


def _edgec(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def static_bundle(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The bundle of one CASES entry, built (and run under qemu) once per module."""
    built: dict[str, Path] = {}

    def bundle(case: str) -> Path:
        if case not in built:
            model, target, flags = CASES[case]
            out = tmp_path_factory.mktemp(case) / case
            result = _edgec("build", model, "-t", target, *flags, "--repeat", "2", "-o", str(out))
            assert result.exit_code == 0, result.output
            built[case] = out
        return built[case]

    return bundle


def _program_headers(path: Path) -> set[int]:
    """The segment types of an ELF64 little-endian executable (3: INTERP, 2: DYNAMIC)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not an ELF64 LE file"
    assert struct.unpack_from("<H", data, 0x12)[0] == 183, "not an aarch64 executable"
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    size, count = struct.unpack_from("<HH", data, 0x36)
    return {struct.unpack_from("<I", data, phoff + i * size)[0] for i in range(count)}


@pytest.mark.parametrize("case", list(CASES))
def test_a_static_bundle_is_one_executable_with_no_loader_that_matches_onnx_runtime(
    static_bundle: Callable[[str], Path], case: str
) -> None:
    out = static_bundle(case)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["static"] is True and manifest["library"] is None
    assert manifest["runner"] == "edgec-run"
    assert not [f for f in manifest["files"] if f.endswith((".so", ".tar", ".o"))]
    segments = _program_headers(out / "edgec-run")
    assert 3 not in segments and 2 not in segments  # no INTERP, no DYNAMIC: nothing is loaded
    report = json.loads((out / "report.json").read_text())
    assert report["latency_ms"]["where"] == "emulated"  # the run in the build, under qemu
    assert report["parity"]["within_share"] >= manifest["parity"]["share"]
    if manifest["parity"]["tolerance"] < 1e-3:  # float: within 1e-4 of ONNX Runtime
        assert report["parity"]["max_abs_diff"] < 1e-4
    binary = report["bundle"]["binary"]
    assert report["bundle"]["static"] is True
    assert binary["total_bytes"] == (out / "edgec-run").stat().st_size
    parts = binary["runtime_bytes"] + binary["kernels_bytes"] + binary["weights_bytes"]
    assert parts == binary["total_bytes"] and min(binary.values()) > 0
    assert binary["runtime_bytes"] <= 3.5e6  # the goal for runner + runtime


def test_edgec_run_runs_a_static_bundle_under_qemu_with_no_library_prefix(
    static_bundle: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = static_bundle("rpi4-static-float")  # rpi4's profile alone sets QEMU_LD_PREFIX
    monkeypatch.delenv("QEMU_LD_PREFIX", raising=False)
    result = _edgec("run", str(out), "--emulate", "--repeat", "2")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["latency_ms"]["where"] == "emulated"
    assert report["parity"]["max_abs_diff"] < 1e-4


@pytest.mark.parametrize(
    ("target", "says"),
    [
        pytest.param("x86", "static executables are built for aarch64 Linux", id="x86"),
        pytest.param("cortex-m4", "its firmware is already static", id="cortex-m4"),
        pytest.param("cuda", "whose runtime is dynamic", id="cuda"),
    ],
)
def test_static_is_refused_in_one_line_where_it_cannot_apply(
    tmp_path: Path, target: str, says: str
) -> None:
    out = tmp_path / "out"
    result = _edgec("build", EXAMPLE, "-t", target, "--static", "-o", str(out))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("edgec: error: --static: ") and says in lines[-1]
    assert "Traceback" not in result.output and not out.exists()


def test_flashing_a_static_bundle_sends_one_executable_and_runs_it_without_a_model_path(
    static_bundle: Callable[[str], Path],
) -> None:
    out = static_bundle("rpi4-static-float")
    result = _edgec("flash", str(out), "--board", "rpi4", "--run", "--dry-run")
    assert result.exit_code == 0, result.output
    commands = result.output.splitlines()
    copy = next(line for line in commands if line.startswith("scp") and "edgec-run" in line)
    assert ".so" not in copy and "model.tar" not in copy
    assert any("&& ./edgec-run --input input_0.npy --output-dir out " in c for c in commands)
