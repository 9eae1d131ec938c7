"""The checker machinery: verdicts, mistake recognition, friendly stub messages, strict mode."""

from __future__ import annotations

import pytest
import torch

from minidiff.checks import CheckResult, Mistake, run_check


def _reference(x: torch.Tensor, a: float) -> torch.Tensor:
    return a**0.5 * x


def _cases() -> list:
    g = torch.Generator().manual_seed(0)
    return [((torch.randn(4, 2, generator=g), 0.3), {}), ((torch.randn(3, 2, generator=g), 0.8), {})]


MISTAKES = {"no_sqrt": Mistake(lambda x, a: a * x, "you used a instead of sqrt(a).")}


def check(fn):  # type: ignore[no-untyped-def]
    return run_check("scale", fn, _reference, _cases(), MISTAKES, display=False)


def test_accepts_the_reference() -> None:
    res = check(_reference)
    assert isinstance(res, CheckResult) and res.passed and bool(res)
    assert "correct" in res.message


def test_recognises_a_known_mistake() -> None:
    res = check(lambda x, a: a * x)
    assert not res.passed and res.mistake == "no_sqrt"
    assert "sqrt(a)" in res.message


def test_unknown_wrong_answer_points_at_the_input() -> None:
    res = check(lambda x, a: a**0.5 * x + 1.0)
    assert not res.passed and res.mistake is None
    assert "test input 1" in res.message


def test_stub_gets_a_friendly_message() -> None:
    def stub(x, a):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    res = check(stub)
    assert not res.passed and "not implemented yet" in res.message


def test_student_exception_is_reported_not_raised() -> None:
    res = check(lambda x, a: x @ torch.ones(3))
    assert not res.passed and "raised RuntimeError" in res.message


def test_shape_and_type_problems_are_named() -> None:
    assert "shape" in check(lambda x, a: (a**0.5 * x)[:, :1]).message
    assert "torch.Tensor" in check(lambda x, a: 3.0).message
    assert "NaN" in check(lambda x, a: x * float("nan")).message
    assert "function itself" in run_check("scale", 3, _reference, _cases(), display=False).message


def test_strict_mode_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="scale"):
        check(lambda x, a: a * x)
    assert check(_reference).passed


def test_display_prints_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    run_check("scale", _reference, _reference, _cases())
    assert "✅ scale" in capsys.readouterr().out
