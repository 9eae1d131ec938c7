"""Checkers for exercise 12 (training on images): the EMA update and the learning-rate warm-up.

- ``ema_update(shadow: Tensor, param: Tensor, decay: float, n: int) -> Tensor``:
  ``d * shadow + (1 - d) * param`` with ``d = min(decay, (1 + n) / (10 + n))`` for the update
  number ``n = 0, 1, ...`` (as in :class:`minidiff.training.EMA`)
- ``warmup_lr(step: int, base_lr: float, warmup_steps: int) -> float``:
  ``base_lr * min(1, step / warmup_steps)`` for the 1-based optimizer step (``base_lr`` when
  ``warmup_steps == 0``), as in :func:`minidiff.train`

- ``make_checkpoint(model, optimizer, generator, step) -> dict`` and
  ``restore_checkpoint(checkpoint, model, optimizer, generator) -> int``: exact resume, checked by
  training a small network straight and interrupted + resumed, bit for bit
- ``frechet_distance(mu1, cov1, mu2, cov2) -> float``:
  ``||mu1 - mu2||² + tr(C1 + C2 - 2 (C1 C2)^½)``
  (as :func:`minidiff.metrics.fid.frechet_distance`)
- ``fid_at_infinity(ns, fids) -> float``: the intercept of the least-squares fit ``a + b / n``

``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..metrics.fid import frechet_distance as _frechet_distance
from ..training import learning_rate
from ._calls import ReturnError, python_float
from ._core import Case, Checker, Fn, Mistake, Spec, Terms, specs_of, with_dtype

# --- ema_update ---------------------------------------------------------------------------------


def _cases_ema() -> list[Case]:
    cases: list[Case] = []
    for i, (decay, n) in enumerate([(0.999, 0), (0.999, 5), (0.9, 200), (0.9999, 40)]):
        g = torch.Generator().manual_seed(120 + i)
        shadow, param = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
        cases.append(((shadow, param, decay, n), {}))
    return cases + with_dtype(cases, (0, 1), torch.float64)[1:2]


def _decay_forms(case: Case) -> list[tuple[str, str, float]]:
    """The decays ``d`` an answer may use: ``(formula, what is wrong with it, value)``."""
    _, _, decay, n = case[0]
    return [
        ("min(decay, (1 + n)/(10 + n))", "", min(decay, (1 + n) / (10 + n))),
        (
            "min(decay, n/(10 + n))",
            "; the warm-up is (1 + n)/(10 + n), which is 0.1 at the first update n = 0",
            min(decay, n / (10 + n)),
        ),
        (
            "(1 + n)/(10 + n)",
            " without the cap: d = min(decay, (1 + n)/(10 + n)) stops growing at decay",
            (1 + n) / (10 + n),
        ),
        ("decay", " itself, without the warm-up", decay),
    ]


def _per_row(case: Case, forms: dict[str, float]) -> dict[str, torch.Tensor]:
    rows = case[0][0].shape[0]
    return {k: torch.full((rows,), v, dtype=torch.float64) for k, v in forms.items()}


def _decay_candidates(case: Case) -> dict[str, torch.Tensor]:
    """The coefficient of ``shadow``: the decay ``d`` of each form (or ``1 − d``, swapped)."""
    forms = _decay_forms(case)
    named = {("d = " if not why else "") + f + why: v for f, why, v in forms}
    named["1 − d (the shadow keeps the share d)"] = 1 - forms[0][2]
    return _per_row(case, named)


def _param_candidates(case: Case) -> dict[str, torch.Tensor]:
    """The coefficient of ``param``: ``1 − d`` for the decay ``d`` of each form (or ``d``)."""
    forms = _decay_forms(case)
    named = {("1 − d" if not why else f"1 − {f}"): 1 - v for f, why, v in forms}
    named["d (the new parameters get the share 1 − d)"] = forms[0][2]
    return _per_row(case, named)


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
            "the weights are swapped: the *shadow* keeps the large share d, the new parameters "
            "get 1 - d: d * shadow + (1 - d) * param.",
        ),
        "no_warmup": Mistake(
            _ema(warm=None),
            "you always use `decay`; early on the average must forget the random initialisation "
            "faster: d = min(decay, (1 + n) / (10 + n)).",
        ),
        "max_not_min": Mistake(
            _ema(pick=max),
            "use min(decay, (1 + n) / (10 + n)), not max: the warm-up *lowers* the decay at "
            "first and reaches `decay` later.",
        ),
        "one_based": Mistake(
            _ema(warm=lambda n: (2 + n) / (11 + n)),
            "your warm-up is one update ahead: n counts updates from 0, so the first uses (1 + "
            "0) / (10 + 0) = 0.1.",
        ),
    },
    keep_dtype=True,
    terms=Terms(
        {"shadow": 0, "param": 1},
        own={"shadow": _decay_candidates, "param": _param_candidates},
    ),
    doc="Check ``ema_update(shadow, param, decay, n) -> d shadow + (1 - d) param``.",
)
check_ema_update = Checker("ema_update", _EMA)


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
                f"rate (AdamW, as the training loop builds it, fails with: {err}); return a Python "
                "float"
            ) from None
        if isinstance(value, np.floating):  # a NumPy float works as a learning rate
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReturnError(
                f"returned a {type(value).__name__}; return a Python float (`float(...)`): the "
                "loop writes it into optimizer.param_groups, and a fused or foreach AdamW rejects "
                "a tensor there"
            )
        return float(value)

    return run


def _warmup_curve(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
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
            "your first step has learning rate 0: steps count from 1, so step k uses base_lr * "
            "min(1, k / warmup_steps).",
        ),
        "no_cap": Mistake(
            _warm(cap=False),
            "after the warm-up the rate keeps growing: cap the factor at 1, base_lr * min(1, "
            "step / warmup_steps).",
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
    doc=(
        "Check ``warmup_lr(step, base_lr, warmup_steps) -> base_lr * min(1, step / warmup_steps)``."
    ),
)
check_warmup_lr = Checker("warmup_lr", _WARMUP)

# --- exact resume ---------------------------------------------------------------------------------

_RESUME_AT, _STEPS, _WARM, _LR = 3, 5, 4, 0.05


def _net(seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def _train_steps(
    model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, first: int, last: int
) -> None:
    """Steps ``first..last``; the batch and learning rate depend on the generator and step."""
    for step in range(first, last + 1):
        x = torch.randn(16, 3, generator=gen)
        y = torch.randn(16, 2, generator=gen)
        for group in opt.param_groups:
            group["lr"] = _LR * min(1.0, step / _WARM)
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def _ref_make(
    model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, step: int
) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(model.state_dict()),
        "optimizer": copy.deepcopy(opt.state_dict()),
        "generator": gen.get_state(),
        "step": step,
    }


def _a(kind: str) -> str:
    """``kind`` with its indefinite article as the name is said: "an int64", "a Tensor",
    "a uint8" (you-int), "an ndarray" (en-dee)."""
    vowel_sound = kind[:1].lower() in "aeio" or kind.startswith("nd")
    return f"{'an' if vowel_sound else 'a'} {kind}"


def _not_a_state_dict(key: str, value: Any) -> str:
    """A checkpoint entry ``'model'`` or ``'optimizer'`` that is not a state dict."""
    fix = f"store its state, copy.deepcopy({key}.state_dict())"
    if isinstance(value, (nn.Module, torch.optim.Optimizer)):
        return (
            f"returned a checkpoint whose {key!r} is the {key} itself ({_a(type(value).__name__)}"
            f"), which the run goes on changing: {fix}, a copy of where it was at the checkpoint"
        )
    return (
        f"returned a checkpoint whose {key!r} is {_a(type(value).__name__)}, not a state dict: "
        f"{fix}"
    )


def _ref_restore(
    ckpt: Any, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
) -> int:
    """Restore what a checkpoint holds; a missing or odd part is left alone (for the diagnoses)."""
    if not isinstance(ckpt, dict):
        raise ReturnError(
            f"returned a {type(ckpt).__name__}; it should return a dict with the keys 'model', "
            "'optimizer', 'generator' and 'step'"
        )
    for key in ("model", "optimizer"):
        if key in ckpt and not isinstance(ckpt[key], Mapping):
            raise ReturnError(_not_a_state_dict(key, ckpt[key]))
    if "model" in ckpt:
        model.load_state_dict(ckpt["model"])
    if "optimizer" in ckpt:
        opt.load_state_dict(ckpt["optimizer"])
    state = ckpt.get("generator")
    if isinstance(state, torch.Generator):
        gen.set_state(state.get_state())
    elif isinstance(state, torch.Tensor):
        gen.set_state(state)
    return int(ckpt.get("step", 0))


def _resume_run(
    make: Any, restore: Any, seed: int, record: dict[str, Any] | None = None
) -> torch.Tensor:
    """Train 1.._RESUME_AT, checkpoint with ``make``, train on with the same objects to _STEPS
    (the straight run), then restore into fresh objects with ``restore`` and train the rest.
    Returns the resumed run's final weights and step (the reference run equals the straight one)."""
    model = _net(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=_LR)
    gen = torch.Generator().manual_seed(100 + seed)
    _train_steps(model, opt, gen, 1, _RESUME_AT)
    at_checkpoint = _flat(model), gen.get_state(), copy.deepcopy(opt.state_dict())
    ckpt = make(model, opt, gen, _RESUME_AT)
    if ckpt is None:
        raise ReturnError(
            "returned None; it should return the checkpoint dict. Did you forget `return`?"
        )
    if not isinstance(ckpt, dict):
        raise ReturnError(
            f"returned a {type(ckpt).__name__}; it should return a dict with the keys 'model', "
            "'optimizer', 'generator' and 'step'"
        )
    _train_steps(model, opt, gen, _RESUME_AT + 1, _STEPS)  # the run goes on meanwhile
    fresh = _net(seed + 50)  # other weights: all must be restored
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=_LR)
    fresh_gen = torch.Generator().manual_seed(999)
    step = restore(ckpt, fresh, fresh_opt, fresh_gen)
    if step is None:
        raise ReturnError(
            "returned None; restore should return the step, an int. Did you forget `return`?"
        )
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ReturnError(
            f"returned {_a(type(step).__name__)}; restore should return the step, an int"
        )
    step = int(step)  # a NumPy integer too, as range() and the training loop take it
    if record is not None:
        record.update(
            ckpt=ckpt,
            at_checkpoint=at_checkpoint,
            # a copy: the optimizer's state_dict holds the live moment tensors, which the
            # training below goes on updating in place
            restored=(
                _flat(fresh),
                fresh_gen.get_state(),
                copy.deepcopy(fresh_opt.state_dict()),
                step,
            ),
        )
    _train_steps(fresh, fresh_opt, fresh_gen, step + 1, _STEPS)
    return torch.cat([_flat(fresh).double(), torch.tensor([float(step)], dtype=torch.float64)])


