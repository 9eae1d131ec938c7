"""DDIM (Song et al. 2021): eta = 1 is DDPM with beta_tilde, eta = 0 is deterministic, inversion
round-trips.
"""

from __future__ import annotations

import pytest
import torch

import minidiff as md
import minidiff.samplers.ddim  # noqa: F401  (registers "ddim")
from minidiff._validation import count_host_reads
from minidiff.samplers import NonFiniteSampleError, get_sampler, trajectory
from minidiff.samplers.ddim import (
    ddim_invert,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    respace_eps_model,
    respace_schedule,
)


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A cheap, nonlinear, time-dependent stand-in for a network (so the tests stay fast)."""
    tf = t.to(x.dtype)[:, None] / 100.0
    return torch.tanh(x * (1.0 + tf)) * 0.8 + 0.1 * torch.sin(3 * tf)


@pytest.fixture(scope="module")
def sched() -> md.NoiseSchedule:
    return md.linear_schedule(100, beta_end=0.2)


# ------------------------------------------------------- eta = 1 is ancestral DDPM with beta_tilde


def test_sigma_eta1_full_steps_is_beta_tilde(sched: md.NoiseSchedule) -> None:
    t = torch.arange(1, sched.T + 1)
    sig = ddim_sigma(t, t - 1, sched, 1.0)
    torch.testing.assert_close(sig**2, sched.posterior_variance[1:], rtol=1e-10, atol=1e-14)
    assert float(sig[0]) == 0.0  # t = 1 -> 0 adds no noise, like DDPM's last step
    half = ddim_sigma(t, t - 1, sched, 0.5)
    torch.testing.assert_close(half, 0.5 * sig)


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_eta1_full_steps_equals_ddpm_beta_tilde_same_seed(
    schedule_name: str, dtype: torch.dtype, tol: float
) -> None:
    sched = md.make_schedule(schedule_name, 100)
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    traj_a = trajectory(
        md.ddpm_sample,
        toy_eps,
        sched,
        (64, 2),
        variance="beta_tilde",
        generator=gen_a,
        dtype=dtype,
    )
    traj_b = trajectory(
        ddim_sample,
        toy_eps,
        sched,
        (64, 2),
        steps=sched.T,
        eta=1.0,
        generator=gen_b,
        dtype=dtype,
    )
    a, b = traj_a[-1], traj_b[-1]
    assert len(traj_a) == len(traj_b) == sched.T + 1
    for xa, xb in zip(traj_a, traj_b, strict=True):
        torch.testing.assert_close(xa, xb, rtol=tol, atol=tol)
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    # both consumed the same random numbers: the generators are in the same state afterwards
    assert torch.equal(gen_a.get_state(), gen_b.get_state())
    # and the samples are not trivially equal to the deterministic ones
    c = ddim_sample(
        toy_eps,
        sched,
        (64, 2),
        steps=sched.T,
        eta=0.0,
        generator=torch.Generator().manual_seed(7),
        dtype=dtype,
    )
    assert (c - b).abs().max() > 0.1


def test_eta1_with_exact_gmm_oracle_equals_ddpm() -> None:
    sched = md.linear_schedule(100, beta_end=0.2)
    model = md.GaussianMixture.default_2d().eps_model(sched)
    a = md.ddpm_sample(
        model,
        sched,
        (128, 2),
        variance="beta_tilde",
        generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )
    b = ddim_sample(
        model,
        sched,
        (128, 2),
        steps=sched.T,
        eta=1.0,
        generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_step_eta1_matches_ddpm_step_with_explicit_noise(sched: md.NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(32, 2, generator=g, dtype=torch.float64)
    z = torch.randn(32, 2, generator=g, dtype=torch.float64)
    t = torch.randint(1, sched.T + 1, (32,), generator=g)
    want = md.ddpm_step(x, t, eps, sched, variance="beta_tilde", noise=z)
    got = ddim_step(x, t, t - 1, eps, sched, eta=1.0, noise=z)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_eta1_strided_equals_ddpm_on_respaced_schedule(sched: md.NoiseSchedule) -> None:
    ts = ddim_timesteps(sched, 10)
    resp = respace_schedule(sched, ts)
    assert resp.T == 10
    torch.testing.assert_close(resp.alpha_bar[1:], sched.alpha_bar[ts.flip(0)])
    a = md.ddpm_sample(
        respace_eps_model(toy_eps, ts),
        resp,
        (50, 2),
        variance="beta_tilde",
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    b = ddim_sample(
        toy_eps,
        sched,
        (50, 2),
        steps=10,
        eta=1.0,
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_step_matches_eq12_by_hand(sched: md.NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(5)
    x, eps, z = (torch.randn(8, 3, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([100, 90, 50, 50, 20, 7, 3, 1])
    tp = torch.tensor([80, 0, 49, 10, 19, 2, 0, 0])
    eta = 0.7
    ab = sched.alpha_bar
    a_t, a_p = ab[t][:, None], ab[tp][:, None]
    sig = eta * ((1 - a_p) / (1 - a_t)).sqrt() * (1 - a_t / a_p).sqrt()
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    want = a_p.sqrt() * x0 + (1 - a_p - sig**2).sqrt() * eps + sig * z
    torch.testing.assert_close(ddim_step(x, t, tp, eps, sched, eta=eta, noise=z), want)
    # the last step returns the predicted x_0 whatever eta is
    last = ddim_step(x, 5, 0, eps, sched, eta=1.0, noise=z)
    torch.testing.assert_close(last, (x - (1 - ab[5]).sqrt() * eps) / ab[5].sqrt())


# ------------------------------------------------------------------ eta = 0 is deterministic


def test_eta0_deterministic_and_draws_only_x_T(sched: md.NoiseSchedule) -> None:
    g1 = torch.Generator().manual_seed(11)
    a = ddim_sample(toy_eps, sched, (40, 2), steps=17, eta=0.0, generator=g1)
    b = ddim_sample(
        toy_eps, sched, (40, 2), steps=17, eta=0.0, generator=torch.Generator().manual_seed(11)
    )
    assert torch.equal(a, b)
    g2 = torch.Generator().manual_seed(11)
    x = torch.randn(40, 2, generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())  # nothing drawn after x_T
    # a hand loop of ddim_step with no generator at all reproduces it
    ts = ddim_timesteps(sched, 17).tolist()
    for t, tp in zip(ts, ts[1:] + [0], strict=True):
        tt = torch.full((40,), t)
        x = ddim_step(x, tt, tp, toy_eps(x, tt), sched)
    torch.testing.assert_close(x, a)
    c = ddim_sample(
        toy_eps, sched, (40, 2), steps=17, eta=0.0, generator=torch.Generator().manual_seed(12)
    )
    assert not torch.allclose(a, c)


# ------------------------------------------------------------------ strided timesteps


@pytest.mark.parametrize("T", [1, 2, 7, 100, 1000])
def test_ddim_timesteps_endpoints_decreasing_count(T: int) -> None:
    sched = md.linear_schedule(T) if T > 1 else md.NoiseSchedule([0.5])
    for steps in sorted({1, 2, 3, T // 3, T // 2, T - 1, T} - {0}):
        if steps > T:
            continue
        ts = ddim_timesteps(sched, steps)
        assert ts.dtype == torch.long and ts.shape == (steps,)
        assert int(ts[0]) == T
        assert int(ts[-1]) == round(
            T / steps
        )  # "trailing": the last jump tau_1 -> 0 is one stride long
        if steps > 1:
            gaps = -(ts[1:] - ts[:-1])
            assert bool((gaps >= 1).all())
            assert int(gaps.max()) - int(gaps.min()) <= 1  # evenly strided up to rounding
    assert torch.equal(ddim_timesteps(sched, T), torch.arange(T, 0, -1))


def test_trajectory_length_and_custom_timesteps(sched: md.NoiseSchedule) -> None:
    traj = trajectory(
        ddim_sample, toy_eps, sched, (5, 2), steps=4, generator=torch.Generator().manual_seed(0)
    )
    x = ddim_sample(toy_eps, sched, (5, 2), steps=4, generator=torch.Generator().manual_seed(0))
    assert len(traj) == 5 and torch.equal(traj[-1], x)
    by_name = trajectory("ddim", toy_eps, sched, (5, 2), steps=4, generator=torch.Generator())
    assert len(by_name) == 5
    y = ddim_sample(
        toy_eps,
        sched,
        (5, 2),
        timesteps=ddim_timesteps(sched, 4).tolist(),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(x, y)


def test_registry() -> None:
    assert get_sampler("ddim") is ddim_sample
    assert "ddim" in md.available_samplers()


# ------------------------------------------------------------------ inversion


def test_inversion_round_trip_exact_oracle() -> None:
    """Encode GMM samples with ddim_invert, decode with eta=0: the mean error shrinks with steps.

    Stated bound (linear schedule, T = 1000, exact oracle, float64): mean |x0_rec - x0| < 0.03 at
    200 steps (measured ~0.013) and the error at 200 steps is below half the error at 50 steps.
    """
    sched = md.linear_schedule(1000)
    gmm = md.GaussianMixture.default_2d()
    model = gmm.eps_model(sched)
    x0 = gmm.sample(200, torch.Generator().manual_seed(0)).double()
    errs = {}
    for steps in (50, 200):
        traj = trajectory(ddim_invert, model, sched, x0, steps=steps)
        xT = ddim_invert(model, sched, x0, steps=steps)
        assert len(traj) == steps + 1 and torch.equal(traj[0], x0) and torch.equal(traj[-1], xT)
        assert abs(float(xT.std()) - 1.0) < 0.15  # the latent looks like N(0, I)
        ts = ddim_timesteps(sched, steps).tolist()
        x = xT
        for t, tp in zip(ts, ts[1:] + [0], strict=True):
            tt = torch.full((x.shape[0],), t)
            x = ddim_step(x, tt, tp, model(x, tt), sched)
        errs[steps] = float((x - x0).norm(dim=1).mean())
    assert errs[200] < 0.03, errs
    assert errs[200] < 0.5 * errs[50], errs


# ------------------------------------------------------------------ errors


def test_bad_arguments(sched: md.NoiseSchedule) -> None:
    g = torch.Generator().manual_seed(0)
    for steps, err in (
        (0, ValueError),
        (-3, ValueError),
        (sched.T + 1, ValueError),
        (2.5, TypeError),
        (True, TypeError),
    ):
        with pytest.raises(err, match="steps"):
            ddim_sample(toy_eps, sched, (4, 2), steps=steps, generator=g)
    with pytest.raises(TypeError, match="steps"):
        ddim_sample(toy_eps, sched, (4, 2), generator=g)
    with pytest.raises(ValueError, match="disagrees"):
        ddim_sample(toy_eps, sched, (4, 2), steps=3, timesteps=[50, 1])
    for eta, err in ((-0.1, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(err, match="eta"):
            ddim_sample(toy_eps, sched, (4, 2), steps=5, eta=eta, generator=g)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_sample(toy_eps, sched, (4, 2), timesteps=[10, 50, 1])
    with pytest.raises(ValueError, match="1..100"):
        ddim_sample(toy_eps, sched, (4, 2), timesteps=[101, 1])
    with pytest.raises(TypeError, match="timesteps"):
        ddim_sample(toy_eps, sched, (4, 2), timesteps=[50.0, 1.0])
    with pytest.raises(TypeError, match="schedule"):
        ddim_sample(toy_eps, "linear", (4, 2), steps=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shape"):
        ddim_sample(toy_eps, sched, 4, steps=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        ddim_sample(lambda x, t: x[:, :1], sched, (4, 2), steps=3)
    with pytest.raises(ValueError, match="shape"):
        ddim_invert(lambda x, t: x[:1], sched, torch.zeros(4, 2), steps=3)


def test_non_finite_names_the_step(sched: md.NoiseSchedule) -> None:
    def blows_up(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float("nan")) if int(t[0]) < 40 else torch.zeros_like(x)

    # timesteps 100, 80, 60, 40, 20: the model first returns NaN at t = 20, the fifth step
    with pytest.raises(NonFiniteSampleError, match=r"step 5 of 5 \(t=20 -> 0\)"):
        ddim_sample(blows_up, sched, (4, 2), steps=5, generator=torch.Generator().manual_seed(0))
    with pytest.raises(NonFiniteSampleError, match=r"step 1 of 5"):
        ddim_invert(blows_up, sched, torch.zeros(4, 2), steps=5)
    with pytest.raises(ValueError, match="x0"):
        ddim_invert(toy_eps, sched, torch.tensor([[0.0, float("inf")]]), steps=5)


def test_step_argument_checks(sched: md.NoiseSchedule) -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="t_prev must be smaller"):
        ddim_step(x, 10, 10, x, sched)
    with pytest.raises(ValueError, match="t_prev must lie"):
        ddim_step(x, 10, -1, x, sched)
    with pytest.raises(TypeError, match="t_prev"):
        ddim_step(x, 10, torch.zeros(3), x, sched)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(x, 10, torch.zeros(2, dtype=torch.long), x, sched)
    with pytest.raises(TypeError, match="t must be an integer"):
        ddim_step(x, torch.full((3,), 10.0), 0, x, sched)
    with pytest.raises(ValueError, match="eps"):
        ddim_step(x, 10, 5, torch.zeros(3, 1), sched)
    with pytest.raises(ValueError, match="too large"):
        ddim_step(x, 50, 49, x, sched, eta=5.0)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x, 10, 5, x, sched, eta=1.0, noise=torch.zeros(3, 1))


def test_respacing_checks_its_timesteps_alike_in_both_halves() -> None:
    import minidiff as md
    from minidiff.samplers.ddim import respace_eps_model, respace_schedule

    f = lambda x, t: x  # noqa: E731
    with pytest.raises(ValueError, match="must not repeat"):
        respace_eps_model(f, [1, 2, 2])
    with pytest.raises(ValueError, match=r"timesteps must lie in 1..50"):
        respace_eps_model(f, [10, 60], md.linear_schedule(50))
    with pytest.raises(ValueError, match="a respaced beta rounds to 1"):
        respace_schedule(md.linear_schedule(50, 0.5, 0.99), [50])


def test_step_unchecked_is_the_bare_kernel(sched: md.NoiseSchedule) -> None:
    """The checks of ``t_prev`` and of ``eta``'s fit run in ``@checked``, before the body: the
    body alone (``ddim_step.unchecked``) reads nothing back and raises nothing, and it is the
    computation the distillation and inversion loops take (also the step up, ``t_prev > t``)."""
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(4, 2, generator=g) for _ in range(3))
    t, tp = torch.full((4,), 40), torch.tensor([39, 20, 10, 0])
    with count_host_reads() as reads:
        out = ddim_step.unchecked(x, t, tp, eps, sched, eta=0.5, noise=z)
        up = ddim_step.unchecked(x, tp, t, eps, sched)  # the inversion's step up, tp -> t
    assert reads[0] == 0
    assert torch.equal(out, ddim_step(x, t, tp, eps, sched, eta=0.5, noise=z))
    ab = sched.alpha_bar.float()  # the eta = 0 step up: sqrt(ab_t) x0_hat + sqrt(1 - ab_t) eps
    x0_hat = (x - (1 - ab[tp]).sqrt()[:, None] * eps) / ab[tp].sqrt()[:, None]
    assert torch.allclose(up, ab[t].sqrt()[:, None] * x0_hat + (1 - ab[t]).sqrt()[:, None] * eps)
    with count_host_reads() as reads:
        ddim_step(x, t, tp, eps, sched, eta=0.5, noise=z)
    assert reads[0] <= 6  # as many as when the body checked t_prev and eta (one fewer at eta=0)
    with pytest.raises(ValueError, match="t_prev must be smaller"):
        ddim_step(x, t, tp + 1, eps, sched)
