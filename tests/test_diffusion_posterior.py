"""The Gaussian posterior q(x_{t-1} | x_t, x_0) of chapter 2, checked three independent ways."""

from __future__ import annotations

import pytest
import torch

import minidiff as md

SCHED = md.linear_schedule(30, beta_start=1e-3, beta_end=0.2)


def _conditioned(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, s: md.NoiseSchedule):
    """Condition the 2x2 joint of (x_{t-1}, x_t) | x_0 per dimension (textbook Gaussian
    formulas)."""
    ab_prev = s.alpha_bar[t - 1][:, None]
    a = s.alphas[t][:, None]
    b = s.betas[t][:, None]
    m1 = ab_prev.sqrt() * x0  # E[x_{t-1} | x_0]
    v11 = 1 - ab_prev  # Var[x_{t-1} | x_0]
    m2 = a.sqrt() * m1  # x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps
    v12 = a.sqrt() * v11
    v22 = a * v11 + b
    return m1 + v12 / v22 * (x_t - m2), v11 - v12**2 / v22


def test_posterior_equals_exact_gaussian_conditioning() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(2, SCHED.T + 1)
    x0 = torch.randn(t.numel(), 3, generator=g, dtype=torch.float64)
    x_t = torch.randn(t.numel(), 3, generator=g, dtype=torch.float64) * 2
    mean, var = md.q_posterior_mean_var(x0, x_t, t, SCHED)
    ref_mean, ref_var = _conditioned(x0, x_t, t, SCHED)
    assert var.shape == (t.numel(), 1)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, ref_var, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var[:, 0], SCHED.posterior_variance[2:])


@pytest.mark.parametrize("t", [2, 7, 30])
def test_posterior_matches_monte_carlo_regression(t: int) -> None:
    """Simulate x_0 -> x_{t-1} -> x_t and regress x_{t-1} on x_t: slope, intercept and residual
    variance."""
    g = torch.Generator().manual_seed(t)
    n, x0_val = 200_000, 0.7
    x0 = torch.full((n, 1), x0_val, dtype=torch.float64)
    x_prev = x0 if t == 1 else md.q_sample(x0, t - 1, SCHED, generator=g)
    x_t = md.q_step(x_prev, t, SCHED, generator=g)
    X = torch.cat([torch.ones_like(x_t), x_t], dim=1)
    coef = torch.linalg.lstsq(X, x_prev).solution[:, 0]
    resid = x_prev[:, 0] - X @ coef
    rvar = resid.var()
    # Theory: mu_tilde = c0 x0 + ct x_t, var = beta_tilde.
    c0, ct = SCHED.posterior_mean_coef_x0[t], SCHED.posterior_mean_coef_xt[t]
    bt = SCHED.posterior_variance[t]
    se_slope = (rvar / (n * x_t.var())).sqrt()
    se_int = (rvar / n * (1 + x_t.mean() ** 2 / x_t.var())).sqrt()
    assert abs(coef[1] - ct) < 5 * se_slope
    assert abs(coef[0] - c0 * x0_val) < 5 * se_int
    assert abs(rvar - bt) < 5 * bt * (2 / n) ** 0.5


def test_mu_tilde_via_eps_equals_p_mean_var_with_true_noise() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 5, 11, 29, 30])
    x_t = md.q_sample(x0, t, SCHED, noise=eps)
    mean_q, var_q = md.q_posterior_mean_var(x0, x_t, t, SCHED)
    mean_p, _ = md.p_mean_var(lambda x, tt: eps, x_t, t, SCHED)
    assert var_q.shape == (6, 1, 1, 1)
    torch.testing.assert_close(mean_p, mean_q, rtol=1e-9, atol=1e-10)
    # Going the other way: the x0 recovered from the true eps is x0.
    torch.testing.assert_close(md.predict_x0_from_eps(x_t, t, eps, SCHED), x0, rtol=1e-9, atol=1e-9)


def test_beta_tilde_1_is_zero_and_posterior_is_x0() -> None:
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 2, generator=g, dtype=torch.float64)
    x_1 = md.q_sample(x0, 1, SCHED, generator=g)
    mean, var = md.q_posterior_mean_var(x0, x_1, 1, SCHED)
    assert float(SCHED.posterior_variance[1]) == 0.0
    assert torch.all(var == 0)
    torch.testing.assert_close(mean, x0)
    # A density at t = 1 needs a positive variance: beta_1 replaces beta_tilde_1.
    v = md.diffusion.model_variance(
        torch.tensor([1, 2]), SCHED, "beta_tilde", 2, like=x0, for_density=True
    )
    assert float(v[0, 0]) == pytest.approx(float(SCHED.betas[1]))
    assert float(v[1, 0]) == pytest.approx(float(SCHED.posterior_variance[2]))


def test_beta_tilde_below_beta() -> None:
    assert torch.all(SCHED.posterior_variance[1:] < SCHED.betas[1:])
    assert torch.all(SCHED.posterior_variance[2:] > 0)


def test_posterior_error_paths() -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="x0"):
        md.q_posterior_mean_var(torch.zeros(3, 3), x, 2, SCHED)
    with pytest.raises(TypeError, match="t"):
        md.q_posterior_mean_var(x, x, torch.tensor([2.0, 2.0, 2.0]), SCHED)
    with pytest.raises(ValueError, match="t must lie"):
        md.q_posterior_mean_var(x, x, SCHED.T + 1, SCHED)
    with pytest.raises(ValueError, match="t must lie"):
        md.q_posterior_mean_var(x, x, 0, SCHED)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        md.q_posterior_mean_var(x, x, torch.tensor([2, 3]), SCHED)
    with pytest.raises(TypeError, match="schedule"):
        md.q_posterior_mean_var(x, x, 2, "linear")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="x_t"):
        md.q_posterior_mean_var(x, torch.zeros(3, 2, dtype=torch.long), 2, SCHED)


def test_for_density_gives_beta_1_at_t_1_and_a_finite_log_likelihood() -> None:
    """beta_tilde_1 = 0 is no density; for_density=True puts beta_1 there, changes no other t,
    and p_mean_var's docstring says so."""
    from minidiff.losses import gaussian_log_likelihood

    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = lambda x_, t_: 0.1 * x_  # noqa: E731
    _, var = md.p_mean_var(model, x, 1, SCHED, "beta_tilde")
    assert float(var.max()) == 0.0
    mean, var = md.p_mean_var(model, x, 1, SCHED, "beta_tilde", for_density=True)
    torch.testing.assert_close(var, torch.full_like(var, float(SCHED.betas[1])))
    assert bool(torch.isfinite(gaussian_log_likelihood(x, mean, var)).all())
    t = torch.tensor([2, 3, SCHED.T])
    plain = md.p_mean_var(model, x, t, SCHED, "beta_tilde")
    dens = md.p_mean_var(model, x, t, SCHED, "beta_tilde", for_density=True)
    assert torch.equal(plain[1], dens[1]) and torch.equal(plain[0], dens[0])
    assert "for_density" in (md.p_mean_var.__doc__ or "")
