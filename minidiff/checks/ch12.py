"""Checkers for exercise 12 (training on images): the EMA update and the learning-rate warm-up.

- ``ema_update(shadow: Tensor, param: Tensor, decay: float, n: int) -> Tensor``:
  ``d * shadow + (1 - d) * param`` with ``d = min(decay, (1 + n) / (10 + n))`` for the update
  number ``n = 0, 1, ...`` (as in :class:`minidiff.training.EMA`)
- ``warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float``:
  ``base_lr * min(1, step / warmup_steps)`` for the 1-based optimizer step (``base_lr`` when
  ``warmup_steps == 0``), as in :func:`minidiff.train`

``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..training import learning_rate
from ._core import Case, CheckResult, Mistake, Spec, check_spec

__all__ = ["check_ema_update", "check_warmup_lr", "SPECS"]


# --- ema_update ---------------------------------------------------------------------------------


def _cases_ema() -> list[Case]:
    cases: list[Case] = []
    for i, (decay, n) in enumerate([(0.999, 0), (0.999, 5), (0.9, 200), (0.9999, 40)]):
        g = torch.Generator().manual_seed(120 + i)
        shadow, param = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
        cases.append(((shadow, param, decay, n), {}))
    return cases


def _ema(
    warm: Callable[[int], float] | None = lambda n: (1 + n) / (10 + n),
    pick: Callable[[float, float], float] = min,
    swapped: bool = False,
) -> Callable[..., Any]:
    def fn(shadow: torch.Tensor, param: torch.Tensor, decay: float, n: int) -> torch.Tensor:
        d = decay if warm is None else pick(decay, warm(n))
        return (1 - d) * shadow + d * param if swapped else d * shadow + (1 - d) * param

    return fn


_EMA = Spec(
    _cases_ema,
    _ema(),
    {
        "swapped": Mistake(
            _ema(swapped=True),
            "the weights are swapped: the *shadow* keeps the large share d, the new parameters get "
            "1 - d: d * shadow + (1 - d) * param.",
        ),
        "no_warmup": Mistake(
            _ema(warm=None),
            "you always use `decay`; early on the average must forget the random initialisation "
            "faster: d = min(decay, (1 + n) / (10 + n)).",
        ),
        "max_not_min": Mistake(
            _ema(pick=max),
            "use min(decay, (1 + n) / (10 + n)), not max: the warm-up *lowers* the decay at first "
            "and reaches `decay` later.",
        ),
        "one_based": Mistake(
            _ema(warm=lambda n: (2 + n) / (11 + n)),
            "your warm-up is one update ahead: n counts updates from 0, so the first uses "
            "(1 + 0) / (10 + 0) = 0.1.",
        ),
    },
)


# --- warmup_lr ----------------------------------------------------------------------------------


def _cases_warmup() -> list[Case]:
    # base rates of order 1 (the function is linear in base_lr) keep every mistake far above the
    # checkers' absolute tolerance
    return [
        ((1, 0.5, 100), {}),
        ((50, 1.0, 200), {}),
        ((500, 2.0, 100), {}),
        ((7, 0.3, 0), {}),
        ((10, 1.5, 10), {}),
    ]


def _warm(
    offset: int = 0, cap: bool = True, zero: str = "base"
) -> Callable[[int, float, int], float]:
    def fn(step: int, lr: float, warmup: int) -> float:
        if warmup == 0:
            return lr if zero == "base" else 0.0
        frac = (step + offset) / warmup
        return lr * (min(1.0, frac) if cap else frac)

    return fn


_WARMUP = Spec(
    _cases_warmup,
    # the loop's own rate (constant after the warm-up), so the checker cannot drift from train()
    lambda step, lr, warmup: learning_rate(step, step, lr, warmup, "constant"),
    {
        "zero_based": Mistake(
            _warm(offset=-1),
            "your first step has learning rate 0: steps count from 1, so step k uses "
            "base_lr * min(1, k / warmup_steps).",
        ),
        "no_cap": Mistake(
            _warm(cap=False),
            "after the warm-up the rate keeps growing: cap the factor at 1, "
            "base_lr * min(1, step / warmup_steps).",
        ),
        "no_warmup_is_zero": Mistake(
            _warm(zero="zero"),
            "with warmup_steps = 0 there is no warm-up: return base_lr (and avoid dividing by 0).",
        ),
    },
    rtol=1e-9,
    atol=1e-12,
)

SPECS: dict[str, Spec] = {"ema_update": _EMA, "warmup_lr": _WARMUP}


def check_ema_update(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``ema_update(shadow, param, decay, n) -> d shadow + (1 - d) param``."""
    return check_spec("ema_update", SPECS["ema_update"], fn, display=display)


def check_warmup_lr(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``warmup_lr(step, base_lr, warmup_steps) -> base_lr * min(1, step / warmup_steps)``."""
    return check_spec("warmup_lr", SPECS["warmup_lr"], fn, display=display)
