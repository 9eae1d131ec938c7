"""Keeping a measured low-resolution image exactly (chapter 14): back-projection of ``x̂₀``.

Super-resolution observes ``y = D x``, with ``D`` the average over ``f x f`` blocks
(:func:`minidiff.image_conditioning.downsample`). Inpainting's replacement keeps the known
pixels exactly; the same can be done for any linear measurement. At every sampler step, replace
the model's estimate ``x̂₀`` by the closest image (in L2) that reproduces the measurement,

    x̂₀  <-  x̂₀ + D⁺ (y - D x̂₀),        D⁺ = Dᵀ (D Dᵀ)⁻¹,

the range--null-space decomposition of DDNM (Wang et al. 2023): the part of ``x̂₀`` that ``D``
sees is taken from ``y``, the part it cannot see (its null space, the detail inside each block)
from the network. For block averages ``D Dᵀ = I / f²``, so ``D⁺ = f² Dᵀ`` copies each average to
its ``f x f`` pixels: nearest-neighbour upsampling. Since ``D D⁺ = I``, ``D x̂₀ = y`` after every
step, and the last step of DDIM returns ``x̂₀`` itself, so the sample averages back to ``y``
(up to the clamp to ``[-1, 1]`` that precedes the projection, see below).

The map has the signature of a sampler's ``clip_x0`` (``x̂₀ -> x̂₀``), so every sampler of the
course runs it without a new loop. ILVR (Choi et al. 2021) does the same on ``x_t`` with a
low-pass filter in place of ``D``.

Shapes: ``y (B, C, h, h)``, ``x̂₀ (B, C, f h, f h)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ._validation import FloatTensor, Int, checked
from .image_conditioning import downsample

__all__ = ["low_resolution_projection", "project_to_measurement"]

_IMAGES = FloatTensor(dim=4, nonempty=True, finite=True)


@checked(x0=_IMAGES, y=_IMAGES, factor=Int(minimum=1))
def project_to_measurement(x0: torch.Tensor, y: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``x0 + D⁺ (y - D x0)``: the image nearest ``x0 (B, C, fh, fh)`` with block averages ``y``.

    ``y (B, C, h, h)``; ``D`` averages ``factor x factor`` blocks and ``D⁺`` is nearest-neighbour
    upsampling by ``factor``.
    """
    want = (*y.shape[:2], y.shape[2] * factor, y.shape[3] * factor)
    if tuple(x0.shape) != want:
        raise ValueError(
            f"x0 must have shape {want} (y {tuple(y.shape)} upsampled by factor={factor}), got "
            f"{tuple(x0.shape)}"
        )
    residual = y - downsample.unchecked(x0, factor)
    return x0 + F.interpolate(residual, scale_factor=factor, mode="nearest")


@checked(x_low=_IMAGES, factor=Int(minimum=1))
def low_resolution_projection(
    x_low: torch.Tensor, factor: int = 2
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A sampler's ``clip_x0`` that keeps ``D x̂₀ = x_low``: clamp ``x̂₀`` to ``[-1, 1]``, project.

    ``x_low (B, C, h, h)``; the returned map takes ``x̂₀ (B, C, factor h, factor h)``. The clamp
    comes first because a model's early ``x̂₀`` can be far outside the image range; the
    projection then moves each block by at most ``|y - D x̂₀|``, so the result may leave
    ``[-1, 1]`` by a little where ``y`` is near ``±1``.
    """
    y = x_low

    def project(x0: torch.Tensor) -> torch.Tensor:
        return project_to_measurement.unchecked(x0.clamp(-1.0, 1.0), y.to(x0), factor)

    return project
