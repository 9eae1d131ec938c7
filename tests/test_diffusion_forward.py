"""The forward process: closed form q(x_t|x_0) vs the simulated chain, and the conversions."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import (
    cosine_schedule,
    eps_from_score,
    eps_from_x0,
    linear_schedule,
    predict_x0_from_eps,
    q_sample,
    q_step,
    score_from_eps,
    toy_dataset,
)


@pytest.mark.parametrize(
    "schedule", [linear_schedule(60, 1e-3, 0.08), cosine_schedule(60)], ids=["linear", "cosine"]
)
def test_closed_form_matches_the_simulated_chain(schedule) -> None:  # type: ignore[no-untyped-def]
    """q_step t times from fixed x_0 vs the moments of q(x_t|x_0) (Ho et al. 2020, Eq. 4)."""
    g = torch.Generator().manual_seed(0)
    base = (
        toy_dataset("moons", 6, generator=g).double() * 2.0
    )  # distinct starting points, away from 0
    reps = 2500
    x0 = base.repeat_interleave(reps, dim=0)  # (6 * reps, 2)
    checkpoints = {3, 20, 60}
    x = x0.clone()
    for t in range(1, schedule.T + 1):
        x = q_step(x, t, schedule, generator=g)
        if t not in checkpoints:
            continue
        ab = float(schedule.alpha_bar[t])
        closed = q_sample(x0, t, schedule, generator=g)
        for sample in (x, closed):
            per_point = sample.reshape(6, reps, 2)
            mean_err = (per_point.mean(1) - math.sqrt(ab) * base).abs().max()
            var_err = (per_point.var(1) - (1 - ab)).abs().max()
            se_mean = math.sqrt((1 - ab) / reps)
            se_var = (1 - ab) * math.sqrt(2 / (reps - 1))
            assert mean_err < 5 * se_mean, (t, float(mean_err), se_mean)
            assert var_err < 5 * se_var, (t, float(var_err), se_var)
            # the noise is isotropic: no correlation between the two coordinates
            c = per_point - per_point.mean(1, keepdim=True)
            corr = (c[..., 0] * c[..., 1]).mean(1) / (1 - ab)
            assert corr.abs().max() < 5 / math.sqrt(reps)


def test_q_sample_with_given_noise_is_the_formula() -> None:
    s = linear_schedule(50)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(4, 3, 5, 5, generator=g) * 2 - 1  # images in [-1, 1]
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([1, 17, 33, 50])
    out = q_sample(x0, t, s, noise=eps)
    assert out.shape == x0.shape and out.dtype == torch.float32
    for i, ti in enumerate(t.tolist()):
        ab = float(s.alpha_bar[ti])
        expected = math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * eps[i]
        torch.testing.assert_close(out[i], expected)
    # an int t means the same step for the whole batch
    torch.testing.assert_close(
        q_sample(x0, 17, s, noise=eps), q_sample(x0, torch.full((4,), 17), s, noise=eps)
    )


def test_q_step_with_given_noise_is_the_formula() -> None:
    s = cosine_schedule(20)
    g = torch.Generator().manual_seed(2)
    x, eps = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    t = torch.tensor([1, 10, 20])
    out = q_step(x, t, s, noise=eps)
    for i, ti in enumerate(t.tolist()):
        b = float(s.betas[ti])
        torch.testing.assert_close(out[i], math.sqrt(1 - b) * x[i] + math.sqrt(b) * eps[i])


def test_random_draws_follow_the_generator() -> None:
    s = linear_schedule(10)
    x0 = torch.zeros(5, 2)
    a = q_sample(x0, 10, s, generator=torch.Generator().manual_seed(3))
    b = q_sample(x0, 10, s, generator=torch.Generator().manual_seed(3))
    c = q_sample(x0, 10, s, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    eps = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, float(s.sqrt_one_minus_alpha_bar[10]) * eps)


def test_conversions_are_mutual_inverses() -> None:
    s = cosine_schedule(200)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 50, 120, 199, 200])
    x_t = q_sample(x0, t, s, noise=eps)
    torch.testing.assert_close(predict_x0_from_eps(x_t, t, eps, s), x0)
    torch.testing.assert_close(eps_from_x0(x_t, t, x0, s), eps)
    score = score_from_eps(eps, t, s)
    torch.testing.assert_close(eps_from_score(score, t, s), eps)
    # score = -eps / sqrt(1 - alpha_bar_t): for a point mass at x0 this is the score of q(x_t|x0)
    var = (1 - s.alpha_bar[t]).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(
        score, -(x_t - s.alpha_bar[t].sqrt().reshape(-1, 1, 1, 1) * x0) / var
    )
    # round trip the other way
    x0_hat = predict_x0_from_eps(x_t, t, eps_from_x0(x_t, t, x0, s), s)
    torch.testing.assert_close(x0_hat, x0)


@pytest.mark.parametrize("fn", [q_sample, q_step], ids=["q_sample", "q_step"])
def test_error_paths(fn) -> None:  # type: ignore[no-untyped-def]
    s = linear_schedule(10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="noise"):
        fn(x, 1, s, noise=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="noise"):
        fn(x, 1, s, noise=torch.zeros(1, 2))  # would broadcast silently
    with pytest.raises(TypeError, match="t"):
        fn(x, torch.tensor([1.0, 2.0, 3.0]), s)
    with pytest.raises(TypeError, match="x"):
        fn(x.numpy(), 1, s)
    with pytest.raises(TypeError, match="x"):
        fn(torch.zeros(3, 2, dtype=torch.long), 1, s)
    with pytest.raises(ValueError, match="t"):
        fn(x, 11, s)
    with pytest.raises(ValueError, match="t"):
        fn(x, torch.tensor([1, 2]), s)
    with pytest.raises(TypeError, match="schedule"):
        fn(x, 1, s.alpha_bar)


def test_conversion_error_paths() -> None:
    s = linear_schedule(10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="eps"):
        predict_x0_from_eps(x, 1, torch.zeros(3, 1), s)
    with pytest.raises(ValueError, match="x0"):
        eps_from_x0(x, 1, torch.zeros(2, 2), s)
    with pytest.raises(TypeError, match="eps"):
        score_from_eps([0.0, 1.0], 1, s)
    with pytest.raises(ValueError, match="t"):
        eps_from_score(x, 0, s)


def test_the_result_keeps_the_datas_dtype_and_public_kernels_check_t() -> None:
    import minidiff.diffusion as D
    from minidiff import linear_schedule

    s = linear_schedule(50)
    x = torch.zeros(2, 2)
    noise64 = torch.ones(2, 2, dtype=torch.float64)
    assert D.q_sample(x, 3, s, noise=noise64).dtype == torch.float32
    assert D.predict_x0_from_eps(x, 3, noise64, s).dtype == torch.float32
    with pytest.raises(ValueError, match=r"t must lie in 0..50"):
        D.marginal_coefficients(torch.tensor([-1]), s)
    with pytest.raises(TypeError, match="t must be an int or an integer tensor"):
        D.model_variance(1.5, s, "beta", 2, like=x)  # type: ignore[arg-type]
    a, sig = D.marginal_coefficients(5, s)
    assert float(a**2 + sig**2) == pytest.approx(1.0)
