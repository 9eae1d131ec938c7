"""The forward process, its Gaussian posterior, and the conversions between parameterisations.

Names follow the lectures (and Ho et al. 2020):

    q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)             -> q_step
    q(x_t | x_0)     = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)  -> q_sample
    q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)             -> q_posterior_mean_var
    mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
               + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    x_0   = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)     -> predict_x0_from_eps
    score = -eps / sqrt(1 - alpha_bar_t)                              -> score_from_eps
    p_theta(x_{t-1} | x_t) = N((x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_t),
                               sigma_t^2 I)

Shapes: ``x: (B, ...)`` (``(B, 2)`` for toys, ``(B, C, H, W)`` for images), ``t: (B,)`` long in
``1..T``. ``diffusers`` calls ``q_sample`` ``scheduler.add_noise``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._validation import (
    call_like,
    check_all_finite,
    check_callable,
    check_choice,
    check_finite,
    check_generator,
    check_same_shape,
    check_tensor,
)
from .schedules import NoiseSchedule, check_timesteps

__all__ = [
    "EpsModel",
    "VARIANCES",
    "q_sample",
    "q_step",
    "q_posterior_mean_var",
    "predict_x0_from_eps",
    "eps_from_x0",
    "score_from_eps",
    "eps_from_score",
    "model_variance",
    "p_mean_var",
    "call_eps_model",
]

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Any callable ``eps_model(x_t: (B, ...), t: (B,) long in 1..T) -> eps: (B, ...)``."""

VARIANCES = ("beta", "beta_tilde")


def _check_schedule(schedule: object) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    return schedule


def _prepare(
    x: torch.Tensor, t: object, schedule: object, name: str = "x"
) -> tuple[torch.Tensor, NoiseSchedule]:
    check_tensor(x, name)
    sched = _check_schedule(schedule)
    tt = check_timesteps(t, x.shape[0], sched.T)
    return tt.to(x.device), sched


def _noise_like(
    x: torch.Tensor,
    noise: torch.Tensor | None,
    generator: torch.Generator | None,
    x_name: str = "x",
) -> torch.Tensor:
    check_generator(generator)
    if noise is None:
        gen_device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gen_device).to(
            x.device
        )
    check_tensor(noise, "noise")
    check_same_shape(x, noise, x_name, "noise")
    check_finite(noise, "noise")
    return noise


def q_sample(
    x0: torch.Tensor,
    t: torch.Tensor | int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample ``x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)`` in one shot.

    Args:
        x0: clean data ``(B, ...)``.
        t: timesteps ``(B,)`` (long, ``1..T``) or an int for the whole batch.
        noise: optional ``eps ~ N(0, I)`` of the same shape (drawn with ``generator`` if omitted).
    Returns:
        ``x_t`` of the same shape as ``x0``.
    """
    tt, sched = _prepare(x0, t, schedule, "x0")
    check_finite(x0, "x0")
    return _q_sample(x0, tt, sched, _noise_like(x0, noise, generator, "x0"))


def _q_sample(
    x0: torch.Tensor, tt: torch.Tensor, sched: NoiseSchedule, eps: torch.Tensor
) -> torch.Tensor:
    """:func:`q_sample` without checks, for loops over checked inputs (``tt`` a long tensor)."""
    a = sched.gather(sched.sqrt_alpha_bar, tt, x0.dim(), like=x0)
    s = sched.gather(sched.sqrt_one_minus_alpha_bar, tt, x0.dim(), like=x0)
    return a * x0 + s * eps


def q_step(
    x_prev: torch.Tensor,
    t: torch.Tensor | int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One forward step ``x_t ~ q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)``.

    ``x_prev`` is ``x_{t-1}`` with shape ``(B, ...)``; ``t`` the index of the *new* state.
    """
    tt, sched = _prepare(x_prev, t, schedule, "x_prev")
    check_finite(x_prev, "x_prev")
    eps = _noise_like(x_prev, noise, generator, "x_prev")
    a = sched.gather(sched.alphas.sqrt(), tt, x_prev.dim(), like=x_prev)
    b = sched.gather(sched.betas.sqrt(), tt, x_prev.dim(), like=x_prev)
    return a * x_prev + b * eps


def q_posterior_mean_var(
    x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)``.

    Derived by completing the square (chapter 2). Returns ``mean`` with the shape of ``x_t`` and
    ``var`` of shape ``(B, 1, …, 1)`` (isotropic). At ``t = 1`` the posterior is a point mass at
    ``x_0`` (``beta_tilde_1 = 0``).
    """
    tt, sched = _prepare(x_t, t, schedule, "x_t")
    check_tensor(x0, "x0")
    check_same_shape(x_t, x0, "x_t", "x0")
    check_all_finite((x0, "x0"), (x_t, "x_t"))
    return _q_posterior_mean_var(x0, x_t, tt, sched)


def _q_posterior_mean_var(
    x0: torch.Tensor, x_t: torch.Tensor, tt: torch.Tensor, sched: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`q_posterior_mean_var` without checks (``tt`` a long tensor)."""
    c0 = sched.gather(sched.posterior_mean_coef_x0, tt, x_t.dim(), like=x_t)
    ct = sched.gather(sched.posterior_mean_coef_xt, tt, x_t.dim(), like=x_t)
    var = sched.gather(sched.posterior_variance, tt, x_t.dim(), like=x_t)
    return c0 * x0 + ct * x_t, var


