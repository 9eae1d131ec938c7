"""Chapter 3: Gaussian KL, the discretized decoder, the terms of the bound, L_simple."""

from __future__ import annotations

import math

import pytest
import torch

import minidiff as md
from minidiff import linear_schedule, simple_loss
from minidiff.losses import (
    affine_model_nll,
    affine_reverse_marginal,
    sample_timesteps,
    timestep_probabilities,
)

SCHED = md.linear_schedule(20, beta_start=1e-3, beta_end=0.3)
GAUSS = md.GaussianMixture(
    torch.tensor([[0.5]]), stds=0.4
)  # x0 ~ N(0.5, 0.4^2): eps-oracle is affine


def _gll(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return md.gaussian_log_likelihood(x, mean, var.expand_as(x)).reshape(x.shape[0], -1).sum(1)


def _chain_bound(eps_model, x0, s, variance, g):  # type: ignore[no-untyped-def]
    """E_q[log q(x_{1:T} | x_0) - log p(x_{0:T})] from one whole forward chain per sample."""
    xs = [x0]
    log_q = torch.zeros(x0.shape[0], dtype=x0.dtype)
    for t in range(1, s.T + 1):
        x = md.q_step(xs[-1], t, s, generator=g)
        log_q += _gll(x, s.alphas[t].sqrt() * xs[-1], s.betas[t].reshape(1, 1))
        xs.append(x)
    log_p = _gll(xs[-1], torch.zeros_like(x0), torch.ones(1, 1, dtype=x0.dtype))
    for t in range(s.T, 0, -1):
        mean, var = md.p_mean_var(eps_model, xs[t], t, s, variance, for_density=True)
        log_p += _gll(xs[t - 1], mean, var)
    return log_q - log_p


# ---------------------------------------------------------------- gaussian_kl
def test_gaussian_kl_zero_for_equal_and_positive_otherwise() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(50, generator=g, dtype=torch.float64)
    v = torch.rand(50, generator=g, dtype=torch.float64) + 0.1
    torch.testing.assert_close(md.gaussian_kl(m, v, m, v), torch.zeros(50, dtype=torch.float64))
    assert bool((md.gaussian_kl(m, v, m + 0.1, v * 1.3) > 0).all())


def test_gaussian_kl_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(1)
    m1, v1, m2, v2 = (torch.tensor(x, dtype=torch.float64) for x in (0.3, 0.5, -0.4, 1.7))
    x = m1 + v1.sqrt() * torch.randn(400_000, generator=g, dtype=torch.float64)
    ratio = md.gaussian_log_likelihood(x, m1, v1) - md.gaussian_log_likelihood(x, m2, v2)
    se = ratio.std() / math.sqrt(x.numel())
    assert abs(ratio.mean() - md.gaussian_kl(m1, v1, m2, v2)) < 5 * se


def test_gaussian_kl_errors() -> None:
    one = torch.ones(3)
    with pytest.raises(ValueError, match="var1"):
        md.gaussian_kl(one, torch.zeros(3), one, one)
    with pytest.raises(ValueError, match="var2"):
        md.gaussian_kl(one, one, one, -one)
    with pytest.raises(TypeError, match="mean2"):
        md.gaussian_kl(one, one, 0.0, one)  # type: ignore[arg-type]


# ---------------------------------------------------------------- discretized decoder
def test_discretized_probabilities_sum_to_one() -> None:
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, log_scale in ((0.0, -2.0), (0.93, -4.0), (-1.2, 0.5), (0.3, -7.0)):
        lp = md.discretized_gaussian_log_likelihood(
            levels, torch.full_like(levels, mean), torch.full_like(levels, log_scale)
        )
        assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-9)


def test_discretized_matches_numerical_integral() -> None:
    mean, std = 0.1, 0.05
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    idx = torch.tensor([0, 100, 140, 141, 200, 255])
    x = levels[idx]
    lp = md.discretized_gaussian_log_likelihood(
        x, torch.full_like(x, mean), torch.full_like(x, math.log(std))
    )
    for xi, lpi in zip(x.tolist(), lp.tolist(), strict=True):
        lo = -1 - 20 * std - 1 if xi < -0.999 else xi - 1 / 255
        hi = 1 + 20 * std + 1 if xi > 0.999 else xi + 1 / 255
        grid = torch.linspace(lo, hi, 200_001, dtype=torch.float64)
        pdf = torch.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        prob = float(torch.trapezoid(pdf, grid))
        assert math.exp(lpi) == pytest.approx(prob, rel=1e-5, abs=1e-300)


