"""firmware: the generated C library and a test harness, compiled with arm-none-eabi-gcc for a
board, its flash and RAM accounted from the linked image; run under qemu-system-arm.

Flash is the library's code (.text) and constants (.rodata: weights and tables); RAM is its
arena, scratch and static data (.bss/.data) plus the worst-case stack of edgec_model_run from
-fstack-usage. Both are checked against the board before anything is linked, from the object
files (every kernel counted: an upper bound); the report then counts what the linked image
holds (-ffunction-sections, --gc-sections: the kernels the model calls), symbol by symbol.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.boards import Board
from edgec.errors import CheckFailed, EdgecError
from edgec.package_files import data_dir
from edgec.stages.generate import CLibrary
from edgec.targets import TargetProfile

CFLAGS = (
    "-std=c99",
    "-Os",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffunction-sections",
    "-fdata-sections",
    "-fstack-usage",
)
HARNESS = ("main.c", "startup.c", "layer_hook.h", "Makefile")
HARNESS_STACK = 2048  # bytes the test harness and printf add on top of the model's stack
# qemu -icount shift=0 runs one instruction per virtual nanosecond; MPS2's SysTick counts the
# 25 MHz system clock: one tick is 40 instructions.
INSNS_PER_TICK = 40
QEMU_TIMEOUT_S = 600


@dataclass(frozen=True)
class Footprint:
    code_bytes: int  # library .text (kernels and model_run)
    const_bytes: int  # library .rodata (weights, biases, multipliers, layer tables)
    data_bytes: int  # library .data
    bss_bytes: int  # library .bss: the arena and the scratch buffer
    stack_bytes: int  # worst case of edgec_model_run and the kernels it calls
    # code symbols of the library in the linked image, largest first (empty before linking)
    functions: tuple[tuple[str, int], ...] = ()

    @property
    def flash_bytes(self) -> int:
        return self.code_bytes + self.const_bytes + self.data_bytes

    @property
    def ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes + self.stack_bytes


@dataclass(frozen=True)
class Firmware:
    elf: Path
    board: Board
    library: CLibrary
    footprint: Footprint
    elf_sections: dict[str, int]

    @property
    def files(self) -> list[Path]:
        """What `link` wrote beside the library: the harness, its build inputs, the ELF."""
        names = [*HARNESS, "link.ld", "test_input.h", "flags.mk", self.elf.name]
        return [self.elf.parent / name for name in names]


@dataclass(frozen=True)
class McuRun:
    output: np.ndarray  # int8, in the C's memory order
    instructions: int
    layer_instructions: tuple[int, ...]


def _gcc(profile: TargetProfile, args: list[str], cwd: Path) -> None:
    cmd = [profile.cxx, *profile.cflags, *CFLAGS, *args]
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise EdgecError(f"{profile.cxx} is not installed; run scripts/setup.sh") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line] or [done.stderr]
        raise EdgecError(f"{profile.cxx} failed on the generated C: {errors[0].strip()}")


def _sections(path: Path) -> dict[str, int]:
    """Section name → size, from arm-none-eabi-size -A."""
    done = subprocess.run(
        ["arm-none-eabi-size", "-A", str(path)], capture_output=True, text=True, check=True
    )
    sizes: dict[str, int] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = sizes.get(parts[0], 0) + int(parts[1])
    return sizes


def _stack(directory: Path) -> int:
    """edgec_model_run's frame plus the deepest kernel frame it calls (-fstack-usage)."""
    frames: dict[str, int] = {}
    for su in directory.glob("*.su"):
        for line in su.read_text().splitlines():
            match = re.match(r".*:(\w+)\s+(\d+)\s+\w+", line)
            if match:
                frames[match[1]] = max(frames.get(match[1], 0), int(match[2]))
    run = frames.get("edgec_model_run", 0)
    kernels = [v for k, v in frames.items() if k != "edgec_model_run"]
    # a kernel calls at most one static helper deep (conv_dsp → im2col / dot_2x2)
    deepest = sorted(kernels, reverse=True)[:2]
    return run + sum(deepest)


def footprint(library: CLibrary, profile: TargetProfile) -> Footprint:
    """Compile the library alone and measure it (all its kernels, used or not)."""
    return _object_footprint(library, profile)[0]


def _symbols(path: Path) -> list[tuple[str, str, int]]:
    """(name, nm type letter, size) of each sized symbol an object or image defines."""
    done = subprocess.run(
        ["arm-none-eabi-nm", "-S", str(path)], capture_output=True, text=True, check=True
    )
    symbols = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols.append((parts[3], parts[2], int(parts[1], 16)))
    return symbols


def _linked_footprint(elf: Path, names: frozenset[str], stack: int) -> Footprint:
    """The library's share of the linked image: its symbols that --gc-sections kept."""
    sizes = {"t": 0, "r": 0, "d": 0, "b": 0}
    functions = []
    for name, kind, size in _symbols(elf):
        kind = kind.lower()
        if name in names and kind in sizes:
            sizes[kind] += size
            if kind == "t":
                functions.append((name, size))
    functions.sort(key=lambda f: (-f[1], f[0]))
    return Footprint(sizes["t"], sizes["r"], sizes["d"], sizes["b"], stack, tuple(functions))


