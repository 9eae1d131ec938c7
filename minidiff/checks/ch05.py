"""Checkers for exercise 5 (Langevin dynamics).

- ``langevin_step(x: (B, ...), score: like x, step_size: float, noise: like x) -> x_next``
  ``x + (ε/2) score + sqrt(ε) noise`` (the convention of Song & Ermon 2019)
- ``annealed_step_sizes(sigmas: (L,) decreasing, step_lr: float) -> (L,)``
  ``α_i = ε σ_i² / σ_L²`` (Song & Ermon 2019, Algorithm 1)
- ``stationary_variance(s2: float, step_size: float) -> float``
  ``s² / (1 - ε / (4 s²))`` for ``ε < 4 s²``, ``math.inf`` from ``4 s²`` on (the chain diverges)
- ``step_for_bias(s2: float, tolerance: float) -> float``
  ``4 s² tol / (1 + tol)``: the largest step with stationary variance ``<= (1 + tol) s²``

References come from :mod:`minidiff.samplers.langevin`; each :class:`Mistake` is a common wrong
answer.
``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..samplers.langevin import annealed_step_sizes as _annealed_step_sizes
from ..samplers.langevin import langevin_step
from ._calls import python_float
from ._core import Case, Checker, Mistake, Spec, Terms, specs_of, with_dtype
from ._probe import scalar_candidates

# --- langevin_step -------------------------------------------------------------------------------


def _cases_step() -> list[Case]:
    cases: list[Case] = []
    # step sizes away from 1 and 2 so that eps, eps/2, sqrt(eps) and sqrt(2 eps) all differ
    for i, (shape, eps) in enumerate([((6, 2), 0.1), ((4, 1, 3, 3), 0.36), ((5, 2), 0.02)]):
        g = torch.Generator().manual_seed(50 + i)
        x, score, z = (torch.randn(shape, generator=g) for _ in range(3))
        cases.append(((x, score, eps, z), {}))
    return cases + with_dtype(cases, (0, 1, 3), torch.float64)[:1]


def _step_candidates(case: Case) -> dict[str, torch.Tensor]:
    x, _, eps, _ = case[0]
    return scalar_candidates(eps, "ε", x.shape[0])


def _step(half: float, noise_fn: Callable[[float], float], sign: float = 1.0) -> Callable[..., Any]:
    return lambda x, s, eps, z: x + sign * half * eps * s + noise_fn(eps) * z


_STEP = Spec(
    _cases_step,
    lambda x, s, eps, z: langevin_step(x, s, eps, z),
    {
        "no_half": Mistake(
            _step(1.0, math.sqrt),
            "the drift is ε·score but should be (ε/2)·score: with noise sqrt(ε)·z the drift "
            "needs the 1/2 (the Langevin SDE is dx = ½∇log p dt + dW). Without it the chain "
            "samples a sharper law.",
        ),
        "no_sqrt": Mistake(
            _step(0.5, lambda e: e),
            "the noise is ε·z but should be sqrt(ε)·z: a Brownian increment over a time ε has "
            "variance ε, so its standard deviation is sqrt(ε).",
        ),
        "score_sign": Mistake(
            _step(0.5, math.sqrt, sign=-1.0),
            "you step *against* the score. The score ∇log p points uphill in density: x + "
            "(ε/2)·score.",
        ),
        "tau_convention": Mistake(
            _step(1.0, lambda e: math.sqrt(2 * e)),
            "this is the other convention x + τ·score + sqrt(2τ)·z (τ = ε/2). It is the same "
            "chain with a different step; this course uses x + (ε/2)·score + sqrt(ε)·z, so use "
            "ε/2 and sqrt(ε).",
        ),
        "no_noise": Mistake(
            _step(0.5, lambda e: 0.0),
            "you forgot the noise sqrt(ε)·z: without it this is gradient ascent on log p, which "
            "climbs to a mode instead of sampling.",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x": 0, "the score": 1, "the noise": 3}, _step_candidates),
    doc="Check ``langevin_step(x, score, step_size: float, noise)``: ``x + (ε/2) s + sqrt(ε) z``.",
)
check_langevin_step = Checker("langevin_step", _STEP)


# --- annealed_step_sizes -------------------------------------------------------------------------


def _geom(hi: float, lo: float, L: int) -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(hi), math.log(lo), L, dtype=torch.float64))


def _cases_alphas() -> list[Case]:
    return [
        ((_geom(1.0, 0.01, 10), 2e-5), {}),
        ((_geom(3.0, 0.1, 5), 0.01), {}),
        ((_geom(50.0, 0.5, 7), 0.1), {}),
    ]


_ALPHAS = Spec(
    _cases_alphas,
    lambda s, e: _annealed_step_sizes(s, e),
    {
        "sigma_not_squared": Mistake(
            lambda s, e: e * s / s[-1],
            "you used σ_i/σ_L. The step scales with the *variance*: α_i = ε·σ_i²/σ_L².",
        ),
        "inverted": Mistake(
            lambda s, e: e * s[-1] ** 2 / s**2,
            "your ratio is upside down (σ_L²/σ_i²): large noise levels need *large* steps, α_i = "
            "ε·σ_i²/σ_L².",
        ),
        "normalised_by_largest": Mistake(
            lambda s, e: e * s**2 / s[0] ** 2,
            "you divided by σ_1² (the largest level). Divide by σ_L², the smallest, so that α_L "
            "= ε.",
        ),
        "not_normalised": Mistake(
            lambda s, e: e * s**2,
            "you forgot to divide by σ_L²: α_i = ε·σ_i²/σ_L², so that the last level uses "
            "exactly ε.",
        ),
    },
    doc="Check ``annealed_step_sizes(sigmas: (L,) decreasing, step_lr: float) -> ε σ_i²/σ_L²``.",
)
check_annealed_step_sizes = Checker("annealed_step_sizes", _ALPHAS)

# --- stationary_variance and step_for_bias -------------------------------------------------------


_python_float = python_float(
    ", or `math.inf` where the chain diverges): it is a number the sampling loop uses as a step"
)


def _stationary(s2: float, eps: float) -> float:
    return math.inf if eps >= 4 * s2 else s2 / (1 - eps / (4 * s2))


def _cases_variance() -> list[Case]:
    # steps on both sides of 2 s² and 4 s², and exactly at 4 s² (where it diverges)
    return [
        ((s2, f * 4 * s2), {})
        for s2, f in ((1.0, 0.1), (0.16, 0.3), (0.25, 0.6), (2.0, 0.9), (0.5, 1.0), (0.3, 1.5))
    ]


def _cases_bias() -> list[Case]:
    return [((s2, tol), {}) for s2, tol in ((0.81, 0.05), (0.16, 0.01), (0.25, 0.5), (3.0, 0.2))]


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _linearised_variance(
    student: Any, _reference: Any, cases: Any, _rtol: float, _atol: float
) -> str | None:
    """Probe tiny steps: an answer with the right value and slope at ε → 0 that is wrong at the
    steps of the cases is a first-order (small-step) approximation of the exact variance."""
    for (s2, eps), _kw in cases:
        if eps >= 4 * s2:
            continue
        got = _as_number(student(s2, eps))
        if got is None or math.isclose(got, _stationary(s2, eps), rel_tol=1e-6):
            continue
        delta = 1e-4 * s2
        near = _as_number(student(s2, delta))
        at0 = _as_number(student(s2, 0.0))
        if near is None or at0 is None or not math.isclose(at0, s2, rel_tol=1e-6):
            return None
        slope = (near - at0) / delta  # the exact variance grows as s² + ε/4 + O(ε²)
        if math.isclose(slope, 0.25, rel_tol=1e-2):
            return (
                f"your variance is right for small steps (its slope at ε = 0 is ¼, as it should "
                f"be) but not at ε = {eps:.4g}, s² = {s2:.4g}: yours {got:.6g}, expected "
                f"{_stationary(s2, eps):.6g}. That is a first-order approximation in ε; solve "
                "v = (1 − ε/(2s²))² v + ε exactly: v = s² / (1 − ε/(4s²))."
            )
        return None
    return None


def _implied_bias(
    student: Any, _reference: Any, cases: Any, _rtol: float, _atol: float
) -> str | None:
    """Read the student's step back through the stationary variance: the bias it allows says
    which tolerance it was solved for."""
    read = []
    for (s2, tol), _kw in cases:
        eps = _as_number(student(s2, tol))
        if eps is None or not 0 < eps < 4 * s2:
            return None
        read.append((s2, tol, eps, _stationary(s2, eps) / s2))
    if all(math.isclose(r, (1 + tol) ** 2, rel_tol=1e-6) for _, tol, _, r in read):
        return (
            "with your step the stationary variance is (1 + tol)² s²: you put the tolerance on "
            "the standard deviation (√v ≤ (1 + tol) s). It bounds the variance: v = s²/(1 − "
            "ε/(4s²)) ≤ (1 + tol) s², so ε = 4 s² tol / (1 + tol)."
        )
    ratios = [r for *_, r in read]
    if len({tol for _, tol, _, _ in read}) > 1 and all(
        math.isclose(r, ratios[0], rel_tol=1e-6) for r in ratios
    ):
        return (
            f"with your step the stationary variance is {ratios[0]:.6g} s² whatever the "
            "tolerance: your step does not follow `tolerance`. Solve s²/(1 − ε/(4s²)) = (1 + "
            "tol) s² for ε."
        )
    for s2, tol, eps, ratio in read:
        if not math.isclose(ratio, 1 + tol, rel_tol=1e-6):
            return (
                f"with your step ε = {eps:.6g} (s² = {s2:.4g}, tol = {tol:.4g}) the stationary "
                f"variance s²/(1 − ε/(4s²)) is {ratio:.6g} s², expected (1 + tol) s² = "
                f"{1 + tol:.6g} s²: solve s²/(1 − ε/(4s²)) = (1 + tol) s² for ε."
            )
    return None


_VARIANCE = Spec(
    _cases_variance,
    _stationary,
    {
        "first_order": Mistake(
            lambda s2, e: s2 + e / 4,
            "that is the first-order approximation s² + ε/4 (and finite where the chain "
            "diverges). The stationary variance solves v = (1 − ε/(2s²))² v + ε exactly: v = s² "
            "/ (1 − ε/(4s²)).",
        ),
        "two_not_four": Mistake(
            lambda s2, e: math.inf if e >= 2 * s2 else s2 / (1 - e / (2 * s2)),
            "your denominator is 1 − ε/(2s²): expand (1 − ε/(2s²))² = 1 − ε/s² + ε²/(4s⁴), so v "
            "(ε/s² − ε²/(4s⁴)) = ε and v = s²/(1 − ε/(4s²)); the chain diverges only from ε = "
            "4s² on.",
        ),
        "ratio": Mistake(
            lambda s2, e: math.inf if e >= 4 * s2 else 1 / (1 - e / (4 * s2)),
            "you returned the ratio v / s²; return the variance v = s² / (1 − ε/(4s²)) itself.",
        ),
        "no_divergence": Mistake(
            lambda s2, e: s2 / (1 - e / (4 * s2)) if e != 4 * s2 else math.inf,
            "for ε > 4s² your formula gives a negative 'variance': there |1 − ε/(2s²)| > 1 and "
            "the chain diverges, so return math.inf from ε = 4s² on.",
        ),
    },
    wrap=_python_float,
    diagnoses=(_linearised_variance,),
    doc="Check ``stationary_variance(s2, step_size) -> s2 / (1 - step_size / (4 s2))`` (or inf).",
)
check_stationary_variance = Checker("stationary_variance", _VARIANCE)


_STEP_BIAS = Spec(
    _cases_bias,
    lambda s2, tol: 4 * s2 * tol / (1 + tol),
    {
        "linearised": Mistake(
            lambda s2, tol: 4 * s2 * tol,
            "4 s² tol is the small-tolerance approximation; solve s²/(1 − ε/(4s²)) = (1 + tol) "
            "s² exactly: ε = 4 s² tol / (1 + tol).",
        ),
        "std_not_variance": Mistake(
            lambda s2, tol: 4 * s2**0.5 * tol / (1 + tol),
            "you used the standard deviation s where the formula has the variance s² (the "
            "argument s2 is already s²): ε = 4 s² tol / (1 + tol).",
        ),
        "divergence_limit": Mistake(
            lambda s2, tol: 4 * s2,
            "4 s² is where the chain diverges, not a step with a small bias: ε = 4 s² tol / (1 + "
            "tol).",
        ),
        "two_not_four": Mistake(
            lambda s2, tol: 2 * s2 * tol / (1 + tol),
            "your step is half the largest one: the stationary variance is s² / (1 − ε/(4s²)), "
            "so ε = 4 s² tol / (1 + tol).",
        ),
    },
    wrap=python_float("): it is the step size the sampling loop uses"),
    diagnoses=(_implied_bias,),
    doc="Check ``step_for_bias(s2, tolerance) -> 4 s2 tolerance / (1 + tolerance)``, a float.",
)
check_step_for_bias = Checker("step_for_bias", _STEP_BIAS)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
