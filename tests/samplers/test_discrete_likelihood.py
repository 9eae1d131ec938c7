"""The route from a DDPM ε-model (discrete t, trained with ``train()``) to the ODE log-likelihood:
the time map, the adapter, the exact mixture's ε made discrete, and the limit of the input
encoding (a ripple too small for the loss to see costs the ODE likelihood nats)."""

from __future__ import annotations

import math

import pytest
import torch

import minidiff as md
from minidiff.likelihood import ode_log_likelihood
from minidiff.sde import (
    VPSDE,
    discrete_timestep,
    score_fn_from_discrete_eps_model,
    score_fn_from_mixture,
)

SCHED = md.linear_schedule(1000)
SDE = VPSDE()
GMM = md.GaussianMixture.eight_gaussians()


def _alpha_bar_at(tau: torch.Tensor, sched: md.NoiseSchedule = SCHED) -> torch.Tensor:
    """The schedule's ᾱ at fractional timesteps: log ᾱ linear between the knots."""
    la = sched.alpha_bar.log()
    lo = tau.floor().long().clamp(0, sched.T - 1)
    return (la[lo] + (tau - lo) * (la[lo + 1] - la[lo])).exp()


def exact_discrete_eps(x: torch.Tensor, tau: torch.Tensor, ripple: float = 0.0) -> torch.Tensor:
    """The mixture's exact ``E[ε | x_τ]`` as a DDPM ε-model of (fractional) timesteps ``τ``, plus
    an optional ripple ``ripple · sin(16π x)``: the top octave of ``TimeMLP(x_frequencies=5)``."""
    ab = _alpha_bar_at(tau.to(torch.float64))
    a, s = ab.sqrt(), (1 - ab).sqrt()
    eps = -s[:, None] * GMM.marginal_score(x, a[:, None], s[:, None])
    return eps + ripple * torch.sin(16 * math.pi * x)


@pytest.mark.parametrize(
    ("sched", "sde"),
    [
        (SCHED, SDE),
        (md.cosine_schedule(200), VPSDE()),
        (md.linear_schedule(200, 5e-4, 0.1), VPSDE(beta_min=0.05, beta_max=25.0)),
    ],
)
def test_the_time_map_matches_noise_levels(sched: md.NoiseSchedule, sde: VPSDE) -> None:
    """ᾱ_schedule(τ(t)) = alpha(t)² wherever the schedule's noise levels reach, exactly at knots."""
    t = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    tau = discrete_timestep(t, sched, sde)
    target = sde.marginal_coefficients(t)[0] ** 2
    inside = (target <= 1.0) & (target >= sched.alpha_bar[-1])
    assert int(inside.sum()) > 1500
    torch.testing.assert_close(
        _alpha_bar_at(tau[inside], sched), target[inside], rtol=1e-10, atol=0
    )
    assert (
        bool((tau[1:] >= tau[:-1]).all()) and float(tau.min()) >= 0 and float(tau.max()) <= sched.T
    )
    assert bool((tau[~inside] == sched.T).all())  # beyond the last level: the last timestep
    # linear_schedule(1000) and VPSDE() are close: tau = 1000 t within 4 steps
    if sched is SCHED:
        assert float((tau - 1000 * t).abs().max()) < 4


def test_the_adapter_turns_the_exact_discrete_eps_into_the_exact_score() -> None:
    score = score_fn_from_discrete_eps_model(exact_discrete_eps, SCHED, SDE)
    exact = score_fn_from_mixture(GMM, SDE)
    g = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    for t in (1e-3, 0.01, 0.2, 0.7, 0.99):
        tt = torch.full((64,), t, dtype=torch.float64)
        torch.testing.assert_close(score(x, tt), exact(x, tt), rtol=1e-8, atol=1e-8)


def test_ode_log_likelihood_of_a_discrete_eps_model_matches_the_exact_density() -> None:
    """The exact mixture's ε made discrete: the log-likelihood is the true one within 0.01 nats
    (and within 0.03 when the model only takes integer timesteps)."""
    x = GMM.sample(200, torch.Generator().manual_seed(1)).double()
    true = float(GMM.log_prob(x).mean())
    score = score_fn_from_discrete_eps_model(exact_discrete_eps, SCHED, SDE)
    ll = ode_log_likelihood(score, SDE, x, steps=100)
    assert abs(float(ll.mean()) - true) < 0.01, (float(ll.mean()), true)
    # per point too: the ODE likelihood is a density, not only a mean
    assert float((ll - GMM.log_prob(x)).abs().max()) < 0.1
    rounded = score_fn_from_discrete_eps_model(
        GMM.eps_model(SCHED), SCHED, SDE, round_timesteps=True
    )
    ll_r = ode_log_likelihood(rounded, SDE, x, steps=100)
    assert abs(float(ll_r.mean()) - true) < 0.03, (float(ll_r.mean()), true)


