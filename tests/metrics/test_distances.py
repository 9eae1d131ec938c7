"""Tests for minidiff.metrics: MMD, sliced Wasserstein, energy distance and the data floor."""

import math

import numpy as np
import pytest
import torch

from minidiff.metrics import (
    Spread,
    data_floor,
    distance_with_spread,
    energy_distance,
    median_bandwidth,
    mmd,
    sliced_wasserstein,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normal(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=gen(seed)) + shift


def test_mmd_matches_direct_formula() -> None:
    x, y = normal(30, 2, 0), normal(40, 2, 1, 0.5)
    hs = [0.5, 2.0]

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a.double(), b.double()) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in hs)  # type: ignore[return-value]

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = 30, 40
    expected = (
        (kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
        + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1))
        - 2 * kxy.mean()
    )
    assert mmd(x, y, bandwidths=hs) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


def test_distances_small_for_same_law_and_large_for_shifted() -> None:
    x, y, z = normal(1000, 2, 0), normal(1000, 2, 1), normal(1000, 2, 2, shift=1.0)
    same_mmd, shifted_mmd = mmd(x, y), mmd(x, z)
    assert abs(same_mmd) < 1e-2 and shifted_mmd > 0.3
    same_ed, shifted_ed = energy_distance(x, y), energy_distance(x, z)
    assert abs(same_ed) < 1e-2 and shifted_ed > 0.4
    same_sw, shifted_sw = (
        sliced_wasserstein(x, y, generator=gen(5)),
        sliced_wasserstein(x, z, generator=gen(5)),
    )
    assert same_sw < 0.15
    # Shift m = (1, 1) in 2-D: SW_2 -> |m| / sqrt(2) = 1, plus the same-law sampling floor.
    assert shifted_sw == pytest.approx(1.0, abs=0.15)


def test_symmetry() -> None:
    x, y = normal(300, 2, 0), normal(200, 2, 1, 0.3)
    assert mmd(x, y) == pytest.approx(mmd(y, x), rel=1e-12)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)
    assert sliced_wasserstein(x, y, generator=gen(0)) == pytest.approx(
        sliced_wasserstein(y, x, generator=gen(0)), rel=1e-12
    )


def test_sliced_wasserstein_closed_forms() -> None:
    x = normal(500, 1, 0).double()
    # 1-D, equal sizes: SW_p is the exact W_p between the empirical laws, |m| for a pure shift.
    for p in (1, 2, 3):
        assert sliced_wasserstein(
            x, x + 0.7, n_projections=4, p=p, generator=gen(0)
        ) == pytest.approx(0.7, rel=1e-12)
    # W_1 in 1-D against scipy.
    scipy_stats = pytest.importorskip("scipy.stats")
    y = normal(500, 1, 1) * 2.0
    expected = scipy_stats.wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, n_projections=2, p=1) == pytest.approx(expected, rel=1e-9)
    # Unequal sizes are exact too (scipy integrates the difference of the step CDFs).
    y_odd = normal(333, 1, 5) + 0.3
    expected = scipy_stats.wasserstein_distance(x[:, 0].numpy(), y_odd[:, 0].numpy())
    assert sliced_wasserstein(x, y_odd, n_projections=2, p=1) == pytest.approx(expected, rel=1e-9)
    # D dims, y = x + m: each slice shifts by theta.m, so SW_2^2 = mean (theta.m)^2 -> |m|^2 / D.
    xd = normal(400, 4, 2)
    m = torch.tensor([1.0, -2.0, 0.5, 0.0])
    sw = sliced_wasserstein(xd, xd + m, n_projections=2000, generator=gen(3))
    assert sw == pytest.approx(float(m.norm()) / 2.0, rel=0.05)


def test_sliced_wasserstein_unequal_sizes() -> None:
    x = normal(1000, 2, 0)
    # Duplicating every point leaves the empirical law unchanged.
    assert sliced_wasserstein(x, torch.cat([x, x]), generator=gen(0)) < 1e-7
    assert sliced_wasserstein(x, normal(3000, 2, 1, 2.0), generator=gen(0)) > 1.0
    # The same generator gives the same directions.
    y = normal(700, 2, 2)
    assert sliced_wasserstein(x, y, generator=gen(4)) == sliced_wasserstein(x, y, generator=gen(4))


def test_energy_distance_matches_scipy_in_1d() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = normal(200, 1, 0), normal(150, 1, 1, 0.4)
    expected = scipy_stats.energy_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert math.sqrt(energy_distance(x, y, unbiased=False)) == pytest.approx(expected, rel=1e-9)


