"""Clipping the predicted clean sample ``x̂₀``: static clipping and dynamic thresholding.

Every sampler of an ε-model predicts, at each step, the clean sample (Tweedie; chapter 6)

    x̂₀(x_t, ε) = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t).

Early in sampling ``sqrt(ᾱ_t)`` is tiny, so a small error in ``ε`` becomes a large one in ``x̂₀``;
a trained image model then wanders outside the data's range ``[-1, 1]`` and the samples saturate.
Clipping replaces ``x̂₀`` by a value inside the range and lets the update use it:

* **static clipping** (Ho et al. 2020's code; ``diffusers``' ``clip_sample=True``):
  ``x̂₀ <- clamp(x̂₀, -1, 1)``;
* **dynamic thresholding** (Imagen, Saharia et al. 2022, Sec. 2.3; ``diffusers``'
  ``thresholding=True``): per sample, ``s = max(quantile_p(|x̂₀|), 1)``, then
  ``x̂₀ <- clamp(x̂₀, -s, s) / s``. Saturated pixels are pushed inwards instead of piling up at
  ±1, which matters at large guidance weights.

What it changes in each update. Every update below is a function of ``(x_t, x̂₀)``, so clipping is
the same thing as replacing the model's ``ε`` by the one the clipped ``x̂₀`` implies,

    ε̃ = (x_t - sqrt(ᾱ_t) clip(x̂₀)) / sqrt(1 - ᾱ_t)                     (:func:`clip_eps`)

* DDPM: the reverse mean ``μ_θ = (x_t - β_t / sqrt(1 - ᾱ_t) ε) / sqrt(α_t)`` is *identically* the
  posterior mean ``μ̃_t(x_t, x̂₀) = c₁ x̂₀ + c₂ x_t`` with ``c₁ = sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t)``,
  ``c₂ = sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t)`` evaluated at ``x̂₀ = x̂₀(x_t, ε)`` (chapter 2:
  substitute ``x̂₀`` and collect the ``x_t`` terms, ``c₂ + c₁ / sqrt(ᾱ_t) = 1 / sqrt(α_t)``).
  With clipping the step is ``μ̃_t(x_t, clip(x̂₀)) + σ_t z``, which is the ε-form with ``ε̃``;
  the noise is unchanged.
* DDIM: ``x_{t'} = sqrt(ᾱ_{t'}) x̂₀ + sqrt(1 - ᾱ_{t'} - σ²) ε + σ z`` uses both ``x̂₀`` and ``ε``;
  with clipping it uses ``clip(x̂₀)`` and the ``ε̃`` re-derived from it (as ``diffusers`` does), so
  the point still lies on the line through ``x_t`` that the step's geometry assumes.
* probability-flow ODE (and the SDE samplers): the score and ``x̂₀`` are tied by Tweedie's formula
  ``x̂₀ = (x + σ(t)² ∇log p_t(x)) / α(t)``; clipping uses the score
  ``(α(t) clip(x̂₀) - x) / σ(t)²`` (:func:`clip_score_fn`).

Why it is off by default. The derivations of chapters 2–8 have no clipping: the reverse step, the
ELBO, DDIM and the ODE are exact for any data law, and an exact model never needs it (the
posterior mean of data in ``[-1, 1]`` lies in ``[-1, 1]``). Clipping is a prior on the data, "it
lies in ``[-1, 1]``", which is true for images scaled to ``[-1, 1]`` and false for the 2D toys
(their points reach |x| ≈ 3): clipping them would fold every mode onto the square. It is for images.

``diffusers``: ``clip_sample`` / ``clip_sample_range`` = ``clip_x0="static"`` /
``static_clip(x0, limit)``; ``thresholding`` / ``dynamic_thresholding_ratio`` /
``sample_max_value`` = ``clip_x0="dynamic"`` / ``dynamic_threshold(x0, percentile, max_value)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._validation import Check, FloatTensor, Number, call_like, check_number, checked
from ..diffusion import EpsModel, eps_from_x0, predict_x0_from_eps
from ..schedules import NoiseSchedule
from ..tensors import pad_like

__all__ = [
    "X0Clip",
    "CLIP_MODES",
    "CLIP_X0",
    "static_clip",
    "dynamic_threshold",
    "resolve_clip",
    "clip_eps",
    "clip_eps_model",
    "clip_score_fn",
]

X0Clip = Callable[[torch.Tensor], torch.Tensor]
"""A map ``x̂₀ (B, ...) -> x̂₀ (B, ...)`` applied to every prediction of the clean sample."""


def _max_value(value: object, name: str) -> float:
    if isinstance(value, float) and value == math.inf:  # no cap (Imagen)
        return value
    return check_number(value, name, low=1.0, low_open=False)


@checked(x0=FloatTensor(), limit=Number(low=0.0))
def static_clip(x0: torch.Tensor, limit: float = 1.0) -> torch.Tensor:
    """``clamp(x̂₀, -limit, limit)`` (``diffusers``' ``clip_sample`` with ``clip_sample_range``)."""
    return x0.clamp(-limit, limit)


@checked(
    x0=FloatTensor(),
    percentile=Number(low=0.0, high=1.0, high_open=False),
    max_value=Check(_max_value),
)
def dynamic_threshold(
    x0: torch.Tensor, percentile: float = 0.995, max_value: float = math.inf
) -> torch.Tensor:
    """Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3), per sample.

    ``s = clamp(quantile_p(|x̂₀|), 1, max_value)`` over each sample's values, then
    ``clamp(x̂₀, -s, s) / s``. A sample whose values lie in ``[-1, 1]`` up to its ``p``-quantile is
    only clipped at ±1; one that overshoots is clipped at ``±s`` and shrunk back into ``[-1, 1]``.
    ``max_value`` caps ``s`` (``diffusers``' ``sample_max_value``; Imagen: no cap).
    Shapes: ``(B, ...) -> (B, ...)``.
    """
    flat = x0.reshape(x0.shape[0], -1).abs()
    if flat.dtype not in (torch.float32, torch.float64):  # quantile needs float32 or float64
        flat = flat.float()
    s = torch.quantile(flat, percentile, dim=1).clamp(min=1.0, max=max_value)
    s = pad_like(s, x0)
    return torch.maximum(torch.minimum(x0, s), -s) / s


CLIP_MODES: dict[str, X0Clip] = {"static": static_clip, "dynamic": dynamic_threshold}
"""The names a sampler's ``clip_x0`` accepts; any other map ``x̂₀ -> x̂₀`` may be passed as is."""


def resolve_clip(clip_x0: object, name: str = "clip_x0") -> X0Clip | None:
    """The map for a sampler's ``clip_x0``: None (off), ``"static"``, ``"dynamic"`` or a callable.

    Other parameters: pass e.g. ``functools.partial(dynamic_threshold, percentile=0.9)``.
    """
    if clip_x0 is None:
        return None
    expected = f"None, one of {list(CLIP_MODES)} or a callable x0 -> x0"
    if isinstance(clip_x0, str):
        if clip_x0 not in CLIP_MODES:
            raise ValueError(f"{name} must be {expected}, got {clip_x0!r}")
        return CLIP_MODES[clip_x0]
    if callable(clip_x0):
        return clip_x0
    raise TypeError(f"{name} must be {expected}, got {type(clip_x0).__name__}")


CLIP_X0 = Check(resolve_clip, optional=True)
"""The ``@checked`` spec of a sampler's ``clip_x0``: the body receives the map (or None)."""


def clip_eps(
    x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule, clip: X0Clip
) -> torch.Tensor:
    """``ε̃ = (x_t - sqrt(ᾱ_t) clip(x̂₀)) / sqrt(1 - ᾱ_t)`` with ``x̂₀ = x̂₀(x_t, ε)``.

    ``x_t, eps: (B, ...)``, ``t: (B,)`` long in ``1..T``; ``clip`` a map ``x̂₀ -> x̂₀``.
    """
    return clipped_x0_eps(x_t, t, eps, schedule, clip)[1]


def clipped_x0_eps(
    x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: NoiseSchedule, clip: X0Clip
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clip(x̂₀), ε̃)`` of :func:`clip_eps`, for a step that uses ``x̂₀`` itself.

    Rebuilding ``x̂₀`` from ``ε̃`` divides by ``sqrt(ᾱ_t)``, which multiplies ``ε̃``'s float32
    rounding by up to ``3·10⁴`` at the noisiest steps (a cosine schedule's ``ᾱ_T``): DDIM's last
    step, which returns ``x̂₀``, then leaves ``[-1, 1]`` by ``10⁻³``. A step given the clipped
    ``x̂₀`` keeps it exactly.
    """
    x0 = apply_clip(clip, predict_x0_from_eps.unchecked(x_t, t, eps, schedule))
    return x0, eps_from_x0.unchecked(x_t, t, x0, schedule)


def apply_clip(clip: X0Clip, x0: torch.Tensor) -> torch.Tensor:
    """``clip(x0)``, refused unless it is a tensor of ``x0``'s shape (a user's map that drops a
    dimension would otherwise broadcast silently through the step)."""
    return call_like(clip, x0, name="clip_x0", like="x̂₀")


def clip_eps_model(eps_model: EpsModel, schedule: NoiseSchedule, clip_x0: object) -> EpsModel:
    """``eps_model`` with its ``x̂₀`` clipped (``clip_x0`` as in :func:`resolve_clip`).

    Returns ``eps_model`` itself when ``clip_x0`` is None. Any sampler of ε-models run on the
    result takes the clipped step (see the module docstring).
    """
    clip = resolve_clip(clip_x0)
    if clip is None:
        return eps_model

    def clipped(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return clip_eps(x_t, t, eps_model(x_t, t), schedule, clip)

    return clipped


def clip_score_fn(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    marginal: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    clip_x0: object,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A continuous-time score with its ``x̂₀`` clipped: ``(α clip(x̂₀) - x) / σ²``.

    ``x̂₀ = (x + σ² score) / α`` (Tweedie), ``marginal(t) = (α(t), σ(t))`` (an SDE's
    ``marginal_coefficients``); ``score_fn(x (B, ...), t (B,) float) -> (B, ...)``. Returns
    ``score_fn`` itself when ``clip_x0`` is None.
    """
    clip = resolve_clip(clip_x0)
    if clip is None:
        return score_fn

    def clipped(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = marginal(t.to(torch.float64))
        a, var = pad_like(alpha, x), pad_like(sigma**2, x)
        x0 = apply_clip(clip, (x + var * score_fn(x, t)) / a)
        return (a * x0 - x) / var

    return clipped
