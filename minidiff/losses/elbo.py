"""The variational bound of chapter 3, term by term.

    -log p_theta(x_0) <= L = L_T + sum_{t=2}^{T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))
    L_{t-1} = E_q[ KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) ]
    L_0     = E_q[ -log p_theta(x_0 | x_1) ]

With the ε-parameterisation and fixed variance sigma_t^2 the KL terms become weighted squared
errors, ``L_{t-1} = lambda_t E||eps - eps_theta(x_t, t)||^2`` with
``lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))`` (Ho et al. 2020, Eq. 12,
:func:`vlb_weights`); dropping ``lambda_t`` gives ``L_simple`` (Eq. 14, in
:mod:`minidiff.losses.simple`). All terms are in nats, summed over data dimensions, one value per
sample. For a model that is affine in ``x_t`` the exact ``-log p_theta(x_0)`` is computable
(:func:`affine_model_nll`), so the bound can be compared with the true value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .._validation import FloatDtype, FloatTensor, Function, Int, OneOf, Rng, checked
from ..diffusion import (
    VARIANCES,
    EpsModel,
    model_variance,
    p_mean_var,
    q_posterior_mean_var,
    q_sample,
)
from ..schedules import NoiseSchedule
from ..tensors import noise_like, sum_data_dims

__all__ = [
    "gaussian_kl",
    "gaussian_log_likelihood",
    "discretized_gaussian_log_likelihood",
    "VLBTerms",
    "vlb_terms",
    "vlb_weights",
    "affine_reverse_marginal",
    "affine_model_nll",
]

DECODERS = ("gaussian", "discretized")

# Elementwise arguments broadcast together; a variance must be > 0.
_VALUES = FloatTensor(min_dim=0, broadcast=True, finite=True)
_VARIANCE = FloatTensor(min_dim=0, broadcast=True, finite=True, positive=True)
_EPS_MODEL = Function("(x_t, t) -> eps")


@checked(mean1=_VALUES, var1=_VARIANCE, mean2=_VALUES, var2=_VARIANCE)
def gaussian_kl(
    mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(mean1, var1) || N(mean2, var2))`` for scalar Gaussians.

    ``KL = ½ [log(var2 / var1) + (var1 + (mean1 - mean2)²) / var2 - 1]``. Arguments broadcast
    (variances are typically ``(B, 1, …)``); sum over data dimensions for isotropic Gaussians.
    """
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


@checked(x=_VALUES, mean=_VALUES, var=_VARIANCE)
def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(x; mean, var) = -½ [log(2π var) + (x - mean)² / var]`` (broadcasting)."""
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


@checked(
    x=FloatTensor(min_dim=0, broadcast=True, finite=True, within=(-1.0, 1.0)),
    mean=_VALUES,
    log_scale=_VALUES,
)
def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Elementwise log-probability of the 8-bit bin that contains ``x`` (Ho et al. 2020, Eq. 13).

    ``x`` holds images in ``[-1, 1]`` on the grid of 256 levels (bin width ``2/255``); the Gaussian
    ``N(mean, exp(log_scale)²)`` is integrated over the bin, the outermost bins extending to ±∞.
    """
    xd, md, ld = x.double(), mean.double(), log_scale.double()
    inv_std = torch.exp(-ld)
    centered = xd - md
    upper = inv_std * (centered + 1.0 / 255.0)
    lower = inv_std * (centered - 1.0 / 255.0)
    log_cdf_upper = torch.special.log_ndtr(upper)
    log_one_minus_cdf_lower = torch.special.log_ndtr(-lower)
    # log(Φ(u) - Φ(l)) computed stably on whichever tail is farther from 1.
    log_delta_left = log_cdf_upper + torch.log(
        (-torch.expm1(torch.special.log_ndtr(lower) - log_cdf_upper)).clamp(min=1e-300)
    )
    log_delta_right = log_one_minus_cdf_lower + torch.log(
        (-torch.expm1(torch.special.log_ndtr(-upper) - log_one_minus_cdf_lower)).clamp(min=1e-300)
    )
    log_delta = torch.where(centered > 0, log_delta_right, log_delta_left)
    out = torch.where(
        xd < -0.999, log_cdf_upper, torch.where(xd > 0.999, log_one_minus_cdf_lower, log_delta)
    )
    return out.to(x.dtype)


