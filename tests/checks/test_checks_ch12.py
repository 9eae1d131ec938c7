"""Exercise 12 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch12

SOLUTION = ROOT / "exercises" / "solutions" / "ex12_training.ipynb"


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


def test_a_numpy_float_learning_rate_is_accepted(solution: dict[str, Any]) -> None:
    """AdamW takes a NumPy float as a learning rate, so the checker does too."""
    res = ch12.check_warmup_lr(lambda *a: np.float32(solution["warmup_lr"](*a)), display=False)
    assert res.passed, res.message


def test_a_forgotten_return_is_named(solution: dict[str, Any]) -> None:
    def make_checkpoint(model, optimizer, generator, step):  # type: ignore[no-untyped-def]
        solution["make_checkpoint"](model, optimizer, generator, step)

    def restore_checkpoint(checkpoint, model, optimizer, generator):  # type: ignore[no-untyped-def]
        solution["restore_checkpoint"](checkpoint, model, optimizer, generator)

    for check, fn in ((ch12.check_make_checkpoint, make_checkpoint),
                      (ch12.check_restore_checkpoint, restore_checkpoint)):  # fmt: skip
        res = check(fn, display=False)
        assert not res.passed and "Did you forget `return`?" in res.message, res.message


def test_an_ema_warm_up_one_update_behind_is_named() -> None:
    """d = min(decay, n/(10 + n)) is 0 at n = 0: named by its own words, not a missing term."""

    def behind(shadow, param, decay, n):  # type: ignore[no-untyped-def]
        d = min(decay, n / (10 + n))
        return d * shadow + (1 - d) * param

    res = ch12.check_ema_update(behind, display=False)
    assert not res.passed and "0.1 at the first update n = 0" in res.message, res.message
    assert "missing" not in res.message and "decay itself" not in res.message, res.message


def test_an_ema_with_a_wrong_share_for_param_names_it() -> None:
    def one_minus_decay(shadow, param, decay, n):  # type: ignore[no-untyped-def]
        return min(decay, (1 + n) / (10 + n)) * shadow + (1 - decay) * param

    res = ch12.check_ema_update(one_minus_decay, display=False)
    assert not res.passed and "coefficient of param is 1 − decay" in res.message, res.message


def test_a_checkpoint_that_stores_the_model_itself_is_named(solution: dict[str, Any]) -> None:
    """The message names the student's 'model' entry, not an error inside the checker."""
    import copy

    def stores_objects(which: str) -> Any:
        def make_checkpoint(model, optimizer, generator, step):  # type: ignore[no-untyped-def]
            ckpt = solution["make_checkpoint"](model, optimizer, generator, step)
            ckpt[which] = copy.deepcopy(model if which == "model" else optimizer)
            return ckpt

        return make_checkpoint

    for which in ("model", "optimizer"):
        res = ch12.check_make_checkpoint(stores_objects(which), display=False)
        assert not res.passed, res.message
        assert f"'{which}' is the {which} itself" in res.message, res.message
        assert f"copy.deepcopy({which}.state_dict())" in res.message, res.message
        assert "Expected state_dict" not in res.message, res.message
    assert "(an AdamW)" in res.message, res.message  # the article fits the word


def test_a_numpy_integer_step_is_accepted(solution: dict[str, Any]) -> None:
    """range() and the training loop take a NumPy integer, so the checker does too."""

    def restore_checkpoint(checkpoint, model, optimizer, generator):  # type: ignore[no-untyped-def]
        return np.int64(solution["restore_checkpoint"](checkpoint, model, optimizer, generator))

    res = ch12.check_restore_checkpoint(restore_checkpoint, display=False)
    assert res.passed, res.message

    def restore_as_array(checkpoint, model, optimizer, generator):  # type: ignore[no-untyped-def]
        return np.array([solution["restore_checkpoint"](checkpoint, model, optimizer, generator)])

    res = ch12.check_restore_checkpoint(restore_as_array, display=False)
    assert not res.passed and "an ndarray; restore should return the step, an int" in res.message