def _resume_diagnosis(which: str) -> Callable[..., str | None]:
    """Say which part of the resume is wrong: weights, optimizer, generator or step."""

    def diagnose(student: Any, reference: Any, cases: Any, rtol: float, atol: float) -> str | None:
        for (seed, _which), _kw in cases:
            rec: dict[str, Any] = {}
            fn = student.__wrapped_student__
            make, restore = (fn, _ref_restore) if which == "make" else (_ref_make, fn)
            _resume_run(make, restore, seed, rec)
            weights, gen_state, opt_state, step = rec["restored"]
            w0, g0, o0 = rec["at_checkpoint"]
            ckpt = rec["ckpt"]
            problem = (
                (_missing_keys(ckpt) if which == "make" else None)
                or _weights_problem(which, weights, w0)
                or _generator_state_problem(which, ckpt, gen_state, g0)
                or _optimizer_state_problem(which, opt_state, o0)
            )
            if problem:
                return problem
            if step != _RESUME_AT:
                return _step_problem(which, ckpt, step)
        return None

    return diagnose


def _step_problem(which: str, ckpt: dict[str, Any], step: int) -> str:
    """Name an off-by-k step: stored wrong by make, or returned wrong by restore."""
    stored = ckpt.get("step")
    if which == "make" and stored != _RESUME_AT:
        return (
            f"your checkpoint stores step {stored!r} for a checkpoint made after step "
            f"{_RESUME_AT}: store `step` as it is given (the last step taken); the resumed "
            f"run then starts from step + 1, and the warm-up and the EMA read it."
        )
    if which == "restore":
        return (
            f"your restore returns {step} for a checkpoint that stores step {_RESUME_AT}: "
            "return ckpt['step'] as stored (the last step taken); the training loop starts "
            "from step + 1 itself."
        )
    return (
        f"the resumed run starts from step {step + 1}, not {_RESUME_AT + 1}: the step "
        "must be saved and returned (the warm-up and the EMA read it)."
    )


