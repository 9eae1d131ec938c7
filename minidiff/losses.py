"""The variational bound and the simplified objective (chapter 3).

    -log p_theta(x_0) <= L = L_T + sum_{t=2}^{T} L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))
    L_{t-1} = E_q[ KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) ]
    L_0     = E_q[ -log p_theta(x_0 | x_1) ]

With the ε-parameterisation and fixed variance sigma_t^2 the KL terms become weighted squared
errors, ``L_{t-1} = lambda_t E||eps - eps_theta(x_t, t)||^2`` with
``lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))`` (Ho et al. 2020, Eq. 12);
dropping ``lambda_t`` gives ``L_simple`` (Eq. 14). All terms are in nats, summed over data
dimensions, one value per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._validation import (
    check_all_finite,
    check_broadcast,
    check_callable,
    check_choice,
    check_device,
    check_finite,
    check_generator,
    check_instance,
    check_number,
    check_positive_int,
    check_same_shape,
    check_tensor,
    check_timesteps,
)
from .diffusion import (
    VARIANCES,
    EpsModel,
    call_eps_model,
    model_variance,
    p_mean_var,
    q_posterior_mean_var,
    q_sample,
)
from .schedules import NoiseSchedule
from .tensors import noise_like

__all__ = [
    "gaussian_kl",
    "gaussian_log_likelihood",
    "discretized_gaussian_log_likelihood",
    "VLBTerms",
    "vlb_terms",
    "vlb_weights",
    "simple_loss",
    "sample_timesteps",
    "timestep_probabilities",
    "affine_reverse_marginal",
    "affine_model_nll",
]

DECODERS = ("gaussian", "discretized")


def _check_var(var: torch.Tensor, name: str) -> None:
    if bool((var <= 0).any()):
        raise ValueError(f"{name} must be strictly positive (a variance)")


def _check_elementwise(*named: tuple[object, str]) -> None:
    """Floating tensors that broadcast together and hold finite values (one synchronisation)."""
    for v, name in named:
        check_tensor(v, name, min_dim=0)
    pairs = [(v, name) for v, name in named if isinstance(v, torch.Tensor)]
    check_broadcast(*pairs)
    check_all_finite(*pairs)


def gaussian_kl(
    mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor
) -> torch.Tensor:
    """Elementwise ``KL(N(mean1, var1) || N(mean2, var2))`` for scalar Gaussians.

    ``KL = ½ [log(var2 / var1) + (var1 + (mean1 - mean2)²) / var2 - 1]``. Arguments broadcast
    (variances are typically ``(B, 1, …)``); sum over data dimensions for isotropic Gaussians.
    """
    _check_elementwise((mean1, "mean1"), (var1, "var1"), (mean2, "mean2"), (var2, "var2"))
    _check_var(var1, "var1")
    _check_var(var2, "var2")
    return _gaussian_kl(mean1, var1, mean2, var2)


def _gaussian_kl(
    mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor
) -> torch.Tensor:
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(x; mean, var) = -½ [log(2π var) + (x - mean)² / var]`` (broadcasting)."""
    _check_elementwise((x, "x"), (mean, "mean"), (var, "var"))
    _check_var(var, "var")
    return _gaussian_log_likelihood(x, mean, var)


