"""Checkers for exercise 8 (DDIM): the deterministic step, sigma_t(eta), the stochastic step.

Every student function takes explicit inputs: ``x_t, eps, noise: (B, D)``, ``t: (B,)`` long in
``1..T``, ``t_prev: (B,)`` long in ``0..T-1`` (strided: ``t - t_prev`` may exceed 1) and the
schedule array ``alpha_bar: (T+1,)`` with ``alpha_bar[0] = 1``. The references are
:func:`minidiff.samplers.ddim.ddim_step` and :func:`minidiff.samplers.ddim.ddim_sigma`;
``SPECS`` lists, per checker, its cases, reference, mistakes and (tight) tolerances.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..samplers.ddim import ddim_sigma, ddim_step
from ..schedules import NoiseSchedule, linear_schedule
from ._core import Case, Checker, Fn, Mistake, Spec, Terms, specs_of, with_dtype
from ._probe import named_result, schedule_candidates

Cases = list[Case]


def _schedule(alpha_bar: torch.Tensor) -> NoiseSchedule:
    ab = alpha_bar.to(torch.float64)
    return NoiseSchedule(1.0 - ab[1:] / ab[:-1])


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.to(x.dtype)[:, None]


def _make_cases(n_cases: int, seed: int, with_eta: bool, with_noise: bool) -> Cases:
    """Strided pairs (t, t_prev), t_prev = 0 and t_prev = t - 1 in every batch; distinct t."""
    cases: Cases = []
    schedules = [linear_schedule(100, beta_end=0.05), linear_schedule(50, 1e-3, 0.1)]
    pairs = [
        ([100, 90, 60, 35, 12, 3], [80, 0, 59, 5, 0, 2]),
        ([50, 41, 20, 9, 2, 30], [25, 40, 0, 1, 0, 10]),
        ([77, 50, 25, 10, 4, 99], [50, 25, 10, 0, 3, 60]),
    ]
    etas = [0.5, 1.0, 0.8]
    g = torch.Generator().manual_seed(seed)
    for i in range(n_cases):
        sched = schedules[i % len(schedules)]
        t, tp = (torch.tensor(v) for v in pairs[i % len(pairs)])
        assert int(t.max()) <= sched.T and bool((tp < t).all())
        x = 1.5 * torch.randn(len(t), 2, generator=g, dtype=torch.float64)
        eps = torch.randn(len(t), 2, generator=g, dtype=torch.float64)
        args: tuple[Any, ...] = (x, t, tp, eps, sched.alpha_bar.clone())
        if with_eta:
            args = (*args, etas[i % len(etas)])
        if with_noise:
            args = (*args, torch.randn(len(t), 2, generator=g, dtype=torch.float64))
        cases.append((args, {}))
    return cases


def deterministic_cases() -> Cases:
    """Inputs ``(x_t, t, t_prev, eps, alpha_bar)`` for :func:`check_ddim_step_deterministic`;
    the last one in float32 (the result keeps the dtype of ``x_t``)."""
    cases = _make_cases(3, 801, with_eta=False, with_noise=False)
    return cases + with_dtype(cases, (0, 3), torch.float32)[:1]


def sigma_cases() -> Cases:
    """Inputs ``(t, t_prev, alpha_bar, eta)`` for :func:`check_ddim_sigma`."""
    return [
        ((a[1], a[2], a[4], a[5]), {})
        for a, _ in _make_cases(3, 802, with_eta=True, with_noise=False)
    ]


def step_cases() -> Cases:
    """Inputs ``(x_t, t, t_prev, eps, alpha_bar, eta, noise)`` for :func:`check_ddim_step`;
    the last one in float32 (the result keeps the dtype of ``x_t``)."""
    cases = _make_cases(3, 803, with_eta=True, with_noise=True)
    return cases + with_dtype(cases, (0, 3, 6), torch.float32)[:1]


def _step_with(
    x_t: torch.Tensor,
    e: torch.Tensor,
    a_t: torch.Tensor,
    a_p: torch.Tensor,
    sig: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    direction: str = "root",
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """A DDIM step from per-row ᾱ_t, ᾱ_prev, σ (float64, (B,)): x̂_0, then re-noised."""
    a_t, a_p = a_t[:, None], a_p[:, None]
    s2 = torch.zeros_like(a_p) if sig is None else sig[:, None] ** 2
    x0 = (x_t.double() - (1 - a_t).sqrt() * e.double()) / a_t.sqrt()
    d = {
        "root": (1 - a_p - s2).clamp(min=0).sqrt(),
        "no_root": 1 - a_p - s2,
        "slip2": (1 - a_p).sqrt() - s2,
    }[direction]
    out = a_p.sqrt() * x0 + d * e.double()
    if z is not None:
        scale = s2.sqrt() if noise is None else noise[:, None]
        out = out + scale * z.double()
    return out


def _x0_over_alpha_bar(
    x_t: torch.Tensor, e: torch.Tensor, a_t: torch.Tensor, a_p: torch.Tensor
) -> torch.Tensor:
    """The η = 0 step with x̂_0 divided by ᾱ_t where √ᾱ_t belongs."""
    a_t, a_p = a_t[:, None], a_p[:, None]
    x0 = (x_t.double() - (1 - a_t).sqrt() * e.double()) / a_t
    return a_p.sqrt() * x0 + (1 - a_p).sqrt() * e.double()


def _deterministic_forms(case: Case) -> dict[str, torch.Tensor]:
    x_t, t, tp, e, ab = case[0]
    ab = ab.double()
    T = ab.shape[0] - 1
    return {
        "the DDIM step, √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε": _step_with(x_t, e, ab[t], ab[tp]),
        "x̂_0 itself: after predicting x̂_0 the step re-noises it to the level of t_prev, "
        "√ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε": _step_with(x_t, e, ab[t], torch.ones_like(ab[t])),
        "a DDIM step with α_t = ᾱ_t/ᾱ_{t−1} where ᾱ_t belongs (x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε "
        "jumps t steps at once)": _step_with(x_t, e, ab[t] / ab[t - 1], ab[tp]),
        "a DDIM step to ᾱ_{t_prev + 1}: read the target level at alpha_bar[t_prev]": _step_with(
            x_t, e, ab[t], ab[(tp + 1).clamp(max=T)]
        ),
        "a DDIM step whose x̂_0 divides by ᾱ_t where √ᾱ_t belongs: x̂_0 = (x_t − √(1 − ᾱ_t) ε) "
        "/ √ᾱ_t, since x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε": _x0_over_alpha_bar(x_t, e, ab[t], ab[tp]),
    }


def _step_forms(case: Case) -> dict[str, torch.Tensor]:
    x_t, t, tp, e, ab, eta, z = case[0]
    ab = ab.double()
    sig = _sigma_generic(t, tp, ab, eta, variant="correct")
    a_t, a_p = ab[t], ab[tp]
    return {
        "the DDIM step": _step_with(x_t, e, a_t, a_p, sig, z),
        "the step without its fresh noise σ_t z (with η > 0 the step adds σ_t(η) z)": _step_with(
            x_t, e, a_t, a_p, sig
        ),
        "a step whose fresh noise is η z; it is σ_t(η) z, the standard deviation of Eq. 16": (
            _step_with(x_t, e, a_t, a_p, sig, z, noise=torch.full_like(sig, float(eta)))
        ),
        "a step with (1 − ᾱ_prev − σ_t²) ε: the direction term takes the square root, "
        "√(1 − ᾱ_prev − σ_t²) ε": _step_with(x_t, e, a_t, a_p, sig, z, direction="no_root"),
        "a step with (√(1 − ᾱ_prev) − σ_t²) ε, a slip of the lecture decks (slip 2 in the course "
        "tour): σ_t² belongs inside the root, √(1 − ᾱ_prev − σ_t²) ε": _step_with(
            x_t, e, a_t, a_p, sig, z, direction="slip2"
        ),
    }


def _sigma_forms(case: Case) -> dict[str, torch.Tensor]:
    t, tp, ab, eta = case[0]
    ab = ab.double()
    a_t, a_p, a_m = ab[t], ab[tp], ab[t - 1]
    return {
        "η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)": eta
        * ((1 - a_p) / (1 - a_t)).sqrt()
        * (1 - a_t / a_p).sqrt(),
        "η (1 − ᾱ_prev)/(1 − ᾱ_t) √(1 − ᾱ_t/ᾱ_prev): the first factor needs its square root too": (
            eta * (1 - a_p) / (1 - a_t) * (1 - a_t / a_p).sqrt()
        ),
        "η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_prev/ᾱ_t), which is NaN: ᾱ_prev > ᾱ_t, so the "
        "second factor is √(1 − ᾱ_t/ᾱ_prev)": eta
        * ((1 - a_p) / (1 - a_t)).sqrt()
        * (1 - a_p / a_t).sqrt(),
        "η (1 − ᾱ_prev)/(1 − ᾱ_t) (1 − ᾱ_t/ᾱ_prev), the variance without its square roots (and "
        "with η, not η²): return the standard deviation σ_t, both factors under a square root": (
            eta * (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        ),
        "η √((1 − ᾱ_t)/(1 − ᾱ_prev)) √(1 − ᾱ_t/ᾱ_prev): the first factor is upside down (and "
        "infinite at t_prev = 0, where ᾱ = 1); it is √((1 − ᾱ_prev)/(1 − ᾱ_t)), < 1": eta
        * ((1 - a_t) / (1 - a_p)).sqrt()
        * (1 - a_t / a_p).sqrt(),
        "√((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev) without the factor η, the level of η = 1 "
        "whatever η is: η multiplies σ_t (η = 0 gives the deterministic step)": (
            ((1 - a_p) / (1 - a_t)).sqrt() * (1 - a_t / a_p).sqrt()
        ),
        "η √((1 − ᾱ_{t−1})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1}), both factors read one step back at "
        "alpha_bar[t - 1]: for a strided step ᾱ_prev is alpha_bar[t_prev]": eta
        * ((1 - a_m) / (1 - a_t)).sqrt()
        * (1 - a_t / a_m).sqrt(),
    }


def _candidates(case: Case) -> dict[str, torch.Tensor]:
    x_t, t, tp, *_ = case[0]
    ab = case[0][4].double()
    extra = {
        "√ᾱ_prev": ab[tp].sqrt(),
        "√(1 − ᾱ_prev)": (1 - ab[tp]).sqrt(),
        "√ᾱ_prev/√ᾱ_t": (ab[tp] / ab[t]).sqrt(),
    }
    return schedule_candidates(ab, t, extra)


# ------------------------------------------------------------------ references


def _ref_deterministic(
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: torch.Tensor,
) -> torch.Tensor:
    return ddim_step(x_t, t, t_prev, eps, _schedule(alpha_bar), eta=0.0)


def _ref_sigma(
    t: torch.Tensor, t_prev: torch.Tensor, alpha_bar: torch.Tensor, eta: float
) -> torch.Tensor:
    return ddim_sigma(t, t_prev, _schedule(alpha_bar), eta)


def _ref_step(
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: torch.Tensor,
    eta: float,
    noise: torch.Tensor,
) -> torch.Tensor:
    return ddim_step(x_t, t, t_prev, eps, _schedule(alpha_bar), eta=eta, noise=noise)


# ------------------------------------------------------------------ known mistakes


def _generic_step(
    x_t: torch.Tensor,
    t: torch.Tensor,
    t_prev: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor | None,
    *,
    sqrt: Callable[[torch.Tensor], torch.Tensor] = torch.sqrt,
    prev_index: torch.Tensor | None = None,
    direction_var: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    clip: bool = False,
    noise_scale: Callable[[torch.Tensor], torch.Tensor] = lambda s: s,
) -> torch.Tensor:
    ab_t = alpha_bar[t]
    ab_p = alpha_bar[t_prev if prev_index is None else prev_index]
    x0 = (x_t - _col((1 - ab_t).sqrt(), x_t) * eps) / _col(sqrt(ab_t), x_t)
    if clip:
        x0 = x0.clamp(-1.0, 1.0)
    var = (1 - ab_p - sigma**2) if direction_var is None else direction_var(ab_t, ab_p, sigma)
    out = _col(sqrt(ab_p), x_t) * x0 + _col(var.clamp(min=0).sqrt(), x_t) * eps
    if noise is not None:
        out = out + _col(noise_scale(sigma), x_t) * noise
    return out


def _zero(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros(t.shape, dtype=torch.float64)


DETERMINISTIC_MISTAKES: dict[str, Mistake] = {
    "alpha_bar_t_in_direction": Mistake(
        lambda x, t, tp, e, ab: _generic_step(
            x, t, tp, e, ab, _zero(t), None, direction_var=lambda a_t, a_p, s: 1 - a_t
        ),
        "the direction term pointing to x_t should use sqrt(1 - ᾱ_{t_prev}), not sqrt(1 - ᾱ_t): "
        "it re-noises x̂0 to the *new* noise level.",
    ),
    "no_sqrt_alpha_bar": Mistake(
        lambda x, t, tp, e, ab: _generic_step(x, t, tp, e, ab, _zero(t), None, sqrt=lambda v: v),
        "you used ᾱ where the formula has √ᾱ (x̂0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t, and x̂0 is scaled "
        "by √ᾱ_{t_prev}).",
    ),
    "one_step_prev": Mistake(
        lambda x, t, tp, e, ab: _generic_step(x, t, tp, e, ab, _zero(t), None, prev_index=t - 1),
        "you used ᾱ_{t-1}; a DDIM step may jump several timesteps, so use alpha_bar[t_prev].",
    ),
    "clip_x0": Mistake(
        lambda x, t, tp, e, ab: _generic_step(x, t, tp, e, ab, _zero(t), None, clip=True),
        "you clipped x̂0 to [-1, 1]. That is an image-data heuristic (diffusers' clip_sample), "
        "not part of Eq. 12; for 2D data it distorts the samples — leave x̂0 as it is.",
    ),
}


def _sigma_generic(
    t: torch.Tensor, t_prev: torch.Tensor, alpha_bar: torch.Tensor, eta: float, *, variant: str
) -> torch.Tensor:
    ab_t, ab_p = alpha_bar[t], alpha_bar[t_prev]
    ratio = (1 - ab_p) / (1 - ab_t)
    inner = 1 - ab_t / ab_p
    e = eta
    if variant == "eta_squared":
        e = eta**2
    elif variant == "ratio_inverted":
        ratio = (1 - ab_t) / (1 - ab_p).clamp(min=1e-12)
    elif variant == "one_step_beta":
        inner = 1 - ab_t / alpha_bar[t - 1]
    sig = e * ratio.sqrt() * inner.sqrt()
    return sig**2 if variant == "variance_not_std" else sig


def _sigma_variant(variant: str) -> Fn:
    """``sigma(t, t_prev, alpha_bar, eta)`` as the exercise asks for it, computed the way
    ``variant`` names (``"correct"``, or one of the slips of :data:`SIGMA_MISTAKES`)."""

    def sigma(t: torch.Tensor, tp: torch.Tensor, ab: torch.Tensor, eta: float) -> torch.Tensor:
        return _sigma_generic(t, tp, ab, eta, variant=variant)

    return sigma


SIGMA_MISTAKES: dict[str, Mistake] = {
    "eta_squared": Mistake(
        _sigma_variant("eta_squared"),
        "your σ scales like η², but η multiplies σ itself: σ_t(η) = η · √((1−ᾱ_prev)/(1−ᾱ_t)) · "
        "√(1−ᾱ_t/ᾱ_prev) (so σ² carries η²).",
    ),
    "ratio_inverted": Mistake(
        _sigma_variant("ratio_inverted"),
        "the first factor is upside down: it is √((1−ᾱ_{t_prev}) / (1−ᾱ_t)), which is < 1 and "
        "vanishes at t_prev = 0.",
    ),
    "one_step_beta": Mistake(
        _sigma_variant("one_step_beta"),
        "you used the one-step β_t = 1 − ᾱ_t/ᾱ_{t−1}; for a strided step the second factor is "
        "√(1 − ᾱ_t/ᾱ_{t_prev}).",
    ),
    "variance_not_std": Mistake(
        _sigma_variant("variance_not_std"),
        "you returned the variance σ²; return the standard deviation σ (take the square roots).",
    ),
}


_student_sigma = _sigma_variant("correct")


STEP_MISTAKES: dict[str, Mistake] = {
    "sigma_not_removed_from_direction": Mistake(
        lambda x, t, tp, e, ab, eta, z: _generic_step(
            x,
            t,
            tp,
            e,
            ab,
            _student_sigma(t, tp, ab, eta),
            z,
            direction_var=lambda a_t, a_p, s: 1 - a_p,
        ),
        "the direction term must be √(1 − ᾱ_{t_prev} − σ²) ε: the variance σ² that the fresh "
        "noise adds is taken away from the direction, so that x_{t_prev} keeps the marginal "
        "variance 1 − ᾱ_{t_prev}.",
    ),
    "noise_times_variance": Mistake(
        lambda x, t, tp, e, ab, eta, z: _generic_step(
            x, t, tp, e, ab, _student_sigma(t, tp, ab, eta), z, noise_scale=lambda s: s**2
        ),
        "the fresh noise is σ · z (standard deviation), not σ² · z.",
    ),
    "alpha_bar_t_in_direction": Mistake(
        lambda x, t, tp, e, ab, eta, z: _generic_step(
            x,
            t,
            tp,
            e,
            ab,
            _student_sigma(t, tp, ab, eta),
            z,
            direction_var=lambda a_t, a_p, s: 1 - a_t - s**2,
        ),
        "the direction term uses ᾱ_{t_prev}: √(1 − ᾱ_{t_prev} − σ²) ε, not √(1 − ᾱ_t − σ²) ε.",
    ),
    "eta_squared": Mistake(
        lambda x, t, tp, e, ab, eta, z: _generic_step(
            x, t, tp, e, ab, _student_sigma(t, tp, ab, eta**2), z
        ),
        "your σ scales like η²; σ_t(η) = η · √((1−ᾱ_prev)/(1−ᾱ_t)) · √(1−ᾱ_t/ᾱ_prev).",
    ),
}


# ------------------------------------------------------------------ public checkers

_DDIM_STEP_DETERMINISTIC = Spec(
    deterministic_cases,
    _ref_deterministic,
    DETERMINISTIC_MISTAKES,
    rtol=1e-6,
    atol=1e-8,
    keep_dtype=True,
    diagnoses=(named_result(_deterministic_forms, "your step"),),
    terms=Terms({"x_t": 0, "eps": 3}, _candidates, t_arg=1),
    t_arg=1,
    doc="Check ``fn(x_t, t, t_prev, eps, alpha_bar) -> x_{t_prev}``, the eta = 0 step (Eq 12).",
)
check_ddim_step_deterministic = Checker("ddim_step_deterministic", _DDIM_STEP_DETERMINISTIC)


_DDIM_SIGMA = Spec(
    sigma_cases,
    _ref_sigma,
    SIGMA_MISTAKES,
    rtol=1e-6,
    atol=1e-9,
    diagnoses=(named_result(_sigma_forms, "your σ_t"),),
    t_arg=0,
    doc="Check ``fn(t, t_prev, alpha_bar, eta) -> sigma (B,)``, the DDIM noise level (Eq. 16).",
)
check_ddim_sigma = Checker("ddim_sigma", _DDIM_SIGMA)


def _step_sigma(
    student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
) -> str | None:
    """Read the answer's σ_t off its noise term; if the step is a DDIM step with that σ_t (the
    direction term √(1 − ᾱ_prev − σ_t²) ε included), the mistake is σ_t itself: say at which η."""
    for i, (args, kw) in enumerate(cases):
        x_t, t, tp, e, ab, eta, z = args
        with_z = student(*args, **kw).double()
        no_z = student(x_t, t, tp, e, ab, eta, torch.zeros_like(z), **kw).double()
        zd = z.double().reshape(z.shape[0], -1)
        sig = ((with_z - no_z).reshape(zd.shape) * zd).sum(1) / (zd * zd).sum(1)
        abd = ab.double()
        want = _sigma_generic(t, tp, abd, float(eta), variant="correct")
        if torch.allclose(sig, want, rtol=rtol, atol=atol):
            continue
        consistent = _step_with(x_t, e, abd[t], abd[tp], sig, z)
        if not torch.allclose(with_z, consistent.reshape(with_z.shape), rtol=rtol, atol=atol):
            return None
        unit = _sigma_generic(t, tp, abd, 1.0, variant="correct")
        rows = unit > 1e-6
        eta_eff = sig[rows] / unit[rows]
        at = (
            f"; that is σ_t(η) at η = {float(eta_eff[0]):.4g}, not at the given η = {eta:g}"
            if rows.any() and torch.allclose(eta_eff, eta_eff[0].expand_as(eta_eff), rtol=1e-4)
            else ""
        )
        k = int((sig - want).abs().argmax())
        return (
            f"your step is a DDIM step with another σ_t: on test input {i + 1}, row {k} "
            f"(t = {int(t[k])}) your σ_t is {float(sig[k]):.5g}, expected {float(want[k]):.5g}"
            f"{at}. σ_t(η) = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev) (η multiplies σ_t "
            "itself), and the same σ_t enters the direction term √(1 − ᾱ_prev − σ_t²) ε."
        )
    return None


_DDIM_STEP = Spec(
    step_cases,
    _ref_step,
    STEP_MISTAKES,
    rtol=1e-6,
    atol=1e-8,
    keep_dtype=True,
    diagnoses=(named_result(_step_forms, "your step"), _step_sigma),
    terms=Terms({"x_t": 0, "eps": 3, "the noise": 6}, _candidates, t_arg=1),
    t_arg=1,
    doc=(
        "Check ``fn(x_t, t, t_prev, eps, alpha_bar, eta, noise) -> x_{t_prev}``, a stochastic step."
    ),
)
check_ddim_step = Checker("ddim_step", _DDIM_STEP)


SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
__all__ += [
    "DETERMINISTIC_MISTAKES",
    "SIGMA_MISTAKES",
    "STEP_MISTAKES",
    "deterministic_cases",
    "sigma_cases",
    "step_cases",
]
