"""Noise schedules for the discrete forward process.

Contract (see the notation table in chapter 0): time is discrete, ``t ∈ {1, …, T}``, and every
array has length ``T + 1`` so that index ``t`` reads exactly like the lectures; index 0 is clean
data (``betas[0] = 0``, ``alpha_bar[0] = 1``).

    alpha_t     = 1 - beta_t
    alpha_bar_t = prod_{s <= t} alpha_s
    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    SNR(t)      = alpha_bar_t / (1 - alpha_bar_t)
    beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t     (posterior variance)

All arrays are stored in float64 so that numerical checks of the derivations are not limited by
float32 round-off; :meth:`NoiseSchedule.gather` casts to the dtype of the data.

Vocabulary of Hugging Face ``diffusers``: ``alpha_bar`` is ``alphas_cumprod`` and ``T`` is
``num_train_timesteps`` (their arrays are indexed from 0 = our t = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ._validation import Check, Int, Number, OneOf, checked, describe
from ._validation import check_timesteps as check_timesteps

# check_timesteps lives in _validation and stays importable from here.
__all__ = [
    "NoiseSchedule",
    "linear_schedule",
    "cosine_schedule",
    "quadratic_schedule",
    "sigmoid_schedule",
    "make_schedule",
    "SCHEDULES",
    "shifted_schedule",
]


def _betas(betas: object, name: str) -> torch.Tensor:
    """``beta_1..beta_T`` (T >= 1), each strictly inside (0, 1), as a float64 CPU tensor."""
    expected = "a 1-D tensor or sequence of floats"
    if isinstance(betas, (str, bytes)) or betas is None:
        raise TypeError(f"{name} must be {expected}, got {describe(betas)}")
    try:
        b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be {expected}, got {describe(betas)}") from exc
    if b.dim() != 1 or b.numel() < 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of beta_1..beta_T (T >= 1), got shape {tuple(b.shape)}"
        )
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{name} must be finite")
    outside = (b <= 0) | (b >= 1)
    if bool(outside.any()):
        raise ValueError(
            f"{name} must lie strictly inside (0, 1); got {int(outside.sum())} value(s) outside, "
            f"e.g. {float(b[outside][0]):.6g}"
        )
    return b


class NoiseSchedule:
    """A discrete variance schedule ``beta_1..beta_T`` and every quantity derived from it.

    Args:
        betas: the ``T`` values ``beta_1, …, beta_T``, each strictly inside ``(0, 1)``.

    Attributes (all float64 tensors of shape ``(T + 1,)``, index 0 = clean data):
        betas, alphas, alpha_bar, sqrt_alpha_bar, sqrt_one_minus_alpha_bar,
        posterior_variance (beta_tilde), posterior_mean_coef_x0, posterior_mean_coef_xt,
        snr, log_snr.
    """

    @checked(betas=Check(_betas))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, betas: torch.Tensor | Sequence[float]) -> None:
        b = torch.as_tensor(betas)  # @checked made it a float64 (T,) tensor on the CPU
        self.T: int = int(b.numel())
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, b])
        self.alphas = 1.0 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)
        self.sqrt_alpha_bar = self.alpha_bar.sqrt()
        self.sqrt_one_minus_alpha_bar = (1.0 - self.alpha_bar).sqrt()
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        self.alpha_bar_prev = alpha_bar_prev
        one_minus = 1.0 - self.alpha_bar
        one_minus_safe = torch.where(one_minus > 0, one_minus, torch.ones_like(one_minus))
        # beta_tilde_t = (1 - ab_{t-1}) / (1 - ab_t) * beta_t; it is 0 at t = 0 and at t = 1.
        self.posterior_variance = torch.where(
            one_minus > 0, (1.0 - alpha_bar_prev) / one_minus_safe * self.betas, 0.0
        )
        # mu_tilde = sqrt(ab_{t-1}) beta_t / (1 - ab_t) x0
        #          + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) x_t
        self.posterior_mean_coef_x0 = torch.where(
            one_minus > 0, alpha_bar_prev.sqrt() * self.betas / one_minus_safe, 1.0
        )
        self.posterior_mean_coef_xt = torch.where(
            one_minus > 0, self.alphas.sqrt() * (1.0 - alpha_bar_prev) / one_minus_safe, 0.0
        )
        with torch.no_grad():
            self.snr = torch.where(
                one_minus > 0,
                self.alpha_bar / one_minus_safe,
                torch.tensor(math.inf, dtype=torch.float64),
            )
            self.log_snr = self.snr.log()

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(T={self.T}, beta_1={float(self.betas[1]):.3g}, "
            f"beta_T={float(self.betas[-1]):.3g}, "
            f"alpha_bar_T={float(self.alpha_bar[-1]):.3g})"
        )

    def __len__(self) -> int:
        return self.T

    def gather(
        self,
        values: torch.Tensor,
        t: torch.Tensor | int,
        ndim: int,
        *,
        like: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``values[t]`` reshaped to ``(B, 1, …, 1)`` so it broadcasts against ``(B, …)``
        data.

        ``values`` is one of the schedule's ``(T + 1,)`` arrays, ``t`` a long tensor ``(B,)`` (or
        an int: one value, shape ``(1, 1, …)``) and ``ndim`` the number of dimensions of the data.
        The result takes the dtype and device of ``like`` when given.
        """
        out = values[t] if isinstance(t, int) else values.to(t.device)[t]
        if like is not None:
            out = out.to(dtype=like.dtype, device=like.device)
        return out.reshape(-1, *([1] * (ndim - 1)))

    @checked(steps=Int(optional=True))
    def timesteps(self, steps: int | None = None) -> torch.Tensor:
        """Decreasing timesteps ``T, …, 1`` (or ``steps`` evenly strided ones ending at 1)."""
        if steps is None:
            return torch.arange(self.T, 0, -1)
        if steps > self.T:
            raise ValueError(f"steps must be <= T={self.T}, got {steps}")
        ts = torch.linspace(1, self.T, steps, dtype=torch.float64).round().long()
        return torch.unique(ts).flip(0)