@dataclass
class VLBTerms:
    """The terms of the variational bound, per sample, in nats.

    Attributes:
        L_T: ``(B,)`` prior matching term.
        L_t: ``(B, T - 1)``; column ``j`` holds ``L_{t-1}`` for ``t = j + 2`` (so
            ``L_1 … L_{T-1}``).
        L_0: ``(B,)`` reconstruction term ``-log p_theta(x_0 | x_1)``.
        total: ``(B,)`` ``L_T + sum L_t + L_0``, an upper bound on ``-log p_theta(x_0)``.
    """

    L_T: torch.Tensor
    L_t: torch.Tensor
    L_0: torch.Tensor
    total: torch.Tensor


@checked(
    eps_model=_EPS_MODEL,
    x0=FloatTensor(finite=True),
    schedule=NoiseSchedule,
    variance=OneOf(VARIANCES),
    decoder=OneOf(DECODERS),
    generator=Rng,
)
def vlb_terms(
    eps_model: EpsModel,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "beta",
    decoder: str = "gaussian",
    generator: torch.Generator | None = None,
) -> VLBTerms:
    """Single-sample Monte Carlo estimate of every term of the bound for each ``x0``.

    For each ``t`` a fresh ``x_t ~ q(x_t | x_0)`` is drawn; the KL between Gaussians is then exact.
    ``decoder="gaussian"`` scores ``x0`` with ``N(mu_theta(x_1, 1), sigma_1^2)`` (continuous data);
    ``"discretized"`` integrates that Gaussian over 8-bit bins (images in ``[-1, 1]``). At ``t = 1``
    the decoder variance is ``beta_1`` for either choice of ``variance`` (``beta_tilde_1 = 0``).

    Args:
        eps_model: callable ``(x_t (B, ...), t (B,)) -> eps (B, ...)``.
        x0: data ``(B, ...)``.
    """
    if decoder == "discretized" and not bool(((x0 >= -1 - 1e-6) & (x0 <= 1 + 1e-6)).all()):
        raise ValueError(
            'x0 must lie in [-1, 1] for decoder="discretized" (images scaled from 8-bit values)'
        )
    B, T = x0.shape[0], schedule.T
    # L_T: q(x_T | x_0) = N(sqrt(ab_T) x_0, 1 - ab_T) against the prior N(0, I).
    tT = torch.full((B,), T, dtype=torch.long, device=x0.device)
    mean_T = schedule.gather(schedule.sqrt_alpha_bar, tT, x0.dim(), like=x0) * x0
    var_T = schedule.gather(1.0 - schedule.alpha_bar, tT, x0.dim(), like=x0).expand_as(x0)
    L_T = sum_data_dims(
        gaussian_kl.unchecked(mean_T, var_T, torch.zeros_like(x0), torch.ones_like(x0))
    )

    L_t = torch.zeros(B, max(T - 1, 0), dtype=x0.dtype, device=x0.device)
    with torch.no_grad():
        for t in range(2, T + 1):
            tt = torch.full((B,), t, dtype=torch.long, device=x0.device)
            x_t = q_sample.unchecked(x0, tt, schedule, noise_like(x0, generator))
            mean_q, var_q = q_posterior_mean_var.unchecked(x0, x_t, tt, schedule)
            mean_p, var_p = p_mean_var.unchecked(eps_model, x_t, tt, schedule, variance)
            kl = gaussian_kl.unchecked(mean_q, var_q.expand_as(x0), mean_p, var_p.expand_as(x0))
            L_t[:, t - 2] = sum_data_dims(kl)

        t1 = torch.ones(B, dtype=torch.long, device=x0.device)
        x_1 = q_sample.unchecked(x0, t1, schedule, noise_like(x0, generator))
        mean_1, var_1 = p_mean_var.unchecked(
            eps_model, x_1, t1, schedule, variance, for_density=True
        )
        if decoder == "gaussian":
            log_p = gaussian_log_likelihood.unchecked(x0, mean_1, var_1.expand_as(x0))
        else:
            log_scale = 0.5 * torch.log(var_1).expand_as(x0)
            log_p = discretized_gaussian_log_likelihood.unchecked(x0, mean_1, log_scale)
        L_0 = -sum_data_dims(log_p)
    return VLBTerms(L_T=L_T, L_t=L_t, L_0=L_0, total=L_T + L_t.sum(dim=1) + L_0)


