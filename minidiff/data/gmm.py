"""A Gaussian mixture with exact density, sampling, and exact noised marginals.

If ``x_0 ~ sum_k w_k N(mu_k, Sigma_k)`` and ``x = alpha x_0 + sigma eps`` with ``eps ~ N(0, I)``,
then

    x ~ sum_k w_k N(alpha mu_k, alpha² Sigma_k + sigma² I)                       (marginal)
    ∇_x log p(x) = -sum_k r_k(x) C_k^{-1} (x - alpha mu_k),   C_k = alpha² Sigma_k + sigma² I
    E[x_0 | x]   = sum_k r_k(x) [mu_k + alpha Sigma_k C_k^{-1} (x - alpha mu_k)]
    E[eps | x]   = (x - alpha E[x_0 | x]) / sigma

with responsibilities ``r_k(x) ∝ w_k N(x; alpha mu_k, C_k)``. These closed forms are the course's
*oracle*: a sampler driven by them is limited only by its own discretisation, which separates
sampler error from model error. ``alpha = sqrt(alpha_bar_t), sigma = sqrt(1 - alpha_bar_t)`` for
the discrete DDPM process; the SDE chapters use their own ``alpha(t), sigma(t)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, Literal, overload

import torch

from .._validation import (
    Check,
    Flag,
    FloatTensor,
    Int,
    Number,
    Rng,
    check_number,
    check_timesteps,
    checked,
    describe,
)
from ..diffusion import eps_from_x0, marginal_coefficients
from ..schedules import NoiseSchedule

__all__ = ["GaussianMixture"]

Scalar = float | torch.Tensor


def _as_float64(value: object, name: str, expected: str) -> torch.Tensor:
    """``value`` as a finite float64 tensor, else ``TypeError``/``ValueError`` naming ``name``."""
    if value is None or isinstance(value, (str, bytes, bool)):
        raise TypeError(f"{name} must be {expected}, got {describe(value)}")
    try:
        out = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be {expected}, got {describe(value)}") from exc
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); expected finite numbers")
    return out


def _means(value: object, name: str) -> torch.Tensor:
    m = _as_float64(value, name, "a tensor of shape (K, D)")
    if m.dim() != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (K, D) with at least one component of dimension >= 1, "
            f"got {tuple(m.shape)}"
        )
    return m


def _covs(value: object, name: str, means: torch.Tensor) -> torch.Tensor:
    K, D = means.shape
    c = _as_float64(value, name, f"a tensor of shape ({K}, {D}, {D})")
    if c.shape != (K, D, D):
        raise ValueError(f"{name} must have shape ({K}, {D}, {D}), got {tuple(c.shape)}")
    if not torch.allclose(c, c.transpose(-1, -2)):
        raise ValueError(f"{name} must be symmetric")
    return c


def _stds(value: object, name: str, means: torch.Tensor) -> torch.Tensor:
    """Isotropic ``(K,)``, diagonal ``(K, D)`` or one number, as ``(K, D)``, each > 0."""
    K, D = means.shape
    s = _as_float64(value, name, f"a number or a tensor of shape ({K},) or ({K}, {D})")
    if s.dim() == 0:
        s = s.expand(K)
    if s.shape == (K,):
        s = s[:, None].expand(K, D)
    if s.shape != (K, D):
        raise ValueError(
            f"{name} must be a scalar, (K,)=({K},) or (K, D)=({K}, {D}), got {tuple(s.shape)}"
        )
    if bool((s <= 0).any()):
        raise ValueError(f"{name} must be strictly positive")
    return s


def _weights(value: object, name: str, means: torch.Tensor) -> torch.Tensor:
    K = means.shape[0]
    w = _as_float64(value, name, f"a tensor of shape ({K},)")
    if w.shape != (K,):
        raise ValueError(f"{name} must have shape ({K},), got {tuple(w.shape)}")
    if bool((w <= 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{name} must be positive and sum to 1, got sum {float(w.sum()):.6g}")
    return w


class _MixturePoints(FloatTensor):
    """Points ``x: (N, D)`` in the mixture's dimension ``D`` (the method's ``self``), finite."""

    def __init__(self) -> None:
        super().__init__(dim=2, finite=True)
        self.refs = ("self",)

    def check(self, value: Any, name: str, call: Any) -> torch.Tensor:
        x = super().check(value, name, call)
        D = call.get("self").D
        if x.shape[1] != D:
            raise ValueError(f"{name} must have shape (N, {D}), got {tuple(x.shape)}")
        return x


def _coefficient(value: object, name: str, x: torch.Tensor, low_open: bool) -> torch.Tensor:
    """A number or an ``(N,)`` tensor (one per point of ``x``), as float64 on ``x``'s device."""
    N = x.shape[0]
    v = _as_float64(value, name, f"a number or a tensor of shape ({N},)").reshape(-1)
    if v.numel() not in (1, N):
        raise ValueError(f"{name} must be a scalar or have shape ({N},), got {v.numel()} values")
    if bool((v <= 0).any()) if low_open else bool((v < 0).any()):
        bound = "> 0" if low_open else ">= 0"
        raise ValueError(f"{name} must be {bound}, got min {float(v.min()):.4g}")
    return v.to(x.device)


