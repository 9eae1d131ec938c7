"""Every exercise checker: accepts its solution, rejects the stub kindly, names every known mistake.

Chapters are discovered from the ``minidiff.checks.chNN`` modules and the solution notebooks
``exercises/solutions/exNN_*.ipynb`` (the student notebook has the same name in ``exercises/``).
Tests that concern one chapter only live in ``tests/checks/test_checks_chNN.py``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest
import torch
from _nbtools import ROOT, exec_tagged

import minidiff.checks
from minidiff.checks import CheckResult, Spec
from minidiff.checks._core import ATOL, RTOL
from minidiff.checks._diagnose import close

EXERCISES = ROOT / "exercises"


class Chapter(NamedTuple):
    module: ModuleType
    solution: Path
    student: Path


def _discover() -> dict[str, Chapter]:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules(minidiff.checks.__path__)
        if re.fullmatch(r"ch\d\d", m.name)
    )
    chapters = {}
    for name in names:
        found = sorted((EXERCISES / "solutions").glob(f"ex{name[2:]}_*.ipynb"))
        assert len(found) == 1, (
            f"{name}: expected one exercises/solutions/ex{name[2:]}_*.ipynb, got {found}"
        )
        module = importlib.import_module(f"minidiff.checks.{name}")
        chapters[name] = Chapter(module, found[0], EXERCISES / found[0].name)
    return chapters


CHAPTERS = _discover()
CHECKERS = [
    pytest.param(ch, name, id=f"{ch}-{name}")
    for ch, c in CHAPTERS.items()
    for name in sorted(c.module.SPECS)
]
MISTAKES = [
    pytest.param(ch, name, key, id=f"{ch}-{name}-{key}")
    for ch, c in CHAPTERS.items()
    for name in sorted(c.module.SPECS)
    for key in c.module.SPECS[name].mistakes
]


def _spec(chapter: str, name: str) -> Spec:
    spec = CHAPTERS[chapter].module.SPECS[name]
    assert isinstance(spec, Spec)
    return spec


def _checker(chapter: str, name: str) -> Callable[..., CheckResult]:
    return getattr(CHAPTERS[chapter].module, f"check_{name}")  # type: ignore[no-any-return]


def _loose(spec: Spec) -> tuple[float, float]:
    # The loosest tolerance any checker uses: a mistake must stand out even there.
    return max(spec.rtol, RTOL), max(spec.atol, ATOL)


@pytest.fixture(scope="module")
def notebook() -> Callable[[Path], dict[str, Any]]:
    """Namespace of a notebook's setup and solution cells, executed once per module."""
    return functools.cache(exec_tagged)


def test_every_exercise_has_a_checker_module() -> None:
    exercises = {p.name[2:4] for p in (EXERCISES / "solutions").glob("ex*.ipynb")}
    assert len(CHAPTERS) >= 8 and exercises == {ch[2:] for ch in CHAPTERS}


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_checker_is_public(chapter: str, name: str) -> None:
    module = CHAPTERS[chapter].module
    assert f"check_{name}" in module.__all__ and _checker(chapter, name).__doc__


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_solution_passes(
    notebook: Callable[[Path], dict[str, Any]], chapter: str, name: str
) -> None:
    fn = notebook(CHAPTERS[chapter].solution)[name]
    state = torch.get_rng_state()
    res = _checker(chapter, name)(fn, display=False)
    assert res.passed, res.message
    # the student's notebook draws from torch's global RNG: a checker must leave it where it was
    assert torch.equal(torch.get_rng_state(), state), "the checker moved the global RNG"


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_stub_is_not_implemented(
    notebook: Callable[[Path], dict[str, Any]], chapter: str, name: str
) -> None:
    spec = _spec(chapter, name)
    stub = notebook(CHAPTERS[chapter].student)[name]
    args, kwargs = spec.cases()[0]
    with pytest.raises(NotImplementedError):
        spec.wrap(stub)(*args, **kwargs)
    res = _checker(chapter, name)(stub, display=False)
    assert not res.passed
    assert "not implemented yet" in res.message


