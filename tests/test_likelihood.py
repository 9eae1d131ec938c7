"""Log-likelihood through the probability-flow ODE, Hutchinson's estimator, bits/dim."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import GaussianMixture
from minidiff.likelihood import bits_per_dim, divergence, ode_log_likelihood, uniform_dequantize
from minidiff.samplers import NonFiniteSampleError
from minidiff.sde import VESDE, VPSDE, score_fn_from_mixture

GMM = GaussianMixture.default_2d()


@pytest.fixture(scope="module")
def points() -> torch.Tensor:
    return GMM.sample(300, torch.Generator().manual_seed(0)).double()


@pytest.fixture(scope="module")
def exact_ll(points: torch.Tensor) -> torch.Tensor:
    sde = VPSDE()
    return ode_log_likelihood(score_fn_from_mixture(GMM, sde), sde, points, steps=50, method="heun")


def test_ode_likelihood_matches_the_mixture_density(
    points: torch.Tensor, exact_ll: torch.Tensor
) -> None:
    """Stated tolerance: mean |log p_ODE - log p| < 0.02 nats, exact score, Heun, 50 steps."""
    err = exact_ll - GMM.log_prob(points)
    assert float(err.abs().mean()) < 0.02
    assert float(err.abs().max()) < 0.1


def test_ve_sde_likelihood_and_rk4() -> None:
    sde = VESDE(sigma_min=0.01, sigma_max=10.0)
    x = GMM.sample(100, torch.Generator().manual_seed(1)).double()
    ll = ode_log_likelihood(
        score_fn_from_mixture(GMM, sde), sde, x, steps=40, method="rk4", t_start=1e-4
    )
    assert float((ll - GMM.log_prob(x)).abs().mean()) < 0.05


def test_likelihood_of_a_wrong_model_is_wrong(points: torch.Tensor) -> None:
    """The check has teeth: the score of another mixture gives a different log-likelihood."""
    sde = VPSDE()
    other = GaussianMixture(GMM.means * 1.2, covs=GMM.covs, weights=GMM.weights)
    ll = ode_log_likelihood(score_fn_from_mixture(other, sde), sde, points[:50], steps=20)
    assert float((ll - GMM.log_prob(points[:50])).abs().mean()) > 0.2


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(points: torch.Tensor, exact_ll: torch.Tensor, probe: str) -> None:
    """Each point's Hutchinson estimate (one probe) minus the exact-divergence value has mean 0;
    the mean over 300 points must lie within 4 standard errors of 0, and the spread must be > 0."""
    sde = VPSDE()
    ll = ode_log_likelihood(
        score_fn_from_mixture(GMM, sde),
        sde,
        points,
        steps=50,
        divergence="hutchinson",
        probe=probe,
        generator=torch.Generator().manual_seed(3),
    )
    d = ll - exact_ll
    se = float(d.std()) / math.sqrt(d.numel())
    assert se > 1e-4
    assert abs(float(d.mean())) < 4 * se, (float(d.mean()), se)


def test_hutchinson_with_many_probes_converges(
    points: torch.Tensor, exact_ll: torch.Tensor
) -> None:
    sde = VPSDE()
    s = score_fn_from_mixture(GMM, sde)
    x = points[:40]
    one = ode_log_likelihood(
        s, sde, x, steps=20, divergence="hutchinson", generator=torch.Generator().manual_seed(0)
    )
    many = ode_log_likelihood(
        s,
        sde,
        x,
        steps=20,
        divergence="hutchinson",
        n_probes=64,
        generator=torch.Generator().manual_seed(0),
    )
    ref = ode_log_likelihood(s, sde, x, steps=20)
    assert float((many - ref).std()) < 0.5 * float((one - ref).std())


def test_divergence_exact_and_rademacher_on_a_linear_map() -> None:
    A = torch.tensor([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 4.0, 0.25]], dtype=torch.float64)
    x = torch.randn(
        5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    ).requires_grad_(True)
    fx = x @ A.T
    assert torch.allclose(
        divergence(fx, x), torch.full((5,), float(A.trace()), dtype=torch.float64)
    )
    # all 8 sign vectors: the Rademacher average is the trace exactly
    signs = torch.tensor(
        [[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=torch.float64
    )
    probes = signs[:, None, :].expand(8, 5, 3)
    assert torch.allclose(
        divergence(fx, x, probes=probes), torch.full((5,), float(A.trace()), dtype=torch.float64)
    )


def test_a_score_without_gradients_is_refused_not_silently_wrong() -> None:
    # Under torch.no_grad() the score's part of div F used to vanish: about -13 nats instead of
    # the closed form's -3. The same score with its graph gives the closed form.
    net = torch.nn.Linear(2, 2)
    sde = VPSDE()
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))

    def score_grad(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        return -x_ + 0 * net(x_)

    @torch.no_grad()
    def score_nograd(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        return -x_ + 0 * net(x_)

    ll = ode_log_likelihood(score_grad, sde, x, steps=10)
    closed = -0.5 * (x**2).sum(1) - math.log(2 * math.pi)  # N(0, I) stays N(0, I)
    assert torch.allclose(ll, closed, atol=0.05), (ll, closed)
    with pytest.raises(ValueError, match="score_fn must be differentiable"):
        ode_log_likelihood(score_nograd, sde, x, steps=10)
    with torch.inference_mode(), pytest.raises(ValueError, match="score_fn .*inference_mode"):
        ode_log_likelihood(lambda x_, t_: -x_, sde, x.clone(), steps=2)
    with torch.no_grad():  # the caller's no_grad does not reach the score's graph
        assert torch.allclose(ode_log_likelihood(score_grad, sde, x, steps=10), ll)


def test_a_field_with_a_graph_only_through_parameters_is_refused() -> None:
    """A graph through the parameters but not through x would count as divergence-free: the
    likelihood would be silently wrong (about -12 nats instead of -2.3 here)."""
    lin = torch.nn.Linear(2, 2).double()
    x = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="fx has an autograd graph, but not back to x"):
        divergence(lin(x.detach()), x)

    def detached(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        return -x_.detach() + 0 * lin.bias.sum()

    with pytest.raises(ValueError, match="score_fn must be differentiable in x: .*not back to x"):
        ode_log_likelihood(detached, VPSDE(), x.detach(), steps=10)


def test_divergence_refuses_probes_and_fields_that_would_bias_it() -> None:
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    fx = 2.0 * x  # trace 6
    with pytest.raises(ValueError, match="probes must have shape"):
        divergence(fx, x, probes=torch.ones(8, 4, 1))  # broadcast: a biased estimate
    with pytest.raises(ValueError, match="fx has no autograd graph"):
        divergence(fx.detach(), x)
    with pytest.raises(ValueError, match="x must require grad"):
        divergence(fx, x.detach())
    assert torch.allclose(divergence(fx, x, probes=torch.ones(1, 4, 3)), torch.full((4,), 6.0))


def test_bits_per_dim_convention() -> None:
    D = 3 * 8 * 8
    # a uniform density over the dequantised cube [-1, 256/127.5 - 1)^D is exactly 8 bits/dim
    ll_uniform = torch.tensor([-D * math.log(256 / 127.5)], dtype=torch.float64)
    assert torch.allclose(bits_per_dim(ll_uniform, D), torch.tensor([8.0], dtype=torch.float64))
    assert torch.allclose(
        bits_per_dim(torch.tensor([-D * math.log(2.0)]), D, scale=1.0), torch.tensor([1.0])
    )
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(ll_uniform, 0)
    with pytest.raises(ValueError, match="scale"):
        bits_per_dim(ll_uniform, D, scale=0.0)


def test_uniform_dequantize_stays_in_the_pixel_bin() -> None:
    k = torch.randint(0, 256, (4, 3, 5, 5), generator=torch.Generator().manual_seed(0)).double()
    x = k / 127.5 - 1
    y = uniform_dequantize(x, torch.Generator().manual_seed(1))
    assert bool(((y - x) >= 0).all()) and bool(((y - x) < 1 / 127.5).all())


def test_errors() -> None:
    sde = VPSDE()
    s = score_fn_from_mixture(GMM, sde)
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ode_log_likelihood(s, sde, x, steps=0)
    with pytest.raises(ValueError, match="method must be one of"):
        ode_log_likelihood(s, sde, x, steps=3, method="dopri5")
    with pytest.raises(ValueError, match="divergence must be one of"):
        ode_log_likelihood(s, sde, x, steps=3, divergence="approx")
    with pytest.raises(ValueError, match="probe must be one of"):
        ode_log_likelihood(s, sde, x, steps=3, divergence="hutchinson", probe="uniform")
    with pytest.raises(ValueError, match="score_fn must return a tensor of shape"):
        ode_log_likelihood(lambda x_, t_: x_[:, :1], sde, x, steps=3)
    with pytest.raises(TypeError, match="sde must be an SDE"):
        ode_log_likelihood(s, None, x, steps=3)  # type: ignore[arg-type]

    def nan_late(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        return torch.where(t_[:, None] > 0.5, x_ * float("nan"), -x_)

    with pytest.raises(NonFiniteSampleError, match=r"ode_log_likelihood .*step \d+ of 10"):
        ode_log_likelihood(nan_late, sde, x, steps=10)


def test_t_start_is_where_the_density_is_measured() -> None:
    """ode_log_likelihood(t_start=t0) estimates log p_{t0} (the noised data), not log p_0.

    At t0 = 0.2 the two differ by far more than the solver's error, so the test tells them apart.
    """
    sde = VPSDE()
    x = GMM.sample(60, torch.Generator().manual_seed(5)).double()
    t0 = 0.2
    ll = ode_log_likelihood(score_fn_from_mixture(GMM, sde), sde, x, steps=40, t_start=t0)
    a, s = sde.marginal_coefficients(t0)
    log_p_t0 = GMM.noised(float(a), float(s)).log_prob(x)
    assert float((ll - log_p_t0).abs().mean()) < 0.02
    assert float((ll - GMM.log_prob(x)).abs().mean()) > 0.1