def test_chunking_gives_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import minidiff.metrics.distances as metrics

    x, y = normal(120, 2, 0), normal(100, 2, 1, 0.2)
    full = (mmd(x, y), energy_distance(x, y), sliced_wasserstein(x, y, generator=gen(0)))
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1000)
    chunked = (mmd(x, y), energy_distance(x, y), sliced_wasserstein(x, y, generator=gen(0)))
    for a, b in zip(full, chunked, strict=True):
        assert a == pytest.approx(b, rel=1e-10, abs=1e-14)


def test_median_bandwidth() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[3.0, 0.0]])
    assert median_bandwidth(x, y) == pytest.approx(2.0)  # distances 1, 3, 2
    # as documented: of an even number of distances (1, 3, sqrt 10, sqrt 29, sqrt 41, sqrt 50) the
    # lower middle one, not numpy's mean of the two middle ones
    y2 = torch.tensor([[0.0, 3.0], [5.0, 5.0]])
    assert median_bandwidth(x, y2) == pytest.approx(math.sqrt(10))
    # and beyond max_points, the evenly spaced rows of cat(x, y): rows 0 and 3 of four
    assert median_bandwidth(x, y2, max_points=2) == pytest.approx(math.sqrt(50))


@pytest.mark.parametrize("fn", [mmd, energy_distance, sliced_wasserstein])
def test_input_validation(fn: object) -> None:
    good = torch.randn(10, 2)
    with pytest.raises(ValueError, match="x must have shape"):
        fn(torch.randn(10), good)  # type: ignore[operator]
    with pytest.raises(ValueError, match="same dimension"):
        fn(good, torch.randn(10, 3))  # type: ignore[operator]
    bad = good.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="y must contain only finite"):
        fn(good, bad)  # type: ignore[operator]
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fn(good.tolist(), good)  # type: ignore[operator]


def test_parameter_validation() -> None:
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="bandwidths"):
        mmd(x, x, bandwidths=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd(x[:1], x)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError, match=r"p must lie in \[1, inf\)"):
        sliced_wasserstein(x, x, p=0.5)
    for flag in ("no", None, 1):
        with pytest.raises(TypeError, match="unbiased must be True or False"):
            energy_distance(x, x, unbiased=flag)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="values must hold at least one number"):
        Spread.of([])


def test_mmd_bandwidths_as_arrays_and_tensors_and_never_nan() -> None:
    """A 1-D array or tensor of bandwidths reads like a list; a 0-d tensor is refused by name;
    an h so small that 1 / (2 h^2) overflows is refused (it gave NaN, or a ZeroDivisionError)."""
    import numpy as np

    x, y = normal(20, 2, 0), normal(20, 2, 1, 1.0)
    ref = mmd(x, y, [0.5, 1.0])
    assert mmd(x, y, np.array([0.5, 1.0])) == ref
    assert mmd(x, y, torch.tensor([0.5, 1.0])) == ref
    with pytest.raises(TypeError, match="^bandwidths must be a sequence.*0-d tensor"):
        mmd(x, y, torch.tensor(1.0))  # type: ignore[arg-type]
    for tiny in (1e-160, 1e-170):
        with pytest.raises(ValueError, match=r"^bandwidths\[0\] must be large enough"):
            mmd(x, y, [tiny])
    assert math.isfinite(mmd(x, y, [1e-154]))


def test_data_floor_and_spread() -> None:
    def data(n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, 2, generator=g)

    def shifted(n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, 2, generator=g) + 0.5

    floor = data_floor(data, 500, "sliced_wasserstein", repeats=4, generator=gen(0))
    assert isinstance(floor, Spread) and floor.std > 0
    mean, std = floor
    assert 0 < mean < 0.15
    far = distance_with_spread(
        shifted, data, 500, "sliced_wasserstein", repeats=4, generator=gen(0)
    )
    assert far.mean > mean + 5 * (std + far.std)
    # Reproducible with the same generator seed, including the metric's own directions.
    assert data_floor(data, 500, "sliced_wasserstein", repeats=4, generator=gen(0)) == floor
    # A plain callable metric, and a single repeat (std undefined).
    one = distance_with_spread(
        shifted,
        data,
        200,
        lambda a, b: float((a.mean(0) - b.mean(0)).norm()),
        repeats=1,
        generator=gen(1),
    )
    assert one.mean == pytest.approx(0.5 * math.sqrt(2), abs=0.2) and math.isnan(one.std)
    with pytest.raises(ValueError, match="metric"):
        data_floor(data, 100, "fid")
    with pytest.raises(ValueError, match="repeats"):
        data_floor(data, 100, repeats=0)
    with pytest.raises(ValueError, match="n must be"):
        data_floor(data, 1)
    with pytest.raises(TypeError, match="sample_fn must be callable"):
        data_floor(5, 100)  # type: ignore[arg-type]