def _missing_keys(ckpt: dict[str, Any]) -> str | None:
    missing = [k for k in ("model", "optimizer", "generator", "step") if k not in ckpt]
    if not missing:
        return None
    return (
        f"your checkpoint has no {', '.join(repr(k) for k in missing)}: a resumed "
        "run needs the weights, the optimizer's state, the generator's state and "
        "the step."
    )


def _weights_problem(which: str, weights: torch.Tensor, w0: torch.Tensor) -> str | None:
    if torch.equal(weights, w0):
        return None
    if which == "make":
        return (
            "the weights restored from your checkpoint are those of a later step: "
            "`model.state_dict()` holds the live tensors, which the next optimizer "
            "steps change in place. Store a copy: copy.deepcopy(model.state_dict())."
        )
    return (
        "after your restore the model's weights are not those of the checkpoint: load "
        "them (model.load_state_dict)."
    )


def _generator_state_problem(
    which: str, ckpt: dict[str, Any], gen_state: torch.Tensor, g0: torch.Tensor
) -> str | None:
    if torch.equal(gen_state, g0):
        return None
    if which == "make" and isinstance(ckpt.get("generator"), torch.Generator):
        return (
            "you stored the generator itself, which the run goes on using: store its "
            "state, generator.get_state(), a copy of where it was at the checkpoint."
        )
    return (
        "the generator is not where it was at the checkpoint, so the resumed run "
        "draws other batches: save generator.get_state() and restore it with "
        "generator.set_state(...)."
    )


