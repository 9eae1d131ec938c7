"""The facts chapters 0-2 state, checked independently of the notebooks.

The inline forward chain and posterior equal the package's, the numbers behind the schedule text of
chapter 1, the two scores of the notation table, and the correct forms listed in the tour's
"Where the lecture slides differ" box.
"""

from __future__ import annotations

import math

import torch
from sklearn.neighbors import KNeighborsRegressor

from minidiff import (
    GaussianMixture,
    ddim_step,
    ddpm_step,
    gaussian_kl,
    gaussian_log_likelihood,
    linear_schedule,
    make_schedule,
    p_mean_var,
    q_posterior_mean_var,
    q_sample,
    q_step,
    score_from_eps,
    toy_dataset,
)


def test_inline_chain_and_closed_form_equal_the_package_with_the_same_seed() -> None:
    sched = make_schedule("linear", 1000)
    x0 = toy_dataset("moons", 64, generator=torch.Generator().manual_seed(0)).double()
    x_pkg, g = x0, torch.Generator().manual_seed(1)
    for s in range(1, 51):
        x_pkg = q_step(x_pkg, s, sched, generator=g)
    x, g = x0, torch.Generator().manual_seed(1)
    for s in range(1, 51):
        b = sched.betas[s]
        x = (1 - b).sqrt() * x + b.sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype)
    torch.testing.assert_close(x_pkg, x, rtol=0, atol=1e-12)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ab = sched.alpha_bar[50]
    torch.testing.assert_close(
        q_sample(x0, 50, sched, generator=torch.Generator().manual_seed(2)),
        ab.sqrt() * x0 + (1 - ab).sqrt() * eps,
        rtol=0,
        atol=1e-12,
    )


