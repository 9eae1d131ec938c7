"""Exercise 4 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch04

SOLUTION = ROOT / "exercises" / "solutions" / "ex04_ddpm.ipynb"


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


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


def test_nan_samples_are_called_nan(solution: dict[str, Any]) -> None:
    def nan_sample(*args: Any) -> torch.Tensor:
        return solution["sample"](*args) * float("nan")

    res = ch04.check_sample(nan_sample, display=False)
    assert not res.passed and "NaN" in res.message and "generator" not in res.message


def test_a_helper_still_a_stub_is_named() -> None:
    def ddpm_training_loss(*args: Any) -> torch.Tensor:
        raise NotImplementedError

    def train_step(model, optimizer, x0, alpha_bar, generator):  # type: ignore[no-untyped-def]
        loss = ddpm_training_loss(model, x0, alpha_bar, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    res = ch04.check_train_step(train_step, display=False)
    assert "`ddpm_training_loss`, which your function calls, is not implemented yet" in res.message