def test_a_ripple_the_loss_cannot_see_costs_the_ode_likelihood() -> None:
    """The limit behind the input encoding's lost likelihood (see ``bench/README.md``).

    A ripple ``A sin(16π x)`` added to the exact ε at every noise level raises ``L_simple`` by
    ``A²/2`` per dimension (``2.5e-5`` for ``A = 0.005``, invisible against a loss of 0.4), yet
    the PF-ODE's divergence picks up ``(β/2σ) A 16π cos(16π x)``, and the forward ODE's paths settle
    where that is negative: the log-likelihood drops by more than 0.3 nats. Damping the ripple by
    ``exp(-(16π σ_t)²/2)``, its expected value under the noise of ``x_t`` (mip-NeRF's integrated
    encoding), removes the loss of likelihood.
    """
    x = GMM.sample(200, torch.Generator().manual_seed(0)).double()
    true = float(GMM.log_prob(x).mean())

    def rippled(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return exact_discrete_eps(x, tau, ripple=0.005)

    def damped(x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        s = (1 - _alpha_bar_at(tau.to(torch.float64))).sqrt()[:, None]
        return exact_discrete_eps(x, tau) + 0.005 * torch.exp(-0.5 * (16 * math.pi * s) ** 2) * (
            torch.sin(16 * math.pi * x)
        )

    lls = {
        name: float(
            ode_log_likelihood(
                score_fn_from_discrete_eps_model(m, SCHED, SDE), SDE, x, steps=100
            ).mean()
        )
        for name, m in (("rippled", rippled), ("damped", damped))
    }
    assert true - lls["rippled"] > 0.3, (lls, true)
    assert abs(lls["damped"] - true) < 0.01, (lls, true)
    # and the ripple is invisible to the training loss
    g = torch.Generator().manual_seed(2)
    t = torch.randint(1, SCHED.T + 1, (4000,), generator=g)
    x_t = md.q_sample(GMM.sample(4000, g).double(), t, SCHED, generator=g)
    excess = ((rippled(x_t, t.double()) - exact_discrete_eps(x_t, t.double())) ** 2).mean()
    assert float(excess) < 3e-5


def test_a_schedule_that_does_not_reach_the_sdes_noise_is_refused() -> None:
    """Beyond the schedule's last level the model would be called at T on noisier inputs and
    the score is wrong without an error (linear_schedule(50): off by 1.2 at t = 1): refused,
    with the range of t it covers; the pairs the course uses are accepted."""
    short = md.linear_schedule(50)
    with pytest.raises(ValueError, match=r"^schedule \(T=50, alpha_bar_T=0\.603\).*t <= 0\.221"):
        score_fn_from_discrete_eps_model(GMM.eps_model(short), short, SDE, round_timesteps=True)
    with pytest.raises(ValueError, match=r"alpha_bar_T <= 4\.32e-05.*to_schedule\(900\)"):
        score_fn_from_discrete_eps_model(exact_discrete_eps, md.linear_schedule(900))
    for sched in (SCHED, SDE.to_schedule(1000), SDE.to_schedule(200), md.cosine_schedule(200)):
        assert callable(score_fn_from_discrete_eps_model(exact_discrete_eps, sched, SDE))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="eps_model"):
        score_fn_from_discrete_eps_model(3, SCHED)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule"):
        score_fn_from_discrete_eps_model(exact_discrete_eps, SDE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sde"):
        score_fn_from_discrete_eps_model(exact_discrete_eps, SCHED, SCHED)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="round_timesteps"):
        score_fn_from_discrete_eps_model(exact_discrete_eps, SCHED, round_timesteps=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t must lie in"):
        discrete_timestep(1.5, SCHED, SDE)
    with pytest.raises(TypeError, match="schedule"):
        discrete_timestep(0.5, None, SDE)  # type: ignore[arg-type]
