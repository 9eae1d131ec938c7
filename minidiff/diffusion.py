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
from typing import cast

import torch

from ._validation import (
    Check,
    Flag,
    FloatTensor,
    Function,
    OneOf,
    Rng,
    Timesteps,
    call_like,
    checked,
    value_checks_enabled,
)
from .schedules import NoiseSchedule
from .tensors import noise_like

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
    "marginal_coefficients",
    "model_variance",
    "p_mean_var",
    "call_eps_model",
]

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""Any callable ``eps_model(x_t: (B, ...), t: (B,) long in 1..T) -> eps: (B, ...)``."""

VARIANCES = ("beta", "beta_tilde")

# The specs most functions here share (see minidiff._validation for the dialect).
_X = FloatTensor(finite=True)


@checked(
    x0=_X,
    t=Timesteps(of="x0"),
    schedule=NoiseSchedule,
    noise=FloatTensor(like="x0", finite=True, optional=True),
    generator=Rng,
)
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
    eps = noise if noise is not None else noise_like(x0, generator)
    a = schedule.gather(schedule.sqrt_alpha_bar, t, x0.dim(), like=x0)
    s = schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, x0.dim(), like=x0)
    return a * x0 + s * eps


@checked(
    x_prev=_X,
    t=Timesteps(of="x_prev"),
    schedule=NoiseSchedule,
    noise=FloatTensor(like="x_prev", finite=True, optional=True),
    generator=Rng,
)
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
    eps = noise if noise is not None else noise_like(x_prev, generator)
    a = schedule.gather(schedule.alphas.sqrt(), t, x_prev.dim(), like=x_prev)
    b = schedule.gather(schedule.betas.sqrt(), t, x_prev.dim(), like=x_prev)
    return a * x_prev + b * eps


@checked(
    x0=FloatTensor(like="x_t", finite=True),
    x_t=_X,
    t=Timesteps(of="x_t"),
    schedule=NoiseSchedule,
)
def q_posterior_mean_var(
    x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``q(x_{t-1} | x_t, x_0) = N(mu_tilde_t, beta_tilde_t I)``.

    Derived by completing the square (chapter 2). Returns ``mean`` with the shape of ``x_t`` and
    ``var`` of shape ``(B, 1, …, 1)`` (isotropic). At ``t = 1`` the posterior is a point mass at
    ``x_0`` (``beta_tilde_1 = 0``).
    """
    c0 = schedule.gather(schedule.posterior_mean_coef_x0, t, x_t.dim(), like=x_t)
    ct = schedule.gather(schedule.posterior_mean_coef_xt, t, x_t.dim(), like=x_t)
    var = schedule.gather(schedule.posterior_variance, t, x_t.dim(), like=x_t)
    return c0 * x0 + ct * x_t, var


@checked(
    x_t=_X, t=Timesteps(of="x_t"), eps=FloatTensor(like="x_t", finite=True), schedule=NoiseSchedule
)
def predict_x0_from_eps(
    x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """``x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)`` (invert ``q_sample``)."""
    a = schedule.gather(schedule.sqrt_alpha_bar, t, x_t.dim(), like=x_t)
    s = schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, x_t.dim(), like=x_t)
    return (x_t - s * eps) / a


@checked(
    x_t=_X, t=Timesteps(of="x_t"), x0=FloatTensor(like="x_t", finite=True), schedule=NoiseSchedule
)
def eps_from_x0(
    x_t: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """``eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)``."""
    a = schedule.gather(schedule.sqrt_alpha_bar, t, x_t.dim(), like=x_t)
    s = schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, x_t.dim(), like=x_t)
    return (x_t - a * x0) / s


@checked(eps=_X, t=Timesteps(of="eps"), schedule=NoiseSchedule)
def score_from_eps(
    eps: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> torch.Tensor:
    """``∇ log q(x_t) = -E[eps | x_t] / sqrt(1 - alpha_bar_t)`` (Tweedie; chapter 6)."""
    return -eps / schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, eps.dim(), like=eps)


