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
    Device,
    Flag,
    FloatDtype,
    FloatTensor,
    Function,
    Instance,
    Int,
    Number,
    Rng,
    Shape,
    Times,
    call_like,
    check_batch_time,
    check_timesteps,
    checked,
)
from .data.gmm import GaussianMixture
from .schedules import NoiseSchedule
from .tensors import noise_like, pad_like, standard_normal

__all__ = [
    "ScoreFn",
    "SDE",
    "VPSDE",
    "VESDE",
    "ReverseSDE",
    "score_fn_from_mixture",
    "score_fn_from_eps_model",
    "eps_model_from_score_fn",
    "discrete_timestep",
    "score_fn_from_discrete_eps_model",
]

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score_fn(x: (B, ...), t: (B,) float in [0, 1]) -> ∇log p_t(x): (B, ...)``."""

_POSITIVE = Number(low=0.0)
_T_MIN = Number(low=0.0, high=1.0)


class SDE(ABC):
    """A linear forward SDE ``dx = f(x, t) dt + g(t) dw`` on ``t ∈ [0, 1]``.

    Subclasses give ``f``, ``g`` and the marginal coefficients ``(alpha(t), sigma(t))`` with
    ``x_t = alpha(t) x_0 + sigma(t) eps``. Attributes: ``T_end = 1.0`` and ``t_min``, the smallest
    time samplers integrate down to and likelihoods start from (the score blows up as ``t -> 0``).
    """

    T_end: float = 1.0
    prior_std: float = 1.0

    @checked(t_min=_T_MIN)  # type: ignore[misc]
    def __init__(self, t_min: float = 1e-3) -> None:
        self.t_min = float(t_min)

    # -- the three things that define a linear SDE ------------------------------------------
    @abstractmethod
    def _drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _diffusion(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    # -- validated public methods -----------------------------------------------------------
    @checked(x=FloatTensor(finite=True), t=Times(of="x"))
    def drift(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Forward drift ``f(x, t)``; ``x: (B, ...)``, ``t: (B,)`` -> ``(B, ...)``."""
        return self._drift(x, t)  # type: ignore[arg-type]

    @checked(t=Times())
    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """Diffusion coefficient ``g(t)``, same shape as ``t`` (float64 for a Python number)."""
        return self._diffusion(t)  # type: ignore[arg-type]

    @checked(t=Times())
    def marginal_coefficients(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))`` with ``x_t = alpha(t) x_0 + sigma(t) eps``, like ``t``."""
        return self._marginal(t)  # type: ignore[arg-type]

    @checked(x0=FloatTensor(finite=True), t=Times(of="x0"))
    def marginal_prob(
        self, x0: torch.Tensor, t: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``alpha(t) x_0`` ``(B, ...)`` and std ``sigma(t)`` ``(B, 1, …, 1)`` of x_t | x_0."""
        alpha, sigma = self._marginal(t)  # type: ignore[arg-type]
        return pad_like(alpha, x0) * x0, pad_like(sigma, x0)

    @checked(
        x0=FloatTensor(finite=True),
        t=Times(of="x0"),
        noise=FloatTensor(like="x0", finite=True, optional=True),
        generator=Rng,
    )
    def marginal_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | float,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``x_t = alpha(t) x_0 + sigma(t) eps`` (the continuous-time ``q_sample``)."""
        z = noise if noise is not None else noise_like(x0, generator)
        alpha, sigma = self._marginal(t)  # type: ignore[arg-type]
        return pad_like(alpha, x0) * x0 + pad_like(sigma, x0) * z

    @checked(shape=Shape, generator=Rng, dtype=FloatDtype, device=Device)
    def prior_sampling(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``x_1 ~ N(0, prior_std² I)`` of the given shape (1 for VP, ``sigma_max`` for VE),
        on the generator's device (then moved to ``device``)."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        return self.prior_std * standard_normal(
            shape, generator=generator, dtype=dtype, device=device
        )

    @checked(z=FloatTensor(finite=True))
    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, prior_std² I)`` summed over non-batch dimensions: ``(B, ...) -> (B,)``."""
        D = z[0].numel()
        s2 = self.prior_std**2
        return (
            -0.5 * D * math.log(2 * math.pi * s2) - 0.5 * z.reshape(len(z), -1).pow(2).sum(1) / s2
        )

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (``probability_flow=True``: the PF-ODE) driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)


