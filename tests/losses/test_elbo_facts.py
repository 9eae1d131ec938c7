"""The facts chapter 3 states, checked independently of the notebook.

The VAE form of the bound (exact, for an affine model), the control variate used to pin down the
bound of the mixture's exact denoiser, lambda_t's interior minimum, the 'same optimum only for a
flexible model class' example, and the identities between the eps, x0 and mu parameterisations.
"""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import (
    GaussianMixture,
    gaussian_kl,
    gaussian_log_likelihood,
    linear_schedule,
    p_mean_var,
    predict_x0_from_eps,
    q_posterior_mean_var,
    q_sample,
    vlb_terms,
    vlb_weights,
)
from minidiff.losses import affine_model_nll


def _affine_step(model, t: int, sched) -> tuple[float, float, float]:
    pts = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    mean, var = p_mean_var(model, pts, t, sched, for_density=True)
    return float(mean[1] - mean[0]), float(mean[0]), float(var[0])


def test_vae_form_of_the_bound_equals_the_per_step_terms() -> None:
    """KL(q(x_1:T|x0) || p(x_1:T)) = L_T + sum L_{t-1} and E_q log p(x0|x1) = -L_0, exactly."""
    sched = linear_schedule(6, beta_start=0.05, beta_end=0.5)
    T, ab = sched.T, sched.alpha_bar
    model = GaussianMixture(torch.tensor([[-0.3]]), stds=0.7).eps_model(sched)  # a wrong model
    x0 = 1.1
    ts = torch.arange(1, T + 1)
    lo, hi = torch.minimum(ts[:, None], ts[None, :]), torch.maximum(ts[:, None], ts[None, :])
    cov_q = (ab[hi] / ab[lo]).sqrt() * (1 - ab[lo])
    mean_q = ab[ts].sqrt() * x0
    M = torch.zeros(T + 1, T, dtype=torch.float64)
    c = torch.zeros(T + 1, dtype=torch.float64)
    M[T, T - 1] = 1.0
    for t in range(T, 1, -1):
        A, b, var = _affine_step(model, t, sched)
        M[t - 1] = A * M[t]
        M[t - 1, t - 2] = math.sqrt(var)
        c[t - 1] = A * c[t] + b
    kl = float(
        torch.distributions.kl_divergence(
            torch.distributions.MultivariateNormal(mean_q, cov_q),
            torch.distributions.MultivariateNormal(c[1:], M[1:] @ M[1:].T),
        )
    )
    A1, b1, var1 = _affine_step(model, 1, sched)
    recon = float(
        gaussian_log_likelihood(
            torch.tensor(x0, dtype=torch.float64),
            torch.tensor(A1 * float(mean_q[0]) + b1, dtype=torch.float64),
            torch.tensor(var1, dtype=torch.float64),
        )
    ) - A1**2 * float(cov_q[0, 0]) / (2 * var1)
    n = 100_000
    tm = vlb_terms(
        model,
        torch.full((n, 1), x0, dtype=torch.float64),
        sched,
        generator=torch.Generator().manual_seed(0),
    )
    kl_mc, recon_mc = tm.L_T + tm.L_t.sum(1), -tm.L_0
    assert abs(float(kl_mc.mean()) - kl) < 5 * float(kl_mc.std()) / math.sqrt(n)
    assert abs(float(recon_mc.mean()) - recon) < 5 * float(recon_mc.std()) / math.sqrt(n)
    nll = float(affine_model_nll(model, torch.tensor([[x0]], dtype=torch.float64), sched)[0])
    assert kl - recon > nll + 1e-3  # a wrong model: the bound is strictly above the exact NLL
    # A wrong decomposition (say, L_0 with the wrong sign) would not match:
    assert abs(float(-recon_mc.mean()) - recon) > 10 * float(recon_mc.std()) / math.sqrt(n)


def _vlb_with_eps(model, x0, sched, generator):
    """The inline loop of chapter 3: total bound per sample and ||eps_t||^2 for each term."""
    ab = sched.alpha_bar
    L = gaussian_kl(
        ab[-1].sqrt() * x0, (1 - ab[-1]).expand_as(x0), torch.zeros(()), torch.ones(())
    ).sum(1)
    eps_sq = torch.zeros(x0.shape[0], sched.T + 1, dtype=x0.dtype)
    for t in [*range(2, sched.T + 1), 1]:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_t = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * eps
        mean_p, var_p = p_mean_var(model, x_t, t, sched, for_density=(t == 1))
        if t > 1:
            mean_q, var_q = q_posterior_mean_var(x0, x_t, t, sched)
            L = L + gaussian_kl(mean_q, var_q, mean_p, var_p).sum(1)
        else:
            L = L - gaussian_log_likelihood(x0, mean_p, var_p).sum(1)
        eps_sq[:, t] = (eps**2).sum(1)
    return L, eps_sq


def test_inline_bound_matches_vlb_terms_with_the_same_seed() -> None:
    gmm = GaussianMixture.default_2d()
    sched = linear_schedule(40, beta_start=1e-3, beta_end=0.2)
    oracle = gmm.eps_model(sched)
    x0 = gmm.sample(16, torch.Generator().manual_seed(1)).double()
    L, _ = _vlb_with_eps(oracle, x0, sched, torch.Generator().manual_seed(2))
    ref = vlb_terms(oracle, x0, sched, generator=torch.Generator().manual_seed(2)).total
    assert torch.allclose(L, ref, rtol=0, atol=1e-9)


