"""Checkers for exercise 15 (sampling in few steps).

The student writes, on the schedule array ``alpha_bar: (T + 1,)`` (index 0 = clean data, so
``alpha_t = sqrt(alpha_bar[t])``, ``sigma_t = sqrt(1 - alpha_bar[t])``, ``lambda_t = log(alpha_t /
sigma_t)``):

- ``dpm_solver_2m_step(x_t, t, t_next, x0, x0_last, t_last, alpha_bar) -> x_{t_next}``: one
  step of DPM-Solver++(2M); ``x0_last``/``t_last`` are ``None`` on the first step, ``t_next = 0``
  on the last; both of those steps are order 1. Reference:
  :func:`minidiff.samplers.dpm_solver.dpm_solver_step`.
- ``distillation_loss(student, teacher, z_t, t, t_mid, t_next, alpha_bar) -> scalar``: the
  progressive-distillation loss of Salimans & Ho (2022) with a ``v``-predicting student, an
  ``eps``-predicting teacher and the truncated-SNR weight. Reference:
  :func:`minidiff.distillation.distillation_target` and the package's loss.
- ``consistency_fn(net, x_t, t, alpha_bar, sigma_min, sigma_data) -> f(x_t, t)``: the skip-scaled
  consistency function of Song et al. (2023). Reference:
  :func:`minidiff.consistency.consistency_scalings`.

The step is called as the sampler calls it (under ``torch.no_grad()``, in float32 and float64);
the loss through ``backward`` (its gradient with respect to the student must match, and none may
reach the teacher); the consistency function with a network whose gradient must flow.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ..consistency import consistency_scalings
from ..distillation import distillation_target
from ..samplers.dpm_solver import dpm_solver_step
from ..schedules import linear_schedule
from ..sde import VPSDE
from ._calls import schedule_from_alpha_bar
from ._core import Case, Checker, Mistake, ReturnError, Spec, specs_of
from .ch04 import TinyEps

__all__ = [
    "check_dpm_solver_2m_step",
    "check_distillation_loss",
    "check_consistency_fn",
    "SPECS",
]

Fn = Callable[..., Any]


def _schedules() -> list[torch.Tensor]:
    return [
        VPSDE().to_schedule(60).alpha_bar.clone(),
        linear_schedule(40, 1e-3, 0.2).alpha_bar.clone(),
    ]


# --- dpm_solver_2m_step --------------------------------------------------------------------------


def _cases_2m() -> list[Case]:
    """A first step (no history) and a later one per schedule and dtype. The later one has
    strided, per-row steps; its last two rows step to ``t = 0``."""
    cases: list[Case] = []
    for i, ab in enumerate(_schedules()):
        T = ab.shape[0] - 1
        for dtype in (torch.float32, torch.float64):
            g = torch.Generator().manual_seed(100 + i)
            x = torch.randn(6, 2, generator=g, dtype=dtype)
            x0 = 0.8 * torch.randn(6, 2, generator=g, dtype=dtype)
            x0_last = x0 + 0.3 * torch.randn(6, 2, generator=g, dtype=dtype)
            t = torch.tensor([T - 7, T - 12, 30, 21, 9, 3])
            t_next = torch.tensor([30, 25, 21, 9, 0, 0])
            t_last = torch.tensor([T, T - 7, T, 30, 21, 9])
            first = (x, torch.full((6,), T), torch.full((6,), T - 7), x0, None, None, ab)
            cases += [(first, {}), ((x, t, t_next, x0, x0_last, t_last, ab), {})]
    return cases


def _ref_2m(
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    x0: torch.Tensor,
    x0_last: torch.Tensor | None,
    t_last: torch.Tensor | None,
    alpha_bar: torch.Tensor,
) -> torch.Tensor:
    sched = schedule_from_alpha_bar(alpha_bar)
    kw = {} if x0_last is None else {"x0_last": x0_last, "t_last": t_last}
    return dpm_solver_step(x_t, t, t_next, x0, sched, **kw)


def _2m_variant(kind: str) -> Fn:
    def fn(
        x_t: torch.Tensor,
        t: torch.Tensor,
        t_next: torch.Tensor,
        x0: torch.Tensor,
        x0_last: torch.Tensor | None,
        t_last: torch.Tensor | None,
        alpha_bar: torch.Tensor,
    ) -> torch.Tensor:
        ab = alpha_bar.double()
        a, s = ab.sqrt(), (1 - ab).sqrt()
        lam = (a / s).log()  # +inf at t = 0
        if kind == "t_steps":
            lam = -torch.arange(ab.shape[0], dtype=torch.float64)  # step lengths measured in t
        c = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
        d = x0
        if x0_last is not None and t_last is not None and kind != "first_order":
            h, h_last = lam[t_next] - lam[t], lam[t] - lam[t_last]
            r = h / h_last if kind == "r_inverted" else h_last / h
            sign = -1.0 if kind == "wrong_direction" else 1.0
            half = 1.0 if kind == "no_half" else 0.5
            step = x0 + sign * c(half / r) * (x0 - x0_last)
            d = step if kind == "no_last_step_case" else torch.where(c(t_next) > 0, step, x0)
        e = s[t_next] * a[t] / (a[t_next] * s[t])  # e^{-h}
        if kind == "exp_sign":
            e = 1 / e  # e^{+h}: inf on a step to t = 0, as the slip gives it
        ratio = a[t_next] / a[t] if kind == "alpha_ratio" else s[t_next] / s[t]
        return c(ratio) * x_t + c(a[t_next] * (1 - e)) * d

    return fn


def _sampler_call(fn: Fn) -> Fn:
    """Call the step as the sampler does (under ``torch.no_grad()``); infinities and NaN (a step
    to ``t = 0`` without its special case) become ``±1e4`` so that the mistake can be named."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            try:
                out = fn(*args, **kwargs)
            except NotImplementedError:
                raise
            except (TypeError, RuntimeError, IndexError) as err:
                if args[4] is not None:
                    raise
                raise ReturnError(
                    f"failed on a first step, where x0_last and t_last are None "
                    f"({type(err).__name__}: {err}). The first step has no earlier prediction: "
                    "it is the order-1 step (σ_next/σ_t) x_t + α_next (1 − e^{−h}) x0 — test "
                    "`if x0_last is None` before using x0_last or t_last"
                ) from err
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return torch.nan_to_num(out, nan=1e4, posinf=1e4, neginf=-1e4)
        return out

    return run


