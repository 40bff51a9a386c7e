"""What a bundle needs beside model.so: the target's TVM runtime libraries, the native runner
and the C API (libedgec_model.so/.a, its header and an example program).

All are built or fetched once per target and cached; builds copy from the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import EdgecError
from edgec.package_files import cache_dir, data_dir
from edgec.targets import TargetProfile

if TYPE_CHECKING:
    from edgec.manifest import Manifest

RUNTIME_LIBS = ("libtvm_ffi.so", "libtvm_runtime.so")
# GPU bundles also carry TVM's CUDA device API, which edgec-run dlopen()s, and the CUDA runtime
# it links (libcudart.so.13, redistributable); the driver's libcuda.so.1 is the machine's own.
CUDA_LIBS = ("libtvm_runtime_cuda.so", "libcudart.so.13")
# The wheels whose runtime libraries a bundle ships; apache-tvm-ffi must match the host's pin.
WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1")
CUDA_WHEEL = "nvidia-cuda-runtime==13.0.96"  # libcudart.so.13, the major TVM's wheels link
RUNNER = "edgec-run"
# Under codegen/: the C API is compiled once (as position-independent code) into the runner,
# the shared library and the archive alike; the runner is a user of the API.
CAPI_SOURCES = ("capi/edgec_model.cc",)
RUNNER_SOURCES = ("runner/edgec_run.cc", *CAPI_SOURCES)
CAPI_HEADER = "capi/edgec_model.h"
CAPI_EXAMPLE = "capi/example.c"
CAPI_LIBS = ("libedgec_model.so", "libedgec_model.a")
RUNNER_FLAGS = ("-O2", "-std=c++17", "-Wall", "-Wextra")  # every link: dynamic and static
WARMUP = 3  # untimed runs before the timed ones
# glibc's tunable for transparent huge pages under malloc's large blocks; edgec-run sets it for
# itself on x86-64 (codegen/runner/edgec_run.cc), and so do edgec's other timed host processes.
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"


def with_huge_pages(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process whose malloc backs its large blocks with transparent huge pages, as
    edgec-run's does: GLIBC_TUNABLES gains glibc.malloc.hugetlb=1 unless it already names it
    (a user's =0 stays)."""
    now = env.get("GLIBC_TUNABLES", "")
    if HUGE_PAGES_TUNABLE in now:
        return dict(env)
    return {**env, "GLIBC_TUNABLES": ":".join(filter(None, [now, f"{HUGE_PAGES_TUNABLE}=1"]))}


def runner_like(env: dict[str, str]) -> dict[str, str]:
    """`env` for a host process that times models as edgec-run runs them: malloc on huge pages
    (with_huge_pages) and TVM's threads not pinned to cores (the C API's default, which a
    user's TVM_BIND_THREADS overrides)."""
    return {"TVM_BIND_THREADS": "0", **with_huge_pages(env)}


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locates without importing (tvm takes seconds)
    if spec is None or spec.origin is None:
        raise EdgecError(f"the Python package {name} is not installed; run scripts/setup.sh")
    return Path(spec.origin).parent


def ffi_include_dir() -> Path:
    return package_dir("tvm_ffi") / "include"


def runtime_names(profile: TargetProfile) -> tuple[str, ...]:
    """The runtime libraries a bundle for `profile` ships beside its runner."""
    return RUNTIME_LIBS + (CUDA_LIBS if profile.capabilities.device == "cuda" else ())


def runtime_libs(profile: TargetProfile) -> Path:
    """A directory holding the target's runtime libraries (runtime_names)."""
    names = runtime_names(profile)
    if profile.runtime_source == "installed":
        libs = cache_dir("runtime", "installed")
        for lib in names:
            source = _installed_lib(lib)
            target = libs / lib
            if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
                shutil.copy2(source, target)
        return libs
    assert profile.runtime_platform is not None
    libs = cache_dir("runtime") / profile.runtime_platform
    if all((libs / lib).exists() for lib in names):
        return libs
    _download_runtime(profile.runtime_platform, libs, names)
    return libs


