"""Score matching (chapter 6): fit ``s_θ(x) ≈ ∇log p(x)`` without knowing ``p``.

    explicit   ESM(θ) = ½ E_p ||s_θ(x) - ∇log p(x)||²  (needs the true score)      -> esm_loss
    implicit   ISM(θ) = E_p [tr ∇_x s_θ(x) + ½ ||s_θ(x)||²] = ESM - C  (Hyvärinen 2005) -> ism_loss
    sliced     SSM(θ) = E_p E_v [vᵀ ∇_x s_θ(x) v + ½ (vᵀ s_θ(x))²]  (Song et al. 2019)  -> ssm_loss
    denoising  DSM(θ; σ) = ½ E ||s_θ(x̃, σ) + (x̃ - x)/σ²||², x̃ = x + σ z (Vincent 2011) -> dsm_loss
               = ½ E_{q_σ} ||s_θ(x̃, σ) - ∇log q_σ(x̃)||² + C,  so the optimum is the noised score.

The noise-conditional objective of Song & Ermon (2019, Eq. 6) averages ``λ(σ) DSM(θ; σ)`` over
the levels with ``λ(σ) = σ²``, which makes every level contribute ``O(1)``:
``σ² · ½||s + z/σ||² = ½||σ s + z||²``. ``vp_eps_loss`` is the continuous-time ε-prediction form on
VP-SDE marginals used to train the models of chapters 7–8. Shapes: ``x: (B, D)`` (2D toys: D = 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._validation import (
    call_like,
    check_callable,
    check_choice,
    check_finite,
    check_generator,
    check_noise,
    check_number,
    check_positive_int,
    check_tensor,
)
from .nn import TimeMLP

__all__ = [
    "geometric_sigmas",
    "esm_loss",
    "ism_loss",
    "ssm_loss",
    "dsm_loss",
    "NoiseConditionalScoreMLP",
    "vp_eps_loss",
]

REDUCTIONS = ("mean", "none")
WEIGHTINGS = ("sigma2", "none")


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    check_choice(reduction, "reduction", REDUCTIONS)
    return per_sample.mean() if reduction == "mean" else per_sample


def _call(model: Callable[..., Tensor], x: Tensor, *args: Any, name: str = "score_model") -> Tensor:
    return call_like(model, x, *args, name=name)


def _check_data(x: Tensor, name: str) -> Tensor:
    check_tensor(x, name, dim=2)
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")
    return check_finite(x, name)


def geometric_sigmas(sigma_max: float, sigma_min: float, L: int) -> Tensor:
    """``L`` levels from ``sigma_max`` down to ``sigma_min``, constant ratio, ``(L,)`` float64.

    ``σ_i = σ_max (σ_min/σ_max)^((i-1)/(L-1))``, as in NCSN (Song & Ermon 2019).
    """
    L = check_positive_int(L, "L", minimum=2)
    sigma_max = check_number(sigma_max, "sigma_max", low=0.0)
    sigma_min = check_number(sigma_min, "sigma_min", low=0.0)
    if not sigma_max > sigma_min:
        raise ValueError(
            f"sigma_max must be > sigma_min, got sigma_max={sigma_max}, sigma_min={sigma_min}"
        )
    return torch.exp(
        torch.linspace(math.log(sigma_max), math.log(sigma_min), L, dtype=torch.float64)
    )


def esm_loss(
    score_model: Callable[[Tensor], Tensor],
    x: Tensor,
    true_score: Tensor,
    *,
    reduction: str = "mean",
) -> Tensor:
    """Explicit score matching ``½ ||s_θ(x) - ∇log p(x)||²`` (needs the true score: for checks).

    ``x, true_score: (B, D)``. Returns the batch mean, or ``(B,)`` with ``reduction="none"``.
    """
    check_callable(score_model, "score_model", "(x) -> score")
    _check_data(x, "x")
    check_tensor(true_score, "true_score", finite=True)
    if true_score.shape != x.shape:
        raise ValueError(
            f"true_score must have the shape of x {tuple(x.shape)}, got {tuple(true_score.shape)}"
        )
    s = _call(score_model, x)
    return _reduce(0.5 * ((s - true_score) ** 2).sum(dim=1), reduction)


def ism_loss(
    score_model: Callable[[Tensor], Tensor], x: Tensor, *, reduction: str = "mean"
) -> Tensor:
    """Implicit score matching (Hyvärinen 2005): ``tr(∇_x s_θ(x)) + ½ ||s_θ(x)||²``.

    The trace is exact: one backward pass per dimension (``D`` passes), so use it for low ``D``.
    Built with ``create_graph=True`` so that it can be minimised. ``x: (B, D)``; returns the batch
    mean or ``(B,)`` with ``reduction="none"``. Equals ``esm_loss - ½ E||∇log p||²`` in expectation
    (integration by parts, assuming ``p s_θ -> 0`` at infinity).
    """
    check_callable(score_model, "score_model", "(x) -> score")
    check_choice(reduction, "reduction", REDUCTIONS)
    _check_data(x, "x")
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = _call(score_model, x)
        trace = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
        for i in range(x.shape[1]):
            (g,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
            trace = trace + g[:, i]
    return _reduce(trace + 0.5 * (s**2).sum(dim=1), reduction)


def ssm_loss(
    score_model: Callable[[Tensor], Tensor],
    x: Tensor,
    n_projections: int = 1,
    generator: torch.Generator | None = None,
    *,
    variance_reduced: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Sliced score matching (Song, Garg, Shi & Ermon 2019): ``vᵀ ∇_x s_θ(x) v + ½ (vᵀ s_θ(x))²``.

    ``v ~ N(0, I)`` (``n_projections`` per sample, averaged), so ``E[vᵀ J v] = tr J`` and
    ``E[(vᵀ s)²] = ||s||²``: SSM equals ISM in expectation at the cost of one backward pass.
    ``variance_reduced=True`` uses ``½ ||s||²`` exactly (SSM-VR). ``x: (B, D)``; returns the batch
    mean or ``(B,)`` with ``reduction="none"``.
    """
    check_callable(score_model, "score_model", "(x) -> score")
    check_choice(reduction, "reduction", REDUCTIONS)
    _check_data(x, "x")
    n_projections = check_positive_int(n_projections, "n_projections")
    check_generator(generator)
    B, D = x.shape
    xr = x.detach().repeat(n_projections, 1).requires_grad_(True)  # (P*B, D)
    dev = generator.device if generator is not None else x.device
    v = torch.randn(xr.shape, generator=generator, dtype=x.dtype, device=dev).to(x.device)
    with torch.enable_grad():
        s = _call(score_model, xr)
        sv = (s * v).sum(dim=1)
        (g,) = torch.autograd.grad(sv.sum(), xr, create_graph=True)  # g = J^T v
        vjv = (g * v).sum(dim=1)
        second = 0.5 * (s**2).sum(dim=1) if variance_reduced else 0.5 * sv**2
    per_sample = (vjv + second).reshape(n_projections, B).mean(dim=0)
    return _reduce(per_sample, reduction)