@checked(score=_X, t=Timesteps(of="score"), schedule=NoiseSchedule)
def eps_from_score(
    score: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule
) -> torch.Tensor:
    """``eps = -sqrt(1 - alpha_bar_t) · score`` (inverse of :func:`score_from_eps`)."""
    return -score * schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, score.dim(), like=score)


def _schedule_index(t: object, name: str, schedule: NoiseSchedule, lowest: int = 0) -> torch.Tensor:
    """``t`` (an int or an integer tensor) as a long tensor, in ``lowest..T`` (read back only
    where value checks are on: a sampler's loop skips them)."""
    if isinstance(t, bool) or not isinstance(t, (int, torch.Tensor)):
        raise TypeError(f"{name} must be an int or an integer tensor of timesteps, got {t!r}")
    tt = torch.as_tensor(t)
    if tt.is_floating_point() or tt.is_complex() or tt.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer timesteps, got dtype {tt.dtype}")
    if value_checks_enabled() and tt.numel():
        lo, hi = int(tt.min()), int(tt.max())
        if lo < lowest or hi > schedule.T:
            raise ValueError(f"{name} must lie in {lowest}..{schedule.T}, got {lo}..{hi}")
    return tt.long()


_SCHEDULE_T = Check(_schedule_index, uses=("schedule",))


@checked(schedule=NoiseSchedule, t=_SCHEDULE_T)
def marginal_coefficients(
    t: torch.Tensor | int, schedule: NoiseSchedule, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))``, two float64 tensors of ``t``'s shape: the
    scale and the noise level of ``q(x_t | x_0)``, for timesteps ``t`` in ``0..T``."""
    tt = torch.as_tensor(t).cpu()
    a, s = schedule.sqrt_alpha_bar[tt], schedule.sqrt_one_minus_alpha_bar[tt]
    return (a, s) if device is None else (a.to(device), s.to(device))


@checked(schedule=NoiseSchedule, t=_SCHEDULE_T, variance=OneOf(VARIANCES))
def model_variance(
    t: torch.Tensor | int,
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
    if variance == "beta":
        values = schedule.betas
    else:
        values = schedule.posterior_variance
        if for_density:
            values = values.clone()
            values[1] = schedule.betas[1]
    return schedule.gather(values, t, ndim, like=like)


@checked(eps_model=Function("(x_t, t) -> eps"))
def call_eps_model(
    eps_model: EpsModel, x_t: torch.Tensor, t: torch.Tensor, name: str = "eps_model"
) -> torch.Tensor:
    """Call a model and check that it returned a tensor of the same shape as ``x_t``."""
    return call_like(eps_model, x_t, t, name=name, like="x_t")


@checked(
    eps_model=Function("(x_t, t) -> eps"),
    x_t=_X,
    t=Timesteps(of="x_t"),
    schedule=NoiseSchedule,
    variance=OneOf(VARIANCES),
    for_density=Flag,
)
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

    ``variance``: ``"beta"`` (``sigma_t^2 = beta_t``) or ``"beta_tilde"`` (``sigma_t^2 =
    beta_tilde_t``, the posterior variance). ``beta_tilde_1 = 0``: the step to ``x_0`` is then
    deterministic, which is what a sampler wants but is no density, so
    ``gaussian_log_likelihood(x, mean, var)`` refuses ``var = 0``. ``for_density=True`` returns
    ``beta_1`` at ``t = 1`` instead (the Gaussian decoder of :func:`~minidiff.losses.vlb_terms`
    and ``affine_model_nll``) and changes nothing else: pass it whenever the variance at
    ``t = 1`` goes into a log-likelihood. It must be ``True`` or ``False``.
    """
    eps = call_eps_model.unchecked(eps_model, x_t, cast(torch.Tensor, t))  # @checked made t long
    nd = x_t.dim()
    beta = schedule.gather(schedule.betas, t, nd, like=x_t)
    s = schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, nd, like=x_t)
    sqrt_alpha = schedule.gather(schedule.alphas.sqrt(), t, nd, like=x_t)
    mean = (x_t - beta / s * eps) / sqrt_alpha
    var = model_variance.unchecked(t, schedule, variance, nd, like=x_t, for_density=for_density)
    return mean, var