_BETA = Number(low=0.0, high=1.0)


def _ordered(beta_start: float, beta_end: float) -> None:
    if beta_end < beta_start:
        raise ValueError(
            f"beta_end must be >= beta_start, got beta_start={beta_start}, beta_end={beta_end}"
        )


@checked(T=Int(), beta_start=_BETA, beta_end=_BETA)
def linear_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """Linearly increasing betas (Ho et al. 2020, DDPM, Sec. 4: 1e-4 to 0.02 over T = 1000)."""
    _ordered(beta_start, beta_end)
    return NoiseSchedule(torch.linspace(beta_start, beta_end, T, dtype=torch.float64))


@checked(T=Int(), beta_start=_BETA, beta_end=_BETA)
def quadratic_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """Betas whose square roots are linear: ``beta_t = (lerp(sqrt(b0), sqrt(b1)))**2``."""
    _ordered(beta_start, beta_end)
    r = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=torch.float64)
    return NoiseSchedule(r**2)


def _betas_from_alpha_bar_fn(
    fn: Callable[[torch.Tensor], torch.Tensor], T: int, max_beta: float
) -> torch.Tensor:
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = fn(t) / fn(torch.zeros(1, dtype=torch.float64))
    betas = 1.0 - ab[1:] / ab[:-1]
    return betas.clamp(min=1e-8, max=max_beta)


@checked(T=Int(), s=Number(low=0.0, high=1.0, low_open=False), max_beta=_BETA)
def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Cosine schedule (Nichol & Dhariwal 2021, Improved DDPM, Eq. 17).

    ``alpha_bar(t) = f(t) / f(0)`` with ``f(t) = cos²(((t/T + s) / (1 + s)) · π/2)``; betas are
    ``1 - alpha_bar_t / alpha_bar_{t-1}`` clipped at ``max_beta`` (0.999) to avoid the singularity
    at t = T.
    """

    def f(u: torch.Tensor) -> torch.Tensor:
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return NoiseSchedule(_betas_from_alpha_bar_fn(f, T, max_beta))


@checked(T=Int(), start=Number(), end=Number(), tau=Number(low=0.0), max_beta=_BETA)
def sigmoid_schedule(
    T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> NoiseSchedule:
    """Sigmoid schedule (Chen 2023, "On the importance of noise scheduling", Alg. 1).

    ``alpha_bar(t) ∝ (σ(end/τ) - σ((t(end - start) + start)/τ)) / (σ(end/τ) - σ(start/τ))``.
    """
    if not end > start:
        raise ValueError(f"end must be > start, got start={start}, end={end}")
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))

    def f(u: torch.Tensor) -> torch.Tensor:
        return (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)

    betas = _betas_from_alpha_bar_fn(f, T, max_beta)
    if not bool(torch.isfinite(betas).all()):
        raise ValueError(
            f"tau={tau} is too small for start={start}, end={end}: the sigmoid saturates and "
            "alpha_bar "
            "becomes 0/0; use a larger tau or a narrower [start, end]"
        )
    return NoiseSchedule(betas)


SCHEDULES: dict[str, Callable[..., NoiseSchedule]] = {
    "linear": linear_schedule,
    "cosine": cosine_schedule,
    "quadratic": quadratic_schedule,
    "sigmoid": sigmoid_schedule,
}


@checked(name=OneOf(sorted(SCHEDULES)))
def make_schedule(name: str, T: int, **kwargs: float) -> NoiseSchedule:
    """Build a schedule by family name: ``linear``, ``cosine``, ``quadratic`` or ``sigmoid``."""
    return SCHEDULES[name](T, **kwargs)


@checked(schedule=NoiseSchedule, shift=Number(), max_beta=_BETA)
def shifted_schedule(
    schedule: NoiseSchedule, shift: float, max_beta: float = 0.999
) -> NoiseSchedule:
    """Shift a schedule's log-SNR by a constant: ``λ'(t) = λ(t) + shift`` at every t.

    Since ``λ = log(ᾱ / (1 - ᾱ))``, ``ᾱ'_t = sigmoid(λ_t + shift)``. Hoogeboom et al. (2023,
    simple diffusion) use ``shift = 2 log(64 / d)`` for ``d x d`` images: ``shift < 0`` (more
    noise at every t) for images larger than 64 px, ``> 0`` for smaller ones. Betas are
    recomputed from ``ᾱ'`` and clipped at ``max_beta`` like the cosine schedule.
    """
    ab = torch.sigmoid(schedule.log_snr[1:] + float(shift))
    ab = torch.cat([torch.ones(1, dtype=torch.float64), ab])
    betas = (1.0 - ab[1:] / ab[:-1]).clamp(min=1e-12, max=max_beta)
    return NoiseSchedule(betas)
