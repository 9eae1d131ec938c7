"""Small tensor helpers that every module uses (one home for each).

Shapes: data ``x: (B, ...)``; a per-sample quantity ``v: (B,)`` (a timestep's coefficient, a noise
level) or a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "pad_like",
    "noise_like",
    "standard_normal",
    "uniform",
    "sum_data_dims",
    "mean_data_dims",
    "pairwise_sq_dists",
]


def pad_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``v: (B,)`` reshaped to ``(B, 1, …, 1)`` (as many dimensions as ``x``) in ``x``'s dtype and
    device, so that ``v * x`` scales each sample by its own value. A 0-d ``v`` stays a scalar."""
    v = v.to(dtype=x.dtype, device=x.device)
    return v if v.dim() == 0 else v.reshape(-1, *([1] * (x.dim() - 1)))


def standard_normal(
    shape: tuple[int, ...] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``N(0, I)`` of ``shape``, drawn on the generator's device and moved to ``device``.

    Drawing where the generator lives makes a seeded run give the same numbers whatever device the
    data is on (a CPU generator with CUDA data draws on the CPU).
    """
    return _draw(torch.randn, shape, generator, dtype, device)


def uniform(
    shape: tuple[int, ...] | torch.Size,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``U[0, 1)`` of ``shape``, drawn on the generator's device and moved to ``device`` (see
    :func:`standard_normal`)."""
    return _draw(torch.rand, shape, generator, dtype, device)


def _draw(
    fn: Callable[..., torch.Tensor],
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> torch.Tensor:
    target = torch.device(device) if device is not None else None
    draw_on = generator.device if generator is not None else target
    out = fn(tuple(shape), generator=generator, dtype=dtype, device=draw_on)
    return out if target is None else out.to(target)


def noise_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``eps ~ N(0, I)`` with the shape, dtype and device of ``x`` (see :func:`standard_normal`)."""
    return standard_normal(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def sum_data_dims(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B,)``: the sum over every dimension but the batch."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def mean_data_dims(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (B,)``: the mean over every dimension but the batch."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a_i - b_j|²`` for ``a: (N, D)``, ``b: (M, D)`` as an ``(N, M)`` matrix.

    Expanded as ``|a|² + |b|² - 2 a·b`` (one matrix product) and clamped at 0 against round-off.
    """
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)
