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
from collections.abc import Callable
from typing import Any

import torch

from .._validation import (
    check_finite,
    check_generator,
    check_instance,
    check_number,
    check_positive_int,
    check_tensor,
    describe,
)
from ..schedules import NoiseSchedule, check_timesteps

__all__ = ["GaussianMixture"]

Scalar = float | torch.Tensor


def _as_float64(value: object, name: str, expected: str) -> torch.Tensor:
    """``value`` as a finite float64 tensor, else ``TypeError``/``ValueError`` naming ``name``."""
    if value is None or isinstance(value, (str, bytes, bool)):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    try:
        out = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from exc
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); expected finite numbers")
    return out


class GaussianMixture:
    """``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` in ``D`` dimensions (float64 internally).

    Args:
        means: ``(K, D)``.
        covs: ``(K, D, D)`` symmetric positive-definite covariances, or
        stds: ``(K,)`` isotropic or ``(K, D)`` diagonal standard deviations (give one of the two).
        weights: ``(K,)`` positive, summing to 1 (uniform if omitted).
    """

    def __init__(
        self,
        means: torch.Tensor,
        covs: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        *,
        stds: torch.Tensor | float | None = None,
    ) -> None:
        m = _as_float64(means, "means", "a tensor of shape (K, D)")
        if m.dim() != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(m.shape)}")
        K, D = m.shape
        if K < 1 or D < 1:
            raise ValueError(
                "means must hold at least one component of dimension >= 1, "
                f"got shape {tuple(m.shape)}"
            )
        if (covs is None) == (stds is None):
            raise ValueError("give exactly one of covs (K, D, D) or stds (K,) / (K, D)")
        if covs is not None:
            c = _as_float64(covs, "covs", f"a tensor of shape ({K}, {D}, {D})")
            if c.shape != (K, D, D):
                raise ValueError(f"covs must have shape ({K}, {D}, {D}), got {tuple(c.shape)}")
            if not torch.allclose(c, c.transpose(-1, -2)):
                raise ValueError("covs must be symmetric")
        else:
            s = _as_float64(stds, "stds", f"a number or a tensor of shape ({K},) or ({K}, {D})")
            if s.dim() == 0:
                s = s.expand(K)
            if s.shape == (K,):
                s = s[:, None].expand(K, D)
            if s.shape != (K, D):
                raise ValueError(
                    f"stds must be a scalar, (K,)=({K},) or (K, D)=({K}, {D}), got {tuple(s.shape)}"
                )
            if bool((s <= 0).any()):
                raise ValueError("stds must be strictly positive")
            c = torch.diag_embed(s**2)
        if torch.linalg.cholesky_ex(c).info.any():
            raise ValueError("covs must be positive definite")
        w = (
            torch.full((K,), 1.0 / K, dtype=torch.float64)
            if weights is None
            else _as_float64(weights, "weights", f"a tensor of shape ({K},)")
        )
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {tuple(w.shape)}")
        if bool((w <= 0).any()) or abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got sum {float(w.sum()):.6g}")
        self.means, self.covs, self.weights = m, c, w
        self.K, self.D = K, D

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.K}, D={self.D})"

    # ------------------------------------------------------------------ named mixtures
    @classmethod
    def eight_gaussians(cls, radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
        """Eight equal isotropic Gaussians on a circle (the law of
        ``toy_dataset("8gaussians")``)."""
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
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_labels: bool = False
    ) -> Any:
        """Draw ``n`` points ``(n, D)`` as float32 (component labels ``(n,)`` too if asked)."""
        check_positive_int(n, "n")
        check_generator(generator)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.D, generator=generator, dtype=torch.float64)
        chol = torch.linalg.cholesky(self.covs)
        x = self.means[k] + (chol[k] @ z[:, :, None])[:, :, 0]
        return (x.float(), k) if return_labels else x.float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` for ``x: (N, D)``; returns ``(N,)`` in the dtype of ``x``."""
        return self.marginal_log_prob(x, 1.0, 0.0)

    # ------------------------------------------------------------------ noised marginals
    def noised(self, alpha: float, sigma: float) -> GaussianMixture:
        """The law of ``alpha x_0 + sigma eps`` as a new mixture (scalars ``alpha > 0``,
        ``sigma >= 0``)."""
        a = check_number(alpha, "alpha", low=0.0)
        s = check_number(sigma, "sigma", low=0.0, low_open=False)
        eye = torch.eye(self.D, dtype=torch.float64)
        return GaussianMixture(
            a * self.means, covs=a**2 * self.covs + s**2 * eye, weights=self.weights
        )

    def _moments(
        self, x: torch.Tensor, alpha: Scalar, sigma: Scalar, *, check: bool = True
    ) -> tuple[torch.Tensor, ...]:
        """Shared by every density method; ``check=False`` (the samplers' oracles) skips the
        host synchronisations of the value checks, which the calling sampler has done once."""
        check_tensor(x, "x", dim=2)
        if x.shape[1] != self.D:
            raise ValueError(f"x must have shape (N, {self.D}), got {tuple(x.shape)}")
        N, dev = x.shape[0], x.device
        if check:
            check_finite(x, "x")
            a = (
                _as_float64(alpha, "alpha", f"a number > 0 or a tensor of shape ({N},)")
                .reshape(-1)
                .to(dev)
            )
            s = (
                _as_float64(sigma, "sigma", f"a number >= 0 or a tensor of shape ({N},)")
                .reshape(-1)
                .to(dev)
            )
        else:
            a = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1).to(dev)
            s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).to(dev)
        for name, v in (("alpha", a), ("sigma", s)):
            if v.numel() not in (1, N):
                raise ValueError(
                    f"{name} must be a scalar or have shape ({N},), got {v.numel()} values"
                )
        if check and bool((a <= 0).any()):
            raise ValueError(f"alpha must be > 0, got min {float(a.min()):.4g}")
        if check and bool((s < 0).any()):
            raise ValueError(f"sigma must be >= 0, got min {float(s.min()):.4g}")
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

    def marginal_log_prob(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``log p_t(x)`` of the noised marginal; ``x: (N, D)``, ``alpha, sigma``: scalars or
        ``(N,)``."""
        log_px, *_ = self._moments(x, alpha, sigma)
        return log_px.to(dtype=x.dtype, device=x.device)

    def marginal_score(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``∇_x log p_t(x) = -sum_k r_k C_k^{-1}(x - alpha mu_k)``, shape ``(N, D)``."""
        return self._marginal_score(x, alpha, sigma)

    def _marginal_score(
        self, x: torch.Tensor, alpha: Scalar, sigma: Scalar, *, check: bool = True
    ) -> torch.Tensor:
        _, resp, Cinv_diff, _ = self._moments(x, alpha, sigma, check=check)
        return (-(resp[..., None] * Cinv_diff).sum(1)).to(dtype=x.dtype, device=x.device)

    def posterior_mean(self, x: torch.Tensor, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``E[x_0 | alpha x_0 + sigma eps = x]``, shape ``(N, D)`` (the ideal denoiser)."""
        return self._posterior_mean(x, alpha, sigma)

    def _posterior_mean(
        self, x: torch.Tensor, alpha: Scalar, sigma: Scalar, *, check: bool = True
    ) -> torch.Tensor:
        _, resp, Cinv_diff, a = self._moments(x, alpha, sigma, check=check)
        means, covs = self.means.to(x.device), self.covs.to(x.device)
        per_comp = means[None] + a[:, None, None] * (covs[None] @ Cinv_diff[..., None])[..., 0]
        return (resp[..., None] * per_comp).sum(1).to(dtype=x.dtype, device=x.device)

    def posterior(self, y: torch.Tensor, scale: float, noise_var: float) -> GaussianMixture:
        """The law of ``x`` given one observation ``y = scale · x + sqrt(noise_var) · eps``
        (a mixture).

        Exact Gaussian conditioning of each component, responsibilities from the evidence. Used
        for the true reverse step ``q(x_{t-1} | x_t)``: condition ``q(x_{t-1})`` on
        ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps``.
        """
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise TypeError(f"y must be a floating tensor of shape ({self.D},), got {describe(y)}")
        y = _as_float64(y, "y", f"a tensor of shape ({self.D},)").reshape(-1)
        if y.shape != (self.D,):
            raise ValueError(f"y must have shape ({self.D},), got {tuple(y.shape)}")
        scale = check_number(scale, "scale", low=0.0)
        noise_var = check_number(noise_var, "noise_var", low=0.0)
        eye = torch.eye(self.D, dtype=torch.float64)
        S = scale**2 * self.covs + noise_var * eye  # covariance of y per component
        gain = scale * self.covs @ torch.linalg.inv(S)  # (K, D, D)
        means = self.means + (gain @ (y[None] - scale * self.means)[..., None])[..., 0]
        covs = self.covs - scale * gain @ self.covs
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        evidence = GaussianMixture(scale * self.means, covs=S, weights=self.weights)
        _, resp, _, _ = evidence._moments(y[None], 1.0, 0.0, check=False)
        w = resp[0].clamp(min=1e-300)
        return GaussianMixture(means, covs=covs, weights=w / w.sum())

    # ------------------------------------------------------------------ oracles for samplers
    def eps_model(
        self, schedule: NoiseSchedule
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact ``E[eps | x_t]`` as an ``eps_model(x_t (B, D), t (B,))`` for ``schedule``."""
        check_instance(schedule, "schedule", NoiseSchedule)

        def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            tt = check_timesteps(t, x_t.shape[0], schedule.T).cpu()
            a = schedule.sqrt_alpha_bar[tt].to(x_t.device)
            s = schedule.sqrt_one_minus_alpha_bar[tt].to(x_t.device)
            x0 = self._posterior_mean(x_t.to(torch.float64), a, s, check=False)
            return ((x_t.to(torch.float64) - a[:, None] * x0) / s[:, None]).to(x_t.dtype)

        return eps

    def score_model(
        self, schedule: NoiseSchedule
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact score ``∇ log q(x_t)`` as a callable ``(x_t (B, D), t (B,)) -> (B, D)``."""
        check_instance(schedule, "schedule", NoiseSchedule)

        def score(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            tt = check_timesteps(t, x_t.shape[0], schedule.T).cpu()
            return self._marginal_score(
                x_t, schedule.sqrt_alpha_bar[tt], schedule.sqrt_one_minus_alpha_bar[tt], check=False
            )

        return score
