"""Argument checks cost host reads (device synchronisations on a GPU): once per call, not per step.

Counts every read of a tensor's value into Python (``bool``, ``int``, ``float``, ``.item()``,
``.tolist()``) during a sampler run with a trivial model. What is left per step is the samplers'
own NaN watch (one read: ``NonFiniteSampleError`` names the step), in the one loop of
``minidiff.samplers.loop``. Before the checks moved out of the loops these were 3 (DDPM), 7
(DDIM), 22 (Euler-Maruyama), 26 (Heun) and 28 (predictor-corrector); before the one loop, the SDE
loops still read their CPU time grid each step (4, 2 and 5 reads per step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import minidiff as md
from minidiff._validation import count_host_reads

SCHED = md.linear_schedule(40, 1e-3, 0.2)
SDE = md.VPSDE()
G = torch.Generator().manual_seed(0)

# name, steps, call, allowed reads per step (the samplers' NaN watch)
RUNS: list[tuple[str, int, Callable[[], Any], int]] = [
    ("ddpm", 40, lambda: md.ddpm_sample(lambda x, t: 0.1 * x, SCHED, (8, 2), generator=G), 1),
    (
        "ddim",
        20,
        lambda: md.ddim_sample(lambda x, t: 0.1 * x, SCHED, (8, 2), steps=20, eta=0.5, generator=G),
        1,
    ),
    (
        "ddim_invert",
        20,
        lambda: md.ddim_invert(lambda x, t: 0.1 * x, SCHED, torch.randn(8, 2), steps=20),
        1,
    ),
    (
        "annealed_langevin",
        40,
        lambda: md.annealed_langevin_sample(
            lambda x, s: -x, [1.0, 0.5], (8, 2), steps_per_level=20, step_lr=0.01, generator=G
        ),
        1,
    ),
    (
        "langevin",
        40,
        lambda: md.langevin_sample(lambda x: -x, (8, 2), steps=40, step_size=0.01, generator=G),
        1,
    ),
    (
        "euler_maruyama",
        40,
        lambda: md.euler_maruyama_sample(lambda x, t: -x, SDE, (8, 2), steps=40, generator=G),
        1,
    ),
    (
        "pf_ode_heun",
        40,
        lambda: md.pf_ode_sample(lambda x, t: -x, SDE, (8, 2), steps=40, generator=G),
        1,
    ),
    (
        "predictor_corrector",
        20,
        lambda: md.predictor_corrector_sample(lambda x, t: -x, SDE, (8, 2), steps=20, generator=G),
        1,
    ),
]


@pytest.mark.parametrize(("name", "steps", "run", "per_step"), RUNS, ids=[r[0] for r in RUNS])
def test_checks_are_not_repeated_inside_sampler_loops(
    name: str, steps: int, run: Callable[[], Any], per_step: int
) -> None:
    with count_host_reads() as reads:
        run()
    assert reads[0] <= per_step * steps + 12, f"{name}: {reads[0]} host reads for {steps} steps"


def test_one_public_call_checks_several_tensors_with_one_read() -> None:
    x = torch.randn(16, 2)
    with count_host_reads() as reads:
        md.q_posterior_mean_var(x, x + 1, 3, SCHED)
    # t in range (1 read) and x0, x_t finite together (1 read)
    assert reads[0] <= 2


def test_skip_value_checks_removes_the_reads_of_a_training_step() -> None:
    """simple_loss reads x0's finiteness (1 sync; the t it draws itself needs no range check,
    a t passed in one more); a loop that checked its data once can skip them, while type and
    shape checks keep working."""
    from minidiff._validation import skip_value_checks, value_checks_enabled

    x0 = torch.randn(32, 2)
    g = torch.Generator().manual_seed(0)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.1 * x

    with count_host_reads() as reads:
        md.simple_loss(model, x0, SCHED, generator=g)
    assert reads[0] == 1
    with count_host_reads() as reads:
        md.simple_loss(model, x0, SCHED, t=torch.randint(1, 41, (32,), generator=g), generator=g)
    assert reads[0] == 2
    with skip_value_checks():
        assert not value_checks_enabled()
        with count_host_reads() as reads:
            md.simple_loss(model, x0, SCHED, generator=g)
        assert reads[0] == 0
        with pytest.raises(TypeError, match="x0"):  # kinds and shapes are still checked
            md.simple_loss(model, x0.long(), SCHED, generator=g)
    assert value_checks_enabled()
    bad = x0.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x0"):
        md.simple_loss(model, bad, SCHED, generator=g)


def test_train_keeps_value_checks_on_cpu_and_checks_only_the_first_call_elsewhere() -> None:
    from minidiff.training.loop import _value_checks_on_first_call

    sched = md.linear_schedule(10)
    calls: list[int] = []

    def loss_fn(model: torch.nn.Module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(1)
        t = torch.randint(1, 11, (batch.shape[0],), generator=g)
        if len(calls) == 3:
            t[0] = 0  # the classic off-by-one, on step 3
        return md.simple_loss(lambda x, tt: model(x), batch, sched, t=t, generator=g)

    data = torch.randn(64, 2)
    with pytest.raises(ValueError, match="t must lie in 1..10"):
        md.train(torch.nn.Linear(2, 2), loss_fn, data, steps=5, batch_size=8, progress=False)
    assert len(calls) == 3  # on the CPU every step is checked

    wrapped = _value_checks_on_first_call(
        lambda m, b, g: md.simple_loss(lambda x, t: m(x), b, sched, generator=g)
    )
    model, g = torch.nn.Linear(2, 2), torch.Generator().manual_seed(0)
    with count_host_reads() as first:
        wrapped(model, data, g)
    with count_host_reads() as later:
        wrapped(model, data, g)
    assert first[0] == 1 and later[0] == 0
