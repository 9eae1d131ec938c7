"""``L_simple``: predict the noise (Ho et al. 2020, Eq. 14), in discrete and in continuous time.

    L_simple  = E_{t, x_0, eps} || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t) ||²
                t ~ Uniform{1..T} (Algorithm 1)                                 -> simple_loss
    continuous: t ~ U[t_min, 1], (alpha, sigma) = marginal coefficients of a VP-SDE,
                x_t = alpha x_0 + sigma eps                                     -> vp_eps_loss

Both average over the batch and the data dimensions. At the optimum the model predicts
``E[eps | x_t] = -sigma_t ∇log p_t(x_t)``. Drawing ``t`` non-uniformly (:func:`sample_timesteps`
with ``power != 1``) weights the same objective by ``T P(t)`` (:func:`timestep_probabilities`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validation import (
    Check,
    Device,
    FloatTensor,
    Function,
    Int,
    Number,
    Rng,
    Timesteps,
    checked,
    describe,
)
from ..diffusion import EpsModel, call_eps_model, q_sample
from ..schedules import NoiseSchedule
from ..tensors import mean_data_dims, noise_like, pad_like, uniform

__all__ = ["simple_loss", "sample_timesteps", "timestep_probabilities", "vp_eps_loss"]


@checked(batch_size=Int(), T=Int(), generator=Rng, device=Device, power=Number(low=0.0))
def sample_timesteps(
    batch_size: int,
    T: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    power: float = 1.0,
) -> torch.Tensor:
    """``t ~ Uniform{1, …, T}`` as a long tensor ``(batch_size,)`` (Algorithm 1, line 3).

    With ``power = p != 1``, ``t = min(T, floor(T u^p) + 1)`` for ``u ~ Uniform[0, 1)``: small
    ``t`` (little noise, where thin structures are resolved) are drawn more often for ``p > 1``,
    with probabilities :func:`timestep_probabilities`. Training on these ``t`` minimises
    ``L_simple`` weighted by ``w_t = T P(t)``: the same minimiser for a model that can fit every
    ``t``, a different share of a small model's capacity (Kingma & Gao, 2023, read every such
    weighting as an ELBO over augmented data; Karras et al., 2022, draw noise levels log-normally
    for the same reason). Drawn on the generator's device, returned on ``device``.
    """
    gen_device = generator.device if generator is not None else "cpu"
    if power == 1.0:  # the stream of draws every uniform run has used
        t = torch.randint(1, T + 1, (batch_size,), generator=generator, device=gen_device)
    else:
        u = uniform((batch_size,), generator=generator, dtype=torch.float64, device=gen_device)
        t = (T * u**power).long().clamp(max=T - 1) + 1
    return t.to(device or gen_device)


@checked(T=Int(), power=Number(low=0.0))
def timestep_probabilities(T: int, power: float = 1.0) -> torch.Tensor:
    """``P(t = k) = (k / T)^(1/p) - ((k - 1) / T)^(1/p)`` for ``k = 1..T``: the law of
    :func:`sample_timesteps` with ``power = p``, as a ``(T + 1,)`` float64 tensor (index 0 is 0).

    ``T * P`` is the weighting of ``L_simple`` that drawing ``t`` this way trains; ``p = 1`` gives
    ``1 / T`` everywhere.
    """
    cdf = (torch.arange(T + 1, dtype=torch.float64) / T) ** (1.0 / power)
    probs = torch.zeros(T + 1, dtype=torch.float64)
    probs[1:] = cdf[1:] - cdf[:-1]
    return probs


def _timestep_weights(weights: Any, name: str, schedule: NoiseSchedule) -> torch.Tensor:
    """A ``(T + 1,)`` tensor (or sequence) of finite weights ``>= 0``, one per ``t``."""
    expected = f"a tensor of shape ({schedule.T + 1},)"
    if not isinstance(weights, (torch.Tensor, list, tuple)):
        raise TypeError(f"{name} must be {expected}, got {describe(weights)}")
    try:
        w = torch.as_tensor(weights)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be {expected}, got {describe(weights)}") from exc
    if w.shape != (schedule.T + 1,):
        raise ValueError(
            f"{name} must have shape ({schedule.T + 1},) (one per t, index 0 unused), "
            f"got {tuple(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"{name} must be finite and >= 0")
    return w


@checked(
    eps_model=Function("(x_t, t) -> eps"),
    x0=FloatTensor(finite=True),
    schedule=NoiseSchedule,
    t=Timesteps(of="x0", optional=True),
    noise=FloatTensor(like="x0", finite=True, optional=True),
    generator=Rng,
    weights=Check(_timestep_weights, uses=("schedule",), optional=True),
)
def simple_loss(
    eps_model: EpsModel,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``L_simple = E_{t, x_0, eps} ||eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1-ab_t) eps, t)||²``
    (Eq. 14).

    Averaged over the batch and the data dimensions. ``t`` defaults to uniform draws in ``1..T``
    (drawn first, then ``eps``, both from ``generator``, which may be given 4th like the other
    losses' ``(model, x0, schedule_or_sde, generator)``; ``t``, ``noise`` and ``weights`` are
    keyword-only); ``weights`` (a ``(T + 1,)`` tensor such
    as :func:`~minidiff.losses.elbo.vlb_weights`) turns it into a weighted objective
    ``E[w_t ||eps - eps_theta||²]``. Returns a scalar with gradients for training.
    """
    if t is None:
        t = sample_timesteps.unchecked(x0.shape[0], schedule.T, generator, x0.device)
    eps = noise if noise is not None else noise_like(x0, generator)
    x_t = q_sample.unchecked(x0, t, schedule, eps)
    per_sample = mean_data_dims((eps - call_eps_model(eps_model, x_t, t)) ** 2)
    if weights is not None:
        per_sample = per_sample * weights.to(x0.device, x0.dtype)[t]
    return per_sample.mean()