def _alpha(value: object, name: str, x: torch.Tensor) -> torch.Tensor:
    return _coefficient(value, name, x, low_open=True)


def _sigma(value: object, name: str, x: torch.Tensor) -> torch.Tensor:
    return _coefficient(value, name, x, low_open=False)


# x, alpha, sigma of every density method: x_t = alpha x_0 + sigma eps
_NOISED = {
    "x": _MixturePoints(),
    "alpha": Check(_alpha, uses=("x",)),
    "sigma": Check(_sigma, uses=("x",)),
}


class GaussianMixture:
    """``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` in ``D`` dimensions (float64 internally).

    Args:
        means: ``(K, D)``.
        covs: ``(K, D, D)`` symmetric positive-definite covariances, or
        stds: ``(K,)`` isotropic or ``(K, D)`` diagonal standard deviations (give one of the two).
        weights: ``(K,)`` positive, summing to 1 (uniform if omitted).

    The density methods take ``x: (N, D)`` and the coefficients of the noised variable
    ``alpha x_0 + sigma eps`` (numbers or ``(N,)`` tensors); their bodies without the checks
    are ``GaussianMixture.marginal_score.unchecked(mixture, x, alpha, sigma)`` and so on.
    """

    @checked(  # type: ignore[misc]  # (mypy cannot type a decorated __init__)
        means=Check(_means),
        covs=Check(_covs, uses=("means",), optional=True),
        weights=Check(_weights, uses=("means",), optional=True),
        stds=Check(_stds, uses=("means",), optional=True),
    )
    def __init__(
        self,
        means: torch.Tensor,
        covs: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        *,
        stds: torch.Tensor | float | None = None,
    ) -> None:
        if (covs is None) == (stds is None):
            raise ValueError("give exactly one of covs (K, D, D) or stds (K,) / (K, D)")
        c = covs if covs is not None else torch.diag_embed(torch.as_tensor(stds) ** 2)
        if torch.linalg.cholesky_ex(c).info.any():
            raise ValueError("covs must be positive definite")
        K, D = means.shape
        w = torch.full((K,), 1.0 / K, dtype=torch.float64) if weights is None else weights
        self.means, self.covs, self.weights = means, c, w
        self.K, self.D = K, D

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.K}, D={self.D})"

    # ------------------------------------------------------------------ named mixtures
    @classmethod
    def eight_gaussians(cls, radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
        """Eight equal isotropic Gaussians on a circle (the law of
        ``toy_dataset("8gaussians")``)."""
        radius = check_number(radius, "radius", low=0.0)
        std = check_number(std, "std", low=0.0)
        ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = radius * torch.stack([ang.cos(), ang.sin()], dim=1)
        return cls(means, stds=std)

    @classmethod
    def default_2d(cls) -> GaussianMixture:
        """An asymmetric three-component 2D mixture (the law of ``toy_dataset("gmm")``)."""
        means = torch.tensor([[-1.5, -0.5], [1.2, 1.0], [0.8, -1.4]])
        covs = torch.tensor(
            [
                [[0.30, 0.12], [0.12, 0.15]],
                [[0.06, 0.0], [0.0, 0.06]],
                [[0.10, -0.06], [-0.06, 0.20]],
            ]
        )
        return cls(means, covs=covs, weights=torch.tensor([0.5, 0.3, 0.2]))

    # ------------------------------------------------------------------ the data law
    @overload
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        return_labels: Literal[False] = False,
    ) -> torch.Tensor: ...

    @overload
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_labels: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @checked(n=Int(), generator=Rng, return_labels=Flag)
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_labels: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points ``(n, D)`` as float32.

        ``return_labels=True`` is deprecated (a ``DeprecationWarning``): it returns the tuple of
        :meth:`sample_labelled`, which says so in its name and type; call that instead.
        """
        if return_labels:
            warnings.warn(
                "GaussianMixture.sample(n, generator, return_labels=True) is deprecated; "
                "call sample_labelled(n, generator) for (x, labels)",
                DeprecationWarning,
                stacklevel=3,  # the caller of the @checked wrapper
            )
            return self._draw(n, generator)
        return self._draw(n, generator)[0]

    @checked(n=Int(), generator=Rng)
    def sample_labelled(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points with their components: ``(x (n, D) float32, labels (n,) long)``.

        The same draws as :meth:`sample` with the same generator (``x`` is identical)."""
        return self._draw(n, generator)

    def _draw(self, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked ``n`` and ``generator``: components ``k`` first, then the Gaussian draws."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.D, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        x = self.means[k] + (chol[k] @ z[:, :, None])[:, :, 0]
        return x.float(), k

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` for ``x: (N, D)``; returns ``(N,)`` in the dtype of ``x``."""
        return self.marginal_log_prob(x, 1.0, 0.0)

    # ------------------------------------------------------------------ noised marginals
    @checked(alpha=Number(low=0.0), sigma=Number(low=0.0, low_open=False))
    def noised(self, alpha: float, sigma: float) -> GaussianMixture:
        """The law of ``alpha x_0 + sigma eps`` as a new mixture (scalars ``alpha > 0``,
        ``sigma >= 0``)."""
        eye = torch.eye(self.D, dtype=torch.float64)
        return GaussianMixture(
            alpha * self.means, covs=alpha**2 * self.covs + sigma**2 * eye, weights=self.weights
        )

    def _moments(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> tuple[torch.Tensor, ...]:
        """What every density method needs, for checked inputs: ``log p(x)`` ``(N,)``, the
        responsibilities ``r_k(x)`` ``(N, K)``, ``C_k^{-1}(x - alpha mu_k)`` ``(N, K, D)`` and
        ``alpha`` ``(N | 1,)``, with ``C_k = alpha² Sigma_k + sigma² I``."""
        dev = x.device
        a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1).to(dev)
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).to(dev)
        if a.numel() > 1 and s.numel() > 1 and bool((a == a[0]).all() & (s == s[0]).all()):
            a, s = a[:1], s[:1]  # one shared (K, D, D) system instead of N of them
        a, s = a[:, None, None, None], s[:, None, None, None]  # (N or 1, 1, 1, 1)
        eye = torch.eye(self.D, dtype=torch.float64, device=dev)
        means, covs, weights = self.means.to(dev), self.covs.to(dev), self.weights.to(dev)
        C = a**2 * covs[None] + s**2 * eye  # (N|1, K, D, D)
        L = torch.linalg.cholesky(C)
        P = torch.cholesky_inverse(L)  # precision matrices C_k^{-1}
        logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (N|1, K)
        diff = (
            x.to(torch.float64)[:, None, :] - a[..., 0] * means[None]
        )  # (N, K, D); differentiable in x
        Cinv_diff = (P @ diff[..., None])[..., 0]  # (N, K, D)
        maha = (diff * Cinv_diff).sum(-1)
        log_comp = -0.5 * (maha + logdet + self.D * math.log(2 * math.pi))  # (N, K)
        log_joint = torch.log(weights)[None] + log_comp
        log_px = torch.logsumexp(log_joint, dim=1)
        resp = torch.exp(log_joint - log_px[:, None])
        return log_px, resp, Cinv_diff, a[:, 0, 0, 0]

    @checked(**_NOISED)
    def marginal_log_prob(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``log p_t(x)`` of the noised marginal; ``x: (N, D)``, ``alpha, sigma``: scalars or
        ``(N,)``."""
        log_px, *_ = self._moments(x, alpha, sigma)
        return log_px.to(dtype=x.dtype, device=x.device)

    @checked(**_NOISED)
    def marginal_score(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``∇_x log p_t(x) = -sum_k r_k C_k^{-1}(x - alpha mu_k)``, shape ``(N, D)``."""
        _, resp, Cinv_diff, _ = self._moments(x, alpha, sigma)
        return (-(resp[..., None] * Cinv_diff).sum(1)).to(dtype=x.dtype, device=x.device)

    @checked(**_NOISED)
    def posterior_mean(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``E[x_0 | alpha x_0 + sigma eps = x]``, shape ``(N, D)`` (the ideal denoiser)."""
        _, resp, Cinv_diff, a = self._moments(x, alpha, sigma)
        means, covs = self.means.to(x.device), self.covs.to(x.device)
        per_comp = means[None] + a[:, None, None] * (covs[None] @ Cinv_diff[..., None])[..., 0]
        return (resp[..., None] * per_comp).sum(1).to(dtype=x.dtype, device=x.device)

    @checked(**_NOISED)
    def responsibilities(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``P(component k | alpha x_0 + sigma eps = x)`` for every point: ``(N, K)`` float64."""
        return self._moments(x, alpha, sigma)[1]

    @checked(y=FloatTensor(dim=1, finite=True), scale=Number(low=0.0), noise_var=Number(low=0.0))
    def posterior(self, y: torch.Tensor, scale: float, noise_var: float) -> GaussianMixture:
        """The law of ``x`` given one observation ``y = scale · x + sqrt(noise_var) · eps``
        (a mixture).

        Exact Gaussian conditioning of each component, responsibilities from the evidence. Used
        for the true reverse step ``q(x_{t-1} | x_t)``: condition ``q(x_{t-1})`` on
        ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps``.
        """
        if y.shape != (self.D,):
            raise ValueError(f"y must have shape ({self.D},), got {tuple(y.shape)}")
        y = y.to(torch.float64)
        eye = torch.eye(self.D, dtype=torch.float64)
        S = scale**2 * self.covs + noise_var * eye  # covariance of y per component
        gain = scale * self.covs @ torch.linalg.inv(S)  # (K, D, D)
        means = self.means + (gain @ (y[None] - scale * self.means)[..., None])[..., 0]
        covs = self.covs - scale * gain @ self.covs
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        evidence = GaussianMixture(scale * self.means, covs=S, weights=self.weights)
        _, resp, _, _ = evidence._moments(y[None], 1.0, 0.0)
        w = resp[0].clamp(min=1e-300)
        return GaussianMixture(means, covs=covs, weights=w / w.sum())

    # ------------------------------------------------------------------ oracles for samplers
    def check_points(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """``x`` if it is ``(B, D)`` in this mixture's ``D``: the oracles' check of what a sampler
        gives them (the shape only, which costs no device synchronisation)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.D:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape (B, {self.D}) for this mixture, got {got}")
        return x

    @checked(schedule=NoiseSchedule)
    def eps_model(
        self, schedule: NoiseSchedule
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact ``E[eps | x_t]`` as an ``eps_model(x_t (B, D), t (B,))`` for ``schedule``."""

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            self.check_points(x_t, "x_t")
            tt = check_timesteps(t, x_t.shape[0], schedule.T).to(x_t.device)
            x64 = x_t.to(torch.float64)
            a, s = marginal_coefficients.unchecked(tt, schedule, x_t.device)
            x0 = GaussianMixture.posterior_mean.unchecked(self, x64, a, s)
            return eps_from_x0.unchecked(x64, tt, x0, schedule).to(x_t.dtype)

        return eps

    @checked(schedule=NoiseSchedule)
    def score_model(
        self, schedule: NoiseSchedule
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact score ``∇ log q(x_t)`` as a callable ``(x_t (B, D), t (B,)) -> (B, D)``."""

        def score(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            self.check_points(x_t, "x_t")
            tt = check_timesteps(t, x_t.shape[0], schedule.T)
            a, s = marginal_coefficients.unchecked(tt, schedule)
            return GaussianMixture.marginal_score.unchecked(self, x_t, a, s)

        return score
