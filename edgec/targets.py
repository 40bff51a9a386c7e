"""Target profiles: validated TOML data in targets/, loaded into frozen dataclasses.

Code branches on a profile's capabilities (isa, device, vector_bits, runs_on_host, ...),
never on its name.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

from edgec.errors import EdgecError, known
from edgec.package_files import data_dir

Device = Literal["cpu", "cuda"]
RuntimeSource = Literal["installed", "wheel", "none"]
Backend = Literal["tvm", "c"]
# A CPU instruction that multiplies int8 vectors and sums each group of 4 products into int32
# lanes: "vnni" is x86 AVX-512 VNNI's vpdpbusd (uint8 x int8, 16 lanes), "sdot" Armv8.2-A's
# dot product (int8 x int8, 4 lanes), "smull" Armv8.0-A NEON's widening multiplies (int8 x int8
# to int16 with smull/smlal, pairs added into 4 int32 lanes with sadalp: 3 instructions).
Int8Dot = Literal["none", "vnni", "sdot", "smull"]
# How a TVM bundle's runner gets the model and the runtime: "dynamic" loads model.so and links
# the TVM runtime's shared libraries (glibc's dynamic loader); "static" is one executable that
# holds the model's objects, the runtime and libc (no loader: Android's adb shell, any Linux).
Link = Literal["dynamic", "static"]


@dataclass(frozen=True)
class Capabilities:
    """What the hardware can do; the compiler reads these, not the target's name."""

    isa: str
    device: Device
    vector_bits: int  # SIMD register width: 128 NEON, 256 AVX2, 512 AVX-512
    cores: int
    runs_on_host: bool  # the bundle's runner executes natively on this machine
    channel_multiple: int  # channel counts that fill whole vectors (pruning rounds to this)
    backend: Backend = "tvm"  # tvm: a TVM library + runner; c: edgec's C generator (MCUs)
    has_dsp: bool = False  # Armv7E-M DSP extension: SMLAD and friends for int8 dot products
    has_fpu: bool = False
    int8_only: bool = False  # no float kernels: the model must be quantized
    has_fp16: bool = False  # native half-precision arithmetic (CUDA, Armv8.2-A and later)
    int8_dot: Int8Dot = "none"  # int8 dot-product instruction the int8 kernels tensorize to
    vector_registers: int = 16  # SIMD registers a register tile may use (AArch64 NEON: 32)
    winograd: bool = False  # float32 3x3 stride-1 convs as Winograd F(2,3) (edgec.relax.winograd)
    link: Link = "dynamic"


@dataclass(frozen=True)
class Emulator:
    """A command prefix that runs the target's binaries on this host (timings are emulated)."""

    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetProfile:
    """One deployment target: how TVM compiles for it, how its runner is built, how it runs."""

    name: str
    description: str
    tvm_target: dict[str, Any]  # TVM 0.27 target as a JSON dict
    tvm_host: dict[str, Any] | None
    cxx: str  # C++ compiler for the native runner and for linking model.so
    runtime_source: RuntimeSource
    runtime_platform: str | None  # wheel platform tag when runtime_source == "wheel"
    emulator: Emulator | None
    capabilities: Capabilities
    path: Path
    cflags: tuple[str, ...] = ()  # c backend: the compiler flags for this core
    board: str | None = None  # c backend: the board the firmware is built and emulated for

    def __post_init__(self) -> None:
        if self.capabilities.backend == "c":
            if not self.cflags or self.board is None:
                raise EdgecError(f"target profile {self.path}: a c target needs cflags and board")
            return
        if "kind" not in self.tvm_target:
            raise EdgecError(f"target profile {self.path}: [tvm] target needs a 'kind'")
        if self.tvm_target["kind"] == "cuda":
            from edgec.gpu import CUDA_ARCHS

            arch = self.tvm_target.get("arch")
            if arch != "host" and arch not in CUDA_ARCHS:
                raise EdgecError(
                    f"target profile {self.path}: arch = {arch!r}; expected 'host' or one of "
                    f"{', '.join(CUDA_ARCHS)}"
                )
        if self.capabilities.link == "static" and (why := static_refused(self)) is not None:
            raise EdgecError(f"target profile {self.path}: link = 'static': {why}")
        if self.runtime_source == "wheel" and not self.runtime_platform:
            raise EdgecError(
                f"target profile {self.path}: [runtime] source = 'wheel' needs 'platform'"
            )


@cache
def _host_cpu_flags() -> frozenset[str]:
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    return frozenset(flags.split())


def _host_vector_bits() -> int:
    words = _host_cpu_flags()
    if "avx512f" in words:
        return 512
    if "avx2" in words:
        return 256
    return 128


def _int8_dot(caps: dict[str, Any], path: Path) -> Int8Dot:
    value = caps.get("int8_dot", "none")
    if value == "host":
        return "vnni" if "avx512_vnni" in _host_cpu_flags() else "none"
    if value not in ("none", "vnni", "sdot", "smull"):
        raise EdgecError(
            f"target profile {path}: int8_dot = {value!r}; expected none, vnni, sdot, smull or host"
        )
    return value  # type: ignore[no-any-return]


