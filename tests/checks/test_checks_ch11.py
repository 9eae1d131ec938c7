"""Exercise 11 checkers, what is particular to this chapter (the checks every checker gets are
in tests/test_checkers.py)."""

from __future__ import annotations

import pytest

from minidiff.checks import ch11
from minidiff.nn import UNet
from minidiff.nn.unet import UNetConfig


@pytest.mark.parametrize(
    ("base", "mult", "n"), [(8, (1, 2, 2), 2), (4, (1, 2, 4, 4), 1), (8, (2, 2), 3)]
)
def test_the_skip_bookkeeping_is_that_of_the_real_unet(
    base: int, mult: tuple[int, ...], n: int
) -> None:
    """The checker's references are what minidiff.nn.UNet builds, not a second opinion."""
    cfg = UNetConfig(
        image_size=2 ** len(mult) * 2,
        in_channels=1,
        base_channels=base,
        channel_mult=mult,
        num_res_blocks=n,
        attn_resolutions=(),
        groups=2,
    )
    net = UNet(cfg)
    real = [block.conv1.in_channels for level in net.up for block in level.blocks]
    assert ch11.SPECS["up_block_inputs"].reference(base, mult, n).tolist() == real
    assert len(ch11.SPECS["skip_channels"].reference(base, mult, n)) == len(real)
