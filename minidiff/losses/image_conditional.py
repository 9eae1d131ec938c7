"""Objectives of the image-conditioned models of chapter 14 (super-resolution, cascades, masks).

    conditional eps (SR3, Saharia et al. 2021):
        E || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t, x_cond') ||²
        x_cond' = x_cond, or with noise-conditioning augmentation (CDM, Ho et al. 2021)
        x_cond' = up(sqrt(ab_s) y + sqrt(1 - ab_s) eps_s),  s ~ U{0..max_aug_level}, s given
        to the network as ``aug_level`` (y = x_cond, corrupted at its own resolution and
        upsampled after; ``up`` is the identity for a condition at x_0's size)
                                                                         -> image_conditional_loss
    regression (the posterior mean E[x_0 | x_cond], the blurry baseline):
        E || x_0 - f_theta(x_cond) ||²                                   -> regression_loss

The network is a :class:`minidiff.nn.UNet` with ``cond_channels`` (and ``aug_embedding`` for the
augmented model). Shapes: ``x0: (B, C, S, S)``, ``x_cond: (B, C_cond, S, S)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validation import Check, FloatTensor, Rng, checked
from ..diffusion import q_sample
from ..image_conditioning import aug_levels, check_aug_level, check_image_model, lift_condition
from ..schedules import NoiseSchedule
from ..tensors import noise_like
from .simple import sample_timesteps

__all__ = ["image_conditional_loss", "regression_loss"]


@checked(
    model=Check(check_image_model),
    x0=FloatTensor(dim=4, nonempty=True, finite=True, within=(-1.0, 1.0)),
    x_cond=FloatTensor(dim=4, finite=True, within=(-1.0, 1.0)),
    schedule=NoiseSchedule,
    max_aug_level=Check(check_aug_level, uses=("model", "schedule")),
    generator=Rng,
)
def image_conditional_loss(
    model: Any,
    x0: Tensor,
    x_cond: Tensor,
    schedule: NoiseSchedule,
    *,
    max_aug_level: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``mean ||eps - eps_theta(x_t, t, x_cond')||²``, ``x_cond'`` augmented at ``s <= s_max``.

    ``s_max = max_aug_level`` (0: the plain SR3 loss). ``x_cond`` at ``x0``'s size, or at a
    lower resolution that divides it: then it is augmented there and upsampled after
    (:func:`minidiff.image_conditioning.lift_condition`), as CDM does.

    Random numbers in this order: ``t ~ U{1..T}``, ``eps``; then, for a model with
    ``aug_embedding``, ``s ~ U{0..max_aug_level}`` and the augmentation noise (a model with
    ``aug_embedding`` always gets its ``aug_level``, 0 when ``max_aug_level = 0``).
    """
    B, S = x0.shape[0], x0.shape[-1]
    h = x_cond.shape[-1]
    if x_cond.shape[0] != B or x_cond.shape[-2] != h or h > S or S % h:
        raise ValueError(
            f"x_cond must have x0's batch B={B} and x0's size {S}x{S}, or a size h x h with h "
            f"dividing {S} (a low-resolution image, upsampled after its augmentation); got "
            f"{tuple(x_cond.shape)}"
        )
    t = sample_timesteps.unchecked(B, schedule.T, generator, x0.device)
    noise = noise_like(x0, generator)
    x_t = q_sample.unchecked(x0, t, schedule, noise)
    if not model.config.aug_embedding:
        return ((noise - model(x_t, t, x_cond=lift_condition.unchecked(x_cond, S))) ** 2).mean()
    s = aug_levels.unchecked(B, max_aug_level, schedule, generator, x0.device)
    cond = lift_condition.unchecked(x_cond, S, s, schedule, noise_like(x_cond, generator))
    return ((noise - model(x_t, t, x_cond=cond, aug_level=s.to(x0.dtype))) ** 2).mean()


@checked(x0=FloatTensor(dim=4, nonempty=True, finite=True), x_cond=FloatTensor(dim=4, finite=True))
def regression_loss(model: Any, x0: Tensor, x_cond: Tensor) -> Tensor:
    """``mean ||x_0 - f(x_cond)||²``: its minimiser is the posterior mean ``E[x_0 | x_cond]``.

    ``model`` is any network ``x_cond (B, C_cond, S, S) -> (B, C, S, S)``, e.g.
    ``lambda x: unet(x, ones)`` (a U-Net with its time input held at 1).
    """
    pred = model(x_cond)
    if pred.shape != x0.shape:
        raise ValueError(
            f"model(x_cond) must have x0's shape {tuple(x0.shape)}, got {tuple(pred.shape)}"
        )
    return ((x0 - pred) ** 2).mean()
