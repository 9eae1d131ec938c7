"""Sample-based distances between point clouds ``x: (N, D)`` and ``y: (M, D)`` (2D toys and beyond).

All computations run in float64 and in chunks, so 10k x 10k samples fit in a few hundred MB.
Every estimate is noisy: compare a model against the *data floor*, the distance between two
independent samples of the data of the same size (``data_floor``, ``distance_with_spread``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._validation import (
    Check,
    Flag,
    Function,
    Int,
    Number,
    PointCloud,
    Rng,
    call_sampler,
    check_number,
    check_with,
    checked,
    describe,
)
from ..tensors import pairwise_sq_dists

__all__ = [
    "mmd",
    "sliced_wasserstein",
    "energy_distance",
    "median_bandwidth",
    "Spread",
    "distance_with_spread",
    "data_floor",
    "METRICS",
]

_CHUNK_ELEMENTS = 1 << 22  # entries of one block of the pairwise matrix (32 MB in float64)


def _pair_sum(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor]) -> float:
    """``sum_{i,j} fn(|a_i - b_j|^2)`` computed over row blocks."""
    rows = max(1, _CHUNK_ELEMENTS // max(1, b.shape[0]))
    total = 0.0
    for i in range(0, a.shape[0], rows):
        total += float(fn(pairwise_sq_dists(a[i : i + rows], b)).sum())
    return total


@checked(x=PointCloud(), y=PointCloud(same_dim_as="x"), max_points=Int(minimum=2))
def median_bandwidth(x: Tensor, y: Tensor, max_points: int = 1000) -> float:
    """Median of the pairwise distances of the pooled sample (the median heuristic).

    Exactly what is computed: the distances ``|z_i - z_j|``, ``i < j``, of ``z = cat(x, y)``, or,
    when ``z`` has more than ``max_points`` rows, of the ``max_points`` rows at the evenly spaced
    indices ``floor(linspace(0, N + M - 1, max_points))`` (deterministic, but which rows are kept
    depends on the order of the rows and of ``x`` and ``y``: beyond ``max_points`` points in all,
    ``median_bandwidth(x, y)`` and ``median_bandwidth(y, x)`` may differ slightly); of an even
    number of distances it takes the lower of the two middle ones (``torch.median``, not the
    mean of the two as ``numpy.median``). A median of 0 (all points equal) gives 1.0.
    """
    z = torch.cat([x, y.to(x.device)])
    if z.shape[0] > max_points:
        z = z[torch.linspace(0, z.shape[0] - 1, max_points, device=z.device).long()]
    d = pairwise_sq_dists(z, z).sqrt()
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    med = float(d[iu[0], iu[1]].median()) if iu.shape[1] > 0 else 0.0
    return med if med > 0 else 1.0


def _bandwidths(value: Any, name: str) -> list[float]:
    """The ``h`` values of :func:`mmd`: a non-empty sequence, 1-D array or 1-D tensor of numbers
    ``> 0``, each large enough that the kernel's ``1 / (2 h^2)`` is a finite float64 (below about
    ``5e-155`` it overflows, and ``exp(-inf * 0)`` would make the estimate NaN)."""
    one_d = isinstance(value, (Tensor, np.ndarray)) and value.ndim == 1
    if isinstance(value, (str, bytes)) or not (isinstance(value, Sequence) or one_d):
        what = "a 0-d tensor" if isinstance(value, Tensor) and value.ndim == 0 else describe(value)
        raise TypeError(
            f"{name} must be a sequence, 1-D array or 1-D tensor of numbers > 0 (one h per RBF "
            f"kernel, e.g. [0.5, 1.0]), got {what}"
        )
    hs = [check_number(h, f"{name}[{i}]", low=0.0) for i, h in enumerate(value)]
    if not hs:
        raise ValueError(
            f"{name} must be a non-empty sequence of finite numbers > 0, got {value!r}"
        )
    for i, h in enumerate(hs):
        if h * h == 0.0 or not math.isfinite(1.0 / (2.0 * h * h)):
            raise ValueError(
                f"{name}[{i}] must be large enough that the kernel's 1 / (2 h^2) is a finite "
                f"float64 (h >= 1e-154), got {h!r}"
            )
    return hs


@checked(
    x=PointCloud(min_rows=2),
    y=PointCloud(min_rows=2, same_dim_as="x"),
    bandwidths=Check(_bandwidths, optional=True),
)
def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] | None = None) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy MMD^2 (Gretton et al., 2012).

    With the kernel ``k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))`` (a sum of RBF kernels),

        MMD^2 = 1/(n(n-1)) sum_{i!=j} k(x_i, x_j) + 1/(m(m-1)) sum_{i!=j} k(y_i, y_j)
                - 2/(nm) sum_{i,j} k(x_i, y_j).

    Being unbiased it can be slightly negative when ``x`` and ``y`` come from the same law.

    Args:
        x: ``(N, D)``, ``N >= 2``; y: ``(M, D)``, ``M >= 2``.
        bandwidths: the ``h`` values (a sequence, 1-D array or 1-D tensor of numbers
            ``>= 1e-154``); default :func:`median_bandwidth` of ``x`` and ``y`` times
            ``(0.25, 0.5, 1, 2, 4)`` (with more than 1000 points in all it is taken over an
            evenly spaced subset of ``cat(x, y)``, so ``mmd(x, y)`` and ``mmd(y, x)`` may then
            differ slightly; pass ``bandwidths`` for an exactly symmetric estimate).

    Returns:
        MMD^2 as a Python float (not its square root).
    """
    x64, y64 = x, y.to(x.device)
    if bandwidths is None:
        med = median_bandwidth.unchecked(x64, y64)
        hs = [med * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    else:
        hs = list(bandwidths)
    inv = [1.0 / (2.0 * h * h) for h in hs]

    def kernel(d2: Tensor) -> Tensor:
        out = torch.zeros_like(d2)
        for c in inv:
            out += torch.exp(-c * d2)
        return out

    n, m = x64.shape[0], y64.shape[0]
    kxx = (_pair_sum(x64, x64, kernel) - n * len(hs)) / (n * (n - 1))  # diagonal k(x, x) = len(hs)
    kyy = (_pair_sum(y64, y64, kernel) - m * len(hs)) / (m * (m - 1))
    kxy = _pair_sum(x64, y64, kernel) / (n * m)
    return kxx + kyy - 2.0 * kxy


@checked(x=PointCloud(), y=PointCloud(same_dim_as="x"), unbiased=Flag)
def energy_distance(x: Tensor, y: Tensor, unbiased: bool = True) -> float:
    """Squared energy distance (Székely & Rizzo, 2013): ``2 E|X - Y| - E|X - X'| - E|Y - Y'|``.

    It is zero iff the two laws are equal. With ``unbiased=True`` the within-sample means skip the
    zero diagonal (divide by ``n(n-1)``); with ``unbiased=False`` they divide by ``n^2``, and in 1-D
    ``sqrt(energy_distance(x, y, unbiased=False))`` equals ``scipy.stats.energy_distance``.

    Args:
        x: ``(N, D)``; y: ``(M, D)`` (``N, M >= 2`` when unbiased).

    Returns:
        The squared energy distance as a Python float.
    """
    x64, y64 = x, y.to(x.device)
    if unbiased and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(
            f"x and y must have at least 2 rows each for unbiased=True, got {x.shape[0]} and "
            f"{y.shape[0]}"
        )
    n, m = x64.shape[0], y64.shape[0]
    exy = _pair_sum(x64, y64, torch.sqrt) / (n * m)
    exx = _pair_sum(x64, x64, torch.sqrt) / (n * (n - 1) if unbiased else n * n)
    eyy = _pair_sum(y64, y64, torch.sqrt) / (m * (m - 1) if unbiased else m * m)
    return 2.0 * exy - exx - eyy


def _quantile_grid(n: int, m: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Pieces on which both empirical quantile functions are constant.

    ``F^{-1}(u) = sorted_x[ceil(u n) - 1]`` is a step function with jumps at ``i / n``; on the
    union of the jumps of both samples each piece ``(u_{k-1}, u_k]`` reads one sorted value of
    each. Returns the index into the sorted ``x``, into the sorted ``y``, and the piece lengths
    (summing to 1).
    """
    cuts = torch.cat(
        [
            torch.arange(1, n + 1, dtype=torch.float64, device=device) / n,
            torch.arange(1, m + 1, dtype=torch.float64, device=device) / m,
        ]
    )
    cuts = torch.unique(cuts)  # sorted
    cuts[-1] = 1.0
    lower = torch.cat([cuts.new_zeros(1), cuts[:-1]])
    mid = 0.5 * (lower + cuts)
    ix = (mid * n).floor().long().clamp_(0, n - 1)
    iy = (mid * m).floor().long().clamp_(0, m - 1)
    return ix, iy, cuts - lower


@checked(
    x=PointCloud(),
    y=PointCloud(same_dim_as="x"),
    n_projections=Int(),
    p=Number(low=1.0, low_open=False),
    generator=Rng,
)
def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    n_projections: int = 256,
    p: float = 2,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced Wasserstein distance (Bonneel et al., 2015).

        SW_p = (E_theta W_p^p(theta . x, theta . y))^(1/p)


    The expectation over directions ``theta`` uniform on the unit sphere is a Monte Carlo average
    over ``n_projections`` random directions (drawn from ``generator`` on the CPU). Each 1-D
    ``W_p^p = int_0^1 |F^{-1}(u) - G^{-1}(u)|^p du`` is computed exactly from the sorted
    projections (for ``N != M`` on the pieces where both empirical quantile functions are constant),
    so in 1-D (``D = 1``) it is the exact ``W_p`` between the two empirical laws; for ``N(0, I)`` vs
    ``N(m, I)`` in ``D`` dimensions, ``SW_2 -> |m| / sqrt(D)``.

    Args:
        x: ``(N, D)``; y: ``(M, D)``.
        n_projections: number of random directions, ``>= 1``.
        p: order, ``>= 1``.

    Returns:
        ``SW_p`` as a Python float.
    """
    x64, y64 = x, y.to(x.device)
    d = x64.shape[1]
    theta = torch.randn(n_projections, d, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    theta = theta.to(x64.device)
    n, m = x64.shape[0], y64.shape[0]
    grid = None if n == m else _quantile_grid(n, m, x64.device)
    total = torch.zeros((), dtype=torch.float64, device=x64.device)
    cols = max(1, _CHUNK_ELEMENTS // (n + m))
    for j in range(0, n_projections, cols):
        th = theta[j : j + cols]
        px = (x64 @ th.T).sort(dim=0).values  # (N, P) sorted projections
        py = (y64 @ th.T).sort(dim=0).values
        if grid is None:
            total += (px - py).abs().pow(p).mean(dim=0).sum()
        else:
            ix, iy, w = grid
            total += (w[:, None] * (px[ix] - py[iy]).abs().pow(p)).sum()
    return float(total / n_projections) ** (1.0 / p)


METRICS: dict[str, Callable[..., float]] = {
    "mmd": mmd,
    "sliced_wasserstein": sliced_wasserstein,
    "energy_distance": energy_distance,
}

Metric = str | Callable[..., float]
SampleFn = Callable[[int, torch.Generator | None], Tensor]
"""A sampler of points ``fn(n, generator) -> (n, d)`` (a model's or the data's)."""


class Spread(NamedTuple):
    """Mean and sample standard deviation (ddof=1; NaN for one repeat) of a metric over repeats."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of ``values`` (at least one)."""
        if len(values) == 0:
            raise ValueError("values must hold at least one number, got none")
        mean = sum(values) / len(values)
        if len(values) < 2:
            return cls(mean, math.nan)
        return cls(mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))


def _metric(metric: Any, name: str) -> Callable[..., float]:
    """A metric given by name (one of ``METRICS``) or as a callable ``(x, y) -> float``."""
    if isinstance(metric, str):
        if metric not in METRICS:
            raise ValueError(
                f"{name} must be one of {sorted(METRICS)} or a callable, got {metric!r}"
            )
        return METRICS[metric]
    if not callable(metric):
        raise TypeError(
            f"{name} must be a name or a callable (x, y) -> float, got {describe(metric)}"
        )
    return metric


def _takes_generator(fn: Callable[..., float]) -> bool:
    try:
        return "generator" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


_SAMPLER = Function("(n, generator) -> (n, D)")
# the options of a distance averaged over repeated draws (distance_with_spread, data_floor)
_REPEATS = {"n": Int(minimum=2), "metric": Check(_metric), "repeats": Int(), "generator": Rng}


@checked(x_fn=_SAMPLER, y_fn=_SAMPLER, **_REPEATS)
def distance_with_spread(
    x_fn: SampleFn,
    y_fn: SampleFn,
    n: int,
    metric: Metric = "sliced_wasserstein",
    repeats: int = 5,
    generator: torch.Generator | None = None,
) -> Spread:
    """Average ``metric(x_fn(n, g), y_fn(n, g))`` over ``repeats`` independent draws.

    ``x_fn``/``y_fn`` are ``(n, generator) -> (n, D)`` samplers (the data, or a trained model).
    ``metric`` is a name in ``METRICS`` or a callable ``(x, y) -> float``; if it takes a
    ``generator`` keyword (like ``sliced_wasserstein``) it receives ``generator`` too. A sampler
    that cannot be called as ``x_fn(n, generator)`` raises a ``TypeError`` naming it. What the
    samplers return is checked before the metric sees it (a real tensor ``(N, D)`` of finite
    values, the same ``D`` for both): errors name ``x_fn(n, generator)`` or
    ``y_fn(n, generator)``. What the metric returns must be one finite real number (a
    ``TypeError`` for anything else, e.g. the ``KID`` pair; a ``ValueError`` for NaN or inf).

    Returns:
        ``Spread(mean, std)`` over the repeats.
    """
    return _spread(x_fn, y_fn, n, metric, repeats, generator, ("x_fn", "y_fn"))


def _drawn(fn: SampleFn, n: int, generator: torch.Generator | None, name: str) -> torch.Tensor:
    """``fn(n, generator)`` (:func:`~minidiff._validation.call_sampler`), checked as a point
    cloud ``(N, D)`` named ``name(n, generator)`` (the sampler's output, as the caller wrote the
    sampler), and returned as drawn."""
    x = call_sampler(fn, n, generator, name)
    check_with(PointCloud(), x, f"{name}(n, generator)")
    return x


def _metric_value(value: Any) -> float:
    """What a metric returned, as a float: a real number, a one-element tensor or NumPy array (a
    ``TypeError`` otherwise, e.g. for :class:`~minidiff.metrics.fid.KID`, a tuple) that is finite
    (a ``ValueError`` otherwise)."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()  # as check_number reads a one-element tensor
    try:
        return check_number(value, "metric(x, y)")
    except TypeError:
        raise TypeError(
            f"metric(x, y) must return one real number, got {describe(value)}; for a metric "
            "that returns several, pass the one to average, e.g. "
            "metric=lambda x, y: kid_from_features(x, y).mean"
        ) from None


def _spread(
    x_fn: SampleFn,
    y_fn: SampleFn,
    n: int,
    metric: Metric,
    repeats: int,
    generator: torch.Generator | None,
    names: tuple[str, str],
) -> Spread:
    """:func:`distance_with_spread` for checked arguments; ``names`` name the samplers in errors
    (what they returned is checked before the metric sees it)."""
    metric_fn = _metric(metric, "metric")  # the default name is not checked, only resolved
    extra = {"generator": generator} if _takes_generator(metric_fn) else {}
    values = []
    for _ in range(repeats):
        x = _drawn(x_fn, n, generator, names[0])
        y = _drawn(y_fn, n, generator, names[1])
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                f"{names[0]}(n, generator) and {names[1]}(n, generator) must return points of "
                f"the same dimension D, got {x.shape[1]} and {y.shape[1]}"
            )
        values.append(_metric_value(metric_fn(x, y, **extra)))
    return Spread.of(values)


@checked(sample_fn=_SAMPLER, **_REPEATS)
def data_floor(
    sample_fn: SampleFn,
    n: int,
    metric: Metric = "sliced_wasserstein",
    repeats: int = 5,
    generator: torch.Generator | None = None,
) -> Spread:
    """Distance between two independent size-``n`` samples of one law: ``Spread(mean, std)``.

    A model whose samples are as close to the data as this floor cannot be told apart from the data
    by ``metric`` at this sample size. ``sample_fn`` and what it returns, and what ``metric``
    returns, are checked as in :func:`distance_with_spread`; errors name ``sample_fn`` or
    ``sample_fn(n, generator)``.
    """
    return _spread(sample_fn, sample_fn, n, metric, repeats, generator, ("sample_fn", "sample_fn"))