def dsm_loss(
    score_model: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    sigmas: float | Tensor,
    generator: torch.Generator | None = None,
    *,
    sigma_idx: Tensor | None = None,
    noise: Tensor | None = None,
    weighting: str = "sigma2",
    reduction: str = "mean",
) -> Tensor:
    """Denoising score matching (Vincent 2011), noise-conditional with ``λ(σ) = σ²``.

    Song & Ermon (2019, Eq. 6).

    Per sample: ``x̃ = x0 + σ z`` and

        ℓ = λ(σ) · ½ ||s_θ(x̃, σ) - target||²,
        target = ∇_x̃ log q_σ(x̃ | x0) = -(x̃ - x0)/σ² = -z/σ,

    so with ``λ = σ²``: ``ℓ = ½ ||σ s_θ(x̃, σ) + z||²``.

    Args:
        score_model: ``score_model(x̃ (B, D), sigma (B,)) -> (B, D)``; wrap a model of ``x`` alone as
            ``lambda x, s: net(x)`` to train at a single level.
        x0: clean data ``(B, D)``.
        sigmas: one level (a number) or a 1-D tensor of ``L`` levels; each sample then uses
            ``sigmas[sigma_idx]``, ``sigma_idx`` uniform in ``0..L-1`` (drawn from ``generator``).
        sigma_idx: ``(B,)`` long, the level of each sample (instead of drawing it).
        noise: ``z: (B, D)`` (instead of drawing it).
        weighting: ``"sigma2"`` (``λ = σ²``) or ``"none"`` (``λ = 1``).
        reduction: ``"mean"`` over the batch (summed over D) or ``"none"`` for ``(B,)``.
    """
    check_callable(score_model, "score_model", "(x, sigma) -> score")
    _check_data(x0, "x0")
    check_choice(weighting, "weighting", WEIGHTINGS)
    check_choice(reduction, "reduction", REDUCTIONS)
    check_generator(generator)
    B = x0.shape[0]
    if isinstance(sigmas, Tensor):
        if sigmas.dim() > 1:
            raise ValueError(
                "sigmas must be a number or a 1-D tensor of noise levels, "
                f"got shape {tuple(sigmas.shape)}"
            )
        levels = sigmas.detach().to(device=x0.device, dtype=x0.dtype).reshape(-1)
    elif isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool):
        levels = torch.tensor([float(sigmas)], dtype=x0.dtype, device=x0.device)
    else:
        raise TypeError(
            f"sigmas must be a number or a 1-D tensor of noise levels, got {type(sigmas).__name__}"
        )
    if levels.numel() == 0 or not bool(torch.isfinite(levels).all()) or bool((levels <= 0).any()):
        raise ValueError("sigmas must be non-empty, finite and > 0")
    L = levels.numel()
    if sigma_idx is None:
        idx = torch.randint(
            L,
            (B,),
            generator=generator,
            device=generator.device if generator is not None else "cpu",
        )
    else:
        if not isinstance(sigma_idx, Tensor) or sigma_idx.dtype not in (torch.int32, torch.int64):
            raise TypeError("sigma_idx must be an integer tensor of shape (B,)")
        if sigma_idx.shape != (B,):
            raise ValueError(f"sigma_idx must have shape ({B},), got {tuple(sigma_idx.shape)}")
        if bool((sigma_idx < 0).any()) or bool((sigma_idx >= L).any()):
            raise ValueError(f"sigma_idx must lie in 0..{L - 1}")
        idx = sigma_idx
    sigma = levels[idx.to(x0.device)]  # (B,)
    z = check_noise(noise, x0, "x0", generator)
    sig = sigma[:, None]
    x_tilde = x0 + sig * z
    target = -z / sig  # = -(x̃ - x0) / σ²
    s = _call(score_model, x_tilde, sigma)
    per_sample = 0.5 * ((s - target) ** 2).sum(dim=1)
    if weighting == "sigma2":
        per_sample = sigma**2 * per_sample
    return _reduce(per_sample, reduction)


