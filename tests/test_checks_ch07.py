"""Exercise 7 checkers: accept the solution, reject the stub kindly, name every known mistake."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch07
from minidiff.checks._core import _close

SOLUTION = ROOT / "exercises" / "solutions" / "ex07_sde_ode.ipynb"
STUDENT = ROOT / "exercises" / "ex07_sde_ode.ipynb"
NAMES = sorted(ch07.SPECS)


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


def _checker(name: str):  # type: ignore[no-untyped-def]
    return getattr(ch07, f"check_{name}")


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(solution: dict[str, Any], name: str) -> None:
    res = _checker(name)(solution[name], display=False)
    assert res.passed, res.message


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented(student: dict[str, Any], name: str) -> None:
    with pytest.raises(NotImplementedError):
        student[name](*ch07.SPECS[name].cases()[0][0])
    res = _checker(name)(student[name], display=False)
    assert not res.passed
    assert "not implemented yet" in res.message


MISTAKES = [(name, key) for name in NAMES for key in ch07.SPECS[name].mistakes]


@pytest.mark.parametrize(("name", "key"), MISTAKES)
def test_each_mistake_is_detectable_and_named(name: str, key: str) -> None:
    spec = ch07.SPECS[name]
    mistake = spec.mistakes[key]
    cases = spec.cases()
    differs = [
        not _close(mistake.fn(*a, **k), spec.reference(*a, **k), 1e-4, 1e-5) for a, k in cases
    ]
    assert any(differs), (
        f"mistake {key!r} equals the reference on every case: it can never be detected"
    )
    res = _checker(name)(mistake.fn, display=False)
    assert not res.passed
    assert res.mistake == key, f"expected {key!r}, got {res.mistake!r}: {res.message}"


def test_mistakes_are_distinct_from_each_other() -> None:
    for name in NAMES:
        spec = ch07.SPECS[name]
        cases = spec.cases()
        outs = {k: [m.fn(*a, **kw) for a, kw in cases] for k, m in spec.mistakes.items()}
        keys = list(outs)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                same = all(_close(x, y, 1e-4, 1e-5) for x, y in zip(outs[a], outs[b], strict=True))
                assert not same, f"{name}: mistakes {a!r} and {b!r} give the same answers"


def test_cases_have_batch_and_distinct_times() -> None:
    for name in ("reverse_sde_drift", "euler_maruyama_step", "pf_ode_heun_step"):
        for args, _ in ch07.SPECS[name].cases():
            x, t = args[0], args[1]
            assert x.shape[0] > 1 and t.dtype == torch.float64
            assert len(set(t.tolist())) > 1, (
                "all samples share one t: broadcasting bugs would go unseen"
            )


def test_scalar_t_broadcast_bug_gets_a_message() -> None:
    def drift_with_first_t(x, t, score, beta_min, beta_max):  # type: ignore[no-untyped-def]
        beta = beta_min + float(t[0]) * (beta_max - beta_min)
        return -0.5 * beta * x - beta * score

    res = ch07.check_reverse_sde_drift(drift_with_first_t, display=False)
    assert not res.passed and res.mistake is None and "differs" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="vp_marginal"):
        ch07.check_vp_marginal(
            lambda t, a, b: (torch.exp(-t), torch.sqrt(1 - torch.exp(-2 * t))), display=False
        )


def test_student_notebook_in_sync_with_solution() -> None:
    spec = importlib.util.spec_from_file_location(
        "exercises_build", ROOT / "exercises" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert STUDENT.read_text() == build.render(SOLUTION), "run: python exercises/build.py"