def _optimizer_state_problem(
    which: str, opt_state: dict[str, Any], o0: dict[str, Any]
) -> str | None:
    exp_avg = [v["exp_avg"] for v in opt_state["state"].values()] if opt_state.get("state") else []
    exp_avg0 = [v["exp_avg"] for v in o0["state"].values()]
    if len(exp_avg) == len(exp_avg0) and all(
        torch.equal(a, b) for a, b in zip(exp_avg, exp_avg0, strict=False)
    ):
        return None
    if which == "make" and len(exp_avg) == len(exp_avg0):
        return (
            "the optimizer's state in your checkpoint is that of a later step: "
            "optimizer.state_dict() holds the live moment tensors; copy it "
            "(copy.deepcopy)."
        )
    return (
        "AdamW's state (its moment estimates and step count) is not restored: the "
        "resumed run then takes different steps. Save optimizer.state_dict() and load "
        "it with optimizer.load_state_dict(...)."
    )


def _resume_harness(which: str) -> Callable[[Any], Any]:
    def wrap(fn: Any) -> Any:
        def run(seed: int, _which: str) -> torch.Tensor:
            if which == "make":
                return _resume_run(fn, _ref_restore, seed)
            return _resume_run(_ref_make, fn, seed)

        run.__wrapped_student__ = fn  # type: ignore[attr-defined]
        return run

    return wrap


def _resume_spec(which: str, reference: Fn, mistakes: dict[str, Mistake], doc: str) -> Spec:
    """The checker of one half of a checkpoint, ``which`` (``"make"`` or ``"restore"``).

    The answer's half, paired with the reference's other half, resumes a short training run that
    must end exactly (tolerance 0) where the uninterrupted run ends; the diagnosis names the part
    of the state (weights, optimizer, generator, step) that the resume lost.
    """
    return Spec(
        lambda: [((0, which), {}), ((1, which), {})],
        _resume_harness(which)(reference),
        mistakes,
        wrap=_resume_harness(which),
        rtol=0.0,
        atol=0.0,
        diagnoses=(_resume_diagnosis(which),),
        doc=doc,
    )


def _mk_variant(kind: str) -> Callable[..., Any]:
    def make(
        model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, step: int
    ) -> dict[str, Any]:
        out = _ref_make(model, opt, gen, step)
        if kind == "no_optimizer":
            del out["optimizer"]
        elif kind == "no_generator":
            del out["generator"]
        elif kind == "aliased_weights":
            out["model"] = model.state_dict()
        elif kind == "no_step":
            del out["step"]
        return out

    return make


def _rs_variant(kind: str) -> Callable[..., Any]:
    def restore(
        ckpt: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator
    ) -> int:
        model.load_state_dict(ckpt["model"])
        if kind != "no_optimizer":
            opt.load_state_dict(ckpt["optimizer"])
        if kind != "no_generator":
            gen.set_state(ckpt["generator"])
        return 0 if kind == "step_zero" else int(ckpt["step"])

    return restore


