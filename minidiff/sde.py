"""Diffusion as a stochastic differential equation (Song et al. 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations"; chapter 7).

Continuous time ``t ∈ [0, 1]``; the forward SDE, its reverse (Anderson 1982) and the
probability-flow ODE (Song et al. 2021, Eq. 6 and 13):

    forward   dx = f(x, t) dt + g(t) dw
    reverse   dx = [f(x, t) - g(t)² ∇log p_t(x)] dt + g(t) dw̄         (dt < 0, from t = 1 to 0)
    PF-ODE    dx = [f(x, t) - ½ g(t)² ∇log p_t(x)] dt                (same marginals p_t, no noise)

Both processes here are linear, so ``x_t | x_0 ~ N(alpha(t) x_0, sigma(t)² I)``:

    VP-SDE  f = -½ β(t) x,  g = sqrt(β(t)),  β(t) = β_min + t (β_max - β_min)
            alpha(t) = exp(-½ ∫_0^t β(s) ds),  sigma(t)² = 1 - alpha(t)²
    VE-SDE  f = 0,  g = σ(t) sqrt(2 log(σ_max / σ_min)),  σ(t) = σ_min (σ_max / σ_min)^t
            alpha(t) = 1,  sigma(t)² = σ(t)² - σ_min²     (exact for x(0) = x_0)

DDPM is the VP-SDE discretised with ``β_i ≈ β(i/T) / T`` (:meth:`VPSDE.to_schedule`). The
method names follow ``score_sde`` (``marginal_prob``, ``prior_sampling``, ``prior_logp``,
``reverse``). Shapes: ``x: (B, ...)``, ``t: (B,)`` float in ``[0, 1]`` (a Python number is
broadcast over the batch); a score function is ``score_fn(x (B, ...), t (B,) float) -> (B, ...)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from ._validation import (
    call_like,
    check_all_finite,
    check_callable,
    check_device,
    check_float_dtype,
    check_generator,
    check_positive_int,
    check_shape,
    check_tensor,
    value_checks_enabled,
)
from .data.gmm import GaussianMixture
from .schedules import NoiseSchedule, check_timesteps

__all__ = [
    "ScoreFn",
    "SDE",
    "VPSDE",
    "VESDE",
    "ReverseSDE",
    "score_fn_from_mixture",
    "score_fn_from_eps_model",
    "eps_model_from_score_fn",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score_fn(x: (B, ...), t: (B,) float in [0, 1]) -> ∇log p_t(x): (B, ...)``."""

_T_TOL = 1e-6  # grids built in floating point may overshoot [0, 1] by a few ulps


def check_time(t: object, name: str = "t") -> torch.Tensor:
    """Validate continuous time: a Python number or a floating tensor with values in ``[0, 1]``.

    Integer tensors are refused on purpose: ``t`` in ``1..T`` is the *discrete* DDPM index
    (divide by ``T`` first). Returns a floating tensor (float64 for a Python number).
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be a float in [0, 1] or a floating tensor, got bool")
    if isinstance(t, (int, float)):
        t = torch.tensor(float(t), dtype=torch.float64)
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a float in [0, 1] or a floating tensor, got {type(t).__name__}"
        )
    if not torch.is_floating_point(t):
        raise TypeError(
            f"{name} must be a floating tensor of continuous times in [0, 1], got dtype {t.dtype} "
            "(discrete DDPM steps i in 1..T correspond to t = i / T)"
        )
    # one host read when all is well; the diagnosis below only runs on failure
    if (
        t.numel()
        and value_checks_enabled()
        and not bool(((t >= -_T_TOL) & (t <= 1.0 + _T_TOL)).all())
    ):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite")
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{float(t.min()):.6g}, {float(t.max()):.6g}]"
        )
    return t.clamp(0.0, 1.0)


def _batch_time(x: torch.Tensor, t: object, name: str = "t") -> torch.Tensor:
    """``t`` as a ``(B,)`` tensor on ``x``'s device (a number or a 0-d tensor is broadcast)."""
    tt = check_time(t, name)
    B = x.shape[0]
    if tt.dim() == 0:
        tt = tt.expand(B)
    if tt.shape != (B,):
        raise ValueError(
            f"{name} must have shape ({B},) (one time per sample) or be a number, "
            f"got {tuple(tt.shape)}"
        )
    return tt.to(x.device)