_2M = Spec(
    _cases_2m,
    _sampler_call(_ref_2m),
    {
        "t_steps": Mistake(
            _2m_variant("t_steps"),
            "your step lengths h are differences of t, not of λ. The exponential integrator lives "
            "in λ = log(α/σ): h = λ_{t_next} − λ_t and r = h_last / h with both lengths in λ.",
        ),
        "r_inverted": Mistake(
            _2m_variant("r_inverted"),
            "r is upside down: r = h_last / h (the previous step's length over this one's), so "
            "D = (1 + 1/(2r)) x0 − 1/(2r) x0_last.",
        ),
        "wrong_direction": Mistake(
            _2m_variant("wrong_direction"),
            "you extrapolated away from the new prediction: D = (1 + 1/(2r)) x0 − 1/(2r) x0_last "
            "(the newer x0 gets the larger weight).",
        ),
        "no_half": Mistake(
            _2m_variant("no_half"),
            "the correction lacks its 1/2: D = x0 + (x0 − x0_last)/(2r). The midpoint of the "
            "step is h/2 beyond t, and x0 − x0_last over r h is the slope in λ, so the "
            "extrapolation is (h/2)·slope.",
        ),
        "exp_sign": Mistake(
            _2m_variant("exp_sign"),
            "the exponential has the wrong sign: the step multiplies D by α_next (1 − e^{−h}), "
            "with h = λ_next − λ_t > 0.",
        ),
        "alpha_ratio": Mistake(
            _2m_variant("alpha_ratio"),
            "x_t is scaled by σ_next/σ_t (the exact solution of the linear part in λ), not by "
            "α_next/α_t.",
        ),
        "no_last_step_case": Mistake(
            _2m_variant("no_last_step_case"),
            "the step to t_next = 0 needs its special case: there σ = 0, h = ∞ and r = 0, so the "
            "2M correction blows up. Take the order-1 step there (it returns x0), as on the first "
            "step, which has no x0_last. Decide it row by row: t_next is (B,) and its rows can "
            "differ, so a Python `if` on t_next[0] (or on the whole batch) is not enough; "
            "torch.where(t_next[:, None] > 0, D, x0).",
        ),
        "first_order": Mistake(
            _2m_variant("first_order"),
            "you took the order-1 step (DDIM) on every step and left x0_last unused: after the "
            "first step, 2M extrapolates D = (1 + 1/(2r)) x0 − 1/(2r) x0_last with r = h_last / h "
            "(except on the step to t_next = 0).",
        ),
    },
    wrap=_sampler_call,
    keep_dtype=True,
    rtol=1e-5,
    atol=1e-6,
    doc="Check ``dpm_solver_2m_step(x_t, t, t_next, x0, x0_last, t_last, alpha_bar)``.",
)
check_dpm_solver_2m_step = Checker("dpm_solver_2m_step", _2M)


