"""Bad input to schedules (``minidiff.schedules``): one table of wrong arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

import pytest
import torch
from _bad_inputs import (
    NAN,
    SCHED,
    Fn,
    bad_choice,
    bad_int,
    bad_number,
    bad_schedule,
    method_of,
    table_tests,
)

import minidiff as md

FNS: list[Fn] = [
    Fn(
        "NoiseSchedule",
        md.NoiseSchedule,
        {"betas": torch.full((5,), 0.1)},
        {
            "betas": [
                ("None", None),
                ("str", "linear"),
                ("nan", [0.1, NAN]),
                ("zero", [0.1, 0.0]),
                ("one", [1.0]),
                ("empty", []),
                ("2d", [[0.1]]),
            ]
        },
    ),
    Fn(
        "linear_schedule",
        md.linear_schedule,
        {"T": 5, "beta_start": 1e-3, "beta_end": 0.02},
        {"T": bad_int(), "beta_start": bad_number(), "beta_end": bad_number()},
    ),
    Fn(
        "quadratic_schedule",
        md.quadratic_schedule,
        {"T": 5, "beta_start": 1e-3, "beta_end": 0.02},
        {"T": bad_int(), "beta_start": bad_number(), "beta_end": bad_number()},
    ),
    Fn(
        "cosine_schedule",
        md.cosine_schedule,
        {"T": 5, "s": 0.008, "max_beta": 0.999},
        {"T": bad_int(), "s": bad_number(), "max_beta": bad_number()},
    ),
    Fn(
        "sigmoid_schedule",
        md.sigmoid_schedule,
        {"T": 5, "start": -3.0, "end": 3.0, "tau": 1.0, "max_beta": 0.999},
        {
            "T": bad_int(),
            "start": bad_number(positive=False),
            "end": bad_number(positive=False),
            "tau": bad_number(),
            "max_beta": bad_number(),
        },
    ),
    Fn(
        "shifted_schedule",
        md.schedules.shifted_schedule,
        {"schedule": SCHED, "shift": -1.0, "max_beta": 0.999},
        {"schedule": bad_schedule(), "shift": bad_number(positive=False), "max_beta": bad_number()},
    ),
    Fn(
        "make_schedule",
        md.make_schedule,
        {"name": "linear", "T": 5},
        {"name": bad_choice(), "T": bad_int()},
    ),
    Fn(
        "NoiseSchedule.timesteps",
        method_of(SCHED, "timesteps"),
        {"steps": 5},
        {"steps": bad_int(optional=True)},
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)


# ------------------------------------------------------------------------ cases named in the issues


def test_sigmoid_tau_nan_is_blamed_on_tau_not_betas() -> None:
    with pytest.raises(ValueError) as info:
        md.sigmoid_schedule(10, tau=NAN)
    assert "tau" in str(info.value) and "betas" not in str(info.value)
    with pytest.raises(ValueError, match="tau"):  # finite but so small that alpha_bar is 0/0
        md.sigmoid_schedule(10, tau=1e-4)