def predict_x0_from_eps(
    x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """``x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`` (invert ``q_sample``)."""
    tt, sched = _prepare(x_t, t, schedule, "x_t")
    check_tensor(eps, "eps")
    check_same_shape(x_t, eps, "x_t", "eps")
    check_all_finite((x_t, "x_t"), (eps, "eps"))
    a = sched.gather(sched.sqrt_alpha_bar, tt, x_t.dim(), like=x_t)
    s = sched.gather(sched.sqrt_one_minus_alpha_bar, tt, x_t.dim(), like=x_t)
    return (x_t - s * eps) / a


def eps_from_x0(
    x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """``eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)``."""
    tt, sched = _prepare(x_t, t, schedule, "x_t")
    check_tensor(x0, "x0")
    check_same_shape(x_t, x0, "x_t", "x0")
    check_all_finite((x_t, "x_t"), (x0, "x0"))
    a = sched.gather(sched.sqrt_alpha_bar, tt, x_t.dim(), like=x_t)
    s = sched.gather(sched.sqrt_one_minus_alpha_bar, tt, x_t.dim(), like=x_t)
    return (x_t - a * x0) / s


def score_from_eps(
    eps: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> torch.Tensor:
    """``∇ log q(x_t) = -E[eps | x_t] / sqrt(1 - alpha_bar_t)`` (Tweedie; chapter 6)."""
    tt, sched = _prepare(eps, t, schedule, "eps")
    check_finite(eps, "eps")
    return -eps / sched.gather(sched.sqrt_one_minus_alpha_bar, tt, eps.dim(), like=eps)


def eps_from_score(
    score: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> torch.Tensor:
    """``eps = -sqrt(1 - alpha_bar_t) · score`` (inverse of :func:`score_from_eps`)."""
    tt, sched = _prepare(score, t, schedule, "score")
    check_finite(score, "score")
    return -score * sched.gather(sched.sqrt_one_minus_alpha_bar, tt, score.dim(), like=score)


def model_variance(
    t: torch.Tensor,
    schedule: NoiseSchedule,
    variance: str,
    ndim: int,
    *,
    like: torch.Tensor,
    for_density: bool = False,
) -> torch.Tensor:
    """The reverse-step variance ``sigma_t^2``: ``beta_t`` or ``beta_tilde_t``, shape ``(B, 1, …)``.

    Ho et al. (2020, Sec. 3.2) found both choices give similar samples: ``beta`` is optimal when
    ``x_0 ~ N(0, I)``, ``beta_tilde`` when ``x_0`` is a point mass. ``beta_tilde_1 = 0``, so when a
    density is needed at ``t = 1`` (``for_density=True``), ``beta_1`` is used instead.
    """
    check_choice(variance, "variance", VARIANCES)
    if variance == "beta":
        values = schedule.betas
    else:
        values = schedule.posterior_variance
        if for_density:
            values = values.clone()
            values[1] = schedule.betas[1]
    return schedule.gather(values, t, ndim, like=like)


def call_eps_model(
    eps_model: EpsModel, x_t: torch.Tensor, t: torch.Tensor, name: str = "eps_model"
) -> torch.Tensor:
    """Call a model and check that it returned a tensor of the same shape as ``x_t``."""
    check_callable(eps_model, name, "(x_t, t) -> eps")
    return call_like(eps_model, x_t, t, name=name, like="x_t")


def p_mean_var(
    eps_model: EpsModel,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    schedule: NoiseSchedule,
    variance: str = "beta",
    *,
    for_density: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the learned reverse step ``p_theta(x_{t-1} | x_t)``.

    ``mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) · eps_theta(x_t, t)) / sqrt(alpha_t)``
    (Ho et al. 2020, Eq. 11): the posterior mean ``mu_tilde`` with ``x_0`` replaced by its
    ε-prediction. Returns ``(mean (B, ...), var (B, 1, …, 1))``.
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    check_choice(variance, "variance", VARIANCES)
    tt, sched = _prepare(x_t, t, schedule, "x_t")
    check_finite(x_t, "x_t")
    return _p_mean_var(eps_model, x_t, tt, sched, variance, for_density=for_density)


def _p_mean_var(
    eps_model: EpsModel,
    x_t: torch.Tensor,
    tt: torch.Tensor,
    sched: NoiseSchedule,
    variance: str,
    *,
    for_density: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`p_mean_var` without the argument checks (``tt`` a long tensor)."""
    eps = call_eps_model(eps_model, x_t, tt)
    beta = sched.gather(sched.betas, tt, x_t.dim(), like=x_t)
    s = sched.gather(sched.sqrt_one_minus_alpha_bar, tt, x_t.dim(), like=x_t)
    sqrt_alpha = sched.gather(sched.alphas.sqrt(), tt, x_t.dim(), like=x_t)
    mean = (x_t - beta / s * eps) / sqrt_alpha
    var = model_variance(tt, sched, variance, x_t.dim(), like=x_t, for_density=for_density)
    return mean, var
