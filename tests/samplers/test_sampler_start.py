"""Every DDIM / SDE / ODE sampler accepts a given starting point ``x_T``.

A given ``x_T`` must give exactly what the sampler gives when it draws that same ``x_T`` itself,
and ``ddim_sample(x_T=ddim_invert(x0))`` is the inversion round trip with no hand-written loop.
"""

from __future__ import annotations

import pytest
import torch

import minidiff as md
from minidiff import get_sampler
from minidiff.samplers.ddim import ddim_invert, ddim_sample, ddim_step, ddim_timesteps
from minidiff.samplers.sde_solvers import (
    euler_maruyama_sample,
    pf_ode_sample,
    predictor_corrector_sample,
)
from minidiff.sde import VESDE, VPSDE, score_fn_from_mixture

SDE_SAMPLERS = ["euler_maruyama", "pf_ode_euler", "pf_ode_heun", "predictor_corrector"]


def toy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tf = t.to(x.dtype)[:, None] / 100.0
    return torch.tanh(x * (1.0 + tf)) * 0.8 + 0.1 * torch.sin(3 * tf)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_given_x_T_equals_drawn_x_T(eta: float) -> None:
    sched = md.linear_schedule(100, beta_end=0.2)
    g0 = torch.Generator().manual_seed(3)
    a = ddim_sample(toy_eps, sched, (30, 2), steps=9, eta=eta, generator=g0)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(30, 2, generator=g)
    b = ddim_sample(toy_eps, sched, steps=9, eta=eta, generator=g, x_T=x_T)  # g continues after x_T
    assert torch.equal(a, b)
    c = ddim_sample(
        toy_eps,
        sched,
        (30, 2),
        steps=9,
        eta=eta,
        x_T=x_T + 0.5,
        generator=torch.Generator().manual_seed(3),
    )
    assert not torch.allclose(a, c)  # the start really is used
    # x_T itself is not modified, and the trajectory starts at it
    x_T2 = x_T.clone()
    _, traj = ddim_sample(toy_eps, sched, steps=9, eta=0.0, x_T=x_T2, return_trajectory=True)
    assert torch.equal(x_T2, x_T) and torch.equal(traj[0], x_T) and len(traj) == 10


def test_ddim_x_T_keeps_its_dtype() -> None:
    sched = md.linear_schedule(100, beta_end=0.2)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert ddim_sample(toy_eps, sched, steps=4, x_T=x_T).dtype == torch.float64


def test_ddim_round_trip_with_x_T_matches_hand_loop() -> None:
    sched = md.linear_schedule(1000)
    gmm = md.GaussianMixture.default_2d()
    model = gmm.eps_model(sched)
    x0 = gmm.sample(30, torch.Generator().manual_seed(0)).double()
    latents = ddim_invert(model, sched, x0, steps=50)
    rec = ddim_sample(model, sched, steps=50, x_T=latents)
    assert isinstance(rec, torch.Tensor)
    x = latents
    ts = ddim_timesteps(sched, 50).tolist()
    for t, tp in zip(ts, ts[1:] + [0], strict=True):
        tt = torch.full((x.shape[0],), t)
        x = ddim_step(x, tt, tp, model(x, tt), sched)
    torch.testing.assert_close(rec, x, rtol=0, atol=1e-12)
    err = float((rec - x0).norm(dim=1).mean())
    assert err < 0.1


@pytest.mark.parametrize("name", SDE_SAMPLERS)
@pytest.mark.parametrize("sde_cls", [VPSDE, VESDE])
def test_sde_samplers_given_x_T_equal_drawn_x_T(name: str, sde_cls: type) -> None:
    sde, gmm = sde_cls(), md.GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    sampler = get_sampler(name)
    a = sampler(s, sde, (24, 2), steps=6, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    x_T = sde.prior_sampling((24, 2), g)
    b = sampler(s, sde, steps=6, generator=g, x_T=x_T)
    assert torch.equal(a, b)
    c = sampler(s, sde, (24, 2), steps=6, generator=torch.Generator().manual_seed(5), x_T=x_T * 0.5)
    assert not torch.allclose(a, c)


def test_pf_ode_from_x_T_needs_no_generator_and_starts_there() -> None:
    sde, gmm = VPSDE(), md.GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    a, traj = pf_ode_sample(s, sde, steps=5, x_T=x_T, return_trajectory=True)
    b = pf_ode_sample(s, sde, steps=5, x_T=x_T)
    assert torch.equal(a, b) and torch.equal(traj[0], x_T)


@pytest.mark.parametrize(
    "fn", [ddim_sample, euler_maruyama_sample, pf_ode_sample, predictor_corrector_sample]
)
def test_bad_x_T(fn) -> None:  # type: ignore[no-untyped-def]
    first = (toy_eps, md.linear_schedule(100)) if fn is ddim_sample else (lambda x, t: -x, VPSDE())
    with pytest.raises(TypeError, match="shape .* or a starting point x_T"):
        fn(*first, steps=3)
    with pytest.raises(TypeError, match="x_T"):
        fn(*first, steps=3, x_T=[[0.0, 1.0]])
    with pytest.raises(TypeError, match="x_T must be a floating"):
        fn(*first, steps=3, x_T=torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="disagrees with x_T's shape"):
        fn(*first, (5, 2), steps=3, x_T=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="x_T"):
        fn(*first, steps=3, x_T=torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="x_T must have"):
        fn(*first, steps=3, x_T=torch.zeros(()))
    with pytest.raises(ValueError, match="B >= 1"):
        fn(*first, steps=3, x_T=torch.zeros(0, 2))
