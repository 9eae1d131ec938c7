"""The facts that the model answers to the exercises' think questions state, checked numerically."""

from __future__ import annotations

import math

import torch

import minidiff
from minidiff.samplers.langevin import langevin_step


def test_ex01_linear_schedule_ends_near_4e_5_and_sqrt_point_1() -> None:
    ab_T = float(minidiff.linear_schedule(1000).alpha_bar[-1])
    assert 3.5e-5 < ab_T < 4.5e-5
    assert abs(math.sqrt(0.1) - 0.32) < 0.005


def test_ex01_same_snr_same_information() -> None:
    # x_t / sqrt(ab) = x0 + SNR^{-1/2} eps, whatever the schedule
    lin, cos = minidiff.linear_schedule(1000), minidiff.cosine_schedule(1000)
    snr_lin, snr_cos = lin.alpha_bar / (1 - lin.alpha_bar), cos.alpha_bar / (1 - cos.alpha_bar)
    t1 = 300
    t2 = int((snr_cos[1:] - snr_lin[t1]).abs().argmin()) + 1
    x0, eps = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    a = lin.alpha_bar[t1].sqrt() * x0 + (1 - lin.alpha_bar[t1]).sqrt() * eps
    b = cos.alpha_bar[t2].sqrt() * x0 + (1 - cos.alpha_bar[t2]).sqrt() * eps
    rel = float((snr_cos[t2] - snr_lin[t1]).abs() / snr_lin[t1])
    err = (a / lin.alpha_bar[t1].sqrt() - b / cos.alpha_bar[t2].sqrt()).abs().max()
    assert rel < 0.02 and err < 0.02 * eps.abs().max() / float(snr_lin[t1].sqrt())


def test_ex02_posterior_is_narrower_and_a_point_mass_at_t_1() -> None:
    for s in (minidiff.linear_schedule(1000), minidiff.cosine_schedule(100)):
        bt, b = s.posterior_variance[1:], s.betas[1:]
        assert float(bt[0]) == 0.0 and bool((bt <= b).all()) and bool((bt[1:] < b[1:]).all())
        assert math.isclose(float(s.betas[1] / (1 - s.alpha_bar[1])), 1.0, rel_tol=1e-12)


def test_ex03_lambda_t_is_largest_at_small_t() -> None:
    s = minidiff.linear_schedule(1000)
    b, ab = s.betas[1:], s.alpha_bar[1:]
    lam = b / (2 * (1 - b) * (1 - ab))
    assert int(lam.argmax()) == 0 and float(lam[0]) > 10 * float(lam[100:].max())


def test_ex05_langevin_on_a_gaussian_samples_a_wider_gaussian() -> None:
    s2, eps, n = 1.0, 0.8, 200_000
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, dtype=torch.float64)
    for _ in range(60):
        x = langevin_step(x, -x / s2, eps, torch.randn(n, generator=g, dtype=torch.float64))
    v = s2 / (1 - eps / (4 * s2))
    assert abs(float(x.var()) - v) < 5 * v * math.sqrt(2 / n) and v > 1.2 * s2
    y = torch.ones(4, dtype=torch.float64)
    for _ in range(50):  # eps = 4 s^2 + a little: the chain diverges
        y = langevin_step(y, -y / s2, 4.2 * s2, torch.zeros(4, dtype=torch.float64))
    assert float(y.abs().min()) > 1e1


def test_ex05_plain_langevin_keeps_the_split_it_started_with() -> None:
    gmm = minidiff.GaussianMixture(
        torch.tensor([[-2.5, 0.0], [2.5, 0.0]]), stds=0.5, weights=torch.tensor([0.8, 0.2])
    )
    g = torch.Generator().manual_seed(0)
    n = 2000
    x = torch.randn(n, 2, generator=g)
    for _ in range(300):
        x = langevin_step(x, gmm.marginal_score(x, 1.0, 0.0), 0.01, torch.randn(n, 2, generator=g))
    left = float((x[:, 0] < 0).float().mean())
    assert abs(left - 0.5) < 0.06 and abs(left - 0.8) > 0.2
