"""Exercise 7 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

import pytest
import torch

from minidiff.checks import ch07


def test_cases_have_batch_and_distinct_times() -> None:
    for name in ("reverse_sde_drift", "euler_maruyama_step", "pf_ode_heun_step"):
        dtypes = set()
        for args, _ in ch07.SPECS[name].cases():
            x, t = args[0], args[1]
            dtypes.add(x.dtype)
            assert x.shape[0] > 1 and t.dtype == x.dtype
            assert len(set(t.tolist())) > 1, (
                "all samples share one t: broadcasting bugs would go unseen"
            )
        assert dtypes == {torch.float32, torch.float64}, "the result must keep either dtype"


def test_scalar_t_broadcast_bug_gets_a_message() -> None:
    def drift_with_first_t(x, t, score, beta_min, beta_max):  # type: ignore[no-untyped-def]
        beta = beta_min + float(t[0]) * (beta_max - beta_min)
        return -0.5 * beta * x - beta * score

    res = ch07.check_reverse_sde_drift(drift_with_first_t, display=False)
    assert not res.passed and res.mistake is None and "every sample" in res.message
    # continuous time: no discrete schedule array is named, and the fix is said once for both
    # terms (x and the score) that share the slip
    assert "alpha_bar" not in res.message, res.message
    assert res.message.count("read the schedule at the whole tensor t") == 1, res.message
    assert "the coefficient of the score is the same number for every sample" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="vp_marginal"):
        ch07.check_vp_marginal(
            lambda t, a, b: (torch.exp(-t), torch.sqrt(1 - torch.exp(-2 * t))), display=False
        )
