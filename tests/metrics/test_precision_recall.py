"""Tests for minidiff.metrics.precision_recall: k-NN precision/recall and mode coverage."""

from __future__ import annotations

import math
import re

import pytest
import torch

import minidiff
from minidiff import GaussianMixture, toy_dataset
from minidiff.metrics import (
    knn_precision_recall,
    knn_radii,
    mode_coverage,
    precision_recall_with_floor,
    sliced_wasserstein,
)


def _ring(n: int, g: torch.Generator, radius: float = 2.0, width: float = 0.15) -> torch.Tensor:
    """A ring through the eight modes: the failure a mode-less model shows."""
    theta = 2 * math.pi * torch.rand(n, generator=g)
    r = radius + width * torch.randn(n, generator=g)
    return torch.stack([r * theta.cos(), r * theta.sin()], 1)


def test_exported_from_top_level() -> None:
    assert minidiff.knn_precision_recall is knn_precision_recall
    assert minidiff.mode_coverage is mode_coverage
    assert minidiff.precision_recall_with_floor is precision_recall_with_floor


def test_knn_radii_match_scikit_learn() -> None:
    neighbors = pytest.importorskip("sklearn.neighbors")
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for k in (1, 3, 5):
        # kneighbors on the training set returns the point itself first, hence k + 1
        dist, _ = neighbors.NearestNeighbors(n_neighbors=k + 1).fit(x.numpy()).kneighbors(x.numpy())
        torch.testing.assert_close(knn_radii(x, k), torch.from_numpy(dist[:, k]))


def test_knn_radii_chunked_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    import minidiff.metrics.precision_recall as pr

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(257, 2, generator=g), torch.randn(193, 2, generator=g)
    whole = (knn_radii(x), knn_precision_recall(x, y))
    monkeypatch.setattr(pr, "_CHUNK_ELEMENTS", 500)
    torch.testing.assert_close(knn_radii(x), whole[0])
    assert knn_precision_recall(x, y) == whole[1]


def test_identical_samples_score_one() -> None:
    x = toy_dataset("moons", 500, torch.Generator().manual_seed(0))
    pr = knn_precision_recall(x, x.clone())
    assert pr.precision == 1.0 and pr.recall == 1.0


def test_disjoint_supports_score_zero() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g)
    far = torch.randn(400, 2, generator=g) + torch.tensor([50.0, 0.0])
    pr = knn_precision_recall(far, x)
    assert pr.precision == 0.0 and pr.recall == 0.0


def test_dropped_mode_keeps_precision_and_loses_recall() -> None:
    """Samples from four of the eight modes: every sample is good, half the data is missed."""
    mix = GaussianMixture.eight_gaussians()
    g = torch.Generator().manual_seed(2)
    data = mix.sample(2000, g)
    x, labels = mix.sample_labelled(4000, g)
    half = x[labels < 4][:2000]
    pr = knn_precision_recall(half, data)
    assert pr.precision > 0.9
    assert 0.4 < pr.recall < 0.6
    cov = mode_coverage(half, mix)
    assert cov.covered == 4 and cov.fraction == 0.5
    assert (cov.counts[4:] == 0).all()


def test_ring_against_eight_modes_is_caught_by_precision_not_by_recall() -> None:
    """A ring through the modes covers the data (recall at the floor) but half of it lies
    between the modes (precision far below the floor)."""
    mix = GaussianMixture.eight_gaussians()
    g = torch.Generator().manual_seed(3)
    n = 2000

    def data(m: int, gen: torch.Generator | None) -> torch.Tensor:
        return toy_dataset("8gaussians", m, gen)

    ring = precision_recall_with_floor(lambda m, gen: _ring(m, g), data, n, draws=3, generator=g)
    assert ring.precision_floor.mean > 0.9 and ring.recall_floor.mean > 0.9
    assert ring.precision_ratio < 0.75
    assert ring.recall_ratio > 0.95
    # mode coverage sees it too: fewer samples near a mode, and each mode too wide
    cov = mode_coverage(_ring(n, g), mix)
    assert cov.high_quality < 0.7
    assert bool((cov.widths > 1.2 * cov.true_widths).all())
    # ... and the data itself passes all of it
    same = mode_coverage(mix.sample(n, g), mix)
    assert same.covered == 8 and same.high_quality > 0.97
    torch.testing.assert_close(same.widths, same.true_widths, rtol=0.1, atol=0.0)