def _object_footprint(
    library: CLibrary, profile: TargetProfile
) -> tuple[Footprint, frozenset[str]]:
    """The library's objects measured, and the names of the symbols they define."""
    directory = library.directory
    _gcc(profile, ["-c", "model.c", "edgec_nn.c"], directory)
    names = frozenset(
        name for obj in ("model.o", "edgec_nn.o") for name, _, _ in _symbols(directory / obj)
    )
    text = rodata = data = bss = 0
    for obj in ("model.o", "edgec_nn.o"):
        for name, size in _sections(directory / obj).items():
            if name.startswith(".text"):
                text += size
            elif name.startswith(".rodata"):
                rodata += size
            elif name.startswith(".data"):
                data += size
            elif name.startswith(".bss"):
                bss += size
    stack = _stack(directory)
    for leftover in [*directory.glob("*.o"), *directory.glob("*.su")]:
        leftover.unlink()
    return Footprint(text, rodata, data, bss, stack), names


def check_fits(fp: Footprint, board: Board, library: CLibrary) -> None:
    """A one-line error naming the section that does not fit, its need and the limit."""
    memory = board.memory
    if memory is None:
        raise EdgecError(f"board {board.name} has no [memory]: it cannot take firmware")
    if fp.flash_bytes > memory.flash_bytes:
        raise EdgecError(
            f"the model does not fit {board.name}'s flash: {fp.flash_bytes:,} B needed "
            f"(.rodata weights {fp.const_bytes:,} + .text {fp.code_bytes:,}) > "
            f"{memory.flash_bytes:,} B; prune (--prune) or choose a board with more flash"
        )
    need = fp.ram_bytes + HARNESS_STACK
    if need > memory.ram_bytes:
        raise EdgecError(
            f"the model does not fit {board.name}'s RAM: {need:,} B needed (.bss arena "
            f"{library.arena_bytes:,} + scratch {library.scratch_bytes:,}, stack "
            f"{fp.stack_bytes:,}) > {memory.ram_bytes:,} B; prune or choose a bigger board"
        )


def link(library: CLibrary, profile: TargetProfile, board: Board) -> Firmware:
    """The test firmware for `board`, in the library's directory (firmware.elf); its footprint
    is the library's share of the linked image."""
    fp, names = _object_footprint(library, profile)
    check_fits(fp, board, library)
    directory = library.directory
    assert board.memory is not None
    for name in HARNESS:
        shutil.copyfile(data_dir("codegen") / "mcu" / "firmware" / name, directory / name)
    template = (data_dir("codegen") / "mcu" / "firmware" / "link.ld.in").read_text()
    stack = fp.stack_bytes + HARNESS_STACK
    values = {
        "@BOARD@": board.name,
        "@FLASH_ORIGIN@": hex(board.memory.flash_origin),
        "@FLASH_BYTES@": str(board.memory.flash_bytes),
        "@RAM_ORIGIN@": hex(board.memory.ram_origin),
        "@RAM_BYTES@": str(board.memory.ram_bytes),
        "@STACK_BYTES@": str(stack),
    }
    for key, value in values.items():
        template = template.replace(key, value)
    (directory / "link.ld").write_text(template)
    (directory / "test_input.h").write_text(_test_input(library))
    (directory / "flags.mk").write_text(
        f"CFLAGS_CPU = {' '.join(profile.cflags)}\nQEMU_MACHINE = {board.qemu_machine or ''}\n"
    )
    _gcc(
        profile,
        [
            "-DEDGEC_LAYER_DONE=edgec_layer_done",
            "-include",
            "layer_hook.h",
            "main.c",
            "startup.c",
            "model.c",
            "edgec_nn.c",
            "-specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            "link.ld",
            "-Wl,--gc-sections",
            "-o",
            "firmware.elf",
        ],
        directory,
    )
    for leftover in directory.glob("*.su"):
        leftover.unlink()
    elf = directory / "firmware.elf"
    linked = _linked_footprint(elf, names, fp.stack_bytes)
    return Firmware(elf, board, library, linked, _sections(elf))


def _test_input(library: CLibrary) -> str:
    values = ", ".join(str(int(v)) for v in library.test_input)
    return (
        "/* The test input the firmware runs: int8, the model's input layout. */\n"
        "#include <stdint.h>\n"
        f"static const int8_t edgec_test_input[{len(library.test_input)}] = {{{values}}};\n"
    )


def emulate(elf: Path, machine: str) -> McuRun:
    """Run the firmware in qemu-system-arm and read its output and instruction counts."""
    cmd = [
        "qemu-system-arm",
        "-M",
        machine,
        "-nographic",
        "-icount",
        "shift=0",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(elf),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S)
    except FileNotFoundError:
        raise EdgecError("qemu-system-arm is not installed; run scripts/setup.sh") from None
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"the firmware did not finish in {QEMU_TIMEOUT_S} s under qemu") from None
    lines = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line}
    if done.returncode != 0 or "EDGEC-OUTPUT" not in lines:
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        raise CheckFailed(f"the firmware failed under qemu (exit {done.returncode}): {tail[0]}")
    output = np.array([int(v) for v in lines["EDGEC-OUTPUT"]], dtype=np.int8)
    ticks = int(lines["EDGEC-TICKS"][0])
    layers = tuple(int(v) * INSNS_PER_TICK for v in lines.get("EDGEC-LAYERS", []))
    return McuRun(output, ticks * INSNS_PER_TICK, layers)
