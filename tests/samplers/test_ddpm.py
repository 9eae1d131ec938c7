"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2): the step formula, the last step, the two
variances, reproducibility, argument errors, and the exact Gaussian-mixture denoiser reproducing
its law."""

from __future__ import annotations

import math

import pytest
import torch

import minidiff as md
from minidiff.metrics import sliced_wasserstein
from minidiff.samplers import NonFiniteSampleError, ddpm_sample, ddpm_step, get_sampler, trajectory


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A cheap, nonlinear, time-dependent stand-in for a network."""
    tf = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1))) / 50.0
    return torch.tanh(x * (1.0 + tf)) * 0.8 + 0.1 * torch.sin(3 * tf)


@pytest.fixture(scope="module")
def sched() -> md.NoiseSchedule:
    return md.linear_schedule(50, beta_end=0.2)


def _by_hand(x_t, t, eps, s, variance, z):  # type: ignore[no-untyped-def]
    """Algorithm 2, line 4, written out from the schedule arrays in float64."""
    col = lambda v: v[t].reshape(-1, *([1] * (x_t.dim() - 1)))  # noqa: E731
    beta, ab = col(s.betas), col(s.alpha_bar)
    ab_prev = col(torch.cat([torch.ones(1, dtype=torch.float64), s.alpha_bar[:-1]]))
    var = beta if variance == "beta" else (1 - ab_prev) / (1 - ab) * beta
    mean = (x_t.double() - beta / (1 - ab).sqrt() * eps.double()) / (1 - beta).sqrt()
    not_last = (t > 1).double().reshape(beta.shape)
    return mean + not_last * var.sqrt() * z.double(), mean, var


# ------------------------------------------------------------------ one step


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("shape", [(6, 2), (4, 3, 5, 5)])
def test_step_with_given_noise_equals_the_formula(
    sched: md.NoiseSchedule, variance: str, shape: tuple[int, ...]
) -> None:
    g = torch.Generator().manual_seed(0)
    x_t, eps, z = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.randint(1, sched.T + 1, (shape[0],), generator=g)
    t[0], t[-1] = 1, sched.T
    got = ddpm_step(x_t, t, eps, sched, variance=variance, noise=z)
    want, _, _ = _by_hand(x_t, t, eps, sched, variance, z)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_no_noise_at_t_equal_1(sched: md.NoiseSchedule, variance: str) -> None:
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    a = ddpm_step(x_t, 1, eps, sched, variance=variance, noise=torch.randn(5, 2, generator=g))
    b = ddpm_step(x_t, 1, eps, sched, variance=variance, noise=100 * torch.randn(5, 2, generator=g))
    mean, _ = md.p_mean_var(lambda x, t: eps, x_t, 1, sched, variance)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, mean)
    # ...while at t = 2 the noise does enter
    c = ddpm_step(x_t, 2, eps, sched, variance=variance, noise=torch.ones(5, 2))
    assert not torch.allclose(c, mean)