def _bcast(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a ``(B,)`` coefficient to ``(B, 1, …, 1)`` in ``x``'s dtype."""
    return c.to(dtype=x.dtype, device=x.device).reshape(-1, *([1] * (x.dim() - 1)))


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (0.0 < float(eps) < 1.0):
        raise ValueError(
            f"eps (the smallest time used by samplers) must be a float in (0, 1), got {eps!r}"
        )
    return float(eps)


def _positive(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class SDE(ABC):
    """A linear forward SDE ``dx = f(x, t) dt + g(t) dw`` on ``t ∈ [0, 1]``.

    Subclasses give ``f``, ``g`` and the marginal coefficients ``(alpha(t), sigma(t))`` with
    ``x_t = alpha(t) x_0 + sigma(t) eps``. Attributes: ``T_end = 1.0`` and ``eps``, the smallest
    time samplers integrate down to (the score blows up as ``t -> 0``).
    """

    T_end: float = 1.0
    prior_std: float = 1.0

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = _check_eps(eps)

    # -- the three things that define a linear SDE ------------------------------------------
    @abstractmethod
    def _drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _diffusion(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    # -- validated public methods -----------------------------------------------------------
    def drift(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Forward drift ``f(x, t)``; ``x: (B, ...)``, ``t: (B,)`` -> ``(B, ...)``."""
        check_tensor(x, "x", finite=True)
        return self._drift(x, _batch_time(x, t))

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """Diffusion coefficient ``g(t)``, same shape as ``t`` (float64 for a Python number)."""
        return self._diffusion(check_time(t))

    def marginal_coefficients(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))`` with ``x_t = alpha(t) x_0 + sigma(t) eps``, like ``t``."""
        return self._marginal(check_time(t))

    def marginal_prob(
        self, x0: torch.Tensor, t: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``alpha(t) x_0`` ``(B, ...)`` and std ``sigma(t)`` ``(B, 1, …, 1)`` of x_t | x_0."""
        check_tensor(x0, "x0", finite=True)
        alpha, sigma = self._marginal(_batch_time(x0, t))
        return _bcast(alpha, x0) * x0, _bcast(sigma, x0)

    def marginal_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | float,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``x_t = alpha(t) x_0 + sigma(t) eps`` (the continuous-time ``q_sample``)."""
        check_tensor(x0, "x0")
        check_generator(generator)
        if noise is not None:
            check_tensor(noise, "noise")
            if noise.shape != x0.shape:
                raise ValueError(
                    f"noise must have the shape of x0 {tuple(x0.shape)}, got {tuple(noise.shape)}"
                )
            check_all_finite((x0, "x0"), (noise, "noise"))
        mean, std = self.marginal_prob(x0, t)
        if noise is None:
            dev = generator.device if generator is not None else x0.device
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(
                x0.device
            )
        return mean + std * noise

    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``x_1 ~ N(0, prior_std² I)`` of the given shape (1 for VP, ``sigma_max`` for VE)."""
        shape = check_shape(shape)
        check_generator(generator)
        check_float_dtype(dtype)
        device = check_device(device)
        if device is None:
            device = generator.device if generator is not None else "cpu"
        gen_device = generator.device if generator is not None else device
        z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=gen_device)
        return self.prior_std * z.to(device)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, prior_std² I)`` summed over non-batch dimensions: ``(B, ...) -> (B,)``."""
        check_tensor(z, "z", finite=True)
        D = z[0].numel()
        s2 = self.prior_std**2
        return -0.5 * D * math.log(2 * math.pi * s2) - 0.5 * z.flatten(1).pow(2).sum(1) / s2

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (``probability_flow=True``: the PF-ODE) driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)


class VPSDE(SDE):
    """Variance-preserving SDE ``dx = -½ β(t) x dt + sqrt(β(t)) dw`` (the continuous DDPM).

    ``β(t) = β_min + t (β_max - β_min)``; defaults 0.1 and 20 match DDPM's linear schedule
    ``1e-4 … 0.02`` at ``T = 1000`` (``β_i ≈ β(i/T) / T``).
    """

    prior_std = 1.0

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3) -> None:
        super().__init__(eps)
        self.beta_min = _positive(beta_min, "beta_min")
        self.beta_max = _positive(beta_max, "beta_max")
        if not self.beta_max > self.beta_min:
            raise ValueError(
                f"beta_max must be > beta_min, got beta_min={beta_min}, beta_max={beta_max}"
            )

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max}, eps={self.eps})"

    def beta(self, t: torch.Tensor | float) -> torch.Tensor:
        """``β(t) = β_min + t (β_max - β_min)``."""
        return self._beta(check_time(t))

    def _beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def beta_integral(self, t: torch.Tensor | float) -> torch.Tensor:
        """``B(t) = ∫_0^t β(s) ds = β_min t + ½ (β_max - β_min) t²``; ``alpha = exp(-B/2)``."""
        return self._beta_integral(check_time(t))

    def _beta_integral(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def _drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * _bcast(self._beta(t), x) * x

    def _diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self._beta(t).sqrt()

    def _marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = self._beta_integral(t)
        # sigma² = 1 - exp(-B) through expm1: accurate for the tiny B near t = 0
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))

    def to_schedule(self, T: int) -> NoiseSchedule:
        """The discrete schedule with ``alpha_bar_i = alpha(i/T)²`` (the VP-SDE sampled at ``i/T``).

        ``beta_i = 1 - alpha_bar_i / alpha_bar_{i-1} = 1 - exp(-∫_{(i-1)/T}^{i/T} β ds) ≈ β(t)/T``.
        """
        T = check_positive_int(T, "T")
        B = self.beta_integral(torch.arange(T + 1, dtype=torch.float64) / T)
        return NoiseSchedule(-torch.expm1(-(B[1:] - B[:-1])))