@pytest.mark.parametrize(("chapter", "name", "key"), MISTAKES)
def test_each_mistake_is_detectable_and_named(chapter: str, name: str, key: str) -> None:
    spec = _spec(chapter, name)
    mistake = spec.wrapped_mistakes()[key]
    rtol, atol = _loose(spec)
    differs = [
        not close(mistake.fn(*a, **k), spec.reference(*a, **k), rtol, atol) for a, k in spec.cases()
    ]
    assert any(differs), (
        f"mistake {key!r} equals the reference on every case: it can never be detected"
    )
    res = _checker(chapter, name)(spec.mistakes[key].fn, display=False)
    assert not res.passed
    assert res.mistake == key, f"expected {key!r}, got {res.mistake!r}: {res.message}"
    assert res.message.endswith(spec.mistakes[key].feedback)


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_mistakes_are_distinct_from_each_other(chapter: str, name: str) -> None:
    spec = _spec(chapter, name)
    rtol, atol = _loose(spec)
    cases = spec.cases()
    outs = {k: [m.fn(*a, **kw) for a, kw in cases] for k, m in spec.wrapped_mistakes().items()}
    keys = list(outs)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            same = all(close(x, y, rtol, atol) for x, y in zip(outs[a], outs[b], strict=True))
            assert not same, (
                f"mistakes {a!r} and {b!r} give the same answers: the feedback is ambiguous"
            )


# A checkpoint (a dict) and a restored step (an int) cannot be scaled by 1.01: their unlisted
# wrong answers are the mutants in tests/_checker_mutants.py.
NOT_NUMBERS = {("ch12", "make_checkpoint"), ("ch12", "restore_checkpoint")}


@pytest.mark.parametrize(
    ("chapter", "name"), [p for p in CHECKERS if tuple(p.values) not in NOT_NUMBERS]
)
def test_an_unlisted_wrong_answer_gets_generic_feedback(
    notebook: Callable[[Path], dict[str, Any]], chapter: str, name: str
) -> None:
    right = notebook(CHAPTERS[chapter].solution)[name]

    def wrong(*args: Any) -> Any:
        out = right(*args)
        return tuple(o * 1.01 for o in out) if isinstance(out, tuple) else out * 1.01

    res = _checker(chapter, name)(wrong, display=False)
    # not mistaken for a listed mistake; the message says what the diagnoses see: the factor 1.01
    # (in a term, a coefficient or the whole result), or where the result differs
    assert not res.passed and res.mistake is None
    assert "1.01" in res.message or "differs" in res.message, res.message


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_strict_mode_raises_on_a_wrong_answer(
    monkeypatch: pytest.MonkeyPatch, chapter: str, name: str
) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    mistake = next(iter(_spec(chapter, name).mistakes.values()))
    with pytest.raises(AssertionError, match=name):
        _checker(chapter, name)(mistake.fn, display=False)


# Chapters whose cases tell every mistake from the right answer on *every* input; in the others
# some inputs (eta = 1, t = 1, a variance rule that coincides) hide a mistake on purpose.
EVERY_CASE = {"ch02", "ch03", "ch05", "ch06", "ch07"}
# ... except these, where a mistake can only show on part of the inputs: a formula that forgets
# the divergence agrees wherever the chain converges, and s2 = 1 hides a ratio v / s².
SOME_CASES = {("ch05", "stationary_variance")}


@pytest.mark.parametrize(
    ("chapter", "name", "key"),
    [p for p in MISTAKES if p.values[0] in EVERY_CASE and tuple(p.values[:2]) not in SOME_CASES],
)
def test_each_mistake_differs_from_the_reference_on_every_case(
    chapter: str, name: str, key: str
) -> None:
    spec = _spec(chapter, name)
    mistake = spec.wrapped_mistakes()[key]
    rtol, atol = _loose(spec)
    for i, (a, k) in enumerate(spec.cases()):
        differs = not close(mistake.fn(*a, **k), spec.reference(*a, **k), rtol, atol)
        assert differs, f"mistake {key!r} equals the reference on case {i + 1}"


@pytest.mark.parametrize(("chapter", "name"), CHECKERS)
def test_one_argument_order_in_every_exercise(
    notebook: Callable[[Path], dict[str, Any]], chapter: str, name: str
) -> None:
    """Data and t, other per-sample inputs, schedule arrays, options, a given noise last."""
    import inspect

    params = list(inspect.signature(notebook(CHAPTERS[chapter].solution)[name]).parameters)
    for noise in ("noise", "z"):
        if noise in params:
            assert params[-1] == noise, f"{name}{tuple(params)}: the given noise comes last"
    schedule = [params.index(p) for p in ("betas", "alpha_bar") if p in params]
    assert schedule == sorted(schedule), f"{name}{tuple(params)}: betas before alpha_bar"
    if "t" in params and schedule:
        assert params.index("t") < min(schedule), f"{name}{tuple(params)}: t before the schedule"
