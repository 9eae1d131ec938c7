"""Image grids: show or save a batch of images in ``[-1, 1]`` as one picture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["image_grid", "save_image_grid"]


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``images: (N, C, H, W)`` in ``[-1, 1]`` (C = 1 or 3) into one ``uint8`` array.

    ``nrow`` images per row (default: ``ceil(sqrt(N))``), ``pad`` white pixels between them.
    Returns ``(rows * (H + pad) + pad, nrow * (W + pad) + pad)`` for C = 1, with a trailing
    ``3`` for C = 3 (the layout ``matplotlib.pyplot.imshow`` expects).
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W) with C = 1 or 3, got {got}")
    n, c, h, w = images.shape
    if n < 1:
        raise ValueError("images must hold at least one image")
    if nrow is None:
        nrow = int(np.ceil(np.sqrt(n)))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be an integer >= 1, got {nrow!r}")
    rows = (n + nrow - 1) // nrow
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y0 : y0 + h, x0 : x0 + w] = x[i].numpy()
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_image_grid(
    images: Tensor, path: str | os.PathLike[str], nrow: int | None = None, scale: int = 1
) -> Path:
    """Save ``image_grid(images, nrow)`` as a PNG at ``path`` (each pixel ``scale`` x ``scale``)."""
    import matplotlib.image

    grid = image_grid(images, nrow)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grid.ndim == 2:
        matplotlib.image.imsave(path, grid, cmap="gray", vmin=0, vmax=255)
    else:
        matplotlib.image.imsave(path, grid)
    return path
