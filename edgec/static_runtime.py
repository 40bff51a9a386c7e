"""One static executable: the model's objects, the runner and the TVM runtime, no loader needed.

The TVM runtime has no static library in its wheels, but its C++ sources are inside them
(tvm/src/runtime, tvm_ffi/src). edgec compiles the part a model needs into libtvm_ffi.a and
libtvm_runtime.a with the target's compiler, plus the few headers the wheels lack
(codegen/static_runtime/compat, edgec's own), once per (compiler, flags, wheel versions); then
each build links the model's system-library objects, the runner compiled with
-DEDGEC_SYSTEM_LIB and the two archives with -static. Nothing is dlopen()ed at run time, so the
file runs under Android's adb shell and on any aarch64 Linux, whatever its libc.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edgec import runtime
from edgec.errors import EdgecError
from edgec.package_files import cache_dir, data_dir
from edgec.staging import replace_written
from edgec.targets import TargetProfile

ARCHIVES = ("libtvm_runtime.a", "libtvm_ffi.a")
# tvm_ffi/src/ffi: objects, functions, errors, tensors, modules and the system library. Left
# out: structural equality/hashing, dataclasses, reflection extras, serialization, testing and
# dlopen()ed libraries (a static executable loads none).
FFI_SOURCES = (
    "function.cc",
    "backtrace.cc",
    "init_once.cc",
    "dtype.cc",
    "object.cc",
    "tensor.cc",
    "error.cc",
    "custom_allocator.cc",
    "container.cc",
    "extra/env_c_api.cc",
    "extra/env_context.cc",
    "extra/module.cc",
    "extra/library_module.cc",
    "extra/library_module_system_lib.cc",
    "extra/json_parser.cc",  # file_utils.cc reads a library's function metadata with it
)
# tvm/src/runtime: the CPU device, memory, threads and the Relax VM. Left out: LLM support
# (KV caches, attention, RNN state, tensor cache), disco, RPC, profiling, contrib libraries,
# const-loader and static-library modules (BYOC), other devices.
RUNTIME_SOURCES = (
    "device_api.cc",
    "cpu_device_api.cc",
    "tensor.cc",
    "module.cc",
    "thread_pool.cc",
    "threading_backend.cc",
    "file_utils.cc",
    "workspace_pool.cc",
    "logging.cc",
    "memory/memory_manager.cc",
    "vm/builtin.cc",
    "vm/bytecode.cc",
    "vm/executable.cc",
    "vm/vm.cc",
)
WHEELS = ("apache-tvm", "apache-tvm-ffi")
FLAGS = (
    "-std=c++17",
    "-O2",
    "-DNDEBUG",
    "-ffunction-sections",  # with --gc-sections, what no registered function reaches goes
    "-fdata-sections",
    "-DTVM_FFI_USE_LIBBACKTRACE=0",  # libbacktrace's sources are not in the wheel
    "-DTVM_FFI_BACKTRACE_ON_SEGFAULT=0",
)


@dataclass(frozen=True)
class Executable:
    """A linked static executable and where its bytes go (from its objects' sections)."""

    path: Path
    total_bytes: int  # the stripped file
    kernels_bytes: int  # the model's compiled kernels
    weights_bytes: int  # the model's VM executable: weights and bytecode
    runtime_bytes: int  # the rest: runner, TVM runtime, C and C++ libraries

    def sizes(self) -> dict[str, int]:
        return {
            "total_bytes": self.total_bytes,
            "runtime_bytes": self.runtime_bytes,
            "kernels_bytes": self.kernels_bytes,
            "weights_bytes": self.weights_bytes,
        }


def _sources() -> list[tuple[str, Path]]:
    """(archive kind, source) for every file of both archives, libtvm_runtime.a's first."""
    tvm, ffi = (
        runtime.package_dir("tvm") / "src" / "runtime",
        runtime.package_dir("tvm_ffi") / "src" / "ffi",
    )
    found = [("runtime", tvm / s) for s in RUNTIME_SOURCES] + [
        ("ffi", ffi / s) for s in FFI_SOURCES
    ]
    missing = [str(path) for _, path in found if not path.is_file()]
    if missing:
        raise EdgecError(
            f"the installed TVM wheels lack {missing[0]}: reinstall them (scripts/setup.sh)"
        )
    return found


def _compat_dir() -> Path:
    return data_dir("codegen") / "static_runtime" / "compat"


def _includes() -> list[str]:
    compat = _compat_dir()
    ffi = runtime.package_dir("tvm_ffi")
    # The runtime's sources include "../support/x.h" and "../../support/x.h" relative to
    # themselves; those directories are not in the wheel. Searched from these two -iquote
    # directories, both names land on compat/tvm/support.
    return [
        *("-I", str(ffi / "include"), "-I", str(ffi / "3rdparty" / "dlpack" / "include")),
        *("-I", str(runtime.package_dir("tvm") / "include"), "-I", str(compat)),
        *("-iquote", str(compat / "tvm" / "support")),
        *("-iquote", str(compat / "tvm" / "support" / "cuda")),
    ]


def _compiler_identity(cxx: str) -> str:
    if shutil.which(cxx) is None:
        raise EdgecError(f"the C++ compiler {cxx} is not installed; run scripts/setup.sh")
    done = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return f"{cxx} {(done.stdout.splitlines() or [''])[0]}"


def archives(profile: TargetProfile) -> Path:
    """A directory holding libtvm_runtime.a and libtvm_ffi.a for the profile's compiler,
    compiled once (in parallel, about one unity unit per core) and cached."""
    key = hashlib.sha256(_compiler_identity(profile.cxx).encode())
    key.update(" ".join([*FLAGS, "unity"]).encode())
    for wheel in WHEELS:
        key.update(f"{wheel}=={metadata.version(wheel)}".encode())
    for kind, source in _sources():
        key.update(f"{kind}:{source.name}".encode())
    for header in sorted(_compat_dir().rglob("*.h")):
        key.update(header.read_bytes())
    out = cache_dir("static-runtime") / f"{profile.cxx}-{key.hexdigest()[:16]}"

    def complete() -> bool:
        return all((out / name).is_file() for name in ARCHIVES)

    if complete():
        return out
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out.parent) as tmp:
        staging = Path(tmp) / "archives"
        staging.mkdir()
        _build_archives(profile, Path(tmp), staging)
        if not complete():  # another edgec (a multi-target build) may have finished first
            shutil.rmtree(out, ignore_errors=True)  # what someone left half-deleted
            try:
                staging.rename(out)  # atomic: readers see no directory or a whole one
            except OSError:
                if not complete():
                    raise
    return out


