"""Inpainting through guidance: diffusion posterior sampling (DPS, Chung et al. 2023), chapter 14.

An unconditional ε-model is steered towards the known pixels ``y = m ⊙ x_known`` at sampling time
instead of being trained on them. With ``x̂₀(x_t) = (x_t - sqrt(1 - ab_t) ε_θ(x_t, t)) / sqrt(ab_t)``
(Tweedie's estimate) and the reconstruction error

    R(x_t) = || m ⊙ (x̂₀(x_t) - x_known) ||²,

each step is the ancestral step of the unconditional model followed by a gradient step on ``R``
(DPS's Algorithm 1, with its step size ``zeta_t = zeta / sqrt(R)`` per image):

    x'_{t-1} = mu_theta(x_t, t) + sigma_t z
    x_{t-1}  = x'_{t-1} - zeta / sqrt(R(x_t)) · ∇_{x_t} R(x_t)

``∇ R`` is the Gaussian likelihood ``log p(y | x₀ = x̂₀(x_t))`` of chapter 9's classifier guidance,
differentiated through the network (one backward pass per step). Nothing forces the known pixels to
come out exactly: the guidance only pulls them there. Shapes: ``x_known (B, C, H, W)``, ``mask``
broadcasting to it (1 = known).
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import FloatTensor, Function, Number, OneOf, Rng, Timesteps, checked
from ..diffusion import VARIANCES, EpsModel, call_eps_model, predict_x0_from_eps
from ..schedules import NoiseSchedule
from ..tensors import noise_like, pad_like
from .clipping import clip_eps, resolve_clip
from .ddpm import ddpm_step
from .inpainting import MASK, RESTORING_SAMPLER, start_like_known
from .loop import OnStep, batch_time, run_sampler
from .registry import register_sampler

__all__ = ["reconstruction_gradient", "dps_step", "dps_sample"]

_RECONSTRUCTION = dict(
    eps_model=Function("(x_t, t) -> eps"),
    x_t=FloatTensor(dim=4, finite=True),
    t=Timesteps(of="x_t"),
    x_known=FloatTensor(like="x_t", finite=True),
    mask=MASK,
    schedule=NoiseSchedule,
)
"""The checks of :func:`reconstruction_gradient`'s arguments, which :func:`dps_step` takes first."""


def _require_autograd(name: str) -> None:
    """DPS differentiates through the network: refuse ``torch.inference_mode`` up front (its
    tensors cannot be recorded for backward, and ``enable_grad`` does not lift it)."""
    if torch.is_inference_mode_enabled():
        raise ValueError(
            f"{name} needs autograd (the gradient of the reconstruction error goes through the "
            "network) and cannot run under torch.inference_mode(); call it under "
            "torch.no_grad() or with no context"
        )


ZETA = Number(low=0.0, low_open=False)
"""``zeta``: finite and ``>= 0`` (0 = the unconditional ancestral step)."""


@checked(**_RECONSTRUCTION)
def reconstruction_gradient(
    eps_model: EpsModel,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(∇_{x_t} R, R, ε_θ(x_t, t))`` with ``R = ||m ⊙ (x̂₀(x_t) - x_known)||²`` per image.

    The gradient ``(B, C, H, W)`` goes through the network (autograd, even under ``no_grad``;
    under ``torch.inference_mode`` a ``ValueError``); ``R`` is ``(B,)``; ``eps`` the model's
    prediction (detached), for the ancestral step.
    """
    _require_autograd("reconstruction_gradient")
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        eps = call_eps_model(eps_model, x, t)  # type: ignore[arg-type]  # @checked: t is (B,)
        x0 = predict_x0_from_eps.unchecked(x, t, eps, schedule)
        r = (mask * (x0 - x_known)).pow(2).flatten(1).sum(dim=1)
        (grad,) = torch.autograd.grad(r.sum(), x)
    return grad, r.detach(), eps.detach()


@checked(
    **_RECONSTRUCTION,
    zeta=ZETA,
    variance=OneOf(VARIANCES),
    noise=FloatTensor(like="x_t", finite=True, optional=True),
    generator=Rng,
)
def dps_step(
    eps_model: EpsModel,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    zeta: float = 1.0,
    variance: str = "beta",
    clip_x0: object = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DPS step ``x_t -> x_{t-1}``: the ancestral step, then ``- zeta ∇R / sqrt(R)``.

    ``noise`` is the ancestral step's ``z`` (drawn from ``generator`` if omitted); no noise at
    ``t = 1``. ``zeta = 0`` is the unconditional ancestral step. ``clip_x0`` (None,
    ``"static"``, ``"dynamic"`` or a map) clips the ``x̂₀`` of the ancestral step only; the
    gradient goes through the unclipped ``x̂₀``. ``t: (B,)`` long in ``1..T``. Not under
    ``torch.inference_mode`` (a ``ValueError``: the step needs autograd).
    """
    _require_autograd("dps_step")
    z = noise if noise is not None else noise_like(x_t, generator)
    clip = resolve_clip(clip_x0)
    return _dps_step(
        eps_model,
        x_t,
        t,  # type: ignore[arg-type]
        x_known,
        mask,
        schedule,
        zeta=zeta,
        variance=variance,
        clip=clip,
        z=z,
    )


def _dps_step(
    eps_model: EpsModel,
    x_t: torch.Tensor,
    tt: torch.Tensor,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    zeta: float,
    variance: str,
    clip: Any,
    z: torch.Tensor,
) -> torch.Tensor:
    grad, r, eps = reconstruction_gradient.unchecked(eps_model, x_t, tt, x_known, mask, schedule)
    if clip is not None:
        eps = clip_eps(x_t, tt, eps, schedule, clip)
    x_prev = ddpm_step.unchecked(x_t, tt, eps, schedule, variance=variance, noise=z)
    step = zeta / r.clamp_min(1e-12).sqrt()
    return x_prev - pad_like(step.to(x_t.dtype), x_t) * grad


@register_sampler("dps")
@checked(
    **RESTORING_SAMPLER,
    zeta=ZETA,
    variance=OneOf(VARIANCES),
    generator=Rng,
)
def dps_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    *,
    zeta: float = 1.0,
    variance: str = "beta",
    clip_x0: object = None,
    x_T: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Inpaint with an unconditional ε-model by DPS guidance: :func:`dps_step` at ``t = T..1``.

    ``x_known (B, C, H, W)`` in ``[-1, 1]``, ``mask`` broadcasting to it (1 = known);
    ``generator`` draws ``x_T``, then each step's ``z``. Returns ``x_0 (B, C, H, W)``: the known
    pixels are pulled towards ``x_known``, not pasted (compare :func:`inpaint_sample`). One
    forward and one backward pass of the network per step. ``clip_x0`` as in :func:`dps_step`.
    Runs under ``torch.no_grad()`` but not under ``torch.inference_mode`` (a ``ValueError``
    before any work: the guidance needs autograd).
    """
    _require_autograd("dps_sample")
    clip = resolve_clip(clip_x0)

    def step(x: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        tt = batch_time(x, t)
        return _dps_step(
            eps_model,
            x,
            tt,
            x_known,
            mask,
            schedule,
            zeta=zeta,
            variance=variance,
            clip=clip,
            z=noise_like(x, generator),
        )

    x = start_like_known(x_T, x_known, generator)
    times = [(t, t - 1) for t in range(schedule.T, 0, -1)]
    return run_sampler(step, x, times, name="dps_sample", on_step=on_step, progress=progress)