def test_inline_posterior_equals_the_package() -> None:
    sched = linear_schedule(1000)
    gen = torch.Generator().manual_seed(3)
    t = torch.randint(1, 1001, (128,), generator=gen)
    x0, eps = (torch.randn(128, 2, generator=gen, dtype=torch.float64) for _ in range(2))
    x_t = q_sample(x0, t, sched, noise=eps)
    b, a, ab, abp = sched.betas[t], sched.alphas[t], sched.alpha_bar[t], sched.alpha_bar[t - 1]
    mean = (abp.sqrt() * b / (1 - ab))[:, None] * x0 + (a.sqrt() * (1 - abp) / (1 - ab))[
        :, None
    ] * x_t
    mean_pkg, var_pkg = q_posterior_mean_var(x0, x_t, t, sched)
    torch.testing.assert_close(mean_pkg, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(var_pkg[:, 0], (1 - abp) / (1 - ab) * b, rtol=0, atol=1e-15)
    mu_eps = (x_t - (b / (1 - ab).sqrt())[:, None] * eps) / a.sqrt()[:, None]
    torch.testing.assert_close(mu_eps, mean, rtol=0, atol=1e-10)


def test_schedule_numbers_behind_chapter_1_text() -> None:
    T = 1000
    lin, cos = make_schedule("linear", T), make_schedule("cosine", T)
    assert 0.02 < float(lin.alpha_bar[600]) < 0.03  # "alpha_bar at 0.6 T is 0.026"
    share = {k: float((s.snr[1:] < 0.05).double().mean()) for k, s in (("lin", lin), ("cos", cos))}
    assert share["lin"] > 2 * share["cos"]
    half_lin, half_cos = (int((s.alpha_bar[1:] > 0.5).sum()) for s in (lin, cos))  # last t >= 1
    assert (half_lin, half_cos) == (259, 496)  # the values chapter 1 prints
    assert half_cos > 1.5 * half_lin


def test_cosine_schedule_keeps_more_of_x0_at_half_time() -> None:
    x0 = toy_dataset("moons", 2000, generator=torch.Generator().manual_seed(0)).double()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r2 = {}
    for name in ("linear", "cosine"):
        x_t = q_sample(x0, 500, make_schedule(name, 1000), noise=noise)
        knn = KNeighborsRegressor(n_neighbors=50).fit(x_t[:1000].numpy(), x0[:1000].numpy())
        r2[name] = knn.score(x_t[1000:].numpy(), x0[1000:].numpy())
    assert r2["cosine"] > r2["linear"] + 0.3
    assert r2["linear"] < 0.2


def test_conditional_and_marginal_scores() -> None:
    """grad log q(x_t|x0) = -eps/sigma; grad log q(x_t) = -E[eps|x_t]/sigma; the two differ."""
    sched, t = linear_schedule(1000), 300
    ab = float(sched.alpha_bar[t])
    mix = GaussianMixture.default_2d()
    gen = torch.Generator().manual_seed(4)
    x0 = mix.sample(256, gen).double()
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    x_t = q_sample(x0, t, sched, noise=eps).requires_grad_(True)
    var = torch.tensor(1 - ab, dtype=torch.float64)
    log_q = gaussian_log_likelihood(x_t, math.sqrt(ab) * x0, var).sum()
    score_cond = torch.autograd.grad(log_q, x_t)[0]
    x_t = x_t.detach()
    torch.testing.assert_close(score_cond, -eps / math.sqrt(1 - ab), rtol=0, atol=1e-10)
    tt = torch.full((256,), t)
    score_marg = mix.marginal_score(x_t, math.sqrt(ab), math.sqrt(1 - ab))
    tweedie = score_from_eps(mix.eps_model(sched)(x_t, tt), tt, sched)
    torch.testing.assert_close(score_marg, tweedie, rtol=0, atol=1e-8)
    assert float((score_cond - score_marg).norm(dim=1).mean()) > 0.1


def test_correct_forms_of_the_slides_slips() -> None:
    s = linear_schedule(1000)
    gen = torch.Generator().manual_seed(5)
    t = torch.randint(20, 1001, (64,), generator=gen)
    x0, eps, eps_th, z = (torch.randn(64, 2, generator=gen, dtype=torch.float64) for _ in range(4))
    x_t = q_sample(x0, t, s, noise=eps)

    def col(v: torch.Tensor, tt: torch.Tensor = t) -> torch.Tensor:
        return v[tt][:, None]

    a, b, ab = col(s.alphas), col(s.betas), col(s.alpha_bar)
    # strided DDIM: sigma^2 inside the square root
    ab_p = col(s.alpha_bar, t - 10)
    sigma = ((1 - ab_p) / (1 - ab)).sqrt() * (1 - ab / ab_p).sqrt()
    x0_hat = (x_t - (1 - ab).sqrt() * eps_th) / ab.sqrt()
    torch.testing.assert_close(
        ddim_step(x_t, t, t - 10, eps_th, s, eta=1.0, noise=z),
        ab_p.sqrt() * x0_hat + (1 - ab_p - sigma**2).sqrt() * eps_th + sigma * z,
    )
    # Algorithm 2 divides by sqrt(1 - alpha_bar_t)
    torch.testing.assert_close(
        ddpm_step(x_t, t, eps_th, s, noise=z),
        (x_t - (1 - a) / (1 - ab).sqrt() * eps_th) / a.sqrt() + b.sqrt() * z,
    )
    # DSM with weight w and s_theta = -eps_theta / sigma is the eps-loss with weight w / sigma^2
    sig = (1 - ab).sqrt()
    dsm = ((score_from_eps(eps_th, t, s) + eps / sig) ** 2).sum(1)
    torch.testing.assert_close(dsm, ((eps - eps_th) ** 2).sum(1) / sig[:, 0] ** 2)
    # the mean part of L_{t-1} is ||mu_tilde - mu_theta||^2 / (2 sigma_t^2)
    mu_q, _ = q_posterior_mean_var(x0, x_t, t, s)
    mu_p, var_p = p_mean_var(lambda x, tt: eps_th, x_t, t, s)
    kl = gaussian_kl(mu_q, var_p, mu_p, var_p).sum(1)
    torch.testing.assert_close(kl, ((mu_q - mu_p) ** 2).sum(1) / (2 * var_p[:, 0]))
    # cosine: capped at 0.999 only; clipping at 0.02 changes the last ~10 %, alpha_bar_T stays > 0
    cos = make_schedule("cosine", 1000)
    clipped = torch.cumprod(1 - cos.betas[1:].clamp(1e-4, 0.02), 0)
    assert 850 < int((cos.betas > 0.02).nonzero()[0]) < 950
    assert float(clipped[-1]) > 1e-3 > 1e-6 > float(cos.alpha_bar[-1])
