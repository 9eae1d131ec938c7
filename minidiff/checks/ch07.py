"""Checkers for exercise 7: the SDE and ODE views of the VP-SDE.

``β(t) = β_min + t (β_max - β_min)``.

- ``vp_marginal(t: (B,), beta_min, beta_max) -> (alpha, sigma)``
  ``alpha = exp(-½ ∫_0^t β)``, ``sigma = sqrt(1 - alpha²)``
- ``reverse_sde_drift(x: (B, D), t: (B,), score: (B, D), beta_min, beta_max) -> (B, D)``
  ``f - g² score``
- ``euler_maruyama_step(x, t, dt, score_fn, beta_min, beta_max, noise) -> x at t - dt``
      ``x - [f - g² s] dt + g sqrt(dt) z``   (``dt > 0`` is the step size; time runs backwards)
- ``pf_ode_heun_step(x, t, dt, score_fn, beta_min, beta_max) -> x at t - dt``
  Heun on ``F = f - ½ g² s``

References come from :mod:`minidiff.sde` and :mod:`minidiff.samplers.sde_solvers`; each
:class:`Mistake` is a common wrong answer (sign of the score term, the ½ of the PF-ODE, the
``sqrt(dt)`` on the noise, ``+dt`` instead of ``-dt``, ``β(t)`` instead of its integral).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..data.gmm import GaussianMixture
from ..samplers.sde_solvers import euler_maruyama_step as _em_step
from ..samplers.sde_solvers import heun_step as _heun_step
from ..sde import VPSDE, score_fn_from_mixture
from ._core import Case, Checker, Fn, Mistake, Spec, Terms, specs_of, with_dtype
from ._probe import named_result

Tensor = torch.Tensor
_BETAS = ((0.1, 20.0), (1.0, 5.0))


def _beta(t: Tensor, bmin: float, bmax: float) -> Tensor:
    return bmin + t * (bmax - bmin)


def _col(v: Tensor) -> Tensor:
    return v.reshape(-1, 1)


def _times(B: int, seed: int, lo: float = 0.05, hi: float = 1.0) -> Tensor:
    t = lo + (hi - lo) * torch.rand(
        B, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    t[0], t[-1] = lo, hi  # both ends of the range
    return t


def _state(B: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(B, 2, generator=g, dtype=torch.float64), torch.randn(
        B, 2, generator=g, dtype=torch.float64
    )


# --- vp_marginal -------------------------------------------------------------------------------


def _marginal_cases() -> list[Case]:
    cases: list[Case] = [
        ((_times(6, 10 + i, lo=0.01), bmin, bmax), {}) for i, (bmin, bmax) in enumerate(_BETAS)
    ]
    return cases + with_dtype(cases, (0,), torch.float32)[:1]


def _alpha_forms(case: Case) -> dict[str, Tensor]:
    t, a, b = case[0]
    t = t.double()
    return {
        "exp(−½ B(t)) with B(t) = β_min t + ½(β_max − β_min) t²": torch.exp(
            -0.5 * (a * t + 0.5 * (b - a) * t**2)
        ),
        "exp(−½ B(t)) with β_min and β_max swapped: β(t) = β_min + t (β_max − β_min) starts "
        "at β_min": torch.exp(-0.5 * (b * t + 0.5 * (a - b) * t**2)),
        "exp(−½ (β_min t + (β_max − β_min) t²)): the integral of the linear part "
        "t (β_max − β_min) is ½ (β_max − β_min) t²": torch.exp(-0.5 * (a * t + (b - a) * t**2)),
        "exp(−¼ B(t)), the square root of the mean coefficient": torch.exp(
            -0.25 * (a * t + 0.5 * (b - a) * t**2)
        ),
        "exp(−B(t)) = alpha(t)², the continuous ᾱ (the signal's variance, not its mean "
        "coefficient)": torch.exp(-(a * t + 0.5 * (b - a) * t**2)),
    }


def _sigma_forms(case: Case) -> dict[str, Tensor]:
    alpha = _marginal_ref(*case[0])[0].double()
    return {
        "√(1 − α(t)²)": (1 - alpha**2).sqrt(),
        "1 − α(t): σ(t) is the standard deviation √(1 − α(t)²) (the variances add up to 1)": 1
        - alpha,
        "√(1 − α(t))": (1 - alpha).sqrt(),
    }


def _marginal_ref(t: Tensor, bmin: float, bmax: float) -> tuple[Tensor, Tensor]:
    return VPSDE(bmin, bmax).marginal_coefficients(t)


def _alpha_sigma(log_alpha: Tensor) -> tuple[Tensor, Tensor]:
    alpha = torch.exp(log_alpha)
    return alpha, torch.sqrt(1 - alpha**2)


_MARGINAL = Spec(
    _marginal_cases,
    _marginal_ref,
    {
        "beta_not_integral": Mistake(
            lambda t, a, b: _alpha_sigma(-0.5 * _beta(t, a, b)),
            "you used β(t) where the marginal needs its integral B(t) = ∫₀ᵗ β(s) ds = β_min t + "
            "½(β_max − β_min) t²; alpha(t) = exp(−½ B(t)).",
        ),
        "beta_times_t": Mistake(
            lambda t, a, b: _alpha_sigma(-0.5 * _beta(t, a, b) * t),
            "β(t)·t integrates β as if it were constant; β grows linearly, so ∫₀ᵗ β = β_min t + "
            "½(β_max − β_min) t².",
        ),
        "alpha_bar_not_alpha": Mistake(
            lambda t, a, b: _alpha_sigma(-(a * t + 0.5 * (b - a) * t**2)),
            "that is alpha(t)² (the continuous ᾱ); the mean coefficient is its square root, "
            "exp(−½ B(t)).",
        ),
        "variance_not_std": Mistake(
            lambda t, a, b: (_marginal_ref(t, a, b)[0], 1 - _marginal_ref(t, a, b)[0] ** 2),
            "sigma(t) is a standard deviation: sqrt(1 − alpha(t)²), not 1 − alpha(t)².",
        ),
    },
    keep_dtype=True,
    diagnoses=(
        named_result(_alpha_forms, "your alpha(t)", output=0),
        named_result(_sigma_forms, "your sigma(t)", output=1),
    ),
    outputs=("alpha", "sigma"),
    doc="Check ``vp_marginal(t: (B,) float, beta_min, beta_max) -> (alpha (B,), sigma (B,))``.",
)
check_vp_marginal = Checker("vp_marginal", _MARGINAL)


# --- reverse_sde_drift -------------------------------------------------------------------------


def _drift_cases() -> list[Case]:
    out: list[Case] = []
    for i, (bmin, bmax) in enumerate(_BETAS):
        x, s = _state(5, 20 + i)
        out.append(((x, _times(5, 30 + i), s, bmin, bmax), {}))
    return out + with_dtype(out, (0, 1, 2), torch.float32)[:1]


def _beta_candidates(case: Case) -> dict[str, Tensor]:
    t, a, b = case[0][1].double(), case[0][3], case[0][4]
    out: dict[str, Tensor] = {}
    for when, tt in (("t", t), ("1 − t", 1 - t)):
        beta = a + tt * (b - a)
        out.update(
            {
                f"−½ β({when})": -0.5 * beta,
                f"−β({when})": -beta,
                f"−½ √β({when})": -0.5 * beta.sqrt(),
                f"+½ β({when})": 0.5 * beta,
                f"−√β({when})": -beta.sqrt(),
            }
        )
    return out


_DRIFT_NOTES = {
    "x": " That is the forward drift f(x, t) = −½ β(t) x.",
    "the score": " The score enters with −g(t)² = −β(t).",
}


def _drift(
    x: Tensor, t: Tensor, s: Tensor, bmin: float, bmax: float, c: float = 1.0, power: int = 2
) -> Tensor:
    b = _col(_beta(t, bmin, bmax))
    g = b.sqrt() ** power
    return -0.5 * b * x - c * g * s


def _drift_ref(x: Tensor, t: Tensor, s: Tensor, bmin: float, bmax: float) -> Tensor:
    return VPSDE(bmin, bmax).reverse(lambda x_, t_: s).drift(x, t)


_DRIFT = Spec(
    _drift_cases,
    _drift_ref,
    {
        "score_sign": Mistake(
            lambda x, t, s, a, b: _drift(x, t, s, a, b, c=-1.0),
            "the sign of the score term is flipped: the reverse drift is f − g² ∇log p_t "
            "(Anderson 1982), which pushes samples *up* the density when time runs backwards.",
        ),
        "pf_half": Mistake(
            lambda x, t, s, a, b: _drift(x, t, s, a, b, c=0.5),
            "that is the probability-flow ODE drift f − ½ g² score; the reverse *SDE* has the "
            "full g² (no ½).",
        ),
        "g_not_squared": Mistake(
            lambda x, t, s, a, b: _drift(x, t, s, a, b, power=1),
            "the score is multiplied by g(t)² = β(t), not by g(t) = sqrt(β(t)).",
        ),
        "forgot_f": Mistake(
            lambda x, t, s, a, b: -_col(_beta(t, a, b)) * s,
            "the forward drift f(x, t) = −½ β(t) x is missing: reverse drift = f − g² score.",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x": 0, "the score": 2}, _beta_candidates, t_arg=1, notes=_DRIFT_NOTES),
    t_arg=1,
    doc=(
        "Check ``reverse_sde_drift(x (B, D), t (B,), score (B, D), beta_min, beta_max) -> (B, D)``."
    ),
)
check_reverse_sde_drift = Checker("reverse_sde_drift", _DRIFT)


# --- one Euler-Maruyama step of the reverse SDE ------------------------------------------------


def _score_fn(bmin: float, bmax: float) -> Callable[[Tensor, Tensor], Tensor]:
    return score_fn_from_mixture(GaussianMixture.default_2d(), VPSDE(bmin, bmax))


def _step_cases(with_noise: bool) -> list[Case]:
    out: list[Case] = []
    for i, ((bmin, bmax), dt) in enumerate(zip(_BETAS, (0.05, 0.02), strict=True)):
        x, z = _state(6, 40 + i)
        t = _times(6, 50 + i, lo=0.1, hi=0.9)  # t ± dt stays inside [0, 1]
        args: tuple[Any, ...] = (x, t, dt, _score_fn(bmin, bmax))
        out.append(((*args, bmin, bmax, z) if with_noise else (*args, bmin, bmax), {}))
    return out


def _em_ref(
    x: Tensor, t: Tensor, dt: float, score_fn: Any, bmin: float, bmax: float, z: Tensor
) -> Tensor:
    return _em_step(VPSDE(bmin, bmax).reverse(score_fn), x, t, -dt, z)[0]


def _em_variant(
    sign_dt: float = -1.0, noise_scale: str = "sqrt", c: float = 1.0
) -> Callable[..., Tensor]:
    def fn(
        x: Tensor, t: Tensor, dt: float, score_fn: Any, bmin: float, bmax: float, z: Tensor
    ) -> Tensor:
        drift = _drift(x, t, score_fn(x, t), bmin, bmax, c=c)
        g = _col(_beta(t, bmin, bmax)).sqrt()
        noise = {"sqrt": math.sqrt(dt), "dt": dt, "none": 1.0}[noise_scale]
        return x + sign_dt * drift * dt + g * noise * z

    return fn


def _step_cases_both(with_noise: bool) -> list[Case]:
    cases = _step_cases(with_noise)
    data = (0, 1, 6) if with_noise else (0, 1)
    return cases + with_dtype(cases, data, torch.float32)[:1]


def _noise_candidates(case: Case) -> dict[str, Tensor]:
    t, dt, a, b = case[0][1].double(), case[0][2], case[0][4], case[0][5]
    beta = a + t * (b - a)
    return {
        "g(t) √dt": beta.sqrt() * math.sqrt(dt),
        "√dt (g(t) = √β(t) is missing)": torch.full_like(t, math.sqrt(dt)),
        "g(t)² √dt = β(t) √dt (the noise is scaled by g(t) = √β(t))": beta * math.sqrt(dt),
        "g(t) dt": beta.sqrt() * dt,
        "g(t)": beta.sqrt(),
    }


def _em_drift_part(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    """With the noise set to zero, name the deterministic part of the step."""
    for args, _ in cases:
        x, t, dt, score_fn, a, b, z = args
        zero = torch.zeros_like(z)
        got = student(x, t, dt, score_fn, a, b, zero)
        if torch.allclose(
            got.double(), reference(x, t, dt, score_fn, a, b, zero).double(), rtol=1e-4
        ):
            continue
        beta = _col(_beta(t, a, b))
        forms = {
            "x + [f − g² s] dt: a step forwards in time; the reverse SDE steps from t to t − dt, "
            "x − [f − g² s] dt": x + _drift(x, t, score_fn(x, t), a, b) * dt,
            "x − [f − ½ g² s] dt, the probability-flow drift; the reverse SDE has the full g²": x
            - _drift(x, t, score_fn(x, t), a, b, c=0.5) * dt,
            "a step with the score taken at t − dt; Euler–Maruyama evaluates everything at the "
            "current time t": x - _drift(x, t, score_fn(x, t - dt), a, b) * dt,
            "x − [−½ β x + β s] dt: the sign of the score term is flipped": x
            - (-0.5 * beta * x + beta * score_fn(x, t)) * dt,
        }
        for name, form in forms.items():
            if torch.allclose(got.double(), form.double(), rtol=1e-4, atol=1e-6):
                return f"with the noise set to zero your step is {name}."
        return (
            "with the noise set to zero your step should be x − [f(x, t) − g(t)² s(x, t)] dt, and "
            "it is not: the deterministic part of the step is wrong."
        )
    return None


_EM = Spec(
    lambda: _step_cases_both(True),
    _em_ref,
    {
        "no_sqrt_dt": Mistake(
            _em_variant(noise_scale="dt"),
            "the noise is scaled by dt; Brownian increments have standard deviation sqrt(dt): x "
            "+ … + g(t) sqrt(dt) z.",
        ),
        "no_dt_on_noise": Mistake(
            _em_variant(noise_scale="none"),
            "the noise term needs the factor sqrt(dt): g(t) sqrt(dt) z (a Brownian increment "
            "over a step dt).",
        ),
        "plus_dt": Mistake(
            _em_variant(sign_dt=+1.0),
            "you stepped forwards in time (+dt). The reverse SDE runs from t to t − dt: x_next = "
            "x − drift · dt + g sqrt(dt) z.",
        ),
        "score_sign": Mistake(
            _em_variant(c=-1.0),
            "the sign of the score term is flipped: the reverse drift is f − g² ∇log p_t.",
        ),
    },
    keep_dtype=True,
    diagnoses=(_em_drift_part,),
    terms=Terms({"the noise": 6}, _noise_candidates, t_arg=1),
    t_arg=1,
    doc=(
        "Check ``euler_maruyama_step(x, t, dt, score_fn, beta_min, beta_max, noise)``: x at t - dt."
    ),
)
check_euler_maruyama_step = Checker("euler_maruyama_step", _EM)


# --- one Heun step of the PF-ODE ---------------------------------------------------------------


def _heun_ref(x: Tensor, t: Tensor, dt: float, score_fn: Any, bmin: float, bmax: float) -> Tensor:
    pf = VPSDE(bmin, bmax).reverse(score_fn, probability_flow=True)
    return _heun_step(pf.drift, x, t, -dt)


def _heun_variant(
    c: float = 0.5, sign_dt: float = -1.0, euler: bool = False, second_at_t: bool = False
) -> Callable[..., Tensor]:
    def fn(x: Tensor, t: Tensor, dt: float, score_fn: Any, bmin: float, bmax: float) -> Tensor:
        def F(y: Tensor, s: Tensor) -> Tensor:
            return _drift(y, s, score_fn(y, s), bmin, bmax, c=c)

        h = sign_dt * dt
        k1 = F(x, t)
        if euler:
            return x + h * k1
        k2 = F(x + h * k1, t if second_at_t else t + h)
        return x + 0.5 * h * (k1 + k2)

    return fn


def _heun_forms(case: Case) -> dict[str, Tensor]:
    x, t, dt, score_fn, a, b = case[0]

    def F(y: Tensor, s: Tensor, f: float = -0.5, g_pow: int = 2) -> Tensor:
        beta = _col(_beta(s, a, b))
        g2 = beta if g_pow == 2 else beta.sqrt()
        return f * beta * y - 0.5 * g2 * score_fn(y, s)

    h = -dt
    k1 = F(x, t)
    return {
        "Heun's step x + (h/2)(k1 + k2), k1 = F(x, t), k2 = F(x + h k1, t + h)": x
        + 0.5 * h * (k1 + F(x + h * k1, t + h)),
        "a midpoint step, x + h F(x + ½h k1, t + ½h); Heun averages the two slopes k1 at "
        "(x, t) and k2 at the Euler prediction (x + h k1, t + h)": x
        + h * F(x + 0.5 * h * k1, t + 0.5 * h),
        "x + h/2 (k1 + F(x, t + h)): the second slope must be taken at the Euler prediction "
        "x + h k1, not at x": x + 0.5 * h * (k1 + F(x, t + h)),
        "x + h (k1 + k2): Heun averages the two slopes, x + (h/2)(k1 + k2)": x
        + h * (k1 + F(x + h * k1, t + h)),
        "a Heun step of the drift +½ β x − ½ β s: the forward drift f(x, t) = −½ β(t) x has "
        "the wrong sign": x + 0.5 * h * (F(x, t, 0.5) + F(x + h * F(x, t, 0.5), t + h, 0.5)),
        "a Heun step with g(t) = √β(t) where g(t)² = β(t) belongs in F = f − ½ g² s": x
        + 0.5 * h * (F(x, t, g_pow=1) + F(x + h * F(x, t, g_pow=1), t + h, g_pow=1)),
    }


_HEUN = Spec(
    lambda: _step_cases_both(False),
    _heun_ref,
    {
        "pf_no_half": Mistake(
            _heun_variant(c=1.0),
            "the probability-flow drift is f − ½ g² score; without the ½ you integrate the "
            "reverse-SDE drift with no noise, which collapses samples onto the modes.",
        ),
        "plus_dt": Mistake(
            _heun_variant(sign_dt=+1.0),
            "you integrated forwards in time (+dt); sampling runs from t to t − dt, so both "
            "stages use −dt.",
        ),
        "euler_only": Mistake(
            _heun_variant(euler=True),
            "that is an Euler step. Heun also evaluates F at the Euler prediction (x + h F(x, "
            "t), t + h) and averages.",
        ),
        "second_at_t": Mistake(
            _heun_variant(second_at_t=True),
            "the second evaluation must be at the *new* time t − dt, not at t.",
        ),
        "score_sign": Mistake(
            _heun_variant(c=-0.5),
            "the sign of the score term is flipped: the PF-ODE drift is f − ½ g² ∇log p_t.",
        ),
    },
    keep_dtype=True,
    diagnoses=(named_result(_heun_forms, "your step"),),
    t_arg=1,
    doc="Check ``pf_ode_heun_step(x, t, dt, score_fn, beta_min, beta_max) -> x at t - dt``.",
)
check_pf_ode_heun_step = Checker("pf_ode_heun_step", _HEUN)


SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
