"""Exercise 4 checkers: accept the solution, reject the stub kindly, name every known mistake."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch04
from minidiff.checks._core import _close

SOLUTION = ROOT / "exercises" / "solutions" / "ex04_ddpm.ipynb"
STUDENT = ROOT / "exercises" / "ex04_ddpm.ipynb"
NAMES = sorted(ch04.SPECS)


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
    return getattr(ch04, f"check_{name}")


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(solution: dict[str, Any], name: str) -> None:
    res = _checker(name)(solution[name], display=False)
    assert res.passed, res.message


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented(student: dict[str, Any], name: str) -> None:
    args, kwargs = ch04.SPECS[name].cases()[0]
    with pytest.raises(NotImplementedError):
        ch04.SPECS[name].wrap(student[name])(*args, **kwargs)
    res = _checker(name)(student[name], display=False)
    assert not res.passed
    assert "not implemented yet" in res.message


MISTAKES = [(name, key) for name in NAMES for key in ch04.SPECS[name].mistakes]


@pytest.mark.parametrize(("name", "key"), MISTAKES)
def test_each_mistake_is_detectable_and_named(name: str, key: str) -> None:
    spec = ch04.SPECS[name]
    mistake = spec.wrapped_mistakes()[key]
    cases = spec.cases()
    differs = [
        not _close(mistake.fn(*a, **k), spec.reference(*a, **k), 1e-4, 1e-5) for a, k in cases
    ]
    assert any(differs), (
        f"mistake {key!r} equals the reference on every case: it can never be detected"
    )
    res = _checker(name)(spec.mistakes[key].fn, display=False)
    assert not res.passed
    assert res.mistake == key, f"expected {key!r}, got {res.mistake!r}: {res.message}"


def test_mistakes_are_distinct_from_each_other() -> None:
    for name in NAMES:
        spec = ch04.SPECS[name]
        cases = spec.cases()
        outs = {k: [m.fn(*a, **kw) for a, kw in cases] for k, m in spec.wrapped_mistakes().items()}
        keys = list(outs)
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                same = all(_close(x, y, 1e-4, 1e-5) for x, y in zip(outs[a], outs[b], strict=True))
                assert not same, f"{name}: mistakes {a!r} and {b!r} give the same answers"


def test_step_cases_cover_both_variances_the_last_step_and_distinct_t() -> None:
    cases = ch04.SPECS["ancestral_step"].cases()
    assert {args[5] for args, _ in cases} == {"beta", "beta_tilde"}
    for args, _ in cases:
        x_t, t = args[0], args[1]
        assert x_t.shape[0] > 1 and t.dtype == torch.long
        assert 1 in t.tolist() and len(set(t.tolist())) > 1


def test_no_zero_grad_is_right_on_the_first_step_only() -> None:
    # The train_step harness runs two steps: forgetting zero_grad shows only in the second.
    spec = ch04.SPECS["train_step"]
    args, kwargs = spec.cases()[0]
    ref = spec.reference(*args, **kwargs)
    wrong = spec.wrapped_mistakes()["no_zero_grad"].fn(*args, **kwargs)
    assert torch.allclose(ref[0], wrong[0]) and torch.allclose(ref[1], wrong[1])
    assert not torch.allclose(ref[2], wrong[2])


def test_solution_train_step_changes_weights_and_sample_has_shape(solution: dict[str, Any]) -> None:
    model = ch04.TinyEps(10)
    before = [p.detach().clone() for p in model.parameters()]
    sched_ab = torch.linspace(1.0, 0.1, 11, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = solution["train_step"](
        model, opt, torch.randn(8, 2), sched_ab, torch.Generator().manual_seed(0)
    )
    assert isinstance(loss, float) and loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_wrong_shape_gets_a_shape_message(solution: dict[str, Any]) -> None:
    def flat_step(x_t, t, eps, betas, alpha_bar, variance, z):  # type: ignore[no-untyped-def]
        return solution["ancestral_step"](x_t, t, eps, betas, alpha_bar, variance, z).sum(1)

    res = ch04.check_ancestral_step(flat_step, display=False)
    assert not res.passed and "shape" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="ancestral_step"):
        ch04.check_ancestral_step(
            ch04.SPECS["ancestral_step"].mistakes["never_noise"].fn, display=False
        )


def test_student_notebook_in_sync_with_solution() -> None:
    spec = importlib.util.spec_from_file_location(
        "exercises_build", ROOT / "exercises" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert STUDENT.read_text() == build.render(SOLUTION), "run: python exercises/build.py"