def test_model_equal_to_data_reaches_the_floor() -> None:
    g = torch.Generator().manual_seed(4)

    def data(m: int, gen: torch.Generator | None) -> torch.Tensor:
        return toy_dataset("swiss_roll", m, gen)

    res = precision_recall_with_floor(data, data, 1000, draws=4, generator=g)
    for value, floor in ((res.precision, res.precision_floor), (res.recall, res.recall_floor)):
        assert abs(value.mean - floor.mean) < 4 * max(value.std, floor.std, 0.005)
    assert abs(res.precision_ratio - 1) < 0.05 and abs(res.recall_ratio - 1) < 0.05


def test_floor_from_a_tensor_of_samples_uses_consecutive_blocks() -> None:
    g = torch.Generator().manual_seed(5)
    pool = torch.cat([torch.randn(300, 2, generator=g), torch.randn(300, 2, generator=g) + 40])

    def data(m: int, gen: torch.Generator | None) -> torch.Tensor:
        return torch.randn(m, 2, generator=gen)

    res = precision_recall_with_floor(pool, data, 300, draws=2, generator=g)
    # first block lies on the data, the second does not: mean 0.5 with a large spread
    assert 0.4 < res.precision.mean < 0.55 and res.precision.std > 0.5


def test_mode_coverage_counts_and_widths_on_a_narrow_model() -> None:
    mix = GaussianMixture.eight_gaussians()
    g = torch.Generator().manual_seed(6)
    x, labels = mix.sample_labelled(2000, g)
    narrow = mix.means[labels].float() + 0.5 * (x - mix.means[labels].float())
    cov = mode_coverage(narrow, mix)
    assert cov.covered == 8 and cov.high_quality == 1.0
    torch.testing.assert_close(cov.counts, torch.bincount(labels, minlength=8))
    torch.testing.assert_close(cov.widths, 0.5 * cov.true_widths, rtol=0.1, atol=0.0)


@pytest.mark.parametrize(
    ("call", "exc", "words"),
    [
        (lambda: knn_precision_recall(torch.randn(10), torch.randn(10, 2)), ValueError, "samples"),
        (
            lambda: knn_precision_recall(torch.randn(10, 2), torch.randn(10, 2, 1)),
            ValueError,
            "data",
        ),
        (
            lambda: knn_precision_recall(torch.randn(10, 2), torch.randn(10, 3)),
            ValueError,
            "dimension",
        ),
        (
            lambda: knn_precision_recall(torch.randn(3, 2), torch.randn(10, 2)),
            ValueError,
            "samples",
        ),
        (
            lambda: knn_precision_recall(torch.randn(10, 2), torch.randn(3, 2), k=3),
            ValueError,
            "data",
        ),
        (
            lambda: knn_precision_recall(torch.randn(10, 2), torch.randn(10, 2), k=0),
            ValueError,
            "k",
        ),
        (
            lambda: knn_precision_recall(torch.randn(10, 2), torch.randn(10, 2), k=2.0),
            TypeError,
            "k",
        ),
        (lambda: knn_precision_recall([[0.0, 1.0]], torch.randn(10, 2)), TypeError, "samples"),
        (
            lambda: knn_precision_recall(torch.full((10, 2), math.nan), torch.randn(10, 2)),
            ValueError,
            "finite",
        ),
        (lambda: knn_radii(torch.randn(3, 2), k=3), ValueError, "at least 4"),
        (
            lambda: precision_recall_with_floor(
                torch.randn(10, 2), lambda n, g: torch.randn(n, 2), 10, 2
            ),
            ValueError,
            "n * draws",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 2), lambda n, g: torch.randn(n, 2), 3
            ),
            ValueError,
            "n must",
        ),
        (
            lambda: precision_recall_with_floor(lambda n, g: torch.randn(n, 2), "data", 10),
            TypeError,
            "data_fn",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 2), lambda n, g: torch.randn(n, 2), 10, draws=0
            ),
            ValueError,
            "draws",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 3), lambda n, g: torch.randn(n, 2), 10, draws=1
            ),
            ValueError,
            "sample_fn_or_samples(n, generator) and data_fn(n, generator) must return points of "
            "the same dimension D, got 3 and 2",
        ),
        (
            lambda: precision_recall_with_floor(
                torch.randn(10, 3), lambda n, g: torch.randn(n, 2), 10, draws=1
            ),
            ValueError,
            "sample_fn_or_samples and data_fn(n, generator) must return points of the same",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 2), lambda n, g: torch.randn(n, 2).tolist(), 10, 1
            ),
            TypeError,
            "data_fn(n, generator) must be a torch.Tensor",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 2), lambda n, g: [[0.0, 0.0]] * n, 10, 1
            ),
            TypeError,
            "data_fn(n, generator) must be a torch.Tensor",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 2).long() > 0, lambda n, g: torch.randn(n, 2), 10, 1
            ),
            TypeError,
            "sample_fn_or_samples(n, generator) must be a real tensor",
        ),
        # a sampler that does not take (n, generator): named, not Python's "<lambda>() takes 1
        # positional argument but 2 were given"
        (
            lambda: precision_recall_with_floor(
                lambda n: torch.randn(n, 2), lambda n, g: torch.randn(n, 2), 10, 1
            ),
            TypeError,
            "sample_fn_or_samples must accept the call sample_fn_or_samples(n, generator)",
        ),
        (
            lambda: precision_recall_with_floor(
                lambda n, g: torch.randn(n, 2), lambda n, *, generator: torch.randn(n, 2), 10, 1
            ),
            TypeError,
            "data_fn must accept the call data_fn(n, generator)",
        ),
        (
            lambda: mode_coverage(torch.randn(10, 3), GaussianMixture.eight_gaussians()),
            ValueError,
            "(N, 2)",
        ),
        (lambda: mode_coverage(torch.randn(10, 2), "8gaussians"), TypeError, "mixture"),
        (
            lambda: mode_coverage(torch.randn(10, 2), GaussianMixture.eight_gaussians(), n_std=0),
            ValueError,
            "n_std",
        ),
        (
            lambda: mode_coverage(
                torch.randn(10, 2), GaussianMixture.eight_gaussians(), min_fraction=1.5
            ),
            ValueError,
            "min_fraction",
        ),
    ],
)
def test_bad_inputs_name_the_argument(call, exc, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=re.escape(words)):
        call()


