"""Gaussian probability paths and the converters between ε, x₀, v, score and velocity (chapter 16).

A path is a pair of schedules on ``t ∈ [0, 1]`` with ``t = 0`` the data and ``t = 1`` the noise
(the convention of chapters 1–8, of rectified flow and of Stable Diffusion 3):

    x_t = alpha(t) x_0 + sigma(t) eps,   eps ~ N(0, I),
    u_t = dx_t/dt = alpha'(t) x_0 + sigma'(t) eps                 (the conditional velocity)

======================  ===================  =================  ================================
path                    alpha(t)             sigma(t)           where from
======================  ===================  =================  ================================
RectifiedFlowPath       1 - t                t                  Liu et al. 2023; Lipman et al.
                                                                2023 ("conditional OT", σ_min=0)
CosinePath              cos(πt/2)            sin(πt/2)          Nichol & Dhariwal 2021 (s = 0)
VPPath(sde)             exp(-½∫β)            sqrt(1 - alpha²)   the VP-SDE of chapter 7
DiscreteVPPath(sched)   sqrt(ᾱ) at t = i/T   sqrt(1 - alpha²)   DDPM's schedule, chapters 1–4/8
======================  ===================  =================  ================================

**Converters.** Every quantity a network is trained to predict is a combination
``a x_0 + b eps`` of the two unknowns (its posterior mean ``E[a x_0 + b eps | x_t]`` is what the
trained network returns, and the combination is linear, so the same formulas hold for it):

    kind          a           b           name
    "eps"         0           1           the noise (Ho et al. 2020)
    "x0"          1           0           the clean data
    "v"           -sigma      alpha       v-prediction (Salimans & Ho 2022)
    "velocity"    alpha'      sigma'      dx_t/dt (flow matching)
    "score"       0           -1/sigma    ∇ log p_t(x_t) (Tweedie: -E[eps | x_t] / sigma)

With ``x_t = alpha x_0 + sigma eps`` that is two linear equations in ``(x_0, eps)``; with
``det = alpha b - sigma a``, ``x_0 = (b x_t - sigma y) / det`` and
``eps = (alpha y - a x_t) / det``, and from those any other kind (:meth:`GaussianPath.convert`).
The ε ↔ velocity pair reads ``u = (alpha'/alpha) x_t + (sigma' - alpha' sigma / alpha) eps``.

Shapes: ``x: (B, ...)``; ``t``: a number or a floating ``(B,)`` tensor in ``[0, 1]``.
Coefficients are computed in float64 and cast to the dtype of the data. ``diffusers`` calls the
rectified-flow path ``FlowMatchEulerDiscreteScheduler`` (its ``sigmas`` are our ``t``, and its
model output is our ``"velocity"``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ._validation import (
    FloatTensor,
    Function,
    Instance,
    OneOf,
    Rng,
    call_like,
    check_batch_time,
    check_time,
    checked,
)
from .data.gmm import GaussianMixture
from .schedules import NoiseSchedule
from .sde import VPSDE
from .tensors import noise_like, pad_like

__all__ = [
    "KINDS",
    "PathCoefficients",
    "GaussianPath",
    "RectifiedFlowPath",
    "CosinePath",
    "VPPath",
    "DiscreteVPPath",
    "convert_with",
    "convert_model",
    "change_of_path",
    "mixture_predictor",
]

KINDS = ("eps", "x0", "v", "velocity", "score")
"""The parameterisations :meth:`GaussianPath.convert` maps between."""

Model = Callable[..., torch.Tensor]
"""``model(x (B, ...), t (B,) float in [0, 1], *extra) -> (B, ...)``."""


class PathCoefficients(NamedTuple):
    """``alpha(t)``, ``sigma(t)`` and their time derivatives, float64 tensors shaped like ``t``."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor


def _ab(c: PathCoefficients, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` with ``kind = a x_0 + b eps`` (the table of the module docstring)."""
    zero, one = torch.zeros_like(c.alpha), torch.ones_like(c.alpha)
    return {
        "eps": (zero, one),
        "x0": (one, zero),
        "v": (-c.sigma, c.alpha),
        "velocity": (c.d_alpha, c.d_sigma),
        "score": (zero, -1.0 / c.sigma),
    }[kind]


class GaussianPath(ABC):
    """A Gaussian probability path ``x_t = alpha(t) x_0 + sigma(t) eps`` on ``t ∈ [0, 1]``.

    Subclasses give :meth:`_coefficients`; everything else (sampling ``x_t``, the conditional
    velocity, log-SNR, the converters) follows from ``alpha, sigma, alpha', sigma'``.
    """

    @abstractmethod
    def _coefficients(self, t: torch.Tensor) -> PathCoefficients:
        """``(alpha, sigma, alpha', sigma')`` for a float64 tensor ``t`` in ``[0, 1]``."""

    # ----------------------------------------------------------------- schedules
    def coefficients(self, t: torch.Tensor | float) -> PathCoefficients:
        """``(alpha(t), sigma(t), alpha'(t), sigma'(t))`` as float64 tensors shaped like ``t``."""
        return self._coefficients(check_time(t).to(torch.float64))

    def log_snr(self, t: torch.Tensor | float) -> torch.Tensor:
        """``λ(t) = log(alpha² / sigma²)``, decreasing from ``+inf`` (data) to the noise end."""
        c = self.coefficients(t)
        return 2 * (c.alpha.log() - c.sigma.log())

    def d_log_snr(self, t: torch.Tensor | float) -> torch.Tensor:
        """``dλ/dt = 2 (alpha'/alpha - sigma'/sigma)`` (negative on ``(0, 1)``)."""
        c = self.coefficients(t)
        return 2 * (c.d_alpha / c.alpha - c.d_sigma / c.sigma)

    def t_from_log_snr(self, lam: torch.Tensor | float) -> torch.Tensor:
        """The time with log-SNR ``lam`` (float64, like ``lam``): bisection on the decreasing λ(t).

        60 halvings of ``[0, 1]`` reach float64 resolution; subclasses with a closed form override.
        """
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self._log_snr(mid) > lam  # still too little noise: the answer is later
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        c = self._coefficients(t)
        return 2 * (c.alpha.log() - c.sigma.log())

    @staticmethod
    def _sigma_d_sigma(c: PathCoefficients) -> torch.Tensor:
        """``sigma sigma' = ½ d(sigma²)/dt``, finite also where ``sigma = 0`` (the variance
        preserving paths override it: there ``sigma'`` is infinite at ``sigma = 0``)."""
        return c.sigma * c.d_sigma

    # ----------------------------------------------------------------- the conditional path
    def _columns(self, x: torch.Tensor, t: object) -> PathCoefficients:
        c = self._coefficients(check_batch_time(x, t).to(torch.float64))
        return PathCoefficients(*(pad_like(v, x) for v in c))

    @checked(
        x0=FloatTensor(finite=True), noise=FloatTensor(like="x0", finite=True, optional=True),
        generator=Rng,
    )  # fmt: skip
    def sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | float,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``x_t = alpha(t) x_0 + sigma(t) eps`` (``eps`` drawn from ``generator`` if not given).

        ``x0, noise: (B, ...)``; returns ``(B, ...)`` in ``x0``'s dtype.
        """
        c = self._columns(x0, t)
        return c.alpha * x0 + c.sigma * (noise if noise is not None else noise_like(x0, generator))

    @checked(x0=FloatTensor(), noise=FloatTensor(like="x0"))
    def conditional_velocity(
        self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float
    ) -> torch.Tensor:
        """``u_t(x_t | x_0, eps) = alpha'(t) x_0 + sigma'(t) eps``, the target of flow matching."""
        c = self._columns(x0, t)
        return c.d_alpha * x0 + c.d_sigma * noise

    # ----------------------------------------------------------------- converters
    @checked(value=FloatTensor(like="x_t"), x_t=FloatTensor(), src=OneOf(KINDS), dst=OneOf(KINDS))
    def convert(
        self, value: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | float, *, src: str, dst: str
    ) -> torch.Tensor:
        """Turn a prediction of kind ``src`` at ``(x_t, t)`` into kind ``dst`` (``KINDS``).

        Solves ``x_t = alpha x_0 + sigma eps`` and ``value = a x_0 + b eps`` for ``(x_0, eps)``,
        then forms ``dst``. Exact for posterior means too (the map is affine in ``value``).
        ``value, x_t: (B, ...)``; returns ``(B, ...)`` in ``value``'s dtype. Divisions by zero
        at the ends of a path (``"eps"`` at ``alpha = 0``) give ``inf``/``nan``, as the maths does.
        """
        return _convert(self._columns(x_t, t), value, x_t, src, dst)

    @checked(kind=OneOf(KINDS))
    def error_factor(self, kind: str, t: torch.Tensor | float) -> torch.Tensor:
        """``c(t) = det / alpha``: ``pred - target = c(t) (eps_hat - eps)`` at a fixed ``x_t``.

        A squared error on ``kind`` is ``c²`` times the squared ε-error: ``1`` for ``"eps"``,
        ``σ²/α²`` for ``"x0"``, ``(α σ' - σ α')² / α²`` for ``"velocity"``. Float64, like ``t``.
        """
        c = self.coefficients(t)
        a, b = _ab(c, kind)
        return (c.alpha * b - c.sigma * a) / c.alpha


class RectifiedFlowPath(GaussianPath):
    """``alpha = 1 - t``, ``sigma = t``: straight lines from data to noise, velocity ``eps - x_0``.

    The conditional optimal-transport path of Lipman et al. (2023) with ``σ_min = 0`` and the
    rectified flow of Liu et al. (2023); Stable Diffusion 3 trains on it (Esser et al. 2024).
    """

    def __repr__(self) -> str:
        return "RectifiedFlowPath()"

    def _coefficients(self, t: torch.Tensor) -> PathCoefficients:
        one = torch.ones_like(t)
        return PathCoefficients(1 - t, t.clone(), -one, one)

    def t_from_log_snr(self, lam: torch.Tensor | float) -> torch.Tensor:
        """``t = sigmoid(-λ/2)`` (from ``σ/α = t/(1-t) = exp(-λ/2)``)."""
        return torch.sigmoid(-0.5 * torch.as_tensor(lam, dtype=torch.float64))


class CosinePath(GaussianPath):
    """``alpha = cos(πt/2)``, ``sigma = sin(πt/2)``: variance preserving, ``velocity = (π/2) v``.

    The cosine schedule of Nichol & Dhariwal (2021) without the offset ``s``; on it Salimans &
    Ho's v-prediction is the velocity up to the factor ``π/2``.
    """

    def __repr__(self) -> str:
        return "CosinePath()"

    def _coefficients(self, t: torch.Tensor) -> PathCoefficients:
        phi = 0.5 * math.pi * t
        return PathCoefficients(
            phi.cos(), phi.sin(), -0.5 * math.pi * phi.sin(), 0.5 * math.pi * phi.cos()
        )


def _vp_coefficients(
    alpha: torch.Tensor, sigma: torch.Tensor, beta: torch.Tensor
) -> PathCoefficients:
    """VP path with ``-d log alpha² / dt = β(t)``: ``alpha' = -½ β alpha``,
    ``sigma' = -alpha alpha' / sigma`` (from ``alpha² + sigma² = 1``; ``+inf`` at ``sigma = 0``)."""
    d_alpha = -0.5 * beta * alpha
    return PathCoefficients(alpha, sigma, d_alpha, -alpha * d_alpha / sigma)


class _VariancePreserving:
    """``alpha² + sigma² = 1``, so ``sigma sigma' = -alpha alpha'``: finite where ``sigma'`` is
    not (at ``sigma = 0``)."""

    @staticmethod
    def _sigma_d_sigma(c: PathCoefficients) -> torch.Tensor:
        return -c.alpha * c.d_alpha


class VPPath(_VariancePreserving, GaussianPath):
    """The VP-SDE's marginals (chapter 7): ``alpha = exp(-½ ∫_0^t β)``, ``sigma² = 1 - alpha²``.

    ``sigma'(0)`` is infinite (``sigma ~ sqrt(β_min t)``): samplers stop at ``t_end > 0`` on it.
    """

    @checked(sde=Instance(VPSDE, "a VPSDE or None (the default)", optional=True))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, sde: VPSDE | None = None) -> None:
        self.sde = VPSDE() if sde is None else sde

    def __repr__(self) -> str:
        return f"VPPath({self.sde!r})"

    def _coefficients(self, t: torch.Tensor) -> PathCoefficients:
        alpha, sigma = self.sde.marginal_coefficients(t)
        return _vp_coefficients(alpha, sigma, self.sde.beta(t))


class DiscreteVPPath(_VariancePreserving, GaussianPath):
    """DDPM's discrete schedule as a path: ``alpha(i/T) = sqrt(ᾱ_i)`` exactly at the knots.

    Between knots ``log ᾱ`` is linear in ``t``, i.e. the VP-SDE with the piecewise-constant
    ``β(t) = -T log(1 - β_i)`` on ``((i-1)/T, i/T]``; at a knot the derivative is the one of the
    interval that ends there (the interval a sampler walks through next).
    """

    @checked(schedule=NoiseSchedule)  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        self.T = schedule.T
        self._log_ab = schedule.alpha_bar.log()

    def __repr__(self) -> str:
        return f"DiscreteVPPath(T={self.T})"

    def _coefficients(self, t: torch.Tensor) -> PathCoefficients:
        u = t * self.T
        # t = i/T (up to round-off) belongs to interval i, the one that ends there
        i = torch.ceil(u - 1e-9).long().clamp(1, self.T)
        log_ab = self._log_ab.to(t.device)
        slope = log_ab[i] - log_ab[i - 1]
        la = log_ab[i - 1] + (u - (i - 1)) * slope
        # 0 - expm1: +0 at t = 0 (-expm1(0) is -0, and sigma' would be -inf)
        return _vp_coefficients((0.5 * la).exp(), (0.0 - torch.expm1(la)).sqrt(), -self.T * slope)

    def timestep(self, t: torch.Tensor) -> torch.Tensor:
        """The index ``i`` (long) of a knot time ``t = i/T``; ``ValueError`` off the knots."""
        u = check_time(t).to(torch.float64) * self.T
        i = u.round()
        if bool(((u - i).abs() > 1e-6).any()) or bool((i < 1).any()):
            raise ValueError(
                f"t must be a knot i/T with i in 1..{self.T} (a discrete model has only those)"
            )
        return i.long()

    @checked(model=Function("(x_t, t, ...) -> prediction"))
    def continuous_model(self, model: Model) -> Model:
        """A discrete ``model(x, t long in 1..T, *extra)`` as ``model(x, t = i/T, *extra)``."""

        def wrapped(x: torch.Tensor, t: torch.Tensor, *extra: Any) -> torch.Tensor:
            return model(x, self.timestep(check_batch_time(x, t)).to(x.device), *extra)

        return wrapped


# --------------------------------------------------------------------------- models on paths


@checked(
    coefficients=Instance(PathCoefficients, "a PathCoefficients(alpha, sigma, d_alpha, d_sigma)"),
    value=FloatTensor(like="x_t"), x_t=FloatTensor(),
    src=OneOf(KINDS), dst=OneOf(KINDS),
)  # fmt: skip
def convert_with(
    coefficients: PathCoefficients, value: torch.Tensor, x_t: torch.Tensor, *, src: str, dst: str
) -> torch.Tensor:
    """:meth:`GaussianPath.convert` with given coefficients: ``(alpha, sigma, alpha', sigma')``,
    each a ``(B,)`` tensor (one per row of ``x_t``) or a number, instead of a path and ``t``."""
    B = x_t.shape[0]
    cols = []
    for name, v in zip(PathCoefficients._fields, coefficients, strict=True):
        v = torch.as_tensor(v, dtype=torch.float64)
        if v.dim() > 1 or (v.dim() == 1 and v.shape[0] != B):  # a relation with x_t: no spec
            raise ValueError(
                f"coefficients.{name} must be a number or have shape ({B},), got {tuple(v.shape)}"
            )
        cols.append(pad_like(v.expand(B), x_t))
    return _convert(PathCoefficients(*cols), value, x_t, src, dst)


def _convert(
    c: PathCoefficients, value: torch.Tensor, x_t: torch.Tensor, src: str, dst: str
) -> torch.Tensor:
    """Solve ``x_t = alpha x0 + sigma eps``, ``value = a x0 + b eps``; form ``dst`` (no checks)."""
    if src == dst:
        return value
    a, b = _ab(c, src)
    det = c.alpha * b - c.sigma * a
    x0 = (b * x_t - c.sigma * value) / det
    eps = (c.alpha * value - a * x_t) / det
    a2, b2 = _ab(c, dst)
    return a2 * x0 + b2 * eps


@checked(
    model=Function("(x, t, ...) -> prediction"), path=GaussianPath, src=OneOf(KINDS),
    dst=OneOf(KINDS),
)  # fmt: skip
def convert_model(model: Model, path: GaussianPath, *, src: str, dst: str) -> Model:
    """Wrap ``model(x, t, *extra) -> src`` into ``(x, t, *extra) -> dst`` on ``path``.

    E.g. ``convert_model(eps_model, RectifiedFlowPath(), src="eps", dst="velocity")`` is the
    velocity field a flow sampler integrates. Extra arguments (a class label) pass through.
    """

    def converted(x: torch.Tensor, t: torch.Tensor, *extra: Any) -> torch.Tensor:
        out = call_like(model, x, t, *extra, name="model")
        return path.convert(out, x, t, src=src, dst=dst)

    return converted


@checked(src=GaussianPath, dst=GaussianPath)
def change_of_path(
    src: GaussianPath, dst: GaussianPath, t: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(t_dst, scale)`` such that ``scale · x_t`` on ``src`` is ``x_{t_dst}`` on ``dst``.

    Two Gaussian paths with the same log-SNR are the same up to a rescaling of ``x``
    (Kingma et al. 2021, VDM, Appx. E): ``t_dst = dst.t_from_log_snr(src.log_snr(t))`` and
    ``scale = alpha_dst(t_dst) / alpha_src(t)``. The ε at matching points is the same, so an
    ε-model on ``src`` is one on ``dst`` after ``x -> x / scale``. Float64, shaped like ``t``.
    """
    c = src.coefficients(t)
    t_dst = dst.t_from_log_snr(2 * (c.alpha.log() - c.sigma.log()))
    return t_dst, dst._coefficients(t_dst).alpha / c.alpha


@checked(gmm=GaussianMixture, path=GaussianPath, kind=OneOf(KINDS))
def mixture_predictor(gmm: GaussianMixture, path: GaussianPath, kind: str = "velocity") -> Model:
    """The exact ``E[kind | x_t]`` of a Gaussian mixture's path, ``(x (B, D), t (B,)) -> (B, D)``.

    ``E[x_0 | x_t]`` is the mixture's posterior mean and ``E[eps | x_t] = -sigma score(x_t)``
    (Tweedie; 0 at ``sigma = 0``, where ``eps`` is not observed). A prediction ``a x_0 + b eps``
    is formed as ``a E[x_0 | x_t] - (b sigma) score(x_t)``, with no division by ``sigma``: at
    ``sigma = 0`` it is the finite limit. With ``kind="velocity"`` this is the exact marginal
    velocity ``u_t(x) = E[alpha' x_0 + sigma' eps | x_t] = alpha' E[x_0 | x_t] - sigma sigma'
    score(x_t)`` that flow matching regresses on: the oracle that separates model error from
    discretisation error. On a VP path ``sigma'`` is infinite at ``t = 0`` but ``sigma sigma' =
    -alpha alpha'`` is not, and the velocity there is the probability-flow ODE's drift
    ``-½ β(0) (x + score_0(x))``; likewise ``kind="score"`` at ``sigma = 0`` is the data's score.
    """

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = path._coefficients(check_batch_time(gmm.check_points(x), t).to(torch.float64))
        x64 = x.to(torch.float64)  # the exact mixture's posterior mean and score, in float64
        x0 = GaussianMixture.posterior_mean.unchecked(gmm, x64, c.alpha, c.sigma)
        minus_score = -GaussianMixture.marginal_score.unchecked(gmm, x64, c.alpha, c.sigma)
        col = PathCoefficients(*(v.to(x.device)[:, None] for v in c))
        a, _ = _ab(col, kind)
        b_sigma = {  # b sigma, with b the weight of eps in kind (_ab), finite at sigma = 0
            "eps": col.sigma,
            "x0": torch.zeros_like(col.sigma),
            "v": col.alpha * col.sigma,
            "velocity": path._sigma_d_sigma(col),
            "score": -torch.ones_like(col.sigma),
        }[kind]
        return (a * x0 + b_sigma * minus_score).to(x.dtype)

    return predict