def test_control_variate_keeps_the_mean_and_pins_the_mixture_bound() -> None:
    """With the exact denoiser at T = 1000 the bound sits within a few hundredths of -log p_data."""
    torch.set_num_threads(1)
    gmm = GaussianMixture.default_2d()
    sched = linear_schedule(1000)
    x0 = gmm.sample(512, torch.Generator().manual_seed(3)).double()
    L, eps_sq = _vlb_with_eps(gmm.eps_model(sched), x0, sched, torch.Generator().manual_seed(4))
    cv = (sched.alpha_bar**2 * vlb_weights(sched, "beta") * (eps_sq - 2))[:, 1:].sum(1)
    n = x0.shape[0]
    assert abs(float(cv.mean())) < 5 * float(cv.std()) / math.sqrt(n)
    plain, reduced = L + gmm.log_prob(x0), L - cv + gmm.log_prob(x0)
    assert float(reduced.std()) < float(plain.std()) / 3
    se = float(reduced.std()) / math.sqrt(n)
    assert -4 * se < float(reduced.mean()) < 0.05


def test_lambda_has_an_interior_minimum_and_rises_towards_T() -> None:
    sched = linear_schedule(1000)
    for variance in ("beta", "beta_tilde"):
        lam = vlb_weights(sched, variance)
        t_min = int(lam[2:].argmin()) + 2
        assert 300 < t_min < 400, (variance, t_min)
        assert float(lam[1000]) > 1.5 * float(lam[t_min])
        assert float(lam[2]) > 20 * float(lam[t_min])


def test_weightings_agree_only_for_a_flexible_model_class() -> None:
    """eps_theta = a_t x_t (one a per t): same optimum under any weights; a shared a: not."""
    sched = linear_schedule(1000)
    s2 = 1.0
    ab, sig = sched.alpha_bar[1:], (1 - sched.alpha_bar[1:]).sqrt()
    w_bound, w_simple = vlb_weights(sched, "beta")[1:], torch.ones(1000, dtype=torch.float64)

    def shared(w: torch.Tensor) -> float:
        return float((w * sig).sum() / (w * (ab * s2 + sig**2)).sum())

    gen = torch.Generator().manual_seed(5)
    n = 200_000
    t = torch.randint(1, 1001, (n,), generator=gen)
    x0 = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    eps = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x = q_sample(x0, t, sched, noise=eps)[:, 0]
    for w in (w_bound, w_simple):
        wt = w[t - 1]
        a_mc = float((wt * x * eps[:, 0]).sum() / (wt * x**2).sum())
        assert abs(a_mc - shared(w)) < 0.03 * shared(w)
    assert abs(shared(w_bound) - shared(w_simple)) > 0.2 * shared(w_simple)
    # per t, the minimiser of w_t E(eps - a x_t)^2 is E[eps x_t] / E[x_t^2] whatever w_t > 0:
    m = 200_000
    for tt in (50, 200, 500, 1000):
        x0_t = torch.randn(m, 1, generator=gen, dtype=torch.float64)
        eps_t = torch.randn(m, 1, generator=gen, dtype=torch.float64)
        x_t = q_sample(x0_t, tt, sched, noise=eps_t)[:, 0]
        a_t = float((x_t * eps_t[:, 0]).sum() / (x_t**2).sum())
        exact = float(sig[tt - 1] / (ab[tt - 1] * s2 + sig[tt - 1] ** 2))
        se = 1 / math.sqrt(m * float(ab[tt - 1] * s2 + sig[tt - 1] ** 2))
        assert abs(a_t - exact) < 5 * se < 0.1 * exact, tt


@pytest.mark.parametrize("seed", [0, 1])
def test_eps_x0_mu_errors_are_one_regression_with_three_weightings(seed: int) -> None:
    sched = linear_schedule(1000)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    t = torch.randint(1, 1001, (256,), generator=gen)
    eps = torch.randn(256, 2, generator=gen, dtype=torch.float64)
    eps_hat = eps + 0.5 * torch.randn(256, 2, generator=gen, dtype=torch.float64)
    x_t = q_sample(x0, t, sched, noise=eps)
    x0_hat = predict_x0_from_eps(x_t, t, eps_hat, sched)
    mu_hat, _ = p_mean_var(lambda x, tt: eps_hat, x_t, t, sched)
    mu, _ = q_posterior_mean_var(x0, x_t, t, sched)
    e2 = ((eps - eps_hat) ** 2).sum(1)
    ab, b, a = sched.alpha_bar[t], sched.betas[t], sched.alphas[t]
    torch.testing.assert_close(
        ((x0 - x0_hat) ** 2).sum(1), (1 - ab) / ab * e2, rtol=1e-7, atol=1e-12
    )
    torch.testing.assert_close(
        ((mu - mu_hat) ** 2).sum(1), b**2 / (a * (1 - ab)) * e2, rtol=1e-6, atol=1e-14
    )