# --- distillation_loss ---------------------------------------------------------------------------


class _TinyV(TinyEps):
    """A tiny student; ``TinyEps`` with its own seed (its output is read as ``v``)."""


def _cases_loss() -> list[Case]:
    """Per schedule, a float32 case (as in training) and a float64 one with other draws, so that
    an answer that fixes the dtype is caught and a coincidental ratio is not a "constant factor"."""
    cases: list[Case] = []
    for i, ab in enumerate(_schedules()):
        T = ab.shape[0] - 1
        for j, dtype in enumerate((torch.float32, torch.float64)):
            g = torch.Generator().manual_seed(200 + i + 10 * j)
            x0 = torch.randn(12, 2, generator=g, dtype=dtype)
            eps = torch.randn(12, 2, generator=g, dtype=dtype)
            t = torch.tensor([T, T, 40, 40, 20, 20, 8, 8, 4, 4, 2, 2])
            t_mid = torch.tensor([T - 5, T - 5, 30, 30, 14, 14, 6, 6, 2, 2, 1, 1])
            t_next = torch.tensor([T - 10, T - 10, 20, 20, 8, 8, 4, 4, 0, 0, 0, 0])
            a, s = ab[t].sqrt().to(dtype)[:, None], (1 - ab[t]).sqrt().to(dtype)[:, None]
            z = a * x0 + s * eps
            student = _TinyV(T, seed=11 + i + 10 * j).to(dtype)
            teacher = TinyEps(T, seed=21 + i + 10 * j).to(dtype)  # requires grad: none may reach it
            cases.append(((student, teacher, z, t, t_mid, t_next, ab), {}))
    return cases


def _ref_loss(
    student: Fn,
    teacher: Fn,
    z_t: torch.Tensor,
    t: torch.Tensor,
    t_mid: torch.Tensor,
    t_next: torch.Tensor,
    alpha_bar: torch.Tensor,
) -> torch.Tensor:
    sched = schedule_from_alpha_bar(alpha_bar)
    with torch.no_grad():
        target = distillation_target(teacher, z_t, t, t_mid, t_next, sched)
    ab = alpha_bar.to(z_t.dtype)[t][:, None]
    x_hat = ab.sqrt() * z_t - (1 - ab).sqrt() * student(z_t, t)
    w = (ab / (1 - ab)).clamp(min=1.0)[:, 0]
    return (w * ((target - x_hat) ** 2).mean(dim=1)).mean()


def _ddim(
    eps_fn: Fn, z: torch.Tensor, t: torch.Tensor, s: torch.Tensor, ab: torch.Tensor
) -> torch.Tensor:
    e = eps_fn(z, t)
    a_t, a_s = ab[t][:, None].sqrt(), ab[s][:, None].sqrt()
    x0 = (z - (1 - ab[t][:, None]).sqrt() * e) / a_t
    return a_s * x0 + (1 - ab[s][:, None]).sqrt() * e


