"""Ancestral sampling (Ho et al. 2020, Algorithm 2).

    x_T ~ N(0, I)
    for t = T, …, 1:
        z ~ N(0, I) if t > 1 else 0
        x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) · eps_theta(x_t, t)) / sqrt(alpha_t)
                  + sigma_t z

The mean is :func:`minidiff.diffusion.p_mean_var`'s ``mu_theta``; ``diffusers`` calls one iteration
``DDPMScheduler.step`` (``variance_type="fixed_large"`` is ``sigma² = beta``, ``"fixed_small"``
is ``beta_tilde``; their timestep is our ``t - 1``).
"""

from __future__ import annotations

import torch

from .._validation import FloatTensor, Function, OneOf, Rng, Timesteps, checked
from ..diffusion import VARIANCES, EpsModel, p_mean_var
from ..schedules import NoiseSchedule
from ..tensors import noise_like, pad_like
from .clipping import CLIP_X0, X0Clip, clip_eps_model
from .loop import OnStep, batch_time, draw_start, run_sampler
from .registry import register_sampler

__all__ = ["ddpm_step", "ddpm_sample"]


@checked(
    x_t=FloatTensor(finite=True),
    t=Timesteps(of="x_t"),
    eps=FloatTensor(like="x_t", finite=True),
    schedule=NoiseSchedule,
    variance=OneOf(VARIANCES),
    noise=FloatTensor(like="x_t", finite=True, optional=True),
    generator=Rng,
    clip_x0=CLIP_X0,
)
def ddpm_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "beta",
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: str | X0Clip | None = None,
) -> torch.Tensor:
    """One ancestral step ``x_t -> x_{t-1}`` given the model's ``eps`` prediction.

    ``x_{t-1} = mu_theta(x_t, t) + sigma_t z`` with ``sigma_t² = beta_t`` or ``beta_tilde_t``; no
    noise is added where ``t == 1`` (the last step returns the mean). Shapes:
    ``x_t, eps: (B, ...)``, ``t: (B,)``. ``clip_x0`` (None, ``"static"``, ``"dynamic"`` or a map
    ``x̂₀ -> x̂₀``): the mean becomes the posterior mean ``μ̃_t(x_t, clip(x̂₀))``, see
    :mod:`minidiff.samplers.clipping`.
    """
    z = noise if noise is not None else noise_like(x_t, generator)
    model = clip_eps_model(lambda x, tt: eps, schedule, clip_x0)
    return _ancestral_step(model, x_t, t, schedule, variance, z)  # type: ignore[arg-type]


def _ancestral_step(
    eps_model: EpsModel,
    x_t: torch.Tensor,
    tt: torch.Tensor,
    schedule: NoiseSchedule,
    variance: str,
    z: torch.Tensor,
) -> torch.Tensor:
    """``mu_theta + sigma_t z``, with no noise where ``t == 1`` (``tt``: a checked long tensor)."""
    mean, var = p_mean_var.unchecked(eps_model, x_t, tt, schedule, variance)
    return mean + pad_like((tt > 1).to(x_t.dtype), x_t) * var.sqrt() * z


@register_sampler("ddpm")
@checked(
    eps_model=Function("(x_t, t) -> eps"),
    schedule=NoiseSchedule,
    variance=OneOf(VARIANCES),
    clip_x0=CLIP_X0,
)
def ddpm_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    variance: str = "beta",
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``shape[0]`` samples with T ancestral steps (Algorithm 2); 1 network call per step.

    Args:
        eps_model: callable ``(x_t (B, ...), t (B,) long) -> eps (B, ...)``.
        shape: shape of the batch to generate, e.g. ``(10_000, 2)``; may be omitted when ``x_T``
            is given.
        x_T: a given start ``(B, ...)`` instead of ``x_T ~ N(0, I)`` (the sampler then runs in its
            dtype and on its device; see :func:`~minidiff.samplers.loop.draw_start`).
        variance: ``"beta"`` or ``"beta_tilde"`` for ``sigma_t²``.
        clip_x0: None (the maths of chapters 2–8), ``"static"`` (clamp ``x̂₀`` to ``[-1, 1]``),
            ``"dynamic"`` (Imagen's thresholding) or a map ``x̂₀ -> x̂₀``; for images in
            ``[-1, 1]`` (:mod:`minidiff.samplers.clipping`).
        generator: source of every random number (``x_T`` and each ``z``).
        dtype: dtype of the drawn start (None: ``torch.float32``); with ``x_T`` it must be None or
            ``x_T``'s dtype (a ``ValueError`` otherwise: the sampler runs in ``x_T``'s dtype).
        on_step: called with the start and each state ``x_{T-1}, …, x_0``
            (:class:`~minidiff.samplers.loop.SamplerState`; :func:`trajectory` collects them).
    Returns:
        ``x_0``, shaped like the start.
    """
    model = clip_eps_model(eps_model, schedule, clip_x0)
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)

    def step(x: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        tt = batch_time(x, t)
        return _ancestral_step(model, x, tt, schedule, variance, noise_like(x, generator))

    times = [(t, t - 1) for t in range(schedule.T, 0, -1)]
    return run_sampler(step, x, times, name="ddpm_sample", on_step=on_step, progress=progress)