def test_beta_and_beta_tilde_differ_only_in_sigma(sched: md.NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(2)
    x_t, eps, z = (torch.randn(8, 2, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.arange(2, 10)
    out_b = ddpm_step(x_t, t, eps, sched, variance="beta", noise=z)
    out_bt = ddpm_step(x_t, t, eps, sched, variance="beta_tilde", noise=z)
    zero = ddpm_step(
        x_t, t, eps, sched, variance="beta", noise=torch.zeros_like(z)
    )  # the shared mean
    torch.testing.assert_close((out_b - zero) / sched.betas[t, None].sqrt(), z)
    torch.testing.assert_close((out_bt - zero) / sched.posterior_variance[t, None].sqrt(), z)
    assert bool(
        (sched.posterior_variance[t] < sched.betas[t]).all()
    )  # beta_tilde < beta for t >= 2


def test_step_with_generator_is_reproducible(sched: md.NoiseSchedule) -> None:
    x_t, eps = torch.randn(4, 2), torch.randn(4, 2)
    a = ddpm_step(x_t, 5, eps, sched, generator=torch.Generator().manual_seed(3))
    b = ddpm_step(x_t, 5, eps, sched, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------ the sampler


def test_trajectory_length_and_endpoints(sched: md.NoiseSchedule) -> None:
    traj = trajectory(
        ddpm_sample, toy_eps, sched, (7, 2), generator=torch.Generator().manual_seed(4)
    )
    x0 = traj[-1]
    assert len(traj) == sched.T + 1
    assert all(x.shape == (7, 2) for x in traj)
    torch.testing.assert_close(
        traj[0], torch.randn(7, 2, generator=torch.Generator().manual_seed(4))
    )  # x_T first
    torch.testing.assert_close(traj[-1], x0)
    no_traj = ddpm_sample(toy_eps, sched, (7, 2), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(no_traj, x0, rtol=0, atol=0)


def test_trajectory_follows_ddpm_step_with_the_same_noise(sched: md.NoiseSchedule) -> None:
    # Replaying the generator: x_T first, then one z per step (also at t = 1, where it is unused).
    gen = torch.Generator().manual_seed(5)
    traj = trajectory(ddpm_sample, toy_eps, sched, (3, 2), variance="beta_tilde", generator=gen)
    replay = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, generator=replay)
    for i, t in enumerate(range(sched.T, 0, -1)):
        z = torch.randn(3, 2, generator=replay)
        tt = torch.full((3,), t)
        x = ddpm_step(x, tt, toy_eps(x, tt), sched, variance="beta_tilde", noise=z)
        torch.testing.assert_close(traj[i + 1], x)


def test_same_seed_same_samples_other_seed_other_samples(sched: md.NoiseSchedule) -> None:
    a = ddpm_sample(toy_eps, sched, (16, 2), generator=torch.Generator().manual_seed(6))
    b = ddpm_sample(toy_eps, sched, (16, 2), generator=torch.Generator().manual_seed(6))
    c = ddpm_sample(toy_eps, sched, (16, 2), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_image_shaped_batches(sched: md.NoiseSchedule) -> None:
    out = ddpm_sample(toy_eps, sched, (2, 1, 4, 4), generator=torch.Generator().manual_seed(8))
    assert (
        out.shape == (2, 1, 4, 4) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    )


def test_registry() -> None:
    assert "ddpm" in md.available_samplers()
    assert get_sampler("ddpm") is ddpm_sample
    with pytest.raises(ValueError, match="name must be one of"):
        get_sampler("no-such-sampler")


# ------------------------------------------------------------------ the exact mixture denoiser


def test_exact_gmm_denoiser_reproduces_the_mixture() -> None:
    """With the exact E[eps | x_t], only the discretisation and x_T ~ N(0, I) separate DDPM from
    the data.

    T = 200 with betas scaled by 1000/T (alpha_bar_T ~ e^-10). Tolerances: moments within 5 Monte
    Carlo
    standard errors; the sliced W2 to fresh data within 1.5x the data's own floor (two independent
    data samples of the same size), whose spread over 4 draws is about 15%.
    """
    n = 2000
    gmm = md.GaussianMixture.eight_gaussians()
    sched = md.linear_schedule(200, beta_start=5e-4, beta_end=0.1)
    assert float(sched.alpha_bar[-1]) < 1e-4
    gen = torch.Generator().manual_seed(9)
    x = ddpm_sample(gmm.eps_model(sched), sched, (n, 2), generator=gen)
    data = gmm.sample(n, gen)

    # moments: the mixture has mean 0 and covariance (r^2 / 2 + s^2) I
    var = 2.0**2 / 2 + 0.15**2
    se_mean = math.sqrt(var / n)
    assert x.mean(0).abs().max() < 5 * se_mean
    se_var = float(((x**2) - var).std(0).max()) / math.sqrt(n)
    assert (x.var(0) - var).abs().max() < 5 * se_var
    # mode weights: each of the 8 modes gets 1/8 of the points; nearest-mean assignment
    k = torch.cdist(x.double(), gmm.means).argmin(1)
    frac = torch.bincount(k, minlength=8).double() / n
    assert (frac - 1 / 8).abs().max() < 5 * math.sqrt((1 / 8) * (7 / 8) / n)
    # samples land on the modes: mean distance to the nearest mean as in the data
    d_model = torch.cdist(x.double(), gmm.means).min(1).values.mean()
    d_data = torch.cdist(data.double(), gmm.means).min(1).values.mean()
    assert abs(float(d_model - d_data)) < 0.1 * float(d_data)

    floors = [
        sliced_wasserstein(gmm.sample(n, gen), gmm.sample(n, gen), generator=gen) for _ in range(4)
    ]
    sw = sliced_wasserstein(x, data, generator=gen)
    assert sw < 1.5 * sum(floors) / len(floors), (sw, floors)


def test_gmm_baseline_is_far_from_the_floor() -> None:
    # The sliced-W2 comparison above can fail: N(0, I) is many floors away from the mixture.
    gmm = md.GaussianMixture.eight_gaussians()
    gen = torch.Generator().manual_seed(10)
    floor = sliced_wasserstein(gmm.sample(2000, gen), gmm.sample(2000, gen), generator=gen)
    base = sliced_wasserstein(
        torch.randn(2000, 2, generator=gen), gmm.sample(2000, gen), generator=gen
    )
    assert base > 5 * floor


# ------------------------------------------------------------------ errors


def test_bad_variance_name(sched: md.NoiseSchedule) -> None:
    with pytest.raises(ValueError, match="variance"):
        ddpm_sample(toy_eps, sched, (2, 2), variance="sigma")
    with pytest.raises(ValueError, match="variance"):
        ddpm_step(torch.zeros(2, 2), 3, torch.zeros(2, 2), sched, variance="learned")


@pytest.mark.parametrize("shape", [(), (0, 2), (2.5, 2), "2,2", (True, 2)])
def test_bad_shape(sched: md.NoiseSchedule, shape: object) -> None:
    with pytest.raises((TypeError, ValueError), match="shape"):
        ddpm_sample(toy_eps, sched, shape)  # type: ignore[arg-type]


def test_bad_schedule() -> None:
    with pytest.raises(TypeError, match="schedule"):
        ddpm_sample(toy_eps, "linear", (2, 2))  # type: ignore[arg-type]


def test_model_returning_wrong_shape(sched: md.NoiseSchedule) -> None:
    with pytest.raises(ValueError, match=r"eps_model must return a tensor of shape \(4, 2\)"):
        ddpm_sample(lambda x, t: x[:, :1], sched, (4, 2))
    with pytest.raises(TypeError, match="eps_model must return a torch.Tensor"):
        ddpm_sample(lambda x, t: x.numpy(), sched, (4, 2))


def test_model_returning_nan_names_the_step(sched: md.NoiseSchedule) -> None:
    def bad(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.where(t[:, None] <= 17, torch.full_like(x, math.nan), toy_eps(x, t))

    with pytest.raises(NonFiniteSampleError, match=r"t=17\b"):
        ddpm_sample(bad, sched, (3, 2), generator=torch.Generator().manual_seed(0))
    assert issubclass(NonFiniteSampleError, ValueError)


def test_step_argument_checks(sched: md.NoiseSchedule) -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="t must be an integer"):
        ddpm_step(x, torch.tensor([1.0, 2.0, 3.0]), x, sched)
    with pytest.raises(ValueError, match="t must have shape"):
        ddpm_step(x, torch.tensor([1, 2]), x, sched)
    with pytest.raises(ValueError, match=r"t must lie in 1\.\.50"):
        ddpm_step(x, torch.tensor([0, 1, 2]), x, sched)
    with pytest.raises(ValueError, match="eps must have the same shape as x_t"):
        ddpm_step(x, 2, torch.zeros(3, 1), sched)
    with pytest.raises(ValueError, match="noise must have the same shape"):
        ddpm_step(x, 2, x, sched, noise=torch.zeros(2, 2))
    with pytest.raises(TypeError, match="x_t must be a floating-point"):
        ddpm_step(torch.zeros(3, 2, dtype=torch.long), 2, x, sched)
