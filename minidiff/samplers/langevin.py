"""Langevin dynamics and annealed Langevin dynamics (chapter 5).

The Langevin SDE ``dx = ½ ∇log p(x) dt + dW`` has ``p`` as its stationary law. Its Euler–Maruyama
discretisation with step ``ε`` is the *unadjusted Langevin algorithm*

    x_{k+1} = x_k + (ε / 2) ∇log p(x_k) + sqrt(ε) z_k,   z_k ~ N(0, I)      -> langevin_step

(Welling & Teh 2011; Song & Ermon 2019, Eq. 4 — the ``ε/2`` convention used throughout the course;
the "``τ``" convention ``x + τ ∇log p + sqrt(2τ) z`` is the same update with ``τ = ε/2``).
For ``ε -> 0`` and ``K -> ∞`` the iterates are samples of ``p``; a finite ``ε`` biases them (the
chain's stationary law is slightly wider than ``p``).

Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) runs the chain on a sequence of
noised laws ``q_{σ_1}, …, q_{σ_L}`` with ``σ_1 > … > σ_L``, step ``α_i = ε σ_i² / σ_L²`` at level
``i``, each level started from the previous level's samples. Large ``σ`` connects distant modes
so that the chain can redistribute mass between them; small ``σ`` refines.

Shapes: ``x: (B, ...)``; a score ``score_fn(x) -> (B, ...)`` or, noise-conditional,
``score_fn(x, sigma: (B,) float) -> (B, ...)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .._validation import (
    call_like,
    check_all_finite,
    check_callable,
    check_float_dtype,
    check_generator,
    check_number,
    check_positive_int,
    check_shape,
    check_tensor,
)
from .ddpm import NonFiniteSampleError
from .registry import register_sampler

__all__ = [
    "ScoreFn",
    "NoiseConditionalScoreFn",
    "langevin_step",
    "langevin_sample",
    "annealed_step_sizes",
    "annealed_langevin_sample",
]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""A time-independent score ``score_fn(x: (B, ...)) -> (B, ...)``."""
NoiseConditionalScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A noise-conditional score ``score_fn(x: (B, ...), sigma: (B,) float) -> (B, ...)``."""

INITS = ("gaussian", "uniform")


def _check_step_size(step_size: object, name: str = "step_size") -> float:
    return check_number(step_size, name, low=0.0)


def langevin_step(
    x: torch.Tensor, score: torch.Tensor, step_size: float | torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """One unadjusted Langevin step ``x + (ε/2) score + sqrt(ε) noise`` (Song & Ermon 2019, Eq. 4).

    Args:
        x: current state ``(B, ...)``.
        score: ``∇log p(x)`` at ``x``, same shape.
        step_size: ``ε > 0``: a number, or a tensor of shape ``(B,)`` (one step per sample, as in
            the corrector of predictor–corrector samplers) or broadcastable to ``x``.
        noise: ``z ~ N(0, I)``, same shape as ``x``.
    Returns:
        the next state, same shape as ``x``.
    """
    check_tensor(x, "x")
    check_tensor(score, "score")
    check_tensor(noise, "noise")
    for name, v in (("score", score), ("noise", noise)):
        if v.shape != x.shape:
            raise ValueError(
                f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}"
            )
    check_all_finite((x, "x"), (score, "score"), (noise, "noise"))
    if isinstance(step_size, torch.Tensor) and step_size.numel() != 1:
        if not step_size.is_floating_point():
            raise TypeError(
                f"step_size must be a number or a floating tensor, got dtype {step_size.dtype}"
            )
        eps = _step_column(step_size, x)
        try:
            torch.broadcast_shapes(eps.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"step_size of shape {tuple(step_size.shape)} must be a number, ({x.shape[0]},) or "
                f"broadcastable to x {tuple(x.shape)}"
            ) from None
        if bool((eps <= 0).any()) or not bool(torch.isfinite(eps).all()):
            raise ValueError("step_size must be finite and > 0")
        return _langevin_step(x, score, step_size, noise)
    return _langevin_step(x, score, _check_step_size(step_size), noise)


def _step_column(step_size: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    eps = step_size.to(dtype=x.dtype, device=x.device)
    if eps.dim() == 1 and eps.shape[0] == x.shape[0] and x.dim() > 1:
        eps = eps.reshape(-1, *([1] * (x.dim() - 1)))
    return eps


def _langevin_step(
    x: torch.Tensor, score: torch.Tensor, step_size: float | torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """:func:`langevin_step` without the checks: for loops whose inputs were checked once."""
    if isinstance(step_size, torch.Tensor):
        eps = _step_column(step_size, x)
        return x + 0.5 * eps * score + eps.sqrt() * noise
    return x + (0.5 * step_size) * score + math.sqrt(step_size) * noise


def _call_score(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor
) -> torch.Tensor:
    return call_like(fn, x, *args, name="score_fn")


def _randn(
    shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=dev).to(like.device)


@register_sampler("langevin")
def langevin_sample(
    score_fn: ScoreFn,
    x_init: torch.Tensor | tuple[int, ...],
    *,
    steps: int,
    step_size: float,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``steps`` unadjusted Langevin steps with a time-independent score (1 call per step).

    Args:
        score_fn: ``score_fn(x (B, ...)) -> ∇log p(x) (B, ...)``.
        x_init: the starting points ``(B, ...)``, or a shape: then ``x_0 ~ N(0, I)`` drawn from
            ``generator``.
        steps: number of steps ``K >= 1``.
        step_size: ``ε > 0`` (see :func:`langevin_step`).
        generator: source of every random number.
        return_trajectory: also return ``[x_0, x_1, …, x_K]`` (``K + 1`` tensors).
    Raises:
        NonFiniteSampleError: naming the first step whose iterate holds NaN/inf (step too large?).
    """
    check_callable(score_fn, "score_fn", "(x) -> score")
    steps = check_positive_int(steps, "steps")
    eps = _check_step_size(step_size)
    check_generator(generator)
    check_float_dtype(dtype)
    if isinstance(x_init, torch.Tensor):
        x = check_tensor(x_init, "x_init", finite=True).clone()
    elif isinstance(x_init, (tuple, list, torch.Size)):
        shape = check_shape(x_init, "x_init")
        dev = generator.device if generator is not None else "cpu"
        x = torch.randn(shape, generator=generator, dtype=dtype, device=dev)
    else:
        raise TypeError(
            f"x_init must be a tensor of starting points (B, ...) or a shape such as (1000, 2), "
            f"got {type(x_init).__name__}"
        )
    trajectory = [x] if return_trajectory else []
    with torch.no_grad():
        for k in range(1, steps + 1):
            x = _langevin_step(
                x, _call_score(score_fn, x), eps, _randn(tuple(x.shape), x, generator)
            )
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteSampleError(
                    f"langevin_sample produced non-finite values at step {k} of {steps} "
                    f"(step_size={eps:g}; try a smaller one)"
                )
            if return_trajectory:
                trajectory.append(x)
    return (x, trajectory) if return_trajectory else x


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