def _installed_lib(lib: str) -> Path:
    """Where this machine's copy of a runtime library is: the installed wheels', or for
    libcudart the CUDA toolkit's (the one whose nvcc builds the kernels)."""
    if lib == "libcudart.so.13":
        nvcc = shutil.which("nvcc")
        toolkits = [Path(nvcc).resolve().parent.parent] if nvcc else []
        toolkits += [Path(p) for p in (os.environ.get("CUDA_HOME"), "/usr/local/cuda") if p]
        for toolkit in toolkits:
            for candidate in (toolkit / "lib64" / lib, toolkit / "targets/x86_64-linux/lib" / lib):
                if candidate.is_file():
                    return candidate
        raise EdgecError(
            f"{lib} is in no CUDA toolkit here ({', '.join(map(str, toolkits))}): CUDA bundles "
            "need CUDA 13's nvcc and runtime (install the CUDA 13 toolkit, or set CUDA_HOME)"
        )
    package = "tvm_ffi" if lib == "libtvm_ffi.so" else "tvm"
    return package_dir(package) / "lib" / lib


def _download_runtime(platform: str, libs: Path, names: tuple[str, ...]) -> None:
    """Fetch the official wheels for `platform` once and keep only the runtime libraries."""
    wheels = [*WHEELS, *([CUDA_WHEEL] if set(CUDA_LIBS) <= set(names) else [])]
    # NVIDIA's wheels are tagged manylinux2014 (glibc 2.17), TVM's manylinux_2_28: pip takes
    # a --platform literally, so both are given.
    arch = "x86_64" if platform.endswith("x86_64") else platform.rsplit("_", 1)[-1]
    with tempfile.TemporaryDirectory(prefix="edgec-wheels-") as tmp:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            platform,
            "--platform",
            f"manylinux2014_{arch}",
            "--python-version",
            version,
            "-d",
            tmp,
            *wheels,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgecError(f"downloading the TVM runtime for {platform} failed: {last}")
        staging = Path(tmp) / "libs"
        staging.mkdir()
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                for member in zf.namelist():
                    if Path(member).name in names and "/lib/" in member:
                        (staging / Path(member).name).write_bytes(zf.read(member))
        missing = [lib for lib in names if not (staging / lib).exists()]
        if missing:
            raise EdgecError(f"the {platform} wheels lack {', '.join(missing)}")
        libs.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)


def runner_arguments(
    library: str | None,
    inputs: list[str],
    output_dir: str,
    repeat: int,
    warmup: int,
    device: str = "cpu",
) -> list[str]:
    """The runner's arguments after its own path: how edgec-run is called, here or on a board.
    `device` is the profile's device capability; the runner's default is the CPU. A static
    executable holds its model: no library is given."""
    words = [] if library is None else [library]
    for path in inputs:
        words += ["--input", path]
    return [
        *words,
        "--output-dir", output_dir,
        "--repeat", str(repeat),
        "--warmup", str(warmup),
        *(["--device", device] if device != "cpu" else []),
    ]  # fmt: skip


def output_files(manifest: Manifest) -> list[str]:
    """The files the runner writes, one per output: edgec reads these names and no others."""
    return [f"output_{i}.npy" for i in range(len(manifest.outputs))]


def runner_result(stdout: str, outputs: int) -> dict[str, Any]:
    """The runner's last line (JSON), checked: it names exactly the output files edgec
    expects, so a runner or board cannot make edgec read or write a path of its choosing."""
    try:
        result = json.loads((stdout.strip().splitlines() or [""])[-1])
        files = [o["file"] for o in result["outputs"]]
        latency = {k: float(result["latency_ms"][k]) for k in ("p50", "p90", "p99", "mean", "min")}
        int(result["peak_rss_bytes"])
        if "device" in result:  # GPU runs: the device's memory beside the host's
            int(result["device"]["memory_bytes"])
    except (ValueError, KeyError, TypeError):
        raise EdgecError(
            "the runner's result line is not what edgec-run prints; rebuild the bundle"
        ) from None
    expected = [f"output_{i}.npy" for i in range(outputs)]
    if files != expected:
        shown = ", ".join(map(repr, files))[:120]
        raise EdgecError(
            f"the runner named outputs {shown}; edgec reads only {', '.join(expected)}: "
            "rebuild the bundle"
        )
    return {**result, "latency_ms": latency}


def runner(profile: TargetProfile) -> Path:
    """The native runner compiled for the target (see native)."""
    return native(profile) / RUNNER


def capi_files(profile: TargetProfile) -> list[Path]:
    """What a bundle ships for embedding the model: the C API's libraries, built for the target
    (see native), its header and the example program."""
    built = native(profile)
    codegen = data_dir("codegen")
    return [*(built / lib for lib in CAPI_LIBS), codegen / CAPI_HEADER, codegen / CAPI_EXAMPLE]


