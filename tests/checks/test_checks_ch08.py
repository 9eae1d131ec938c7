"""Exercise 8 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch08

SOLUTION = ROOT / "exercises" / "solutions" / "ex08_ddim.ipynb"


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


def test_cases_are_strided_batched_and_reach_clean_data() -> None:
    for args, _ in ch08.step_cases():
        x, t, tp = args[0], args[1], args[2]
        # distinct t per sample exposes broadcasting bugs
        assert x.shape[0] > 1 and len(set(t.tolist())) > 1
        assert bool(((t - tp) > 1).any()) and bool((tp == 0).any())


def test_an_added_constant_is_found_by_zeroing_every_term(solution: dict[str, Any]) -> None:
    def off(*args: Any) -> Any:
        return solution["ddim_step"](*args) + 0.01

    res = ch08.check_ddim_step(off, display=False)
    assert not res.passed and res.mistake is None
    assert "all set to zero" in res.message and "0.01" in res.message, res.message


def test_a_sigma_read_one_step_back_in_both_factors_is_named() -> None:
    """alpha_bar[t - 1] where alpha_bar[t_prev] belongs, in both factors: DDPM's one-step σ."""

    def one_step_back(t, t_prev, alpha_bar, eta):  # type: ignore[no-untyped-def]
        a_t, a_p = alpha_bar[t], alpha_bar[t - 1]
        return eta * ((1 - a_p) / (1 - a_t)).sqrt() * (1 - a_t / a_p).sqrt()

    res = ch08.check_ddim_sigma(one_step_back, display=False)
    assert not res.passed and "both factors read one step back" in res.message, res.message