def test_discretized_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        md.discretized_gaussian_log_likelihood(torch.tensor([1.5]), torch.zeros(1), torch.zeros(1))


# ---------------------------------------------------------------- the bound
def test_decomposed_terms_equal_direct_chain_bound() -> None:
    """L_T + sum L_{t-1} + L_0 and the unrolled bound over whole chains have the same
    expectation."""
    gm = md.GaussianMixture(torch.tensor([[-1.0], [1.0]]), stds=0.3)
    base = gm.eps_model(SCHED)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # an imperfect, nonlinear model
        return base(x, t) + 0.2 * torch.sin(3 * x)

    x0 = gm.sample(5_000, torch.Generator().manual_seed(2)).double()
    for variance in ("beta", "beta_tilde"):
        terms = md.vlb_terms(
            model, x0, SCHED, variance=variance, generator=torch.Generator().manual_seed(3)
        )
        direct = _chain_bound(model, x0, SCHED, variance, torch.Generator().manual_seed(4))
        torch.testing.assert_close(terms.total, terms.L_T + terms.L_t.sum(1) + terms.L_0)
        diff = direct.mean() - terms.total.mean()
        se = math.sqrt(direct.var() / len(direct) + terms.total.var() / len(direct))
        assert abs(diff) < 5 * se, (variance, float(diff), se)


def test_bound_exceeds_exact_nll_linear_gaussian() -> None:
    coarse = md.linear_schedule(5, beta_start=0.05, beta_end=0.6)  # few large steps: a visible gap
    model = GAUSS.eps_model(coarse)
    x0 = GAUSS.sample(5_000, torch.Generator().manual_seed(5)).double()
    terms = md.vlb_terms(model, x0, coarse, generator=torch.Generator().manual_seed(6))
    nll = affine_model_nll(model, x0, coarse)
    gap = terms.total - nll
    se = gap.std() / math.sqrt(len(gap))
    assert gap.mean() > 5 * se  # a strictly positive gap (about 0.12 nats, SE 0.008)
    # Gibbs: the model's cross-entropy is at least the data's entropy.
    true_nll = -GAUSS.log_prob(x0)
    assert nll.mean() > true_nll.mean()


def test_affine_marginal_matches_sampled_chain() -> None:
    model = GAUSS.eps_model(SCHED)
    m, C = affine_reverse_marginal(model, SCHED, 1)
    n = 20_000
    x0 = md.ddpm_sample(model, SCHED, (n, 1), generator=torch.Generator().manual_seed(7)).double()
    # ddpm_sample adds no noise at t = 1 while the density uses beta_1 there.
    var_expected = C[0, 0] - SCHED.betas[1]
    assert abs(x0.mean() - m[0]) < 5 * math.sqrt(float(var_expected) / n)
    assert abs(x0.var() - var_expected) < 5 * float(var_expected) * math.sqrt(2 / n)


def test_affine_nll_approaches_true_nll_as_T_grows() -> None:
    x0 = GAUSS.sample(200, torch.Generator().manual_seed(8)).double()
    true = -GAUSS.log_prob(x0).mean()
    gaps = [
        float(affine_model_nll(GAUSS.eps_model(s), x0, s).mean() - true)
        for s in (md.linear_schedule(T) for T in (10, 100, 1000))
    ]
    assert abs(gaps[2]) < 1e-3 < abs(gaps[0])
    assert abs(gaps[1]) < abs(gaps[0])


def test_affine_nll_rejects_nonlinear_model() -> None:
    gm = md.GaussianMixture(torch.tensor([[-1.0], [1.0]]), stds=0.3)
    with pytest.raises(ValueError, match="affine"):
        affine_model_nll(gm.eps_model(SCHED), torch.zeros(2, 1, dtype=torch.float64), SCHED)
    with pytest.raises(ValueError, match="x0"):
        affine_model_nll(GAUSS.eps_model(SCHED), torch.zeros(2, dtype=torch.float64), SCHED)