class NoiseConditionalScoreMLP(nn.Module):
    """A noise-conditional score network ``s_θ(x, σ)`` for low-dimensional data (2D toys).

    ``s_θ(x, σ) = f_θ(x, log σ) / σ`` when ``scale_by_sigma`` (the NCSN v2 parameterisation,
    Song & Ermon 2020: the true score of ``q_σ`` scales like ``1/σ``, so ``f_θ`` only has to output
    ``O(1)`` values — it is ``-E[z | x̃]``), else ``f_θ(x, log σ)`` directly. ``f_θ`` is a
    :class:`~minidiff.nn.TimeMLP` with ``log σ`` (times ``sigma_scale``) in place of the time.

    Forward: ``x: (B, D)``, ``sigma: (B,)`` tensor or a number ``> 0`` -> ``(B, D)``.
    """

    def __init__(
        self,
        data_dim: int = 2,
        hidden: int = 128,
        n_layers: int = 3,
        emb_dim: int = 32,
        *,
        scale_by_sigma: bool = True,
        sigma_scale: float = 10.0,
    ) -> None:
        super().__init__()
        self.net = TimeMLP(
            data_dim=data_dim,
            hidden=hidden,
            n_layers=n_layers,
            time_dim=emb_dim,
            time_scale=sigma_scale,
        )
        self.scale_by_sigma = bool(scale_by_sigma)
        self.data_dim = data_dim

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """Score at level ``sigma``: ``x (B, D)``, ``sigma (B,)`` or a number -> ``(B, D)``."""
        check_tensor(x, "x", dim=2)
        if isinstance(sigma, Tensor):
            s = sigma.to(device=x.device, dtype=x.dtype).reshape(-1)
            if s.numel() == 1:
                s = s.expand(x.shape[0])
        elif isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
            s = torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)
        else:
            raise TypeError(f"sigma must be a tensor (B,) or a number, got {type(sigma).__name__}")
        if s.shape != (x.shape[0],):
            raise ValueError(
                f"sigma must have shape ({x.shape[0]},) like the batch of x, got {tuple(s.shape)}"
            )
        if not bool(((s > 0) & torch.isfinite(s)).all()):  # one host read, NaN included
            raise ValueError("sigma must be finite and > 0")
        out = self.net(x, s.log())
        return out / s[:, None] if self.scale_by_sigma else out