def _loss_variant(kind: str) -> Fn:
    def fn(
        student: Fn,
        teacher: Fn,
        z_t: torch.Tensor,
        t: torch.Tensor,
        t_mid: torch.Tensor,
        t_next: torch.Tensor,
        alpha_bar: torch.Tensor,
    ) -> torch.Tensor:
        ab = alpha_bar.to(z_t.dtype)
        a, s = ab[t][:, None].sqrt(), (1 - ab[t][:, None]).sqrt()

        def student_eps(z: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:  # v -> eps
            a_, s_ = ab[tt][:, None].sqrt(), (1 - ab[tt][:, None]).sqrt()
            return s_ * z + a_ * student(z, tt)

        guide = student_eps if kind == "student_target" else teacher
        with torch.no_grad():
            if kind == "one_teacher_step":
                z2 = _ddim(guide, z_t, t, t_next, ab)
            else:
                z2 = _ddim(guide, _ddim(guide, z_t, t, t_mid, ab), t_mid, t_next, ab)
            ratio = ((1 - ab[t_next]) / (1 - ab[t])).sqrt()[:, None]
            target = (z2 - ratio * z_t) / (ab[t_next][:, None].sqrt() - ratio * a)
            if kind == "z_as_target":
                target = z2
        if kind == "student_target":
            target = target.detach()
        x_hat = a * z_t - s * student(z_t, t)
        if kind == "v_sign":
            x_hat = a * z_t + s * student(z_t, t)
        if kind == "student_as_eps":
            x_hat = (z_t - s * student(z_t, t)) / a
        snr = (a**2 / s**2)[:, 0]
        w = {
            "snr_weight": snr,
            "no_weight": torch.ones_like(snr),
            "weight_clamped_above": snr.clamp(max=1.0),
        }.get(kind, snr.clamp(min=1.0))
        return (w * ((target - x_hat) ** 2).mean(dim=1)).mean()

    return fn


_LOSS = Spec(
    _cases_loss,
    _ref_loss,
    {
        "student_target": Mistake(
            _loss_variant("student_target"),
            "your target comes from the student's own steps. The target x̃ is built from two DDIM "
            "steps of the *teacher* (under torch.no_grad()); the student only makes the prediction "
            "x̂ that is compared with it.",
        ),
        "one_teacher_step": Mistake(
            _loss_variant("one_teacher_step"),
            "the teacher took one step t → t_next; it must take two, t → t_mid → t_next. The "
            "student learns to do in one step what the teacher does in two.",
        ),
        "z_as_target": Mistake(
            _loss_variant("z_as_target"),
            "you compared the student's x̂ with the teacher's end point z''. Solve for the x̂ "
            "whose one DDIM step lands on z'': x̃ = (z'' − (σ''/σ) z_t) / (α'' − (σ''/σ) α_t).",
        ),
        "snr_weight": Mistake(
            _loss_variant("snr_weight"),
            "you weighted by SNR = α²/σ² (that is the ε-loss in x-space, which vanishes at high "
            "noise). Use the truncated SNR, max(α²/σ², 1).",
        ),
        "no_weight": Mistake(
            _loss_variant("no_weight"),
            "the loss needs the truncated-SNR weight max(α_t²/σ_t², 1) on each sample's squared "
            "error.",
        ),
        "weight_clamped_above": Mistake(
            _loss_variant("weight_clamped_above"),
            "your weight is min(α²/σ², 1) (`.clamp(max=1)`); the truncated SNR is max(α²/σ², 1), "
            "`.clamp(min=1)`: at least 1, so that the high-noise steps keep their weight.",
        ),
        "student_as_eps": Mistake(
            _loss_variant("student_as_eps"),
            "you read the student's output as ε (x̂ = (z_t − σ ε)/α); the student predicts v, "
            "and x̂ = α_t z_t − σ_t v.",
        ),
        "v_sign": Mistake(
            _loss_variant("v_sign"),
            "the sign of v is flipped: with v = α ε − σ x, the prediction is x̂ = α_t z_t − σ_t v.",
        ),
    },
    grad_hint="Build the target inside torch.no_grad(): the teacher is fixed, and only the "
    "student's prediction x̂ may carry a gradient.",
    doc="Check ``distillation_loss(student, teacher, z_t, t, t_mid, t_next, alpha_bar) -> loss``.",
)
check_distillation_loss = Checker("distillation_loss", _LOSS)


# --- consistency_fn ------------------------------------------------------------------------------


class _TinyF(TinyEps):
    """A tiny free network ``F(x, t)`` (trainable: the checker compares gradients)."""


def _cases_cm() -> list[Case]:
    cases: list[Case] = []
    for i, ab in enumerate(_schedules()):
        T = ab.shape[0] - 1
        sigma_bar = ((1 - ab) / ab).sqrt()
        for dtype, (t_min, sigma_data) in zip(
            (torch.float32, torch.float64), ((1, 0.5), (3, 1.0)), strict=True
        ):
            g = torch.Generator().manual_seed(300 + i)
            x = torch.randn(6, 2, generator=g, dtype=dtype)
            t = torch.tensor([t_min, t_min, t_min + 4, T // 2, T - 1, T])  # the boundary twice
            net = _TinyF(T, seed=31 + i).to(dtype)
            cases.append(((net, x, t, ab, float(sigma_bar[t_min]), sigma_data), {}))
    return cases


def _ref_cm(
    net: Fn,
    x_t: torch.Tensor,
    t: torch.Tensor,
    alpha_bar: torch.Tensor,
    sigma_min: float,
    sigma_data: float,
) -> torch.Tensor:
    ab = alpha_bar.double()[t]
    c_skip, c_out = consistency_scalings(((1 - ab) / ab).sqrt(), sigma_min, sigma_data)
    col = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
    return col(c_skip) * x_t / col(ab.sqrt()) + col(c_out) * net(x_t, t)


def _cm_variant(kind: str) -> Fn:
    def fn(
        net: Fn,
        x_t: torch.Tensor,
        t: torch.Tensor,
        alpha_bar: torch.Tensor,
        sigma_min: float,
        sigma_data: float,
    ) -> torch.Tensor:
        ab = alpha_bar.double()[t]
        sb = (1 - ab).sqrt() if kind == "vp_sigma" else ((1 - ab) / ab).sqrt()
        d2 = sigma_data**2
        shift = 0.0 if kind in ("edm_skip", "edm_both") else sigma_min
        c_skip = d2 / ((sb - shift) ** 2 + d2)
        c_out = sigma_data * (sb - sigma_min) / (d2 + sb**2).sqrt()
        if kind in ("edm_out", "edm_both"):
            c_out = sigma_data * sb / (d2 + sb**2).sqrt()
        if kind == "out_no_sigma":
            c_out = sigma_data / (d2 + sb**2).sqrt()
        if kind == "swapped":
            c_skip, c_out = c_out / sigma_data, c_skip * sigma_data
        col = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
        x_bar = x_t if kind == "no_rescale" else x_t / col(ab.sqrt())
        return col(c_skip) * x_bar + col(c_out) * net(x_t, t)

    return fn


_BOUNDARY = "so f(x, ε) ≠ x at the boundary σ̄ = σ̄_min: "
_CM = Spec(
    _cases_cm,
    _ref_cm,
    {
        "edm_skip": Mistake(
            _cm_variant("edm_skip"),
            "c_skip is EDM's σ_d²/(σ̄² + σ_d²), which is below 1 at σ̄_min > 0, "
            + _BOUNDARY
            + "shift it, c_skip = σ_d²/((σ̄ − σ̄_min)² + σ_d²).",
        ),
        "edm_out": Mistake(
            _cm_variant("edm_out"),
            "c_out = σ_d σ̄/√(σ_d² + σ̄²) does not vanish at σ̄_min > 0, "
            + _BOUNDARY
            + "use c_out = σ_d (σ̄ − σ̄_min)/√(σ_d² + σ̄²).",
        ),
        "edm_both": Mistake(
            _cm_variant("edm_both"),
            "these are EDM's scalings without the shift by σ̄_min, "
            + _BOUNDARY
            + "c_skip = σ_d²/((σ̄ − σ̄_min)² + σ_d²), c_out = σ_d (σ̄ − σ̄_min)/√(σ_d² + σ̄²).",
        ),
        "out_no_sigma": Mistake(
            _cm_variant("out_no_sigma"),
            "c_out lacks the factor (σ̄ − σ̄_min), "
            + _BOUNDARY
            + "the network's output must be switched off at the boundary.",
        ),
        "swapped": Mistake(
            _cm_variant("swapped"),
            "c_skip and c_out are swapped, "
            + _BOUNDARY
            + "at the boundary the skip connection (c_skip = 1) must carry x unchanged and "
            "c_out must be 0.",
        ),
        "vp_sigma": Mistake(
            _cm_variant("vp_sigma"),
            "you put the VP noise level σ_t = √(1 − ᾱ_t) into the scalings; they take σ̄ = "
            "σ_t/α_t = √((1 − ᾱ_t)/ᾱ_t), the noise level of x̄ = x_t/α_t (the VE variable), the "
            "scale σ̄_min is measured in too.",
        ),
        "no_rescale": Mistake(
            _cm_variant("no_rescale"),
            "the skip connection must carry x̄ = x_t/α_t (the variable in which the VP ODE is the "
            "VE one), not x_t.",
        ),
    },
    grad=True,  # f(x_t, t) is trained through: the network's gradient must reach the result
    doc="Check ``consistency_fn(net, x_t, t, alpha_bar, sigma_min, sigma_data) -> f(x_t, t)``.",
)
check_consistency_fn = Checker("consistency_fn", _CM)


SPECS: dict[str, Spec] = specs_of(globals())
