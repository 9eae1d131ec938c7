"""Flow matching: the CFM loss, its time laws, couplings and ε-weighting; the flow sampler."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from minidiff import GaussianMixture, get_sampler, trajectory
from minidiff.flow_matching import (
    ScaledTime,
    flow_matching_loss,
    flow_time_density,
    implied_eps_weighting,
    ot_coupling,
    sample_flow_times,
)
from minidiff.paths import (
    CosinePath,
    DiscreteVPPath,
    RectifiedFlowPath,
    VPPath,
    convert_model,
    mixture_predictor,
)
from minidiff.samplers.flow import flow_sample, flow_time_grid, straightness
from minidiff.schedules import cosine_schedule


def _eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, imperfect ε-predictor (any function of x and t will do)."""
    return torch.tanh(1.3 * x.flip(1) - 0.7 * x + t[:, None])


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = 0.01 + 0.98 * torch.rand(n, generator=g, dtype=torch.float64)
    return x0, eps, t


def test_cfm_loss_is_the_squared_error_to_eps_minus_x0_on_the_rectified_flow() -> None:
    x0, eps, t = _batch(300, 0)
    u = convert_model(_eps_model, RectifiedFlowPath(), src="eps", dst="velocity")
    loss = flow_matching_loss(u, x0, t=t, noise=eps)
    x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
    by_hand = ((u(x_t, t) - (eps - x0)) ** 2).mean()
    assert abs(float(loss) - float(by_hand)) < 1e-12


