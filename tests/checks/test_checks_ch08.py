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
