"""Langevin dynamics and annealed Langevin dynamics (chapter 5).

The Langevin SDE ``dx = ½ ∇log p(x) dt + dW`` has ``p`` as its stationary law. Its Euler–Maruyama
discretisation with step size ``h`` is the *unadjusted Langevin algorithm*

    x_{k+1} = x_k + (h / 2) ∇log p(x_k) + sqrt(h) z_k,   z_k ~ N(0, I)      -> langevin_step

(Welling & Teh 2011; Song & Ermon 2019, Eq. 4, who call the step ``ε``; here ``ε`` is kept for the
noise of a diffusion model). The "``τ``" convention ``x + τ ∇log p + sqrt(2τ) z`` is the same
update with ``τ = h/2``. For ``h -> 0`` and ``K -> ∞`` the iterates are samples of ``p``; a finite
``h`` biases them (the chain's stationary law is slightly wider than ``p``).

Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) runs the chain on a sequence of
noised laws ``q_{σ_1}, …, q_{σ_L}`` with ``σ_1 > … > σ_L``, step ``α_i = h σ_i² / σ_L²`` at level
``i`` (``h = step_lr``), each level started from the previous level's samples. Large ``σ``
connects distant modes so that the chain can redistribute mass between them; small ``σ`` refines.

Shapes: ``x: (B, ...)``; a score ``score_fn(x) -> (B, ...)`` or, noise-conditional,
``score_fn(x, sigma: (B,) float) -> (B, ...)``. Both samplers run through the one loop of
:mod:`minidiff.samplers.loop` (start ``x_T`` or a prior draw, NaN watch, ``on_step``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .._validation import (
    Check,
    Flag,
    FloatTensor,
    Function,
    Int,
    Number,
    OneOf,
    call_like,
    check_number,
    checked,
)
from ..tensors import noise_like, pad_like
from .loop import OnStep, Prior, draw_start, normal_prior, run_sampler
from .registry import register_sampler

__all__ = [
    "StaticScoreFn",
    "NoiseConditionalScoreFn",
    "langevin_step",
    "langevin_sample",
    "annealed_step_sizes",
    "annealed_langevin_sample",
]

StaticScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A time-independent score ``score_fn(x: (B, ...)) -> (B, ...)``."""
NoiseConditionalScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A noise-conditional score ``score_fn(x: (B, ...), sigma: (B,) float) -> (B, ...)``."""

PRIORS = ("gaussian", "uniform")


def _step_size(step_size: object, name: str, x: object = None) -> float | torch.Tensor:
    """A number ``> 0``, or a floating tensor ``(B,)`` (or broadcastable to ``x``) of them."""
    if not isinstance(step_size, torch.Tensor) or step_size.numel() == 1:
        return check_number(step_size, name, low=0.0)
    if not step_size.is_floating_point():
        raise TypeError(
            f"{name} must be a number or a floating tensor, got dtype {step_size.dtype}"
        )
    if isinstance(x, torch.Tensor):
        try:
            torch.broadcast_shapes(_step_column(step_size, x).shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(step_size.shape)} must be a number, ({x.shape[0]},) or "
                f"broadcastable to x {tuple(x.shape)}"
            ) from None
    if bool((step_size <= 0).any()) or not bool(torch.isfinite(step_size).all()):
        raise ValueError(f"{name} must be finite and > 0")
    return step_size


@checked(
    x=FloatTensor(finite=True),
    score=FloatTensor(like="x", finite=True),
    step_size=Check(_step_size, uses=("x",)),
    noise=FloatTensor(like="x", finite=True),
)
def langevin_step(
    x: torch.Tensor, score: torch.Tensor, step_size: float | torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """One unadjusted Langevin step ``x + (h/2) score + sqrt(h) noise`` (Song & Ermon 2019, Eq. 4).

    Args:
        x: current state ``(B, ...)``.
        score: ``∇log p(x)`` at ``x``, same shape.
        step_size: ``h > 0``: a number, or a tensor of shape ``(B,)`` (one step per sample, as in
            the corrector of predictor–corrector samplers) or broadcastable to ``x``.
        noise: ``z ~ N(0, I)``, same shape as ``x``.
    Returns:
        the next state, same shape as ``x``.
    """
    if isinstance(step_size, torch.Tensor):
        h = _step_column(step_size, x)
        return x + 0.5 * h * score + h.sqrt() * noise
    return x + (0.5 * step_size) * score + math.sqrt(step_size) * noise


def _step_column(step_size: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    h = step_size.to(dtype=x.dtype, device=x.device)
    if h.dim() == 1 and h.shape[0] == x.shape[0] and x.dim() > 1:
        h = pad_like(h, x)
    return h


def _call_score(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor
) -> torch.Tensor:
    return call_like(fn, x, *args, name="score_fn")


@register_sampler("langevin")
@checked(score_fn=Function("(x) -> score"), steps=Int(), step_size=Number(low=0.0))
def langevin_sample(
    score_fn: StaticScoreFn,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Run ``steps`` unadjusted Langevin steps with a time-independent score (1 call per step).

    Args:
        score_fn: ``score_fn(x (B, ...)) -> ∇log p(x) (B, ...)``.
        shape: the batch shape, e.g. ``(1000, 2)``: the chains start at ``N(0, I)`` draws.
        x_T: the starting points ``(B, ...)`` instead (``shape`` may then be omitted).
        steps: number of steps ``K >= 1``.
        step_size: ``h > 0`` (see :func:`langevin_step`).
        generator: source of every random number.
        dtype: dtype of the drawn start (None: ``torch.float32``); with ``x_T`` it must be None or
            ``x_T``'s dtype (a ``ValueError`` otherwise: the sampler runs in ``x_T``'s dtype).
        on_step: called with the start and each iterate ``x_1, …, x_K``.
    Raises:
        NonFiniteSampleError: naming the first step whose iterate holds NaN/inf (step too large?).
    """
    h = step_size
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)

    def step(x: torch.Tensor, k: int, k_next: int) -> torch.Tensor:
        return langevin_step.unchecked(x, _call_score(score_fn, x), h, noise_like(x, generator))

    return run_sampler(
        step,
        x,
        [(k, k + 1) for k in range(steps)],
        name="langevin_sample",
        on_step=on_step,
        progress=progress,
        hint=f"step_size={h:g}; try a smaller one",
        clock="k",
    )