def vp_eps_loss(
    model: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    sde: Any,
    generator: torch.Generator | None = None,
    *,
    t_min: float | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Continuous-time ε-prediction loss on VP-SDE marginals (Song et al. 2021; Ho et al. 2020).

    ``t ~ U[t_min, T_end]``, ``(α, σ) = sde.marginal_coefficients(t)``, ``x_t = α x0 + σ ε`` and

        loss = E ||ε - model(x_t, t)||²   (mean over batch and data dims, like ``simple_loss``)

    At the optimum ``model(x, t) = E[ε | x_t = x] = -σ(t) ∇log p_t(x)``.

    Args:
        model: ``model(x_t (B, ...), t (B,) float) -> (B, ...)``, e.g. ``TimeMLP(time_scale=1000)``.
        x0: clean data ``(B, ...)``.
        sde: any object with ``marginal_coefficients(t (B,)) -> (alpha (B,), sigma (B,))`` (e.g.
            ``minidiff.sde.VPSDE``); ``T_end`` (default 1) and ``eps`` (the default ``t_min``) are
            read if present.
        t_min: smallest time drawn (default ``sde.eps`` or ``1e-3``): ``σ(t) -> 0`` at ``t = 0``.
        t: ``(B,)`` times (instead of drawing them); noise: ``ε`` of the shape of ``x0``.
    """
    check_callable(model, "model", "(x_t, t) -> eps")
    check_tensor(x0, "x0", finite=True)
    check_generator(generator)
    if not callable(getattr(sde, "marginal_coefficients", None)):
        raise TypeError(
            "sde must have a marginal_coefficients(t) -> (alpha, sigma) method, "
            f"got {type(sde).__name__}"
        )
    B = x0.shape[0]
    t_end = float(getattr(sde, "T_end", 1.0))
    if t_min is None:
        t_min = float(getattr(sde, "eps", 1e-3))
    t_min = check_number(t_min, "t_min", low=0.0, high=t_end, low_open=False)
    if t is None:
        dev = generator.device if generator is not None else x0.device
        u = torch.rand(B, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
        tt = t_min + (t_end - t_min) * u
    else:
        check_tensor(t, "t", dim=1, finite=True)
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},), got {tuple(t.shape)}")
        if bool((t < 0).any()) or bool((t > t_end).any()):
            raise ValueError(f"t must lie in [0, {t_end}]")
        tt = t.to(device=x0.device, dtype=x0.dtype)
    eps = check_noise(noise, x0, "x0", generator)
    alpha, sigma = sde.marginal_coefficients(tt)
    shape = (B,) + (1,) * (x0.dim() - 1)
    alpha = torch.as_tensor(alpha, dtype=x0.dtype, device=x0.device).reshape(-1)
    sigma = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device).reshape(-1)
    if alpha.numel() == 1:
        alpha, sigma = alpha.expand(B), sigma.expand(B)
    if alpha.shape != (B,) or sigma.shape != (B,):
        raise ValueError(
            f"sde.marginal_coefficients(t) must return two ({B},) tensors, "
            f"got {tuple(alpha.shape)}, {tuple(sigma.shape)}"
        )
    x_t = alpha.reshape(shape) * x0 + sigma.reshape(shape) * eps
    out = _call(model, x_t, tt, name="model")
    return ((eps - out) ** 2).reshape(B, -1).mean(dim=1).mean()
