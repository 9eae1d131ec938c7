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

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..training import learning_rate
from ._calls import ReturnError
from ._core import Case, CheckResult, Mistake, Spec, Terms, check_spec, with_dtype

__all__ = ["check_ema_update", "check_warmup_lr", "SPECS"]


# --- ema_update ---------------------------------------------------------------------------------


def _cases_ema() -> list[Case]:
    cases: list[Case] = []
    for i, (decay, n) in enumerate([(0.999, 0), (0.999, 5), (0.9, 200), (0.9999, 40)]):
        g = torch.Generator().manual_seed(120 + i)
        shadow, param = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
        cases.append(((shadow, param, decay, n), {}))
    return cases + with_dtype(cases, (0, 1), torch.float64)[1:2]


def _decay_candidates(case: Case) -> dict[str, torch.Tensor]:
    shadow, _, decay, n = case[0]
    forms = {
        "d = min(decay, (1 + n)/(10 + n))": min(decay, (1 + n) / (10 + n)),
        "min(decay, n/(10 + n)); the warm-up is (1 + n)/(10 + n), which is 0.1 at the first "
        "update n = 0": min(decay, n / (10 + n)),
        "(1 + n)/(10 + n) without the cap: d = min(decay, (1 + n)/(10 + n)) stops growing at "
        "decay": (1 + n) / (10 + n),
        "decay itself, without the warm-up": decay,
        "1 − d (the shadow keeps the share d)": 1 - min(decay, (1 + n) / (10 + n)),
    }
    return {k: torch.full((shadow.shape[0],), v, dtype=torch.float64) for k, v in forms.items()}


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
    keep_dtype=True,
    terms=Terms({"shadow": 0, "param": 1}, _decay_candidates),
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


def _through_adamw(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn``, then write its value into an AdamW step as the course's loop does."""

    def run(step: int, base_lr: float, warmup: int) -> Any:
        value = fn(step, base_lr, warmup)
        if value is None:
            raise ReturnError("returned None; it should return the learning rate as a float")
        p = torch.nn.Parameter(torch.ones(2))
        opt = torch.optim.AdamW([p], lr=1.0, foreach=True)
        p.grad = torch.ones(2)
        opt.param_groups[0]["lr"] = value
        try:
            opt.step()
        except (RuntimeError, TypeError) as err:
            raise ReturnError(
                f"returned a {type(value).__name__}, which the optimizer cannot use as a learning "
                f"rate (AdamW, as the training loop builds it, fails with: {err}); return a "
                "Python float"
            ) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReturnError(
                f"returned a {type(value).__name__}; return a Python float (`float(...)`): the "
                "loop writes it into optimizer.param_groups, and a fused or foreach AdamW rejects "
                "a tensor there"
            )
        return float(value)

    return run


def _warmup_curve(
    student: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    _rtol: float,
    _atol: float,
) -> str | None:
    """Trace the rate over steps 1..3 w for w = 4 and name its shape."""
    w, lr = 4, 1.0
    got = [student(k, lr, w) for k in range(1, 3 * w + 1)]
    want = [reference(k, lr, w) for k in range(1, 3 * w + 1)]
    shown = ", ".join(f"{v:.3g}" for v in got)
    head = f"with base_lr = 1 and warmup_steps = 4 your rates at steps 1…12 are {shown}: "
    if got[:w] == [0.0] * (w - 1) + [1.0] or got[: w - 1] == [0.0] * (w - 1):
        return head + "step // warmup_steps is an integer division; use step / warmup_steps."
    if all(abs(g - min(1.0, (k + 1) / w)) < 1e-9 for k, g in enumerate(got, 1)):
        return head + "one step ahead: step k uses min(1, k / warmup_steps), so step 1 gets ¼."
    if all(abs(g - v) < 1e-9 for g, v in zip(got[:w], want[:w], strict=True)):
        return (
            head + "the warm-up is right, but after the warm-up the rate stays constant at base_lr."
        )
    return None


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
    wrap=_through_adamw,
    diagnoses=(_warmup_curve,),
)

SPECS: dict[str, Spec] = {"ema_update": _EMA, "warmup_lr": _WARMUP}


def check_ema_update(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``ema_update(shadow, param, decay, n) -> d shadow + (1 - d) param``."""
    return check_spec("ema_update", SPECS["ema_update"], fn, display=display)


def check_warmup_lr(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``warmup_lr(step, base_lr, warmup_steps) -> base_lr * min(1, step / warmup_steps)``."""
    return check_spec("warmup_lr", SPECS["warmup_lr"], fn, display=display)
