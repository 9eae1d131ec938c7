"""Bad input to the SDEs (``minidiff.sde``): one table of wrong arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

import torch
from _bad_inputs import (
    GMM,
    SCHED,
    VP,
    X2,
    Fn,
    Pending,
    X,
    bad_callable,
    bad_device,
    bad_dtype,
    bad_flag,
    bad_generator,
    bad_int,
    bad_number,
    bad_schedule,
    bad_sde,
    bad_tensor,
    bad_time,
    eps_model,
    method_of,
    randn_points,
    score_t,
    table_tests,
)

import minidiff as md

FNS: list[Fn] = [
    Fn(
        "VPSDE",
        md.VPSDE,
        {"beta_min": 0.1, "beta_max": 20.0, "t_min": 1e-3},
        {"beta_min": bad_number(), "beta_max": bad_number(), "t_min": bad_number()},
    ),
    Fn(
        "VESDE",
        md.VESDE,
        {"sigma_min": 0.01, "sigma_max": 50.0, "t_min": 1e-3},
        {"sigma_min": bad_number(), "sigma_max": bad_number(), "t_min": bad_number()},
    ),
    Fn(
        "VPSDE.marginal_prob",
        method_of(VP, "marginal_prob"),
        {"x0": X, "t": 0.5},
        {"x0": bad_tensor(X), "t": bad_time(4)},
    ),
    Fn(
        "VPSDE.marginal_sample",
        method_of(VP, "marginal_sample"),
        {"x0": X, "t": 0.5, "noise": X2, "generator": None},
        {
            "x0": bad_tensor(X),
            "t": bad_time(4),
            "noise": bad_tensor(X2, optional=True, shapes=(randn_points(4, 3),)),
            "generator": bad_generator(),
        },
    ),
    Fn(
        "VPSDE.drift",
        method_of(VP, "drift"),
        {"x": X, "t": 0.5},
        {"x": bad_tensor(X), "t": bad_time(4)},
    ),
    Fn("VPSDE.diffusion", method_of(VP, "diffusion"), {"t": 0.5}, {"t": bad_time(4)[:5]}),
    Fn(
        "VPSDE.prior_sampling",
        method_of(VP, "prior_sampling"),
        {"shape": (3, 2), "generator": None, "dtype": torch.float32, "device": "cpu"},
        {
            "shape": [("None", None), ("zero", (0, 2)), ("str", "3")],
            "generator": bad_generator(),
            "dtype": bad_dtype(),
            "device": bad_device(),
        },
    ),
    Fn("VPSDE.prior_logp", method_of(VP, "prior_logp"), {"z": X}, {"z": bad_tensor(X)}),
    Fn(
        "VPSDE.reverse",
        method_of(VP, "reverse"),
        {"score_fn": score_t},
        {"score_fn": bad_callable()},
    ),
    Fn("VPSDE.to_schedule", method_of(VP, "to_schedule"), {"T": 5}, {"T": bad_int()}),
    Fn(
        "score_fn_from_mixture",
        md.score_fn_from_mixture,
        {"gmm": GMM, "sde": VP},
        {"gmm": [("None", None), ("str", "8gaussians"), ("schedule", SCHED)], "sde": bad_sde()},
    ),
    Fn(
        "score_fn_from_eps_model",
        md.score_fn_from_eps_model,
        {"eps_model": eps_model, "sde": VP},
        {"eps_model": bad_callable(), "sde": bad_sde()},
    ),
    Fn(
        "score_fn_from_discrete_eps_model",
        md.score_fn_from_discrete_eps_model,
        {"eps_model": eps_model, "schedule": VP.to_schedule(10), "sde": VP},
        {
            "eps_model": bad_callable(),
            # SCHED ends at alpha_bar_T = 0.35: it does not reach VPSDE()'s noise at t = 1
            "schedule": [*bad_schedule(), ("short", SCHED)],
            "sde": [c for c in bad_sde() if c[0] != "None"],  # None: the default VPSDE()
            "round_timesteps": bad_flag(),
        },
    ),
    Fn(
        "eps_model_from_score_fn",
        md.eps_model_from_score_fn,
        {"score_fn": score_t, "sde": VP, "T": 5},
        {"score_fn": bad_callable(), "sde": bad_sde(), "T": bad_int()},
    ),
]

# Cases that still raise the other type, in modules whose checks have not yet moved to the one
# dialect of minidiff._validation. A case fixed fails its test: then delete its row.
POLICY_PENDING: Pending = {}

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS, POLICY_PENDING)
