"""Bad input to probability paths and flow matching (``minidiff.paths``, ``flow_matching``).

The machinery (kinds of bad value, the exception policy, the three tests) is in
``tests/_bad_inputs.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _bad_inputs import (
    GMM,
    NAN,
    SCHED,
    VP,
    X2,
    Fn,
    Lin,
    X,
    bad_callable,
    bad_choice,
    bad_device,
    bad_generator,
    bad_int,
    bad_number,
    bad_schedule,
    bad_tensor,
    bad_time,
    method_of,
    score_t,
    table_tests,
)

from minidiff import flow_matching as fm
from minidiff import paths

RF = paths.RectifiedFlowPath()
T4 = torch.full((4,), 0.5)


def bad_path(*, optional: bool = False) -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [("str", "rectified"), ("sde", VP), ("schedule", SCHED)]
    return cases if optional else [*cases, ("None", None)]


def bad_any_time() -> list[tuple[str, Any]]:
    """Times of any shape (no batch to match): every kind of bad time but a wrong shape."""
    return [case for case in bad_time(4) if case[0] != "wrong-shape"]


def bad_optional_time() -> list[tuple[str, Any]]:
    """Times one per sample where ``None`` means "draw them"."""
    return [case for case in bad_time(4) if case[0] != "None"]


WIDE = torch.zeros(4, 3)

FNS: list[Fn] = [
    Fn("VPPath", paths.VPPath, {"sde": VP}, {"sde": [("str", "vp"), ("schedule", SCHED)]}),
    Fn("DiscreteVPPath", paths.DiscreteVPPath, {"schedule": SCHED}, {"schedule": bad_schedule()}),
    Fn(
        "GaussianPath.sample",
        method_of(RF, "sample"),
        {"x0": X, "t": T4, "noise": X2, "generator": None},
        {
            "x0": bad_tensor(X),
            "t": bad_time(4),
            "noise": bad_tensor(X2, optional=True, shapes=(WIDE,)),
            "generator": bad_generator(),
        },
    ),
    Fn(
        "GaussianPath.conditional_velocity",
        method_of(RF, "conditional_velocity"),
        {"x0": X, "noise": X2, "t": T4},
        {
            "x0": bad_tensor(X, nonfinite=False),
            "noise": bad_tensor(X2, nonfinite=False, shapes=(WIDE,)),
            "t": bad_time(4),
        },
    ),
    Fn(
        "GaussianPath.convert",
        method_of(RF, "convert"),
        {"value": X, "x_t": X2, "t": T4, "src": "eps", "dst": "velocity"},
        {
            "value": bad_tensor(X, nonfinite=False, shapes=(WIDE,)),
            "x_t": bad_tensor(X2, nonfinite=False),
            "t": bad_time(4),
            "src": bad_choice(),
            "dst": bad_choice(),
        },
    ),
    Fn(
        "GaussianPath.error_factor",
        method_of(RF, "error_factor"),
        {"kind": "x0", "t": T4},
        {"kind": bad_choice(), "t": bad_any_time()},
    ),
    Fn(
        "convert_with",
        paths.convert_with,
        {"coefficients": RF.coefficients(T4), "value": X, "x_t": X2, "src": "eps", "dst": "x0"},
        {
            "coefficients": [
                ("None", None),
                ("list", [0.5, 0.5, -1.0, 1.0]),
                ("shape(3,)", RF.coefficients(torch.full((3,), 0.5))),
            ],
            "value": bad_tensor(X, nonfinite=False, shapes=(WIDE,)),
            "x_t": bad_tensor(X2, nonfinite=False),
            "src": bad_choice(),
            "dst": bad_choice(),
        },
    ),
    Fn(
        "convert_model",
        paths.convert_model,
        {"model": score_t, "path": RF, "src": "eps", "dst": "velocity"},
        {"model": bad_callable(), "path": bad_path(), "src": bad_choice(), "dst": bad_choice()},
    ),
    Fn(
        "change_of_path",
        paths.change_of_path,
        {"src": RF, "dst": paths.CosinePath(), "t": T4},
        {"src": bad_path(), "dst": bad_path(), "t": bad_any_time()},
    ),
    Fn(
        "mixture_predictor",
        paths.mixture_predictor,
        {"gmm": GMM, "path": RF, "kind": "velocity"},
        {
            "gmm": [("None", None), ("str", "8gaussians"), ("sde", VP)],
            "path": bad_path(),
            "kind": bad_choice(),
        },
    ),
    Fn(
        "sample_flow_times",
        fm.sample_flow_times,
        {
            "n": 4,
            "generator": None,
            "sampling": "logit_normal",
            "loc": 0.0,
            "scale": 1.0,
            "power": 2.0,
            "device": "cpu",
        },
        {
            "n": bad_int(),
            "generator": bad_generator(),
            "sampling": bad_choice(),
            "loc": bad_number(positive=False),
            "scale": bad_number(),
            "power": bad_number(),
            "device": bad_device(),
        },
    ),
    Fn(
        "flow_time_density",
        fm.flow_time_density,
        {"t": T4, "sampling": "power", "loc": 0.0, "scale": 1.0, "power": 2.0},
        {
            "t": bad_any_time(),
            "sampling": bad_choice(),
            "loc": bad_number(positive=False),
            "scale": bad_number(),
            "power": bad_number(),
        },
    ),
    Fn(
        "flow_matching_loss",
        fm.flow_matching_loss,
        {
            "velocity_model": score_t,
            "x0": X,
            "path": RF,
            "t": T4,
            "noise": X2,
            "generator": None,
            "time_sampling": "uniform",
            "loc": 0.0,
            "scale": 1.0,
            "power": 2.0,
            "coupling": "ot",
        },
        {
            "velocity_model": bad_callable(),
            "x0": bad_tensor(X),
            "path": bad_path(optional=True),
            "t": bad_optional_time(),
            "noise": bad_tensor(X2, optional=True, shapes=(WIDE,)),
            "generator": bad_generator(),
            "time_sampling": bad_choice(),
            "loc": bad_number(positive=False),
            "scale": bad_number(),
            "power": bad_number(),
            "coupling": bad_choice(),
        },
    ),
    Fn(
        "ot_coupling",
        fm.ot_coupling,
        {"x0": X, "noise": X2},
        {"x0": bad_tensor(X), "noise": bad_tensor(X2, shapes=(WIDE,))},
    ),
    Fn(
        "implied_eps_weighting",
        fm.implied_eps_weighting,
        {"path": RF, "t": T4, "kind": "velocity", "density": torch.ones(4)},
        {
            "path": bad_path(),
            "t": bad_any_time(),
            "kind": bad_choice(),
            "density": [
                ("str", "uniform"),
                ("int-dtype", torch.ones(4, dtype=torch.long)),
                ("wrong-shape", torch.ones(2)),
                ("scalar-for-a-batch", torch.tensor(1.0)),
            ],
        },
    ),
    Fn(
        "ScaledTime",
        fm.ScaledTime,
        {"net": Lin(), "scale": 1000.0},
        {
            "net": [("None", None), ("str", "mlp"), ("function", score_t)],
            "scale": bad_number(),
        },
    ),
]

(
    test_good_call_of_each_table_entry_runs,
    test_bad_argument_raises_clear_error,
    test_the_policy_table_names_only_cases_of_the_table,
) = table_tests(FNS)


# ------------------------------------------------------------------------ cases worth a sentence


def test_a_coefficient_of_the_wrong_length_is_blamed_on_that_coefficient() -> None:
    c = RF.coefficients(torch.full((4,), 0.5))._replace(sigma=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"coefficients\.sigma must be a number or have shape"):
        paths.convert_with(c, X, X2, src="eps", dst="x0")


def test_a_nan_pairing_is_refused_before_the_assignment_solver_runs() -> None:
    """SciPy's solver would fail on a NaN cost with a message that names no argument."""
    with pytest.raises(ValueError, match="noise"):
        fm.ot_coupling(X, torch.full_like(X2, NAN))
