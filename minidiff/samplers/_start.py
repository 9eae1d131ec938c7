"""The starting point of a sampler: drawn from the prior, or given as ``x_T`` (shared checks)."""

from __future__ import annotations

import torch

from .._validation import check_shape, check_tensor


def check_start(x_T: object, shape: object) -> tuple[int, ...]:
    """Return the batch shape from ``shape`` and/or a given start ``x_T`` (they must agree).

    ``x_T``: None (the sampler draws its start) or a finite floating tensor ``(B, ...)``;
    ``shape``: a non-empty tuple of positive ints, optional when ``x_T`` is given.
    """
    if x_T is None:
        if shape is None:
            raise TypeError("give shape (e.g. (1000, 2)) or a starting point x_T")
        return check_shape(shape)
    x_T = check_tensor(x_T, "x_T", finite=True)  # a floating tensor with a batch dimension
    if x_T.shape[0] == 0:
        raise ValueError(f"x_T must have shape (B, ...) with B >= 1, got {tuple(x_T.shape)}")
    if shape is not None and check_shape(shape) != tuple(x_T.shape):
        raise ValueError(
            f"shape {tuple(shape)} disagrees with x_T's shape {tuple(x_T.shape)} "  # type: ignore[arg-type]
            "(give one of them, or the same)"
        )
    return tuple(x_T.shape)


def check_start_device(x_T: torch.Tensor, device: torch.device | None) -> None:
    """A given ``device`` must be the one ``x_T`` lives on (the sampler runs where ``x_T`` is)."""
    if device is not None and torch.device(device).type != x_T.device.type:
        raise ValueError(
            f"device {device} disagrees with x_T's device {x_T.device} "
            "(leave device=None when x_T is given)"
        )
