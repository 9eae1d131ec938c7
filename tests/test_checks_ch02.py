"""Exercise 02 checkers: accept the solution, reject the stub kindly, name every known mistake."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch02
from minidiff.checks._core import _close

SOLUTION = ROOT / "exercises" / "solutions" / "ex02_posterior.ipynb"
STUDENT = ROOT / "exercises" / "ex02_posterior.ipynb"
NAMES = sorted(ch02.SPECS)


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


@pytest.fixture(scope="module")
def student() -> dict[str, Any]:
    return exec_tagged(STUDENT)


def _checker(name: str):  # type: ignore[no-untyped-def]
    return getattr(ch02, f"check_{name}")


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(solution: dict[str, Any], name: str) -> None:
    res = _checker(name)(solution[name], display=False)
    assert res.passed, res.message


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented(student: dict[str, Any], name: str) -> None:
    with pytest.raises(NotImplementedError):
        student[name](*ch02.SPECS[name].cases()[0][0])
    res = _checker(name)(student[name], display=False)
    assert not res.passed
    assert "not implemented yet" in res.message


MISTAKES = [(name, key) for name in NAMES for key in ch02.SPECS[name].mistakes]


@pytest.mark.parametrize(("name", "key"), MISTAKES)
def test_each_mistake_is_detectable_and_named(name: str, key: str) -> None:
    spec = ch02.SPECS[name]
    mistake = spec.mistakes[key]
    cases = spec.cases()
    differs = [
        not _close(mistake.fn(*a, **k), spec.reference(*a, **k), 1e-4, 1e-5) for a, k in cases
    ]
    assert all(differs), f"mistake {key!r} equals the reference on some case"
    res = _checker(name)(mistake.fn, display=False)
    assert not res.passed
    assert res.mistake == key, f"expected {key!r}, got {res.mistake!r}: {res.message}"


def test_mistakes_are_distinct_from_each_other() -> None:
    for name in NAMES:
        spec = ch02.SPECS[name]
        cases = spec.cases()
        outs = {k: [m.fn(*a, **kw) for a, kw in cases] for k, m in spec.mistakes.items()}
        keys = list(outs)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                same = all(_close(x, y, 1e-4, 1e-5) for x, y in zip(outs[a], outs[b]))
                assert not same, f"{name}: mistakes {a!r} and {b!r} give the same answers"


def test_an_unlisted_wrong_answer_gets_generic_feedback(solution: dict[str, Any]) -> None:
    name = NAMES[0]
    right = solution[name]

    def wrong(*args: Any) -> Any:
        out = right(*args)
        return tuple(o * 1.01 for o in out) if isinstance(out, tuple) else out * 1.01

    res = _checker(name)(wrong, display=False)
    assert not res.passed and res.mistake is None and "differs" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    name = NAMES[0]
    key = next(iter(ch02.SPECS[name].mistakes))
    with pytest.raises(AssertionError, match=name):
        _checker(name)(ch02.SPECS[name].mistakes[key].fn, display=False)


def test_student_notebook_in_sync_with_solution() -> None:
    spec = importlib.util.spec_from_file_location(
        "exercises_build", ROOT / "exercises" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert STUDENT.read_text() == build.render(SOLUTION), "run: python exercises/build.py"


def test_cases_have_batch_distinct_timesteps_and_t_equal_1() -> None:
    for name in NAMES:
        for args, _ in ch02.SPECS[name].cases():
            t = args[2] if name == "posterior_mean_var" else args[1]
            assert args[0].shape[0] > 1 and t.dtype == torch.long
            assert len(set(t.tolist())) > 2, (
                "all samples share one t: broadcasting bugs would go unseen"
            )
            assert 1 in t.tolist(), "t = 1 (beta_tilde_1 = 0) must be exercised"


def test_posterior_variance_zero_at_t1(solution: dict[str, Any]) -> None:
    (x0, x_t, t, betas, ab), _ = ch02.SPECS["posterior_mean_var"].cases()[0]
    mean, var = solution["posterior_mean_var"](x0, x_t, t, betas, ab)
    i = int((t == 1).nonzero()[0])
    assert float(var[i].abs().max()) == 0.0
    torch.testing.assert_close(mean[i], x0[i])
