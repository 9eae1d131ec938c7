"""The 2D toys as Gaussian mixtures: the same shapes as toy_dataset, with exact scores."""

from __future__ import annotations

import pytest
import torch

from minidiff import toy_dataset
from minidiff.data.mixture_toys import MIXTURE_TOYS, max_mean_spacing, mixture_toy


@pytest.mark.parametrize("name", ["moons", "circles", "two_spirals", "swiss_roll"])
def test_mixture_has_the_toys_moments_and_is_a_smooth_ridge(name: str) -> None:
    mix = mixture_toy(name)
    n = 20_000
    x = mix.sample(n, torch.Generator().manual_seed(0)).double()
    y = toy_dataset(name, n, torch.Generator().manual_seed(1)).double()
    se = (y.var(0) / n).sqrt()
    assert bool(((x.mean(0) - y.mean(0)).abs() < 6 * se).all()), (x.mean(0), y.mean(0))
    torch.testing.assert_close(x.std(0), y.std(0), rtol=0.02, atol=0.0)
    # second moments of the shape itself, not only its spread
    torch.testing.assert_close(torch.cov(x.T), torch.cov(y.T), rtol=0.03, atol=0.02)
    assert max_mean_spacing(mix) < 1.35  # neighbouring means closer than ~1.3 noise widths


def test_radial_profile_of_circles_and_the_density_integrates_to_one() -> None:
    mix = mixture_toy("circles")
    x = mix.sample(20_000, torch.Generator().manual_seed(2)).double()
    inner = (x.norm(dim=1) < 1.3).double().mean()
    assert abs(float(inner) - 0.5) < 0.02  # half the mass on each ring, as in the toy
    u = torch.linspace(-2.8, 2.8, 161, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    mass = float(mix.log_prob(grid).exp().sum()) * float(u[1] - u[0]) ** 2
    assert abs(mass - 1.0) < 2e-3


def test_gaussian_toys_are_the_named_mixtures_and_bad_names_raise() -> None:
    assert mixture_toy("8gaussians").K == 8 and mixture_toy("gmm").K == 3
    assert set(MIXTURE_TOYS) >= {"moons", "two_spirals", "8gaussians"}
    with pytest.raises(ValueError, match="name"):
        mixture_toy("checkerboard")
    with pytest.raises(TypeError, match="mixture"):
        max_mean_spacing("moons")  # type: ignore[arg-type]


def test_names_and_numbers_use_the_dialect() -> None:
    import pytest

    from minidiff import GaussianMixture
    from minidiff.data.mixture_toys import mixture_toy

    with pytest.raises(TypeError, match="name must be one of"):
        mixture_toy(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="radius must be a real number"):
        GaussianMixture.eight_gaussians(radius="2")  # type: ignore[arg-type]