def _gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
) -> torch.Tensor:
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Elementwise log-probability of the 8-bit bin that contains ``x`` (Ho et al. 2020, Eq. 13).

    ``x`` holds images in ``[-1, 1]`` on the grid of 256 levels (bin width ``2/255``); the Gaussian
    ``N(mean, exp(log_scale)²)`` is integrated over the bin, the outermost bins extending to ±∞.
    """
    _check_elementwise((x, "x"), (mean, "mean"), (log_scale, "log_scale"))
    if bool((x < -1 - 1e-6).any()) or bool((x > 1 + 1e-6).any()):
        raise ValueError("x must lie in [-1, 1] (images scaled from 8-bit values)")
    return _discretized_gaussian_log_likelihood(x, mean, log_scale)


def _discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
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


def _sum_data_dims(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1)


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
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    check_tensor(x0, "x0")
    check_choice(variance, "variance", VARIANCES)
    check_choice(decoder, "decoder", DECODERS)
    check_instance(schedule, "schedule", NoiseSchedule)
    check_generator(generator)
    check_finite(x0, "x0")
    if decoder == "discretized" and (bool((x0 < -1 - 1e-6).any()) or bool((x0 > 1 + 1e-6).any())):
        raise ValueError(
            'x0 must lie in [-1, 1] for decoder="discretized" (images scaled from 8-bit values)'
        )
    B, T = x0.shape[0], schedule.T
    # L_T: q(x_T | x_0) = N(sqrt(ab_T) x_0, 1 - ab_T) against the prior N(0, I).
    tT = torch.full((B,), T, dtype=torch.long, device=x0.device)
    mean_T = schedule.gather(schedule.sqrt_alpha_bar, tT, x0.dim(), like=x0) * x0
    var_T = schedule.gather(1.0 - schedule.alpha_bar, tT, x0.dim(), like=x0).expand_as(x0)
    L_T = _sum_data_dims(_gaussian_kl(mean_T, var_T, torch.zeros_like(x0), torch.ones_like(x0)))

    L_t = torch.zeros(B, max(T - 1, 0), dtype=x0.dtype, device=x0.device)
    with torch.no_grad():
        for t in range(2, T + 1):
            tt = torch.full((B,), t, dtype=torch.long, device=x0.device)
            x_t = q_sample.unchecked(x0, tt, schedule, noise_like(x0, generator))
            mean_q, var_q = q_posterior_mean_var.unchecked(x0, x_t, tt, schedule)
            mean_p, var_p = p_mean_var.unchecked(eps_model, x_t, tt, schedule, variance)
            kl = _gaussian_kl(mean_q, var_q.expand_as(x0), mean_p, var_p.expand_as(x0))
            L_t[:, t - 2] = _sum_data_dims(kl)

        t1 = torch.ones(B, dtype=torch.long, device=x0.device)
        x_1 = q_sample.unchecked(x0, t1, schedule, noise_like(x0, generator))
        mean_1, var_1 = p_mean_var.unchecked(
            eps_model, x_1, t1, schedule, variance, for_density=True
        )
        if decoder == "gaussian":
            log_p = _gaussian_log_likelihood(x0, mean_1, var_1.expand_as(x0))
        else:
            log_scale = 0.5 * torch.log(var_1).expand_as(x0)
            log_p = _discretized_gaussian_log_likelihood(x0, mean_1, log_scale)
        L_0 = -_sum_data_dims(log_p)
    return VLBTerms(L_T=L_T, L_t=L_t, L_0=L_0, total=L_T + L_t.sum(dim=1) + L_0)


def vlb_weights(schedule: NoiseSchedule, variance: str = "beta") -> torch.Tensor:
    """``lambda_t = beta_t² / (2 sigma_t² alpha_t (1 - alpha_bar_t))`` as a ``(T + 1,)`` float64
    tensor.

    For ``t >= 2``, ``L_{t-1} = lambda_t · ||eps - eps_theta(x_t, t)||²`` exactly (the variances of
    ``q`` and ``p_theta`` differ only by a constant when ``sigma_t^2 = beta_t``, which is added by
    :func:`vlb_terms` but does not depend on the model). ``lambda_0 = 0``; ``lambda_1`` uses
    ``sigma_1^2 = beta_1`` (the Gaussian decoder's squared-error weight).
    """
    check_instance(schedule, "schedule", NoiseSchedule)
    check_choice(variance, "variance", VARIANCES)
    t = torch.arange(schedule.T + 1)
    sigma2 = model_variance(
        t, schedule, variance, 1, like=schedule.betas, for_density=True
    ).reshape(-1)
    lam = torch.zeros(schedule.T + 1, dtype=torch.float64)
    b, a, ab = schedule.betas[1:], schedule.alphas[1:], schedule.alpha_bar[1:]
    lam[1:] = b**2 / (2 * sigma2[1:] * a * (1 - ab))
    return lam


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
    for the same reason).
    """
    check_positive_int(batch_size, "batch_size")
    check_positive_int(T, "T")
    check_generator(generator)
    device = check_device(device)
    power = _check_power(power)
    gen_device = generator.device if generator is not None else "cpu"
    if power == 1.0:  # the stream of draws every uniform run has used
        t = torch.randint(1, T + 1, (batch_size,), generator=generator, device=gen_device)
    else:
        u = torch.rand(batch_size, generator=generator, device=gen_device, dtype=torch.float64)
        t = (T * u**power).long().clamp(max=T - 1) + 1
    return t.to(device or gen_device)


def timestep_probabilities(T: int, power: float = 1.0) -> torch.Tensor:
    """``P(t = k) = (k / T)^(1/p) - ((k - 1) / T)^(1/p)`` for ``k = 1..T``: the law of
    :func:`sample_timesteps` with ``power = p``, as a ``(T + 1,)`` float64 tensor (index 0 is 0).

    ``T * P`` is the weighting of ``L_simple`` that drawing ``t`` this way trains; ``p = 1`` gives
    ``1 / T`` everywhere.
    """
    check_positive_int(T, "T")
    power = _check_power(power)
    cdf = (torch.arange(T + 1, dtype=torch.float64) / T) ** (1.0 / power)
    probs = torch.zeros(T + 1, dtype=torch.float64)
    probs[1:] = cdf[1:] - cdf[:-1]
    return probs


def _check_power(power: object) -> float:
    return check_number(power, "power", low=0.0)


def simple_loss(
    eps_model: EpsModel,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """``L_simple = E_{t, x_0, eps} ||eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1-ab_t) eps, t)||²``
    (Eq. 14).

    Averaged over the batch and the data dimensions. ``t`` defaults to uniform draws in ``1..T``;
    ``weights`` (a ``(T + 1,)`` tensor such as :func:`vlb_weights`) turns it into a weighted
    objective ``E[w_t ||eps - eps_theta||²]``. Returns a scalar with gradients for training.
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    check_tensor(x0, "x0")
    check_instance(schedule, "schedule", NoiseSchedule)
    check_generator(generator)
    w = None
    if weights is not None:
        if not isinstance(weights, (torch.Tensor, list, tuple)):
            raise TypeError(
                f"weights must be a tensor of shape ({schedule.T + 1},), "
                f"got {type(weights).__name__}"
            )
        try:
            w = torch.as_tensor(weights)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"weights must be a tensor of shape ({schedule.T + 1},), "
                f"got {type(weights).__name__}"
            ) from exc
        if w.shape != (schedule.T + 1,):
            raise ValueError(
                f"weights must have shape ({schedule.T + 1},) (one per t, index 0 unused), "
                f"got {tuple(w.shape)}"
            )
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError("weights must be finite and >= 0")
    if t is None:
        t = sample_timesteps(x0.shape[0], schedule.T, generator, x0.device)
    tt = check_timesteps(t, x0.shape[0], schedule.T).to(x0.device)
    check_finite(x0, "x0")
    if noise is None:
        eps = noise_like(x0, generator)
    else:
        check_tensor(noise, "noise")
        check_same_shape(x0, noise, "x0", "noise")
        eps = check_finite(noise, "noise")
    x_t = q_sample.unchecked(x0, tt, schedule, eps)
    err = (eps - call_eps_model(eps_model, x_t, tt)) ** 2
    per_sample = err.reshape(err.shape[0], -1).mean(dim=1)
    if w is not None:
        per_sample = per_sample * w.to(x0.device, x0.dtype)[tt]
    return per_sample.mean()


def affine_reverse_marginal(
    eps_model: EpsModel, schedule: NoiseSchedule, dim: int, *, variance: str = "beta"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact law ``p_theta(x_0) = N(m, C)`` of the reverse chain when ``eps_model`` is affine in
    ``x_t``.

    If ``eps_theta(x, t) = E_t x + e_t`` (true for the optimal model of Gaussian data), every
    reverse step is linear-Gaussian, ``x_{t-1} = A_t x_t + b_t + sigma_t z``, so starting from
    ``x_T ~ N(0, I)`` the moments propagate exactly: ``m <- A_t m + b_t``,
    ``C <- A_t C A_t^T + sigma_t^2 I`` for ``t = T, …, 1`` (decoder variance ``beta_1`` at
    ``t = 1``, as in :func:`vlb_terms`). ``A_t, b_t`` are read off by evaluating the model at ``0``
    and the unit vectors; a probe at a random point raises ``ValueError`` if the model is not
    affine.

    Args:
        eps_model: callable ``(x_t (B, dim), t (B,)) -> eps (B, dim)``.
        dim: data dimension ``D``.
    Returns:
        ``mean (D,)`` and ``cov (D, D)`` in float64.
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    check_positive_int(dim, "dim")
    check_choice(variance, "variance", VARIANCES)
    check_instance(schedule, "schedule", NoiseSchedule)
    eye = torch.eye(dim, dtype=torch.float64)
    probe = torch.linspace(-1.3, 0.7, dim, dtype=torch.float64)[None]
    pts = torch.cat([torch.zeros(1, dim, dtype=torch.float64), eye, probe])  # (D + 2, D)
    m, C = torch.zeros(dim, dtype=torch.float64), eye.clone()
    with torch.no_grad():
        for t in range(schedule.T, 0, -1):
            tt = torch.full((dim + 2,), t, dtype=torch.long)
            mean, var = p_mean_var.unchecked(
                eps_model, pts, tt, schedule, variance, for_density=True
            )
            b = mean[0]
            A = (mean[1 : dim + 1] - b).T  # column i is the response to e_i
            if not torch.allclose(mean[-1], A @ probe[0] + b, rtol=1e-6, atol=1e-8):
                raise ValueError(f"eps_model must be affine in x_t (it is not at t={t})")
            m = A @ m + b
            C = A @ C @ A.T + float(var[0]) * eye
    return m, 0.5 * (C + C.T)


def affine_model_nll(
    eps_model: EpsModel, x0: torch.Tensor, schedule: NoiseSchedule, *, variance: str = "beta"
) -> torch.Tensor:
    """Exact ``-log p_theta(x_0)`` in nats, shape ``(B,)``, for an affine ``eps_model`` and
    ``x0: (B, D)``.

    Uses :func:`affine_reverse_marginal`; compare with :func:`vlb_terms` (an upper bound on it).
    """
    check_callable(eps_model, "eps_model", "(x_t, t) -> eps")
    check_tensor(x0, "x0", dim=2, finite=True)
    m, C = affine_reverse_marginal(eps_model, schedule, x0.shape[1], variance=variance)
    dist = torch.distributions.MultivariateNormal(m, covariance_matrix=C)
    return -dist.log_prob(x0.to(torch.float64)).to(x0.dtype)
