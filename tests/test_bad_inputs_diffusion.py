"""Bad input to the forward process and its posterior (``minidiff.diffusion``): a table of wrong
arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _bad_inputs import (
    SCHED,
    TT,
    X2,
    Fn,
    T,
    X,
    bad_callable,
    bad_choice,
    bad_flag,
    bad_generator,
    bad_schedule,
    bad_steps_t,
    bad_tensor,
    eps_model,
    randn_points,
    table_tests,
)

import minidiff as md

FNS: list[Fn] = [
    Fn(
        "q_sample",
        md.q_sample,
        {"x0": X, "t": TT, "schedule": SCHED, "noise": X2, "generator": None},
        {
            "x0": bad_tensor(X),
            "t": bad_steps_t(4),
            "schedule": bad_schedule(),
            "noise": bad_tensor(X2, optional=True, shapes=(randn_points(4, 3), randn_points(4))),
            "generator": bad_generator(),
        },
    ),
    Fn(
        "q_step",
        md.q_step,
        {"x_prev": X, "t": TT, "schedule": SCHED, "noise": X2},
        {
            "x_prev": bad_tensor(X),
            "t": bad_steps_t(4),
            "schedule": bad_schedule(),
            "noise": bad_tensor(X2, optional=True, shapes=(randn_points(4, 3),)),
        },
    ),
    Fn(
        "q_posterior_mean_var",
        md.q_posterior_mean_var,
        {"x0": X, "x_t": X2, "t": TT, "schedule": SCHED},
        {
            "x0": bad_tensor(X, shapes=(randn_points(4, 3),)),
            "x_t": bad_tensor(X2),
            "t": bad_steps_t(4),
            "schedule": bad_schedule(),
        },
    ),
    Fn(
        "predict_x0_from_eps",
        md.predict_x0_from_eps,
        {"x_t": X, "t": TT, "eps": X2, "schedule": SCHED},
        {
            "x_t": bad_tensor(X),
            "t": bad_steps_t(4),
            "eps": bad_tensor(X2, shapes=(randn_points(4, 3),)),
            "schedule": bad_schedule(),
        },
    ),
    Fn(
        "eps_from_x0",
        md.eps_from_x0,
        {"x_t": X, "t": TT, "x0": X2, "schedule": SCHED},
        {
            "x_t": bad_tensor(X),
            "x0": bad_tensor(X2, shapes=(randn_points(4, 3),)),
            "schedule": bad_schedule(),
        },
    ),
    Fn(
        "score_from_eps",
        md.score_from_eps,
        {"eps": X, "t": TT, "schedule": SCHED},
        {"eps": bad_tensor(X), "t": bad_steps_t(4), "schedule": bad_schedule()},
    ),
    Fn(
        "eps_from_score",
        md.eps_from_score,
        {"score": X, "t": TT, "schedule": SCHED},
        {"score": bad_tensor(X), "schedule": bad_schedule()},
    ),
    Fn(
        "p_mean_var",
        md.p_mean_var,
        {"eps_model": eps_model, "x_t": X, "t": TT, "schedule": SCHED, "variance": "beta"},
        {
            "eps_model": bad_callable(),
            "x_t": bad_tensor(X),
            "t": bad_steps_t(4),
            "schedule": bad_schedule(),
            "variance": bad_choice(),
            "for_density": bad_flag(),
        },
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)


# ------------------------------------------------------------------------ cases named in the issues


@pytest.mark.parametrize("fn", [md.q_sample, md.simple_loss])
def test_correct_inputs_written_differently_are_accepted(fn: Callable[..., Any]) -> None:
    """float64 data, an int t for the whole batch, a list of weights: not rejected."""
    x = X.double()
    if fn is md.q_sample:
        out = fn(x, 3, SCHED, noise=X2.double())
        assert out.dtype == torch.float64 and bool(torch.isfinite(out).all())
    else:
        loss = fn(eps_model, x, SCHED, t=3, noise=X2.double(), weights=[1.0] * (T + 1))
        assert bool(torch.isfinite(loss))
