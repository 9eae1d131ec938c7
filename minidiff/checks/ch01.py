"""Checkers for exercise 1 (the forward process).

The student writes small functions over explicit schedule arrays (length ``T + 1``, index 0 =
clean data, so ``alpha_bar[t]`` reads like the lectures):

- ``alpha_bar_from_betas(betas: (T+1,)) -> (T+1,)``: ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``
- ``q_sample(x0: (B,...), t: (B,), alpha_bar, noise) -> x_t``  ``sqrt(ab_t) x0 + sqrt(1-ab_t) eps``
- ``q_step(x_prev: (B,...), t: (B,), betas, noise) -> x_t``: ``sqrt(1-b_t) x_prev + sqrt(b_t) eps``
- ``snr(alpha_bar) -> same shape``                             ``ab / (1 - ab)``
- ``prior_kl(x0: (B, D), alpha_bar_T: float) -> (B,)``         ``KL(q(x_T|x0) || N(0, I))`` in nats

Each reference is computed with ``minidiff`` itself; each :class:`Mistake` is a common wrong answer.
``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..diffusion import q_sample as _q_sample
from ..diffusion import q_step as _q_step
from ..losses import gaussian_kl
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._calls import case_timesteps, schedule_from_alpha_bar, schedule_from_betas
from ._core import Case, Checker, Fn, Mistake, Spec, Terms, specs_of, with_dtype
from ._probe import elementwise_candidates, named_result, schedule_candidates


def _schedules() -> list[NoiseSchedule]:
    # Short schedules with large betas, so that ab vs sqrt(ab) or t vs t-1 differ clearly.
    return [linear_schedule(20, 0.01, 0.2), cosine_schedule(12)]


def _ts(T: int, B: int, seed: int) -> torch.Tensor:
    return case_timesteps(T, B, seed)  # both ends of the range, where off-by-one errors show


def _xs(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


# --- alpha_bar_from_betas ----------------------------------------------------------------------


def _cases_alpha_bar() -> list[Case]:
    return [((s.betas.clone(),), {}) for s in _schedules()]


def _ref_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    return schedule_from_betas(betas).alpha_bar


def _alpha_bar_forms(case: Case) -> dict[str, torch.Tensor]:
    b = case[0][0].double()
    return {
        "ᾱ_t = ∏_{s≤t} (1 − β_s)": torch.cumprod(1 - b, 0),
        "1 − β_t = α_t, one step's factor; ᾱ_t is the product of all of them up to t": 1 - b,
        "∏ √(1 − β_s) = √ᾱ_t; ᾱ_t multiplies the α_s = 1 − β_s themselves, no square root": (
            torch.cumprod((1 - b).sqrt(), 0)
        ),
        "exp(−Σ β_s), which only approximates ∏ (1 − β_s) while the β_s are small; take the "
        "product itself": torch.exp(-torch.cumsum(b, 0)),
    }


def _alpha_bar_ends(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    for i, (args, _) in enumerate(cases):
        out = student(args[0].clone())
        if isinstance(out, torch.Tensor) and out.shape == args[0].shape:
            if abs(float(out[0]) - 1.0) > 1e-6:
                return (
                    f"your alpha_bar[0] is {float(out[0]):.5g} on test input {i + 1}; index 0 is "
                    "clean data, ᾱ_0 = 1 (betas[0] = 0), and the product runs from s = 1 up to t: "
                    "torch.cumprod(1 - betas, 0) in its natural order."
                )
    return None


def _alpha_bar_steps(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    """ᾱ is a running product: ᾱ_t / ᾱ_{t−1} = 1 − β_t. Name the first t where the answer's ratio
    is not that factor."""
    for i, (args, _) in enumerate(cases):
        b = args[0].double()
        out = student(args[0].clone())
        if not isinstance(out, torch.Tensor) or out.shape != b.shape:
            return None
        out = out.double()
        prev, cur = out[:-1], out[1:]
        ratio = torch.where(prev != 0, cur / prev, torch.full_like(cur, math.nan))
        bad = ~torch.isclose(ratio, 1 - b[1:], rtol=1e-4, atol=1e-6)
        if bad.any():
            s = int(bad.nonzero()[0]) + 1
            return (
                f"your values are not a running product of the α_s = 1 − β_s: from t = {s - 1} to "
                f"t = {s} (test input {i + 1}) yours go from {float(out[s - 1]):.5g} to "
                f"{float(out[s]):.5g}, a factor {float(ratio[s - 1]):.5g}, where ᾱ_t = ᾱ_{{t−1}} · "
                f"(1 − β_t) multiplies by {float(1 - b[s]):.5g}. ᾱ_t = ∏_{{s≤t}} (1 − β_s): "
                "torch.cumprod(1 - betas, 0)."
            )
    return None


_ALPHA_BAR = Spec(
    _cases_alpha_bar,
    _ref_alpha_bar,
    {
        "cumsum": Mistake(
            lambda b: 1.0 - torch.cumsum(b, 0),
            "this is 1 - Σβ_s, the first-order approximation. ᾱ_t is a *product*: "
            "torch.cumprod(1 - betas, 0).",
        ),
        "cumprod_betas": Mistake(
            lambda b: torch.cumprod(b, 0),
            "you multiplied the β_s. ᾱ_t multiplies the α_s = 1 - β_s.",
        ),
        "off_by_one": Mistake(
            lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]]),
            "your ᾱ is shifted by one step (ᾱ_t = ∏_{s<t}). The product runs up to and including "
            "s = t, and index 0 (β_0 = 0) gives ᾱ_0 = 1 on its own.",
        ),
    },
    diagnoses=(named_result(_alpha_bar_forms), _alpha_bar_ends, _alpha_bar_steps),
    doc="Check ``alpha_bar_from_betas(betas: (T+1,), betas[0] = 0) -> alpha_bar: (T+1,)``.",
)
check_alpha_bar_from_betas = Checker("alpha_bar_from_betas", _ALPHA_BAR)


# --- q_sample ------------------------------------------------------------------------------------


def _cases_q_sample() -> list[Case]:
    cases: list[Case] = []
    for i, (s, shape) in enumerate(zip(_schedules(), [(6, 2), (5, 1, 3, 3)], strict=True)):
        x0, eps = _xs(shape, 10 + i)
        cases.append(((x0, _ts(s.T, shape[0], 20 + i), s.alpha_bar.clone(), eps), {}))
    return cases + with_dtype(cases, (0, 3), torch.float64)[:1]


def _candidates(
    schedule_arg: int, from_betas: bool = False
) -> Callable[[Case], dict[str, torch.Tensor]]:
    def build(case: Case) -> dict[str, torch.Tensor]:
        arr, t = case[0][schedule_arg].double(), case[0][1]
        ab = torch.cumprod(1 - arr, 0) if from_betas else arr
        return schedule_candidates(ab, t)

    return build


def _ref_q_sample(
    x0: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    return _q_sample(x0, t, schedule_from_alpha_bar(alpha_bar), noise=noise)


Coef = Callable[[torch.Tensor], torch.Tensor]


def _noising(a_fn: Coef, s_fn: Coef, shift: int = 0) -> Callable[..., torch.Tensor]:
    """``(x, t, values, noise) -> a_fn(v) x + s_fn(v) noise`` with ``v = values[t - shift]``: the
    form of ``q_sample`` (on ``alpha_bar``) and of ``q_step`` (on ``betas``), with the coefficients
    that a mistake uses."""

    def fn(
        x: torch.Tensor, t: torch.Tensor, values: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        v = _gather(values, t - shift, x)
        return a_fn(v) * x + s_fn(v) * noise

    return fn


_Q_SAMPLE = Spec(
    _cases_q_sample,
    _ref_q_sample,
    {
        "alpha_bar_not_sqrt": Mistake(
            _noising(lambda ab: ab, lambda ab: (1 - ab).sqrt()),
            "the mean is √ᾱ_t · x0, not ᾱ_t · x0 (q(x_t|x0) has mean √ᾱ_t x0).",
        ),
        "variance_not_std": Mistake(
            _noising(lambda ab: ab.sqrt(), lambda ab: 1 - ab),
            "the noise is scaled by the standard deviation √(1-ᾱ_t), not by the variance 1-ᾱ_t.",
        ),
        "no_sqrt": Mistake(
            _noising(lambda ab: ab, lambda ab: 1 - ab),
            "both coefficients need a square root: x_t = √ᾱ_t x0 + √(1-ᾱ_t) ε.",
        ),
        "swapped": Mistake(
            _noising(lambda ab: (1 - ab).sqrt(), lambda ab: ab.sqrt()),
            "the coefficients are swapped: x0 gets √ᾱ_t (≈1 at small t) and ε gets √(1-ᾱ_t).",
        ),
        "off_by_one": Mistake(
            _noising(lambda ab: ab.sqrt(), lambda ab: (1 - ab).sqrt(), shift=1),
            "you used alpha_bar[t-1]. The arrays have length T+1 with index 0 = clean data, so "
            "use alpha_bar[t].",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x0": 0, "the noise": 3}, _candidates(2), t_arg=1),
    t_arg=1,
    grad_args={"x0": 0, "noise": 3},
    doc=(
        "Check ``q_sample(x0: (B, ...), t: (B,) long, alpha_bar: (T+1,), noise: like x0) -> x_t``."
    ),
)
check_q_sample = Checker("q_sample", _Q_SAMPLE)


# --- q_step --------------------------------------------------------------------------------


def _cases_q_step() -> list[Case]:
    cases: list[Case] = []
    for i, (s, shape) in enumerate(zip(_schedules(), [(7, 2), (4, 2, 2, 3)], strict=True)):
        x, eps = _xs(shape, 30 + i)
        cases.append(((x, _ts(s.T, shape[0], 40 + i), s.betas.clone(), eps), {}))
    return cases + with_dtype(cases, (0, 3), torch.float64)[:1]


def _ref_q_step(
    x_prev: torch.Tensor, t: torch.Tensor, betas: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    return _q_step(x_prev, t, schedule_from_betas(betas), noise=noise)


def _step_with_alpha_bar(
    x_prev: torch.Tensor, t: torch.Tensor, betas: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    ab = _gather(torch.cumprod(1 - betas, 0), t, x_prev)
    return ab.sqrt() * x_prev + (1 - ab).sqrt() * noise


_Q_STEP = Spec(
    _cases_q_step,
    _ref_q_step,
    {
        "beta_not_sqrt": Mistake(
            _noising(lambda b: (1 - b).sqrt(), lambda b: b),
            "the noise is scaled by √β_t (the standard deviation), not β_t (the variance).",
        ),
        "alpha_not_sqrt": Mistake(
            _noising(lambda b: 1 - b, lambda b: b.sqrt()),
            "x_{t-1} is scaled by √α_t = √(1-β_t), not by α_t; otherwise the variance is not "
            "preserved.",
        ),
        "no_shrink": Mistake(
            _noising(lambda b: torch.ones_like(b), lambda b: b.sqrt()),
            "x_{t-1} must be shrunk by √(1-β_t); adding noise alone makes the variance grow "
            "without bound.",
        ),
        "off_by_one": Mistake(
            _noising(lambda b: (1 - b).sqrt(), lambda b: b.sqrt(), shift=1),
            "you used betas[t-1]. The step to x_t uses β_t = betas[t] (index 0 is the clean data).",
        ),
        "alpha_bar_instead": Mistake(
            _step_with_alpha_bar,
            "you used ᾱ_t, which jumps from x_0 to x_t in one go. One step from x_{t-1} uses β_t "
            "alone.",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x_prev": 0, "the noise": 3}, _candidates(2, from_betas=True), t_arg=1),
    t_arg=1,
    doc="Check ``q_step(x_prev: (B, ...), t: (B,) long, betas: (T+1,), noise) -> x_t``.",
)
check_q_step = Checker("q_step", _Q_STEP)


# --- snr and prior_kl ----------------------------------------------------------------------


def _cases_snr() -> list[Case]:
    cases: list[Case] = [((s.alpha_bar[1:].clone(),), {}) for s in _schedules()]
    cases.append(((torch.tensor([[0.9, 0.5], [0.1, 0.01]], dtype=torch.float64),), {}))
    return cases + with_dtype(cases, (0,), torch.float32)[:1]


def _ref_snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    return alpha_bar / (1 - alpha_bar)


def _snr_denominator(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    """Probe the answer at ᾱ from 0.05 to 0.95: if ᾱ / answer is a line c0 + c1 ᾱ, the answer is
    ᾱ over that line, and the line is the denominator to name (it should be 1 − ᾱ)."""
    ab = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    out = student(ab.clone())
    if not isinstance(out, torch.Tensor) or out.shape != ab.shape or not (out != 0).all():
        return None
    den = ab / out.double()
    A = torch.stack([torch.ones_like(ab), ab], 1)
    c0, c1 = (float(c) for c in torch.linalg.lstsq(A, den[:, None]).solution[:, 0])
    if not torch.allclose(c0 + c1 * ab, den, rtol=1e-4, atol=1e-6):
        return None
    if math.isclose(c0, 1, abs_tol=1e-4) and math.isclose(c1, -1, abs_tol=1e-4):
        return None
    sign = "+" if c1 >= 0 else "−"
    return (
        f"your result is ᾱ / ({c0:.4g} {sign} {abs(c1):.4g} ᾱ): the numerator is right, the "
        "denominator is not. SNR = ᾱ / (1 − ᾱ): the signal variance over the noise variance "
        "1 − ᾱ."
    )


_SNR = Spec(
    _cases_snr,
    _ref_snr,
    {
        "inverted": Mistake(
            lambda ab: (1 - ab) / ab, "that is noise-to-signal: SNR = ᾱ / (1 - ᾱ)."
        ),
        "std_ratio": Mistake(
            lambda ab: (ab / (1 - ab)).sqrt(),
            "SNR is a ratio of variances, ᾱ / (1 - ᾱ), not of standard deviations √ᾱ / √(1-ᾱ).",
        ),
    },
    keep_dtype=True,
    diagnoses=(
        named_result(lambda case: elementwise_candidates(case[0][0], "ᾱ")),
        _snr_denominator,
    ),
    doc="Check ``snr(alpha_bar: any shape, values in (0, 1)) -> alpha_bar / (1 - alpha_bar)``.",
)
check_snr = Checker("snr", _SNR)


def _cases_prior_kl() -> list[Case]:
    cases: list[Case] = []
    for i, ab_T in enumerate([0.3, 0.05, float(linear_schedule(1000).alpha_bar[-1])]):
        g = torch.Generator().manual_seed(50 + i)
        cases.append(((2.0 * torch.randn(5, 3, generator=g, dtype=torch.float64), ab_T), {}))
    return cases + with_dtype(cases, (0,), torch.float32)[:1]


def _ref_prior_kl(x0: torch.Tensor, alpha_bar_T: float) -> torch.Tensor:
    ab = torch.as_tensor(alpha_bar_T, dtype=x0.dtype)
    zero, one = torch.zeros((), dtype=x0.dtype), torch.ones((), dtype=x0.dtype)
    return gaussian_kl(ab.sqrt() * x0, (1 - ab).expand_as(x0), zero, one).sum(
        dim=tuple(range(1, x0.dim()))
    )


def _kl_variant(
    mean_scale: Callable[[float], float], var: Callable[[float], float], factor: float = 0.5
) -> Callable[..., torch.Tensor]:
    def fn(x0: torch.Tensor, alpha_bar_T: float) -> torch.Tensor:
        m, v = mean_scale(alpha_bar_T) * x0, torch.tensor(var(alpha_bar_T), dtype=x0.dtype)
        return (factor * (-torch.log(v) + v + m**2 - 1)).sum(dim=tuple(range(1, x0.dim())))

    return fn


def _reversed_kl(x0: torch.Tensor, alpha_bar_T: float) -> torch.Tensor:
    ab = torch.tensor(alpha_bar_T, dtype=x0.dtype)
    v, m = 1 - ab, ab.sqrt() * x0
    return (0.5 * (torch.log(v) + (1 + m**2) / v - 1)).sum(dim=tuple(range(1, x0.dim())))


def _variance_part_slip(per_dim: float, var: float) -> str | None:
    """Name a slip in the variance part ½ (σ² − 1 − log σ²) from the constant it adds per
    dimension (the same for every x0, since the part that grows with x0 is right)."""
    log_v, std = math.log(var), math.sqrt(var)
    formula = "KL(N(μ, σ²) || N(0, 1)) = ½ (σ² + μ² − 1 − log σ²), with σ² = 1 − ᾱ_T"
    slips = (
        (
            0.5,
            f"the −1 inside the bracket is missing (the KL of N(0, 1) to itself is 0): {formula}.",
        ),
        (0.5 * log_v, f"the −log σ² term is missing: {formula}."),
        (log_v, f"the log term has the wrong sign: {formula} (minus log σ²)."),
        (
            0.25 * log_v,
            f"the log term is log σ = ½ log σ², the log of the standard deviation; it is the log "
            f"of the variance: {formula}.",
        ),
        (
            0.5 * (std - var),
            f"the variance term is σ = √(1 − ᾱ_T) where σ² = 1 − ᾱ_T belongs: {formula}.",
        ),
        (
            0.5 * (std - var + 0.5 * log_v),
            f"you used the standard deviation σ = √(1 − ᾱ_T) where the variance σ² belongs (in "
            f"σ² and in log σ²): {formula}.",
        ),
    )
    for value, message in slips:
        if abs(per_dim - value) < 1e-6 * (1 + abs(value)):
            return message
    return None


def _prior_kl_parts(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    """Probe with x0 = 0 (the variance part alone), then the part that grows with ||x0||²."""
    for i, ((x0, ab), _kw) in enumerate(cases):
        s0, r0 = student(torch.zeros_like(x0), ab), reference(torch.zeros_like(x0), ab)
        s1, r1 = student(x0.clone(), ab), reference(x0.clone(), ab)
        if not all(isinstance(v, torch.Tensor) and v.shape == r1.shape for v in (s0, s1)):
            return None
        d = x0[0].numel()
        ratio = s1.double() / r1.double()
        if torch.allclose(ratio, torch.full_like(ratio, 1 / d), rtol=1e-4):
            return (
                "your KL is 1/D × the right one: you averaged over the data dimensions. The "
                "coordinates are independent, so their KLs add up: sum over dim 1."
            )
        diff = (s1 - r1).double()
        if torch.allclose(diff, diff[:1].expand_as(diff), rtol=1e-4) and abs(float(diff[0])) > 1e-6:
            named = _variance_part_slip(float(diff[0]) / d, 1 - ab)
            if named:
                return named
            return (
                f"your KL is off by the same constant, {float(diff[0]):+.4g} per sample (that is "
                f"{float(diff[0]) / d:+.4g} per dimension), so the part that grows with x0 is "
                "right: check the terms that do not depend on x0, σ², −1 and −log σ² inside ½ (σ² "
                "+ μ² − 1 − log σ²), their signs and their ½."
            )
        var = 1 - ab
        if not torch.allclose(s0.double(), r0.double(), rtol=1e-4, atol=1e-6):
            got, want = float(s0[0]), float(r0[0])
            hint = ""
            if abs(got - d * 0.5 * (var - 1)) < 1e-6 * (1 + abs(got)):
                hint = " The −log σ² term is missing."
            return (
                "with x0 = 0 (only the variance part, ½ Σ (σ² − 1 − log σ²) with σ² = 1 − ᾱ_T) "
                f"your KL is {got:.6g} per sample on test input {i + 1}, expected {want:.6g}.{hint}"
            )
        n2 = (x0.double() ** 2).sum(1)
        c_s = (s1 - s0).double() / n2
        c_r = (r1 - r0).double() / n2
        if not torch.allclose(c_s, c_r, rtol=1e-4):
            k = float(c_s.mean())
            names = {
                "½ ᾱ_T": 0.5 * ab,
                "½ √ᾱ_T": 0.5 * ab**0.5,
                "½ (1 − ᾱ_T)": 0.5 * var,
                "ᾱ_T": ab,
            }
            name = next((n for n, v in names.items() if abs(k - v) < 1e-4 * (1 + abs(v))), None)
            found = f"{name} ||x0||²" if name else f"{k:.5g} ||x0||²"
            return (
                f"the part that grows with x0 is {found}; the mean of q(x_T|x0) is √ᾱ_T x0, so it "
                "should be ½ ᾱ_T ||x0||² (the variance part, with x0 = 0, is right)."
            )
    return None


_PRIOR_KL = Spec(
    _cases_prior_kl,
    _ref_prior_kl,
    {
        "missing_half": Mistake(
            _kl_variant(lambda ab: ab**0.5, lambda ab: 1 - ab, factor=1.0),
            "you are off by a factor 2: KL(N(μ,σ²)||N(0,1)) = ½ (σ² + μ² - 1 - log σ²).",
        ),
        "mean_not_sqrt": Mistake(
            _kl_variant(lambda ab: ab, lambda ab: 1 - ab),
            "the mean of q(x_T|x0) is √ᾱ_T x0, not ᾱ_T x0.",
        ),
        "std_as_variance": Mistake(
            _kl_variant(lambda ab: ab**0.5, lambda ab: (1 - ab) ** 0.5),
            "the variance of q(x_T|x0) is 1-ᾱ_T; you used the standard deviation √(1-ᾱ_T).",
        ),
        "reversed": Mistake(
            _reversed_kl,
            "that is KL(N(0,I) || q(x_T|x0)); L_T = KL(q(x_T|x0) || N(0,I)) — KL is not symmetric.",
        ),
    },
    keep_dtype=True,
    diagnoses=(_prior_kl_parts,),
    doc="Check ``prior_kl(x0: (B, D), alpha_bar_T: float) -> (B,)``: KL(q(x_T|x0) || N(0, I)).",
)
check_prior_kl = Checker("prior_kl", _PRIOR_KL)


SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
