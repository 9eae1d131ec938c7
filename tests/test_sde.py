"""The SDE view of diffusion: marginals, the DDPM bridge, reverse SDE / PF-ODE drifts, errors."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import GaussianMixture, linear_schedule, q_step
from minidiff._validation import check_time
from minidiff.samplers import ddpm_sample
from minidiff.sde import (
    SDE,
    VESDE,
    VPSDE,
    ReverseSDE,
    eps_model_from_score_fn,
    score_fn_from_discrete_eps_model,
    score_fn_from_eps_model,
    score_fn_from_mixture,
)


def _simulate_forward(
    sde: SDE, x0: torch.Tensor, t: float, steps: int, gen: torch.Generator
) -> torch.Tensor:
    """Euler–Maruyama on the forward SDE from 0 to t with small steps (no closed form used)."""
    x, dt = x0.clone(), t / steps
    for i in range(steps):
        s = torch.full((x.shape[0],), i * dt, dtype=torch.float64)
        x = (
            x
            + sde.drift(x, s) * dt
            + sde.diffusion(s)[:, None]
            * math.sqrt(dt)
            * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        )
    return x


@pytest.mark.parametrize(
    ("sde", "t"),
    [
        (VPSDE(), 0.3),
        (VPSDE(beta_min=1.0, beta_max=5.0), 0.6),
        (VESDE(sigma_min=0.05, sigma_max=3.0), 0.6),
    ],
)
def test_marginal_mean_std_match_simulated_forward_sde(sde: SDE, t: float) -> None:
    gen = torch.Generator().manual_seed(0)
    n = 10_000
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64).expand(n, 2)
    xt = _simulate_forward(sde, x0, t, steps=200, gen=gen)
    mean, std = sde.marginal_prob(x0[:1], t)
    emp_mean, emp_std = xt.mean(0), xt.std(0)
    s = float(std)
    # SE of the mean is s / sqrt(n); of the std about s / sqrt(2n); plus O(dt) discretisation bias
    assert torch.allclose(
        emp_mean, mean[0], atol=5 * s / math.sqrt(n) + 2e-3 * float(mean.abs().max())
    )
    assert torch.allclose(
        emp_std, torch.full((2,), s, dtype=torch.float64), atol=5 * s / math.sqrt(2 * n) + 2e-3 * s
    )


def test_vp_closed_forms() -> None:
    sde = VPSDE(beta_min=0.1, beta_max=20.0)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    alpha, sigma = sde.marginal_coefficients(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t), atol=1e-14)
    assert torch.allclose(alpha, torch.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t**2)))
    assert float(alpha[0]) == 1.0 and float(sigma[0]) == 0.0
    # d/dt log alpha = -beta/2  (finite difference)
    h = 1e-6
    d = (
        torch.log(sde.marginal_coefficients(t[1:-1] + h)[0])
        - torch.log(sde.marginal_coefficients(t[1:-1] - h)[0])
    ) / (2 * h)
    assert torch.allclose(d, -0.5 * sde.beta(t[1:-1]), rtol=1e-6)


def test_ve_closed_forms_and_prior() -> None:
    sde = VESDE(sigma_min=0.01, sigma_max=50.0)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    alpha, sigma = sde.marginal_coefficients(t)
    assert torch.equal(alpha, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(sigma**2, sde.sigma(t) ** 2 - 0.01**2)
    # g(t)^2 = d sigma(t)^2 / dt
    h = 1e-6
    dvar = (sde.sigma(0.3 + h) ** 2 - sde.sigma(0.3 - h) ** 2) / (2 * h)
    assert math.isclose(float(sde.diffusion(0.3) ** 2), float(dvar), rel_tol=1e-6)
    z = sde.prior_sampling((50_000, 2), torch.Generator().manual_seed(0))
    assert abs(float(z.std()) - 50.0) < 0.5
    ref = torch.distributions.Normal(0.0, 50.0).log_prob(z.double()).sum(1)
    assert torch.allclose(sde.prior_logp(z.double()), ref)


def test_prior_logp_is_standard_normal_for_vp() -> None:
    z = torch.randn(7, 3, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    assert torch.allclose(VPSDE().prior_logp(z), ref)


@pytest.mark.parametrize("T", [10, 1000])
def test_to_schedule_alpha_bar_is_alpha_squared(T: int) -> None:
    sde = VPSDE()
    sched = sde.to_schedule(T)
    alpha, _ = sde.marginal_coefficients(torch.arange(T + 1, dtype=torch.float64) / T)
    assert torch.allclose(sched.alpha_bar, alpha**2, rtol=1e-12, atol=0)
    # beta_i ~ beta(t)/T (at the midpoint of the interval, up to O(1/T^2))
    mid = (torch.arange(1, T + 1, dtype=torch.float64) - 0.5) / T
    assert torch.allclose(sched.betas[1:] * T, sde.beta(mid), rtol=2 * 20.0 / T)


def test_ddpm_linear_schedule_is_the_vp_sde_at_T_1000() -> None:
    sde, T = VPSDE(0.1, 20.0), 1000
    lin = linear_schedule(T)  # 1e-4 .. 0.02
    s = (torch.arange(1, T + 1, dtype=torch.float64) - 1) / (T - 1)
    assert torch.allclose(lin.betas[1:] * T, sde.beta(s), rtol=1e-12)


def test_ddpm_step_equals_euler_maruyama_step_up_to_beta_squared() -> None:
    """DDPM's q(x_i | x_{i-1}) with beta_i = beta(s) dt vs one forward EM step, same noise:
    the difference is (sqrt(1 - beta) - (1 - beta/2)) x = -beta^2/8 x + O(beta^3)."""
    sde = VPSDE(0.1, 20.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    Ts, errs, betas = [250, 500, 1000, 2000, 4000], [], []
    for T in Ts:
        sched = linear_schedule(T, 0.1 / T, 20.0 / T)
        i = T  # the largest beta
        s = torch.full((64,), (i - 1) / (T - 1), dtype=torch.float64)
        ddpm = q_step(x, i, sched, noise=z)
        dt = 1.0 / T
        em = x + sde.drift(x, s) * dt + sde.diffusion(s)[:, None] * math.sqrt(dt) * z
        errs.append(float((ddpm - em).abs().max()))
        betas.append(float(sched.betas[i]))
    slope = (math.log(errs[-1]) - math.log(errs[0])) / (math.log(Ts[-1]) - math.log(Ts[0]))
    assert -2.1 < slope < -1.9, slope
    for e, b in zip(errs, betas, strict=True):
        assert abs(e / (b**2 / 8 * float(x.abs().max())) - 1) < 0.05


def test_reverse_drift_and_pf_ode_drift() -> None:
    sde = VPSDE()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(5, generator=gen, dtype=torch.float64)
    sc = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    score_fn = lambda x_, t_: sc  # noqa: E731
    g2 = sde.diffusion(t)[:, None] ** 2
    rev, pf = sde.reverse(score_fn), sde.reverse(score_fn, probability_flow=True)
    assert torch.allclose(rev.drift(x, t), sde.drift(x, t) - g2 * sc)
    assert torch.allclose(pf.drift(x, t), sde.drift(x, t) - 0.5 * g2 * sc)
    assert torch.equal(rev.diffusion(t), sde.diffusion(t))
    assert torch.equal(pf.diffusion(t), torch.zeros_like(t))
    assert isinstance(rev, ReverseSDE) and pf.probability_flow


def test_reverse_sde_of_a_gaussian_is_consistent_with_fokker_planck() -> None:
    """For x0 ~ N(0, s0^2) the marginal is Gaussian with var v(t) = a^2 s0^2 + sigma^2; the PF-ODE
    drift is then linear, F = k(t) x with k = -beta/2 (1 - 1/v), and d v/dt = 2 k v must hold."""
    sde, s0 = VPSDE(), 0.3
    gmm = GaussianMixture(torch.zeros(1, 1), stds=s0)
    pf = sde.reverse(score_fn_from_mixture(gmm, sde), probability_flow=True)

    def var(t: float) -> float:
        a, s = sde.marginal_coefficients(t)
        return float(a**2 * s0**2 + s**2)

    for t in (0.05, 0.3, 0.8):
        k = float(pf.drift(torch.ones(1, 1, dtype=torch.float64), t))
        h = 1e-5
        dv = (var(t + h) - var(t - h)) / (2 * h)
        assert math.isclose(dv, 2 * k * var(t), rel_tol=1e-5)


def test_bridges_between_score_eps_and_ddpm() -> None:
    gmm, sde, T = GaussianMixture.default_2d(), VPSDE(), 200
    score = score_fn_from_mixture(gmm, sde)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(6, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    a, s = sde.marginal_coefficients(t)
    assert torch.allclose(score(x, t), gmm.marginal_score(x, a, s))
    # eps = -sigma score and back
    eps_cont = lambda x_, t_: -s[:, None] * score(x_, t_)  # noqa: E731
    assert torch.allclose(score_fn_from_eps_model(eps_cont, sde)(x, t), score(x, t))
    # the discrete eps model on sde.to_schedule(T) equals the exact eps model of that schedule
    sched = sde.to_schedule(T)
    tt = torch.randint(1, T + 1, (6,), generator=gen)
    eps_model = eps_model_from_score_fn(score, sde, T)
    assert torch.allclose(eps_model(x, tt), gmm.eps_model(sched)(x, tt), atol=1e-10)
    out = ddpm_sample(eps_model, sched, (4, 2), generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 2) and bool(torch.isfinite(out).all())


def test_the_bridge_for_a_ddpm_model_is_public_and_named_where_students_look() -> None:
    """A model trained on a schedule (train_toy) needs score_fn_from_discrete_eps_model: it is
    exported at the top level, and score_fn_from_eps_model's docstring sends such a model there."""
    import minidiff

    assert minidiff.score_fn_from_discrete_eps_model is score_fn_from_discrete_eps_model
    assert "score_fn_from_discrete_eps_model" in minidiff.__all__
    assert "score_fn_from_discrete_eps_model" in (score_fn_from_eps_model.__doc__ or "")
    # the exported bridge turns the exact discrete eps model into the exact score
    gmm, sde, sched = GaussianMixture.default_2d(), VPSDE(), linear_schedule(1000)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    t = torch.full((5,), 0.4, dtype=torch.float64)
    bridge = minidiff.score_fn_from_discrete_eps_model
    got = bridge(gmm.eps_model(sched), sched, round_timesteps=True)(x, t)
    assert torch.allclose(got, score_fn_from_mixture(gmm, sde)(x, t), rtol=1e-2, atol=1e-2)


