from __future__ import annotations

import platform
from pathlib import Path

import pytest

from edgec.errors import EdgecError
from edgec.targets import all_targets, get_target, parse_profile, with_static


def test_every_shipped_profile_loads_with_a_backend_and_capabilities() -> None:
    from edgec.boards import get_board

    profiles = all_targets()
    assert {"x86", "rpi4", "cuda", "cortex-m4", "cortex-m7", "cortex-m0plus"} <= set(profiles)
    for p in profiles.values():
        if p.capabilities.backend == "tvm":
            assert p.tvm_target["kind"] in ("llvm", "cuda")
            assert p.capabilities.cores > 0 and p.capabilities.vector_bits in (128, 256, 512)
        else:
            assert p.board is not None and get_board(p.board).target == p.name
            assert p.capabilities.int8_only and any("-mcpu=" in f for f in p.cflags)


@pytest.mark.parametrize(
    ("name", "dsp", "fpu"),
    [("cortex-m4", True, True), ("cortex-m7", True, True), ("cortex-m0plus", False, False)],
)
def test_microcontroller_capabilities_follow_the_core(name: str, dsp: bool, fpu: bool) -> None:
    caps = get_target(name).capabilities
    assert (caps.has_dsp, caps.has_fpu, caps.backend) == (dsp, fpu, "c")


def test_rpi4_is_cross_compiled_cortex_a72_with_neon_and_emulated() -> None:
    p = get_target("rpi4")
    assert p.tvm_target == {
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mcpu": "cortex-a72",
        "mattr": ["+neon"],
        "num-cores": 4,
    }
    assert p.cxx == "aarch64-linux-gnu-g++"
    assert not p.capabilities.runs_on_host
    assert p.emulator is not None and p.emulator.command == ("qemu-aarch64", "-cpu", "cortex-a72")
    assert p.runtime_source == "wheel" and p.runtime_platform == "manylinux_2_28_aarch64"
    assert (p.capabilities.has_fp16, p.capabilities.int8_dot) == (False, "smull")  # Armv8.0-A


def test_rpi5_is_cortex_a76_with_dot_product_and_fp16_emulated_as_an_a76() -> None:
    p = get_target("rpi5")
    assert p.tvm_target["mcpu"] == "cortex-a76"
    assert {"+dotprod", "+fullfp16"} <= set(p.tvm_target["mattr"])
    assert (p.capabilities.has_fp16, p.capabilities.int8_dot) == (True, "sdot")
    assert p.emulator is not None and p.emulator.command == ("qemu-aarch64", "-cpu", "cortex-a76")


@pytest.mark.parametrize(
    ("name", "mcpu", "int8_dot", "fp16"),
    [
        pytest.param("android-arm64", "cortex-a76", "sdot", True, id="armv8.2-a"),
        pytest.param("android-arm64-v8a", "cortex-a53", "smull", False, id="armv8.0-a"),
    ],
)
def test_android_targets_are_static_executables_emulated_with_no_library_prefix(
    name: str, mcpu: str, int8_dot: str, fp16: bool
) -> None:
    p = get_target(name)
    assert p.capabilities.link == "static" and p.runtime_source == "none"
    assert (p.tvm_target["mtriple"], p.tvm_target["mcpu"]) == ("aarch64-linux-android", mcpu)
    assert (p.capabilities.int8_dot, p.capabilities.has_fp16) == (int8_dot, fp16)
    assert p.emulator is not None and p.emulator.command == ("qemu-aarch64", "-cpu", mcpu)
    assert p.emulator.env == {}  # nothing is loaded at run time: no QEMU_LD_PREFIX


def test_static_flag_makes_an_aarch64_linux_target_static_without_a_library_prefix() -> None:
    p = with_static(get_target("rpi5"), True)
    assert p.capabilities.link == "static" and p.emulator is not None and p.emulator.env == {}
    assert with_static(get_target("rpi5"), False) == get_target("rpi5")


def _cpuinfo() -> tuple[int, set[str]]:
    """Processors and the first one's feature flags, as /proc/cpuinfo lists them."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    processors = sum(1 for line in lines if line.startswith("processor"))
    flags = next(line for line in lines if line.startswith("flags")).split(":", 1)[1]
    return processors, set(flags.split())


@pytest.mark.skipif(
    platform.machine() != "x86_64" or not Path("/proc/cpuinfo").exists(),
    reason="the x86 profile resolves against an x86-64 Linux host's /proc/cpuinfo",
)
def test_x86_resolves_host_cores_and_vector_width() -> None:
    processors, flags = _cpuinfo()
    widest = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    p = get_target("x86")
    assert p.capabilities.runs_on_host and p.tvm_target["mcpu"] == "host"
    assert p.capabilities.cores == processors
    assert p.capabilities.vector_bits == widest
    assert p.capabilities.int8_dot == ("vnni" if "avx512_vnni" in flags else "none")
    pytest.importorskip("tvm")
    from edgec.relax.target import resolved_target

    resolved = resolved_target(p)
    assert resolved["num-cores"] == processors and resolved["mcpu"] not in ("host", "")


def test_unknown_target_error_lists_the_known_ones() -> None:
    with pytest.raises(
        EdgecError,
        match=r"unknown target 'rpi3'; known: android-arm64, android-arm64-v8a, cortex-m0plus, "
        r"cortex-m4, cortex-m7, cuda, jetson-orin, rpi4, rpi5, x86",
    ):
        get_target("rpi3")


VALID = """
name = "t"
[tvm]
target = { kind = "llvm" }
[toolchain]
cxx = "g++"
[runtime]
source = "installed"
[capabilities]
isa = "x86_64"
device = "cpu"
vector_bits = 256
cores = 2
runs_on_host = true
channel_multiple = 8
"""

BAD_PROFILES = [
    pytest.param(VALID.replace('kind = "llvm"', 'mcpu = "x"'), "needs a 'kind'", id="no-kind"),
    pytest.param(
        VALID.replace('device = "cpu"', 'device = "tpu"'), "device = 'tpu'", id="bad-device"
    ),
    pytest.param(VALID.replace("cores = 2", "cores = 0"), "cores must be", id="zero-cores"),
    pytest.param(
        VALID.replace('source = "installed"', 'source = "wheel"'),
        "needs 'platform'",
        id="wheel-no-platform",
    ),
    pytest.param(
        VALID.replace('[toolchain]\ncxx = "g++"', ""),
        "lacks the key 'toolchain'",
        id="no-toolchain",
    ),
    pytest.param("name = ", "not valid TOML", id="bad-toml"),
    pytest.param(
        VALID + 'link = "shared"\n', "link = 'shared'; expected one of", id="unknown-link"
    ),
    pytest.param(
        VALID + 'link = "static"\n', "static executables are built for aarch64", id="x86-static"
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_PROFILES)
def test_invalid_profile_is_rejected_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(EdgecError, match=message):
        parse_profile(path)


def test_valid_profile_parses(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(VALID)
    assert parse_profile(path).capabilities.vector_bits == 256


def test_every_targets_backend_has_the_five_functions_the_pipeline_calls() -> None:
    from edgec.backends import backend

    for profile in all_targets().values():
        module = backend(profile)
        for name in ("check", "preflight", "build", "unavailable", "run"):
            assert callable(getattr(module, name, None)), (profile.name, name)
