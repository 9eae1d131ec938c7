"""Langevin and annealed Langevin: the update, convergence with an exact score, step-size effects,
mode weights fixed by annealing, and every error path."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import GaussianMixture, available_samplers, get_sampler
from minidiff._validation import count_host_reads
from minidiff.metrics import sliced_wasserstein
from minidiff.samplers import NonFiniteSampleError, trajectory
from minidiff.samplers.langevin import (
    annealed_langevin_sample,
    annealed_step_sizes,
    check_sigmas,
    langevin_sample,
    langevin_step,
)

# Overlapping components: plain Langevin mixes between them within a few hundred steps.
MIX = GaussianMixture(
    torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.2, -1.0]]),
    stds=torch.tensor([0.5, 0.4, 0.45]),
    weights=torch.tensor([0.5, 0.3, 0.2]),
)
# Two distant modes with unequal weights: plain Langevin cannot move mass between them.
TWO = GaussianMixture(
    torch.tensor([[-2.5, 0.0], [2.5, 0.0]]), stds=0.5, weights=torch.tensor([0.8, 0.2])
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_by_name() -> None:
    assert {"langevin", "annealed_langevin"} <= set(available_samplers())
    assert get_sampler("langevin") is langevin_sample
    assert get_sampler("annealed_langevin") is annealed_langevin_sample


def test_step_formula_and_per_sample_step() -> None:
    g = gen(0)
    x, s, z = (torch.randn(5, 3, generator=g) for _ in range(3))
    out = langevin_step(x, s, 0.3, z)
    assert torch.allclose(out, x + 0.15 * s + math.sqrt(0.3) * z)
    h = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    per = langevin_step(x, s, h, z)
    assert torch.allclose(per, x + 0.5 * h[:, None] * s + h.sqrt()[:, None] * z)


def test_step_rejects_bad_input() -> None:
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="score"):
        langevin_step(x, torch.zeros(4, 3), 0.1, x)
    with pytest.raises(ValueError, match="noise"):
        langevin_step(x, x, 0.1, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="step_size"):
        langevin_step(x, x, 0.0, x)
    with pytest.raises(ValueError, match="step_size"):
        langevin_step(x, x, torch.tensor([0.1, -0.1, 0.1, 0.1]), x)
    with pytest.raises(TypeError, match="step_size"):
        langevin_step(x, x, "0.1", x)  # type: ignore[arg-type]


def test_exact_score_converges_to_the_mixture() -> None:
    n = 1500
    x = langevin_sample(
        lambda y: MIX.marginal_score(y, 1.0, 0.0),
        (n, 2),
        steps=300,
        step_size=0.03,
        generator=gen(1),
    )
    ref = MIX.sample(n, generator=gen(2))
    sw = sliced_wasserstein(x, ref, generator=gen(3))
    floor = [
        sliced_wasserstein(MIX.sample(n, generator=gen(10 + i)), ref, generator=gen(3))
        for i in range(4)
    ]
    floor_mean = sum(floor) / len(floor)
    assert sw < 1.6 * floor_mean, (sw, floor)
    # and it did move: the N(0, I) start is far from the mixture at this sample size
    start = torch.randn(n, 2, generator=gen(1))
    assert sliced_wasserstein(start, ref, generator=gen(3)) > 3 * sw


def test_large_step_inflates_the_stationary_variance_as_predicted() -> None:
    # For N(0, s^2 I) the chain is AR(1): x' = (1 - h/(2 s^2)) x + sqrt(h) z, with
    # stationary variance s^2 / (1 - h / (4 s^2)) -- exact, so the bias of a big step is
    # measurable.
    gauss = GaussianMixture(torch.zeros(1, 2), stds=1.0)
    n, h = 4000, 1.0
    x = langevin_sample(
        lambda y: gauss.marginal_score(y, 1.0, 0.0),
        (n, 2),
        steps=60,
        step_size=h,
        generator=gen(4),
    )
    v = float(x.double().var(dim=0).mean())
    predicted = 1.0 / (1.0 - h / 4.0)
    se = predicted * math.sqrt(2.0 / (n - 1)) / math.sqrt(2)  # two coordinates averaged
    assert abs(v - predicted) < 5 * se, (v, predicted)
    assert v - 1.0 > 5 * se  # and that bias is clearly there


def test_small_step_barely_moves_the_mean() -> None:
    # The mean of the same AR(1) chain decays as (1 - h/2)^K: with h = 1e-3 and K = 100 the
    # chain started at 3 has hardly moved towards the target mean 0.
    gauss = GaussianMixture(torch.zeros(1, 2), stds=1.0)
    n, h, K = 2000, 1e-3, 100
    x0 = torch.full((n, 2), 3.0)
    x = langevin_sample(
        lambda y: gauss.marginal_score(y, 1.0, 0.0), x_T=x0, steps=K, step_size=h, generator=gen(5)
    )
    predicted = 3.0 * (1 - h / 2) ** K
    se = math.sqrt(K * h / n)
    assert abs(float(x[:, 0].mean()) - predicted) < 5 * se
    assert float(x[:, 0].mean()) > 2.8  # "hardly moved" from 3 towards 0


def test_annealing_fixes_the_mode_weights_where_plain_langevin_fails() -> None:
    n = 600
    se = math.sqrt(0.8 * 0.2 / n)
    plain = langevin_sample(
        lambda y: TWO.marginal_score(y, 1.0, 0.0),
        (n, 2),
        steps=200,
        step_size=0.05,
        generator=gen(6),
    )
    w_plain = float((plain[:, 0] < 0).float().mean())
    sigmas = torch.exp(torch.linspace(math.log(3.0), math.log(0.1), 10))
    ann = annealed_langevin_sample(
        lambda y, s: TWO.marginal_score(y, 1.0, s),
        sigmas,
        (n, 2),
        steps_per_level=30,
        step_lr=0.005,
        generator=gen(6),
    )
    w_ann = float((ann[:, 0] < 0).float().mean())
    assert abs(w_plain - 0.8) > 10 * se, w_plain  # stuck near the 50/50 split of the N(0, I) start
    assert abs(w_ann - 0.8) < 4 * se + 0.02, w_ann


def test_trajectory_and_reproducibility() -> None:
    score = lambda y: MIX.marginal_score(y, 1.0, 0.0)  # noqa: E731
    traj = trajectory(langevin_sample, score, (8, 2), steps=5, step_size=0.1, generator=gen(7))
    a = langevin_sample(score, (8, 2), steps=5, step_size=0.1, generator=gen(7))
    b = langevin_sample(score, (8, 2), steps=5, step_size=0.1, generator=gen(8))
    assert len(traj) == 6 and torch.equal(traj[-1], a) and not torch.equal(a, b)
    nc = lambda y, s: MIX.marginal_score(y, 1.0, s)  # noqa: E731
    kw = dict(steps_per_level=4, step_lr=0.01, denoise=True)
    traj = trajectory(annealed_langevin_sample, nc, [1.0, 0.5, 0.1], (8, 2), generator=gen(8), **kw)
    x = annealed_langevin_sample(nc, [1.0, 0.5, 0.1], (8, 2), generator=gen(8), **kw)  # type: ignore[arg-type]
    assert len(traj) == 3 * 4 + 2 and torch.equal(traj[-1], x)
    # the last state is the Tweedie step from the one before
    torch.testing.assert_close(traj[-1], traj[-2] + 0.1**2 * nc(traj[-2], torch.full((8,), 0.1)))
    x_T = torch.zeros(8, 2)
    x2 = annealed_langevin_sample(
        nc, [1.0, 0.1], steps_per_level=2, step_lr=0.01, x_T=x_T, generator=gen(9)
    )
    assert x2.shape == (8, 2) and torch.equal(x_T, torch.zeros(8, 2))  # x_T not modified in place
    u = annealed_langevin_sample(
        nc,
        [1.0, 0.1],
        (4000, 2),
        steps_per_level=1,
        step_lr=1e-9,
        prior="uniform",
        generator=gen(1),
    )
    assert float(u.abs().max()) <= 1.0 + 1e-3 and float(u.abs().max()) > 0.99  # U[-1, 1] start


def test_annealed_step_sizes() -> None:
    s = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    assert torch.allclose(annealed_step_sizes(s, 0.01), 0.01 * s**2 / 0.25)
    assert float(annealed_step_sizes(s, 0.01)[-1]) == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("sigmas", "match"),
    [
        ([1.0, 2.0], "decreasing"),
        ([1.0, 1.0], "decreasing"),
        ([1.0, -0.1], "> 0"),
        ([], "non-empty"),
        ([[1.0, 0.5]], "1-D"),
        ([1.0, float("nan")], "finite"),
    ],
)
def test_sigmas_are_validated(sigmas: list, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=match):
        check_sigmas(sigmas)


def test_error_paths() -> None:
    score = lambda y: -y  # noqa: E731
    with pytest.raises(ValueError, match="steps"):
        langevin_sample(score, (4, 2), steps=0, step_size=0.1)
    with pytest.raises(TypeError, match="steps"):
        langevin_sample(score, (4, 2), steps=2.0, step_size=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step_size"):
        langevin_sample(score, (4, 2), steps=2, step_size=-1.0)
    with pytest.raises(ValueError, match="shape"):
        langevin_sample(lambda y: y[:, :1], (4, 2), steps=2, step_size=0.1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        langevin_sample(lambda y: y.numpy(), (4, 2), steps=2, step_size=0.1)
    with pytest.raises(NonFiniteSampleError, match="step 1 of 3"):
        langevin_sample(lambda y: y * float("nan"), (4, 2), steps=3, step_size=0.1)
    with pytest.raises(NonFiniteSampleError, match=r"step \d+ of 200"):  # unstable: h > 4 s^2
        langevin_sample(score, (4, 2), steps=200, step_size=50.0, generator=gen(0))
    nc = lambda y, s: -y / s[:, None] ** 2  # noqa: E731
    with pytest.raises(ValueError, match="steps_per_level"):
        annealed_langevin_sample(nc, [1.0, 0.1], (4, 2), steps_per_level=0, step_lr=0.1)
    with pytest.raises(ValueError, match="step_lr"):
        annealed_langevin_sample(nc, [1.0, 0.1], (4, 2), steps_per_level=1, step_lr=0.0)
    with pytest.raises(ValueError, match="decreasing"):
        annealed_langevin_sample(nc, [0.1, 1.0], (4, 2), steps_per_level=1, step_lr=0.1)
    with pytest.raises(ValueError, match="prior"):
        annealed_langevin_sample(
            nc, [1.0, 0.1], (4, 2), steps_per_level=1, step_lr=0.1, prior="zeros"
        )
    with pytest.raises(ValueError, match="x_T"):
        annealed_langevin_sample(
            nc, [1.0, 0.1], (4, 2), steps_per_level=1, step_lr=0.1, x_T=torch.zeros(3, 2)
        )
    with pytest.raises(ValueError, match="shape"):
        annealed_langevin_sample(
            lambda y, s: y.sum(1), [1.0, 0.1], (4, 2), steps_per_level=1, step_lr=0.1
        )
    with pytest.raises(NonFiniteSampleError, match=r"step \d+ of 100 \(sigma=1 -> 1\)"):
        annealed_langevin_sample(
            nc, [1.0, 0.1], (4, 2), steps_per_level=50, step_lr=1.0, generator=gen(0)
        )


def test_step_refuses_a_misshaped_step_before_reading_it_and_unchecked_is_bare() -> None:
    """A step-size tensor that cannot broadcast with x is refused by the argument check, before
    its values are read back; the body (``langevin_step.unchecked``, the loops' kernel) checks
    nothing and reads nothing."""
    x = torch.zeros(4, 2)
    with count_host_reads() as reads, pytest.raises(ValueError, match="step_size of shape"):
        langevin_step(x, x, torch.full((3,), 0.1), x)
    assert reads[0] <= 2  # x and score are finite; the step's own values are not read
    g = gen(1)
    s, z = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    h = torch.tensor([0.1, 0.2, 0.3, 0.4])
    with count_host_reads() as reads:
        out = langevin_step.unchecked(x, s, h, z)
    assert reads[0] == 0
    assert torch.equal(out, langevin_step(x, s, h, z))
