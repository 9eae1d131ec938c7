"""Score matching (chapter 6): fit ``s_θ(x) ≈ ∇log p(x)`` without knowing ``p``.

    explicit   ESM(θ) = ½ E_p ||s_θ(x) - ∇log p(x)||²  (needs the true score)      -> esm_loss
    implicit   ISM(θ) = E_p [tr ∇_x s_θ(x) + ½ ||s_θ(x)||²] = ESM - C  (Hyvärinen 2005) -> ism_loss
    sliced     SSM(θ) = E_p E_v [vᵀ ∇_x s_θ(x) v + ½ (vᵀ s_θ(x))²]  (Song et al. 2019)  -> ssm_loss
    denoising  DSM(θ; σ) = ½ E ||s_θ(x̃, σ) + (x̃ - x)/σ²||², x̃ = x + σ z (Vincent 2011) -> dsm_loss
               = ½ E_{q_σ} ||s_θ(x̃, σ) - ∇log q_σ(x̃)||² + C,  so the optimum is the noised score.

The noise-conditional objective of Song & Ermon (2019, Eq. 6) averages ``λ(σ) DSM(θ; σ)`` over
the levels ``geometric_sigmas`` with ``λ(σ) = σ²``, which makes every level contribute ``O(1)``:
``σ² · ½||s + z/σ||² = ½||σ s + z||²``. The network that fits it is
:class:`minidiff.nn.NoiseConditionalScoreMLP`. Shapes: ``x: (B, D)`` (2D toys: D = 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .._validation import (
    Check,
    Flag,
    FloatTensor,
    Function,
    Int,
    Number,
    OneOf,
    Rng,
    call_like,
    checked,
    describe,
    index_tensor,
)
from ..tensors import noise_like, pad_like

__all__ = ["geometric_sigmas", "esm_loss", "ism_loss", "ssm_loss", "dsm_loss"]

REDUCTIONS = ("mean", "none")
WEIGHTINGS = ("sigma2", "none")

_DATA = FloatTensor(dim=2, nonempty=True, finite=True)
_SCORE_MODEL = Function("(x) -> score")


def _reduce(per_sample: Tensor, reduction: str) -> Tensor:
    return per_sample.mean() if reduction == "mean" else per_sample


@checked(sigma_max=Number(low=0.0), sigma_min=Number(low=0.0), L=Int(minimum=2))
def geometric_sigmas(sigma_max: float, sigma_min: float, L: int) -> Tensor:
    """``L`` levels from ``sigma_max`` down to ``sigma_min``, constant ratio, ``(L,)`` float64.

    ``σ_i = σ_max (σ_min/σ_max)^((i-1)/(L-1))``, as in NCSN (Song & Ermon 2019).
    """
    if not sigma_max > sigma_min:
        raise ValueError(
            f"sigma_max must be > sigma_min, got sigma_max={sigma_max}, sigma_min={sigma_min}"
        )
    return torch.exp(
        torch.linspace(math.log(sigma_max), math.log(sigma_min), L, dtype=torch.float64)
    )


@checked(
    score_model=_SCORE_MODEL,
    x=_DATA,
    true_score=FloatTensor(like="x", finite=True),
    reduction=OneOf(REDUCTIONS),
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
    s = call_like(score_model, x, name="score_model")
    return _reduce(0.5 * ((s - true_score) ** 2).sum(dim=1), reduction)


@checked(score_model=_SCORE_MODEL, x=_DATA, reduction=OneOf(REDUCTIONS))
def ism_loss(
    score_model: Callable[[Tensor], Tensor], x: Tensor, *, reduction: str = "mean"
) -> Tensor:
    """Implicit score matching (Hyvärinen 2005): ``tr(∇_x s_θ(x)) + ½ ||s_θ(x)||²``.

    The trace is exact: one backward pass per dimension (``D`` passes), so use it for low ``D``.
    Built with ``create_graph=True`` so that it can be minimised. ``x: (B, D)``; returns the batch
    mean or ``(B,)`` with ``reduction="none"``. Equals ``esm_loss - ½ E||∇log p||²`` in expectation
    (integration by parts, assuming ``p s_θ -> 0`` at infinity).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        s = call_like(score_model, x, name="score_model")
        trace = torch.zeros(x.shape[0], dtype=s.dtype, device=s.device)
        for i in range(x.shape[1]):
            (g,) = torch.autograd.grad(s[:, i].sum(), x, create_graph=True)
            trace = trace + g[:, i]
    return _reduce(trace + 0.5 * (s**2).sum(dim=1), reduction)


