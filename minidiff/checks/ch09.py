"""Checkers for exercise 9 (guidance: both guided ε and the label-dropout training step).

The student writes, on explicit schedule arrays (``alpha_bar``: ``(T + 1,)``, index 0 = clean data):

- ``classifier_guided_eps(eps_model, classifier, x_t, t, y, alpha_bar, w) -> (B, D)``
      ``eps_model(x_t, t) - sqrt(1 - ab_t) · w · ∇_x log softmax(classifier(x_t, t))[y]``
- ``cfg_eps(model, x_t, t, y, w, null_label) -> (B, D)``
      ``(1 + w) model(x_t, t, y) - w model(x_t, t, ∅)``
- ``label_dropout_loss(model, x0, y, alpha_bar, p_uncond, null_label, generator) -> scalar``
      draw ``t ~ U{1..T}``, then ``noise``, then ``u = rand(B)``; ``y' = ∅ where u < p_uncond``;
      ``mean ||noise - model(sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, t, y')||²``

References come from ``minidiff`` (``classifier_guidance``, ``classifier_free_guidance``,
``conditional_eps_loss``). Every case runs with the global torch RNG seeded inside
:func:`torch.random.fork_rng`, so an answer that draws random numbers where it should not (label
dropout at sampling time) is reproducible, and the caller's RNG state is left alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .._validation import check_labels
from ..guidance import classifier_guidance
from ..losses import conditional_eps_loss
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._calls import ReturnError, case_timesteps, own_rng, schedule_from_alpha_bar, seeded
from ._cfg import P_UNCOND, cfg_slip, reference_cfg
from ._core import Case, Checker, Mistake, Spec, specs_of
from ._spy import draw_problem, record, t_range_problem
from .ch04 import TinyEps

Fn = Callable[..., Any]


def _init(module: nn.Module, seed: int, scale: float = 0.7) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))


class TinyClassifier(nn.Module):
    """A small deterministic noisy classifier ``(x (B, D), t (B,)) -> logits (B, C)``."""

    def __init__(self, T: int, num_classes: int = 3, dim: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.T, self.num_classes = T, num_classes
        self.net = nn.Sequential(nn.Linear(dim + 1, 16), nn.Tanh(), nn.Linear(16, num_classes))
        _init(self, seed)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, (t.to(x.dtype) / self.T)[:, None]], dim=1))


class TinyConditionalEps(nn.Module):
    """A small deterministic ``model(x (B, D), t (B,), y (B,)) -> (B, D)``; ∅ is ``num_classes``."""

    def __init__(self, T: int, num_classes: int = 3, dim: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.T, self.num_classes = T, num_classes
        self.net = nn.Sequential(
            nn.Linear(dim + 1 + num_classes + 1, 16), nn.Tanh(), nn.Linear(16, dim)
        )
        _init(self, seed)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | int) -> torch.Tensor:
        # labels as the course's networks take them: an int for the whole batch or an integer
        # tensor (B,), in 0..C-1 or the null label C (a float label is refused, as they refuse it)
        yy = check_labels(y, x.shape[0], self.num_classes, allow_null=True, name="model's y")
        onehot = nn.functional.one_hot(yy.to(x.device), self.num_classes + 1).to(x.dtype)
        return self.net(torch.cat([x, (t.to(x.dtype) / self.T)[:, None], onehot], dim=1))


def _schedules() -> list[NoiseSchedule]:
    return [linear_schedule(20, 0.01, 0.2), cosine_schedule(12)]


def _no_grad_cause(fn: Fn, args: Sequence[Any], kwargs: dict[str, Any], err: Exception) -> str:
    """Why no gradient reached x_t: the function works with gradients on (then only the sampler's
    ``no_grad`` breaks it: ``enable_grad`` is missing), or not even then (``x_t`` never required
    grad)."""
    try:
        with torch.enable_grad():
            seeded(fn)(*args, **kwargs)
    except RuntimeError:
        return (
            "cannot take the classifier's gradient with respect to x_t: x_t does not require "
            "grad. Differentiate a copy that does, `x = x_t.detach().requires_grad_(True)`, and "
            f"call the classifier on x (the error: {err})"
        )
    return (
        "cannot take the classifier's gradient when it is called the way a sampler calls it, "
        "inside torch.no_grad(): wrap the gradient computation in `with torch.enable_grad():` "
        f"(the sampler would crash with this error: {err})"
    )


def _in_sampler(fn: Fn) -> Fn:
    """Run ``fn`` as a sampler does: under ``torch.no_grad()``, global RNG seeded."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            try:
                out = seeded(fn)(*args, **kwargs)
            except RuntimeError as err:
                if "does not require grad" in str(err) or "does not have a grad_fn" in str(err):
                    raise ReturnError(_no_grad_cause(fn, args, kwargs, err)) from None
                raise
        return out.detach() if isinstance(out, torch.Tensor) else out

    return run


