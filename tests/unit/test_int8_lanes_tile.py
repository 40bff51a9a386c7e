"""The rpi4 depth-lane kernel's register tile: pixels x output-channel vectors per shape."""

from __future__ import annotations

import pytest

from edgec.relax.int8_dot import lanes_tile

# (output channels, output width, window taps, stride, tile (pixels, vectors) or None)
CASES = [
    # 1x1: (R + V) / RV loads per R x V products
    pytest.param(64, 56, 1, 1, (4, 4), id="pointwise-56-wide-4x4"),
    pytest.param(512, 7, 1, 2, (7, 2), id="pointwise-stride2-7-wide-7x2"),
    pytest.param(1000, 13, 1, 1, None, id="pointwise-13-wide-one-pixel-none"),
    # 3x3: the taps share the (R - 1) * stride + 3 columns a tile loads per step
    # (tiles of 2 vectors pay for their 2-output lane sums and 2-lane requantization)
    pytest.param(64, 56, 3, 1, (4, 4), id="3x3-56-wide-4x4-not-8x2-or-7x2"),
    pytest.param(128, 28, 3, 1, (4, 4), id="3x3-28-wide-4x4"),
    pytest.param(256, 14, 3, 1, (7, 2), id="3x3-14-wide-7x2-not-2x8"),
    pytest.param(512, 7, 3, 1, (7, 2), id="3x3-7-wide-7x2"),
    pytest.param(128, 28, 3, 2, (4, 4), id="3x3-stride2-4x4-window-9"),
    pytest.param(256, 14, 3, 2, (7, 2), id="3x3-stride2-14-wide-7x2-not-2x8"),
    pytest.param(64, 55, 3, 1, (5, 4), id="3x3-55-wide-5x4"),
    pytest.param(256, 13, 3, 1, None, id="3x3-13-wide-none"),
]


@pytest.mark.parametrize(("channels", "width", "taps", "stride", "tile"), CASES)
def test_lanes_tile_holds_the_fewest_loads_per_product_that_fit_the_registers(
    channels: int, width: int, taps: int, stride: int, tile: tuple[int, int] | None
) -> None:
    assert lanes_tile(channels, width, taps, stride) == tile
