"""Score matching: DSM optimum = exact noised score, ISM = ESM - const, SSM = ISM in expectation,
a tiny noise-conditional model trained with DSM, the VP eps loss, and error paths."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import GaussianMixture
from minidiff.losses import dsm_loss, esm_loss, geometric_sigmas, ism_loss, ssm_loss, vp_eps_loss
from minidiff.nn import NoiseConditionalScoreMLP

GMM = GaussianMixture.default_2d()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact(x: torch.Tensor) -> torch.Tensor:
    return GMM.marginal_score(x, 1.0, 0.0)


def perturbed(x: torch.Tensor) -> torch.Tensor:
    return exact(x) + 0.3 * torch.tanh(x) - 0.1


def mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.detach().double()
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def test_geometric_sigmas() -> None:
    s = geometric_sigmas(10.0, 0.01, 7)
    assert s.shape == (7,) and s.dtype == torch.float64
    assert float(s[0]) == pytest.approx(10.0) and float(s[-1]) == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))
    for bad in [(0.01, 10.0, 5), (1.0, 0.0, 5), (1.0, 0.1, 1), (float("inf"), 0.1, 4)]:
        with pytest.raises(ValueError):
            geometric_sigmas(*bad)


def test_dsm_formula_with_given_noise_and_levels() -> None:
    x0 = torch.randn(6, 2, generator=gen(0))
    z = torch.randn(6, 2, generator=gen(1))
    levels = torch.tensor([0.2, 1.5])
    idx = torch.tensor([0, 1, 0, 1, 1, 0])
    model = lambda x, s: -x / (1 + s[:, None] ** 2)  # noqa: E731
    sig = levels[idx]
    xt = x0 + sig[:, None] * z
    per = 0.5 * ((model(xt, sig) + z / sig[:, None]) ** 2).sum(1)
    got = dsm_loss(model, x0, levels, sigma_idx=idx, noise=z, reduction="none")
    assert torch.allclose(got, sig**2 * per, atol=1e-6)
    got1 = dsm_loss(model, x0, levels, sigma_idx=idx, noise=z, weighting="none")
    assert torch.allclose(got1, per.mean(), atol=1e-6)
    assert torch.allclose(
        dsm_loss(model, x0, 0.2, noise=z),
        (0.04 * 0.5 * ((model(x0 + 0.2 * z, torch.full((6,), 0.2)) + z / 0.2) ** 2).sum(1)).mean(),
    )


def test_dsm_at_the_exact_noised_score_is_lowest_and_gaps_equal_esm() -> None:
    # DSM(s) = ESM_{q_sigma}(s) + C: with the same (x0, z) for every candidate, the loss gap to the
    # exact score equals 1/2 E||s - s*||^2 up to Monte Carlo error.
    sigma, n = 0.4, 20000
    x0 = GMM.sample(n, generator=gen(2)).double()
    z = torch.randn(n, 2, generator=gen(3), dtype=torch.float64)
    xt = x0 + sigma * z
    star = lambda x, s: GMM.marginal_score(x, 1.0, sigma)  # noqa: E731
    base = dsm_loss(star, x0, sigma, noise=z, weighting="none", reduction="none")
    for c in (0.15, -0.15):
        for cand in (lambda x, s, c=c: star(x, s) * (1 + c), lambda x, s, c=c: star(x, s) + c):
            d = dsm_loss(cand, x0, sigma, noise=z, weighting="none", reduction="none") - base
            gap, se = mean_se(d)
            esm_gap = float((0.5 * ((cand(xt, None) - star(xt, None)) ** 2).sum(1)).mean())
            assert gap > 0
            assert abs(gap - esm_gap) < 5 * se + 1e-9, (gap, esm_gap, se)


def test_dsm_regression_target_averages_to_the_noised_score() -> None:
    # The DSM minimiser is E[-(x~ - x0)/sigma^2 | x~] = grad log q_sigma(x~). Within a small cell
    # around a point, the tower rule gives
    # E[target | x~ in cell] = E[grad log q_sigma(x~) | x~ in cell].
    sigma, n = 0.5, 200_000
    x0 = GMM.sample(n, generator=gen(4)).double()
    z = torch.randn(n, 2, generator=gen(5), dtype=torch.float64)
    xt = x0 + sigma * z
    target = -z / sigma
    score = GMM.marginal_score(xt, 1.0, sigma)
    for centre in ([-1.5, -0.5], [-0.3, 0.2], [1.2, 1.0], [0.8, -1.4], [0.3, -0.5], [-2.2, -1.0]):
        inside = ((xt - torch.tensor(centre, dtype=torch.float64)) ** 2).sum(1) < 0.15**2
        assert int(inside.sum()) > 300
        t_in, s_in = target[inside], score[inside]
        se = t_in.std(0) / math.sqrt(int(inside.sum()))
        assert bool(((t_in.mean(0) - s_in.mean(0)).abs() < 5 * se).all()), (
            centre,
            t_in.mean(0),
            s_in.mean(0),
        )
    # and the target is *not* the clean score (sanity: the check can fail)
    clean = GMM.marginal_score(xt, 1.0, 0.0)
    assert float(((clean - score) ** 2).sum(1).mean()) > 0.1


def test_ism_equals_esm_minus_a_model_independent_constant() -> None:
    x = GMM.sample(8000, generator=gen(6)).double()
    s_star = exact(x)
    diffs = {}
    for name, f in (("exact", exact), ("perturbed", perturbed)):
        diffs[name] = esm_loss(f, x, s_star, reduction="none") - ism_loss(f, x, reduction="none")
    const = 0.5 * (s_star**2).sum(1)  # E[ESM - ISM] = 1/2 E||grad log p||^2
    for name, d in diffs.items():
        m, se = mean_se(d - const)
        assert abs(m) < 5 * se, (name, m, se)
    m, se = mean_se(diffs["exact"] - diffs["perturbed"])
    assert abs(m) < 5 * se
    assert ism_loss(exact, x).item() < ism_loss(perturbed, x).item()


def test_ism_trace_is_exact_for_a_linear_score() -> None:
    A = torch.tensor([[-2.0, 0.5], [0.3, -1.0]], dtype=torch.float64)
    x = torch.randn(5, 2, generator=gen(7), dtype=torch.float64)
    got = ism_loss(lambda y: y @ A.T, x, reduction="none")
    assert torch.allclose(got, -3.0 + 0.5 * ((x @ A.T) ** 2).sum(1))


def test_ssm_equals_ism_in_expectation_and_vr_has_lower_variance() -> None:
    x = GMM.sample(6000, generator=gen(8)).double()
    ism = ism_loss(perturbed, x, reduction="none")
    ssm = ssm_loss(perturbed, x, n_projections=2, generator=gen(9), reduction="none")
    vr = ssm_loss(
        perturbed, x, n_projections=2, generator=gen(9), variance_reduced=True, reduction="none"
    )
    for est in (ssm, vr):
        m, se = mean_se(est - ism)
        assert abs(m) < 5 * se, (m, se)
    # differences between two models: SSM and ISM agree (same projections for both models)
    d_ssm = ssm - ssm_loss(exact, x, n_projections=2, generator=gen(9), reduction="none")
    d_ism = ism - ism_loss(exact, x, reduction="none")
    m, se = mean_se(d_ssm - d_ism)
    assert abs(m) < 5 * se, (m, se)
    esm_gap = float(esm_loss(perturbed, x, exact(x)))
    m, se = mean_se(d_ism)
    assert abs(m - esm_gap) < 5 * se and m > 0
    # sliced loss with a linear score: v^T A v has expectation tr A exactly
    A = torch.tensor([[-2.0, 0.5], [0.3, -1.0]], dtype=torch.float64)
    y = torch.zeros(4000, 2, dtype=torch.float64)
    m, se = mean_se(ssm_loss(lambda u: u @ A.T, y, generator=gen(10), reduction="none"))
    assert abs(m + 3.0) < 5 * se


def test_losses_give_gradients_to_a_model() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    x = torch.randn(32, 2, generator=gen(11))
    for loss in (ism_loss(net, x), ssm_loss(net, x, generator=gen(12)), esm_loss(net, x, exact(x))):
        grads = torch.autograd.grad(loss, list(net.parameters()))
        assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_noise_conditional_mlp_shapes_and_sigma_scaling() -> None:
    torch.manual_seed(0)
    m = NoiseConditionalScoreMLP(hidden=32, n_layers=2)
    torch.nn.init.normal_(m.net.output.weight)  # the output layer starts at zero
    x = torch.randn(5, 2)
    sig = torch.tensor([0.1, 0.5, 1.0, 2.0, 0.1])
    out = m(x, sig)
    assert out.shape == (5, 2)
    assert torch.allclose(m(x, 0.5), m(x, torch.full((5,), 0.5)))
    raw = NoiseConditionalScoreMLP(hidden=32, n_layers=2, scale_by_sigma=False)
    raw.load_state_dict(m.state_dict())
    assert torch.allclose(out * sig[:, None], raw(x, sig), atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        m(x, torch.ones(3))
    with pytest.raises(ValueError, match="sigma"):
        m(x, -1.0)
    with pytest.raises(TypeError, match="sigma"):
        m(x, "1")  # type: ignore[arg-type]


def test_tiny_dsm_training_learns_the_noised_score() -> None:
    # Mechanics (the notebook trains longer and asserts a tighter bound): a few hundred DSM steps
    # bring the q_sigma-weighted relative error of the score well below that of the zero model.
    torch.manual_seed(0)
    sigmas = geometric_sigmas(1.0, 0.2, 4).float()
    model = NoiseConditionalScoreMLP(hidden=64, n_layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = gen(13)
    for _ in range(200):
        x0 = GMM.sample(128, generator=g)
        loss = dsm_loss(model, x0, sigmas, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sigma = 0.5
    xt = GMM.sample(4000, generator=gen(14)) + sigma * torch.randn(4000, 2, generator=gen(15))
    with torch.no_grad():
        err = ((model(xt, sigma) - GMM.marginal_score(xt, 1.0, sigma)) ** 2).sum(1).mean()
    ref = (GMM.marginal_score(xt, 1.0, sigma) ** 2).sum(1).mean()
    rel = math.sqrt(float(err / ref))
    assert rel < 0.35, rel


class _StandIn:
    """A VP process with the same contract as minidiff.sde.VPSDE (duck-typed)."""

    t_min = 1e-3
    T_end = 1.0

    def marginal_coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_alpha = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
        return log_alpha.exp(), (1 - (2 * log_alpha).exp()).sqrt()


def _sdes() -> list[object]:
    out: list[object] = [_StandIn()]
    try:
        from minidiff.sde import VPSDE
    except ImportError:  # pragma: no cover - the SDE module is part of the package
        return out
    out.append(VPSDE())
    return out


@pytest.mark.parametrize("sde", _sdes(), ids=lambda s: type(s).__name__)
def test_vp_eps_loss_formula_gradients_and_optimum(sde: object) -> None:
    from minidiff.nn import TimeMLP

    x0 = GMM.sample(64, generator=gen(16))
    t = torch.rand(64, generator=gen(17)) * 0.9 + 0.05
    z = torch.randn(64, 2, generator=gen(18))
    model = TimeMLP(hidden=32, n_layers=2, time_scale=1000.0)
    torch.nn.init.normal_(model.output.weight, std=0.1)
    a, s = sde.marginal_coefficients(t)  # type: ignore[attr-defined]
    xt = a.float()[:, None] * x0 + s.float()[:, None] * z
    manual = ((z - model(xt, t)) ** 2).mean()
    got = vp_eps_loss(model, x0, sde, t=t, noise=z)
    assert got.shape == () and torch.allclose(got, manual, atol=1e-6)
    grads = torch.autograd.grad(got, list(model.parameters()))
    assert any(g.abs().sum() > 0 for g in grads)

    # the exact E[eps | x_t] from the mixture beats predicting zero
    def oracle(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        aa, ss = sde.marginal_coefficients(tt)  # type: ignore[attr-defined]
        return (x - aa.float()[:, None] * GMM.posterior_mean(x, aa, ss)) / ss.float()[:, None]

    big = GMM.sample(2000, generator=gen(19))
    l_oracle = vp_eps_loss(oracle, big, sde, gen(20))
    l_zero = vp_eps_loss(lambda x, tt: torch.zeros_like(x), big, sde, gen(20))
    assert float(l_zero) == pytest.approx(1.0, abs=0.08)
    assert float(l_oracle) < 0.8 * float(l_zero)
    # t is drawn in [t_min, 1]
    seen: list[torch.Tensor] = []
    vp_eps_loss(lambda x, tt: seen.append(tt) or torch.zeros_like(x), big, sde, gen(21), t_min=0.5)
    assert float(seen[0].min()) >= 0.5 and float(seen[0].max()) <= 1.0


def test_vp_eps_loss_reads_the_sdes_t_min_and_nothing_else() -> None:
    # the smallest time is the SDE's ``t_min``; an ``eps`` attribute (its old name) is not read
    class OldName(_StandIn):
        eps = 0.9

    class WithTMin(_StandIn):
        t_min = 0.9

    x0 = torch.zeros(256, 2)
    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        seen.append(tt)
        return torch.zeros_like(x)

    vp_eps_loss(spy, x0, WithTMin(), gen(22))
    vp_eps_loss(spy, x0, OldName(), gen(22))
    assert float(seen[0].min()) >= 0.9
    assert float(seen[1].min()) < 0.5  # drawn from [1e-3, 1], the default


def test_vp_eps_loss_errors() -> None:
    x0 = torch.zeros(4, 2)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(TypeError, match="marginal_coefficients"):
        vp_eps_loss(zero, x0, object())
    with pytest.raises(ValueError, match="t_min"):
        vp_eps_loss(zero, x0, _StandIn(), t_min=1.0)
    with pytest.raises(ValueError, match="t must have shape"):
        vp_eps_loss(zero, x0, _StandIn(), t=torch.ones(3))
    with pytest.raises(ValueError, match="t must lie"):
        vp_eps_loss(zero, x0, _StandIn(), t=torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="noise"):
        vp_eps_loss(zero, x0, _StandIn(), noise=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="model must return"):
        vp_eps_loss(lambda x, t: x[:, :1], x0, _StandIn())


def test_score_loss_errors() -> None:
    x = torch.zeros(4, 2)
    model = lambda y, s: -y  # noqa: E731
    with pytest.raises(ValueError, match="sigmas"):
        dsm_loss(model, x, torch.tensor([0.5, -1.0]))
    with pytest.raises(TypeError, match="sigmas"):
        dsm_loss(model, x, "0.5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma_idx"):
        dsm_loss(model, x, torch.tensor([0.5, 1.0]), sigma_idx=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match="sigma_idx"):
        dsm_loss(model, x, torch.tensor([0.5, 1.0]), sigma_idx=torch.zeros(4))
    with pytest.raises(ValueError, match="noise"):
        dsm_loss(model, x, 0.5, noise=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(model, x, 0.5, weighting="sigma")
    with pytest.raises(ValueError, match="score_model must return"):
        dsm_loss(lambda y, s: y.sum(1), x, 0.5)
    with pytest.raises(ValueError, match="x must have 2 dimensions"):
        ism_loss(lambda y: y, torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="n_projections"):
        ssm_loss(lambda y: y, x, n_projections=0)
    with pytest.raises(ValueError, match="reduction"):
        ism_loss(lambda y: y, x, reduction="sum")
    with pytest.raises(ValueError, match="true_score"):
        esm_loss(lambda y: y, x, torch.zeros(4, 3))