def test_sliced_wasserstein_alone_cannot_tell_the_ring() -> None:
    """The lesson of chapter 4: SW2 rates a ring within a small factor of the floor while
    precision rejects it. (SW2 is a sum over 1-D projections; every projection of the ring is close
    to the projection of the eight modes.)"""
    g = torch.Generator().manual_seed(7)
    n = 2000
    a, b = toy_dataset("8gaussians", n, g), toy_dataset("8gaussians", n, g)
    ring = _ring(n, g, width=0.25)
    sw_ratio = sliced_wasserstein(ring, b, generator=g) / sliced_wasserstein(a, b, generator=g)
    pr_ratio = knn_precision_recall(ring, b).precision / knn_precision_recall(a, b).precision
    assert sw_ratio < 3.0
    assert pr_ratio < 0.75


def test_far_outliers_are_counted_against_the_largest_data_radius() -> None:
    """A sample counts as a far outlier iff it is farther than max_j r_k(y_j) from every y_j."""
    data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    widest = float(knn_radii(data, 2).max())
    near = torch.tensor([[1.0 + 0.99 * widest, 1.0]])  # just within reach of (1, 1)
    far = torch.tensor([[1.0 + 1.01 * widest, 1.0]])
    samples = torch.cat([data[:3], near, far])
    pr = knn_precision_recall(samples, data, k=2)
    assert pr.outliers == pytest.approx(1 / 5)
    assert knn_precision_recall(data, data.clone(), k=2).outliers == 0.0


def test_a_few_samples_thrown_far_away_show_as_outliers_not_in_precision() -> None:
    """0.7 % of the samples 75 units away (a sampler that diverged on a few points): precision
    barely moves, the far-outlier rate shows them clearly against the data's own rate."""
    mix = GaussianMixture.eight_gaussians()
    n, draws = 2000, 3
    g = torch.Generator().manual_seed(11)

    def data(m: int, gen: torch.Generator | None) -> torch.Tensor:
        return mix.sample(m, gen)

    pool = mix.sample(n * draws, g)
    clean = precision_recall_with_floor(pool, data, n, draws, generator=g)
    thrown = pool.clone()
    idx = torch.randperm(n * draws, generator=g)[: round(0.007 * n * draws)]
    direction = torch.randn(len(idx), 2, generator=g)
    thrown[idx] += 75.0 * direction / direction.norm(dim=1, keepdim=True)
    bad = precision_recall_with_floor(thrown, data, n, draws, generator=g)

    assert abs(bad.precision.mean - clean.precision.mean) < 0.01  # precision barely moves
    assert bad.outliers.mean == pytest.approx(0.007, abs=0.0005)  # every thrown sample counts
    assert clean.outliers.mean < 0.001 and bad.outliers_floor.mean < 0.001
    assert bad.outliers_exceed_floor and not clean.outliers_exceed_floor
    assert bad.points == n * draws


def test_sample_fn_is_the_one_type_of_distances() -> None:
    """One home for the type of a sampler of points: precision_recall uses distances' SampleFn."""
    from minidiff.metrics import distances, precision_recall

    assert precision_recall.SampleFn is distances.SampleFn
