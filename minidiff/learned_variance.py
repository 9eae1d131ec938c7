"""Learned reverse variances and the hybrid objective (Nichol & Dhariwal 2021, Improved DDPM).

DDPM fixes the reverse variance to ``beta_t`` or ``beta_tilde_t``; both are fine with 1000 steps,
but on a short (strided) chain the best variance lies between them and depends on the data.
Improved DDPM lets the network output, next to ``eps``, one number ``v`` per dimension that
interpolates *in the log domain* (Eq. 15):

    Sigma_theta(x_t, t) = exp(v log beta_t + (1 - v) log beta_tilde_t)

(the authors' code reads the raw output ``r`` as ``v = (r + 1) / 2``, so ``r = 0`` is the
geometric mean; ``log beta_tilde_1`` is replaced by ``log beta_tilde_2`` because
``beta_tilde_1 = 0``). ``L_simple`` does not depend on ``Sigma``, so the variance is trained by the
bound: ``L_hybrid = L_simple + lambda L_vlb`` with ``lambda = 0.001`` (Eq. 16), where ``L_vlb``
is estimated at the same random ``t`` as ``T · L_{t-1}`` and the mean inside it is a
*stop-gradient*: the bound trains only ``Sigma``, ``L_simple`` only the mean.

On a respaced chain ``tau_1 < … < tau_S`` (:func:`~minidiff.samplers.ddim.respace_schedule`) the
same output ``v`` interpolates between the *respaced* ``beta'_i`` and ``beta_tilde'_i``; that is
how a variance learned on 1000 steps is used on 10.

Networks: :class:`HybridMLP` returns ``(B, 2D)``: ``eps`` then the raw variance output ``r``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._validation import FloatTensor, Function, Number, Rng, check_timesteps, checked
from .diffusion import p_mean_var, q_posterior_mean_var, q_sample
from .losses import VLBTerms, gaussian_kl, gaussian_log_likelihood, sample_timesteps
from .nn import TimeMLP
from .schedules import NoiseSchedule
from .tensors import noise_like, sum_data_dims

__all__ = [
    "HybridMLP",
    "split_output",
    "interpolated_log_variance",
    "hybrid_loss",
    "learned_vlb_terms",
]

HybridModel = Callable[[Tensor, Tensor], Tensor]
"""``model(x_t (B, D), t (B,) long) -> (B, 2D)``: ``eps`` in the first ``D`` columns, then ``r``."""


class HybridMLP(TimeMLP):
    """:class:`~minidiff.nn.TimeMLP` with a second head: ``(B, D) -> (B, 2D)`` = ``[eps, r]``.

    Both heads start at zero (``eps = 0``, ``r = 0``: the geometric mean of ``beta`` and
    ``beta_tilde``). Arguments as for ``TimeMLP``.
    """

    def __init__(self, data_dim: int = 2, **kwargs: object) -> None:
        super().__init__(data_dim, **kwargs)  # type: ignore[arg-type]
        self.output = torch.nn.Linear(self.hidden, 2 * data_dim)
        torch.nn.init.zeros_(self.output.weight)
        torch.nn.init.zeros_(self.output.bias)


@checked(out=FloatTensor(min_dim=2))
def split_output(out: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, 2D) -> (eps (B, D), r (B, D))``: the two halves of a hybrid model's output.

    ``out`` must be a floating tensor (``TypeError`` otherwise) with an even dimension 1
    (``ValueError``).
    """
    if out.shape[1] % 2:
        raise ValueError(
            f"out must be a hybrid model's output (B, 2D) = [eps, r] (an even dimension 1), "
            f"got {tuple(out.shape)}"
        )
    eps, r = out.chunk(2, dim=1)
    return eps, r