def check_sigmas(sigmas: torch.Tensor | Sequence[float], name: str = "sigmas") -> torch.Tensor:
    """``sigmas`` as 1-D float64; checks: non-empty, finite, positive, strictly decreasing."""
    if sigmas is None or isinstance(sigmas, (str, bytes)):
        raise TypeError(
            f"{name} must be a 1-D sequence of noise levels, got {type(sigmas).__name__}"
        )
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{name} must be a 1-D sequence of noise levels, got {type(sigmas).__name__}"
        ) from exc
    if s.dim() != 1 or s.numel() == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence of noise levels, got shape {tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise ValueError(f"{name} must be finite and > 0, got {s.tolist()}")
    if s.numel() > 1 and not bool((s[1:] < s[:-1]).all()):
        raise ValueError(
            f"{name} must be strictly decreasing (sigma_1 > ... > sigma_L), got {s.tolist()}"
        )
    return s


@checked(sigmas=Check(check_sigmas), step_lr=Number(low=0.0))
def annealed_step_sizes(sigmas: torch.Tensor | Sequence[float], step_lr: float) -> torch.Tensor:
    """``α_i = h σ_i² / σ_L²`` (``h = step_lr``) for every level (Song & Ermon 2019, Alg. 1),
    ``(L,)`` float64.

    The ratio ``α_i / σ_i²`` is the same at every level, so the "signal-to-noise" of one update,
    ``‖(α_i/2) s‖ / ‖sqrt(α_i) z‖ ∝ sqrt(α_i) / σ_i``, does not depend on ``σ_i``.
    """
    s: torch.Tensor = sigmas  # type: ignore[assignment]  # @checked made it a float64 tensor
    return step_lr * s**2 / s[-1] ** 2


@register_sampler("annealed_langevin")
@checked(
    score_fn=Function("(x, sigma) -> score"),
    sigmas=Check(check_sigmas),
    steps_per_level=Int(),
    step_lr=Number(low=0.0),
    prior=OneOf(PRIORS),
    denoise=Flag,
)
def annealed_langevin_sample(
    score_fn: NoiseConditionalScoreFn,
    sigmas: torch.Tensor | Sequence[float],
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps_per_level: int,
    step_lr: float,
    prior: str = "gaussian",
    denoise: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1); ``L · steps_per_level`` score calls.

    for i = 1..L:  α_i = h σ_i² / σ_L²;  repeat ``steps_per_level`` times:
        x <- x + (α_i / 2) s(x, σ_i) + sqrt(α_i) z

    Args:
        score_fn: noise-conditional ``score_fn(x (B, ...), sigma (B,) float) -> (B, ...)``, the
            score ``∇log q_σ(x)``.
        sigmas: ``(L,)`` strictly decreasing positive noise levels ``σ_1 > … > σ_L``.
        shape: shape of the batch, e.g. ``(5000, 2)``; may be omitted when ``x_T`` is given.
        x_T: the starting points ``(B, ...)`` instead of a draw from ``prior``.
        steps_per_level: ``K >= 1`` Langevin steps per level.
        step_lr: ``h > 0``, the step at the smallest level.
        prior: the law of the start when ``x_T`` is None: ``"gaussian"`` (``σ_1 · N(0, I)``, close
            to ``q_{σ_1}`` when ``σ_1`` dominates the data scale) or ``"uniform"`` (``U[-1, 1]``
            per coordinate, like the paper's ``U[0, 1]`` for images).
        denoise: finish with one Tweedie step ``x + σ_L² s(x, σ_L)`` (Song & Ermon 2020), which
            removes the ``σ_L`` noise left in the samples (one more step for ``on_step``).
        dtype: dtype of the drawn start (None: ``torch.float32``); with ``x_T`` it must be None or
            ``x_T``'s dtype (a ``ValueError`` otherwise: the sampler runs in ``x_T``'s dtype).
        on_step: called with the start and every iterate (its ``t`` is the level's ``σ``).
    Raises:
        NonFiniteSampleError: naming the step (and its ``σ``) where NaN/inf first appeared.
    """
    s: torch.Tensor = sigmas  # type: ignore[assignment]  # @checked made it a float64 tensor
    alphas = annealed_step_sizes.unchecked(s, step_lr)
    x = draw_start(
        x_T, shape, generator=generator, device=device, dtype=dtype, prior=_PRIORS[prior](s)
    )
    step_of = dict(zip(s.tolist(), alphas.tolist(), strict=True))

    def step(x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        sig = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        score = _call_score(score_fn, x, sig)
        if sigma_next == 0.0:  # the final Tweedie step
            return x + sigma**2 * score
        return langevin_step.unchecked(x, score, step_of[sigma], noise_like(x, generator))

    # each Langevin step stays at its level (on_step labels the iterate with its own σ); the
    # Tweedie step goes from σ_L to 0
    times = [(v, v) for v in s.tolist() for _ in range(steps_per_level)]
    if denoise:
        times.append((times[-1][0], 0.0))
    return run_sampler(
        step,
        x,
        times,
        name="annealed_langevin_sample",
        on_step=on_step,
        progress=progress,
        hint="try a smaller step_lr",
        clock="sigma",
    )


def _gaussian_prior(s: torch.Tensor) -> Prior:
    return normal_prior(float(s[0]))


def _uniform_prior(s: torch.Tensor) -> Prior:
    def draw(
        shape: tuple[int, ...], g: torch.Generator | None, dtype: torch.dtype, dev: torch.device
    ) -> torch.Tensor:
        return 2 * torch.rand(shape, generator=g, dtype=dtype, device=dev) - 1

    return draw


_PRIORS = {"gaussian": _gaussian_prior, "uniform": _uniform_prior}