def native(profile: TargetProfile) -> Path:
    """A directory holding the runner and the C API libraries compiled for the target, built
    once per (sources, compiler, runtime): every later build copies them."""
    codegen = data_dir("codegen")
    sources = runner_sources()
    libs = runtime_libs(profile)
    flags = [*RUNNER_FLAGS, "-fPIC"]
    key = hashlib.sha256()
    for source in [*sources, codegen / CAPI_HEADER]:
        key.update(source.read_bytes())
    key.update(" ".join([profile.cxx, *flags]).encode())
    for lib in RUNTIME_LIBS:
        key.update(hashlib.sha256((libs / lib).read_bytes()).digest())
    parent = cache_dir("runner")
    out_dir = parent / f"{profile.name}-{key.hexdigest()[:16]}"
    products = [RUNNER, *CAPI_LIBS]
    if all((out_dir / name).is_file() for name in products):
        return out_dir
    if shutil.which(profile.cxx) is None:
        raise EdgecError(
            f"the {profile.name} C++ compiler {profile.cxx} is not installed; run scripts/setup.sh"
        )
    # Built aside and renamed into place whole: a reader sees all of it or none.
    with tempfile.TemporaryDirectory(prefix=".building-", dir=parent) as tmp:
        staging = Path(tmp) / "out"
        staging.mkdir()
        _compile_native(profile, flags, sources, libs, staging)
        shutil.rmtree(out_dir, ignore_errors=True)  # an incomplete one, of edgec's own cache
        try:
            staging.rename(out_dir)
        except OSError:  # another edgec finished the same build first
            if not all((out_dir / name).is_file() for name in products):
                raise
    return out_dir


def _compile_native(
    profile: TargetProfile, flags: list[str], sources: list[Path], libs: Path, out: Path
) -> None:
    """Each source to an object once (side by side: each takes seconds of the tvm_ffi
    headers), then the runner, libedgec_model.so and .a from those objects."""
    objects = [out / f"{source.stem}.o" for source in sources]
    include = ["-isystem", str(ffi_include_dir())]
    compiles = [
        [profile.cxx, *flags, *include, "-c", str(source), "-o", str(obj)]
        for source, obj in zip(sources, objects, strict=True)
    ]
    with ThreadPoolExecutor(max_workers=len(compiles)) as pool:
        list(pool.map(lambda cmd: _tool(profile, cmd, "the runner"), compiles))  # raises
    capi = objects[len(sources) - len(CAPI_SOURCES) :]
    link = [
        "-L",
        str(libs),
        "-Wl,--no-as-needed",  # nothing calls libtvm_runtime: its initialisers register the VM
        "-ltvm_ffi",
        "-ltvm_runtime",
        "-Wl,--as-needed",
        "-Wl,-rpath,$ORIGIN",
        "-lpthread",
        "-ldl",
    ]
    _tool(profile, [profile.cxx, *map(str, objects), "-o", str(out / RUNNER), *link], "the runner")
    so = [profile.cxx, "-shared", *map(str, capi), "-o", str(out / CAPI_LIBS[0]), *link]
    _tool(profile, so, "libedgec_model.so")
    archive = [binutil(profile, "ar"), "rcs", str(out / CAPI_LIBS[1]), *map(str, capi)]
    _tool(profile, archive, "the API")
    for obj in objects:
        obj.unlink()


def binutil(profile: TargetProfile, name: str) -> str:
    """A binutils program of the profile's toolchain: aarch64-linux-gnu-g++ → -ar, -strip."""
    prefix = profile.cxx.removesuffix("g++").removesuffix("c++")
    tool = f"{prefix}{name}"
    if shutil.which(tool) is None:
        raise EdgecError(f"{tool} is not installed (binutils of {profile.cxx}); run setup.sh")
    return tool


def runner_sources() -> list[Path]:
    """The runner's C/C++ sources (RUNNER_SOURCES), for the dynamic and the static link."""
    return [data_dir("codegen") / source for source in RUNNER_SOURCES]


def _tool(profile: TargetProfile, cmd: list[str], what: str) -> None:
    compile_or_fail(cmd, f"building {what} for {profile.name} with {cmd[0]}")


def compile_or_fail(cmd: list[str], what: str) -> None:
    """Run a compiler command; its first error line, if it fails, is the one-line message."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        first = next(
            (line for line in lines if "error" in line), lines[0] if lines else "no output"
        )
        raise EdgecError(f"{what} failed: {first}")