@checked(schedule=NoiseSchedule, variance=OneOf(VARIANCES))
def vlb_weights(schedule: NoiseSchedule, variance: str = "beta") -> torch.Tensor:
    """``lambda_t = beta_t² / (2 sigma_t² alpha_t (1 - alpha_bar_t))`` as a ``(T + 1,)`` float64
    tensor.

    For ``t >= 2``, ``L_{t-1} = lambda_t · ||eps - eps_theta(x_t, t)||²`` exactly (the variances of
    ``q`` and ``p_theta`` differ only by a constant when ``sigma_t^2 = beta_t``, which is added by
    :func:`vlb_terms` but does not depend on the model). ``lambda_0 = 0``; ``lambda_1`` uses
    ``sigma_1^2 = beta_1`` (the Gaussian decoder's squared-error weight).
    """
    t = torch.arange(schedule.T + 1)
    sigma2 = model_variance.unchecked(
        t, schedule, variance, 1, like=schedule.betas, for_density=True
    ).reshape(-1)
    lam = torch.zeros(schedule.T + 1, dtype=torch.float64)
    b, a, ab = schedule.betas[1:], schedule.alphas[1:], schedule.alpha_bar[1:]
    lam[1:] = b**2 / (2 * sigma2[1:] * a * (1 - ab))
    return lam


