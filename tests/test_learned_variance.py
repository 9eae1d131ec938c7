"""Learned variances and L_hybrid (Nichol & Dhariwal 2021), measured with chapter 3's bound."""

from __future__ import annotations

import pytest
import torch

import minidiff as md
from minidiff.learned_variance import (
    HybridMLP,
    hybrid_loss,
    interpolated_log_variance,
    learned_vlb_terms,
    split_output,
)
from minidiff.samplers.ddim import ddim_timesteps, respace_eps_model, respace_schedule
from minidiff.sde import VPSDE

SCHED = VPSDE().to_schedule(40)
GMM = md.GaussianMixture.default_2d()
ORACLE = GMM.eps_model(SCHED)


def _with_r(value: float, eps_model=ORACLE):  # type: ignore[no-untyped-def]
    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([eps_model(x, t), torch.full_like(x, value)], dim=1)

    return model


def test_interpolation_endpoints_are_beta_and_clipped_beta_tilde() -> None:
    t = torch.arange(1, SCHED.T + 1)
    r = torch.zeros(SCHED.T, 2, dtype=torch.float64)
    hi = interpolated_log_variance(r + 1, t, SCHED).exp()[:, 0]
    lo = interpolated_log_variance(r - 1, t, SCHED).exp()[:, 0]
    mid = interpolated_log_variance(r, t, SCHED).exp()[:, 0]
    torch.testing.assert_close(hi, SCHED.betas[1:])
    torch.testing.assert_close(lo[1:], SCHED.posterior_variance[2:])
    torch.testing.assert_close(lo[0], SCHED.posterior_variance[2])  # beta_tilde_1 = 0 is clipped
    torch.testing.assert_close(mid, (hi * lo).sqrt())  # r = 0: the geometric mean


@pytest.mark.parametrize("steps", [SCHED.T, 8])
def test_bound_with_r_one_is_the_fixed_beta_bound(steps: int) -> None:
    """r = +1 everywhere is Sigma = beta (and the decoder beta_1): vlb_terms(variance="beta")
    with the same draws, term for term, on the full and on a respaced chain."""
    ts = ddim_timesteps(SCHED, steps)
    sched = respace_schedule(SCHED, ts)
    x0 = GMM.sample(64, torch.Generator().manual_seed(0)).double()
    model = respace_eps_model(_with_r(1.0), ts)
    ours = learned_vlb_terms(model, x0, sched, generator=torch.Generator().manual_seed(1))
    eps = respace_eps_model(ORACLE, ts)
    ref = md.vlb_terms(eps, x0, sched, variance="beta", generator=torch.Generator().manual_seed(1))
    for a, b in zip(ours.__dict__.values(), ref.__dict__.values(), strict=True):
        torch.testing.assert_close(a, b)
    tilde = md.vlb_terms(
        ORACLE, x0, SCHED, variance="beta_tilde", generator=torch.Generator().manual_seed(1)
    )
    low = learned_vlb_terms(_with_r(-1.0), x0, SCHED, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(low.L_t, tilde.L_t)  # t >= 2: beta_tilde exactly


def test_hybrid_loss_trains_the_variance_only_through_the_bound() -> None:
    torch.manual_seed(0)
    net = HybridMLP(2, hidden=16, n_layers=1).double()
    torch.nn.init.normal_(net.output.weight, std=0.2)
    x0 = GMM.sample(32, torch.Generator().manual_seed(2)).double()
    simple = hybrid_loss(net, x0, SCHED, lambda_vlb=0.0, generator=torch.Generator().manual_seed(3))
    # L_simple by hand, same draws (t, then eps)
    g = torch.Generator().manual_seed(3)
    t = torch.randint(1, SCHED.T + 1, (32,), generator=g)
    eps = torch.randn(32, 2, generator=g, dtype=torch.float64)
    eps_hat, _ = split_output(net(md.q_sample(x0, t, SCHED, noise=eps), t))
    torch.testing.assert_close(simple, ((eps - eps_hat) ** 2).mean())
    hybrid = hybrid_loss(
        net, x0, SCHED, lambda_vlb=1e-3, generator=torch.Generator().manual_seed(3)
    )
    (grad,) = torch.autograd.grad(hybrid - simple, net.output.weight)
    assert float(grad[:2].abs().max()) == 0.0  # stop-gradient: the bound leaves the mean alone
    assert float(grad[2:].abs().max()) > 0.0  # ... and trains the variance head


def test_hybrid_mlp_shapes_and_bad_inputs() -> None:
    net = HybridMLP(2, hidden=8, n_layers=1)
    assert net(torch.zeros(3, 2), torch.ones(3, dtype=torch.long)).shape == (3, 4)
    with pytest.raises(ValueError, match="hybrid model"):
        split_output(torch.zeros(3, 3))
    # a list used to be a ValueError that did not name out; an empty batch a raw RuntimeError
    with pytest.raises(TypeError, match="out must be a torch.Tensor"):
        split_output([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x0 must hold at least one sample"):
        learned_vlb_terms(net, torch.zeros(0, 2), SCHED)
    with pytest.raises(ValueError, match="x0 must hold at least one sample"):
        hybrid_loss(net, torch.zeros(0, 2), SCHED)
    with pytest.raises(ValueError, match="lambda_vlb"):
        hybrid_loss(net, torch.zeros(3, 2), SCHED, lambda_vlb=-1.0)
    with pytest.raises(TypeError, match="model"):
        learned_vlb_terms("net", torch.zeros(3, 2), SCHED)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x0"):
        learned_vlb_terms(net, torch.full((3, 2), float("nan")), SCHED)
    with pytest.raises(ValueError, match="t"):
        interpolated_log_variance(torch.zeros(3, 2), torch.tensor([0, 1, 2]), SCHED)
    # a plain eps model (B, D) instead of [eps, r] (B, 2D): named as such, not split in halves
    with pytest.raises(ValueError, match=r"model must return \(B, 2D\) = \(3, 4\)"):
        hybrid_loss(ORACLE, torch.zeros(3, 2), SCHED)
    with pytest.raises(ValueError, match=r"model must return \(B, 2D\) = \(3, 4\)"):
        learned_vlb_terms(ORACLE, torch.zeros(3, 2), SCHED)