def _resolve(value: Any, host_value: int, what: str, path: Path) -> int:
    if value == "host":
        return host_value
    if isinstance(value, int) and value > 0:
        return value
    raise EdgecError(f"target profile {path}: {what} must be a positive integer or 'host'")


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...], path: Path) -> Any:
    value = table.get(key)
    if value not in choices:
        raise EdgecError(f"target profile {path}: {key} = {value!r}; expected one of {choices}")
    return value


def parse_profile(path: Path) -> TargetProfile:
    """Load and validate one target profile file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        tool, caps = data["toolchain"], data["capabilities"]
        backend = _choice(caps, "backend", ("tvm", "c"), path) if "backend" in caps else "tvm"
        tvm = data["tvm"] if backend == "tvm" else data.get("tvm", {"target": {}})
        runtime = data["runtime"] if backend == "tvm" else {"source": "none"}
        emulator = data.get("emulator")
        capabilities = Capabilities(
            isa=str(caps["isa"]),
            device=_choice(caps, "device", ("cpu", "cuda"), path),
            vector_bits=_resolve(caps["vector_bits"], _host_vector_bits(), "vector_bits", path),
            cores=_resolve(caps["cores"], os.cpu_count() or 1, "cores", path),
            runs_on_host=bool(caps["runs_on_host"]),
            channel_multiple=_resolve(caps["channel_multiple"], 1, "channel_multiple", path),
            backend=backend,
            has_dsp=bool(caps.get("has_dsp", False)),
            has_fpu=bool(caps.get("has_fpu", False)),
            int8_only=bool(caps.get("int8_only", False)),
            has_fp16=bool(caps.get("has_fp16", False)),
            int8_dot=_int8_dot(caps, path),
            vector_registers=int(caps.get("vector_registers", 16)),
            winograd=bool(caps.get("winograd", False)),
            link=_choice(caps, "link", ("dynamic", "static"), path)
            if "link" in caps
            else "dynamic",
        )
        return TargetProfile(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            tvm_target=dict(tvm["target"]),
            tvm_host=dict(tvm["host"]) if "host" in tvm else None,
            cxx=str(tool["cxx"]),
            runtime_source=_choice(runtime, "source", ("installed", "wheel", "none"), path),
            runtime_platform=runtime.get("platform"),
            emulator=Emulator(tuple(emulator["command"]), dict(emulator.get("env", {})))
            if emulator
            else None,
            capabilities=capabilities,
            path=path,
            cflags=tuple(str(f) for f in tool.get("cflags", ())),
            board=data.get("board"),
        )
    except tomllib.TOMLDecodeError as e:
        raise EdgecError(f"target profile {path} is not valid TOML: {e}") from None
    except KeyError as e:
        raise EdgecError(f"target profile {path} lacks the key {e.args[0]!r}") from None


@cache
def all_targets() -> dict[str, TargetProfile]:
    """Every profile in the package's targets/ directory, by name."""
    profiles = [parse_profile(p) for p in sorted(data_dir("targets").glob("*.toml"))]
    return {p.name: p for p in profiles}


def get_target(name: str) -> TargetProfile:
    """The profile called `name`; an unknown name's error lists the known ones."""
    targets = all_targets()
    if name not in targets:
        raise known("target", name, list(targets))
    return targets[name]


def static_refused(profile: TargetProfile) -> str | None:
    """Why `profile` cannot be linked into one static executable, or None if it can: the
    static runtime is compiled for aarch64 Linux CPUs (edgec.static_runtime)."""
    caps = profile.capabilities
    if caps.backend != "tvm":
        return f"{profile.name} is a microcontroller target: its firmware is already static"
    if caps.device != "cpu":
        return f"{profile.name} kernels run on a {caps.device} device, whose runtime is dynamic"
    if caps.isa != "aarch64":
        return (
            f"static executables are built for aarch64 Linux; {profile.name} ({caps.isa}) "
            "bundles use the installed runtime: drop --static, or pick an aarch64 target "
            "(android-arm64, rpi4, rpi5)"
        )
    return None


def with_static(profile: TargetProfile, static: bool) -> TargetProfile:
    """The profile linked as one static executable when `static` (--static); the emulator
    then runs it with no library prefix, since nothing is loaded at run time."""
    if not static or profile.capabilities.link == "static":
        return profile
    why = static_refused(profile)
    if why is not None:
        raise EdgecError(f"--static: {why}")
    emulator = profile.emulator and replace(profile.emulator, env={})
    return replace(
        profile,
        capabilities=replace(profile.capabilities, link="static"),
        emulator=emulator,
    )


def with_cuda_arch(profile: TargetProfile, arch: str | None) -> TargetProfile:
    """The profile with its GPU architecture decided: `arch` (--cuda-arch) if given, else the
    profile's own, where "host" is the GPU of this machine (sm_80 where there is none)."""
    if profile.capabilities.device != "cuda":
        if arch is not None:
            raise EdgecError(
                f"--cuda-arch applies to CUDA targets; {profile.name} is a "
                f"{profile.capabilities.device} target"
            )
        return profile
    from edgec import gpu

    chosen = gpu.check_arch(arch) if arch is not None else str(profile.tvm_target["arch"])
    if chosen == "host":
        chosen = gpu.host_arch()
    if chosen == profile.tvm_target["arch"]:
        return profile
    return replace(profile, tvm_target={**profile.tvm_target, "arch": chosen})
