"""Ancestral sampling (Ho et al. 2020, Algorithm 2).

    x_T ~ N(0, I)
    for t = T, …, 1:
        z ~ N(0, I) if t > 1 else 0
        x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) · eps_theta(x_t, t)) / sqrt(alpha_t)
                  + sigma_t z

``diffusers`` calls one iteration ``DDPMScheduler.step``.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .._validation import (
    check_all_finite,
    check_callable,
    check_choice,
    check_device,
    check_float_dtype,
    check_generator,
    check_instance,
    check_noise,
    check_shape,
    check_tensor,
    check_timesteps,
)
from ..diffusion import (
    VARIANCES,
    EpsModel,
    call_eps_model,
    model_variance,
)
from ..schedules import NoiseSchedule
from ..tensors import noise_like
from .clipping import clip_eps, resolve_clip
from .registry import register_sampler

__all__ = ["ddpm_step", "ddpm_sample", "NonFiniteSampleError"]


class NonFiniteSampleError(ValueError):
    """Raised when a sampler produces NaN or infinity; the message names the step."""


def ddpm_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "beta",
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: object = None,
) -> torch.Tensor:
    """One ancestral step ``x_t -> x_{t-1}`` given the model's ``eps`` prediction.

    ``x_{t-1} = mu_theta(x_t, t) + sigma_t z`` with ``sigma_t² = beta_t`` or ``beta_tilde_t``; no
    noise is added where ``t == 1`` (the last step returns the mean). Shapes:
    ``x_t, eps: (B, ...)``, ``t: (B,)``. ``clip_x0`` (None, ``"static"``, ``"dynamic"`` or a map
    ``x̂₀ -> x̂₀``): the mean becomes the posterior mean ``μ̃_t(x_t, clip(x̂₀))``, see
    :mod:`minidiff.samplers.clipping`.
    """
    check_choice(variance, "variance", VARIANCES)
    clip = resolve_clip(clip_x0)
    check_tensor(x_t, "x_t")
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    tt = check_timesteps(t, x_t.shape[0], sched.T).to(x_t.device)
    check_tensor(eps, "eps")
    if eps.shape != x_t.shape:
        raise ValueError(
            f"eps must have the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}"
        )
    check_all_finite((x_t, "x_t"), (eps, "eps"))
    z = check_noise(noise, x_t, "x_t", generator)
    if clip is not None:
        eps = clip_eps(x_t, tt, eps, sched, clip)
    return _ddpm_step(x_t, tt, eps, sched, variance, z)


def _ddpm_step(
    x_t: torch.Tensor,
    tt: torch.Tensor,
    eps: torch.Tensor,
    sched: NoiseSchedule,
    variance: str,
    z: torch.Tensor,
) -> torch.Tensor:
    """:func:`ddpm_step` without the checks: the sampler's loop, over inputs it has checked once."""
    nd = x_t.dim()
    beta = sched.gather(sched.betas, tt, nd, like=x_t)
    s = sched.gather(sched.sqrt_one_minus_alpha_bar, tt, nd, like=x_t)
    sqrt_alpha = sched.gather(sched.alphas.sqrt(), tt, nd, like=x_t)
    mean = (x_t - beta / s * eps) / sqrt_alpha
    sigma = model_variance(tt, sched, variance, nd, like=x_t).sqrt()
    not_last = (tt > 1).to(x_t.dtype).reshape(-1, *([1] * (nd - 1)))
    return mean + not_last * sigma * z


@register_sampler("ddpm")
def ddpm_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    variance: str = "beta",
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    clip_x0: object = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Draw ``shape[0]`` samples with T ancestral steps (Algorithm 2); 1 network call per step.

    Args:
        eps_model: callable ``(x_t (B, ...), t (B,) long) -> eps (B, ...)``.
        shape: shape of the batch to generate, e.g. ``(10_000, 2)``.
        variance: ``"beta"`` or ``"beta_tilde"`` for ``sigma_t²``.
        generator: source of every random number (``x_T`` and each ``z``).
        return_trajectory: also return ``[x_T, x_{T-1}, …, x_0]`` (``T + 1`` tensors).
        clip_x0: None (the maths of chapters 2–8), ``"static"`` (clamp ``x̂₀`` to ``[-1, 1]``),
            ``"dynamic"`` (Imagen's thresholding) or a map ``x̂₀ -> x̂₀``; for images in
            ``[-1, 1]`` (:mod:`minidiff.samplers.clipping`).
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    check_choice(variance, "variance", VARIANCES)
    clip = resolve_clip(clip_x0)
    check_instance(schedule, "schedule", NoiseSchedule)
    shape = check_shape(shape)
    check_generator(generator)
    device = check_device(device)
    check_float_dtype(dtype)
    if device is None:
        device = generator.device if generator is not None else "cpu"
    gen_device = generator.device if generator is not None else device
    x = torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)
    trajectory = [x] if return_trajectory else []
    steps = range(schedule.T, 0, -1)
    with torch.no_grad():
        for t in tqdm(steps, desc="DDPM", disable=not progress, leave=False):
            tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
            eps = call_eps_model(eps_model, x, tt)
            if clip is not None:
                eps = clip_eps(x, tt, eps, schedule, clip)
            x = _ddpm_step(x, tt, eps, schedule, variance, noise_like(x, generator))
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteSampleError(
                    f"ddpm_sample produced non-finite values at step t={t} (of T={schedule.T})"
                )
            if return_trajectory:
                trajectory.append(x)
    return (x, trajectory) if return_trajectory else x