def test_time_validation() -> None:
    sde = VPSDE()
    x = torch.zeros(3, 2)
    with pytest.raises(TypeError, match="floating"):
        sde.marginal_coefficients(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="t must"):
        sde.diffusion("0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sde.marginal_coefficients(1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sde.drift(x, torch.tensor([0.1, -0.2, 0.3]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        sde.drift(x, torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="finite"):
        check_time(torch.tensor([float("nan")]))
    assert sde.drift(x, 0.5).shape == (3, 2)  # a number broadcasts over the batch


def test_score_fn_returning_wrong_shape_is_named() -> None:
    rev = VPSDE().reverse(lambda x, t: x[:, :1])
    with pytest.raises(ValueError, match="score_fn must return a tensor of shape"):
        rev.drift(torch.zeros(4, 2), 0.5)
    rev = VPSDE().reverse(lambda x, t: x.numpy())
    with pytest.raises(TypeError, match="torch.Tensor"):
        rev.drift(torch.zeros(4, 2), 0.5)
    with pytest.raises(TypeError, match="callable"):
        VPSDE().reverse(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: VPSDE(beta_min=1.0, beta_max=0.5), "beta_max must be > beta_min"),
        (lambda: VPSDE(beta_min=0.0), "beta_min"),
        (lambda: VPSDE(beta_max=float("inf")), "beta_max"),
        (lambda: VESDE(sigma_min=1.0, sigma_max=1.0), "sigma_max must be > sigma_min"),
        (lambda: VESDE(sigma_min=-1.0), "sigma_min"),
        (lambda: VPSDE(t_min=0.0), "t_min"),
    ],
)
def test_constructor_errors(factory, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        factory()


def test_to_schedule_rejects_bad_T() -> None:
    with pytest.raises(ValueError, match="T must be >= 1"):
        VPSDE().to_schedule(0)


def test_vp_only_functions_flags_and_scalar_data() -> None:
    from minidiff import linear_schedule
    from minidiff.sde import VESDE, VPSDE, discrete_timestep

    with pytest.raises(TypeError, match="sde must be a VPSDE"):
        discrete_timestep(torch.tensor([0.5]), linear_schedule(100), VESDE())
    with pytest.raises(TypeError, match="probability_flow must be True or False"):
        VPSDE().reverse(lambda x, t: -x, probability_flow="no")  # type: ignore[arg-type]
    z = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(VPSDE().prior_logp(z), VPSDE().prior_logp(z[:, None]))