_MAKE = _resume_spec(
    "make",
    _ref_make,
    {
        "no_optimizer": Mistake(
            _mk_variant("no_optimizer"),
            "your checkpoint leaves out the optimizer's state: AdamW's moment estimates start "
            "from zero again on resume. Save copy.deepcopy(optimizer.state_dict()).",
        ),
        "no_generator": Mistake(
            _mk_variant("no_generator"),
            "your checkpoint leaves out the generator's state, so the resumed run draws other "
            "batches, t and ε: save generator.get_state().",
        ),
        "aliased_weights": Mistake(
            _mk_variant("aliased_weights"),
            "your checkpoint holds model.state_dict() itself: those are the live tensors, which "
            "the next optimizer steps change in place. Store a copy: "
            "copy.deepcopy(model.state_dict()).",
        ),
        "no_step": Mistake(
            _mk_variant("no_step"),
            "your checkpoint leaves out the step: the resumed run restarts the warm-up (and the "
            "EMA's d_n) from zero. Save it.",
        ),
    },
    doc="Check ``make_checkpoint(model, optimizer, generator, step) -> dict`` by an exact resume.",
)
check_make_checkpoint = Checker("make_checkpoint", _MAKE)

_RESTORE = _resume_spec(
    "restore",
    _ref_restore,
    {
        "no_optimizer": Mistake(
            _rs_variant("no_optimizer"),
            "you did not restore the optimizer: load its state with "
            "optimizer.load_state_dict(...).",
        ),
        "no_generator": Mistake(
            _rs_variant("no_generator"),
            "you did not restore the generator: generator.set_state(checkpoint['generator']).",
        ),
        "step_zero": Mistake(
            _rs_variant("step_zero"),
            "return the checkpoint's step: the resumed loop continues from step + 1.",
        ),
    },
    doc="Check ``restore_checkpoint(checkpoint, model, optimizer, generator) -> step``.",
)
check_restore_checkpoint = Checker("restore_checkpoint", _RESTORE)


# --- frechet_distance and fid_at_infinity ------------------------------------------------------


_python_float = python_float(
    "): a distance and an extrapolated FID are numbers to report and compare"
)