def _ts(T: int, B: int, seed: int) -> torch.Tensor:
    return case_timesteps(T, B, seed)


# --- classifier_guided_eps ---------------------------------------------------------------------


@own_rng
def _cases_cg() -> list[Case]:
    cases: list[Case] = []
    for i, s in enumerate(_schedules()):
        for w in (1.0, 2.5):
            g = torch.Generator().manual_seed(10 + i)
            x_t = torch.randn(8, 2, generator=g)
            y = torch.randint(0, 3, (8,), generator=g)
            eps_model = TinyEps(s.T, seed=i).requires_grad_(False)
            clf = TinyClassifier(s.T, seed=5 + i).requires_grad_(False)
            args = (eps_model, clf, x_t, _ts(s.T, 8, 20 + i), y, s.alpha_bar.clone(), w)
            cases.append((args, {}))
    return cases


def _grad(
    classifier: Fn, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, kind: str
) -> torch.Tensor:
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        logits = classifier(x, t)
        if kind == "log_softmax":
            obj = torch.log_softmax(logits, 1)
        elif kind == "softmax":
            obj = torch.softmax(logits, 1)
        else:
            obj = logits
        (g,) = torch.autograd.grad(obj.gather(1, y[:, None]).sum(), x)
    return g


def _ref_cg(
    eps_model: Fn,
    classifier: Fn,
    x_t: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    alpha_bar: torch.Tensor,
    w: float,
) -> torch.Tensor:
    sched = schedule_from_alpha_bar(alpha_bar)
    C = int(classifier.num_classes)  # type: ignore[attr-defined]
    return classifier_guidance(eps_model, classifier, y, w, sched, num_classes=C)(x_t, t)


def _cg_variant(*, sign: float = -1.0, coef: str = "sqrt", grad: str = "log_softmax") -> Fn:
    def fn(
        eps_model: Fn,
        classifier: Fn,
        x_t: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        alpha_bar: torch.Tensor,
        w: float,
    ) -> torch.Tensor:
        ab = alpha_bar.to(x_t.dtype)[t][:, None]
        g = _grad(classifier, x_t, t, y, grad)
        if coef == "at_x":
            return eps_model(x_t + w * g, t)
        factor = {"sqrt": (1 - ab).sqrt(), "plain": 1 - ab, "none": torch.ones_like(ab)}[coef]
        return eps_model(x_t, t) + sign * factor * w * g

    return fn


