"""Exercise 5 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

import pytest
import torch

from minidiff.checks import ch05


def test_cases_have_a_batch_and_step_sizes_that_separate_the_mistakes() -> None:
    for args, _ in ch05.SPECS["langevin_step"].cases():
        x, eps = args[0], args[2]
        assert x.shape[0] > 1
        assert eps not in (1.0, 2.0), "eps = 1 or 2 makes sqrt(eps) equal eps or eps/2 equal 1"


def test_per_sample_step_size_matches_float_step() -> None:
    (x, s, eps, z), _ = ch05.SPECS["langevin_step"].cases()[0]
    from minidiff.samplers.langevin import langevin_step

    per_sample = langevin_step(x, s, torch.full((x.shape[0],), eps), z)
    assert torch.allclose(per_sample, langevin_step(x, s, eps, z), atol=1e-6)


def test_shape_bug_gets_a_shape_message() -> None:
    res = ch05.check_annealed_step_sizes(lambda s, e: (e * s**2 / s[-1] ** 2)[:-1], display=False)
    assert not res.passed and "shape" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="langevin_step"):
        ch05.check_langevin_step(lambda x, s, e, z: x + e * s + z, display=False)
