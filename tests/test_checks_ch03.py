"""Exercise 03 checkers: accept the solution, reject the stub kindly, name every known mistake."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch03
from minidiff.checks._core import _close

SOLUTION = ROOT / "exercises" / "solutions" / "ex03_elbo.ipynb"
STUDENT = ROOT / "exercises" / "ex03_elbo.ipynb"
NAMES = sorted(ch03.SPECS)


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


@pytest.fixture(scope="module")
def student() -> dict[str, Any]:
    return exec_tagged(STUDENT)


def _checker(name: str):  # type: ignore[no-untyped-def]
    return getattr(ch03, f"check_{name}")


@pytest.mark.parametrize("name", NAMES)
def test_solution_passes(solution: dict[str, Any], name: str) -> None:
    res = _checker(name)(solution[name], display=False)
    assert res.passed, res.message


@pytest.mark.parametrize("name", NAMES)
def test_stub_is_not_implemented(student: dict[str, Any], name: str) -> None:
    with pytest.raises(NotImplementedError):
        student[name](*ch03.SPECS[name].cases()[0][0])
    res = _checker(name)(student[name], display=False)
    assert not res.passed
    assert "not implemented yet" in res.message


MISTAKES = [(name, key) for name in NAMES for key in ch03.SPECS[name].mistakes]


@pytest.mark.parametrize(("name", "key"), MISTAKES)
def test_each_mistake_is_detectable_and_named(name: str, key: str) -> None:
    spec = ch03.SPECS[name]
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
        spec = ch03.SPECS[name]
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
    key = next(iter(ch03.SPECS[name].mistakes))
    with pytest.raises(AssertionError, match=name):
        _checker(name)(ch03.SPECS[name].mistakes[key].fn, display=False)


def test_student_notebook_in_sync_with_solution() -> None:
    spec = importlib.util.spec_from_file_location(
        "exercises_build", ROOT / "exercises" / "build.py"
    )
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert STUDENT.read_text() == build.render(SOLUTION), "run: python exercises/build.py"


def test_vlb_term_cases_use_several_timesteps_and_shapes() -> None:
    shapes = set()
    for args, _ in ch03.SPECS["vlb_term"].cases():
        t = args[2]
        assert t.dtype == torch.long and int(t.min()) >= 2 and len(set(t.tolist())) > 1
        shapes.add(args[1].dim())
    assert shapes == {2, 4}


def test_solution_vlb_term_matches_package_bound_column(solution: dict[str, Any]) -> None:
    import minidiff as md

    gm = md.GaussianMixture.default_2d()
    sched = md.linear_schedule(30, 1e-3, 0.2)
    model = gm.eps_model(sched)
    x0 = gm.sample(4, torch.Generator().manual_seed(0)).double()
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([2, 9, 17, 30])
    got = solution["vlb_term"](model, x0, t, noise, sched.betas, sched.alpha_bar)
    x_t = md.q_sample(x0, t, sched, noise=noise)
    mq, vq = md.q_posterior_mean_var(x0, x_t, t, sched)
    mp, vp = md.p_mean_var(model, x_t, t, sched)
    torch.testing.assert_close(
        got, md.gaussian_kl(mq, vq.expand_as(x0), mp, vp.expand_as(x0)).sum(1)
    )
