"""Checkers for exercise 2 (the reverse process and the Gaussian posterior).

The student writes two functions over explicit schedule arrays (length ``T + 1``, index 0 = clean
data, ``betas[0] = 0``, ``alpha_bar[0] = 1``):

- ``posterior_mean_var(x0, x_t, t, betas, alpha_bar) -> (mean: like x_t, var: (B, 1, …, 1))``
      mu_tilde_t   = sqrt(ab_{t-1}) beta_t / (1 - ab_t) x_0
                     + sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) x_t
      beta_tilde_t = (1 - ab_{t-1}) / (1 - ab_t) beta_t
- ``mu_tilde_from_eps(x_t, t, eps, betas, alpha_bar) -> like x_t``
      mu_tilde_t   = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t)

``t`` is a long tensor ``(B,)`` in ``1..T`` (one step per sample). References come from
:func:`minidiff.q_posterior_mean_var` and :func:`minidiff.p_mean_var`; ``SPECS`` lists, per
checker, its cases, reference and the common mistakes it names (the tests iterate over it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..diffusion import p_mean_var, q_posterior_mean_var
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._calls import case_timesteps
from ._core import Case, Checker, Mistake, Spec, Terms, specs_of, with_dtype
from ._probe import named_result, schedule_candidates


def _schedules() -> list[NoiseSchedule]:
    # Short schedules with large betas so that beta vs beta_tilde or t vs t-1 differ clearly.
    return [linear_schedule(20, 0.01, 0.2), cosine_schedule(12)]


def _ts(T: int, B: int, seed: int) -> torch.Tensor:
    return case_timesteps(T, B, seed, low=2, start=(1, 2))  # t = 1 (β̃_1 = 0), t = 2 and t = T


def _cases(seed: int) -> list[Case]:
    out: list[Case] = []
    for i, (s, shape) in enumerate(zip(_schedules(), [(6, 2), (5, 1, 3, 3)], strict=False)):
        g = torch.Generator().manual_seed(seed + i)
        a, b = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        out.append(
            ((a, _ts(s.T, shape[0], seed + 10 + i), b, s.betas.clone(), s.alpha_bar.clone()), {})
        )
    return out + with_dtype(out, (0, 2), torch.float64)[:1]


def _posterior_candidates(t_pos: int) -> Callable[[Case], dict[str, torch.Tensor]]:
    """Schedule quantities at t, and the coefficients of the posterior and their near misses."""

    def build(case: Case) -> dict[str, torch.Tensor]:
        args = case[0]
        t, ab = args[t_pos], args[4].double()
        a_t, a_p = ab[t], ab[t - 1]
        beta = 1 - a_t / a_p
        extra = {
            "√ᾱ_{t−1} β_t / (1 − ᾱ_t)": a_p.sqrt() * beta / (1 - a_t),
            "√α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)": (1 - beta).sqrt() * (1 - a_p) / (1 - a_t),
            "√ᾱ_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)": a_t.sqrt() * (1 - a_p) / (1 - a_t),
            "√ᾱ_{t−1} / (1 − ᾱ_t) (β_t is missing)": a_p.sqrt() / (1 - a_t),
            "√ᾱ_t β_t / (1 − ᾱ_t), with ᾱ_t in place of ᾱ_{t−1}": a_t.sqrt() * beta / (1 - a_t),
            "α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), α_t without its square root": (1 - beta)
            * (1 - a_p)
            / (1 - a_t),
            "−β_t / (√α_t √(1 − ᾱ_t))": -beta / ((1 - beta).sqrt() * (1 - a_t).sqrt()),
            "−(1 − ᾱ_t) / (√α_t √(1 − ᾱ_t))": -(1 - a_t).sqrt() / (1 - beta).sqrt(),
            "−√β_t / (√α_t √(1 − ᾱ_t))": -beta.sqrt() / ((1 - beta).sqrt() * (1 - a_t).sqrt()),
            "√α_t": (1 - beta).sqrt(),
            "−β_t √α_t / √(1 − ᾱ_t)": -beta * (1 - beta).sqrt() / (1 - a_t).sqrt(),
            "−√(1 − ᾱ_t) / √ᾱ_t (that is x̂_0, not μ̃)": -(1 - a_t).sqrt() / a_t.sqrt(),
        }
        return schedule_candidates(ab, t, extra)

    return build


def _variance_forms(case: Case) -> dict[str, torch.Tensor]:
    args = case[0]
    t, ab = args[2], args[4].double()
    a_t, a_p = ab[t], ab[t - 1]
    beta = 1 - a_t / a_p
    return {
        "β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) β_t": (1 - a_p) / (1 - a_t) * beta,
        "(1 − ᾱ_t) / (1 − ᾱ_{t−1}) β_t, the ratio upside down": (1 - a_t)
        / (1 - a_p).clamp(min=1e-300)
        * beta,
        "(1 − ᾱ_{t−1}) / (1 − ᾱ_t) (β_t is missing)": (1 - a_p) / (1 - a_t),
        "1 − ᾱ_{t−1}, the variance of q(x_{t−1}|x_0)": 1 - a_p,
    }


def _sched(betas: torch.Tensor) -> NoiseSchedule:
    return NoiseSchedule(betas.double()[1:])


def _g(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


# --- posterior_mean_var ------------------------------------------------------------------------
# Case order: (x0, t, x_t, betas, alpha_bar);
# the student signature is (x0, x_t, t, betas, alpha_bar).


def _cases_posterior() -> list[Case]:
    return [((x0, x_t, t, b, ab), k) for (x0, t, x_t, b, ab), k in _cases(100)]


def _ref_posterior(x0, x_t, t, betas, alpha_bar):
    return q_posterior_mean_var(x0, x_t, t, _sched(betas))


def _posterior_parts(x0, x_t, t, betas, alpha_bar):
    b, ab, ab_prev = _g(betas, t, x_t), _g(alpha_bar, t, x_t), _g(alpha_bar, t - 1, x_t)
    return b, 1 - b, ab, ab_prev


def _mistake_beta(x0, x_t, t, betas, alpha_bar):
    mean, _ = _ref_posterior(x0, x_t, t, betas, alpha_bar)
    return mean, _g(betas, t, x_t)


def _mistake_std(x0, x_t, t, betas, alpha_bar):
    mean, var = _ref_posterior(x0, x_t, t, betas, alpha_bar)
    return mean, var.sqrt()


def _mistake_off_by_one(x0, x_t, t, betas, alpha_bar):
    b, a, ab, _ = _posterior_parts(x0, x_t, t, betas, alpha_bar)
    return ab.sqrt() * b / (1 - ab) * x0 + a.sqrt() * x_t, b  # ab_t where ab_{t-1} belongs


def _mistake_swapped(x0, x_t, t, betas, alpha_bar):
    b, a, ab, abp = _posterior_parts(x0, x_t, t, betas, alpha_bar)
    c0, ct = abp.sqrt() * b / (1 - ab), a.sqrt() * (1 - abp) / (1 - ab)
    return ct * x0 + c0 * x_t, (1 - abp) / (1 - ab) * b


def _mistake_no_sqrt(x0, x_t, t, betas, alpha_bar):
    b, a, ab, abp = _posterior_parts(x0, x_t, t, betas, alpha_bar)
    return abp * b / (1 - ab) * x0 + a * (1 - abp) / (1 - ab) * x_t, (1 - abp) / (1 - ab) * b


_POSTERIOR = Spec(
    _cases_posterior,
    _ref_posterior,
    {
        "beta_not_beta_tilde": Mistake(
            _mistake_beta,
            "your mean is right but the variance is β_t, the *forward* step's variance. The "
            "posterior is narrower: β̃_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · β_t (it is 0 at t = 1).",
        ),
        "std_not_var": Mistake(
            _mistake_std,
            "your mean is right but you returned the standard deviation √β̃_t; return the "
            "variance β̃_t.",
        ),
        "off_by_one": Mistake(
            _mistake_off_by_one,
            "you used ᾱ_t where ᾱ_{t-1} belongs. x_{t-1} given x_0 has mean √ᾱ_{t-1} x_0 and "
            "variance 1 - ᾱ_{t-1}: index alpha_bar[t - 1] for those.",
        ),
        "swapped_coefficients": Mistake(
            _mistake_swapped,
            "the coefficients of x_0 and x_t are swapped. x_0 gets √ᾱ_{t-1} β_t / (1 - ᾱ_t) and "
            "x_t gets √α_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t).",
        ),
        "missing_sqrt": Mistake(
            _mistake_no_sqrt,
            "the mean coefficients need square roots: √ᾱ_{t-1} (the scale of x_{t-1} given x_0) "
            "and √α_t (the scale of one forward step).",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x0": 0, "x_t": 1}, _posterior_candidates(2), t_arg=2, output=0),
    diagnoses=(named_result(_variance_forms, "your variance", output=1),),
    t_arg=2,
    outputs=("mean", "variance"),
    doc="""Check ``posterior_mean_var(x0, x_t, t: (B,) long, betas, alpha_bar)``.

    Returns ``(mean like x_t, var (B, 1, …))``.
    """,
)
check_posterior_mean_var = Checker("posterior_mean_var", _POSTERIOR)


# --- mu_tilde_from_eps -------------------------------------------------------------------------


def _cases_mu_eps() -> list[Case]:
    return [((x_t, t, eps, b, ab), k) for (x_t, t, eps, b, ab), k in _cases(200)]


def _ref_mu_eps(x_t, t, eps, betas, alpha_bar):
    mean, _ = p_mean_var(lambda x, tt: eps, x_t, t, _sched(betas))
    return mean


def _eps_form(sqrt_alpha=True, beta_power=1.0, sqrt_1mab=True, sign=-1.0, denom_alpha_bar=False):
    def fn(x_t, t, eps, betas, alpha_bar):
        b, ab = _g(betas, t, x_t), _g(alpha_bar, t, x_t)
        a = 1 - b
        scale = (1 - ab).sqrt() if sqrt_1mab else (1 - ab)
        denom = ab.sqrt() if denom_alpha_bar else (a.sqrt() if sqrt_alpha else a)
        return (x_t + sign * b**beta_power / scale * eps) / denom

    return fn


_MU_EPS = Spec(
    _cases_mu_eps,
    _ref_mu_eps,
    {
        "no_sqrt_alpha": Mistake(
            _eps_form(sqrt_alpha=False),
            "you divided by α_t; divide by √α_t (one forward step scales x_{t-1} by √α_t).",
        ),
        "alpha_bar_not_alpha": Mistake(
            _eps_form(denom_alpha_bar=True),
            "you divided by √ᾱ_t; the reverse step undoes ONE forward step, so divide by √α_t = "
            "√(1 - β_t).",
        ),
        "sqrt_beta": Mistake(
            _eps_form(beta_power=0.5),
            "the ε coefficient is β_t / √(1 - ᾱ_t), not √β_t / √(1 - ᾱ_t).",
        ),
        "no_sqrt_one_minus_alpha_bar": Mistake(
            _eps_form(sqrt_1mab=False),
            "the ε coefficient is β_t / √(1 - ᾱ_t): divide by the standard deviation of the "
            "noise in x_t, √(1 - ᾱ_t), not by its variance 1 - ᾱ_t.",
        ),
        "wrong_sign": Mistake(
            _eps_form(sign=1.0),
            "the noise must be *removed*: μ̃ = (x_t - β_t / √(1 - ᾱ_t) · ε) / √α_t.",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x_t": 0, "eps": 2}, _posterior_candidates(1), t_arg=1),
    t_arg=1,
    grad_args={"x_t": 0, "eps": 2},
    doc="Check ``mu_tilde_from_eps(x_t, t: (B,) long, eps, betas, alpha_bar) -> mean like x_t``.",
)
check_mu_tilde_from_eps = Checker("mu_tilde_from_eps", _MU_EPS)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
