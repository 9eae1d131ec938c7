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
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._validation import (
    Check,
    Function,
    Int,
    Number,
    PointCloud,
    Rng,
    call_sampler,
    check_with,
    checked,
    describe,
)
from ..data.gmm import GaussianMixture
from ..tensors import pairwise_sq_dists
from .distances import SampleFn, Spread

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


class PrecisionRecall(NamedTuple):
    """k-NN precision (fidelity), recall (diversity) and far outliers, each a fraction in [0, 1].

    ``outliers`` is the fraction of samples farther from every data point than the data's own
    largest k-NN radius: samples that no ball around the data could reach even at its widest.
    Precision counts such a sample as one miss among ``N``; this field isolates it.
    """

    precision: float
    recall: float
    outliers: float


class PrecisionRecallFloor(NamedTuple):
    """Precision, recall and far outliers of a model and of fresh data against data (the floor).

    Each measure is a ``Spread(mean, std)`` over ``draws`` independent draws of ``n`` points
    (``points = n * draws`` in all). ``precision_ratio`` and ``recall_ratio`` divide the model's
    mean by the floor's mean (1 = as good as the data); ``outliers_floor`` is the rate of far
    outliers among fresh data points, and ``outliers_exceed_floor`` says whether the model's rate
    is clearly above it.
    """

    precision: Spread
    recall: Spread
    precision_floor: Spread
    recall_floor: Spread
    outliers: Spread
    outliers_floor: Spread
    points: int

    @property
    def precision_ratio(self) -> float:
        return self.precision.mean / self.precision_floor.mean

    @property
    def recall_ratio(self) -> float:
        return self.recall.mean / self.recall_floor.mean

    @property
    def outliers_exceed_floor(self) -> bool:
        """Whether the model's far-outlier rate exceeds the data's own by more than chance.

        A one-sided two-proportion test at three standard errors: with ``p`` the pooled rate of
        the two sets of ``points`` each, the excess must exceed ``3 sqrt(2 p (1 - p) / points)``.
        Both rates 0 (or the model's below the floor) never flag.
        """
        excess = self.outliers.mean - self.outliers_floor.mean
        pooled = 0.5 * (self.outliers.mean + self.outliers_floor.mean)
        if excess <= 0:
            return False
        return excess > 3.0 * math.sqrt(2.0 * pooled * (1.0 - pooled) / self.points)


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


# ----------------------------------------------------------------------------------- k-NN


@checked(x=PointCloud(more_rows_than="k"), k=Int())
def knn_radii(x: Tensor, k: int = 3) -> Tensor:
    """Distance from each point of ``x: (N, D)`` to its k-th nearest *other* point: ``(N,)``.

    The point itself (distance 0) is not counted, so ``N >= k + 1`` is required. float64.
    """
    n = x.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // n)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for i in range(0, n, rows):
        d2 = pairwise_sq_dists(x[i : i + rows], x)
        # k + 1 smallest include the point itself at distance 0
        out[i : i + rows] = d2.topk(k + 1, dim=1, largest=False).values[:, k]
    return out.sqrt()