class VESDE(SDE):
    """Variance-exploding SDE ``dx = sqrt(d σ(t)²/dt) dw`` with ``σ(t) = σ_min (σ_max/σ_min)^t``
    (SMLD / NCSN in continuous time). ``x_t = x_0 + sqrt(σ(t)² - σ_min²) eps``;
    prior ``N(0, σ_max² I)``.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, eps: float = 1e-3) -> None:
        super().__init__(eps)
        self.sigma_min = _positive(sigma_min, "sigma_min")
        self.sigma_max = _positive(sigma_max, "sigma_max")
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"sigma_max must be > sigma_min, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )
        self.prior_std = self.sigma_max
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, eps={self.eps})"

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """``σ(t) = σ_min (σ_max / σ_min)^t``."""
        return self._sigma(check_time(t))

    def _sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def _drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def _diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self._sigma(t) * math.sqrt(2 * self._log_ratio)

    def _marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # σ(t)² - σ_min² = σ_min² (exp(2 t log r) - 1), through expm1 near t = 0
        return torch.ones_like(t), self.sigma_min * torch.sqrt(torch.expm1(2 * t * self._log_ratio))


class ReverseSDE:
    """The reverse-time SDE, or the probability-flow ODE, of ``sde`` driven by ``score_fn``.

    ``drift(x, t) = f(x, t) - c · g(t)² · score_fn(x, t)`` with ``c = 1`` (reverse SDE) or
    ``c = ½`` (PF-ODE); ``diffusion(t) = g(t)`` or ``0``. Time runs backwards: a solver steps
    with ``dt < 0`` (Song et al. 2021, Eq. 6 and 13).
    """

    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an SDE (VPSDE or VESDE), got {type(sde).__name__}")
        if not callable(score_fn):
            raise TypeError(
                f"score_fn must be callable (x, t) -> score, got {type(score_fn).__name__}"
            )
        self.sde = sde
        self.score_fn = score_fn
        self.probability_flow = bool(probability_flow)
        self.eps = sde.eps

    def __repr__(self) -> str:
        kind = "probability-flow ODE" if self.probability_flow else "reverse SDE"
        return f"ReverseSDE({kind} of {self.sde!r})"

    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Call ``score_fn(x, t (B,) in x's dtype)``; check it returns a tensor shaped as ``x``."""
        check_tensor(x, "x")
        return self._score_unchecked(x, _batch_time(x, t))

    def _score_unchecked(self, x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        """:meth:`score` for solvers' loops: ``tt`` a valid ``(B,)`` time tensor (no host reads)."""
        return call_like(self.score_fn, x, tt.to(x.dtype), name="score_fn")

    def drift(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``f(x, t) - g(t)² score`` (reverse SDE) or ``f(x, t) - ½ g(t)² score`` (PF-ODE)."""
        check_tensor(x, "x")
        return self._drift_unchecked(x, _batch_time(x, t))

    def _drift_unchecked(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:meth:`drift` for solvers' loops: ``t`` a ``(B,)`` tensor from their grid in [0, 1]."""
        tt = t.clamp(0.0, 1.0).to(x.device)
        g2 = _bcast(self.sde._diffusion(tt) ** 2, x)
        c = 0.5 if self.probability_flow else 1.0
        return self.sde._drift(x, tt) - c * g2 * self._score_unchecked(x, tt)

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """``g(t)`` for the reverse SDE, zeros for the PF-ODE; shaped like ``t``."""
        g = self.sde.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g


# ---------------------------------------------------------------------------------- bridges


def score_fn_from_mixture(gmm: GaussianMixture, sde: SDE) -> ScoreFn:
    """Exact score of a mixture's noised marginal: ``gmm.marginal_score(x, alpha(t), sigma(t))``.

    The oracle that separates sampler error from model error; ``x: (B, D)``, ``t: (B,)``.
    """
    if not isinstance(gmm, GaussianMixture):
        raise TypeError(f"gmm must be a GaussianMixture, got {type(gmm).__name__}")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE, got {type(sde).__name__}")

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = _batch_time(x, t)
        alpha, sigma = sde._marginal(tt.to(torch.float64))
        return GaussianMixture.marginal_score.unchecked(gmm, x, alpha, sigma)

    return score


def score_fn_from_eps_model(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde: SDE
) -> ScoreFn:
    """A continuous-time noise predictor ``eps_model(x, t float)`` as a score: ``-eps / sigma(t)``.

    Valid for ``t > 0`` (``sigma(0) = 0``); samplers stop at ``sde.eps``.
    """
    check_callable(eps_model, "eps_model", "(x, t) -> eps")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (VPSDE or VESDE), got {type(sde).__name__}")

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = _batch_time(x, t)
        eps = eps_model(x, tt.to(x.dtype))
        if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
            got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(
                f"eps_model must return a tensor of shape {tuple(x.shape)} (like x), got {got}"
            )
        _, sigma = sde._marginal(tt.to(torch.float64))
        return -eps / _bcast(sigma, x)

    return score


def eps_model_from_score_fn(
    score_fn: ScoreFn, sde: SDE, T: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A discrete ``eps_model(x, t long in 1..T)`` returning ``-sigma(t/T) · score_fn(x, t/T)``.

    With ``schedule = sde.to_schedule(T)`` (``sqrt(1 - alpha_bar_i) = sigma(i/T)``) this lets DDPM
    and DDIM run on a continuous-time model or oracle.
    """
    T = check_positive_int(T, "T")
    check_callable(score_fn, "score_fn", "(x, t) -> score")
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (VPSDE or VESDE), got {type(sde).__name__}")

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = check_timesteps(t, x.shape[0], T).to(torch.float64) / T
        score = ReverseSDE(sde, score_fn).score(x, tt.to(x.device))
        _, sigma = sde._marginal(tt)
        return -_bcast(sigma, x) * score

    return eps_model