@checked(
    eps_model=_EPS_MODEL,
    schedule=NoiseSchedule,
    dim=Int(),
    variance=OneOf(VARIANCES),
    dtype=FloatDtype,
)
def affine_reverse_marginal(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    dim: int,
    *,
    variance: str = "beta",
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact law ``p_theta(x_0) = N(m, C)`` of the reverse chain when ``eps_model`` is affine in
    ``x_t``.

    If ``eps_theta(x, t) = E_t x + e_t`` (true for the optimal model of Gaussian data), every
    reverse step is linear-Gaussian, ``x_{t-1} = A_t x_t + b_t + sigma_t z``, so starting from
    ``x_T ~ N(0, I)`` the moments propagate exactly: ``m <- A_t m + b_t``,
    ``C <- A_t C A_t^T + sigma_t^2 I`` for ``t = T, …, 1`` (decoder variance ``beta_1`` at
    ``t = 1``, as in :func:`vlb_terms`). ``A_t, b_t`` are read off by evaluating the model at ``0``
    and the unit vectors; a probe at a third point raises ``ValueError`` if the model is not
    affine.

    The model is evaluated on points of ``dtype`` (that of its weights: a float32 network takes
    float32 points); ``A_t, b_t`` are then read in float64 and the moments propagate in float64,
    so a float32 model costs only its own rounding (about ``1e-5`` nats in the NLL at
    ``T = 1000``), and the affinity probe allows that rounding (relative ``1e-6`` in float64,
    ``100`` machine epsilons of ``dtype`` otherwise).

    Args:
        eps_model: callable ``(x_t (B, dim), t (B,)) -> eps (B, dim)``.
        dim: data dimension ``D``.
        dtype: the floating dtype the model is called with (default float64); a model that
            refuses it (a float32 network given float64 points) is a ``TypeError`` naming
            ``dtype``.
    Returns:
        ``mean (D,)`` and ``cov (D, D)`` in float64.
    """
    return _affine_reverse_marginal(eps_model, schedule, dim, variance, dtype, "dtype")


_DTYPE_MISMATCH = re.compile(r"same dtype|expected scalar type|expected .*dtype")
"""Torch's errors for an input whose dtype is not that of a layer's weights."""


def _dtype_error(exc: RuntimeError, dtype: torch.dtype, name: str) -> TypeError | None:
    """For torch's dtype-mismatch error from the model called on points of ``dtype``: a
    ``TypeError`` naming the argument ``name`` that chose ``dtype`` ("dtype" or "x0"); else None."""
    if not _DTYPE_MISMATCH.search(str(exc)):
        return None
    fix = (
        "pass dtype= the dtype of its weights, e.g. dtype=torch.float32 for a default nn.Module"
        if name == "dtype"
        else "pass x0 in the dtype of its weights, e.g. x0.float() for a default nn.Module"
    )
    lead = f"dtype {dtype} is" if name == "dtype" else f"{name} has dtype {dtype}, which is"
    return TypeError(f"{lead} not the dtype eps_model computes in (torch: {exc}); {fix}")


def _affine_reverse_marginal(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    dim: int,
    variance: str,
    dtype: torch.dtype,
    dtype_name: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`affine_reverse_marginal` for checked arguments; a model that refuses points of
    ``dtype`` is a ``TypeError`` naming ``dtype_name``."""
    eye = torch.eye(dim, dtype=torch.float64)
    probe = torch.linspace(-1.3, 0.7, dim, dtype=torch.float64)[None]
    pts = torch.cat([torch.zeros(1, dim, dtype=torch.float64), eye, probe])  # (D + 2, D)
    pts = pts.to(dtype)
    rtol = max(1e-6, 100 * torch.finfo(dtype).eps)
    atol = 1e-8 if dtype == torch.float64 else rtol
    m, C = torch.zeros(dim, dtype=torch.float64), eye.clone()
    with torch.no_grad():
        for t in range(schedule.T, 0, -1):
            tt = torch.full((dim + 2,), t, dtype=torch.long)
            try:
                mean, var = p_mean_var.unchecked(
                    eps_model, pts, tt, schedule, variance, for_density=True
                )
            except RuntimeError as exc:
                error = _dtype_error(exc, dtype, dtype_name)
                if error is None:
                    raise
                raise error from exc
            mean = mean.to(torch.float64)
            b = mean[0]
            A = (mean[1 : dim + 1] - b).T  # column i is the response to e_i
            if not torch.allclose(mean[-1], A @ probe[0] + b, rtol=rtol, atol=atol):
                raise ValueError(f"eps_model must be affine in x_t (it is not at t={t})")
            m = A @ m + b
            C = A @ C @ A.T + float(var[0]) * eye
    return m, 0.5 * (C + C.T)


@checked(
    eps_model=_EPS_MODEL,
    x0=FloatTensor(dim=2, nonempty=True, finite=True),
    schedule=NoiseSchedule,
    variance=OneOf(VARIANCES),
)
def affine_model_nll(
    eps_model: EpsModel, x0: torch.Tensor, schedule: NoiseSchedule, *, variance: str = "beta"
) -> torch.Tensor:
    """Exact ``-log p_theta(x_0)`` in nats, shape ``(B,)``, for an affine ``eps_model`` and
    ``x0: (B, D)``.

    Uses :func:`affine_reverse_marginal`, calling the model in ``x0``'s dtype as
    :func:`vlb_terms` does (compare with it: an upper bound on this NLL); the moments and the
    density are computed in float64 and returned in ``x0``'s dtype. A model that refuses
    ``x0``'s dtype (a float32 network given half or float64 data) is a ``TypeError`` naming
    ``x0``.
    """
    if x0.shape[1] < 1:
        raise ValueError(f"x0 must have shape (B, D) with D >= 1, got {tuple(x0.shape)}")
    m, C = _affine_reverse_marginal(eps_model, schedule, x0.shape[1], variance, x0.dtype, "x0")
    dist = torch.distributions.MultivariateNormal(m, covariance_matrix=C)
    return -dist.log_prob(x0.to(torch.float64)).to(x0.dtype)
