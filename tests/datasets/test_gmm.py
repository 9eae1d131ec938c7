"""GaussianMixture: the exact oracle behind chapters 2-9 (density, noised marginals, score,
posterior).
"""

from __future__ import annotations

import math

import pytest
import torch

import minidiff as md

GM = md.GaussianMixture.default_2d()


def _moments(gm: md.GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    w = gm.weights[:, None]
    mean = (w * gm.means).sum(0)
    second = (
        gm.weights[:, None, None] * (gm.covs + gm.means[:, :, None] * gm.means[:, None, :])
    ).sum(0)
    return mean, second - torch.outer(mean, mean)


def _grid(lo: float, hi: float, n: int) -> tuple[torch.Tensor, float]:
    u = torch.linspace(lo, hi, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), float(u[1] - u[0]) ** 2


def test_log_prob_integrates_to_one() -> None:
    pts, da = _grid(-5.0, 5.0, 401)
    for gm in (GM, md.GaussianMixture.eight_gaussians(), GM.noised(0.6, 0.8)):
        assert float(gm.log_prob(pts).exp().sum() * da) == pytest.approx(1.0, abs=1e-4)


def test_sample_moments() -> None:
    n = 200_000
    x = GM.sample(n, torch.Generator().manual_seed(0)).double()
    mean, cov = _moments(GM)
    se = (torch.diagonal(cov) / n).sqrt()
    assert bool(((x.mean(0) - mean).abs() < 5 * se).all())
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.01, rtol=0.02)
    _, labels = GM.sample_labelled(1000, torch.Generator().manual_seed(1))
    assert labels.shape == (1000,) and set(labels.tolist()) <= {0, 1, 2}


def test_sample_labelled_returns_the_points_of_sample_and_their_components() -> None:
    """One return type per method: sample -> x, sample_labelled -> (x, labels), with the same
    points for the same generator; the old sample(return_labels=True) still works but warns."""
    x = GM.sample(50, torch.Generator().manual_seed(4))
    xl, labels = GM.sample_labelled(50, torch.Generator().manual_seed(4))
    assert isinstance(x, torch.Tensor) and torch.equal(xl, x) and xl.dtype == torch.float32
    assert labels.dtype == torch.long and labels.shape == (50,)
    # each point is closest (in Mahalanobis distance) to the component it came from, mostly
    assert (
        float((GM.responsibilities(xl.double(), 1.0, 0.0).argmax(1) == labels).double().mean())
        > 0.8
    )
    with pytest.warns(DeprecationWarning, match="sample_labelled"):
        old = GM.sample(50, torch.Generator().manual_seed(4), return_labels=True)
    assert torch.equal(old[0], xl) and torch.equal(old[1], labels)


def test_marginal_score_is_gradient_of_log_prob() -> None:
    x = GM.sample(64, torch.Generator().manual_seed(2)).double().requires_grad_(True)
    for alpha, sigma in ((1.0, 0.0), (0.8, 0.6), (0.1, 0.995)):
        (grad,) = torch.autograd.grad(GM.marginal_log_prob(x, alpha, sigma).sum(), x)
        torch.testing.assert_close(
            GM.marginal_score(x.detach(), alpha, sigma), grad, rtol=1e-8, atol=1e-10
        )


def test_posterior_mean_satisfies_tweedie() -> None:
    g = torch.Generator().manual_seed(3)
    x = 1.5 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    for alpha, sigma in ((0.9, math.sqrt(1 - 0.81)), (0.3, 0.7)):
        tweedie = (x + sigma**2 * GM.marginal_score(x, alpha, sigma)) / alpha
        torch.testing.assert_close(
            GM.posterior_mean(x, alpha, sigma), tweedie, rtol=1e-8, atol=1e-10
        )


def test_per_sample_alpha_sigma_match_scalar_calls() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.99, 0.8, 0.5, 0.2, 0.05], dtype=torch.float64)
    sigma = (1 - alpha**2).sqrt()
    for method in ("marginal_log_prob", "marginal_score", "posterior_mean"):
        batched = getattr(GM, method)(x, alpha, sigma)
        for i in range(5):
            single = getattr(GM, method)(x[i : i + 1], float(alpha[i]), float(sigma[i]))
            torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-10, atol=1e-12)