def test_data_floor_and_spread_name_the_sampler_whose_output_is_wrong() -> None:
    """What a sampler returned is checked before the metric, and the error names the sampler as
    the signature spells it, not the metric's x and y."""
    import numpy as np

    def good(n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, 2, generator=g)

    cases = [
        (lambda n, g: torch.randn(n, generator=g), ValueError, r"\(N, D\)"),
        (lambda n, g: torch.full((n, 2), float("nan")), ValueError, "finite"),
        (lambda n, g: np.zeros((n, 2)), TypeError, "torch.Tensor"),
    ]
    for bad, error, what in cases:
        with pytest.raises(error, match=rf"^sample_fn\(n, generator\) .*{what}"):
            data_floor(bad, 10)
        with pytest.raises(error, match=rf"^x_fn\(n, generator\) .*{what}"):
            distance_with_spread(bad, good, 10)
        with pytest.raises(error, match=rf"^y_fn\(n, generator\) .*{what}"):
            distance_with_spread(good, bad, 10)
    with pytest.raises(ValueError, match=r"x_fn\(n, generator\) and y_fn\(n, generator\)"):
        distance_with_spread(good, lambda n, g: torch.randn(n, 3, generator=g), 10)


def test_a_sampler_that_does_not_take_n_and_generator_is_named() -> None:
    """Python's own error said "<lambda>() takes 1 positional argument but 2 were given"; a
    TypeError inside a sampler that does take them stays the sampler's own."""

    def good(n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, 2, generator=g)

    def keyword_only(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, 2, generator=generator)

    for bad in (lambda n: torch.randn(n, 2), keyword_only):
        with pytest.raises(TypeError, match=r"^sample_fn must accept the call sample_fn\(n, "):
            data_floor(bad, 10)
        with pytest.raises(TypeError, match=r"^x_fn must accept the call x_fn\(n, generator\)"):
            distance_with_spread(bad, good, 10)
        with pytest.raises(TypeError, match=r"^y_fn must accept the call y_fn\(n, generator\)"):
            distance_with_spread(good, bad, 10)

    def broken(n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, 2, generator=g, size=3)  # the sampler's own mistake

    with pytest.raises(TypeError) as info:
        data_floor(broken, 10)
    assert not str(info.value).startswith("sample_fn must accept")


def test_a_metric_must_return_one_number() -> None:
    """A metric returning a KID pair or a tensor of several numbers failed in float() after the
    samplers ran; NaN was averaged silently."""
    from minidiff.metrics import kid_from_features

    def data(n: int, g: torch.Generator | None) -> torch.Tensor:
        return torch.randn(n, 2, generator=g)

    with pytest.raises(TypeError, match=r"^metric\(x, y\) must return one real number, got KID"):
        data_floor(data, 50, metric=kid_from_features, generator=gen(0))
    with pytest.raises(TypeError, match=r"kid_from_features\(x, y\)\.mean"):
        data_floor(data, 50, metric=lambda x, y: x.mean(0) - y.mean(0))
    with pytest.raises(ValueError, match=r"^metric\(x, y\) must be a finite number"):
        data_floor(data, 50, metric=lambda x, y: math.nan)
    kid = data_floor(data, 50, metric=lambda x, y: kid_from_features(x, y).mean, repeats=2)
    assert math.isfinite(kid.mean)
    one = data_floor(data, 50, metric=lambda x, y: (x.mean() - y.mean()).abs(), repeats=2)
    assert math.isfinite(one.mean)  # a one-element tensor is one number
    # and so is a one-element array, as a one-element tensor (it was a TypeError)
    for wrap in (torch.tensor, np.array):
        half = data_floor(data, 50, metric=lambda x, y, w=wrap: w([0.5]), repeats=2)
        assert half.mean == 0.5 and half.std == 0.0
    with pytest.raises(TypeError, match=r"^metric\(x, y\) must return one real number"):
        data_floor(data, 50, metric=lambda x, y: np.array([0.5, 0.5]))