def _split_like(out: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`split_output` after checking that ``out`` is ``(B, 2D)`` for data ``x: (B, D)``
    (a plain ``eps`` model would otherwise be split into two halves of the wrong width)."""
    expected = (x.shape[0], 2 * x.shape[1], *x.shape[2:])
    if not isinstance(out, Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"model must return (B, 2D) = {expected}: [eps, r] for data of shape "
            f"{tuple(x.shape)}, got {got}"
        )
    return split_output.unchecked(out)


def _log_variance_bounds(schedule: NoiseSchedule) -> tuple[Tensor, Tensor]:
    """``(log beta_tilde clipped, log beta)``, float64 ``(T + 1,)``; index 0 unused."""
    tilde = schedule.posterior_variance.clone()
    tilde[1] = tilde[2] if schedule.T > 1 else schedule.betas[1]
    tilde[0] = 1.0
    betas = schedule.betas.clone()
    betas[0] = 1.0
    return tilde.log(), betas.log()


@checked(r=FloatTensor(), schedule=NoiseSchedule)
def interpolated_log_variance(r: Tensor, t: Tensor | int, schedule: NoiseSchedule) -> Tensor:
    """``log Sigma = v log beta_t + (1 - v) log beta_tilde_t`` with ``v = (r + 1) / 2`` (Eq. 15).

    ``r: (B, ...)`` the network's raw variance output, ``t: (B,)`` long in ``1..T``. Returns
    ``(B, ...)`` in ``r``'s dtype. ``r = 1`` gives ``beta``, ``r = -1`` gives ``beta_tilde``
    (clipped at ``t = 1``); values outside ``[-1, 1]`` extrapolate, as in the paper.
    """
    tt = check_timesteps(t, r.shape[0], schedule.T).to(r.device)
    return _log_var(r, tt, schedule)


def _log_var(r: Tensor, tt: Tensor, schedule: NoiseSchedule) -> Tensor:
    lo, hi = _log_variance_bounds(schedule)
    lo = schedule.gather(lo, tt, r.dim(), like=r)
    hi = schedule.gather(hi, tt, r.dim(), like=r)
    frac = (r + 1) / 2
    return frac * hi + (1 - frac) * lo


def _step_terms(
    model: HybridModel,
    x0: Tensor,
    x_t: Tensor,
    tt: Tensor,
    schedule: NoiseSchedule,
    eps: Tensor | None = None,
) -> Tensor:
    """Per-sample ``L_{t-1}`` (KL for ``t >= 2``, ``-log p(x0 | x_1)`` at ``t = 1``) with the
    learned variance; the mean comes from ``eps`` (given: it may be detached) or the model."""
    out_eps, r = _split_like(model(x_t, tt), x_t)
    eps = out_eps if eps is None else eps
    mean_p, _ = p_mean_var.unchecked(lambda *_: eps, x_t, tt, schedule, "beta")
    var_p = _log_var(r, tt, schedule).exp()
    mean_q, var_q = q_posterior_mean_var.unchecked(x0, x_t, tt, schedule)
    first = (tt == 1).reshape(-1, *([1] * (x0.dim() - 1)))
    safe_var_q = torch.where(first, torch.ones_like(var_q), var_q)
    kl = gaussian_kl.unchecked(mean_q, safe_var_q.expand_as(x0), mean_p, var_p)
    nll = -gaussian_log_likelihood.unchecked(x0, mean_p, var_p)
    return sum_data_dims(torch.where(first, nll, kl))


@checked(
    model=Function("(x_t, t) -> [eps, r]"),
    x0=FloatTensor(finite=True, nonempty=True),
    schedule=NoiseSchedule,
    lambda_vlb=Number(low=0.0, low_open=False),
    generator=Rng,
)
def hybrid_loss(
    model: HybridModel,
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    lambda_vlb: float = 1e-3,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``L_hybrid = L_simple + lambda_vlb · T · L_{t-1}`` at one random ``t`` per sample (Eq. 16).

    ``L_simple`` is the mean squared error of the ``eps`` head (per dimension); ``L_{t-1}`` is the
    bound's term with the *detached* ``eps`` (stop-gradient on the mean) and the learned variance,
    per data dimension, in nats. With ``lambda_vlb = 0`` this is ``L_simple``. Draws ``t`` (uniform
    in ``1..T``) then the noise from ``generator``. ``x0: (B, D)``.
    """
    tt = sample_timesteps(x0.shape[0], schedule.T, generator, x0.device)
    eps = noise_like(x0, generator)
    x_t = q_sample.unchecked(x0, tt, schedule, eps)
    eps_hat, r = _split_like(model(x_t, tt), x_t)
    l_simple = ((eps - eps_hat) ** 2).mean()
    if lambda_vlb == 0:
        return l_simple
    frozen = lambda *_: torch.cat([eps_hat.detach(), r], dim=1)  # noqa: E731
    l_vlb = _step_terms(frozen, x0, x_t, tt, schedule) / x0[0].numel()
    return l_simple + lambda_vlb * schedule.T * l_vlb.mean()


@checked(
    model=Function("(x_t, t) -> [eps, r]"),
    x0=FloatTensor(finite=True, nonempty=True),
    schedule=NoiseSchedule,
    generator=Rng,
)
def learned_vlb_terms(
    model: HybridModel,
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
) -> VLBTerms:
    """Every term of the bound for each ``x0`` with the learned variance (Gaussian decoder).

    The same Monte Carlo estimate as :func:`minidiff.vlb_terms` (one fresh ``x_t ~ q(x_t | x_0)``
    per ``t``, the KLs exact), with ``p_theta(x_{t-1} | x_t) = N(mu_theta, Sigma_theta)`` and the
    decoder ``N(x_0; mu_theta(x_1, 1), Sigma_theta(x_1, 1))``. Pass a respaced model and schedule
    for the bound of a strided chain. ``x0: (B, D)``; in nats, one value per sample.
    """
    B, T = x0.shape[0], schedule.T
    a_T = math.sqrt(float(schedule.alpha_bar[T]))
    L_T = sum_data_dims(
        gaussian_kl.unchecked(
            a_T * x0, torch.full_like(x0, 1 - a_T**2), x0.new_zeros(()), x0.new_ones(())
        )
    )
    L_t = torch.zeros(B, max(T - 1, 0), dtype=x0.dtype, device=x0.device)
    with torch.no_grad():
        for t in range(2, T + 1):
            tt = torch.full((B,), t, dtype=torch.long, device=x0.device)
            x_t = q_sample.unchecked(x0, tt, schedule, noise_like(x0, generator))
            L_t[:, t - 2] = _step_terms(model, x0, x_t, tt, schedule)
        t1 = torch.ones(B, dtype=torch.long, device=x0.device)
        x_1 = q_sample.unchecked(x0, t1, schedule, noise_like(x0, generator))
        L_0 = _step_terms(model, x0, x_1, t1, schedule)
    return VLBTerms(L_T=L_T, L_t=L_t, L_0=L_0, total=L_T + L_t.sum(dim=1) + L_0)
