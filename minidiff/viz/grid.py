"""Image grids: show or save a batch of images in ``[-1, 1]`` as one picture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._memory import check_allocation
from .._validation import FloatTensor, Int, checked

__all__ = ["image_grid", "save_image_grid"]


@checked(images=FloatTensor(dim=4), nrow=Int(optional=True), pad=Int(minimum=0))
def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``images: (N, C, H, W)`` in ``[-1, 1]`` (C = 1 or 3) into one ``uint8`` array.

    ``nrow`` images per row (default: ``ceil(sqrt(N))``), ``pad`` white pixels between them.
    Values outside ``[-1, 1]`` are clamped (as saving a picture would); NaN or inf raise.
    Returns ``(rows * (H + pad) + pad, nrow * (W + pad) + pad)`` for C = 1, with a trailing
    ``3`` for C = 3 (the layout ``matplotlib.pyplot.imshow`` expects).
    """
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have C = 1 or 3 channels, got shape {tuple(images.shape)}")
    if n < 1:
        raise ValueError("images must hold at least one image")
    if nrow is None:
        nrow = int(np.ceil(np.sqrt(n)))
    rows = (n + nrow - 1) // nrow
    size = c * (rows * (h + pad) + pad) * (nrow * (w + pad) + pad)
    check_allocation(size, f"{n} images with nrow={nrow} and pad={pad}", "a uint8 grid")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contains non-finite values (NaN or inf); expected [-1, 1]")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y0 : y0 + h, x0 : x0 + w] = x[i].numpy()
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


@checked(scale=Int())
def save_image_grid(
    images: Tensor, path: str | os.PathLike[str], nrow: int | None = None, scale: int = 1
) -> Path:
    """Save ``image_grid(images, nrow)`` as a PNG at ``path`` (each pixel ``scale`` x ``scale``)."""
    import matplotlib.image

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (the grid is saved as a PNG), got {str(path)!r}")
    grid = image_grid(images, nrow)
    check_allocation(grid.size * scale * scale * 5, f"scale={scale}", "the scaled picture")
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grid.ndim == 2:
        matplotlib.image.imsave(path, grid, cmap="gray", vmin=0, vmax=255, format="png")
    else:
        matplotlib.image.imsave(path, grid, format="png")
    return path
