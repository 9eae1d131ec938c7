"""Exercise 8 checkers: accept the solution, reject the stub kindly, name every known mistake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch08
from minidiff.checks._core import Mistake, _close

SOLUTION = ROOT / "exercises" / "solutions" / "ex08_ddim.ipynb"
STUDENT = ROOT / "exercises" / "ex08_ddim.ipynb"

# name of the student function -> (checker, cases, reference, mistakes)
SPECS: dict[str, tuple[Callable[..., Any], Callable[[], Any], Callable[..., Any], dict[str, Mistake]]] = {
    "ddim_step_deterministic": (
        ch08.check_ddim_step_deterministic, ch08.deterministic_cases, ch08._ref_deterministic, ch08.DETERMINISTIC_MISTAKES,
    ),
    "ddim_sigma": (ch08.check_ddim_sigma, ch08.sigma_cases, ch08._ref_sigma, ch08.SIGMA_MISTAKES),
    "ddim_step": (ch08.check_ddim_step, ch08.step_cases, ch08._ref_step, ch08.STEP_MISTAKES),
}
NAMES = sorted(SPECS)


@pytest.fixture(autouse=True)
def _lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests look at failed verdicts, which strict mode would turn into exceptions.
    monkeypatch.delenv("MINIDIFF_STRICT_CHECKS", raising=False)


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


@pytest.fixture(scope="module")
def student() -> dict[str, Any]:
    return exec_tagged(STUDENT)


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(solution: dict[str, Any], name: str) -> None:
    res = SPECS[name][0](solution[name], display=False)
    assert res.passed, res.message


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented(student: dict[str, Any], name: str) -> None:
    check, cases, _, _ = SPECS[name]
    with pytest.raises(NotImplementedError):
        student[name](*cases()[0][0])
    res = check(student[name], display=False)
    assert not res.passed
    assert "not implemented yet" in res.message


MISTAKES = [(name, key) for name in NAMES for key in SPECS[name][3]]


@pytest.mark.parametrize(("name", "key"), MISTAKES)
def test_each_mistake_is_detectable_and_named(name: str, key: str) -> None:
    check, cases, reference, mistakes = SPECS[name]
    mistake = mistakes[key]
    differs = [not _close(mistake.fn(*a, **k), reference(*a, **k), 1e-6, 1e-8) for a, k in cases()]
    assert any(differs), f"mistake {key!r} equals the reference on every case: it can never be detected"
    res = check(mistake.fn, display=False)
    assert not res.passed
    assert res.mistake == key, f"expected {key!r}, got {res.mistake!r}: {res.message}"


@pytest.mark.parametrize("name", NAMES)
def test_mistakes_are_distinct_from_each_other(name: str) -> None:
    _, cases, _, mistakes = SPECS[name]
    outs = {k: [m.fn(*a, **kw) for a, kw in cases()] for k, m in mistakes.items()}
    keys = list(outs)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            same = all(_close(x, y, 1e-6, 1e-8) for x, y in zip(outs[a], outs[b], strict=True))
            assert not same, f"mistakes {a!r} and {b!r} give the same answers: the feedback would be ambiguous"


def test_cases_are_strided_batched_and_reach_clean_data() -> None:
    for args, _ in ch08.step_cases():
        x, t, tp = args[0], args[1], args[2]
        assert x.shape[0] > 1 and len(set(t.tolist())) > 1  # distinct t per sample exposes broadcasting bugs
        assert bool(((t - tp) > 1).any()) and bool((tp == 0).any())


def test_unrecognised_wrong_answer_gets_generic_message(solution: dict[str, Any]) -> None:
    def off(*args: Any) -> Any:
        return solution["ddim_step"](*args) + 0.01

    res = ch08.check_ddim_step(off, display=False)
    assert not res.passed and res.mistake is None and "differs from the reference" in res.message


def test_student_notebook_in_sync() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "exercises" / "build.py"), "--check"], capture_output=True, text=True)
    assert "ex08_ddim" not in out.stdout, out.stdout
