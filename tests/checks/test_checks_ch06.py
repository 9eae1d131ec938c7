"""Exercise 6 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

import pytest
import torch

from minidiff.checks import ch06


def test_cases_use_distinct_noise_levels_and_a_batch() -> None:
    for name in ("dsm_target", "dsm_loss"):
        for args, _ in ch06.SPECS[name].cases():
            sigma = args[2]
            assert sigma.shape[0] > 1 and len(set(sigma.tolist())) == sigma.shape[0]
            assert bool((sigma < 1).any()) and bool((sigma > 1).any()), "sigma on both sides of 1"


def test_ism_reference_keeps_the_graph_for_training() -> None:
    (model, x), _ = ch06.SPECS["ism_loss"].cases()[0]
    w = torch.tensor(1.5, requires_grad=True)
    loss = ch06.SPECS["ism_loss"].reference(lambda y: w * model(y), x)
    (g,) = torch.autograd.grad(loss, w)
    assert torch.isfinite(g) and abs(float(g)) > 0


def test_shape_bug_gets_a_shape_message() -> None:
    res = ch06.check_dsm_target(lambda xt, x0, s: -(xt - x0).sum(1) / s**2, display=False)
    assert not res.passed and "shape" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="dsm_target"):
        ch06.check_dsm_target(lambda xt, x0, s: (xt - x0) / s[:, None], display=False)
