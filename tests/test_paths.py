"""Gaussian paths and the converters between ε, x0, v, score and velocity (chapter 16)."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import VPSDE, GaussianMixture, linear_schedule
from minidiff.guidance import classifier_free_guidance
from minidiff.paths import (
    KINDS,
    CosinePath,
    DiscreteVPPath,
    GaussianPath,
    RectifiedFlowPath,
    VPPath,
    change_of_path,
    convert_model,
    convert_with,
    mixture_predictor,
)
from minidiff.samplers import ddim_sample, ddim_step, ddim_timesteps, flow_sample, ode_solve
from minidiff.sde import score_fn_from_mixture

PATHS = [
    RectifiedFlowPath(),
    CosinePath(),
    VPPath(),
    VPPath(VPSDE(beta_min=1.0, beta_max=5.0)),
    DiscreteVPPath(linear_schedule(100)),
]


def _draw(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = 0.02 + 0.96 * torch.rand(n, generator=g, dtype=torch.float64)
    return (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, d, generator=g, dtype=torch.float64),
        t,
    )


def _truth(
    path: GaussianPath, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every kind written out by hand from (x0, eps) (the table of the module docstring)."""
    a, s, da, ds = (v[:, None] for v in path.coefficients(t))
    return {
        "eps": eps,
        "x0": x0,
        "v": a * eps - s * x0,
        "velocity": da * x0 + ds * eps,
        "score": -eps / s,
    }


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_every_conversion_between_every_pair_is_exact(path: GaussianPath) -> None:
    x0, eps, t = _draw(256, 3, 0)
    x_t = path.sample(x0, t, noise=eps)
    truth = _truth(path, x0, eps, t)
    for src in KINDS:
        for dst in KINDS:
            got = path.convert(truth[src], x_t, t, src=src, dst=dst)
            scale = float(truth[dst].abs().max())
            assert float((got - truth[dst]).abs().max()) < 1e-12 * scale, (src, dst)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_convert_with_given_coefficients_equals_the_path_method(path: GaussianPath) -> None:
    x0, eps, t = _draw(32, 2, 13)
    x_t = path.sample(x0, t, noise=eps)
    c = path.coefficients(t)
    for dst in KINDS:
        a = convert_with(c, eps, x_t, src="eps", dst=dst)
        assert torch.equal(a, path.convert(eps, x_t, t, src="eps", dst=dst)), dst
    one = path.coefficients(0.3)  # numbers: the same coefficients for every row
    assert torch.allclose(
        convert_with(one, eps, x_t, src="eps", dst="x0"),
        path.convert(eps, x_t, 0.3, src="eps", dst="x0"),
        atol=1e-14,
    )


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_round_trips_through_every_kind(path: GaussianPath) -> None:
    x0, eps, t = _draw(128, 2, 1)
    x_t = path.sample(x0, t, noise=eps)
    for via in KINDS:
        back = path.convert(
            path.convert(eps, x_t, t, src="eps", dst=via), x_t, t, src=via, dst="eps"
        )
        assert float((back - eps).abs().max()) < 1e-10, via


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_derivatives_equal_autograd_of_alpha_and_sigma(path: GaussianPath) -> None:
    t = torch.linspace(0.013, 0.987, 77, dtype=torch.float64)
    c = path.coefficients(t)
    tt = t.clone().requires_grad_(True)
    cc = path._coefficients(tt)
    (d_alpha,) = torch.autograd.grad(cc.alpha.sum(), tt, retain_graph=True)
    (d_sigma,) = torch.autograd.grad(cc.sigma.sum(), tt)
    assert torch.allclose(d_alpha, c.d_alpha, rtol=1e-12, atol=1e-12)
    assert torch.allclose(d_sigma, c.d_sigma, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_conditional_velocity_is_the_time_derivative_of_the_sample(path: GaussianPath) -> None:
    x0, eps, t = _draw(64, 2, 2)
    h = 1e-6
    fd = (path.sample(x0, t + h, noise=eps) - path.sample(x0, t - h, noise=eps)) / (2 * h)
    assert torch.allclose(fd, path.conditional_velocity(x0, eps, t), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("path", PATHS, ids=repr)
def test_log_snr_inverts_and_decreases(path: GaussianPath) -> None:
    t = (torch.arange(1, 99, dtype=torch.float64) + 0.37) / 100  # off the discrete knots i/100
    lam = path.log_snr(t)
    assert bool((lam[1:] < lam[:-1]).all())
    assert torch.allclose(path.t_from_log_snr(lam), t, atol=1e-12)
    h = 1e-6
    fd = (path.log_snr(t + h) - path.log_snr(t - h)) / (2 * h)
    assert torch.allclose(path.d_log_snr(t), fd, rtol=1e-6)


def test_named_paths_have_their_closed_forms() -> None:
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    rf = RectifiedFlowPath().coefficients(t)
    assert torch.equal(rf.alpha, 1 - t) and torch.equal(rf.sigma, t)
    assert torch.equal(rf.d_alpha, -torch.ones(4, dtype=torch.float64))
    cos = CosinePath().coefficients(t)
    assert torch.allclose(cos.alpha**2 + cos.sigma**2, torch.ones(4, dtype=torch.float64))
    # on the trigonometric path the velocity is (pi / 2) v (Salimans & Ho 2022)
    x0, eps, tt = _draw(32, 2, 3)
    path = CosinePath()
    x_t = path.sample(x0, tt, noise=eps)
    v = path.convert(eps, x_t, tt, src="eps", dst="v")
    u = path.convert(eps, x_t, tt, src="eps", dst="velocity")
    assert torch.allclose(u, 0.5 * math.pi * v, atol=1e-12)


def test_vp_paths_agree_with_the_sde_and_the_schedule() -> None:
    sde = VPSDE()
    T = 50
    schedule = sde.to_schedule(T)
    knots = torch.arange(0, T + 1, dtype=torch.float64) / T
    vp, dvp = VPPath(sde), DiscreteVPPath(schedule)
    a, s = sde.marginal_coefficients(knots)
    assert torch.allclose(vp.coefficients(knots).alpha, a, atol=1e-15)
    assert torch.allclose(dvp.coefficients(knots).alpha, schedule.sqrt_alpha_bar, atol=1e-14)
    assert torch.allclose(dvp.coefficients(knots).sigma, s, atol=1e-14)
    # the piecewise-constant beta of the discrete path is the average of beta(t) on each interval
    mid = (torch.arange(T, dtype=torch.float64) + 0.5) / T
    beta_disc = -2 * dvp.coefficients(mid).d_alpha / dvp.coefficients(mid).alpha
    assert torch.allclose(beta_disc, sde.beta(mid), rtol=1e-12)  # beta(t) is linear in t


def test_flow_ode_of_the_vp_path_is_chapter_7s_probability_flow_ode() -> None:
    gmm, sde = GaussianMixture.default_2d(), VPSDE()
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(200, 2, generator=g, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(200, generator=g, dtype=torch.float64)
    velocity = mixture_predictor(gmm, VPPath(sde), "velocity")(x, t)
    drift = sde.reverse(score_fn_from_mixture(gmm, sde), probability_flow=True).drift(x, t)
    assert float((velocity - drift).abs().max()) < 1e-10


@pytest.mark.parametrize("path", [RectifiedFlowPath(), VPPath()], ids=repr)
def test_mixture_predictor_kinds_are_consistent_and_match_the_score(path: GaussianPath) -> None:
    gmm = GaussianMixture.eight_gaussians()
    g = torch.Generator().manual_seed(5)
    x = 2 * torch.randn(100, 2, generator=g, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(100, generator=g, dtype=torch.float64)
    c = path.coefficients(t)
    exact_score = gmm.marginal_score(x, c.alpha, c.sigma)
    preds = {k: mixture_predictor(gmm, path, k)(x, t) for k in KINDS}
    assert torch.allclose(preds["score"], exact_score, atol=1e-10)
    for k in KINDS:
        assert torch.allclose(
            path.convert(preds[k], x, t, src=k, dst="score"), exact_score, atol=1e-9
        )


def test_mixture_velocity_at_the_ends_of_the_rectified_flow_path() -> None:
    gmm = GaussianMixture.default_2d()
    x = torch.randn(10, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    u = mixture_predictor(gmm, RectifiedFlowPath())
    mean = (gmm.weights[:, None] * gmm.means).sum(0)
    assert torch.allclose(u(x, 1.0), x - mean, atol=1e-12)  # t = 1: E[x0 | x] is the data mean
    assert torch.allclose(u(x, 0.0), -x, atol=1e-12)  # t = 0: x is the data, E[eps | x] = 0


@pytest.mark.parametrize("path", [VPPath(), DiscreteVPPath(linear_schedule(50))], ids=repr)
def test_mixture_predictor_is_finite_at_the_start_of_a_vp_path(path: GaussianPath) -> None:
    """sigma' is infinite at t = 0 but sigma sigma' = -alpha alpha' is not: the velocity there is
    the probability-flow drift -½ β(0) (x + score_0(x)), the score the data's, eps 0; and Heun and
    RK4, which evaluate at t = 0, carry a Gaussian's x_1 to its exact x_0."""
    gmm = GaussianMixture(torch.tensor([[1.0, -2.0]], dtype=torch.float64), stds=0.5)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    zero = torch.zeros(64, dtype=torch.float64)
    c = path.coefficients(0.0)
    assert float(c.sigma) == 0.0 and float(c.d_sigma) == math.inf  # +0 and +inf, not -0, -inf
    score0 = gmm.marginal_score(x, 1.0, 0.0)
    beta0 = -2 * float(c.d_alpha)
    u = mixture_predictor(gmm, path)(x, zero)
    torch.testing.assert_close(u, -0.5 * beta0 * (x + score0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixture_predictor(gmm, path, "score")(x, zero), score0)
    assert torch.equal(mixture_predictor(gmm, path, "eps")(x, zero), torch.zeros_like(x))
    # continuous in t: the velocity just after 0 is close to the one at 0
    near = mixture_predictor(gmm, path)(x, torch.full((64,), 1e-9, dtype=torch.float64))
    torch.testing.assert_close(near, u, rtol=1e-5, atol=1e-6)
    # one Gaussian N(m, s²): the flow keeps w = (x_t - alpha m) / sqrt(alpha² s² + sigma²)
    a1, s1 = (float(v) for v in path.coefficients(1.0)[:2])
    w = (x - a1 * gmm.means[0]) / math.sqrt(a1**2 * 0.25 + s1**2)
    tol = 1e-3 if isinstance(path, VPPath) else 2e-2  # the discrete path has kinks at its knots
    for method in ("heun", "rk4"):
        out = flow_sample(mixture_predictor(gmm, path), path, x_T=x, steps=200, method=method)
        assert float((out - (gmm.means[0] + 0.5 * w)).abs().max()) < tol, method


def test_continuity_equation_holds_for_the_mixture_path() -> None:
    """d p_t / dt + div(p_t u_t) = 0 for the exact density and velocity of a mixture's path."""
    gmm, path = GaussianMixture.default_2d(), RectifiedFlowPath()
    velocity = mixture_predictor(gmm, path)
    g = torch.Generator().manual_seed(7)
    x = 1.5 * torch.randn(50, 2, generator=g, dtype=torch.float64)
    for t in (0.2, 0.5, 0.8):
        h = 1e-5

        def density(x_: torch.Tensor, s: float) -> torch.Tensor:
            c = path.coefficients(s)
            return gmm.marginal_log_prob(x_, c.alpha, c.sigma).exp()

        dp_dt = (density(x, t + h) - density(x, t - h)) / (2 * h)
        xx = x.clone().requires_grad_(True)
        flux = density(xx, t)[:, None] * velocity(xx, torch.full((50,), t, dtype=torch.float64))
        div = sum(
            torch.autograd.grad(flux[:, i].sum(), xx, retain_graph=True)[0][:, i] for i in range(2)
        )
        assert torch.allclose(dp_dt, -div, rtol=1e-5, atol=1e-8), t


@pytest.mark.parametrize(
    ("src", "dst"), [(VPPath(), RectifiedFlowPath()), (CosinePath(), VPPath())]
)
def test_change_of_path_keeps_eps_and_scales_x(src: GaussianPath, dst: GaussianPath) -> None:
    x0, eps, t = _draw(64, 2, 8)
    t_dst, scale = change_of_path(src, dst, t)
    assert torch.allclose(dst.log_snr(t_dst), src.log_snr(t), rtol=1e-10)
    assert torch.allclose(
        scale[:, None] * src.sample(x0, t, noise=eps), dst.sample(x0, t_dst, noise=eps), atol=1e-12
    )


def test_ddim_step_is_an_euler_step_in_sigma_over_alpha() -> None:
    """x_s / alpha_s = x_t / alpha_t + (tau_s - tau_t) eps, tau = sigma / alpha (chapter 8)."""
    schedule = linear_schedule(200)
    path = DiscreteVPPath(schedule)
    gmm = GaussianMixture.default_2d()
    eps_model = gmm.eps_model(schedule)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(128, 2, generator=g, dtype=torch.float64)
    for t, s in [(200, 150), (120, 119), (30, 0), (7, 3)]:
        tt = torch.full((128,), t)
        eps = eps_model(x, tt)
        ddim = ddim_step(x, tt, s, eps, schedule)
        # the flow velocity at t, turned into d(x/alpha)/d(sigma/alpha) by the chain rule
        ct, cs = path.coefficients(t / 200), path.coefficients(s / 200)
        u = path.convert(
            eps, x, t / 200 * torch.ones(128, dtype=torch.float64), src="eps", dst="velocity"
        )
        dxbar = (u / ct.alpha - x * ct.d_alpha / ct.alpha**2) / (
            ct.d_sigma / ct.alpha - ct.sigma * ct.d_alpha / ct.alpha**2
        )
        euler = cs.alpha * (x / ct.alpha + (cs.sigma / cs.alpha - ct.sigma / ct.alpha) * dxbar)
        assert float((euler - ddim).abs().max()) < 1e-10, (t, s)


def test_ddim_sampler_is_euler_on_the_rectified_flow_after_the_change_of_variables() -> None:
    schedule = linear_schedule(200)
    vp, rf = DiscreteVPPath(schedule), RectifiedFlowPath()
    gmm = GaussianMixture.default_2d()
    eps_vp = vp.continuous_model(gmm.eps_model(schedule))
    steps = 12
    knots = torch.cat([ddim_timesteps(schedule, steps), torch.zeros(1, dtype=torch.long)])
    s_grid, scale_T = change_of_path(vp, rf, knots.double() / 200)

    def velocity_rf(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        t_vp, scale = change_of_path(rf, vp, s)  # back to the VP time and scale of x
        eps = eps_vp(x * scale[:, None], t_vp)
        return rf.convert(eps, x, s, src="eps", dst="velocity")

    x_T = torch.randn(100, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    ddim = ddim_sample(gmm.eps_model(schedule), schedule, steps=steps, x_T=x_T)
    euler = ode_solve(velocity_rf, scale_T[0] * x_T, s_grid, method="euler").x
    assert scale_T[-1] == 1.0 and s_grid[-1] == 0.0
    assert float((euler - ddim).abs().max()) < 1e-10


def test_cfg_on_velocities_is_cfg_on_eps_under_the_converter() -> None:
    g = torch.Generator().manual_seed(11)
    W = torch.randn(4, 2, 2, generator=g, dtype=torch.float64)

    def cond_eps(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.einsum("bi,bij->bj", x, W[y]) + t[:, None])

    path = RectifiedFlowPath()
    x = torch.randn(64, 2, generator=g, dtype=torch.float64)
    t = 0.05 + 0.9 * torch.rand(64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    for w in (0.0, 1.0, 3.5):
        eps_cfg = classifier_free_guidance(cond_eps, y, w, num_classes=3)(x, t)
        cond_u = convert_model(cond_eps, path, src="eps", dst="velocity")
        u_cfg = classifier_free_guidance(cond_u, y, w, num_classes=3)(x, t)
        expected = path.convert(eps_cfg, x, t, src="eps", dst="velocity")
        assert float((u_cfg - expected).abs().max()) < 1e-10, w


def test_error_factor_scales_squared_errors() -> None:
    path = RectifiedFlowPath()
    x0, eps, t = _draw(64, 2, 12)
    x_t = path.sample(x0, t, noise=eps)
    eps_hat = eps + 0.3 * torch.randn_like(eps)
    truth = _truth(path, x0, eps, t)
    for kind in KINDS:
        pred = path.convert(eps_hat, x_t, t, src="eps", dst=kind)
        c = path.error_factor(kind, t)[:, None]
        assert torch.allclose(pred - truth[kind], c * (eps_hat - eps), atol=1e-10), kind
    assert torch.allclose(path.error_factor("velocity", t), 1 / (1 - t), atol=1e-14)


def test_discrete_path_wraps_a_discrete_model_at_its_knots() -> None:
    schedule = linear_schedule(10)
    path = DiscreteVPPath(schedule)
    seen = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return x

    f = path.continuous_model(model)
    f(torch.zeros(3, 2), torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64))
    assert seen[0].tolist() == [1, 5, 10] and seen[0].dtype == torch.long
    with pytest.raises(ValueError, match="knot i/T"):
        f(torch.zeros(3, 2), torch.tensor([0.1, 0.55, 1.0]))
    with pytest.raises(ValueError, match="knot i/T"):
        f(torch.zeros(1, 2), 0.0)


def test_bad_inputs_raise_clear_errors() -> None:
    path = RectifiedFlowPath()
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="src must be one of"):
        path.convert(x, x, 0.5, src="noise", dst="eps")
    with pytest.raises(ValueError, match="dst must be one of"):
        path.convert(x, x, 0.5, src="eps", dst="flow")
    with pytest.raises(ValueError, match="value must have the same shape as x_t"):
        path.convert(torch.zeros(4, 3), x, 0.5, src="eps", dst="x0")
    with pytest.raises(TypeError, match="x_t must be a torch.Tensor"):
        path.convert(x, x.numpy(), 0.5, src="eps", dst="x0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        path.sample(x, 1.5)
    with pytest.raises(TypeError, match="discrete DDPM steps"):
        path.sample(x, torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        path.sample(x, torch.rand(3))
    with pytest.raises(ValueError, match="x0 contains non-finite"):
        path.sample(torch.full((2, 2), float("nan")), 0.5)
    with pytest.raises(ValueError, match="noise must have the same shape as x0"):
        path.conditional_velocity(x, torch.zeros(4, 3), 0.5)
    with pytest.raises(TypeError, match="sde must be a VPSDE"):
        VPPath("vp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        DiscreteVPPath(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path must be a GaussianPath"):
        convert_model(lambda x, t: x, "rf", src="eps", dst="velocity")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be callable"):
        convert_model(3, path, src="eps", dst="velocity")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="gmm must be a GaussianMixture"):
        mixture_predictor("gmm", path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be one of"):
        path.error_factor("noise", 0.5)
    with pytest.raises(ValueError, match=r"alpha must be a number or have shape \(4,\)"):
        convert_with(path.coefficients(torch.rand(3)), x, x, src="eps", dst="x0")
    with pytest.raises(TypeError, match="coefficients must be a PathCoefficients"):
        convert_with((1.0, 0.5), x, x, src="eps", dst="x0")  # type: ignore[arg-type]
    bad = convert_model(lambda x, t: x[:, :1], path, src="eps", dst="velocity")
    with pytest.raises(ValueError, match="model must return a tensor of shape"):
        bad(x, torch.full((4,), 0.5))
