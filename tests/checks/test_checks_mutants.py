"""The checkers against wrong answers they do not list, and the bars every checker meets.

``_checker_mutants.py`` holds two sets of wrong answers that no checker lists as a known
mistake: ``MUTANTS`` (written first, then used to build the general diagnoses) and ``HELD_OUT``
(written afterwards and not used to tune them). Every one must be rejected, and the share whose
message names the mistake (matches the mutant's pattern) must stay high: the diagnoses, not the
list of known mistakes, produce those messages.

The bars: every checker rejects an answer of the wrong kind (a list, None, a tensor where a float
belongs) with a message that says so; a checker whose result keeps the dtype of its data runs
float32 data and rejects a float64 result; a checker whose result is trained through (a loss, a
layer) rejects a detached result. Checkers exempt from a bar say why in the tables below.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from _checker_mutants import HELD_OUT, MUTANTS, Mutant, run, sol

from minidiff.checks import CheckResult, Spec

CHECKERS = [
    (f"ch{i:02d}", name)
    for i in range(1, 13)
    for name in importlib.import_module(f"minidiff.checks.ch{i:02d}").SPECS
]

# results that do not carry the dtype of a data input, and why
NO_DTYPE = {
    "alpha_bar_from_betas": "a schedule array, float64 like the betas it is built from",
    "train_step": "returns a Python float",
    "annealed_step_sizes": "numbers the sampling loop reads with .tolist()",
    "stationary_variance": "returns a Python float",
    "step_for_bias": "returns a Python float",
    "ddim_sigma": "built from the float64 schedule alone, no data input",
    "sinusoidal_embedding": "t is a long tensor; the exercise allows float32 or float64 phases",
    "warmup_lr": "returns a Python float",
    "skip_channels": "returns a list of ints (channel counts)",
    "make_checkpoint": "a harness compares the weights of a resumed run, bit for bit",
    "restore_checkpoint": "a harness compares the weights of a resumed run, bit for bit",
    "frechet_distance": "returns a Python float",
    "fid_at_infinity": "returns a Python float",
    "up_block_inputs": "returns a list of ints (channel counts)",
}
# results that are trained through, so a detached answer is wrong
GRADIENT = {
    ("ch03", "vlb_term"),
    ("ch03", "l_simple"),
    ("ch04", "ddpm_training_loss"),
    ("ch06", "dsm_loss"),
    ("ch06", "ism_loss"),
    ("ch09", "label_dropout_loss"),
    ("ch11", "time_injection"),
}


@functools.cache
def _outcome(mutant: Mutant) -> tuple[bool, str]:
    torch.set_num_threads(1)
    return run(mutant)


def _spec(chapter: str, name: str) -> Spec:
    spec = importlib.import_module(f"minidiff.checks.{chapter}").SPECS[name]
    assert isinstance(spec, Spec)
    return spec


def _check(chapter: str, name: str, fn: Any) -> CheckResult:
    module = importlib.import_module(f"minidiff.checks.{chapter}")
    return getattr(module, f"check_{name}")(fn, display=False)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mutant", MUTANTS + HELD_OUT, ids=lambda m: m.id)
def test_every_unlisted_wrong_answer_is_rejected(mutant: Mutant) -> None:
    rejected, message = _outcome(mutant)
    assert rejected, f"{mutant.id} passed: {message}"


@pytest.mark.parametrize(("mutants", "bar"), [(MUTANTS, 0.95), (HELD_OUT, 0.90)])
def test_most_messages_name_the_mistake(mutants: list[Mutant], bar: float) -> None:
    generic = [m.id for m in mutants if not m.specific(_outcome(m)[1])]
    share = 1 - len(generic) / len(mutants)
    assert share >= bar, f"{share:.0%} specific; generic: {generic}"


def test_the_mutants_are_not_listed_mistakes() -> None:
    for m in MUTANTS + HELD_OUT:
        rejected, message = _outcome(m)
        listed = _spec(m.chapter, m.name).mistakes.values()
        assert not any(message.endswith(k.feedback) for k in listed), m.id


# --- the bars ------------------------------------------------------------------------------------


def _solution(chapter: str, name: str) -> Callable[..., Any]:
    return sol(chapter)[name]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_a_result_of_the_wrong_kind_is_named(chapter: str, name: str) -> None:
    right = _solution(chapter, name)
    args, kwargs = _spec(chapter, name).cases()[0]
    if name in ("train_step", "sample", "make_checkpoint", "restore_checkpoint"):
        pytest.skip("a procedure in a harness: test_checks_variants.py covers its returns")
    value = _spec(chapter, name).wrap(right)(*args, **kwargs)
    if isinstance(value, tuple):
        res = _check(chapter, name, lambda *a: right(*a)[0])
        assert not res.passed and "tuple" in res.message, res.message
    elif isinstance(value, float):
        res = _check(chapter, name, lambda *a: (right(*a),))
        assert not res.passed and "tuple" in res.message, res.message
        res = _check(chapter, name, lambda *a: torch.tensor(right(*a)))
        assert not res.passed and "float" in res.message, res.message
    elif not value.is_floating_point():  # a list of ints, compared as a long tensor
        res = _check(chapter, name, lambda *a: [float(c) for c in right(*a)])
        assert not res.passed and "int" in res.message, res.message
    else:
        res = _check(chapter, name, lambda *a: right(*a).tolist())
        kind = "float" if value.dim() == 0 else "list"  # a 0-d tensor's .tolist() is a float
        assert not res.passed and kind in res.message, res.message
    res = _check(chapter, name, lambda *a: None)
    assert not res.passed and "None" in res.message, res.message


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_a_float64_result_from_float32_data_is_named(chapter: str, name: str) -> None:
    spec = _spec(chapter, name)
    if name in NO_DTYPE:
        assert not spec.keep_dtype
        pytest.skip(NO_DTYPE[name])
    assert spec.keep_dtype
    right = _solution(chapter, name)
    if name == "sample":
        res = _check(chapter, name, lambda *a: right(*a).double())
    else:
        res = _check(chapter, name, lambda *a: _double(right(*a)))
    assert not res.passed and "float64" in res.message, res.message


def _double(out: Any) -> Any:
    if isinstance(out, tuple):
        return tuple(o.double() for o in out)
    return out.double()


@pytest.mark.parametrize(("chapter", "name"), sorted(GRADIENT))
def test_a_detached_result_is_named(chapter: str, name: str) -> None:
    right = _solution(chapter, name)
    res = _check(chapter, name, lambda *a: right(*a).detach())
    assert not res.passed and "gradient" in res.message, res.message

    def under_no_grad(*a: Any) -> Any:
        with torch.no_grad():
            return right(*a)

    res = _check(chapter, name, under_no_grad)
    assert not res.passed and ("gradient" in res.message or "grad" in res.message), res.message