def _spd(d: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.2 * torch.eye(d, dtype=torch.float64)


def _cases_fd() -> list[Case]:
    cases: list[Case] = []
    for i, d in enumerate((3, 5, 4)):
        g = torch.Generator().manual_seed(140 + i)
        cases.append(
            (
                (
                    torch.randn(d, generator=g, dtype=torch.float64),
                    _spd(d, g),
                    torch.randn(d, generator=g, dtype=torch.float64),
                    _spd(d, g),
                ),
                {},
            )
        )
    return cases


def _sqrtm(c: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


def _fd_variant(kind: str) -> Callable[..., float]:
    def fd(m1: torch.Tensor, c1: torch.Tensor, m2: torch.Tensor, c2: torch.Tensor) -> float:
        d2 = float(((m1 - m2) ** 2).sum())
        root1 = _sqrtm(c1)
        cross = float(torch.linalg.eigvalsh(root1 @ c2 @ root1).clamp(min=0).sqrt().sum())
        tr = float(torch.trace(c1) + torch.trace(c2))
        if kind == "no_two":
            return d2 + tr - cross
        if kind == "no_root":
            return d2 + tr - 2 * float(torch.trace(c1 @ c2))
        if kind == "roots_apart":
            return d2 + tr - 2 * float(torch.trace(root1 @ _sqrtm(c2)))
        if kind == "norm_not_squared":
            return d2**0.5 + tr - 2 * cross
        return d2 + tr - 2 * cross

    return fd


def _cross_term_probe(
    student: Any, reference: Any, cases: Any, _rtol: float, _atol: float
) -> str | None:
    """Probe diagonal covariances (where every square root is the elementwise one) and equal
    covariances (which commute): an answer right on both but wrong in general takes the root of
    the cross term elementwise, or as if the covariances commuted."""

    def agrees(*args: torch.Tensor) -> bool:
        got, want = float(student(*args)), float(reference(*args))
        return math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-8)

    for (m1, c1, m2, c2), _kw in cases:
        if agrees(m1, c1, m2, c2):
            continue
        if not agrees(m1, torch.diag(c1.diagonal()), m2, torch.diag(c2.diagonal())):
            return None
        if agrees(m1, c1, m2, c1):
            return (
                "your distance is right when the covariances commute (diagonal, or equal) but "
                "not in general: tr(Σ1^½ Σ2^½) is not tr((Σ1 Σ2)^½) then. Use tr((Σ1^½ Σ2 "
                "Σ1^½)^½), the square root of one symmetric matrix."
            )
        return (
            "your distance is right for diagonal covariances, where a matrix square root is the "
            "square root of each entry, but not in general: the cross term tr((Σ1 Σ2)^½) takes "
            "a matrix square root (the matrix R with R R = Σ1^½ Σ2 Σ1^½, from its "
            "eigendecomposition), not the elementwise √ of the entries."
        )
    return None


_FD = Spec(
    _cases_fd,
    lambda m1, c1, m2, c2: _frechet_distance(m1, c1, m2, c2),
    {
        "no_two": Mistake(
            _fd_variant("no_two"),
            "the cross term is −2 tr((Σ1 Σ2)^½): you subtracted it once. (With Σ1 = Σ2 the trace "
            "terms must cancel: tr Σ + tr Σ − 2 tr Σ = 0.)",
        ),
        "no_root": Mistake(
            _fd_variant("no_root"),
            "the cross term takes the matrix square root: tr((Σ1 Σ2)^½), not tr(Σ1 Σ2) (the "
            "distance is a squared 2-Wasserstein distance, in units of the features squared).",
        ),
        "roots_apart": Mistake(
            _fd_variant("roots_apart"),
            "tr(Σ1^½ Σ2^½) equals tr((Σ1 Σ2)^½) only when the covariances commute; use tr((Σ1^½ "
            "Σ2 Σ1^½)^½), the square root of one symmetric matrix.",
        ),
        "norm_not_squared": Mistake(
            _fd_variant("norm_not_squared"),
            "the mean term is the squared distance ||μ1 − μ2||², not the distance.",
        ),
    },
    wrap=_python_float,
    rtol=1e-6,
    atol=1e-8,
    diagnoses=(_cross_term_probe,),
    doc="Check ``frechet_distance(mu1, cov1, mu2, cov2) -> float`` (the FID formula).",
)
check_frechet_distance = Checker("frechet_distance", _FD)


def _cases_fi() -> list[Case]:
    cases: list[Case] = []
    for i, (a, b, ns) in enumerate(
        (
            (0.25, 50.0, [50, 100, 200, 400, 800]),
            (3.0, 400.0, [100, 300, 1000]),
            (1.2, 20.0, [20, 40, 80, 160]),
        )
    ):
        g = torch.Generator().manual_seed(150 + i)
        fids = [a + b / n + 0.02 * float(torch.randn(1, generator=g)) for n in ns]
        cases.append(((ns, fids), {}))
    return cases


def _fit(
    ns: list[float], fids: list[float], basis: Callable[[float], float]
) -> tuple[float, float]:
    A = torch.tensor([[1.0, basis(n)] for n in ns], dtype=torch.float64)
    a, b = torch.linalg.lstsq(A, torch.tensor(fids, dtype=torch.float64)[:, None]).solution[:, 0]
    return float(a), float(b)


_FI = Spec(
    _cases_fi,
    lambda ns, fids: _fit(ns, fids, lambda n: 1.0 / n)[0],
    {
        "linear_in_n": Mistake(
            lambda ns, fids: _fit(ns, fids, lambda n: float(n))[0],
            "you fitted a + b n; the bias falls like 1/n, so fit a + b/n (the regressor is 1/n) "
            "and return a, its value at 1/n = 0.",
        ),
        "slope": Mistake(
            lambda ns, fids: _fit(ns, fids, lambda n: 1.0 / n)[1],
            "you returned the slope b of a + b/n; the FID at n = ∞ is the intercept a.",
        ),
        "largest_n": Mistake(
            lambda ns, fids: float(fids[int(max(range(len(ns)), key=lambda i: ns[i]))]),
            "the FID of the largest sample is still biased by b/n; extrapolate: fit a + b/n and "
            "return a.",
        ),
        "mean": Mistake(
            lambda ns, fids: float(sum(fids) / len(fids)),
            "the mean of the FIDs keeps their bias; fit a + b/n and return the intercept a.",
        ),
    },
    wrap=_python_float,
    rtol=1e-6,
    atol=1e-8,
    doc="Check ``fid_at_infinity(ns, fids) -> float``: the intercept of ``fids ~ a + b / n``.",
)
check_fid_at_infinity = Checker("fid_at_infinity", _FI)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