def _vp_sde(sde: Any, name: str) -> Any:
    if not callable(getattr(sde, "marginal_coefficients", None)):
        raise TypeError(
            f"{name} must have a marginal_coefficients(t) -> (alpha, sigma) method, "
            f"got {describe(sde)}"
        )
    return sde


@checked(
    model=Function("(x_t, t) -> eps"),
    x0=FloatTensor(finite=True),
    sde=Check(_vp_sde),
    generator=Rng,
    t_min=Number(low=0.0, low_open=False, optional=True),
    t=FloatTensor(dim=1, finite=True, optional=True),
    noise=FloatTensor(like="x0", finite=True, optional=True),
)
def vp_eps_loss(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    sde: Any,
    generator: torch.Generator | None = None,
    *,
    t_min: float | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Continuous-time ε-prediction loss on VP-SDE marginals (Song et al. 2021; Ho et al. 2020).

    ``t ~ U[t_min, T_end]``, ``(α, σ) = sde.marginal_coefficients(t)``, ``x_t = α x0 + σ ε`` and

        loss = E ||ε - model(x_t, t)||²   (mean over batch and data dims, like ``simple_loss``)

    At the optimum ``model(x, t) = E[ε | x_t = x] = -σ(t) ∇log p_t(x)``.

    Args:
        model: ``model(x_t (B, ...), t (B,) float) -> (B, ...)``, e.g. ``TimeMLP(time_scale=1000)``.
        x0: clean data ``(B, ...)``.
        sde: any object with ``marginal_coefficients(t (B,)) -> (alpha (B,), sigma (B,))`` (e.g.
            ``minidiff.sde.VPSDE``); ``T_end`` (default 1) and ``t_min`` (the default smallest
            time) are read if present.
        t_min: smallest time drawn (default the SDE's, else ``1e-3``): ``σ(t) -> 0`` at ``t = 0``.
        t: ``(B,)`` times (instead of drawing them); noise: ``ε`` of the shape of ``x0``.
    """
    B = x0.shape[0]
    t_end = float(getattr(sde, "T_end", 1.0))
    if t_min is None:
        t_min = float(getattr(sde, "t_min", 1e-3))
    if t_min >= t_end:
        raise ValueError(f"t_min must lie in [0, {t_end}) (below the SDE's T_end), got {t_min}")
    if t is None:
        u = uniform((B,), generator=generator, dtype=x0.dtype, device=x0.device)
        tt = t_min + (t_end - t_min) * u
    else:
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t > t_end).any()):
            raise ValueError(f"t must lie in [0, {t_end}]")
        tt = t.to(device=x0.device, dtype=x0.dtype)
    eps = noise if noise is not None else noise_like(x0, generator)
    alpha, sigma = _marginal_coefficients(sde, tt, B, x0)
    x_t = pad_like(alpha, x0) * x0 + pad_like(sigma, x0) * eps
    out = call_eps_model(model, x_t, tt, name="model")
    return mean_data_dims((eps - out) ** 2).mean()


def _marginal_coefficients(
    sde: Any, t: torch.Tensor, B: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sde.marginal_coefficients(t)`` as two ``(B,)`` tensors in ``like``'s dtype and device."""
    alpha, sigma = sde.marginal_coefficients(t)
    alpha = torch.as_tensor(alpha, dtype=like.dtype, device=like.device).reshape(-1)
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device).reshape(-1)
    if alpha.numel() == 1:
        alpha, sigma = alpha.expand(B), sigma.expand(B)
    if alpha.shape != (B,) or sigma.shape != (B,):
        raise ValueError(
            f"sde.marginal_coefficients(t) must return two ({B},) tensors, "
            f"got {tuple(alpha.shape)}, {tuple(sigma.shape)}"
        )
    return alpha, sigma
