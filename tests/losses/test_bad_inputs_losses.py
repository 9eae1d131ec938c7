"""Bad input to the training objectives (``minidiff.losses``): one table of wrong arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

import pytest
import torch
from _bad_inputs import (
    IMG,
    NAN,
    SCHED,
    TT,
    VP,
    X2,
    Fn,
    T,
    X,
    bad_callable,
    bad_choice,
    bad_device,
    bad_dtype,
    bad_generator,
    bad_int,
    bad_number,
    bad_schedule,
    bad_sde,
    bad_steps_t,
    bad_tensor,
    eps_model,
    randn_points,
    score_sigma,
    score_x,
    table_tests,
)

import minidiff as md
from minidiff import losses

FNS: list[Fn] = [
    Fn(
        "gaussian_kl",
        md.gaussian_kl,
        {"mean1": X, "var1": X.abs() + 0.1, "mean2": X2, "var2": X2.abs() + 0.1},
        {
            "mean1": bad_tensor(X, shapes=(randn_points(3, 2),)),
            "var1": bad_tensor(X.abs() + 0.1, shapes=(randn_points(3, 2).abs(),)),
            "mean2": bad_tensor(X2, shapes=(randn_points(5, 2),)),
            "var2": bad_tensor(X2.abs() + 0.1, shapes=(randn_points(4, 3).abs(),)),
        },
    ),
    Fn(
        "gaussian_log_likelihood",
        md.gaussian_log_likelihood,
        {"x": X, "mean": X2, "var": X.abs() + 0.1},
        {
            "x": bad_tensor(X, shapes=(randn_points(3, 2),)),
            "mean": bad_tensor(X2, shapes=(randn_points(4, 3),)),
            "var": bad_tensor(X.abs() + 0.1, shapes=(randn_points(2, 2).abs(),)),
        },
    ),
    Fn(
        "discretized_gaussian_log_likelihood",
        md.discretized_gaussian_log_likelihood,
        {"x": IMG, "mean": torch.zeros_like(IMG), "log_scale": torch.zeros_like(IMG)},
        {
            "x": bad_tensor(IMG, shapes=(torch.zeros(3, 1, 2, 2),)),
            "mean": bad_tensor(torch.zeros_like(IMG), shapes=(torch.zeros(3, 1, 2, 2),)),
            "log_scale": bad_tensor(torch.zeros_like(IMG), shapes=(torch.zeros(2, 1, 3, 3),)),
        },
    ),
    Fn(
        "vlb_terms",
        md.vlb_terms,
        {
            "eps_model": eps_model,
            "x0": X,
            "schedule": SCHED,
            "variance": "beta",
            "decoder": "gaussian",
            "generator": None,
        },
        {
            "eps_model": bad_callable(),
            "x0": bad_tensor(X),
            "schedule": bad_schedule(),
            "variance": bad_choice(),
            "decoder": bad_choice(),
            "generator": bad_generator(),
        },
    ),
    Fn(
        "vlb_weights",
        md.vlb_weights,
        {"schedule": SCHED, "variance": "beta"},
        {"schedule": bad_schedule(), "variance": bad_choice()},
    ),
    Fn(
        "simple_loss",
        md.simple_loss,
        {
            "eps_model": eps_model,
            "x0": X,
            "schedule": SCHED,
            "t": TT,
            "noise": X2,
            "weights": torch.ones(T + 1),
        },
        {
            "eps_model": bad_callable(),
            "x0": bad_tensor(X),
            "schedule": bad_schedule(),
            "t": [c for c in bad_steps_t(4) if c[0] != "None"],
            "noise": bad_tensor(X2, optional=True, shapes=(randn_points(4, 3),)),
            "weights": [
                c
                for c in bad_tensor(torch.ones(T + 1), optional=True, shapes=(torch.ones(T),))
                if c[0] != "int-dtype"
            ]
            + [("negative", -torch.ones(T + 1))],
        },
    ),
    Fn(
        "sample_timesteps",
        losses.sample_timesteps,
        {"batch_size": 4, "T": T, "generator": None, "device": "cpu", "power": 2.0},
        {
            "batch_size": bad_int(),
            "T": bad_int(),
            "generator": bad_generator(),
            "device": bad_device(),
            "power": bad_number() + [("zero", 0.0)],
        },
    ),
    Fn(
        "timestep_probabilities",
        losses.timestep_probabilities,
        {"T": T, "power": 2.0},
        {"T": bad_int(), "power": bad_number() + [("zero", 0.0)]},
    ),
    Fn(
        "affine_model_nll",
        md.affine_model_nll,
        {"eps_model": eps_model, "x0": X, "schedule": SCHED},
        {
            "eps_model": bad_callable(),
            "x0": bad_tensor(X),
            "schedule": bad_schedule(),
            "variance": bad_choice(),
        },
    ),
    Fn(
        "affine_reverse_marginal",
        losses.affine_reverse_marginal,
        {"eps_model": eps_model, "schedule": SCHED, "dim": 2},
        {
            "eps_model": bad_callable(),
            "schedule": bad_schedule(),
            "dim": bad_int(),
            "dtype": bad_dtype(),
        },
    ),
    Fn(
        "geometric_sigmas",
        md.geometric_sigmas,
        {"sigma_max": 1.0, "sigma_min": 0.01, "L": 5},
        {"sigma_max": bad_number(), "sigma_min": bad_number(), "L": bad_int(minimum=2)},
    ),
    Fn(
        "ism_loss",
        md.ism_loss,
        {"score_model": score_x, "x": X, "reduction": "mean"},
        {
            "score_model": bad_callable(),
            "x": bad_tensor(X, shapes=(randn_points(4),)),
            "reduction": bad_choice(),
        },
    ),
    Fn(
        "ssm_loss",
        md.ssm_loss,
        {"score_model": score_x, "x": X, "n_projections": 1, "generator": None},
        {
            "score_model": bad_callable(),
            "x": bad_tensor(X),
            "n_projections": bad_int(),
            "generator": bad_generator(),
        },
    ),
    Fn(
        "dsm_loss",
        md.dsm_loss,
        {
            "score_model": score_sigma,
            "x0": X,
            "sigmas": torch.tensor([1.0, 0.5]),
            "generator": None,
            "noise": X2,
            "weighting": "sigma2",
        },
        {
            "score_model": bad_callable(),
            "x0": bad_tensor(X),
            "generator": bad_generator(),
            "sigmas": [
                ("None", None),
                ("str", "1"),
                ("nan", NAN),
                ("nan-tensor", torch.tensor([NAN])),
                ("zero", 0.0),
                ("2d", torch.ones(2, 2)),
            ],
            "noise": bad_tensor(X2, optional=True, shapes=(randn_points(4, 3),)),
            "weighting": bad_choice(),
        },
    ),
    Fn(
        "vp_eps_loss",
        md.vp_eps_loss,
        {"model": eps_model, "x0": X, "sde": VP, "generator": None, "noise": X2},
        {
            "model": bad_callable(),
            "x0": bad_tensor(X),
            "sde": bad_sde()[:2],
            "generator": bad_generator(),
            "noise": bad_tensor(X2, optional=True, shapes=(randn_points(4, 3),)),
            "t_min": bad_number(optional=True) + [("above", 1.0)],
        },
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)


# ------------------------------------------------------------------------ cases named in the issues


def test_shapes_that_do_not_broadcast_name_the_argument() -> None:
    with pytest.raises(ValueError, match="mean2"):
        md.gaussian_kl(X, torch.ones(4, 1), randn_points(3, 2), torch.ones(1))
    with pytest.raises(ValueError, match="fn must return"):
        md.ode_solve(lambda x, t: x[:, :1], X, torch.linspace(1.0, 0.5, 3))
