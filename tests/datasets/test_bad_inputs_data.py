"""Bad input to the data (``minidiff.data``): one table of wrong arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

import pytest
import torch
from _bad_inputs import (
    GMM,
    INF,
    LABELLED,
    NAN,
    SCHED,
    Fn,
    X,
    bad_choice,
    bad_flag,
    bad_generator,
    bad_int,
    bad_number,
    bad_schedule,
    bad_tensor,
    method_of,
    mixture_of,
    randn_points,
    table_tests,
    with_value,
)

import minidiff as md
from minidiff.data import GaussianMixture

FNS: list[Fn] = [
    Fn(
        "GaussianMixture",
        mixture_of,
        {},
        {
            "means": [
                ("None", None),
                ("str", "x"),
                ("nan", torch.tensor([[NAN, 0.0], [1.0, 1.0]])),
                ("inf", torch.tensor([[INF, 0.0], [1.0, 1.0]])),
                ("empty", torch.zeros(0, 2)),
                ("1d", torch.zeros(2)),
            ],
            "stds": [
                ("str", "x"),
                ("nan", torch.tensor([NAN, 1.0])),
                ("inf", torch.tensor([INF, 1.0])),
                ("zero", torch.tensor([0.0, 1.0])),
                ("shape", torch.ones(3)),
            ],
            "weights": [
                ("str", "x"),
                ("nan", torch.tensor([NAN, 0.5])),
                ("inf", torch.tensor([INF, 0.5])),
                ("sum", torch.tensor([0.2, 0.2])),
                ("negative", torch.tensor([1.5, -0.5])),
                ("shape", torch.ones(3) / 3),
            ],
        },
    ),
    Fn(
        "GaussianMixture(covs)",
        lambda **kw: GaussianMixture(torch.zeros(2, 2), **kw),
        {"covs": torch.eye(2).expand(2, 2, 2)},
        {
            "covs": [
                ("str", "x"),
                ("nan", with_value(torch.eye(2).expand(2, 2, 2).clone(), NAN)),
                ("inf", torch.eye(2).expand(2, 2, 2) * INF),
                ("shape", torch.eye(3).expand(2, 3, 3)),
                ("not-pd", -torch.eye(2).expand(2, 2, 2)),
            ]
        },
    ),
    Fn(
        "GaussianMixture.sample",
        method_of(GMM, "sample"),
        {"n": 5, "generator": None},
        {"n": bad_int(), "generator": bad_generator(), "return_labels": bad_flag()},
    ),
    Fn(
        "GaussianMixture.sample_labelled",
        method_of(GMM, "sample_labelled"),
        {"n": 5, "generator": None},
        {"n": bad_int(), "generator": bad_generator()},
    ),
    Fn(
        "GaussianMixture.log_prob",
        method_of(GMM, "log_prob"),
        {"x": X},
        {"x": bad_tensor(X, shapes=(randn_points(4, 3), randn_points(4)))},
    ),
    Fn(
        "GaussianMixture.marginal_score",
        method_of(GMM, "marginal_score"),
        {"x": X, "alpha": 0.9, "sigma": 0.3},
        {
            "x": bad_tensor(X, shapes=(randn_points(4, 3),)),
            "alpha": bad_number(),
            "sigma": bad_number(),
        },
    ),
    Fn(
        "GaussianMixture.posterior_mean",
        method_of(GMM, "posterior_mean"),
        {"x": X, "alpha": 0.9, "sigma": 0.3},
        {"x": bad_tensor(X), "alpha": bad_number(), "sigma": bad_number()},
    ),
    Fn(
        "GaussianMixture.noised",
        method_of(GMM, "noised"),
        {"alpha": 0.9, "sigma": 0.3},
        {"alpha": bad_number(), "sigma": bad_number()},
    ),
    Fn(
        "GaussianMixture.posterior",
        method_of(GMM, "posterior"),
        {"y": X[0], "scale": 0.9, "noise_var": 0.1},
        {
            "y": bad_tensor(X[0], shapes=(torch.zeros(3),)),
            "scale": bad_number(),
            "noise_var": bad_number(),
        },
    ),
    Fn(
        "GaussianMixture.eps_model",
        method_of(GMM, "eps_model"),
        {"schedule": SCHED},
        {"schedule": bad_schedule()},
    ),
    Fn(
        "GaussianMixture.score_model",
        method_of(GMM, "score_model"),
        {"schedule": SCHED},
        {"schedule": bad_schedule()},
    ),
    Fn(
        "LabelledGaussianMixture.tilted_log_density",
        method_of(LABELLED, "tilted_log_density"),
        {"x": X, "y": 1, "w": 2.0},
        {"x": bad_tensor(X, shapes=(X[0],)), "w": bad_number(positive=False)},
    ),
    Fn(
        "toy_dataset",
        md.toy_dataset,
        {"name": "moons", "n": 5, "generator": None},
        {"name": bad_choice(), "n": bad_int(), "generator": bad_generator()},
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)


# ------------------------------------------------------------------------ cases named in the issues


def test_mixture_without_components_and_with_nan_parameters() -> None:
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(0, 2), stds=1.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 2), stds=1.0, weights=torch.tensor([NAN, 0.5]))
    with pytest.raises(ValueError, match="stds"):
        GaussianMixture(torch.zeros(2, 2), stds=torch.tensor([1.0, INF]))