@checked(
    score_model=_SCORE_MODEL,
    x=_DATA,
    n_projections=Int(),
    generator=Rng,
    variance_reduced=Flag,
    reduction=OneOf(REDUCTIONS),
)
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
    B = x.shape[0]
    xr = x.detach().repeat(n_projections, 1).requires_grad_(True)  # (P*B, D)
    v = noise_like(xr, generator)
    with torch.enable_grad():
        s = call_like(score_model, xr, name="score_model")
        sv = (s * v).sum(dim=1)
        (g,) = torch.autograd.grad(sv.sum(), xr, create_graph=True)  # g = J^T v
        vjv = (g * v).sum(dim=1)
        second = 0.5 * (s**2).sum(dim=1) if variance_reduced else 0.5 * sv**2
    per_sample = (vjv + second).reshape(n_projections, B).mean(dim=0)
    return _reduce(per_sample, reduction)


def _noise_levels(sigmas: Any, name: str, x0: Tensor) -> Tensor:
    """One level (a number) or a 1-D tensor of levels, each finite and > 0, as ``(L,)`` in
    ``x0``'s dtype and device."""
    expected = "a number or a 1-D tensor of noise levels"
    if isinstance(sigmas, Tensor):
        if sigmas.dim() > 1:
            raise ValueError(f"{name} must be {expected}, got shape {tuple(sigmas.shape)}")
        levels = sigmas.detach().to(device=x0.device, dtype=x0.dtype).reshape(-1)
    elif isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool):
        levels = torch.tensor([float(sigmas)], dtype=x0.dtype, device=x0.device)
    else:
        raise TypeError(f"{name} must be {expected}, got {describe(sigmas)}")
    if levels.numel() == 0 or not bool(torch.isfinite(levels).all()) or bool((levels <= 0).any()):
        raise ValueError(f"{name} must be non-empty, finite and > 0")
    return levels


def _level_indices(idx: Any, name: str, levels: Tensor, x0: Tensor) -> Tensor:
    """An integer tensor ``(B,)`` of indices into the ``L`` levels."""
    L = levels.numel()
    what = f"indices of the noise levels, 0..{L - 1}"
    idx = index_tensor(idx, name, x0.shape[0], what, allow_int=False, device=x0.device)
    if bool((idx < 0).any()) or bool((idx >= L).any()):
        raise ValueError(f"{name} must lie in 0..{L - 1}")
    return idx


@checked(
    score_model=Function("(x, sigma) -> score"),
    x0=_DATA,
    sigmas=Check(_noise_levels, uses=("x0",)),
    generator=Rng,
    sigma_idx=Check(_level_indices, uses=("sigmas", "x0"), optional=True),
    noise=FloatTensor(like="x0", finite=True, optional=True),
    weighting=OneOf(WEIGHTINGS),
    reduction=OneOf(REDUCTIONS),
)
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

    Song & Ermon (2019, Eq. 6). Per sample: ``x̃ = x0 + σ z`` and

        ℓ = λ(σ) · ½ ||s_θ(x̃, σ) - target||²,
        target = ∇_x̃ log q_σ(x̃ | x0) = -(x̃ - x0)/σ² = -z/σ,

    so with ``λ = σ²``: ``ℓ = ½ ||σ s_θ(x̃, σ) + z||²``.

    Args:
        score_model: ``score_model(x̃ (B, D), sigma (B,)) -> (B, D)``; wrap a model of ``x`` alone as
            ``lambda x, s: net(x)`` to train at a single level.
        x0: clean data ``(B, D)``.
        sigmas: one level (a number) or a 1-D tensor of ``L`` levels; each sample then uses
            ``sigmas[sigma_idx]``, ``sigma_idx`` uniform in ``0..L-1`` (drawn from ``generator``
            first, then ``z``).
        sigma_idx: ``(B,)`` long, the level of each sample (instead of drawing it).
        noise: ``z: (B, D)`` (instead of drawing it).
        weighting: ``"sigma2"`` (``λ = σ²``) or ``"none"`` (``λ = 1``).
        reduction: ``"mean"`` over the batch (summed over D) or ``"none"`` for ``(B,)``.
    """
    levels = torch.as_tensor(sigmas)  # @checked made it a (L,) tensor on x0's device
    if sigma_idx is None:
        sigma_idx = torch.randint(
            levels.numel(),
            (x0.shape[0],),
            generator=generator,
            device=generator.device if generator is not None else "cpu",
        )
    sigma = levels[sigma_idx.to(x0.device)]  # (B,)
    z = noise if noise is not None else noise_like(x0, generator)
    x_tilde = x0 + pad_like(sigma, x0) * z
    target = -z / pad_like(sigma, x0)  # = -(x̃ - x0) / σ²
    s = call_like(score_model, x_tilde, sigma, name="score_model")
    per_sample = 0.5 * ((s - target) ** 2).sum(dim=1)
    if weighting == "sigma2":
        per_sample = sigma**2 * per_sample
    return _reduce(per_sample, reduction)