def _build_archives(profile: TargetProfile, tmp: Path, staging: Path) -> None:
    flags = [*FLAGS, *_includes()]
    jobs = []
    for kind, sources in _units(_sources(), os.cpu_count() or 1):
        unit = tmp / f"{kind}-{len(jobs)}.cc"
        unit.write_text("".join(f'#include "{source}"\n' for source in sources))
        obj = unit.with_suffix(".o")
        jobs.append((kind, obj, [profile.cxx, *flags, "-c", str(unit), "-o", str(obj)]))
    what = f"compiling the static TVM runtime with {profile.cxx}"
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(lambda job: runtime.compile_or_fail(job[2], what), jobs))
    ar = runtime.binutil(profile, "ar")
    for kind, archive in (("runtime", "libtvm_runtime.a"), ("ffi", "libtvm_ffi.a")):
        objects = [str(obj) for k, obj, _ in jobs if k == kind]
        runtime.compile_or_fail([ar, "rcs", str(staging / archive), *objects], f"{ar} {archive}")


def _units(sources: list[tuple[str, Path]], cores: int) -> list[tuple[str, list[Path]]]:
    """The sources as about one compile unit per core (a unity build: each unit #includes a
    run of sources, in their listed order). Every source parses the same heavy tvm-ffi headers,
    so fewer units cost less CPU. The runtime's sources take about twice the ffi's time, so
    they get two thirds of the units."""
    units = []
    for kind, count in (("runtime", max(1, cores - cores // 3)), ("ffi", max(1, cores // 3))):
        files = [path for k, path in sources if k == kind]
        units += [(kind, run) for run in _split(files, count)]
    return units


def _split(files: list[Path], count: int) -> list[list[Path]]:
    """`files` in at most `count` contiguous runs of about equal bytes."""
    sizes = [path.stat().st_size for path in files]
    runs: list[list[Path]] = [[]]
    taken = 0
    for path, size in zip(files, sizes, strict=True):
        if runs[-1] and taken >= sum(sizes) * len(runs) / count:
            runs.append([])
        runs[-1].append(path)
        taken += size
    return runs


def runner_object(profile: TargetProfile) -> Path:
    """The runner (runtime.RUNNER_SOURCES) compiled with -DEDGEC_SYSTEM_LIB, cached."""
    sources = runtime.runner_sources()
    flags = [*runtime.RUNNER_FLAGS, "-DEDGEC_SYSTEM_LIB"]
    key = hashlib.sha256(_compiler_identity(profile.cxx).encode())
    key.update(" ".join(flags).encode())
    for source in sources:
        key.update(source.read_bytes())
    out = cache_dir("static-runner") / f"{profile.cxx}-{key.hexdigest()[:16]}.a"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="edgec-runner-") as tmp:
        objects = []
        for source in sources:
            obj = Path(tmp) / f"{source.stem}.o"
            cmd = [profile.cxx, *flags, *_includes(), "-c", str(source), "-o", str(obj)]
            runtime.compile_or_fail(cmd, f"building the static runner with {profile.cxx}")
            objects.append(str(obj))
        ar = runtime.binutil(profile, "ar")
        replace_written(
            out, lambda partial: runtime.compile_or_fail([ar, "rcs", str(partial), *objects], ar)
        )
    return out


def model_objects(library_tar: Path, into: Path) -> list[Path]:
    """The object files of a system-lib export_library("….tar"), extracted into `into`.
    edgec wrote that tar itself moments before: its members are plain object names."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(library_tar) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".o")]
        for member in members:
            if "/" in member.name or member.name.startswith("."):
                raise EdgecError(f"{library_tar} holds an unexpected member {member.name!r}")
            tar.extract(member, into, filter="data")
    return [into / m.name for m in members]


def link(profile: TargetProfile, objects: list[Path], output: Path) -> Executable:
    """Link the model's `objects`, the runner and the runtime into one static executable."""
    libs = archives(profile)
    runner = runner_object(profile)
    with tempfile.TemporaryDirectory(prefix="edgec-link-") as tmp:
        unstripped = Path(tmp) / "unstripped"
        cmd = [
            profile.cxx,
            "-static",
            "-o",
            str(unstripped),
            *map(str, objects),
            # the runtime registers its functions (vm_load_executable, ...) from static
            # initializers nothing refers to: every object must be linked in
            "-Wl,--whole-archive",
            str(runner),
            *(str(libs / name) for name in ARCHIVES),
            "-Wl,--no-whole-archive",
            "-Wl,--gc-sections",
            "-lpthread",
        ]
        runtime.compile_or_fail(cmd, f"linking the static {profile.name} executable")
        strip = runtime.binutil(profile, "strip")
        replace_written(
            output,
            lambda partial: runtime.compile_or_fail(
                [strip, "-o", str(partial), str(unstripped)], strip
            ),
        )
    output.chmod(0o755)
    kernels = sum(_allocated_bytes(profile, o) for o in objects if o.name != "devc.o")
    weights = sum(_allocated_bytes(profile, o) for o in objects if o.name == "devc.o")
    total = output.stat().st_size
    return Executable(output, total, kernels, weights, total - kernels - weights)


def _allocated_bytes(profile: TargetProfile, obj: Path) -> int:
    """The bytes an object's loaded sections (code, data) add to the image, by `size -A`."""
    size = [runtime.binutil(profile, "size"), "-A", str(obj)]
    done = subprocess.run(size, capture_output=True, text=True)
    if done.returncode != 0:
        raise EdgecError(f"reading the sections of {obj.name} failed: {done.stderr.strip()}")
    total = 0
    for line in done.stdout.splitlines():
        words = line.split()
        loaded = words[:1] and words[0].startswith((".text", ".rodata", ".data", ".bss"))
        if loaded and len(words) >= 2 and words[1].isdigit():
            total += int(words[1])
    return total
