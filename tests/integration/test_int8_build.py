"""int8 builds: integer kernels in the built module, bit-exact with the numpy reference and
across targets (x86 natively, rpi4 under qemu-aarch64), parity with ONNX Runtime's QDQ run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgec import int8
from edgec.cli import main
from edgec.targets import get_target
from tests.conftest import ROOT, needs

pytestmark = pytest.mark.integration
DIGITS = f"{ROOT / 'examples' / 'digits.py'}:make_model"


def _build(out: Path, target: str, *extra: str) -> dict:
    args = ["build", DIGITS, "-t", target, "--quantize", "int8", "--data", "digits"]
    result = CliRunner().invoke(main, [*args, *extra, "-o", str(out), "--calib-samples", "64"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def x86_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "digits-x86"
    _build(out, "x86", "--repeat", "5")
    return out


def test_int8_build_runs_integer_kernels_and_keeps_accuracy(x86_int8: Path) -> None:
    report = json.loads((x86_int8 / "report.json").read_text())
    quant = report["quantization"]
    assert quant["int8_ops"] == 9 and quant["float_ops"] == 0 and not quant["float_layers"]
    assert quant["relax_contractions"] == {"int8": 7, "float": 0}  # 6 convs and the dense
    # on AVX-512 VNNI: all but the depthwise conv on vpdpbusd (the 10-class dense too: padded)
    vnni = get_target("x86").capabilities.int8_dot == "vnni"
    assert report["schedules"]["int8_dot"] == (6 if vnni else 0)
    assert quant["accuracy"]["int8"] >= quant["accuracy"]["fp32"] - 1.0
    assert quant["weight_bytes"] <= 0.3 * quant["float_weight_bytes"]
    assert report["parity"]["ok"] and report["parity"]["within_share"] >= 0.99
    stages = {s["name"]: s for s in report["stages"]}
    assert stages["quantize"]["size_bytes"] == quant["weight_bytes"]
    manifest = json.loads((x86_int8 / "manifest.json").read_text())
    assert manifest["reference"] == "model.qdq.onnx" and manifest["parity"]["share"] == 0.99


@pytest.fixture(scope="module")
def x86_int8_tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tuned int8 build (9 trials) and its tuning database."""
    tmp = tmp_path_factory.mktemp("int8-tuned")
    _build(tmp / "a", "x86", "--tune", "9", "--tuning-db", str(tmp / "db"), "--repeat", "2")
    return tmp / "a", tmp / "db"


