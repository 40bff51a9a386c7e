"""The c backend: edgec's int8 C library for microcontrollers, linked into test firmware for a
board; run in qemu-system-arm, where instructions are counted (emulated time is no measure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgec.artifacts import Bundle, LayerCount, Measurement, OnnxModel, TensorSpec
from edgec.backends import Built, How, Model
from edgec.boards import Board, get_board
from edgec.errors import EdgecError
from edgec.manifest import Layer, Manifest
from edgec.progress import StageLog
from edgec.stages.bundle import bundle
from edgec.targets import TargetProfile
from edgec.tuning import TuneOptions

COUNTER = "qemu-system-arm -icount shift=0"


def board_for(profile: TargetProfile, name: str | None) -> Board:
    """The board firmware is linked for: --board, else the profile's; it must take the profile."""
    assert profile.board is not None
    board = get_board(name or profile.board)
    if board.target != profile.name:
        raise EdgecError(
            f"board {board.name} takes {board.target} bundles, not {profile.name}; "
            f"build with --target {board.target}"
        )
    return board


def check(profile: TargetProfile, board: str | None, tuning: TuneOptions | None = None) -> None:
    board_for(profile, board)


def preflight(model: OnnxModel, profile: TargetProfile, board: str | None) -> None:
    """Hopeless sizes fail from the float graph, before quantizing takes minutes."""
    from edgec.stages.preflight import preflight as fits

    fits(model, board_for(profile, board))


def build(model: Model, profile: TargetProfile, work: Path, log: StageLog) -> Built:
    """generate → firmware → bundle."""
    from edgec.stages import firmware
    from edgec.stages.generate import LIBRARY, generate

    quantized, calib = model.quantized, model.calibration
    if quantized is None or calib is None:
        raise EdgecError(f"{profile.name} runs int8 only: add --quantize int8 --calib-data DATA")
    board = board_for(profile, model.board)
    with log.stage("generate") as s:
        sample = (calib.val_x if len(calib.val_x) else calib.train_x)[:1]
        flash = board.memory.flash_bytes if board.memory else None
        library = generate(quantized, profile, work, sample, flash)
        s.note(
            f"{len(library.layers)} layers, arena {library.arena_bytes:,} B "
            f"(lower bound {library.arena_lower_bound:,} B)"
            + (f"; {library.widening}" if library.widening else "")
        )
    with log.stage("firmware") as s:
        fw = firmware.link(library, profile, board)
        fp = fw.footprint
        s.note(f"{board.name}: flash {fp.flash_bytes:,} B, RAM {fp.ram_bytes:,} B")
    with log.stage("bundle") as s:
        sources = ["model.c", "model.h", *LIBRARY]

        def spec(name: str, shape: tuple[int, ...], scale: float) -> TensorSpec:
            return TensorSpec(name, tuple(shape), "int8", scale)

        manifest = Manifest(
            target=profile.name,
            model=library.source,
            library=None,
            reference=quantized.onnx.path.name,
            runner=None,
            inputs=(spec("input", library.input_shape, library.input_scale),),
            outputs=(spec("output", library.output_shape, library.output_scale),),
            # the numpy int8 reference's output on the embedded input: reproduced exactly
            parity={"tolerance": 0, "share": 1.0},
            files={},
            firmware=fw.elf.name,
            board=board.name,  # the firmware is linked for this board's memory map
            memory=dataclasses.asdict(board.memory) if board.memory else None,
            c_sources=tuple(sources),
            expected_output=tuple(int(v) for v in library.expected_output),
            layers=tuple(Layer(x.name, x.op, x.macs) for x in library.layers),
        )
        files = [
            *(work / name for name in sources),
            *fw.files,
            quantized.onnx.path,
            model.onnx.path,
            *model.extras,
        ]
        result = bundle(work, manifest, list(dict.fromkeys(files)))
        s.note(f"{len(result.typed.files)} files")
    assert board.memory is not None
    return Built(
        result,
        reference="edgec int8 reference (numpy)",
        target={
            "board": board.name,
            "isa": profile.capabilities.isa,
            "device": "mcu",
            "dsp": profile.capabilities.has_dsp,
        },
        model={},
        quantization=quantized.to_json(),
        macs=sum(layer.macs for layer in library.layers),
        memory={
            "flash_bytes": fp.flash_bytes,
            "ram_bytes": fp.ram_bytes,
            "flash": {
                "code": fp.code_bytes,
                "weights_and_tables": fp.const_bytes,
                "data": fp.data_bytes,
            },
            "flash_functions": dict(fp.functions),  # code kept in the linked image, by symbol
            "ram": {
                "arena": library.arena_bytes,
                "arena_lower_bound": library.arena_lower_bound,
                "scratch": library.scratch_bytes,
                "bss_and_data": fp.bss_bytes + fp.data_bytes,
                "stack": fp.stack_bytes,
            },
            "board_flash_bytes": board.memory.flash_bytes,
            "board_ram_bytes": board.memory.ram_bytes,
            "firmware_sections": fw.elf_sections,
            "planned_bytes": library.arena_bytes,
            "peak_rss_bytes": None,
        },
    )


def unavailable(bundle: Bundle, emulate: bool) -> str | None:
    """Firmware runs here only in qemu-system-arm, on a board qemu emulates, when asked to."""
    manifest = bundle.typed
    board = get_board(manifest.board or manifest.profile.board or "")
    if board.qemu_machine is None:
        return f"{board.name} is a real board: run the bundle with edgec flash"
    if not emulate:
        return f"{manifest.target} bundles run on the board; add --emulate for qemu"
    return None


def run(bundle: Bundle, how: How) -> Measurement:
    """The firmware's embedded test input, run once in qemu: instructions per inference and
    per layer, and its output against the int8 reference's, which it must match exactly."""
    from edgec.stages import firmware

    manifest = bundle.typed
    if how.inputs:
        raise EdgecError("an MCU bundle runs its embedded test input; --input does not apply")
    if manifest.firmware is None:
        raise EdgecError(f"{bundle.path} holds no firmware; rebuild it")
    board = get_board(manifest.board or manifest.profile.board or "")
    assert board.qemu_machine is not None  # unavailable() says why not before run
    done = firmware.emulate(bundle.path / manifest.firmware, board.qemu_machine)
    expected = np.array(manifest.expected_output, dtype=np.int32)
    diff = int(np.max(np.abs(done.output.astype(np.int32) - expected), initial=0))
    return Measurement(
        where="emulated",
        latency_ms=None,
        repeat=1,
        peak_rss_bytes=None,
        max_abs_diff=diff,
        tolerance=0,
        baseline_ms=None,
        within_share=float(diff == 0),
        required_share=1.0,
        unit="instructions",
        instructions=done.instructions,
        layers=tuple(
            LayerCount(layer.name, layer.op, layer.macs, n)
            for layer, n in zip(manifest.layers, done.layer_instructions, strict=True)
        ),
        counter=COUNTER,
    )
