"""Exercise 14 checkers, what is particular to this chapter (the checks every checker gets are
in tests/test_checkers.py)."""

from __future__ import annotations

import torch

from minidiff.checks import ch14


def test_the_issue_s_mistakes_are_named() -> None:
    """Known pixels pasted un-noised, noised at the wrong t, mask inverted, wrong augmentation
    level at sampling time."""
    names = {k for spec in ch14.SPECS.values() for k in spec.mistakes}
    assert {
        "known_not_noised",
        "known_noised_at_t",
        "mask_inverted",
        "level_not_passed",
        "corrupted_at_t",
    } <= names


def test_every_checker_sees_float32_and_float64() -> None:
    for name, spec in ch14.SPECS.items():
        dtypes = {a.dtype for args, _ in spec.cases() for a in args if isinstance(a, torch.Tensor)}
        assert {torch.float32, torch.float64} <= dtypes, name


def test_replacement_cases_reach_the_last_step() -> None:
    """A case with t = 1, where the known part must be x_known itself (no noise at level 0)."""
    (args, _), *_ = ch14.SPECS["replacement_step"].cases()
    t, x_known, mask = args[1], args[3], args[4]
    assert int(t.min()) == 1
    out = ch14.SPECS["replacement_step"].reference(*args)
    first = t == 1
    assert torch.equal((out * mask)[first], (x_known * mask)[first])


def test_ch14_checkers_take_display_by_position_like_every_chapter() -> None:
    from minidiff.checks import ch14

    res = ch14.check_repaint_jump(lambda x_s, s, t, schedule, noise: x_s, False)
    assert not res.passed and "check_repaint_jump" not in res.message


def test_an_augmentation_read_at_s_minus_one_is_named_as_written() -> None:
    """``schedule.alpha_bar[s - 1]`` as a student writes it: level 0 reads alpha_bar[-1]."""

    def level_minus_one(x_cond, s, schedule, noise):  # type: ignore[no-untyped-def]
        ab = schedule.alpha_bar[s - 1].to(x_cond.dtype)[:, None, None, None]
        return ab.sqrt() * x_cond + (1 - ab).sqrt() * noise

    res = ch14.check_augment_condition(level_minus_one, display=False)
    assert not res.passed and res.mistake == "level_minus_one", res.message