def test_a_tuned_int8_build_reuses_its_database_in_the_next_build(
    x86_int8_tuned: tuple[Path, Path], tmp_path: Path
) -> None:
    # the records name edgec's dot-product intrinsic: a new process must know it to read them
    bundle, db = x86_int8_tuned
    first = json.loads((bundle / "report.json").read_text())
    args = ["build", DIGITS, "-t", "x86", "--quantize", "int8", "--data", "digits", "--tune", "9",
            "--tuning-db", str(db), "--calib-samples", "64", "-o", str(tmp_path / "b")]  # fmt: skip
    second = subprocess.run([sys.executable, "-m", "edgec", *args], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "0 tuned, 9 from the database" in second.stdout + second.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["schedules"]["int8_dot"] == first["schedules"]["int8_dot"]
    assert report["parity"]["max_abs_diff"] == 0.0


def test_a_tuned_build_records_itself_timed_against_the_untuned_build(
    x86_int8_tuned: tuple[Path, Path],
) -> None:
    bundle, _ = x86_int8_tuned
    report = json.loads((bundle / "report.json").read_text())
    check = report["tuning"]["check"]
    assert check == json.loads((bundle / "manifest.json").read_text())["tuning"]
    assert check["tuned_ms"] > 0 and check["untuned_ms"] > 0
    assert check["kept"] == ("tuned" if check["tuned_ms"] < check["untuned_ms"] else "untuned")
    # the bundle holds the kept build: its kernels are tuned ones only if it is the tuned build
    assert (report["schedules"]["tuned"] > 0) == (check["kept"] == "tuned")
    assert report["parity"]["ok"]
    assert "tune check" in [s["name"] for s in report["stages"]]
    assert f"kept the {check['kept']} build" in (bundle / "report.md").read_text()
    assert not [p for p in bundle.iterdir() if p.name.startswith("edgec-untuned")]


def _runner_output(bundle: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    profile = get_target(json.loads((bundle / "manifest.json").read_text())["target"])
    prefix, env = [], dict(os.environ)
    if profile.emulator is not None:
        prefix = list(profile.emulator.command)
        env.update(profile.emulator.env)
    np.save(tmp / "x.npy", x)
    cmd = [*prefix, str(bundle / "edgec-run"), str(bundle / "model.so"), "--input",
           str(tmp / "x.npy"), "--output-dir", str(tmp), "--repeat", "1"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return np.load(tmp / "output_0.npy")


@pytest.fixture(scope="module")
def arm_int8(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The digits int8 bundle for an Arm target, built once per module."""
    built: dict[str, Path] = {}

    def bundle(target: str) -> Path:
        if target not in built:
            out = tmp_path_factory.mktemp(f"int8-{target}") / f"digits-{target}"
            _build(out, target, "--no-measure")
            built[target] = out
        return built[target]

    return bundle


def _count(objdump: str, library: Path, mnemonic: str) -> int:
    """How many times `mnemonic` occurs in the library's disassembly."""
    done = subprocess.run([objdump, "-d", str(library)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    fields = [line.split("\t") for line in done.stdout.splitlines()]  # address, bytes, insn
    return sum(1 for f in fields if len(f) > 2 and f[2].split()[:1] == [mnemonic])


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
@pytest.mark.parametrize(
    ("target", "dot_kernels"),
    [
        pytest.param("rpi4", 6, id="rpi4-a72-smull-sadalp"),  # Armv8.0: no dot product
        pytest.param("rpi5", 6, id="rpi5-a76-sdot"),  # qemu -cpu cortex-a76 runs sdot
    ],
)
def test_arm_int8_bundle_matches_x86_bit_for_bit(
    x86_int8: Path,
    arm_int8: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
    target: str,
    dot_kernels: int,
) -> None:
    arm = arm_int8(target)
    report = json.loads((arm / "report.json").read_text())
    assert report["quantization"]["int8_ops"] == 9
    assert report["schedules"]["int8_dot"] == dot_kernels
    x = np.random.default_rng(3).standard_normal((1, 1, 32, 32)).astype(np.float32)
    on_x86 = _runner_output(x86_int8, x, tmp_path_factory.mktemp("a"))
    on_arm = _runner_output(arm, x, tmp_path_factory.mktemp("b"))
    assert np.array_equal(on_x86, on_arm)


# (target, sdot instructions in its model.so): docs/quantization.md's "291 sdot" is this count
# (288 in the convolutions, 3 in the 10-class dense: 1 row x 3 vectors of 4 lanes)
SDOT_COUNTS = [
    pytest.param("rpi4", 0, id="rpi4-a72-none"),
    pytest.param("rpi5", 291, id="rpi5-a76-291"),
]


@needs("aarch64-linux-gnu-objdump", "aarch64-linux-gnu-g++")
@pytest.mark.parametrize(("target", "sdot"), SDOT_COUNTS)
def test_arm_int8_library_holds_the_sdot_instructions_the_readme_counts(
    arm_int8: Callable[[str], Path], target: str, sdot: int
) -> None:
    assert _count("aarch64-linux-gnu-objdump", arm_int8(target) / "model.so", "sdot") == sdot


@needs("objdump")
def test_x86_int8_library_runs_its_dot_kernels_on_vpdpbusd(x86_int8: Path) -> None:
    if get_target("x86").capabilities.int8_dot != "vnni":
        pytest.skip("this host has no avx512_vnni: the x86 build uses no vpdpbusd")
    dot_kernels = json.loads((x86_int8 / "report.json").read_text())["schedules"]["int8_dot"]
    # a register tile is 8 rows x 2 vectors: at least 16 vpdpbusd per dot kernel (seen: 288)
    assert _count("objdump", x86_int8 / "model.so", "vpdpbusd") >= 16 * dot_kernels > 0


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
def test_an_sdot_bundle_faults_on_a_core_without_dot_product(
    arm_int8: Callable[[str], Path], tmp_path: Path
) -> None:
    bundle = arm_int8("rpi5")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 32, 32), np.float32))
    env = {**os.environ, **get_target("rpi5").emulator.env}  # type: ignore[union-attr]
    run = [str(bundle / "edgec-run"), str(bundle / "model.so"), "--input", str(tmp_path / "x.npy"),
           "--output-dir", str(tmp_path), "--repeat", "1", "--warmup", "0"]  # fmt: skip
    on_a76 = subprocess.run(["qemu-aarch64", "-cpu", "cortex-a76", *run], env=env)
    on_a72 = subprocess.run(["qemu-aarch64", "-cpu", "cortex-a72", *run], env=env)
    assert on_a76.returncode == 0
    # qemu-user kills the guest with the signal: SIGILL, illegal instruction (seen: exit 132)
    assert on_a72.returncode in (-4, 128 + 4), on_a72.returncode


def test_tvm_int8_kernels_match_the_numpy_reference_bit_for_bit(tmp_path: Path) -> None:
    import tvm
    from tvm import relax

    from edgec.relax.compile import compile_model
    from edgec.relax.lower_int8 import import_qgraph
    from edgec.stages.quantize import QuantizeConfig, quantize
    from tests.unit.test_quantize import _cnn

    model = _cnn(tmp_path / "model.onnx")  # conv, relu6, add, depthwise, maxpool, pools, dense
    calibration = np.random.default_rng(0).standard_normal((32, 1, 16, 16)).astype(np.float32)
    quantized = quantize(model, calibration, QuantizeConfig(sensitivity=None))
    built = compile_model(import_qgraph(quantized), get_target("x86"), tmp_path)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(built.library)), tvm.cpu())
    x = np.random.default_rng(5).standard_normal((8, 1, 1, 16, 16)).astype(np.float32)
    got = np.stack([vm["main"](tvm.runtime.tensor(s)).numpy() for s in x])
    want = np.stack([int8.run(quantized.graph, [s])[0] for s in x])
    assert np.array_equal(got, want)
    assert not built.schedules["unscheduled"]


@needs("qemu-aarch64", "aarch64-linux-gnu-g++")
@pytest.mark.parametrize(
    ("target", "dot_kernels"),
    [
        pytest.param("rpi4", 3, id="rpi4-a72-smull-sadalp"),  # Armv8.0: no dot product
        pytest.param("rpi5", 3, id="rpi5-a76-sdot"),
    ],
)
def test_arm_int8_kernels_match_the_numpy_reference_bit_for_bit(
    tmp_path: Path, target: str, dot_kernels: int
) -> None:
    from edgec.backends import Model
    from edgec.backends.tvm import seal
    from edgec.relax.compile import compile_model
    from edgec.relax.lower_int8 import import_qgraph
    from edgec.stages.quantize import QuantizeConfig, quantize
    from tests.unit.test_quantize import _cnn

    # two convs on the instruction (1->8 gathered, 8->8) and the dense classifier
    model = _cnn(tmp_path / "model.onnx")
    calibration = np.random.default_rng(0).standard_normal((32, 1, 16, 16)).astype(np.float32)
    quantized = quantize(model, calibration, QuantizeConfig(sensitivity=None))
    built = compile_model(import_qgraph(quantized), get_target(target), tmp_path)
    assert built.schedules["int8_dot"] == dot_kernels
    # the residual add a + b(a) rescales in int32 (fixed_point.add_int32_form), not int64
    assert b"add_int32" in built.library.read_bytes()
    seal(Model(quantized.onnx, quantized), built, tmp_path)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 1, 16, 16)).astype(np.float32)
        got = _runner_output(tmp_path, x, tmp_path)
        assert np.array_equal(got, int8.run(quantized.graph, [x])[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param([DIGITS], "--quantize int8 needs calibration data", id="no-calib-data"),
        pytest.param(
            [DIGITS, "--calib-data", "digits", "--calib-method", "mse"],
            "unknown calibration method 'mse'",
            id="method",
        ),
    ],
)
def test_bad_int8_input_is_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["build", *args, "-t", "x86", "--quantize", "int8", "-o", str(out)]
    )
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len([line for line in result.stderr.splitlines() if line.startswith("edgec: ")]) == 1
    assert not out.exists()


def test_quantize_command_writes_a_qdq_model_onnxruntime_runs(tmp_path: Path) -> None:
    from edgec import reference

    out = tmp_path / "digits.int8.onnx"
    args = ["quantize", DIGITS, "--calib-data", "digits", "--calib-samples", "32", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| /classifier/Gemm |" in result.stdout and "int8" in result.stdout
    calibration = json.loads((tmp_path / "digits.int8.calibration.json").read_text())
    assert calibration["method"] == "percentile" and calibration["scales"]
    x = np.zeros((1, 1, 32, 32), np.float32)
    assert reference.run(out, [x])[0].shape == (1, 10)


def test_int8_bundle_keeps_its_calibration(x86_int8: Path) -> None:
    calibration = json.loads((x86_int8 / "calibration.json").read_text())
    assert set(calibration) >= {"method", "ranges", "scales", "sensitivity", "float_layers"}
    assert "calibration.json" in json.loads((x86_int8 / "manifest.json").read_text())["files"]