def _ball_membership(points: Tensor, centres: Tensor, radii: Tensor) -> tuple[Tensor, Tensor]:
    """For each point: is it within ``radii[j]`` of some ``centres[j]`` (``(N,)`` bool), and is it
    farther than ``max(radii)`` from every centre (a far outlier, ``(N,)`` bool)?"""
    r2 = radii.square()[None, :]
    widest = r2.max()
    rows = max(1, _CHUNK_ELEMENTS // centres.shape[0])
    inside = torch.empty(points.shape[0], dtype=torch.bool, device=points.device)
    far = torch.empty_like(inside)
    for i in range(0, points.shape[0], rows):
        d2 = pairwise_sq_dists(points[i : i + rows], centres)
        inside[i : i + rows] = (d2 <= r2).any(dim=1)
        far[i : i + rows] = d2.amin(dim=1) > widest
    return inside, far


@checked(
    samples=PointCloud(more_rows_than="k"),
    data=PointCloud(more_rows_than="k", same_dim_as="samples"),
    k=Int(),
)
def knn_precision_recall(samples: Tensor, data: Tensor, k: int = 3) -> PrecisionRecall:
    """k-NN precision and recall (Kynkäänniemi et al., 2019) of ``samples`` against ``data``.

    With ``r_k(y)`` the distance from ``y`` to its k-th nearest neighbour in its own set,

        precision = 1/N sum_i [exists j: |x_i - y_j| <= r_k(y_j)]    (samples on the data)
        recall    = 1/M sum_j [exists i: |y_j - x_i| <= r_k(x_i)]    (data covered by samples)
        outliers  = 1/N sum_i [for all j: |x_i - y_j| > max_l r_k(y_l)]  (far off the data)

    Args:
        samples: ``(N, D)`` generated points, ``N >= k + 1``.
        data: ``(M, D)`` points of the data, ``M >= k + 1``.
        k: neighbour rank that sets the radii (3 in the paper).

    Returns:
        ``PrecisionRecall(precision, recall, outliers)`` as Python floats in ``[0, 1]``.
    """
    data = data.to(samples.device)
    on_data, far = _ball_membership(samples, data, knn_radii.unchecked(data, k))
    covered, _ = _ball_membership(data, samples, knn_radii.unchecked(samples, k))
    return PrecisionRecall(
        precision=float(on_data.double().mean()),
        recall=float(covered.double().mean()),
        outliers=float(far.double().mean()),
    )


def _sampler_or_points(value: Any, name: str) -> Any:
    if isinstance(value, Tensor):
        return value
    if callable(value):
        return value
    raise TypeError(
        f"{name} must be a callable (n, generator) -> (n, D) or a tensor (n * draws, D), "
        f"got {describe(value)}"
    )


@checked(
    sample_fn_or_samples=Check(_sampler_or_points),
    data_fn=Function("(n, generator) -> (n, D)"),
    n=Int(minimum=2),
    draws=Int(),
    k=Int(),
    generator=Rng,
)
def precision_recall_with_floor(
    sample_fn_or_samples: SampleFn | Tensor,
    data_fn: SampleFn,
    n: int = 2000,
    draws: int = 3,
    k: int = 3,
    generator: torch.Generator | None = None,
) -> PrecisionRecallFloor:
    """Precision/recall of a model against fresh data, and of fresh data against data (the floor),
    with the rate of far outliers beside them.

    For each of ``draws`` draws: ``n`` model samples vs ``n`` fresh data points, and two
    independent size-``n`` data samples against each other. A model that matches the data
    reaches the floor (up to the spread), not 1. A few samples thrown far off the data (a
    sampler that diverges on 0.7 % of its points) cost precision only 0.7 %; the far-outlier
    rate (samples beyond the data's largest k-NN radius from every data point) shows them against
    the data's own rate, and ``outliers_exceed_floor`` flags them.

    Args:
        sample_fn_or_samples: a sampler ``(n, generator) -> (n, D)``, or a tensor of at least
            ``n * draws`` samples, cut into ``draws`` consecutive blocks of ``n`` rows.
        data_fn: ``(n, generator) -> (n, D)`` fresh data, e.g.
            ``lambda n, g: toy_dataset(name, n, g)``.
        n: points per set, ``>= k + 1``.
        draws: independent draws, ``>= 1``.
        k: neighbour rank of the radii.
        generator: source of every random draw (model and data).

    A sampler that cannot be called as ``data_fn(n, generator)`` raises a ``TypeError`` naming
    it; what the samplers return is checked before it is measured (a real tensor ``(n, D)`` of
    finite values, one ``D`` for both), and errors name ``data_fn(n, generator)`` and
    ``sample_fn_or_samples(n, generator)`` (``sample_fn_or_samples`` for a tensor).

    Returns:
        ``PrecisionRecallFloor(precision, recall, precision_floor, recall_floor, outliers,
        outliers_floor, points)``, each measure a ``Spread(mean, std)`` over the draws.
    """
    if n < k + 1:
        raise ValueError(f"n must be an int >= k + 1 = {k + 1}, got {n!r}")
    pool: Tensor | None = None
    if isinstance(sample_fn_or_samples, Tensor):
        pool = check_with(PointCloud(), sample_fn_or_samples, "sample_fn_or_samples")
        if pool.shape[0] < n * draws:
            raise ValueError(
                f"sample_fn_or_samples must have at least n * draws = {n * draws} rows "
                f"(n={n}, draws={draws}), got {pool.shape[0]}"
            )
        blocks = list(pool[: n * draws].split(n))

        def model_draw(i: int) -> Tensor:
            return blocks[i]

    else:
        fn = sample_fn_or_samples

        def model_draw(i: int) -> Tensor:
            return call_sampler(fn, n, generator, "sample_fn_or_samples")

    drawn = "sample_fn_or_samples" + ("" if pool is not None else "(n, generator)")
    model_pr: list[PrecisionRecall] = []
    floor_pr: list[PrecisionRecall] = []
    for i in range(draws):
        x = check_with(PointCloud(), model_draw(i), drawn)
        data = [
            check_with(
                PointCloud(),
                call_sampler(data_fn, n, generator, "data_fn"),
                "data_fn(n, generator)",
            )
            for _ in "abc"
        ]
        if x.shape[1] != data[0].shape[1]:
            raise ValueError(
                f"{drawn} and data_fn(n, generator) must return points of the same dimension D, "
                f"got {x.shape[1]} and {data[0].shape[1]}"
            )
        model_pr.append(knn_precision_recall(x, data[0], k))
        floor_pr.append(knn_precision_recall(data[1], data[2], k))
    return PrecisionRecallFloor(
        precision=Spread.of([p.precision for p in model_pr]),
        recall=Spread.of([p.recall for p in model_pr]),
        precision_floor=Spread.of([p.precision for p in floor_pr]),
        recall_floor=Spread.of([p.recall for p in floor_pr]),
        outliers=Spread.of([p.outliers for p in model_pr]),
        outliers_floor=Spread.of([p.outliers for p in floor_pr]),
        points=n * draws,
    )


# ----------------------------------------------------------------------------------- modes


@checked(
    samples=PointCloud(),
    mixture=GaussianMixture,
    n_std=Number(low=0.0),
    min_fraction=Number(low=0.0, high=1.0, high_open=False),
)
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
    x = samples.cpu()
    if x.shape[1] != mixture.D:
        raise ValueError(
            f"samples must have shape (N, {mixture.D}) to match the mixture, got {tuple(x.shape)}"
        )
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
