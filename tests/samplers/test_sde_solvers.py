"""Reverse-SDE / PF-ODE samplers: order of accuracy, NFE, marginals with the exact score, errors."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import pytest
import torch

from minidiff import GaussianMixture, get_sampler
from minidiff.metrics import sliced_wasserstein
from minidiff.samplers import NonFiniteSampleError, SamplerState, trajectory
from minidiff.samplers.sde_solvers import (
    count_nfe,
    euler_maruyama_sample,
    heun_step,
    ode_solve,
    pf_ode_euler_sample,
    pf_ode_heun_sample,
    pf_ode_sample,
    predictor_corrector_sample,
    time_grid,
)
from minidiff.sde import VESDE, VPSDE, score_fn_from_mixture

SAMPLERS = ["euler_maruyama", "pf_ode_euler", "pf_ode_heun", "predictor_corrector"]


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_ode_solve_order_of_accuracy(method: str, order: int) -> None:
    """dx/dt = -t x has x(1) = x(0) exp(-1/2); halving the step divides the error by 2^order."""
    fn = lambda x, t: -t[:, None] * x  # noqa: E731
    x0 = torch.ones(1, 1, dtype=torch.float64)
    errs = []
    for n in (16, 32, 64):
        sol = ode_solve(fn, x0, time_grid(n, 0.0, 1.0), method=method)
        errs.append(abs(float(sol.x) - math.exp(-0.5)))
        assert sol.nfe == n * {"euler": 1, "heun": 2, "rk4": 4}[method]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.25 for r in rates), rates


def test_ode_solve_backwards_and_trajectory() -> None:
    fn = lambda x, t: x  # noqa: E731   x(t) = x(1) e^{t - 1}
    states: list[SamplerState] = []
    sol = ode_solve(
        fn,
        torch.ones(2, 1, dtype=torch.float64),
        time_grid(50, 1.0, 0.0),
        method="heun",
        on_step=states.append,
    )
    assert len(states) == 51 and torch.equal(states[-1].x, sol.x)
    assert [s.step for s in states] == list(range(51)) and states[-1].steps == 50
    assert states[0].t == 1.0 and states[-1].t == 0.0 and states[25].t == pytest.approx(0.5)
    assert torch.allclose(sol.x, torch.full((2, 1), math.exp(-1.0), dtype=torch.float64), rtol=1e-4)


def test_heun_step_is_the_trapezoid_rule_on_a_linear_field() -> None:
    fn = lambda x, t: 2.0 * x  # noqa: E731
    x = torch.tensor([[1.0]], dtype=torch.float64)
    out = heun_step(fn, x, torch.tensor([0.5], dtype=torch.float64), -0.1)
    assert float(out) == pytest.approx(1 + (-0.2 + 2 * (1 - 0.2) * -0.1) / 2)


def _counting(score_fn):  # type: ignore[no-untyped-def]
    calls = [0]

    def f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return score_fn(x, t)

    return f, calls


@pytest.mark.parametrize("name", SAMPLERS)
def test_nfe_matches_count_nfe_and_trajectory_length(name: str) -> None:
    sde, gmm = VPSDE(), GaussianMixture.default_2d()
    f, calls = _counting(score_fn_from_mixture(gmm, sde))
    traj = trajectory(name, f, sde, (16, 2), steps=7, generator=torch.Generator().manual_seed(0))
    assert calls[0] == count_nfe(name, 7)
    x = get_sampler(name)(f, sde, (16, 2), steps=7, generator=torch.Generator().manual_seed(0))
    assert len(traj) == 8 and x.shape == (16, 2) and torch.equal(traj[-1], x)


def test_count_nfe_values() -> None:
    assert count_nfe("pf_ode_heun", 25) == 50
    assert count_nfe("predictor_corrector", 10, corrector_steps=2) == 30
    with pytest.raises(ValueError, match="sampler must be one of"):
        count_nfe("nope", 3)


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_generator_same_samples(name: str) -> None:
    sde, gmm = VPSDE(), GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    a = get_sampler(name)(s, sde, (32, 2), steps=5, generator=torch.Generator().manual_seed(4))
    b = get_sampler(name)(s, sde, (32, 2), steps=5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_pf_ode_is_deterministic_given_x1_and_em_is_not() -> None:
    """Heun from the same prior draw gives the same x0; EM adds fresh noise each step."""
    sde, gmm = VPSDE(), GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    ode_traj = trajectory(
        pf_ode_sample, s, sde, (64, 2), steps=10, generator=torch.Generator().manual_seed(1)
    )
    em_traj = trajectory(
        euler_maruyama_sample, s, sde, (64, 2), steps=10, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(ode_traj[0], em_traj[0])  # same x_1
    again = pf_ode_sample(s, sde, (64, 2), steps=10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, ode_traj[-1])
    assert not torch.allclose(em_traj[-1], ode_traj[-1], atol=1e-3)


# ---------------------------------------------------------------- same marginals from SDE and ODE

N = 2000
STEPS = 100
CHECK_IDX = (50, 80, 100)  # t = 0.5, 0.2, eps on the 100-step grid
WRONG_T = {50: 0.25, 80: 0.05, 100: 0.2}  # a clearly different time, for the negative control


def _floor(mix: GaussianMixture, gen: torch.Generator, repeats: int = 6) -> tuple[float, float]:
    vals = torch.tensor([_sw(mix.sample(N, gen), mix.sample(N, gen)) for _ in range(repeats)])
    return float(vals.mean()), float(vals.std())


def _sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, n_projections=128, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def trajectories() -> dict[str, list[torch.Tensor]]:
    sde, gmm = VPSDE(), GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    out = {}
    for name, kw in (
        ("euler_maruyama", {"steps": STEPS}),
        ("pf_ode_heun", {"steps": STEPS}),
        ("predictor_corrector", {"steps": STEPS}),
    ):
        out[name] = trajectory(
            name, s, sde, (N, 2), generator=torch.Generator().manual_seed(11), **kw
        )
    return out


@pytest.mark.parametrize("name", ["euler_maruyama", "pf_ode_heun", "predictor_corrector"])
def test_reverse_sde_and_pf_ode_reproduce_the_noised_mixture(name: str, trajectories) -> None:  # type: ignore[no-untyped-def]
    """With the exact score, the state at time t is distributed as gmm.noised(alpha(t), sigma(t)).

    Tolerance: the sliced Wasserstein distance between two independent samples of that law of the
    same size (the floor) has a mean m and spread s over repeats; a correct sampler must land within
    m + 4 s (sampler bias at these step counts is well below the floor). A wrong law fails it.
    """
    sde, gmm = VPSDE(), GaussianMixture.default_2d()
    ts = time_grid(STEPS, 1.0, sde.t_min)
    gen = torch.Generator().manual_seed(5)
    for i in CHECK_IDX:
        a, sig = sde.marginal_coefficients(float(ts[i]))
        mix = gmm.noised(float(a), float(sig))
        m, s = _floor(mix, gen)
        d = _sw(trajectories[name][i], mix.sample(N, gen))
        assert d < m + 4 * s, (name, float(ts[i]), d, m, s)
        # the check has teeth: the same samples against the marginal at a clearly different time
        a2, sig2 = sde.marginal_coefficients(WRONG_T[i])
        wrong = _sw(trajectories[name][i], gmm.noised(float(a2), float(sig2)).sample(N, gen))
        assert wrong > m + 4 * s


def test_ve_sde_samplers_also_reach_the_mixture() -> None:
    sde, gmm = VESDE(sigma_min=0.01, sigma_max=5.0), GaussianMixture.default_2d()
    s = score_fn_from_mixture(gmm, sde)
    gen = torch.Generator().manual_seed(2)
    m, sd = _floor(gmm, gen)
    for name in ("pf_ode_heun", "predictor_corrector"):
        x = get_sampler(name)(s, sde, (N, 2), steps=100, generator=torch.Generator().manual_seed(3))
        assert _sw(x, gmm.sample(N, gen)) < m + 4 * sd


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name", SAMPLERS)
def test_steps_must_be_a_positive_int(name: str) -> None:
    s = score_fn_from_mixture(GaussianMixture.default_2d(), VPSDE())
    with pytest.raises(ValueError, match="steps must be >= 1"):
        get_sampler(name)(s, VPSDE(), (4, 2), steps=0)
    with pytest.raises(TypeError, match="steps must be an int"):
        get_sampler(name)(s, VPSDE(), (4, 2), steps=2.5)


@pytest.mark.parametrize("name", SAMPLERS)
def test_wrong_shape_from_score_is_named(name: str) -> None:
    with pytest.raises(ValueError, match="score_fn must return a tensor of shape"):
        get_sampler(name)(lambda x, t: x[:, :1], VPSDE(), (4, 2), steps=3)


@pytest.mark.parametrize("name", SAMPLERS)
def test_non_finite_values_name_the_step(name: str) -> None:
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        bad = torch.full_like(x, float("nan"))
        return torch.where(t[:, None] < 0.6, bad, -x)

    with pytest.raises(NonFiniteSampleError, match=r"step \d+ of 10"):
        get_sampler(name)(score, VPSDE(), (4, 2), steps=10)


def test_bad_arguments() -> None:
    sde = VPSDE()
    s = score_fn_from_mixture(GaussianMixture.default_2d(), sde)
    with pytest.raises(ValueError, match="method must be one of"):
        pf_ode_sample(s, sde, (4, 2), steps=3, method="midpoint")
    with pytest.raises(TypeError, match="sde must be an SDE"):
        euler_maruyama_sample(s, "vp", (4, 2), steps=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_end"):
        euler_maruyama_sample(s, sde, (4, 2), steps=3, t_end=1.0)
    with pytest.raises(ValueError, match="snr"):
        predictor_corrector_sample(s, sde, (4, 2), steps=3, snr=-1.0)
    with pytest.raises(ValueError, match="corrector_steps"):
        predictor_corrector_sample(s, sde, (4, 2), steps=3, corrector_steps=-1)
    with pytest.raises(TypeError, match="shape"):
        euler_maruyama_sample(s, sde, 4, steps=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ts must be"):
        ode_solve(lambda x, t: x, torch.zeros(2, 1), torch.tensor([0.0]))


def test_pf_ode_refuses_t_end_zero_where_its_last_step_divides_by_sigma_zero() -> None:
    """Heun and RK4 evaluate the score at t_end: clipped, it is (alpha clip(x0) - x) / sigma^2,
    0/0 at t = 0, so they are refused there before any score call; Euler (never evaluated at
    t_end) and an unclipped exact score (finite at t = 0, chapter 8) still run to t = 0."""
    sde = VPSDE()
    exact = score_fn_from_mixture(GaussianMixture.default_2d(), sde)
    calls = []

    def spy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return exact(x, t)

    for method in ("heun", "rk4"):
        with pytest.raises(
            ValueError, match=rf"t_end must be > 0 with clip_x0 and method='{method}'"
        ):
            pf_ode_sample(spy, sde, (8, 2), steps=4, method=method, t_end=0.0, clip_x0="static")
    assert not calls
    g = torch.Generator().manual_seed(0)
    for method, clip in (("euler", "static"), ("heun", None), ("rk4", None)):
        out = pf_ode_sample(
            exact, sde, (8, 2), steps=4, method=method, t_end=0.0, clip_x0=clip, generator=g
        )
        assert bool(torch.isfinite(out).all()), (method, clip)


def test_predictor_corrector_stays_stable_with_few_coarse_steps() -> None:
    # The corrector's step uses alpha_i = 1 - beta_i <= 1 of the predictor's interval. With the
    # ratio inverted it grows like exp(int beta) over a coarse step and the samples explode.
    from minidiff import (
        VPSDE,
        GaussianMixture,
        euler_maruyama_sample,
        predictor_corrector_sample,
        score_fn_from_mixture,
        sliced_wasserstein,
    )

    gmm = GaussianMixture.default_2d()
    sde = VPSDE()
    score = score_fn_from_mixture(gmm, sde)
    g = torch.Generator().manual_seed(0)
    data = gmm.sample(1500, g)
    for steps in (2, 3):
        pc = predictor_corrector_sample(score, sde, (1500, 2), steps=steps, generator=g)
        em = euler_maruyama_sample(score, sde, (1500, 2), steps=steps, generator=g)
        sw_pc = sliced_wasserstein(pc, data, generator=g)
        sw_em = sliced_wasserstein(em, data, generator=g)
        assert sw_pc < 3 * sw_em, (steps, sw_pc, sw_em)


def test_euler_maruyama_is_predictor_corrector_without_corrector() -> None:
    from minidiff import (
        VPSDE,
        GaussianMixture,
        euler_maruyama_sample,
        predictor_corrector_sample,
        score_fn_from_mixture,
    )

    sde = VPSDE()
    score = score_fn_from_mixture(GaussianMixture.default_2d(), sde)
    em = euler_maruyama_sample(
        score, sde, (64, 2), steps=7, generator=torch.Generator().manual_seed(3)
    )
    pc = predictor_corrector_sample(
        score, sde, (64, 2), steps=7, corrector_steps=0, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(em, pc)


# the fixed forms of the two general samplers: their own keyword arguments, named in errors
FIXED_FORMS = [
    (euler_maruyama_sample, "euler_maruyama_sample", ("corrector_steps", "snr", "method")),
    (pf_ode_euler_sample, "pf_ode_euler_sample", ("method", "corrector_steps", "snr")),
    (pf_ode_heun_sample, "pf_ode_heun_sample", ("method", "corrector_steps", "snr")),
]


@pytest.mark.parametrize(("fn", "name", "foreign"), FIXED_FORMS, ids=[f[1] for f in FIXED_FORMS])
def test_fixed_forms_have_their_own_signature_and_errors(
    fn: Callable[..., torch.Tensor], name: str, foreign: tuple[str, ...]
) -> None:
    """``euler_maruyama_sample``, ``pf_ode_euler_sample`` and ``pf_ode_heun_sample`` show their
    keyword arguments (Shift-Tab help) and their errors name them, not the sampler they call;
    an argument they fix or do not use (``corrector_steps``, ``snr``, ``method``) is refused."""
    params = inspect.signature(fn).parameters
    assert "kwargs" not in params and {"x_T", "steps", "t_end", "clip_x0", "dtype"} <= set(params)
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("steps", "x_T"))
    assert not set(foreign) & set(params)
    calls: list[int] = []

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return -x

    sde = VPSDE()
    with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword .*'step'"):
        fn(score, sde, (4, 3), step=5)
    with pytest.raises(TypeError, match=rf"^{name}\(\) missing 1 required .*'steps'"):
        fn(score, sde, (4, 3))
    for arg, value in zip(foreign, (2, 5.0, "rk4"), strict=True):
        with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword .*'{arg}'"):
            fn(score, sde, (4, 3), steps=3, **{arg: value})
    with pytest.raises(TypeError, match=r"^steps must be an int"):
        fn(score, sde, (4, 3), steps=2.0)
    with pytest.raises(TypeError, match=rf"^{name}\(\) got an unexpected keyword .*'method'"):
        get_sampler(name.removesuffix("_sample"))(score, sde, (2, 3), steps=5, method="rk4")
    assert not calls


def test_fixed_forms_give_what_the_general_samplers_give() -> None:
    sde = VPSDE()
    score = score_fn_from_mixture(GaussianMixture.default_2d(), sde)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    for fn, method in ((pf_ode_euler_sample, "euler"), (pf_ode_heun_sample, "heun")):
        want = pf_ode_sample(score, sde, x_T=x_T, steps=6, method=method, t_end=0.01)
        assert torch.equal(fn(score, sde, x_T=x_T, steps=6, t_end=0.01), want)
    with pytest.raises(NonFiniteSampleError, match=r"^pf_ode_sample \(heun\) produced"):
        pf_ode_heun_sample(lambda x, t: x * float("nan"), sde, (2, 2), steps=3)
    with pytest.raises(ValueError, match=r"t_end must be > 0 with clip_x0 and method='heun'"):
        pf_ode_heun_sample(score, sde, (2, 2), steps=3, t_end=0.0, clip_x0="static")