class VPSDE(SDE):
    """Variance-preserving SDE ``dx = -½ β(t) x dt + sqrt(β(t)) dw`` (the continuous DDPM).

    ``β(t) = β_min + t (β_max - β_min)``; defaults 0.1 and 20 match DDPM's linear schedule
    ``1e-4 … 0.02`` at ``T = 1000`` (``β_i ≈ β(i/T) / T``).
    """

    prior_std = 1.0

    @checked(beta_min=_POSITIVE, beta_max=_POSITIVE, t_min=_T_MIN)  # type: ignore[misc]
    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        super().__init__(t_min)
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        if not self.beta_max > self.beta_min:
            raise ValueError(
                f"beta_max must be > beta_min, got beta_min={beta_min}, beta_max={beta_max}"
            )

    def __repr__(self) -> str:
        return f"VPSDE(beta_min={self.beta_min}, beta_max={self.beta_max}, t_min={self.t_min})"

    @checked(t=Times())
    def beta(self, t: torch.Tensor | float) -> torch.Tensor:
        """``β(t) = β_min + t (β_max - β_min)``."""
        return self.beta_min + torch.as_tensor(t) * (self.beta_max - self.beta_min)

    @checked(t=Times())
    def beta_integral(self, t: torch.Tensor | float) -> torch.Tensor:
        """``B(t) = ∫_0^t β(s) ds = β_min t + ½ (β_max - β_min) t²``; ``alpha = exp(-B/2)``."""
        t = torch.as_tensor(t)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def _drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * pad_like(VPSDE.beta.unchecked(self, t), x) * x

    def _diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return VPSDE.beta.unchecked(self, t).sqrt()

    def _marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = VPSDE.beta_integral.unchecked(self, t)
        # sigma² = 1 - exp(-B) through expm1: accurate for the tiny B near t = 0
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))

    @checked(T=Int())
    def to_schedule(self, T: int) -> NoiseSchedule:
        """The discrete schedule with ``alpha_bar_i = alpha(i/T)²`` (the VP-SDE sampled at ``i/T``).

        ``beta_i = 1 - alpha_bar_i / alpha_bar_{i-1} = 1 - exp(-∫_{(i-1)/T}^{i/T} β ds) ≈ β(t)/T``.
        """
        B = self.beta_integral(torch.arange(T + 1, dtype=torch.float64) / T)
        return NoiseSchedule(-torch.expm1(-(B[1:] - B[:-1])))


