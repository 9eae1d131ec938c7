"""Image grids: layout, value mapping, PNG output, bad input."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from minidiff.viz import image_grid, save_image_grid


def test_grid_layout_and_values() -> None:
    images = torch.stack([torch.full((1, 2, 3), v) for v in (-1.0, 0.0, 1.0)])
    grid = image_grid(images, nrow=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 2 * 4 + 1) and grid.dtype == np.uint8
    assert grid[1, 1] == 0 and grid[1, 5] == 128 and grid[4, 1] == 255
    assert grid[0].tolist() == [255] * 9  # padding
    rgb = image_grid(torch.zeros(5, 3, 4, 4))
    assert rgb.shape == (2 * 5 + 1, 3 * 5 + 1, 3)


def test_save_png_round_trip(tmp_path: Path) -> None:
    path = save_image_grid(torch.rand(4, 3, 4, 4) * 2 - 1, tmp_path / "g.png", scale=2)
    img = matplotlib.image.imread(path)
    assert img.shape[:2] == ((2 * 5 + 1) * 2, (2 * 5 + 1) * 2)


def test_bad_images() -> None:
    with pytest.raises(ValueError, match="C = 1 or 3"):
        image_grid(torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="nrow"):
        image_grid(torch.zeros(2, 1, 4, 4), nrow=0)
