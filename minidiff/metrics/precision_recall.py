"""Fidelity and diversity of samples: k-NN precision/recall and mode coverage.

A distance such as SW₂ or MMD folds two different failures into one number. Precision and recall
(Kynkäänniemi et al., 2019, "Improved Precision and Recall Metric for Assessing Generative
Models") keep them apart. Around every point of a set put a ball whose radius is the distance to
its k-th nearest neighbour *in the same set*; the union of the balls estimates the set's support.

    precision = fraction of samples that fall inside some data ball        (fidelity)
    recall    = fraction of data points that fall inside some sample ball  (diversity)

A blurred model (a ring where the data has eight modes) has high recall and low precision; a
model that drops modes has high precision and low recall. Neither reaches 1 even for a perfect
model with finitely many points, so compare against the *floor*: the same measure between two
independent samples of the data (``precision_recall_with_floor``).

For a ``GaussianMixture`` the modes are known, so ``mode_coverage`` counts them directly (as in
Srivastava et al., 2017, VEEGAN): each sample belongs to the mode nearest in Mahalanobis distance
if it lies within ``n_std`` of it; a mode is covered if it receives at least ``min_fraction`` of
its expected share; and each mode's spread is compared with the true one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from ..data.gmm import GaussianMixture
from .distances import Spread

__all__ = [
    "PrecisionRecall",
    "PrecisionRecallFloor",
    "ModeCoverage",
    "knn_radii",
    "knn_precision_recall",
    "precision_recall_with_floor",
    "mode_coverage",
]

_CHUNK_ELEMENTS = 1 << 22  # entries of one block of the pairwise matrix (32 MB in float64)

SampleFn = Callable[[int, torch.Generator | None], Tensor]


class PrecisionRecall(NamedTuple):
    """k-NN precision (fidelity) and recall (diversity), both in ``[0, 1]``."""

    precision: float
    recall: float


class PrecisionRecallFloor(NamedTuple):
    """Precision and recall of a model and of fresh data against data (the floor), over draws.

    Each field is a ``Spread(mean, std)`` over ``draws`` independent draws. ``precision_ratio``
    and ``recall_ratio`` divide the model's mean by the floor's mean (1 = as good as the data).
    """

    precision: Spread
    recall: Spread
    precision_floor: Spread
    recall_floor: Spread

    @property
    def precision_ratio(self) -> float:
        return self.precision.mean / self.precision_floor.mean

    @property
    def recall_ratio(self) -> float:
        return self.recall.mean / self.recall_floor.mean


class ModeCoverage(NamedTuple):
    """What ``mode_coverage`` found for a ``GaussianMixture`` with ``K`` modes.

    Attributes:
        covered: number of modes that received at least ``min_fraction`` of their expected share.
        fraction: ``covered / K``.
        counts: ``(K,)`` number of samples assigned to each mode.
        expected: ``(K,)`` expected counts, ``N * w_k``.
        widths: ``(K,)`` RMS distance per dimension of each mode's samples from the mode's mean,
            ``sqrt(mean |x - mu_k|^2 / D)`` (NaN for a mode with fewer than 2 samples). Only
            samples within ``n_std`` count, so a perfect model reads slightly narrow (in 2D with
            ``n_std = 3``, 0.974 x the true width).
        true_widths: ``(K,)`` the same for the mixture itself, ``sqrt(trace(Sigma_k) / D)``.
        high_quality: fraction of samples within ``n_std`` of some mode.
    """

    covered: int
    fraction: float
    counts: Tensor
    expected: Tensor
    widths: Tensor
    true_widths: Tensor
    high_quality: float


# ----------------------------------------------------------------------------------- checks


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int >= 1, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be an int >= 1, got {k}")
    return k


def _check_points(x: object, name: str, min_rows: int = 1) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows, got {x.shape[0]}")
    x64 = x.detach().to(torch.float64)
    if not bool(torch.isfinite(x64).all()):
        raise ValueError(f"{name} must contain only finite values")
    return x64


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


# ----------------------------------------------------------------------------------- k-NN


def knn_radii(x: Tensor, k: int = 3) -> Tensor:
    """Distance from each point of ``x: (N, D)`` to its k-th nearest *other* point: ``(N,)``.

    The point itself (distance 0) is not counted, so ``N >= k + 1`` is required. float64.
    """
    k = _check_k(k)
    x64 = _check_points(x, "x", min_rows=k + 1)
    n = x64.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // n)
    out = torch.empty(n, dtype=torch.float64, device=x64.device)
    for i in range(0, n, rows):
        d2 = _sq_dists(x64[i : i + rows], x64)
        # k + 1 smallest include the point itself at distance 0
        out[i : i + rows] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return out.sqrt()


def _inside_some_ball(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """``(N,)`` bool: is ``points[i]`` within ``radii[j]`` of some ``centres[j]``?"""
    r2 = radii.square()[None, :]
    rows = max(1, _CHUNK_ELEMENTS // centres.shape[0])
    out = torch.empty(points.shape[0], dtype=torch.bool, device=points.device)
    for i in range(0, points.shape[0], rows):
        out[i : i + rows] = (_sq_dists(points[i : i + rows], centres) <= r2).any(dim=1)
    return out


def knn_precision_recall(samples: Tensor, data: Tensor, k: int = 3) -> PrecisionRecall:
    """k-NN precision and recall (Kynkäänniemi et al., 2019) of ``samples`` against ``data``.

    With ``r_k(y)`` the distance from ``y`` to its k-th nearest neighbour in its own set,

        precision = 1/N sum_i [exists j: |x_i - y_j| <= r_k(y_j)]    (samples on the data)
        recall    = 1/M sum_j [exists i: |y_j - x_i| <= r_k(x_i)]    (data covered by samples)

    Args:
        samples: ``(N, D)`` generated points, ``N >= k + 1``.
        data: ``(M, D)`` points of the data, ``M >= k + 1``.
        k: neighbour rank that sets the radii (3 in the paper).

    Returns:
        ``PrecisionRecall(precision, recall)`` as Python floats in ``[0, 1]``.
    """
    k = _check_k(k)
    x = _check_points(samples, "samples", min_rows=k + 1)
    y = _check_points(data, "data", min_rows=k + 1).to(x.device)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"samples and data must have the same dimension D, got {x.shape[1]} and {y.shape[1]}"
        )
    precision = float(_inside_some_ball(x, y, knn_radii(y, k)).double().mean())
    recall = float(_inside_some_ball(y, x, knn_radii(x, k)).double().mean())
    return PrecisionRecall(precision, recall)


def _spread(values: list[float]) -> Spread:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return Spread(mean, math.nan)
    return Spread(mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)))


def precision_recall_with_floor(
    sample_fn_or_samples: SampleFn | Tensor,
    data_fn: SampleFn,
    n: int = 2000,
    draws: int = 3,
    k: int = 3,
    generator: torch.Generator | None = None,
) -> PrecisionRecallFloor:
    """Precision/recall of a model against fresh data, and of fresh data against data (the floor).

    For each of ``draws`` draws: ``n`` model samples vs ``n`` fresh data points, and two
    independent size-``n`` data samples against each other. A model that matches the data
    reaches the floor (up to the spread), not 1.

    Args:
        sample_fn_or_samples: a sampler ``(n, generator) -> (n, D)``, or a tensor of at least
            ``n * draws`` samples, cut into ``draws`` consecutive blocks of ``n`` rows.
        data_fn: ``(n, generator) -> (n, D)`` fresh data, e.g.
            ``lambda n, g: toy_dataset(name, n, g)``.
        n: points per set, ``>= k + 1``.
        draws: independent draws, ``>= 1``.
        k: neighbour rank of the radii.
        generator: source of every random draw (model and data).

    Returns:
        ``PrecisionRecallFloor(precision, recall, precision_floor, recall_floor)``, each a
        ``Spread(mean, std)`` over the draws.
    """
    k = _check_k(k)
    if isinstance(n, bool) or not isinstance(n, int) or n < k + 1:
        raise ValueError(f"n must be an int >= k + 1 = {k + 1}, got {n!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an int >= 1, got {draws!r}")
    if not callable(data_fn):
        raise TypeError(
            f"data_fn must be a callable (n, generator) -> (n, D), got {type(data_fn).__name__}"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    if isinstance(sample_fn_or_samples, Tensor):
        pool = _check_points(sample_fn_or_samples, "sample_fn_or_samples")
        if pool.shape[0] < n * draws:
            raise ValueError(
                f"sample_fn_or_samples must have at least n * draws = {n * draws} rows "
                f"(n={n}, draws={draws}), got {pool.shape[0]}"
            )
        blocks = list(pool[: n * draws].split(n))

        def model_draw(i: int) -> Tensor:
            return blocks[i]

    elif callable(sample_fn_or_samples):
        fn = sample_fn_or_samples

        def model_draw(i: int) -> Tensor:
            return fn(n, generator)

    else:
        raise TypeError(
            "sample_fn_or_samples must be a callable (n, generator) -> (n, D) or a tensor "
            f"(n * draws, D), got {type(sample_fn_or_samples).__name__}"
        )
    model_pr: list[PrecisionRecall] = []
    floor_pr: list[PrecisionRecall] = []
    for i in range(draws):
        x = model_draw(i)
        model_pr.append(knn_precision_recall(x, data_fn(n, generator), k))
        floor_pr.append(knn_precision_recall(data_fn(n, generator), data_fn(n, generator), k))
    return PrecisionRecallFloor(
        precision=_spread([p.precision for p in model_pr]),
        recall=_spread([p.recall for p in model_pr]),
        precision_floor=_spread([p.precision for p in floor_pr]),
        recall_floor=_spread([p.recall for p in floor_pr]),
    )


# ----------------------------------------------------------------------------------- modes


def mode_coverage(
    samples: Tensor,
    mixture: GaussianMixture,
    n_std: float = 3.0,
    min_fraction: float = 0.25,
) -> ModeCoverage:
    """How many of a mixture's modes the samples hit, how many each gets, and how wide each is.

    Each sample is assigned to the component with the smallest Mahalanobis distance
    ``sqrt((x - mu_k)^T Sigma_k^{-1} (x - mu_k))``, and counts only if that distance is at most
    ``n_std`` ("high-quality" samples, Srivastava et al., 2017). A mode is covered if its count is
    at least ``min_fraction * N * w_k``.

    Args:
        samples: ``(N, D)`` with ``D == mixture.D``.
        mixture: the data law, whose means ``(K, D)``, covariances and weights are known.
        n_std: Mahalanobis radius of a mode, ``> 0``.
        min_fraction: share of the expected count that makes a mode covered, in ``(0, 1]``.

    Returns:
        ``ModeCoverage(covered, fraction, counts, expected, widths, true_widths, high_quality)``.
    """
    if not isinstance(mixture, GaussianMixture):
        raise TypeError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
    x = _check_points(samples, "samples", min_rows=1).cpu()
    if x.shape[1] != mixture.D:
        raise ValueError(
            f"samples must have shape (N, {mixture.D}) to match the mixture, got {tuple(x.shape)}"
        )
    for name, v, hi in (("n_std", n_std, math.inf), ("min_fraction", min_fraction, 1.0)):
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        if not ok or not (0 < v <= hi):
            raise ValueError(f"{name} must be a number in (0, {hi}], got {v!r}")
    n, K = x.shape[0], mixture.K
    chol = torch.linalg.cholesky(mixture.covs)  # (K, D, D)
    diff = x[None, :, :] - mixture.means[:, None, :]  # (K, N, D)
    white = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (K, D, N)
    maha = white.square().sum(1).sqrt()  # (K, N)
    best, label = maha.min(dim=0)
    hit = best <= n_std
    counts = torch.bincount(label[hit], minlength=K)
    expected = n * mixture.weights
    covered_mask = counts.double() >= min_fraction * expected
    sq = diff.square().sum(2) / mixture.D  # (K, N): per-dimension squared distance to each mean
    widths = torch.full((K,), math.nan, dtype=torch.float64)
    for j in range(K):
        mine = hit & (label == j)
        if int(mine.sum()) >= 2:
            widths[j] = sq[j][mine].mean().sqrt()
    true_widths = (torch.diagonal(mixture.covs, dim1=1, dim2=2).sum(1) / mixture.D).sqrt()
    covered = int(covered_mask.sum())
    return ModeCoverage(
        covered=covered,
        fraction=covered / K,
        counts=counts,
        expected=expected,
        widths=widths,
        true_widths=true_widths,
        high_quality=float(hit.double().mean()),
    )
