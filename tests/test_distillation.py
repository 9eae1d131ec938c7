"""Progressive distillation (Salimans & Ho 2022): target, grids, loss and converters."""

from __future__ import annotations

import copy
import pathlib

import pytest
import torch

import minidiff as md
from minidiff.distillation import (
    convert_prediction,
    distillation_grid,
    distillation_target,
    prediction_to_eps,
    progressive_distillation,
    progressive_distillation_loss,
    v_prediction_loss,
)
from minidiff.nn import TimeMLP
from minidiff.samplers.ddim import ddim_sample, ddim_step, ddim_timesteps
from minidiff.sde import VPSDE

SCHED = VPSDE().to_schedule(64)
GMM = md.GaussianMixture.default_2d()
ORACLE = GMM.eps_model(SCHED)


def _x(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_converters_round_trip_and_agree_with_the_eps_formulas() -> None:
    z, eps = _x(16, 1), _x(16, 2)
    t = torch.randint(1, SCHED.T + 1, (16,), generator=torch.Generator().manual_seed(3))
    x0 = md.predict_x0_from_eps(z, t, eps, SCHED)
    v = convert_prediction(eps, z, t, SCHED, src="eps", dst="v")
    a = SCHED.sqrt_alpha_bar[t][:, None]
    s = SCHED.sqrt_one_minus_alpha_bar[t][:, None]
    torch.testing.assert_close(v, a * eps - s * x0)  # v = alpha eps - sigma x0
    torch.testing.assert_close(convert_prediction(v, z, t, SCHED, src="v", dst="x0"), x0)
    torch.testing.assert_close(convert_prediction(x0, z, t, SCHED, src="x0", dst="eps"), eps)


def test_prediction_to_eps_makes_a_v_network_a_sampler_model() -> None:
    def v_net(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # the oracle, as v
        return convert_prediction(ORACLE(z, t), z, t, SCHED, src="eps", dst="v")

    a = ddim_sample(prediction_to_eps(v_net, SCHED, "v"), SCHED, x_T=_x(), steps=8)
    b = ddim_sample(ORACLE, SCHED, x_T=_x(), steps=8)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_grids_nest_and_the_midpoints_are_the_teachers() -> None:
    for steps in (1, 2, 4, 8, 32):
        grid, mid = distillation_grid(SCHED, steps)
        assert torch.equal(grid[:-1], ddim_timesteps(SCHED, steps)) and int(grid[-1]) == 0
        fine = ddim_timesteps(SCHED, 2 * steps)
        assert torch.equal(mid, fine[1::2]) and bool((grid[:-1] > mid).all())
        assert bool((mid > grid[1:]).all())


def test_one_student_step_with_the_target_lands_where_two_teacher_steps_do() -> None:
    """The defining property of x̃ (Algorithm 2): DDIM(t -> t'') with x̂ = x̃ equals the teacher's
    DDIM(t -> t') then DDIM(t' -> t''), for a strided step and for the last step to 0."""
    z = _x(24, 4)
    for t_, tm_, tn_ in ((48, 40, 32), (16, 8, 0), (64, 33, 2)):
        t, tm, tn = (torch.full((24,), v) for v in (t_, tm_, tn_))
        target = distillation_target(ORACLE, z, t, tm, tn, SCHED)
        z_mid = ddim_step(z, t, tm, ORACLE(z, t), SCHED)
        z_two = ddim_step(z_mid, tm, tn, ORACLE(z_mid, tm), SCHED)
        eps_student = md.eps_from_x0(z, t, target, SCHED)
        torch.testing.assert_close(ddim_step(z, t, tn, eps_student, SCHED), z_two)
    # a step to 0 makes the target the teacher's end point itself
    torch.testing.assert_close(target if tn_ == 0 else z_two, z_two)


def test_loss_equals_the_algorithm_written_out() -> None:
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=16, n_layers=1).double()
    torch.nn.init.normal_(net.output.weight, std=0.1)
    x0 = GMM.sample(32, torch.Generator().manual_seed(5)).double()
    steps = 4
    loss = progressive_distillation_loss(
        net, ORACLE, x0, SCHED, steps, generator=torch.Generator().manual_seed(6)
    )
    g = torch.Generator().manual_seed(6)  # the same draws: grid index, then eps
    grid, mid = distillation_grid(SCHED, steps)
    i = torch.randint(0, steps, (32,), generator=g)
    t, tm, tn = grid[i], mid[i], grid[i + 1]
    z = md.q_sample(x0, t, SCHED, noise=torch.randn(32, 2, generator=g, dtype=torch.float64))
    target = distillation_target(ORACLE, z, t, tm, tn, SCHED)
    a, s = SCHED.sqrt_alpha_bar[t][:, None], SCHED.sqrt_one_minus_alpha_bar[t][:, None]
    x_hat = a * z - s * net(z, t)  # v-parameterisation
    w = SCHED.snr[t].clamp(min=1.0)  # truncated SNR
    by_hand = (w * ((target - x_hat) ** 2).mean(1)).mean()
    torch.testing.assert_close(loss, by_hand)
    loss.backward()
    assert net.output.weight.grad is not None and float(net.output.weight.grad.abs().sum()) > 0


def test_a_distilled_round_halves_the_steps_of_an_exact_teacher() -> None:
    """Train a student for 2 steps against the exact teacher at 4 steps: its 2-step samples end
    closer to the teacher's 4-step samples than the teacher run with 2 steps."""
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=32, n_layers=2)
    md.train(
        net,
        lambda m, b, g: progressive_distillation_loss(m, ORACLE, b, SCHED, 2, generator=g),
        lambda n, g: GMM.sample(n, g),
        steps=150,
        batch_size=64,
        lr=3e-3,
        progress=False,
    )
    x_T = _x(256, 7).float()
    teacher4 = ddim_sample(ORACLE, SCHED, x_T=x_T, steps=4)
    teacher2 = ddim_sample(ORACLE, SCHED, x_T=x_T, steps=2)
    student2 = ddim_sample(
        prediction_to_eps(copy.deepcopy(net).eval(), SCHED), SCHED, x_T=x_T, steps=2
    )
    err_student = float((student2 - teacher4).norm(dim=1).mean())
    err_teacher = float((teacher2 - teacher4).norm(dim=1).mean())
    assert err_student < 0.5 * err_teacher, (err_student, err_teacher)


