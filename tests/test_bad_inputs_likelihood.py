"""Bad input to the likelihood (``minidiff.likelihood``): one table of wrong arguments.

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

import torch
from _bad_inputs import (
    IMG,
    INF,
    NAN,
    VP,
    Fn,
    X,
    bad_callable,
    bad_choice,
    bad_generator,
    bad_int,
    bad_number,
    bad_sde,
    bad_tensor,
    score_t,
    table_tests,
)

import minidiff as md
from minidiff import likelihood

XG = X.double().requires_grad_(True)
FX = XG @ torch.tensor([[1.0, 2.0], [0.5, -3.0]], dtype=torch.float64)  # a graph back to XG
PROBES = torch.ones(3, *X.shape, dtype=torch.float64)
LIN = torch.nn.Linear(X.shape[1], X.shape[1]).double()

FNS: list[Fn] = [
    Fn(
        "ode_log_likelihood",
        md.ode_log_likelihood,
        {
            "score_fn": score_t,
            "sde": VP,
            "x": X.double(),
            "steps": 2,
            "method": "euler",
            "divergence": "exact",
            "n_probes": 1,
            "probe": "rademacher",
            "generator": None,
            "t_start": 1e-3,
        },
        {
            "score_fn": bad_callable(),
            "sde": bad_sde(),
            "x": bad_tensor(X.double()) + [("empty-batch", torch.zeros(0, 2, dtype=torch.float64))],
            "steps": bad_int(),
            "method": bad_choice(),
            "divergence": bad_choice(),
            "n_probes": bad_int(),
            "probe": bad_choice(),
            "generator": bad_generator(),
            "t_start": bad_number(optional=True) + [("above", 1.5)],
        },
    ),
    Fn(
        "divergence",
        likelihood.divergence,
        {"fx": FX, "x": XG, "probes": PROBES},
        {
            "fx": bad_tensor(FX, nonfinite=False)
            + [
                ("no-graph", FX.detach()),
                ("shape(4, 1)", FX[:, :1]),
                ("graph-only-through-parameters", LIN(XG.detach())),
            ],
            "x": bad_tensor(XG, nonfinite=False) + [("no-grad", XG.detach())],
            "probes": bad_tensor(PROBES, optional=True, nonfinite=False)
            + [("shape(3, 4, 1)", PROBES[..., :1]), ("shape(5, 4)", torch.ones(5, 4))],
        },
    ),
    Fn(
        "bits_per_dim",
        md.bits_per_dim,
        {"log_likelihood_nats": torch.tensor([-3.0, -4.0]), "dims": 2, "scale": 127.5},
        {
            "log_likelihood_nats": [
                ("None", None),
                ("str", "x"),
                ("nan", torch.tensor([NAN, -4.0])),
                ("inf", torch.tensor([INF, -4.0])),
                ("2d", torch.zeros(2, 2)),
            ],
            "dims": bad_int(),
            "scale": bad_number(),
        },
    ),
    Fn(
        "uniform_dequantize",
        likelihood.uniform_dequantize,
        {"x": IMG, "generator": None, "scale": 127.5},
        {"x": bad_tensor(IMG), "generator": bad_generator(), "scale": bad_number()},
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)
