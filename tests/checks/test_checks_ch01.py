"""Exercise 1 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

import pytest
import torch

from minidiff.checks import ch01


def test_cases_have_batch_and_distinct_timesteps() -> None:
    for name in ("q_sample", "q_step"):
        for args, _ in ch01.SPECS[name].cases():
            x, t = args[0], args[1]
            assert x.shape[0] > 1 and t.dtype == torch.long
            assert len(set(t.tolist())) > 1, (
                "all samples share one t: broadcasting bugs would go unseen"
            )


def test_shape_bug_gets_a_shape_message() -> None:
    def flat_q_sample(x0, t, alpha_bar, noise):  # type: ignore[no-untyped-def]
        return (
            alpha_bar[t].sqrt()[:, None] * x0.flatten(1)
            + (1 - alpha_bar[t]).sqrt()[:, None] * noise.flatten(1)
        ).sum(1)

    res = ch01.check_q_sample(flat_q_sample, display=False)
    assert not res.passed and "shape" in res.message


def test_strict_mode_raises_on_a_wrong_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="snr"):
        ch01.check_snr(lambda ab: (1 - ab) / ab, display=False)


def test_a_detached_q_sample_is_told_its_gradient_is_cut() -> None:
    # q_sample feeds the training loss: a result cut off from autograd (right values) must fail.
    def detached(x0, t, alpha_bar, noise):  # type: ignore[no-untyped-def]
        shape = (-1,) + (1,) * (x0.dim() - 1)
        ab = alpha_bar[t].reshape(shape).to(x0.dtype)
        return (ab.sqrt() * x0 + (1 - ab).sqrt() * noise).detach()

    res = ch01.check_q_sample(detached, display=False)
    assert not res.passed and "gradient" in res.message and "`x0`" in res.message
