"""The instruction count every MCU figure rests on: SysTick ticks × firmware.INSNS_PER_TICK,
checked on each emulated board with a loop whose instruction count is known exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgec.boards import get_board
from edgec.stages import firmware
from edgec.stages.generate import CLibrary
from edgec.targets import get_target
from tests.conftest import needs

pytestmark = [pytest.mark.integration, needs("arm-none-eabi-gcc", "qemu-system-arm")]

# In place of a model: a loop of exactly two instructions (subs, bne) run `loops` times; the
# count is read from a volatile so that both builds have the same code around the loop.
COUNTED_LOOP = """#include "model.h"
#include "edgec_nn.h"
#ifndef EDGEC_LAYER_DONE
#define EDGEC_LAYER_DONE(i) ((void)0)
#endif
static volatile uint32_t loops = %d;
int edgec_model_run(const int8_t *input, int8_t *output)
{
    uint32_t n = loops;
    __asm volatile(".syntax unified\\n1: subs %%0, %%0, #1\\n\\tbne 1b" : "+l"(n) : : "cc");
    output[0] = input[0];
    EDGEC_LAYER_DONE(0);
    return 0;
}
"""
HEADER = """#ifndef EDGEC_MODEL_H
#define EDGEC_MODEL_H
#include <stdint.h>
#define EDGEC_INPUT_SIZE 1
#define EDGEC_OUTPUT_SIZE 1
#define EDGEC_LAYERS 1
int edgec_model_run(const int8_t *input, int8_t *output);
#endif
"""
BOARDS = [
    pytest.param("mps2-an385", id="mps2-an385-cortex-m0plus"),
    pytest.param("mps2-an386", id="mps2-an386-cortex-m4"),
    pytest.param("mps2-an500", id="mps2-an500-cortex-m7"),
]
LOOPS = (1_000_000, 3_000_000)


def _counted_loop(directory: Path, board_name: str, loops: int) -> firmware.McuRun:
    board = get_board(board_name)
    profile = get_target(board.target)
    directory.mkdir()
    (directory / "model.h").write_text(HEADER)
    (directory / "model.c").write_text(COUNTED_LOOP % loops)
    (directory / "edgec_nn.h").write_text("/* no kernels: the loop stands in for them */\n")
    (directory / "edgec_nn.c").write_text("int edgec_nn_unused;\n")
    library = CLibrary(
        directory, "", 4, 4, 0, (1,), (1,), 1.0, 1.0, (), np.array([7], np.int8), np.array([7])
    )
    fw = firmware.link(library, profile, board)
    return firmware.emulate(fw.elf, board.qemu_machine or "")


@pytest.mark.parametrize("board", BOARDS)
def test_instruction_count_of_a_counted_loop_is_two_per_iteration(
    board: str, tmp_path: Path
) -> None:
    short, long = (_counted_loop(tmp_path / str(n), board, n) for n in LOOPS)
    assert short.output.tolist() == long.output.tolist() == [7]
    counted = long.instructions - short.instructions
    # seen: exactly 4,000,000 on all three boards; a count is read off SysTick, so one tick
    # (INSNS_PER_TICK instructions) is the resolution
    assert abs(counted - 2 * (LOOPS[1] - LOOPS[0])) <= firmware.INSNS_PER_TICK, counted
    assert short.layer_instructions[0] <= short.instructions
