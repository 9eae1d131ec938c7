"""The machinery of the bad-input tables (one table per package area, in ``test_bad_inputs_*.py``).

Every entry of a table calls one public function with one argument replaced by a bad value of a
common kind (``None`` or a string where a tensor, schedule or SDE is expected, an integer tensor,
NaN or infinity, a shape that does not fit, a device string with a typo, an integer dtype, ...).
The contract: a ``TypeError`` for the wrong kind of object and a ``ValueError`` for a wrong value
of the right kind, whose message names the argument, raised before the model is called; never an
``AttributeError``/``RuntimeError``/``ZeroDivisionError`` from deep inside, and never a silent NaN.
The unmodified call runs first, so a case fails because of its bad value and nothing else.

A table file defines ``FNS`` (and, where a module has not yet moved to the one check dialect,
``POLICY_PENDING``) and collects its tests with ``table_tests(FNS, POLICY_PENDING)``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

import minidiff as md
from minidiff.data import GaussianMixture, LabelledGaussianMixture

T = 10
SCHED = md.linear_schedule(T, 1e-3, 0.2)
VP = md.VPSDE()
GMM = GaussianMixture.eight_gaussians()
LABELLED = LabelledGaussianMixture.default_2d()
CKPT = str(Path(tempfile.mkdtemp(prefix="minidiff-bad-inputs-")) / "ckpt.pt")
atexit.register(shutil.rmtree, str(Path(CKPT).parent), True)
NAN = float("nan")
INF = float("inf")


def randn_points(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


X = randn_points(4, 2)
X2 = randn_points(4, 2, seed=1)
TT = torch.tensor([1, 3, 5, 10])
IMG = (
    torch.randint(0, 256, (2, 1, 2, 2), generator=torch.Generator().manual_seed(0)) / 127.5 - 1
).float()


def eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.1 * x


def score_t(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -x


def score_x(x: torch.Tensor) -> torch.Tensor:
    return -x


def score_sigma(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return -x / (1 + sigma[:, None] ** 2)


class Lin(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        return self.lin(x)


def loss_fn(
    model: torch.nn.Module, batch: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    return ((model(batch) - batch) ** 2).mean()


# ----------------------------------------------------------------------------- kinds of bad value


def with_value(good: torch.Tensor, value: float) -> torch.Tensor:
    out = good.detach().clone()
    out.reshape(-1)[0] = value
    return out


def bad_tensor(
    good: torch.Tensor,
    *,
    optional: bool = False,
    shapes: tuple[torch.Tensor, ...] = (),
    nonfinite: bool = True,
) -> list[tuple[str, Any]]:
    """A floating tensor argument: wrong types, integer dtype, NaN/inf, shapes that do not fit."""
    cases: list[tuple[str, Any]] = [
        ("str", "x0"),
        ("float", 1.5),
        ("int-dtype", good.round().long()),
    ]
    if not optional:
        cases.append(("None", None))
    if nonfinite:
        cases += [
            ("nan", with_value(good, NAN)),
            ("inf", with_value(good, INF)),
            ("-inf", with_value(good, -INF)),
        ]
    cases += [(f"shape{tuple(s.shape)}", s) for s in shapes]
    return cases


def bad_schedule() -> list[tuple[str, Any]]:
    return [("None", None), ("str", "linear"), ("int", 1000), ("sde", VP), ("betas", SCHED.betas)]


def bad_sde() -> list[tuple[str, Any]]:
    return [("None", None), ("str", "vp"), ("schedule", SCHED)]


def bad_int(*, minimum: int = 1, optional: bool = False) -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [
        ("below", minimum - 1),
        ("negative", -3),
        ("float", 2.5),
        ("str", "5"),
        ("bool", True),
        ("float-nan", NAN),
    ]
    if not optional:
        cases.append(("None", None))
    return cases


def bad_number(*, positive: bool = True, optional: bool = False) -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = [
        ("nan", NAN),
        ("inf", INF),
        ("str", "0.1"),
        ("bool", True),
        ("-inf", -INF),
    ]
    if positive:
        cases += [("negative", -1.0)]
    if not optional:
        cases.append(("None", None))
    return cases


def bad_flag() -> list[tuple[str, Any]]:
    """A True/False option: a string, None, a number or a tensor is refused, not read as true or
    false (a numpy bool, np.True_, is a bool)."""
    return [
        ("str", "no"),
        ("str-False", "False"),
        ("None", None),
        ("int", 1),
        ("bool-tensor", torch.tensor(True)),
    ]


def bad_choice() -> list[tuple[str, Any]]:
    return [("typo", "bogus"), ("None", None), ("int", 3)]


def bad_device() -> list[tuple[str, Any]]:
    return [
        ("typo", "cpux"),
        ("cuda-typo", "cuda:typo"),
        ("gpu", "gpu"),
        ("int", 3),
        ("absent", "cuda:99"),
    ]


def bad_dtype() -> list[tuple[str, Any]]:
    return [("int64", torch.int64), ("bool", torch.bool), ("str", "float32"), ("pytype", float)]


def bad_generator() -> list[tuple[str, Any]]:
    return [("int", 42), ("str", "seed")]


def bad_callable() -> list[tuple[str, Any]]:
    return [("None", None), ("int", 3), ("str", "model")]


def bad_steps_t(batch: int) -> list[tuple[str, Any]]:
    return [
        ("zero", 0),
        ("above", T + 1),
        ("float", 1.5),
        ("None", None),
        ("str", "3"),
        ("float-tensor", torch.full((batch,), 2.0)),
        ("wrong-shape", torch.ones(batch + 1, dtype=torch.long)),
    ]


def bad_time(batch: int) -> list[tuple[str, Any]]:
    return [
        ("negative", -0.1),
        ("above", 1.5),
        ("nan", NAN),
        ("None", None),
        ("str", "0.5"),
        ("int-tensor", torch.ones(batch, dtype=torch.long)),
        ("wrong-shape", torch.full((batch + 1,), 0.5)),
    ]


# ----------------------------------------------------------------------------- the table


@dataclass
class Fn:
    name: str
    fn: Callable[..., Any]
    good: dict[str, Any]
    bad: dict[str, list[tuple[str, Any]]]
    names: dict[str, str] = field(default_factory=dict)  # argument -> name used in the message


def mixture_of(**kw: Any) -> GaussianMixture:
    base: dict[str, Any] = {
        "means": torch.zeros(2, 2),
        "stds": torch.ones(2),
        "weights": torch.tensor([0.5, 0.5]),
    }
    base.update(kw)
    return GaussianMixture(**base)


def method_of(obj: Any, name: str) -> Callable[..., Any]:
    return lambda **kw: getattr(obj, name)(**kw)


# The exception policy: a bad value of the wrong *kind* (these labels) raises TypeError, one of the
# right kind with a wrong value (NaN, out of range, a shape that does not fit, a typo) ValueError.
WRONG_KIND = {
    "str",
    "str-False",
    "None",
    "float",
    "float-nan",
    "bool",
    "int",
    "int-dtype",
    "int-tensor",
    "float-tensor",
    "bool-tensor",
    "int64",
    "pytype",
    "sde",
    "schedule",
    "betas",
    "bytes",
    "function",
    "list",
}

CALLABLE_ARGS = ("eps_model", "score_fn", "score_model", "model", "loss_fn", "fn")

Pending = dict[str, dict[str, set[str]]]


def _counted(fn: Callable[..., Any], calls: list[int]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapper


def table_tests(fns: list[Fn], pending: Pending | None = None) -> tuple[Callable[..., None], ...]:
    """The three tests of a table: each good call runs; each bad value raises the policy's
    error naming the argument before the model runs; each pending row names a case."""
    pending = pending or {}
    cases = [
        pytest.param(spec, arg, label, value, id=f"{spec.name}-{arg}-{label}")
        for spec in fns
        for arg, values in spec.bad.items()
        for label, value in values
    ]

    @pytest.mark.parametrize("spec", fns, ids=[s.name for s in fns])
    def test_good_call_of_each_table_entry_runs(spec: Fn) -> None:
        """The unmodified calls succeed, so each bad case fails because of its one bad value."""
        out = spec.fn(**spec.good)
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            assert bool(torch.isfinite(out).all())

    @pytest.mark.parametrize(("spec", "arg", "label", "value"), cases)
    def test_bad_argument_raises_clear_error(spec: Fn, arg: str, label: str, value: Any) -> None:
        """A ValueError/TypeError naming the argument, raised before the model is called even
        once; TypeError for a value of the wrong kind, ValueError for a wrong value."""
        kwargs = {**spec.good, arg: value}
        calls: list[int] = []
        for name in CALLABLE_ARGS:
            if (
                name != arg
                and name in kwargs
                and callable(kwargs[name])
                and not isinstance(kwargs[name], torch.nn.Module)
            ):
                kwargs[name] = _counted(kwargs[name], calls)
        with pytest.raises((ValueError, TypeError)) as info:
            out = spec.fn(**kwargs)
            if spec.name == "register_sampler":  # the decorator's factory must refuse the name
                out(score_x)
        message = str(info.value)
        name = spec.names.get(arg, arg)
        assert name in message, f"the message does not name {name!r}: {message}"
        assert not calls, f"the model was called {len(calls)} time(s) before {arg} was refused"
        expected = TypeError if label in WRONG_KIND else ValueError
        if label in pending.get(spec.name, {}).get(arg, set()):
            assert type(info.value) is not expected, (
                f"{spec.name}({arg}=<{label}>) now raises {expected.__name__}: "
                "delete its row from POLICY_PENDING"
            )
        else:
            assert isinstance(info.value, expected), (
                f"{spec.name}({arg}=<{label}>) raised {type(info.value).__name__}, "
                f"expected {expected.__name__} (wrong kind: TypeError; wrong value: ValueError)"
            )

    def test_the_policy_table_names_only_cases_of_the_table() -> None:
        """A POLICY_PENDING row that matches no case of the table would excuse nothing."""
        labels = {(s.name, a, lb) for s in fns for a, values in s.bad.items() for lb, _ in values}
        for fn, args in pending.items():
            for arg, rows in args.items():
                for label in rows:
                    assert (fn, arg, label) in labels, (fn, arg, label)

    return (
        test_good_call_of_each_table_entry_runs,
        test_bad_argument_raises_clear_error,
        test_the_policy_table_names_only_cases_of_the_table,
    )