def test_affine_nll_of_a_float32_network_equals_that_of_its_float64_copy() -> None:
    """An ordinary float32 nn.Linear is called with float32 points (it failed with torch's dtype
    error on float64 probes); its NLL matches the float64 copy's to its own rounding, and a
    float32 model that is not affine is still refused."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 3)
    lin64 = torch.nn.Linear(3, 3).double()
    lin64.load_state_dict(lin.state_dict())
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    sched = md.cosine_schedule(10)
    nll32 = affine_model_nll(lambda x, t: lin(x), x0, sched)
    nll64 = affine_model_nll(lambda x, t: lin64(x), x0.double(), sched)
    assert nll32.dtype == torch.float32
    torch.testing.assert_close(nll32.double(), nll64, rtol=1e-5, atol=1e-5)
    m, _ = affine_reverse_marginal(lambda x, t: lin(x), sched, 3, dtype=torch.float32)
    assert m.dtype == torch.float64
    with pytest.raises(ValueError, match="affine"):
        affine_model_nll(lambda x, t: torch.tanh(lin(x)), x0, sched)


def test_a_model_in_another_dtype_is_a_named_error() -> None:
    """A float32 network given float64 points (affine_reverse_marginal's default dtype) or half
    data raised torch's bare dtype error: now a TypeError naming dtype or x0; any other error
    of the model passes unchanged."""
    lin = torch.nn.Linear(2, 2)
    sched = md.linear_schedule(5)
    with pytest.raises(TypeError, match=r"^dtype torch.float64 is not the dtype eps_model"):
        affine_reverse_marginal(lambda x, t: lin(x), sched, 2)
    with pytest.raises(TypeError, match=r"^x0 has dtype torch.float16.*x0.float\(\)"):
        affine_model_nll(lambda x, t: lin(x), torch.zeros(3, 2).half(), sched)

    def broken(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="^out of memory$"):
        affine_reverse_marginal(broken, sched, 2)
    with pytest.raises(ValueError, match=r"^x0 must have shape \(B, D\) with D >= 1"):
        affine_model_nll(lambda x, t: x, torch.zeros(3, 0), sched)


def test_L_T_closed_form_and_vanishes_as_T_grows() -> None:
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.0]], dtype=torch.float64)
    values = []
    for T in (10, 100, 1000):
        s = md.linear_schedule(T)  # fixed endpoints 1e-4 .. 0.02
        ab = s.alpha_bar[-1]
        closed = 0.5 * (-torch.log(1 - ab) + (1 - ab) + ab * x0**2 - 1).sum(1)
        terms = md.vlb_terms(lambda x, t: torch.zeros_like(x), x0, s)
        torch.testing.assert_close(terms.L_T, closed)
        values.append(terms.L_T)
    assert bool((values[0] > values[1]).all() and (values[1] > values[2]).all())
    assert float(values[2].max()) < 1e-3


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_kl_term_is_weighted_eps_error(variance: str) -> None:
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(8, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(8, 3, generator=g, dtype=torch.float64)
    t = torch.arange(2, 10)
    x_t = md.q_sample(x0, t, SCHED, noise=eps)
    lam = md.vlb_weights(SCHED, variance)

    def kl_and_err(model):  # type: ignore[no-untyped-def]
        mq, vq = md.q_posterior_mean_var(x0, x_t, t, SCHED)
        mp, vp = md.p_mean_var(model, x_t, t, SCHED, variance)
        kl = md.gaussian_kl(mq, vq.expand_as(x0), mp, vp.expand_as(x0)).sum(1)
        return kl, ((eps - model(x_t, t)) ** 2).sum(1)

    kl1, err1 = kl_and_err(lambda x, tt: eps + 0.3 * torch.cos(x))
    kl2, err2 = kl_and_err(lambda x, tt: 0.5 * x)
    if variance == "beta_tilde":  # identical variances: the KL is exactly the weighted error
        torch.testing.assert_close(kl1, lam[t] * err1)
        torch.testing.assert_close(kl2, lam[t] * err2)
    # Either way, KL differences between models are weighted error differences.
    torch.testing.assert_close(kl1 - kl2, lam[t] * (err1 - err2))


def test_simple_loss_by_hand() -> None:
    g = torch.Generator().manual_seed(10)
    x0 = torch.randn(5, 2, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 4, 9, 16, 20])

    def model(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * tt[:, None] / 20

    ab = SCHED.alpha_bar[t][:, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    per = ((noise - model(x_t, t)) ** 2).mean(1)
    got = md.simple_loss(model, x0, SCHED, t=t, noise=noise)
    torch.testing.assert_close(got, per.mean())
    w = md.vlb_weights(SCHED)
    torch.testing.assert_close(
        md.simple_loss(model, x0, SCHED, t=t, noise=noise, weights=w), (w[t] * per).mean()
    )


def test_simple_loss_takes_the_generator_fourth_like_the_other_losses() -> None:
    """simple_loss(m, x0, s, g) as vp_eps_loss(m, x0, sde, g) and dsm_loss(net, x0, sigmas, g):
    the same draws as generator=g; t, noise and weights stay keyword-only."""
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def model(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) * tt[:, None] / 20

    by_position = md.simple_loss(model, x0, SCHED, torch.Generator().manual_seed(3))
    by_keyword = md.simple_loss(model, x0, SCHED, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(by_position, by_keyword)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        md.simple_loss(model, x0, SCHED, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        md.simple_loss(model, x0, SCHED, None, torch.ones(6, dtype=torch.long))  # type: ignore[misc]


def test_simple_loss_and_vlb_errors() -> None:
    x0 = torch.zeros(4, 2)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="weights"):
        md.simple_loss(model, x0, SCHED, weights=torch.ones(SCHED.T))
    with pytest.raises(ValueError, match="noise"):
        md.simple_loss(model, x0, SCHED, noise=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="variance"):
        md.vlb_terms(model, x0, SCHED, variance="learned")
    with pytest.raises(ValueError, match="decoder"):
        md.vlb_terms(model, x0, SCHED, decoder="logistic")
    with pytest.raises(TypeError, match="schedule"):
        md.vlb_terms(model, x0, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps_model"):
        md.vlb_terms(lambda x, t: x[:, :1], x0, SCHED)
    with pytest.raises(ValueError, match="variance"):
        md.vlb_weights(SCHED, "sigma")


@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_sample_timesteps_follow_timestep_probabilities(power: float) -> None:
    T, n = 50, 200_000
    t = sample_timesteps(n, T, torch.Generator().manual_seed(3), power=power)
    assert t.dtype == torch.long and int(t.min()) >= 1 and int(t.max()) <= T
    probs = timestep_probabilities(T, power)
    assert probs[0] == 0 and float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    counts = torch.bincount(t, minlength=T + 1)[1:].double()
    expected = n * probs[1:]
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    # chi-square with T - 1 = 49 degrees of freedom: mean 49, sd ~10; 100 is p ~ 1e-5
    assert chi2 < 100, chi2
    if power == 2.0:  # P(t) ~ t^(-1/2): small t far more often than large t
        assert probs[1] > 5 * probs[T] and bool((probs[2:] <= probs[1:-1]).all())


def test_uniform_timesteps_keep_the_stream_of_randint() -> None:
    a = sample_timesteps(64, 1000, torch.Generator().manual_seed(9))
    b = torch.randint(1, 1001, (64,), generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.allclose(
        timestep_probabilities(1000),
        torch.full((1001,), 1e-3).index_fill(0, torch.tensor([0]), 0.0).double(),
    )


def test_drawing_t_by_power_trains_l_simple_weighted_by_t_times_probability() -> None:
    """E_{t ~ P}[l_t] = E_{t ~ U}[T P(t) l_t]: the loss on power-drawn t is a weighted L_simple."""
    schedule = linear_schedule(40)
    x0 = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0))

    def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 3.0 * x * (t[:, None].to(x.dtype) / 40)  # any fixed model whose loss grows with t

    probs = timestep_probabilities(40, 2.0)
    weights = 40 * probs
    # the target, exactly: sum over every t of P(t) times the loss at t
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    per_t = torch.stack(
        [
            simple_loss(eps_model, x0, schedule, t=torch.full((4096,), k), noise=noise)
            for k in range(1, 41)
        ]
    ).double()
    sampled = float((probs[1:] * per_t).sum())
    # Monte Carlo: power-drawn t against uniform t with weights, on fresh draws
    g = torch.Generator().manual_seed(2)
    mc_power = [
        float(
            simple_loss(
                eps_model, x0, schedule, t=sample_timesteps(4096, 40, g, power=2.0), generator=g
            )
        )
        for _ in range(20)
    ]
    mc_weighted = [
        float(simple_loss(eps_model, x0, schedule, generator=g, weights=weights)) for _ in range(20)
    ]
    a, b = sum(mc_power) / 20, sum(mc_weighted) / 20
    assert a == pytest.approx(sampled, rel=0.03) and b == pytest.approx(sampled, rel=0.03)
    # and it is a different objective from plain L_simple on this model
    assert abs(float(per_t.mean()) - sampled) > 0.1 * sampled