class VESDE(SDE):
    """Variance-exploding SDE ``dx = sqrt(d σ(t)²/dt) dw`` with ``σ(t) = σ_min (σ_max/σ_min)^t``
    (SMLD / NCSN in continuous time). ``x_t = x_0 + sqrt(σ(t)² - σ_min²) eps``;
    prior ``N(0, σ_max² I)``.
    """

    @checked(sigma_min=_POSITIVE, sigma_max=_POSITIVE, t_min=_T_MIN)  # type: ignore[misc]
    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-3
    ) -> None:
        super().__init__(t_min)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        if not self.sigma_max > self.sigma_min:
            raise ValueError(
                f"sigma_max must be > sigma_min, got sigma_min={sigma_min}, sigma_max={sigma_max}"
            )
        self.prior_std = self.sigma_max
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, t_min={self.t_min})"

    @checked(t=Times())
    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """``σ(t) = σ_min (σ_max / σ_min)^t``."""
        return self.sigma_min * torch.exp(torch.as_tensor(t) * self._log_ratio)

    def _drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def _diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return VESDE.sigma.unchecked(self, t) * math.sqrt(2 * self._log_ratio)

    def _marginal(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # σ(t)² - σ_min² = σ_min² (exp(2 t log r) - 1), through expm1 near t = 0
        return torch.ones_like(t), self.sigma_min * torch.sqrt(torch.expm1(2 * t * self._log_ratio))


class ReverseSDE:
    """The reverse-time SDE, or the probability-flow ODE, of ``sde`` driven by ``score_fn``.

    ``drift(x, t) = f(x, t) - c · g(t)² · score_fn(x, t)`` with ``c = 1`` (reverse SDE) or
    ``c = ½`` (PF-ODE); ``diffusion(t) = g(t)`` or ``0``. Time runs backwards: a solver steps
    with ``dt < 0`` (Song et al. 2021, Eq. 6 and 13).
    """

    @checked(  # type: ignore[misc]
        sde=Instance(SDE, "an SDE (VPSDE or VESDE)"),
        score_fn=Function("(x, t) -> score"),
        probability_flow=Flag,
    )
    def __init__(self, sde: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        self.sde = sde
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.t_min = sde.t_min

    def __repr__(self) -> str:
        kind = "probability-flow ODE" if self.probability_flow else "reverse SDE"
        return f"ReverseSDE({kind} of {self.sde!r})"

    @checked(x=FloatTensor(), t=Times(of="x"))
    def score(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Call ``score_fn(x, t (B,) in x's dtype)``; check it returns a tensor shaped as ``x``.

        Solvers' loops call ``ReverseSDE.score.unchecked(rsde, x, t)`` with ``t`` a valid ``(B,)``
        time tensor (no host reads)."""
        return call_like(self.score_fn, x, t.to(x.dtype), name="score_fn")  # type: ignore[union-attr]

    @checked(x=FloatTensor(), t=Times(of="x"))
    def drift(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """``f(x, t) - g(t)² score`` (reverse SDE) or ``f(x, t) - ½ g(t)² score`` (PF-ODE).

        Solvers' loops call ``ReverseSDE.drift.unchecked(rsde, x, t)`` with ``t`` a ``(B,)`` tensor
        from their grid in [0, 1]."""
        tt = t.clamp(0.0, 1.0).to(x.device)  # type: ignore[union-attr]
        g2 = pad_like(self.sde._diffusion(tt) ** 2, x)
        c = 0.5 if self.probability_flow else 1.0
        return self.sde._drift(x, tt) - c * g2 * ReverseSDE.score.unchecked(self, x, tt)

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """``g(t)`` for the reverse SDE, zeros for the PF-ODE; shaped like ``t``."""
        g = self.sde.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g


# ---------------------------------------------------------------------------------- bridges


SDE_ARG = Instance(SDE, "an SDE (VPSDE or VESDE)")
"""The ``@checked`` spec of an ``sde`` argument."""
_SDE = SDE_ARG


@checked(gmm=GaussianMixture, sde=_SDE)
def score_fn_from_mixture(gmm: GaussianMixture, sde: SDE) -> ScoreFn:
    """Exact score of a mixture's noised marginal: ``gmm.marginal_score(x, alpha(t), sigma(t))``.

    The oracle that separates sampler error from model error; ``x: (B, D)``, ``t: (B,)``.
    """

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = check_batch_time(gmm.check_points(x), t)
        alpha, sigma = sde._marginal(tt.to(torch.float64))
        return GaussianMixture.marginal_score.unchecked(gmm, x, alpha, sigma)

    return score


@checked(eps_model=Function("(x, t) -> eps"), sde=_SDE)
def score_fn_from_eps_model(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], sde: SDE
) -> ScoreFn:
    """A continuous-time noise predictor ``eps_model(x, t float)`` as a score: ``-eps / sigma(t)``.

    ``eps_model`` is called at the SDE's own time ``t ∈ [0, 1]``: it must have been trained at
    those times (e.g. with :func:`~minidiff.losses.vp_eps_loss`). For a DDPM model trained on a
    schedule at timesteps ``1..T`` (``train``/``train_toy`` with ``simple_loss``) use
    :func:`score_fn_from_discrete_eps_model` instead: called here, such a network (a ``TimeMLP``
    takes any float ``t``) sees times it was never trained at, and its scores and likelihoods
    are wrong without any error.

    Valid for ``t > 0`` (``sigma(0) = 0``); samplers stop at ``sde.t_min``.
    """

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = check_batch_time(x, t)
        eps = call_like(eps_model, x, tt.to(x.dtype), name="eps_model")
        _, sigma = sde._marginal(tt.to(torch.float64))
        return -eps / pad_like(sigma, x)

    return score


@checked(score_fn=Function("(x, t) -> score"), sde=_SDE, T=Int())
def eps_model_from_score_fn(
    score_fn: ScoreFn, sde: SDE, T: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A discrete ``eps_model(x, t long in 1..T)`` returning ``-sigma(t/T) · score_fn(x, t/T)``.

    With ``schedule = sde.to_schedule(T)`` (``sqrt(1 - alpha_bar_i) = sigma(i/T)``) this lets DDPM
    and DDIM run on a continuous-time model or oracle.
    """

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = check_timesteps(t, x.shape[0], T).to(torch.float64) / T
        score = ReverseSDE(sde, score_fn).score(x, tt.to(x.device))
        _, sigma = sde._marginal(tt)
        return -pad_like(sigma, x) * score

    return eps_model


_VP = Instance(VPSDE, "a VPSDE (a VESDE keeps alpha = 1: no DDPM timestep has its noise level)")


@checked(t=Times(), schedule=NoiseSchedule, sde=_VP)
def discrete_timestep(t: torch.Tensor | float, schedule: NoiseSchedule, sde: SDE) -> torch.Tensor:
    """The fractional DDPM timestep ``τ ∈ [0, T]`` at the noise level of continuous time ``t``.

    ``τ`` solves ``ᾱ_schedule(τ) = alpha(t)²`` (the VP-SDE's ``ᾱ(t)``), with ``log ᾱ``
    interpolated linearly between the schedule's knots ``(i, log ᾱ_i)``, ``i = 0..T``: at every
    knot the noise levels agree exactly, ``x_t`` of the SDE is distributed like ``x_τ`` of the
    chain, and a network trained on ``x_τ`` sees the input it was trained on. Noise levels beyond
    the schedule's ends map to 0 and ``T``. ``t``: a number or a ``(B,)`` tensor in ``[0, 1]``;
    returns float64 of ``t``'s shape. For ``linear_schedule(1000)`` and ``VPSDE()`` this is
    ``τ ≈ 1000 t`` (within 4 steps at every t); for other pairs it need not be linear.
    """
    return _discrete_timestep(t.to(torch.float64), schedule, sde)  # type: ignore[union-attr]


def _discrete_timestep(t: torch.Tensor, schedule: NoiseSchedule, sde: SDE) -> torch.Tensor:
    """:func:`discrete_timestep` for a checked float64 ``t`` (no host reads)."""
    alpha, _ = sde._marginal(t)
    target = -2.0 * alpha.log()  # -log ᾱ(t) >= 0, increasing in t
    knots = -schedule.alpha_bar.log().to(t.device)  # (T + 1,) increasing from 0
    i = torch.searchsorted(knots, target).clamp(1, schedule.T)  # knots[i-1] < target <= knots[i]
    lo, hi = knots[i - 1], knots[i]
    return ((i - 1) + (target - lo) / (hi - lo)).clamp(0.0, float(schedule.T))


def _check_schedule_reaches(schedule: NoiseSchedule, sde: SDE) -> None:
    """``ValueError`` naming ``schedule`` unless its last level ``ᾱ_T`` reaches ``alpha(1)²`` of
    the VP ``sde`` within half of its last step in ``log ᾱ`` (``-log(1 - β_T) / 2``)."""

    def level(t: float) -> float:  # -log alpha(t)^2, increasing in t
        alpha, _ = sde._marginal(torch.tensor([t], dtype=torch.float64))
        return -2.0 * math.log(float(alpha[0]))

    needed, reached = level(1.0), -math.log(float(schedule.alpha_bar[-1]))
    if needed - reached <= -0.5 * math.log1p(-float(schedule.betas[-1])):
        return
    lo, hi = 0.0, 1.0  # bisection for t* with level(t*) = reached
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if level(mid) < reached else (lo, mid)
    raise ValueError(
        f"schedule (T={schedule.T}, alpha_bar_T={math.exp(-reached):.3g}) does not reach the "
        f"noise level of {sde!r} at t = 1 (alpha(1)^2 = {math.exp(-needed):.3g}): it covers only "
        f"t <= {lo:.3f}, and beyond that the model would be called at T on inputs noisier than "
        f"any it was trained on. Use a schedule with alpha_bar_T <= {math.exp(-needed):.3g} "
        f"(sde.to_schedule({schedule.T}) has the SDE's levels; linear_schedule(1000) reaches "
        "VPSDE()'s) or an sde whose alpha(1)^2 is at least the schedule's alpha_bar_T"
    )


@checked(
    eps_model=Function("(x_t, t) -> eps"),
    schedule=NoiseSchedule,
    sde=Instance(VPSDE, "a VPSDE (a DDPM model's noise levels are VP)", optional=True),
    round_timesteps=Flag,
)
def score_fn_from_discrete_eps_model(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: NoiseSchedule,
    sde: SDE | None = None,
    *,
    round_timesteps: bool = False,
) -> ScoreFn:
    """A DDPM ε-model trained on ``schedule`` as a continuous-time score for ``sde``.

    ``score(x, t) = -eps_model(x, τ(t)) / sigma(t)`` with ``τ = discrete_timestep(t, schedule,
    sde)``, the timestep of the same noise level (``ᾱ_schedule(τ) = alpha(t)²``, so
    ``sigma(t) = sqrt(1 - ᾱ_schedule(τ))``): this is the route from a model trained with
    ``train()`` and ``simple_loss`` to :func:`~minidiff.likelihood.ode_log_likelihood` and the
    SDE samplers. ``sde`` defaults to ``VPSDE()``, whose noise levels span those of
    ``linear_schedule(1000)``.

    The network is called with fractional timesteps ``τ`` (float, in ``x``'s dtype): the
    sinusoidal embeddings of :class:`~minidiff.nn.TimeMLP` and the U-Net take them, and the
    score is then smooth in ``t`` as an ODE solver wants. ``round_timesteps=True`` calls it at
    the nearest integer ``τ`` in ``1..T`` instead (for a model that only takes integers; the
    score then jumps at half-steps and the ODE needs about ``T`` steps to see each level).

    Range: the schedule must reach the SDE's noise level at ``t = 1``, ``ᾱ_T <= alpha(1)²``
    (within half of the schedule's last step in ``log ᾱ``, the error ``round_timesteps`` makes
    anyway): ``linear_schedule(1000)`` and ``sde.to_schedule(T)`` reach ``VPSDE()``'s.
    A schedule that ends at less noise (``linear_schedule(50)``: ``ᾱ_T = 0.60``) covers only
    ``t <= t*``, and beyond it the model would be called at ``T`` for inputs noisier than any
    it was trained on: a ``ValueError`` here, naming ``t*`` and the ``ᾱ_T`` needed.
    """
    sde = VPSDE() if sde is None else sde
    _check_schedule_reaches(schedule, sde)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = check_batch_time(x, t).to(torch.float64)
        tau = _discrete_timestep(tt, schedule, sde)
        tau_in = tau.round().clamp(1, schedule.T).long() if round_timesteps else tau.to(x.dtype)
        eps = call_like(eps_model, x, tau_in, name="eps_model")
        _, sigma = sde._marginal(tt)
        return -eps / pad_like(sigma, x)

    return score
