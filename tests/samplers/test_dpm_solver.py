"""DPM-Solver++ (2M) and Heun in log-SNR: the exponential-integrator solvers of chapter 15."""

from __future__ import annotations

import math

import pytest
import torch

import minidiff as md
from minidiff.samplers import get_sampler, trajectory
from minidiff.samplers.ddim import ddim_sample, ddim_step, ddim_timesteps
from minidiff.samplers.dpm_solver import (
    data_prediction,
    dpm_solver_sample,
    dpm_solver_step,
    half_log_snr,
    heun_log_snr_sample,
    heun_log_snr_step,
    log_snr_timesteps,
    solver_timesteps,
)
from minidiff.sde import VPSDE

SCHED = VPSDE().to_schedule(200)
GMM = md.GaussianMixture.default_2d()
ORACLE = GMM.eps_model(SCHED)


def _x_T(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_log_snr_timesteps_are_even_in_lambda_and_distinct() -> None:
    lam = half_log_snr(SCHED)
    assert math.isinf(float(lam[0])) and bool((lam[2:] < lam[1:-1]).all())
    for steps in (2, 5, 10, 40, 200):
        ts = log_snr_timesteps(SCHED, steps)
        assert ts.shape == (steps,) and int(ts[0]) == SCHED.T and int(ts[-1]) == 1
        assert bool((ts[1:] < ts[:-1]).all())
    ts = log_snr_timesteps(SCHED, 6)
    gaps = lam[ts[1:]] - lam[ts[:-1]]  # one step in lambda each, rounded to integer t
    assert float(gaps.max() - gaps.min()) < 0.35 * float(gaps.mean())
    assert log_snr_timesteps(SCHED, 1).tolist() == [SCHED.T]
    assert log_snr_timesteps(SCHED, 3, t_min=5).tolist()[-1] == 5
    assert torch.equal(solver_timesteps(SCHED, 7, "trailing"), ddim_timesteps(SCHED, 7))


@pytest.mark.parametrize("spacing", ["log_snr", "trailing"])
def test_order_one_is_ddim_on_the_same_timesteps(spacing: str) -> None:
    ts = solver_timesteps(SCHED, 8, spacing)
    a = dpm_solver_sample(ORACLE, SCHED, x_T=_x_T(), timesteps=ts, order=1)
    b = ddim_sample(ORACLE, SCHED, x_T=_x_T(), timesteps=ts)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_step_without_history_is_ddim_and_multistep_matches_the_formula() -> None:
    x = _x_T(16, 1)
    t, s, last = 120, 60, 170
    x0 = data_prediction(x, t, ORACLE(x, torch.full((16,), t)), SCHED)
    eps = ORACLE(x, torch.full((16,), t))
    torch.testing.assert_close(dpm_solver_step(x, t, s, x0, SCHED), ddim_step(x, t, s, eps, SCHED))
    x0_last = x0 + 0.1 * torch.sin(x)
    out = dpm_solver_step(x, t, s, x0, SCHED, x0_last=x0_last, t_last=last)
    # by hand, Lu et al. (2022), Algorithm 2, with lambda = log(alpha / sigma)
    ab = SCHED.alpha_bar
    a, sig = ab.sqrt(), (1 - ab).sqrt()
    lam = (a / sig).log()
    h, h_last = lam[s] - lam[t], lam[t] - lam[last]
    r = h_last / h
    d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_last
    ref = sig[s] / sig[t] * x - a[s] * torch.expm1(-h) * d
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    # into t = 0 the step is order 1 whatever the history: it returns x0
    torch.testing.assert_close(
        dpm_solver_step(x, t, 0, x0, SCHED, x0_last=x0_last, t_last=last), x0
    )


def test_sampler_equals_its_steps_by_hand() -> None:
    ts = log_snr_timesteps(SCHED, 6).tolist()
    x = _x_T(32, 2)
    last: tuple[int, torch.Tensor] | None = None
    for t, s in zip(ts, [*ts[1:], 0], strict=True):
        x0 = data_prediction(x, t, ORACLE(x, torch.full((32,), t)), SCHED)
        kw = {} if last is None else {"t_last": last[0], "x0_last": last[1]}
        x, last = dpm_solver_step(x, t, s, x0, SCHED, **kw), (t, x0)
    torch.testing.assert_close(x, dpm_solver_sample(ORACLE, SCHED, x_T=_x_T(32, 2), steps=6))


def _error(sampler: object, steps: int, reference: torch.Tensor) -> float:
    out = sampler(ORACLE, SCHED, x_T=_x_T(), timesteps=log_snr_timesteps(SCHED, steps))  # type: ignore[operator]
    return float((out - reference).norm(dim=1).mean())


def test_orders_of_convergence_with_the_exact_score() -> None:
    """2M and Heun are second order in h (error / 4 when the steps double), DDIM first order.

    Measured with the exact mixture score against 100-step 2M, between 12 and 24 steps of
    lambda (each doubling quarters a second-order error; a first-order one only halves)."""
    reference = dpm_solver_sample(ORACLE, SCHED, x_T=_x_T(), steps=100)
    ratios = {}
    for name, fn in (("2m", dpm_solver_sample), ("heun", heun_log_snr_sample)):
        ratios[name] = _error(fn, 12, reference) / _error(fn, 24, reference)
    ddim = lambda *a, **k: dpm_solver_sample(*a, order=1, **k)  # noqa: E731
    ratios["ddim"] = _error(ddim, 12, reference) / _error(ddim, 24, reference)
    assert ratios["2m"] > 3.0 and ratios["heun"] > 3.0, ratios
    assert 1.5 < ratios["ddim"] < 2.8, ratios


def test_heun_calls_the_model_twice_per_step_but_not_at_t_zero() -> None:
    calls = []

    def counting(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(int(t[0]))
        return ORACLE(x, t)

    heun_log_snr_sample(counting, SCHED, (8, 2), steps=5, generator=torch.Generator())
    assert len(calls) == 2 * 5 - 1 and 0 not in calls
    calls.clear()
    dpm_solver_sample(counting, SCHED, (8, 2), steps=5, generator=torch.Generator())
    assert len(calls) == 5


def test_heun_step_is_the_trapezoid_in_lambda() -> None:
    x = _x_T(8, 3)
    t, s = 150, 90
    x0 = data_prediction(x, t, ORACLE(x, torch.full((8,), t)), SCHED)
    pred = dpm_solver_step(x, t, s, x0, SCHED)
    x0_next = data_prediction(pred, s, ORACLE(pred, torch.full((8,), s)), SCHED)
    avg = 0.5 * (x0 + x0_next)
    torch.testing.assert_close(
        heun_log_snr_step(x, t, s, x0, x0_next, SCHED), dpm_solver_step(x, t, s, avg, SCHED)
    )


def test_matches_diffusers_dpm_solver_multistep() -> None:
    diffusers = pytest.importorskip("diffusers")
    sched = VPSDE().to_schedule(1000)
    oracle = GMM.eps_model(sched)
    ref_sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        trained_betas=sched.betas[1:].numpy(),
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    for steps in (7, 10):
        ref_sched.set_timesteps(steps)
        x = _x_T(128, 4)
        for tt in ref_sched.timesteps:  # diffusers' timestep k is our t = k + 1
            x = ref_sched.step(oracle(x, torch.full((128,), int(tt) + 1)), tt, x).prev_sample
        ours = dpm_solver_sample(oracle, sched, x_T=_x_T(128, 4), steps=steps, spacing="trailing")
        torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)  # diffusers keeps float32 tables


def test_registry_and_trajectory() -> None:
    assert get_sampler("dpm_solver++") is dpm_solver_sample
    assert get_sampler("heun_log_snr") is heun_log_snr_sample
    traj = trajectory(
        dpm_solver_sample, ORACLE, SCHED, (5, 2), steps=4, generator=torch.Generator()
    )
    x = dpm_solver_sample(ORACLE, SCHED, (5, 2), steps=4, generator=torch.Generator())
    assert len(traj) == 5 and torch.equal(traj[-1], x) and x.dtype == torch.float32


def test_bad_inputs_name_the_argument() -> None:
    x = _x_T(4)
    x0 = x.clone()
    with pytest.raises(ValueError, match="order"):
        dpm_solver_sample(ORACLE, SCHED, (4, 2), steps=3, order=3)
    with pytest.raises(ValueError, match="spacing"):
        dpm_solver_sample(ORACLE, SCHED, (4, 2), steps=3, spacing="uniform")
    with pytest.raises(TypeError, match="eps_model"):
        heun_log_snr_sample("model", SCHED, (4, 2), steps=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_last"):
        dpm_solver_step(x, 50, 20, x0, SCHED, x0_last=x0, t_last=40)
    with pytest.raises(TypeError, match="x0_last and t_last"):
        dpm_solver_step(x, 50, 20, x0, SCHED, x0_last=x0)
    with pytest.raises(ValueError, match="x0"):
        dpm_solver_step(x, 50, 20, x0[:, :1], SCHED)
    with pytest.raises(ValueError, match="t_prev"):
        heun_log_snr_step(x, 50, 0, x0, x0, SCHED)
    with pytest.raises(ValueError, match="t_prev"):
        dpm_solver_step(x, 50, 60, x0, SCHED)
    with pytest.raises(ValueError, match="steps"):
        log_snr_timesteps(SCHED, 201)
    with pytest.raises(ValueError, match="x_t"):
        dpm_solver_step(torch.full((4, 2), math.nan, dtype=torch.float64), 50, 20, x0, SCHED)
    with pytest.raises(ValueError, match="timesteps"):
        dpm_solver_sample(ORACLE, SCHED, (4, 2), timesteps=[10, 20])


def test_spacing_with_explicit_timesteps_is_refused() -> None:
    for sample in (dpm_solver_sample, heun_log_snr_sample):
        with pytest.raises(ValueError, match="spacing"):
            sample(ORACLE, SCHED, x_T=_x_T(4), timesteps=[200, 50, 10], spacing="trailing")