def test_a_time_where_the_target_is_infinite_is_refused_naming_t() -> None:
    """On a VP path sigma'(0) is infinite: the loss was inf, silently; now a ValueError naming t
    before the model runs. The same t is fine on the rectified flow (whose sigma' is 1)."""
    x0, eps, _ = _batch(2, 5)
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    calls: list[int] = []

    def u(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x

    for path in (VPPath(), DiscreteVPPath(cosine_schedule(20))):
        with pytest.raises(ValueError, match=r"^t: .* not finite at t=0 "):
            flow_matching_loss(u, x0, path, t=t, noise=eps)
    assert not calls
    assert math.isfinite(float(flow_matching_loss(u, x0, RectifiedFlowPath(), t=t, noise=eps)))
    assert math.isfinite(float(flow_matching_loss(u, x0, VPPath(), t=t + 0.25, noise=eps)))


@pytest.mark.parametrize("path", [RectifiedFlowPath(), VPPath(), CosinePath()], ids=repr)
def test_flow_matching_is_an_eps_loss_with_the_implied_weighting(path) -> None:  # type: ignore[no-untyped-def]
    """Per sample: ||u_hat - u||² = ½ w(λ) (-dλ/dt) ||eps_hat - eps||² (Kingma & Gao's L_w)."""
    x0, eps, t = _batch(400, 1)
    u = convert_model(_eps_model, path, src="eps", dst="velocity")
    for i in range(0, 400, 40):  # one t per call: the loss is then that sample's error
        sl = slice(i, i + 40)
        fm = flow_matching_loss(u, x0[sl], path, t=t[sl], noise=eps[sl])
        x_t = path.sample(x0[sl], t[sl], noise=eps[sl])
        eps_err = ((_eps_model(x_t, t[sl]) - eps[sl]) ** 2).mean(1)
        w = implied_eps_weighting(path, t[sl])
        weighted = (0.5 * w * (-path.d_log_snr(t[sl])) * eps_err).mean()
        assert abs(float(fm) - float(weighted)) < 1e-10 * float(fm)


def test_rectified_flow_weightings_have_their_closed_forms() -> None:
    path = RectifiedFlowPath()
    t = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
    lam = path.log_snr(t)
    assert torch.allclose(implied_eps_weighting(path, t), torch.exp(-lam / 2), rtol=1e-12)
    ln = flow_time_density(t, "logit_normal")
    # SD3: logit-normal times multiply w by N(logit t; 0, 1) / (t (1 - t)); logit t = -λ/2
    expected = (
        torch.exp(-lam / 2) * torch.exp(-(lam**2) / 8) / math.sqrt(2 * math.pi) / (t * (1 - t))
    )
    assert torch.allclose(implied_eps_weighting(path, t, density=ln), expected, rtol=1e-12)


def test_fm_and_cfm_differ_by_a_constant_in_theta() -> None:
    """CFM(θ) - FM(θ) does not depend on θ: between two models it differs by Monte Carlo noise."""
    gmm, path = GaussianMixture.eight_gaussians(), RectifiedFlowPath()
    exact = mixture_predictor(gmm, path)
    g = torch.Generator().manual_seed(2)
    n = 40_000
    x0 = gmm.sample(n, g).double()
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    x_t = path.sample(x0, t, noise=eps)
    u_cond, u_marg = path.conditional_velocity(x0, eps, t), exact(x_t, t)
    models = [lambda x, s: -x, lambda x, s: 2 * torch.sin(x) * s[:, None]]
    gaps = []
    for m in models:
        pred = m(x_t, t)
        cfm = ((pred - u_cond) ** 2).sum(1)
        fm = ((pred - u_marg) ** 2).sum(1)
        gaps.append(cfm - fm)
    diff = gaps[0] - gaps[1]
    se = float(diff.std()) / math.sqrt(n)
    assert abs(float(diff.mean())) < 4 * se
    # and the gap itself is large: the constant is the posterior variance of the velocity
    assert float(gaps[0].mean()) > 50 * se


def test_ot_coupling_solves_the_assignment_problem() -> None:
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    paired = ot_coupling(x0, eps)
    cost = float(((x0 - paired) ** 2).sum())
    best = min(float(((x0 - eps[list(p)]) ** 2).sum()) for p in itertools.permutations(range(6)))
    assert abs(cost - best) < 1e-5
    assert sorted(paired[:, 0].tolist()) == sorted(eps[:, 0].tolist())  # a permutation of eps


def test_ot_coupling_in_the_loss_reorders_the_noise_only() -> None:
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    t = torch.rand(64, generator=g)
    a = flow_matching_loss(lambda x, s: x, x0, t=t, noise=ot_coupling(x0, eps))
    b = flow_matching_loss(lambda x, s: x, x0, t=t, noise=eps, coupling="ot")
    assert float(a) == float(b)


def test_time_draws_stay_inside_the_open_interval_even_where_they_round_to_an_end() -> None:
    # a logit-normal far in a tail rounds to 0 or 1 in float32 (as torch.rand returns 0 about once
    # in 2^24 draws); the VP path's target is infinite at t = 0, so the draw is moved inside
    g = torch.Generator().manual_seed(0)
    low = sample_flow_times(8, g, sampling="logit_normal", loc=-200.0)
    high = sample_flow_times(8, g, sampling="logit_normal", loc=200.0)
    assert bool((low > 0).all()) and bool((high < 1).all())
    assert float(low.max()) == torch.finfo(torch.float32).tiny
    assert float(high.min()) == 1 - torch.finfo(torch.float32).eps / 2
    x0 = torch.randn(8, 2, generator=g)
    assert math.isfinite(float(flow_matching_loss(lambda x, s: x, x0, t=low, path=VPPath())))


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal", "power"])
def test_time_draws_follow_their_density(sampling: str) -> None:
    n = 200_000
    t = sample_flow_times(n, torch.Generator().manual_seed(5), sampling=sampling)
    assert (
        t.shape == (n,) and t.dtype == torch.float32 and float(t.min()) > 0 and float(t.max()) < 1
    )
    counts = torch.histc(t.double(), bins=20, min=0, max=1)
    # bin probabilities by the midpoint rule on a fine grid (the power law's density is singular
    # at 0, but integrable: the rule's error there is O(h^(1/2)), far below the counts' noise)
    m = 2_000_000
    dens = flow_time_density((torch.arange(m, dtype=torch.float64) + 0.5) / m, sampling)
    probs = dens.reshape(20, -1).mean(1) / 20
    assert abs(float(probs.sum()) - 1) < 2e-3
    chi2 = float(((counts - n * probs) ** 2 / (n * probs)).sum())
    assert chi2 < 19 + 6 * math.sqrt(38)  # mean 19, sd sqrt(38): 20 bins, 19 degrees of freedom


def test_flow_sampler_transports_noise_to_a_gaussian_exactly() -> None:
    """For N(mu, s² I) data the flow of the rectified-flow path is known in closed form:
    x_t = (1 - t) mu + sqrt((1 - t)² s² + t²) x_1, so x_0 = mu + s x_1."""
    mu, s = torch.tensor([[1.5, -0.5]]), 0.4
    u = mixture_predictor(GaussianMixture(mu, stds=s), RectifiedFlowPath())
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ts = flow_time_grid(40)
    traj = trajectory(flow_sample, u, x_T=x_T, ts=ts, method="rk4")
    x0 = traj[-1]
    assert torch.allclose(x0, mu.double() + s * x_T, atol=1e-8)
    for t, x in zip(ts.tolist(), traj, strict=True):
        expected = (1 - t) * mu.double() + math.sqrt((1 - t) ** 2 * s**2 + t**2) * x_T
        assert torch.allclose(x, expected, atol=1e-7), t


def test_flow_sampler_draws_reproducibly_and_is_registered() -> None:
    u = mixture_predictor(GaussianMixture.eight_gaussians(), RectifiedFlowPath())
    a = flow_sample(u, shape=(50, 2), steps=4, generator=torch.Generator().manual_seed(7))
    b = get_sampler("flow_ode")(
        u, None, (50, 2), steps=4, generator=torch.Generator().manual_seed(7)
    )
    assert torch.equal(a, b) and a.dtype == torch.float32
    kw = dict(shape=(5, 2), steps=3, dtype=torch.float64)
    traj = trajectory(flow_sample, u, generator=torch.Generator().manual_seed(1), **kw)
    x = flow_sample(u, generator=torch.Generator().manual_seed(1), **kw)  # type: ignore[arg-type]
    assert len(traj) == 4 and x.dtype == torch.float64 and torch.equal(traj[-1], x)


def test_flow_sampler_passes_t_in_the_dtype_of_x() -> None:
    seen = []

    def u(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t.dtype)
        return torch.zeros_like(x)

    flow_sample(u, shape=(3, 2), steps=2, method="heun")
    assert seen == [torch.float32] * 4


def test_straightness_is_zero_on_lines_and_positive_on_curves() -> None:
    ts = flow_time_grid(50)
    g = torch.Generator().manual_seed(8)
    x1, x0 = torch.randn(10, 2, generator=g, dtype=torch.float64), torch.randn(10, 2, generator=g)
    line = [t * x1 + (1 - t) * x0.double() for t in ts.tolist()]
    assert float(straightness(line, ts).abs().max()) < 1e-20
    # x_t = x1 t + c t (1 - t): dx/dt - chord = c (1 - 2t), and ∫_0^1 (1 - 2t)² dt = 1/3
    c = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    curve = [t * x1 + c * t * (1 - t) for t in ts.tolist()]
    assert torch.allclose(
        straightness(curve, ts), torch.full((10,), 1 / 3, dtype=torch.float64), rtol=1e-3
    )


def test_bad_inputs_raise_clear_errors() -> None:
    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="time_sampling|sampling must be one of"):
        flow_matching_loss(lambda x, t: x, x0, time_sampling="beta")
    with pytest.raises(ValueError, match="coupling must be one of"):
        flow_matching_loss(lambda x, t: x, x0, coupling="sinkhorn")
    with pytest.raises(ValueError, match="velocity_model must return a tensor of shape"):
        flow_matching_loss(lambda x, t: x[:, :1], x0)
    with pytest.raises(TypeError, match="velocity_model must be callable"):
        flow_matching_loss(3, x0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="noise must have the same shape as x0"):
        flow_matching_loss(lambda x, t: x, x0, noise=torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        flow_matching_loss(lambda x, t: x, x0, t=torch.full((4,), 2.0))
    with pytest.raises(TypeError, match="path must be a GaussianPath"):
        flow_matching_loss(lambda x, t: x, x0, "rf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must lie in"):
        sample_flow_times(5, sampling="logit_normal", scale=0.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_flow_times(0)
    with pytest.raises(
        ValueError, match="x0 must have the same shape|noise must have the same shape"
    ):
        ot_coupling(torch.zeros(4, 2), torch.zeros(5, 2))
    u = lambda x, t: x  # noqa: E731
    with pytest.raises(TypeError, match="exactly one of steps"):
        flow_sample(u, shape=(2, 2))
    with pytest.raises(TypeError, match="exactly one of steps"):
        flow_sample(u, shape=(2, 2), steps=2, ts=flow_time_grid(2))
    with pytest.raises(ValueError, match="strictly decreasing"):
        flow_sample(u, shape=(2, 2), ts=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"ts must lie in \[0, 1\]"):
        flow_sample(u, shape=(2, 2), ts=torch.tensor([2.0, 0.0]))
    with pytest.raises(ValueError, match="method must be one of"):
        flow_sample(u, shape=(2, 2), steps=2, method="dopri5")
    with pytest.raises(TypeError, match="give shape"):
        flow_sample(u, steps=2)
    with pytest.raises(ValueError, match="trajectory must be a list of 3"):
        straightness([torch.zeros(2, 2)], flow_time_grid(2))


_Z, _G = torch.zeros(2, 2), flow_time_grid(2)
_MONOTONE = "ts must hold at least 2 strictly monotone"


@pytest.mark.parametrize(
    ("trajectory", "ts", "error", "match"),
    [
        (None, _G, TypeError, "trajectory must be a list of tensors"),
        (torch.zeros(3, 2), _G, TypeError, "trajectory must be a list"),  # not a stack
        ([_Z, "a", _Z], _G, TypeError, r"trajectory\[1\] must be a torch.Tensor"),
        ([_Z.long()] * 3, _G, TypeError, r"trajectory\[0\] must be a floating"),
        ([_Z, torch.zeros(2, 3), _Z], _G, ValueError, r"trajectory\[1\] must have the same shape"),
        ([torch.zeros(2)] * 3, _G, ValueError, r"trajectory\[0\] must have at least 2"),
        ([_Z] * 3, torch.tensor([1.0, 1.0, 0.0]), ValueError, _MONOTONE),
        ([_Z] * 3, torch.tensor([1.0, 0.0, 0.5]), ValueError, _MONOTONE),
        ([_Z] * 3, torch.tensor([1.0, float("nan"), 0.0]), ValueError, "ts contains non-finite"),
        ([_Z], torch.tensor([1.0]), ValueError, _MONOTONE),
        ([_Z] * 3, [1.0, 0.5, 0.0], TypeError, "ts must be a torch.Tensor"),
        ([_Z] * 3, torch.tensor([2, 1, 0]), TypeError, "ts must be a floating"),
    ],
)
def test_straightness_refuses_bad_input_naming_it(
    trajectory: object, ts: object, error: type, match: str
) -> None:
    """Never a silent NaN (a repeated or NaN time) nor a raw torch error."""
    with pytest.raises(error, match=match):
        straightness(trajectory, ts)  # type: ignore[arg-type]


def test_straightness_takes_a_tuple_and_an_increasing_grid() -> None:
    ts = flow_time_grid(4)
    g = torch.Generator().manual_seed(3)
    x1, c = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.tensor([[0.0, 2.0]])
    curve = [t * x1 + c * t * (1 - t) for t in ts.tolist()]
    want = straightness(curve, ts)
    assert bool((want > 0).all())
    assert torch.equal(straightness(tuple(curve), ts), want)
    assert torch.equal(straightness(torch.stack(curve), ts), want)  # the states stacked (K, B, D)
    torch.testing.assert_close(straightness(curve[::-1], ts.flip(0)), want)
    with pytest.raises(TypeError, match=r"^trajectory\[2\] must have trajectory\[0\]'s dtype"):
        straightness(curve[:2] + [curve[2].float()] + curve[3:], ts)


def test_scaled_time_feeds_the_network_scaled_times() -> None:
    seen = []

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            seen.append(t)
            return x

    out = ScaledTime(Net(), 1000.0)(torch.zeros(2, 2), torch.tensor([0.25, 1.0]))
    assert out.shape == (2, 2) and torch.equal(seen[0], torch.tensor([250.0, 1000.0]))
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        ScaledTime(lambda x, t: x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale must lie in"):
        ScaledTime(Net(), 0.0)


def test_flow_sample_from_a_given_x_t_draws_nothing_from_the_path_prior() -> None:
    """With ``x_T`` given, the prior ``N(0, sigma(1)^2 I)`` is not drawn, so its scale is not
    checked either (a path of negative sigma, flipped noise, still integrates from ``x_T``)."""
    from minidiff.paths import PathCoefficients, RectifiedFlowPath
    from minidiff.samplers.flow import flow_sample

    class Flipped(RectifiedFlowPath):
        def _coefficients(self, t: torch.Tensor) -> PathCoefficients:
            c = super()._coefficients(t)
            return PathCoefficients(c.alpha, -c.sigma, c.d_alpha, -c.d_sigma)

    x_T = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    out = flow_sample(lambda x, t: -x, path=Flipped(), x_T=x_T, steps=3)
    assert out.shape == (4, 2) and bool(torch.isfinite(out).all())