def annealed_step_sizes(sigmas: torch.Tensor | Sequence[float], step_lr: float) -> torch.Tensor:
    """``α_i = ε σ_i² / σ_L²`` for every level (Song & Ermon 2019, Alg. 1), ``(L,)`` float64.

    The ratio ``α_i / σ_i²`` is the same at every level, so the "signal-to-noise" of one update,
    ``‖(α_i/2) s‖ / ‖sqrt(α_i) z‖ ∝ sqrt(α_i) / σ_i``, does not depend on ``σ_i``.
    """
    s = check_sigmas(sigmas)
    eps = _check_step_size(step_lr, "step_lr")
    return eps * s**2 / s[-1] ** 2


@register_sampler("annealed_langevin")
def annealed_langevin_sample(
    score_fn: NoiseConditionalScoreFn,
    sigmas: torch.Tensor | Sequence[float],
    shape: tuple[int, ...],
    *,
    steps_per_level: int,
    step_lr: float,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    init: str | torch.Tensor = "gaussian",
    denoise: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1); ``L · steps_per_level`` score calls.

    for i = 1..L:  α_i = ε σ_i² / σ_L²;  repeat ``steps_per_level`` times:
        x <- x + (α_i / 2) s(x, σ_i) + sqrt(α_i) z

    Args:
        score_fn: noise-conditional ``score_fn(x (B, ...), sigma (B,) float) -> (B, ...)``, the
            score ``∇log q_σ(x)``.
        sigmas: ``(L,)`` strictly decreasing positive noise levels ``σ_1 > … > σ_L``.
        shape: shape of the batch, e.g. ``(5000, 2)``.
        steps_per_level: ``T >= 1`` Langevin steps per level.
        step_lr: ``ε > 0``, the step at the smallest level.
        init: ``"gaussian"`` (``σ_1 · N(0, I)``, close to ``q_{σ_1}`` when ``σ_1`` dominates the
            data scale), ``"uniform"`` (``U[-1, 1]`` per coordinate, like the paper's ``U[0, 1]``
            for images) or a tensor of starting points with shape ``shape``.
        denoise: finish with one Tweedie step ``x + σ_L² s(x, σ_L)`` (Song & Ermon 2020), which
            removes the ``σ_L`` noise left in the samples.
        return_trajectory: also return ``[x_init, then every iterate]`` (``L · T + 1`` tensors, plus
            one if ``denoise``).
    Raises:
        NonFiniteSampleError: naming the level and step where NaN/inf first appeared.
    """
    check_callable(score_fn, "score_fn", "(x, sigma) -> score")
    s = check_sigmas(sigmas)
    shape = check_shape(shape)
    steps_per_level = check_positive_int(steps_per_level, "steps_per_level")
    alphas = annealed_step_sizes(s, step_lr)
    check_generator(generator)
    check_float_dtype(dtype)
    dev = generator.device if generator is not None else torch.device("cpu")
    if isinstance(init, torch.Tensor):
        x = check_tensor(init, "init", finite=True).clone()
        if tuple(x.shape) != shape:
            raise ValueError(f"init must have shape {shape}, got {tuple(x.shape)}")
    elif init == "gaussian":
        x = float(s[0]) * torch.randn(shape, generator=generator, dtype=dtype, device=dev)
    elif init == "uniform":
        x = 2 * torch.rand(shape, generator=generator, dtype=dtype, device=dev) - 1
    else:
        raise ValueError(
            f"init must be one of {list(INITS)} or a tensor of shape {shape}, got {init!r}"
        )
    trajectory = [x] if return_trajectory else []
    L = s.numel()
    with torch.no_grad():
        for i in range(L):
            sig = torch.full((shape[0],), float(s[i]), dtype=x.dtype, device=x.device)
            a = float(alphas[i])
            for k in range(1, steps_per_level + 1):
                x = _langevin_step(x, _call_score(score_fn, x, sig), a, _randn(shape, x, generator))
                if not bool(torch.isfinite(x).all()):
                    raise NonFiniteSampleError(
                        f"annealed_langevin_sample produced non-finite values at level {i + 1} "
                        f"of {L} (sigma={float(s[i]):.4g}), step {k} of {steps_per_level}; "
                        "try a smaller step_lr"
                    )
                if return_trajectory:
                    trajectory.append(x)
        if denoise:
            x = x + float(s[-1]) ** 2 * _call_score(score_fn, x, sig)
            if return_trajectory:
                trajectory.append(x)
    return (x, trajectory) if return_trajectory else x