def test_bad_inputs_name_the_argument() -> None:
    z = _x(4)
    t = torch.full((4,), 10)
    with pytest.raises(ValueError, match="steps"):
        distillation_grid(SCHED, 33)
    with pytest.raises(ValueError, match="prediction"):
        progressive_distillation_loss(ORACLE, ORACLE, z, SCHED, 2, prediction="score")
    with pytest.raises(ValueError, match="weighting"):
        progressive_distillation_loss(ORACLE, ORACLE, z, SCHED, 2, weighting="snr")
    with pytest.raises(TypeError, match="teacher"):
        progressive_distillation_loss(ORACLE, None, z, SCHED, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t > t_mid"):
        distillation_target(
            ORACLE, z, t, torch.full((4,), 12), torch.zeros(4, dtype=torch.long), SCHED
        )
    with pytest.raises(TypeError, match="t_next"):
        distillation_target(ORACLE, z, t, torch.full((4,), 5), torch.zeros(4), SCHED)
    with pytest.raises(ValueError, match="x0"):
        progressive_distillation_loss(ORACLE, ORACLE, torch.full((4, 2), float("nan")), SCHED, 2)
    with pytest.raises(ValueError, match="src"):
        convert_prediction(z, z, t, SCHED, src="velocity", dst="x0")


def test_rounds_halve_the_steps_and_chain_the_teachers() -> None:
    torch.manual_seed(0)
    net = TimeMLP(2, hidden=16, n_layers=1)
    rounds = progressive_distillation(
        net,
        ORACLE,
        SCHED,
        lambda n, g: GMM.sample(n, g),
        teacher_steps=8,
        final_steps=1,
        train_steps=lambda n: 10 * n,
        batch_size=32,
        lr=1e-3,
        progress=False,
    )
    assert list(rounds) == [4, 2, 1]
    assert all(r.steps == n for n, r in rounds.items())
    cpu = [r.cpu_seconds for r in rounds.values()]
    assert cpu == sorted(cpu) and cpu[0] > 0
    assert rounds[4].model is not rounds[2].model and not rounds[1].model.training
    x = ddim_sample(rounds[1].eps_model, SCHED, (16, 2), steps=1, generator=torch.Generator())
    assert x.shape == (16, 2) and bool(torch.isfinite(x).all())
    # the student of the first round started from `net`, which the rounds leave untouched
    assert float(net.output.weight.detach().abs().sum()) == 0.0
    with pytest.raises(ValueError, match="teacher_steps"):
        progressive_distillation(net, ORACLE, SCHED, lambda n, g: GMM.sample(n, g), teacher_steps=6)
    with pytest.raises(TypeError, match="student"):
        progressive_distillation("net", ORACLE, SCHED, lambda n, g: GMM.sample(n, g))  # type: ignore[arg-type]


def test_v_loss_is_the_squared_error_of_v() -> None:
    torch.manual_seed(1)
    net = TimeMLP(2, hidden=16, n_layers=1).double()
    torch.nn.init.normal_(net.output.weight, std=0.3)
    x0 = GMM.sample(64, torch.Generator().manual_seed(8)).double()
    t = torch.randint(1, SCHED.T + 1, (64,), generator=torch.Generator().manual_seed(9))
    loss = v_prediction_loss(net, x0, SCHED, t=t, generator=torch.Generator().manual_seed(10))
    eps = torch.randn(64, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    a, s = SCHED.sqrt_alpha_bar[t][:, None], SCHED.sqrt_one_minus_alpha_bar[t][:, None]
    v = a * eps - s * x0
    torch.testing.assert_close(loss, ((v - net(a * x0 + s * eps, t)) ** 2).mean())


def test_t_next_takes_an_int_like_t_and_t_mid() -> None:
    sched = md.linear_schedule(50)
    eps = md.GaussianMixture.default_2d().eps_model(sched)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    by_int = distillation_target(eps, z, 50, 44, 38, sched)
    torch.testing.assert_close(
        by_int, distillation_target(eps, z, 50, 44, torch.full((4,), 38), sched)
    )
    with pytest.raises(TypeError, match="t_next must be an int or an integer tensor"):
        distillation_target(eps, z, 50, 44, 38.0, sched)  # type: ignore[arg-type]


def test_progressive_distillation_refuses_its_steps_before_training() -> None:
    sched = md.linear_schedule(50)
    eps = md.GaussianMixture.default_2d().eps_model(sched)
    net, data = TimeMLP(2, 16, 1, 8), torch.randn(64, 2)
    kw = dict(final_steps=1, progress=False, batch_size=8)
    with pytest.raises(ValueError, match="teacher_steps must be <= T=50.*got 64"):
        progressive_distillation(net, eps, sched, data, teacher_steps=64, train_steps=1, **kw)
    for bad, exc in ((2.7, TypeError), ("1", TypeError), (0, ValueError)):
        with pytest.raises(exc, match="train_steps"):
            progressive_distillation(net, eps, sched, data, teacher_steps=4, train_steps=bad, **kw)


def test_each_round_has_its_own_checkpoint_and_an_interrupted_run_resumes_exactly(
    tmp_path: pathlib.Path,
) -> None:
    """Round N saves to pd.stepsN.pt: a round never resumes another round's finished checkpoint
    (which ran zero steps and returned the previous student), and a run interrupted in round 2
    (after its first checkpoint) continues to the same students as a straight run."""

    def run(path: object, data: object) -> dict[int, object]:
        torch.manual_seed(0)
        return progressive_distillation(
            TimeMLP(2, hidden=16, n_layers=1).double(),
            ORACLE,
            SCHED,
            data,
            teacher_steps=8,
            final_steps=1,
            train_steps=4,
            batch_size=8,
            seed=1,
            progress=False,
            checkpoint_path=path,
            checkpoint_every=2,
        )

    def data(n: int, g: torch.Generator) -> torch.Tensor:
        return GMM.sample(n, g).double()

    calls = []

    def interrupted(n: int, g: torch.Generator) -> torch.Tensor:
        calls.append(n)
        if len(calls) == 4 + 3:  # round 2, step 3: its step-2 checkpoint is on disk
            raise KeyboardInterrupt
        return data(n, g)

    straight = run(tmp_path / "a" / "pd.pt", data)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b" / "pd.pt", interrupted)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["pd.steps2.pt", "pd.steps4.pt"]
    resumed = run(tmp_path / "b" / "pd.pt", data)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "pd.steps1.pt",
        "pd.steps2.pt",
        "pd.steps4.pt",
    ]
    states = {n: r.model.state_dict() for n, r in straight.items()}  # type: ignore[attr-defined]
    for n, r in resumed.items():
        for k, v in r.model.state_dict().items():  # type: ignore[attr-defined]
            assert torch.equal(v, states[n][k]), (n, k)
    for a, b in ((4, 2), (2, 1)):  # every round trained: no round is a copy of the one before
        assert not all(torch.equal(states[a][k], states[b][k]) for k in states[a])