def test_noised_matches_monte_carlo() -> None:
    alpha, sigma, n = 0.7, 0.5, 200_000
    g = torch.Generator().manual_seed(5)
    x = alpha * GM.sample(n, g).double() + sigma * torch.randn(
        n, 2, generator=g, dtype=torch.float64
    )
    noised = GM.noised(alpha, sigma)
    mean, cov = _moments(noised)
    se = (torch.diagonal(cov) / n).sqrt()
    assert bool(((x.mean(0) - mean).abs() < 5 * se).all())
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.01, rtol=0.02)
    pts = x[:100]
    torch.testing.assert_close(noised.log_prob(pts), GM.marginal_log_prob(pts, alpha, sigma))


def test_posterior_matches_grid_conditioning() -> None:
    """p(x | y) with y = scale x + sqrt(v) eps: mixture formula vs prior x likelihood on a fine
    grid."""
    prior = GM.noised(0.9, math.sqrt(1 - 0.81))
    scale, v = math.sqrt(0.8), 0.2
    y = torch.tensor([0.4, -0.3], dtype=torch.float64)
    post = prior.posterior(y, scale, v)
    pts, da = _grid(-4.0, 4.0, 501)
    log_w = prior.log_prob(pts) - 0.5 * ((y - scale * pts) ** 2).sum(1) / v
    w = torch.softmax(log_w, 0)
    mean_grid = (w[:, None] * pts).sum(0)
    cov_grid = (
        w[:, None, None] * (pts - mean_grid)[:, :, None] * (pts - mean_grid)[:, None, :]
    ).sum(0)
    mean, cov = _moments(post)
    torch.testing.assert_close(mean, mean_grid, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cov, cov_grid, atol=1e-5, rtol=1e-4)
    dens_grid = w / da
    torch.testing.assert_close(post.log_prob(pts).exp(), dens_grid, atol=1e-4, rtol=1e-3)


def test_eps_and_score_models_agree() -> None:
    sched = md.linear_schedule(50, beta_start=1e-3, beta_end=0.2)
    g = torch.Generator().manual_seed(6)
    x0 = GM.sample(40, g).double()
    t = torch.randint(1, 51, (40,), generator=g)
    x_t = md.q_sample(x0, t, sched, generator=g)
    eps = GM.eps_model(sched)(x_t, t)
    torch.testing.assert_close(
        md.score_from_eps(eps, t, sched), GM.score_model(sched)(x_t, t), rtol=1e-8, atol=1e-10
    )
    # E[eps | x_t] turned into x0 is the posterior mean E[x0 | x_t].
    a, s = sched.sqrt_alpha_bar[t], sched.sqrt_one_minus_alpha_bar[t]
    torch.testing.assert_close(
        md.predict_x0_from_eps(x_t, t, eps, sched), GM.posterior_mean(x_t, a, s)
    )
    assert eps.dtype == x_t.dtype and eps.shape == x_t.shape


def test_constructor_and_argument_errors() -> None:
    means = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="means"):
        md.GaussianMixture(torch.zeros(2), stds=1.0)
    with pytest.raises(ValueError, match="exactly one"):
        md.GaussianMixture(means)
    with pytest.raises(ValueError, match="exactly one"):
        md.GaussianMixture(means, covs=torch.eye(2).expand(2, 2, 2), stds=1.0)
    with pytest.raises(ValueError, match="covs must have shape"):
        md.GaussianMixture(means, covs=torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="symmetric"):
        md.GaussianMixture(means, covs=torch.tensor([[1.0, 0.5], [0.0, 1.0]]).expand(2, 2, 2))
    with pytest.raises(ValueError, match="positive definite"):
        md.GaussianMixture(means, covs=torch.tensor([[1.0, 2.0], [2.0, 1.0]]).expand(2, 2, 2))
    with pytest.raises(ValueError, match="stds"):
        md.GaussianMixture(means, stds=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="weights"):
        md.GaussianMixture(means, stds=1.0, weights=torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="weights"):
        md.GaussianMixture(means, stds=1.0, weights=torch.tensor([1.0]))
    with pytest.raises(ValueError, match="alpha"):
        GM.noised(0.0, 1.0)
    with pytest.raises(ValueError, match="n must"):
        GM.sample(0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        GM.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="alpha"):
        GM.marginal_score(torch.zeros(4, 2), torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="y must"):
        GM.posterior(torch.zeros(3), 1.0, 0.1)
    with pytest.raises(ValueError, match="noise_var"):
        GM.posterior(torch.zeros(2), 1.0, 0.0)
