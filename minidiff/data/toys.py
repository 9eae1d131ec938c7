"""2D toy datasets, drawn with torch so that a ``torch.Generator`` fixes every sample.

Each set is scaled to roughly unit spread so that one noise schedule suits them all.
"""

from __future__ import annotations

import math

import torch

from .._validation import Int, OneOf, Rng, checked
from .gmm import GaussianMixture

__all__ = ["toy_dataset", "TOY_DATASETS", "labelled_toy", "LABELLED_TOYS"]


def _u(n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g, dtype=torch.float64)


def _n(n: int, g: torch.Generator | None, d: int = 2) -> torch.Tensor:
    return torch.randn(n, d, generator=g, dtype=torch.float64)


# moons, two_spirals and circles also return which part each point came from (0 or 1): the
# labels of labelled_toy, drawn with the very same random numbers.


def _moons(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and labels (0 = upper moon, 1 = lower moon)."""
    theta = math.pi * _u(n, g)
    upper = torch.rand(n, generator=g) < 0.5
    x = torch.where(upper, theta.cos(), 1 - theta.cos())
    y = torch.where(upper, theta.sin(), 0.5 - theta.sin())
    pts = torch.stack([x, y], 1) + 0.06 * _n(n, g)
    shift = torch.tensor([0.5, 0.25], dtype=torch.float64)
    scale = torch.tensor([1.2, 2.0], dtype=torch.float64)
    return (pts - shift) * scale, (~upper).long()


def _swiss_roll(n: int, g: torch.Generator | None) -> torch.Tensor:
    theta = 1.5 * math.pi * (1 + 2 * _u(n, g))
    pts = torch.stack([theta * theta.cos(), theta * theta.sin()], 1) + 0.3 * _n(n, g)
    return pts / 7.0


def _checkerboard(n: int, g: torch.Generator | None) -> torch.Tensor:
    x1 = 4 * _u(n, g) - 2
    x2 = _u(n, g) - 2 * torch.randint(0, 2, (n,), generator=g).double()
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1) * 0.9


def _two_spirals(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and labels (which of the two arms)."""
    r = torch.sqrt(_u(n, g)) * 540 * (2 * math.pi) / 360
    first = torch.rand(n, generator=g) < 0.5
    sign = torch.where(first, -1.0, 1.0).double()
    pts = torch.stack([-r.cos() * r, r.sin() * r], 1) * sign[:, None]
    return pts / 4.0 + 0.08 * _n(n, g), (~first).long()


def _circles(n: int, g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and labels (0 = inner, 1 = outer ring)."""
    theta = 2 * math.pi * _u(n, g)
    inner = torch.rand(n, generator=g) < 0.5
    radius = torch.where(inner, 0.8, 1.8).double()
    pts = radius[:, None] * torch.stack([theta.cos(), theta.sin()], 1) + 0.08 * _n(n, g)
    return pts, (~inner).long()


_BUILDERS = {
    "moons": lambda n, g: _moons(n, g)[0],
    "swiss_roll": _swiss_roll,
    "8gaussians": lambda n, g: GaussianMixture.eight_gaussians().sample(n, g).double(),
    "checkerboard": _checkerboard,
    "two_spirals": lambda n, g: _two_spirals(n, g)[0],
    "circles": lambda n, g: _circles(n, g)[0],
    "gmm": lambda n, g: GaussianMixture.default_2d().sample(n, g).double(),
}

TOY_DATASETS: tuple[str, ...] = tuple(_BUILDERS)
"""Names accepted by :func:`toy_dataset`."""


@checked(name=OneOf(TOY_DATASETS), n=Int(), generator=Rng)
def toy_dataset(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` points of a 2D toy distribution as a float32 tensor ``(n, 2)``.

    Names: ``moons``, ``swiss_roll``, ``8gaussians``, ``checkerboard``, ``two_spirals``,
    ``circles``, ``gmm``. ``8gaussians`` and ``gmm`` are Gaussian mixtures whose exact law is
    ``GaussianMixture.eight_gaussians()`` and ``GaussianMixture.default_2d()``.
    """
    return _BUILDERS[name](n, generator).float()


# ---------------------------------------------------------------------- labelled toys
# The builders of moons, circles and two_spirals return the labels too: with the same generator
# the points are identical and the labels say which part each point came from.

_LABELLED = {"moons": _moons, "circles": _circles, "two_spirals": _two_spirals}
LABELLED_TOYS: tuple[str, ...] = tuple(_LABELLED)
"""Names accepted by :func:`labelled_toy` (two classes each)."""


@checked(name=OneOf(LABELLED_TOYS), n=Int(), generator=Rng)
def labelled_toy(
    name: str, n: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` labelled points ``(x (n, 2) float32, y (n,) long in {0, 1})`` of a 2D toy.

    ``moons``: 0 = upper moon, 1 = lower moon; ``circles``: 0 = inner, 1 = outer ring;
    ``two_spirals``: the two arms. ``x`` equals ``toy_dataset(name, n, generator)`` for a
    generator in the same state.
    """
    x, y = _LABELLED[name](n, generator)
    return x.float(), y
