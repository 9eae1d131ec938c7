"""DPS inpainting (chapter 14): the reconstruction gradient, the step, the known pixels."""

from __future__ import annotations

import pytest
import torch

from minidiff import linear_schedule
from minidiff.samplers import ddpm_step
from minidiff.samplers.dps import dps_sample, dps_step, reconstruction_gradient

SCHED = linear_schedule(40, 1e-3, 0.2)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mask() -> torch.Tensor:
    m = torch.ones(1, 1, 4, 4)
    m[..., 2:, :] = 0
    return m


def _nonlinear_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(-1, 1, x.shape[-1], dtype=x.dtype)
    return torch.tanh(0.7 * x + 0.2 * x.roll(1, dims=-1) * w) * (
        1 + t.to(x.dtype).view(-1, 1, 1, 1) / 40
    )


def _recon(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    ab = SCHED.alpha_bar.to(x.dtype)[t].view(-1, 1, 1, 1)
    x0 = (x - (1 - ab).sqrt() * _nonlinear_eps(x, t)) / ab.sqrt()
    return (m * (x0 - y)).pow(2).flatten(1).sum(1)


def test_reconstruction_gradient_matches_finite_differences():
    x = torch.randn(3, 1, 4, 4, generator=_g(1), dtype=torch.float64)
    y = torch.rand(3, 1, 4, 4, generator=_g(2), dtype=torch.float64) * 2 - 1
    t = torch.tensor([1, 17, 40])
    with torch.no_grad():  # as inside a sampler: the gradient must still flow
        grad, r, eps = reconstruction_gradient(_nonlinear_eps, x, t, y, _mask(), SCHED)
    assert torch.allclose(r, _recon(x, t, y, _mask()))
    assert torch.allclose(eps, _nonlinear_eps(x, t))
    v = torch.randn(x.shape, generator=_g(3), dtype=torch.float64)
    h = 1e-6
    fd = (_recon(x + h * v, t, y, _mask()) - _recon(x - h * v, t, y, _mask())) / (2 * h)
    assert torch.allclose((grad * v).flatten(1).sum(1), fd, rtol=1e-6, atol=1e-8)
    # with eps = 0 the gradient is 2 m (x / sqrt(ab) - y) / sqrt(ab), and zero on unknown pixels
    zero = lambda x_, t_: torch.zeros_like(x_)  # noqa: E731
    grad0, _, _ = reconstruction_gradient(zero, x, t, y, _mask(), SCHED)
    ab = SCHED.alpha_bar.double()[t].view(-1, 1, 1, 1)
    assert torch.allclose(grad0, 2 * _mask() * (x / ab.sqrt() - y) / ab.sqrt())
    assert torch.equal(grad0[..., 2:, :], torch.zeros_like(grad0[..., 2:, :]))


def test_dps_step_is_the_ancestral_step_minus_the_scaled_gradient():
    x = torch.randn(2, 1, 4, 4, generator=_g(4))
    y = torch.rand(2, 1, 4, 4, generator=_g(5)) * 2 - 1
    t, z = torch.tensor([9, 30]), torch.randn(2, 1, 4, 4, generator=_g(6))
    plain = ddpm_step(x, t, _nonlinear_eps(x, t), SCHED, noise=z)
    # bitwise: the step is ddpm_step's own kernel (ddpm_step.unchecked)
    assert torch.equal(dps_step(_nonlinear_eps, x, t, y, _mask(), SCHED, zeta=0.0, noise=z), plain)
    grad, r, _ = reconstruction_gradient(_nonlinear_eps, x, t, y, _mask(), SCHED)
    guided = dps_step(_nonlinear_eps, x, t, y, _mask(), SCHED, zeta=0.5, noise=z)
    assert torch.allclose(guided, plain - 0.5 * grad / r.sqrt().view(-1, 1, 1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="zeta"):
        dps_step(_nonlinear_eps, x, t, y, _mask(), SCHED, zeta=-1.0)
    with pytest.raises(ValueError, match="mask"):
        dps_step(_nonlinear_eps, x, t, y, 0.5 * _mask(), SCHED)


def test_dps_pulls_the_known_pixels_towards_the_condition():
    # data x0 ~ N(0, I): the exact eps-model is E[eps | x_t] = sqrt(1 - ab_t) x_t
    def exact(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (1 - SCHED.alpha_bar.float()[t]).sqrt().view(-1, 1, 1, 1) * x

    y = torch.rand(64, 1, 4, 4, generator=_g(7)) * 2 - 1
    m = _mask()
    err, out = {}, {}
    for zeta in (0.0, 1.0):
        out[zeta] = dps_sample(exact, SCHED, y, m, zeta=zeta, generator=_g(8))
        err[zeta] = float((m * (out[zeta] - y)).abs().sum() / (m.sum() * 64))
    assert err[1.0] < 0.5 * err[0.0], err  # guided: pulled to y; unguided: a fresh Gaussian draw
    # pixels are independent under this prior: the guidance leaves the unknown ones untouched
    assert torch.allclose(out[1.0][..., 2:, :], out[0.0][..., 2:, :], atol=1e-5)


def test_dps_refuses_inference_mode_before_calling_the_model():
    """DPS differentiates through the network: under torch.inference_mode (where no gradient can
    be recorded) every entry point says so up front, not with autograd's RuntimeError."""
    x = torch.randn(2, 1, 4, 4, generator=_g(9))
    y = torch.rand(2, 1, 4, 4, generator=_g(10)) * 2 - 1
    t = torch.tensor([3, 12])
    calls = []

    def spy(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return _nonlinear_eps(x_, t_)

    with torch.inference_mode():
        for run in (
            lambda: reconstruction_gradient(spy, x, t, y, _mask(), SCHED),
            lambda: dps_step(spy, x, t, y, _mask(), SCHED),
            lambda: dps_sample(spy, SCHED, y, _mask(), generator=_g(11)),
        ):
            with pytest.raises(ValueError, match="needs autograd.*inference_mode"):
                run()
    assert not calls
