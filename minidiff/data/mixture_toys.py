"""The 2D toys as Gaussian mixtures: curved shapes whose noised scores are known exactly.

Every curved toy of :func:`~minidiff.data.toy_dataset` is a point on a curve plus Gaussian noise,
``x = c(u) + s · z`` with ``u`` uniform. Cutting ``u`` into ``K`` equally likely pieces and putting
one component ``N(c(u_k), s² I)`` at the middle of each gives a mixture whose neighbouring means
lie within about ``1.3 s`` of each other (so the mixture is as smooth as the toy) and whose
density, score and posterior mean ``E[x_0 | x_t]`` are known in closed form at every noise level
(:class:`~minidiff.data.gmm.GaussianMixture`). The mixture *is* the data law of these toys: sample
it with ``mixture.sample`` and the exact score drives a sampler whose only error is its own
discretisation (chapter 15 uses this to tell model error from solver error on non-Gaussian
shapes).

    moons        two half circles, noise (0.072, 0.12)         2 × 64 components
    circles      radii 0.8 and 1.8, noise 0.08                 64 + 144 components
    two_spirals  1.5 turns per arm, noise 0.08                 2 × 192 components
    swiss_roll   1.5 turns, noise 0.043                        320 components
    8gaussians   GaussianMixture.eight_gaussians()             8 components
    gmm          GaussianMixture.default_2d()                  3 components

Scales and noise follow ``minidiff.data.toys``; the spacing of the means is at most 1.3 times the
noise (1.30 for ``two_spirals``, the widest; the tests assert < 1.35), so each curve is a smooth
ridge, not a string of beads.
"""

from __future__ import annotations

import math

import torch

from .gmm import GaussianMixture

__all__ = ["MIXTURE_TOYS", "mixture_toy", "max_mean_spacing"]


def _mid(k: int) -> torch.Tensor:
    """Midpoints ``(i + ½) / k`` of ``k`` equal pieces of ``[0, 1]``, float64."""
    return (torch.arange(k, dtype=torch.float64) + 0.5) / k


def _moons(k: int) -> GaussianMixture:
    theta = math.pi * _mid(k)
    upper = torch.stack([theta.cos(), theta.sin()], 1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], 1)
    shift = torch.tensor([0.5, 0.25], dtype=torch.float64)
    scale = torch.tensor([1.2, 2.0], dtype=torch.float64)
    means = (torch.cat([upper, lower]) - shift) * scale
    return GaussianMixture(means, stds=(0.06 * scale).expand(2 * k, 2))


def _circles(k: int) -> GaussianMixture:
    # equal weight per ring (as in the toy), components in proportion to the circumference
    k_in, k_out = k, 9 * k // 4
    rings = []
    for radius, m in ((0.8, k_in), (1.8, k_out)):
        theta = 2 * math.pi * _mid(m)
        rings.append(radius * torch.stack([theta.cos(), theta.sin()], 1))
    weights = torch.cat([torch.full((k_in,), 0.5 / k_in), torch.full((k_out,), 0.5 / k_out)])
    return GaussianMixture(torch.cat(rings), stds=0.08, weights=weights.to(torch.float64))


def _two_spirals(k: int) -> GaussianMixture:
    # r = sqrt(u) 3π: equal pieces of u are equal pieces of arc length (r dr ∝ ds)
    r = _mid(k).sqrt() * 540 * (2 * math.pi) / 360
    arm = torch.stack([-r.cos() * r, r.sin() * r], 1) / 4.0
    return GaussianMixture(torch.cat([-arm, arm]), stds=0.08)


def _swiss_roll(k: int) -> GaussianMixture:
    # components at equal arc length (so the ridge is equally smooth everywhere), each weighted by
    # the toy's probability of its piece of curve
    lo, hi = 1.5 * math.pi, 4.5 * math.pi
    s = _mid(k)
    theta = (lo**2 + s * (hi**2 - lo**2)).sqrt()  # equal pieces of arc length
    # theta is uniform and ds = theta dtheta, so a piece of equal arc length holds mass ∝ 1/theta
    weights = theta.reciprocal() / theta.reciprocal().sum()
    pts = torch.stack([theta * theta.cos(), theta * theta.sin()], 1) / 7.0
    return GaussianMixture(pts, stds=0.3 / 7.0, weights=weights)


_BUILDERS = {
    "moons": lambda: _moons(64),
    "circles": lambda: _circles(64),
    "two_spirals": lambda: _two_spirals(192),
    "swiss_roll": lambda: _swiss_roll(320),
    "8gaussians": GaussianMixture.eight_gaussians,
    "gmm": GaussianMixture.default_2d,
}

MIXTURE_TOYS: tuple[str, ...] = tuple(_BUILDERS)
"""Names accepted by :func:`mixture_toy`."""


def mixture_toy(name: str) -> GaussianMixture:
    """The toy ``name`` as a :class:`GaussianMixture` (exact density, score and posterior mean).

    ``name`` is one of :data:`MIXTURE_TOYS`: ``moons``, ``circles``, ``two_spirals``,
    ``swiss_roll``, ``8gaussians``, ``gmm``. Draw data with ``mixture_toy(name).sample(n, g)``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be one of {list(MIXTURE_TOYS)} (a str), got {name!r}")
    if name not in _BUILDERS:
        raise ValueError(f"name must be one of {list(MIXTURE_TOYS)}, got {name!r}")
    return _BUILDERS[name]()


def max_mean_spacing(mixture: GaussianMixture) -> float:
    """Largest Mahalanobis distance from a component's mean to its nearest neighbour, measured
    with that component's covariance (up to ~1.3: a smooth ridge, not a string of beads)."""
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    if mixture.K < 2:
        return 0.0
    diff = mixture.means[None, :, :] - mixture.means[:, None, :]  # (K, K, D): row k from mean k
    chol = torch.linalg.cholesky(mixture.covs)  # (K, D, D)
    white = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (K, D, K)
    d = white.square().sum(1).sqrt()
    d.fill_diagonal_(math.inf)
    return float(d.min(dim=1).values.max())
