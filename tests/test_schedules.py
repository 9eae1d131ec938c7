"""Noise schedules: the index-0 contract, the derived quantities, the builders and their errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minidiff import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    quadratic_schedule,
    sigmoid_schedule,
)
from minidiff.schedules import SCHEDULES, check_timesteps

BUILDERS = {
    "linear": lambda T: linear_schedule(T),
    "cosine": lambda T: cosine_schedule(T),
    "quadratic": lambda T: quadratic_schedule(T),
    "sigmoid": lambda T: sigmoid_schedule(T),
}


@pytest.mark.parametrize("family", sorted(BUILDERS))
@pytest.mark.parametrize("T", [1, 7, 1000])
def test_index_zero_is_clean_data(family: str, T: int) -> None:
    s = BUILDERS[family](T)
    assert s.T == T == len(s)
    for name in (
        "betas",
        "alphas",
        "alpha_bar",
        "sqrt_alpha_bar",
        "sqrt_one_minus_alpha_bar",
        "posterior_variance",
        "snr",
        "log_snr",
    ):
        arr = getattr(s, name)
        assert arr.shape == (T + 1,), name
        assert arr.dtype == torch.float64, name
    assert s.betas[0] == 0 and s.alphas[0] == 1 and s.alpha_bar[0] == 1
    assert s.sqrt_one_minus_alpha_bar[0] == 0
    assert math.isinf(float(s.snr[0])) and float(s.snr[0]) > 0
    assert bool(((s.betas[1:] > 0) & (s.betas[1:] < 1)).all())


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_alpha_bar_is_cumprod_of_alphas(family: str) -> None:
    s = BUILDERS[family](50)
    running = 1.0
    for t in range(1, s.T + 1):
        running *= 1.0 - float(s.betas[t])
        assert float(s.alpha_bar[t]) == pytest.approx(running, rel=1e-12)
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    torch.testing.assert_close(s.sqrt_alpha_bar**2, s.alpha_bar)
    torch.testing.assert_close(s.sqrt_one_minus_alpha_bar**2, 1 - s.alpha_bar)


def test_posterior_variance_and_mean_coefficients() -> None:
    s = linear_schedule(30, 1e-3, 0.1)
    assert (
        s.posterior_variance[0] == 0 and s.posterior_variance[1] == 0
    )  # q(x_0 | x_1, x_0) is a point mass
    for t in range(2, s.T + 1):
        ab, ab_prev, beta = float(s.alpha_bar[t]), float(s.alpha_bar[t - 1]), float(s.betas[t])
        assert float(s.posterior_variance[t]) == pytest.approx(
            (1 - ab_prev) / (1 - ab) * beta, rel=1e-12
        )
        assert float(s.posterior_mean_coef_x0[t]) == pytest.approx(
            math.sqrt(ab_prev) * beta / (1 - ab), rel=1e-12
        )
        assert float(s.posterior_mean_coef_xt[t]) == pytest.approx(
            math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab), rel=1e-12
        )
    # beta_tilde <= beta: the posterior knows x_0, so it is less uncertain than one forward step
    assert bool((s.posterior_variance[1:] <= s.betas[1:]).all())


def test_snr_and_log_snr() -> None:
    s = cosine_schedule(100)
    ab = s.alpha_bar[1:]
    torch.testing.assert_close(s.snr[1:], ab / (1 - ab))
    torch.testing.assert_close(s.log_snr[1:], torch.log(ab) - torch.log1p(-ab))
    assert bool((s.log_snr[1:].diff() < 0).all()), "log-SNR must decrease strictly with t"


def test_cosine_matches_nichol_dhariwal_away_from_the_clip() -> None:
    T, s_off = 1000, 0.008
    s = cosine_schedule(T, s=s_off)

    def f(t: float) -> float:
        return math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2

    clipped = (s.betas[1:] >= 0.999 - 1e-12).nonzero()
    first_clip = int(clipped[0]) + 1 if len(clipped) else T + 1
    assert first_clip > 0.99 * T, "the 0.999 clip should bite only at the very end"
    for t in range(0, first_clip, 7):
        assert float(s.alpha_bar[t]) == pytest.approx(f(t) / f(0), rel=1e-9, abs=1e-12)
    assert float(s.betas[1:].max()) <= 0.999


def test_linear_and_quadratic_endpoints() -> None:
    lin, quad = linear_schedule(10, 1e-3, 0.05), quadratic_schedule(10, 1e-3, 0.05)
    for s in (lin, quad):
        assert float(s.betas[1]) == pytest.approx(1e-3) and float(s.betas[-1]) == pytest.approx(
            0.05
        )
    torch.testing.assert_close(
        lin.betas[1:].diff(), torch.full((9,), (0.05 - 1e-3) / 9, dtype=torch.float64)
    )
    r = quad.betas[1:].sqrt()
    torch.testing.assert_close(r.diff(), torch.full((9,), r.diff()[0].item(), dtype=torch.float64))


def test_make_schedule_dispatches_and_rejects_unknown_names() -> None:
    for name in SCHEDULES:
        torch.testing.assert_close(make_schedule(name, 20).betas, BUILDERS[name](20).betas)
    torch.testing.assert_close(
        make_schedule("linear", 5, beta_end=0.1).betas, linear_schedule(5, beta_end=0.1).betas
    )
    with pytest.raises(ValueError, match="name"):
        make_schedule("exponential", 10)


@pytest.mark.parametrize("family", sorted(SCHEDULES))
@pytest.mark.parametrize(
    ("T", "exc"),
    [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError), ("10", TypeError)],
)
def test_builders_reject_bad_T(family: str, T: object, exc: type) -> None:
    with pytest.raises(exc, match="T"):
        SCHEDULES[family](T)


@pytest.mark.parametrize("builder", [linear_schedule, quadratic_schedule])
@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"beta_start": 0.0}, "beta_start"),
        ({"beta_start": -1e-4}, "beta_start"),
        ({"beta_end": 1.0}, "beta_end"),
        ({"beta_end": 1.5}, "beta_end"),
        ({"beta_start": 0.02, "beta_end": 1e-4}, "beta_end"),
    ],
)
def test_beta_range_errors_name_the_argument(builder, kwargs: dict, arg: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=arg):
        builder(10, **kwargs)


@pytest.mark.parametrize(
    ("builder", "kwargs", "arg"),
    [
        (cosine_schedule, {"s": -0.1}, "s"),
        (cosine_schedule, {"max_beta": 1.0}, "max_beta"),
        (sigmoid_schedule, {"start": 3.0, "end": -3.0}, "end"),
        (sigmoid_schedule, {"tau": 0.0}, "tau"),
        (sigmoid_schedule, {"max_beta": 0.0}, "max_beta"),
    ],
)
def test_other_builder_arguments_are_checked(builder, kwargs: dict, arg: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=arg):
        builder(10, **kwargs)


@pytest.mark.parametrize(
    "betas",
    [
        [0.1, 0.0],
        [0.1, 1.0],
        [0.1, -0.2],
        [0.5, 1.2],
        [0.1, float("nan")],
        [0.1, float("inf")],
        [],
        [[0.1, 0.2]],
    ],
)
def test_noise_schedule_rejects_bad_betas(betas: list) -> None:
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(betas)


def test_check_timesteps() -> None:
    T = 10
    assert check_timesteps(3, 4, T).tolist() == [3, 3, 3, 3]
    out = check_timesteps(torch.tensor([1, 10, 5], dtype=torch.int32), 3, T)
    assert out.dtype == torch.long and out.tolist() == [1, 10, 5]
    with pytest.raises(TypeError, match="t"):
        check_timesteps(torch.tensor([1.0, 2.0]), 2, T)
    with pytest.raises(TypeError, match="t"):
        check_timesteps(2.0, 2, T)
    with pytest.raises(TypeError, match="t"):
        check_timesteps(True, 2, T)
    with pytest.raises(ValueError, match="shape"):
        check_timesteps(torch.tensor([1, 2, 3]), 2, T)
    with pytest.raises(ValueError, match="shape"):
        check_timesteps(torch.tensor([[1], [2]]), 2, T)
    with pytest.raises(ValueError, match=r"1\.\.10"):
        check_timesteps(torch.tensor([0, 2]), 2, T)
    with pytest.raises(ValueError, match=r"1\.\.10"):
        check_timesteps(torch.tensor([1, T + 1]), 2, T)
    with pytest.raises(ValueError, match="step"):
        check_timesteps(0, 2, T, name="step")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(min_value=1e-6, max_value=1 - 1e-6, allow_nan=False), min_size=1, max_size=40
    )
)
def test_alpha_bar_decreasing_in_unit_interval(betas: list[float]) -> None:
    s = NoiseSchedule(betas)
    ab = s.alpha_bar
    assert bool((ab > 0).all()) and bool((ab <= 1).all())
    assert bool((ab.diff() < 0).all())
    assert bool((s.posterior_variance >= 0).all())
    assert bool((s.posterior_variance <= s.betas * (1 + 1e-12)).all())