def _cg_diagnosis(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """The answer's guidance term, ε_θ − result, against ∇ log p(y|x_t) times named factors."""
    for args, _ in cases:
        eps_model, clf, x_t, t, y, ab, w = args
        out = student(*args)
        eps = eps_model(x_t, t).detach().double()
        d = eps - out.double()
        G = _grad(clf, x_t, t, y, "log_softmax").double()
        C = int(clf.num_classes)
        gn = (G * G).sum(1)
        if torch.allclose(out.double(), eps, rtol=rtol, atol=atol):
            return (
                "your result is ε_θ(x_t, t) unchanged: the guidance term is zero. If you "
                "differentiated Σ_c log p(c|x_t), that sum is 0 (the probabilities sum to 1): "
                "take each row's own class, log_softmax(logits).gather(1, y[:, None])."
            )
        c = (d * G).sum(1) / gn
        if not torch.allclose(c[:, None] * G, d, rtol=1e-3, atol=1e-6):
            if torch.allclose(
                (-out.double() * G).sum(1)[:, None] / gn[:, None] * G, -out.double(), rtol=1e-3
            ):
                return (
                    "your result is the guidance term alone; add it to the model's prediction: ε̂ "
                    "= ε_θ(x_t, t) − √(1 − ᾱ_t) w ∇ log p(y|x_t)."
                )
            with torch.enable_grad():
                xg = x_t.detach().double().requires_grad_(True)
                total = torch.log_softmax(clf(xg.to(x_t.dtype), t), 1).sum()
                (all_classes,) = torch.autograd.grad(total, xg)
            others = [
                (
                    "the gradient of Σ_c log p(c|x_t), every class at once",
                    all_classes.double(),
                )
            ] + [
                (
                    "the gradient of another class's log-probability than each row's y",
                    _grad(clf, x_t, t, (y + shift) % C, "log_softmax").double(),
                )
                for shift in range(1, C)
            ]
            for text, other in others:
                k = (d * other).sum(1) / (other * other).sum(1)
                if torch.allclose(k[:, None] * other, d, rtol=1e-3, atol=1e-6):
                    return (
                        f"your guidance follows {text}: take the log-probability of each row's own "
                        "class, log_softmax(logits).gather(1, y[:, None]), then its gradient."
                    )
            return None
        a = ab.double()[t]
        want = {
            "w √(1 − ᾱ_t)": w * (1 - a).sqrt(),
            "w (1 − ᾱ_t)": w * (1 - a),
            "w √ᾱ_t (√ᾱ_t scales the signal; the noise scale is √(1 − ᾱ_t))": w * a.sqrt(),
            "w² √(1 − ᾱ_t) (the weight enters once)": w**2 * (1 - a).sqrt(),
            "w √(1 − ᾱ_{t−1}) (read the schedule at t: alpha_bar[t])": w
            * (1 - ab.double()[(t - 1).clamp(min=0)]).sqrt(),
            "√(1 − ᾱ_t) (the weight w is missing)": (1 - a).sqrt(),
            "w √(1 − ᾱ_t) / B (you averaged the log-probabilities over the batch: each row's "
            "gradient is then divided by B; sum them, .sum(), as the rows are independent)": w
            * (1 - a).sqrt()
            / len(a),
        }
        if torch.allclose(c, want["w √(1 − ᾱ_t)"], rtol=1e-3):
            continue
        name = next((n for n, v in want.items() if torch.allclose(c, v, rtol=1e-3)), None)
        if name:
            return (
                f"your guidance term is {name} × ∇ log p(y|x_t); it should be w √(1 − ᾱ_t) × ∇ log "
                "p(y|x_t) (the direction is right)."
            )
        b = int((c - want["w √(1 − ᾱ_t)"]).abs().argmax())
        return (
            "your guidance term points the right way, ∇ log p(y|x_t), but its size is off: on the "
            f"row with t = {int(t[b])} it is {float(c[b]):.4g} × the gradient, expected w √(1 − "
            f"ᾱ_t) = {float(want['w √(1 − ᾱ_t)'][b]):.4g}."
        )
    return None


_CG = Spec(
    _cases_cg,
    _in_sampler(_ref_cg),
    {
        "sign": Mistake(
            _cg_variant(sign=1.0),
            "the classifier gradient has the wrong sign. ε points *against* the score (score = "
            "-ε/√(1-ᾱ_t)), so moving the score towards class y means subtracting: ε̂ = ε - "
            "√(1-ᾱ_t) w ∇log f(y|x_t).",
        ),
        "missing_sqrt_one_minus_alpha_bar": Mistake(
            _cg_variant(coef="none"),
            "the factor √(1-ᾱ_t) is missing: ∇log f is a score, and a score becomes an ε by "
            "multiplying with -√(1-ᾱ_t).",
        ),
        "one_minus_alpha_bar_not_sqrt": Mistake(
            _cg_variant(coef="plain"),
            "you multiplied by (1-ᾱ_t); the conversion between score and ε uses its square root "
            "√(1-ᾱ_t).",
        ),
        "applied_to_x": Mistake(
            _cg_variant(coef="at_x"),
            "you moved x_t along the gradient and evaluated the model there. Guidance changes "
            "the prediction ε (equivalently the score), not the input: ε̂ = ε_θ(x_t, t) - "
            "√(1-ᾱ_t) w ∇log f.",
        ),
        "logit_not_log_prob": Mistake(
            _cg_variant(grad="logits"),
            "you differentiated the raw logit of class y. Use the log-probability "
            "log_softmax(logits)[y]: its gradient also subtracts the other classes' pull.",
        ),
        "prob_not_log_prob": Mistake(
            _cg_variant(grad="softmax"),
            "you differentiated the probability f(y|x_t); guidance needs the gradient of its "
            "logarithm, log_softmax(logits)[y].",
        ),
    },
    wrap=_in_sampler,
    keep_dtype=True,
    diagnoses=(_cg_diagnosis,),
    t_arg=3,
    doc=(
        "Check ``classifier_guided_eps(eps_model, classifier, x_t, t, y, alpha_bar, w) -> (B, D)``."
    ),
)
check_classifier_guided_eps = Checker("classifier_guided_eps", _CG)


# --- cfg_eps -----------------------------------------------------------------------------------


@own_rng
def _cases_cfg() -> list[Case]:
    cases: list[Case] = []
    for i, s in enumerate(_schedules()):
        for w in (0.5, 3.0):
            g = torch.Generator().manual_seed(30 + i)
            x_t = torch.randn(10, 2, generator=g)
            y = torch.randint(0, 3, (10,), generator=g)
            y[0] = 1  # label 0 is used somewhere else: "∅ = 0" must differ from the reference
            model = TinyConditionalEps(s.T, seed=7 + i).requires_grad_(False)
            cases.append(((model, x_t, _ts(s.T, 10, 40 + i), y, w, 3), {}))
    return cases


def _cfg_diagnosis(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """Write the answer as a ε_θ(x_t, t, y) + b ε_θ(x_t, t, ∅) and name the weights a, b."""
    for args, _ in cases:
        model, x_t, t, y, w, null = args
        out = student(*args).double().reshape(-1)
        e_y = model(x_t, t, y).detach().double().reshape(-1)
        e_n = model(x_t, t, torch.full_like(y, null)).detach().double().reshape(-1)
        A = torch.stack([e_y, e_n], 1)
        sol = torch.linalg.lstsq(A, out[:, None]).solution[:, 0]
        if not torch.allclose(A @ sol, out, rtol=1e-4, atol=1e-6):
            return None
        a, b = float(sol[0]), float(sol[1])
        if abs(a - (1 + w)) < 1e-4 and abs(b + w) < 1e-4:
            continue
        forms = {
            (1 + w, w): "the unconditional term has the wrong sign: subtract w ε_θ(x_t, t, ∅)",
            (0.5, 0.5): "the average of the two predictions; guidance extrapolates from ∅ past y",
            (
                1.0,
                0.0,
            ): "the conditional prediction alone: the guidance term w (ε_y − ε_∅) is missing",
            (1.0, -w): "(1 + w) is 1 here: the conditional prediction gets the weight 1 + w",
            (w, -w): "w (ε_y − ε_∅), the guidance term alone: add it to ε_y",
        }
        name = next(
            (n for (fa, fb), n in forms.items() if abs(a - fa) < 1e-4 and abs(b - fb) < 1e-4),
            None,
        )
        sign = "+" if b >= 0 else "−"
        what = (
            f"your result is {a:.4g} ε_θ(x_t, t, y) {sign} {abs(b):.4g} ε_θ(x_t, t, ∅) at w = {w:g}"
        )
        return (
            f"{what}{': ' + name if name else ''}; classifier-free guidance is (1 + w) ε_θ(x_t, t, "
            "y) − w ε_θ(x_t, t, ∅)."
        )
    return None


_CFG = Spec(
    _cases_cfg,
    seeded(reference_cfg),
    {
        "w_instead_of_1_plus_w": Mistake(
            cfg_slip("scale"),
            "you used w as the guidance *scale*: ε_∅ + w (ε_y - ε_∅). In the lectures' "
            "convention w = 0 is the conditional model, so the weights are (1 + w) and -w: ε̃ = "
            "(1+w) ε_θ(x_t,t,y) - w ε_θ(x_t,t,∅).",
        ),
        "swapped": Mistake(
            cfg_slip("swapped"),
            "conditional and unconditional are swapped: extrapolate *away from* ∅ and towards y, "
            "(1+w) ε_θ(x_t,t,y) - w ε_θ(x_t,t,∅).",
        ),
        "null_as_class_zero": Mistake(
            cfg_slip("null_zero"),
            "the unconditional branch used label 0, which is a real class. The null label ∅ is "
            "null_label (= the number of classes).",
        ),
        "dropout_at_sampling": Mistake(
            cfg_slip("dropout"),
            "you dropped labels at sampling time. Label dropout belongs to training only; when "
            "sampling, call the model once with y and once with ∅ for every row.",
        ),
    },
    wrap=seeded,
    keep_dtype=True,
    diagnoses=(_cfg_diagnosis,),
    doc="Check ``cfg_eps(model, x_t, t, y, w, null_label) -> (B, D)`` (classifier-free guidance).",
)
check_cfg_eps = Checker("cfg_eps", _CFG)


# --- label_dropout_loss ------------------------------------------------------------------------


@own_rng
def _cases_loss() -> list[Case]:
    cases: list[Case] = []
    for i, s in enumerate(_schedules()):
        g = torch.Generator().manual_seed(50 + i)
        x0 = torch.randn(64, 2, generator=g)
        y = torch.randint(0, 3, (64,), generator=g)
        model = TinyConditionalEps(s.T, seed=9 + i)  # trainable: the loss keeps its gradient
        cases.append(((model, x0, y, s.alpha_bar.clone(), 0.3, 3, 60 + i), {}))
    return cases


def _loss_harness(fn: Fn) -> Fn:
    """Call ``fn(model, x0, y, alpha_bar, p_uncond, null_label, generator)``, fresh generator."""

    def run(
        model: Fn,
        x0: torch.Tensor,
        y: torch.Tensor,
        alpha_bar: torch.Tensor,
        p: float,
        null_label: int,
        seed: int,
    ) -> Any:
        return fn(model, x0, y, alpha_bar, p, null_label, torch.Generator().manual_seed(seed))

    return seeded(run)


def _ref_loss_impl(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    alpha_bar: torch.Tensor,
    p_uncond: float,
    null_label: int,
    generator: torch.Generator,
) -> torch.Tensor:
    sched = schedule_from_alpha_bar(alpha_bar)
    return conditional_eps_loss(model, x0, y, sched, p_uncond=p_uncond, generator=generator)


def _loss_variant(kind: str) -> Fn:
    def fn(
        model: Fn,
        x0: torch.Tensor,
        y: torch.Tensor,
        alpha_bar: torch.Tensor,
        p_uncond: float,
        null_label: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        T = alpha_bar.shape[0] - 1
        if kind == "noise_first":
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(1, T + 1, (x0.shape[0],), generator=generator)
        else:
            t = torch.randint(1, T + 1, (x0.shape[0],), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
        u = torch.rand(x0.shape[0], generator=generator)
        drop = {
            "keep_prob": u >= p_uncond,
            "no_dropout": torch.zeros_like(u, dtype=torch.bool),
        }.get(kind, u < p_uncond)
        fill = 0 if kind == "null_zero" else null_label
        y_in = torch.where(drop, torch.full_like(y, fill), y)
        ab = alpha_bar.to(x0.dtype)[t][:, None]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        target = x0 if kind == "x0_target" else noise
        return ((target - model(x_t, t, y_in)) ** 2).mean()

    return fn


def _dropout_diagnosis(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """The draws (t, the noise, the dropout) and the model's inputs against the replay."""
    for case in cases:
        model, x0, y, ab, p, null, seed = case[0]
        T = ab.shape[0] - 1
        out_s, spy = record(student, case, 0)
        if out_s.error is not None:
            return None
        _, spy2 = record(student, case, 0)
        _, spy_r = record(reference, case, 0)
        if not spy.calls:
            return "your loss never calls the model: it compares ε_θ(x_t, t, y') with the noise."
        (x, t, y_in), (x2, t2, y2), (x_r, t_r, y_r) = spy.calls[0], spy2.calls[0], spy_r.calls[0]
        problem = t_range_problem(t, T) or draw_problem(
            "timesteps t", t, t2, t_r, "torch.randint(1, T + 1, (B,), generator=generator), first"
        )
        if problem:
            return problem + "."
        if not torch.equal(t, t_r):
            return None
        a = ab.to(x0.dtype)[t][:, None]
        if torch.allclose(x, x0):
            return "you fed x0 to the model; it must see the noisy x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε."
        noise, noise2, noise_r = ((v - a.sqrt() * x0) / (1 - a).sqrt() for v in (x, x2, x_r))
        problem = draw_problem(
            "noise", noise, noise2, noise_r, "torch.randn(x0.shape, generator=generator), after t"
        )
        if problem:
            return problem + "."
        if not torch.allclose(noise, noise_r, atol=1e-5):
            return None
        drop, drop2, drop_r = ((v == null) & (y != null) for v in (y_in, y2, y_r))
        problem = draw_problem(
            "dropout decision",
            drop.double(),
            drop2.double(),
            drop_r.double(),
            "u = torch.rand(B, generator=generator) after the noise; y' = ∅ where u < p_uncond",
        )
        if problem:
            return problem + "."
    return None


_LOSS = Spec(
    _cases_loss,
    _loss_harness(_ref_loss_impl),
    {
        "keep_prob": Mistake(
            _loss_variant("keep_prob"),
            "you dropped labels with probability 1 - p_uncond (u >= p_uncond). Drop where u < "
            "p_uncond, so that most steps see their label.",
        ),
        "null_as_class_zero": Mistake(
            _loss_variant("null_zero"),
            "dropped labels became 0, a real class; replace them by null_label (∅), or the "
            "network never learns an unconditional model.",
        ),
        "no_dropout": Mistake(
            _loss_variant("no_dropout"),
            "no label was ever dropped: without training on ∅ the network has no unconditional "
            "model for classifier-free guidance.",
        ),
        "x0_target": Mistake(
            _loss_variant("x0_target"),
            "the target is the noise ε the step drew, not x0: the model is an ε-predictor, "
            "loss = mean((noise - model(x_t, t, y'))²), as in L_simple.",
        ),
        "noise_first": Mistake(
            _loss_variant("noise_first"),
            "draw t first, then the noise, then the dropout draw u (the check replays the same "
            "generator).",
        ),
    },
    wrap=_loss_harness,
    keep_dtype=True,
    diagnoses=(_dropout_diagnosis,),
    doc="Check ``label_dropout_loss(model, x0, y, alpha_bar, p_uncond, null_label, generator)``.",
)
check_label_dropout_loss = Checker("label_dropout_loss", _LOSS)


SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
__all__ += ["TinyClassifier", "TinyConditionalEps", "P_UNCOND"]
