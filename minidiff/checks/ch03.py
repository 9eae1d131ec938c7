"""Checkers for exercise 3 (the variational bound and L_simple).

The student writes:

- ``gaussian_kl(mean1, var1, mean2, var2) -> elementwise KL(N(mean1, var1) || N(mean2, var2))``
      KL = ½ [log(var2 / var1) + (var1 + (mean1 - mean2)²) / var2 - 1]      (arguments broadcast)
- ``vlb_term(eps_model, x0, t, betas, alpha_bar, noise) -> (B,)``
      L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))
      at x_t = sqrt(ab_t) x0 + sqrt(1-ab_t) noise, model variance sigma_t² = beta_t,
      SUMMED over data dimensions (nats per sample, like minidiff.vlb_terms)
- ``l_simple(eps_model, x0, t, alpha_bar, noise) -> scalar``
      mean over the batch AND the data dimensions of (noise - eps_model(x_t, t))²
      (like minidiff.simple_loss)

Conventions: the bound is a log-likelihood, so its terms are summed over data dimensions; L_simple
is a training loss, averaged so that its scale does not depend on the image size. Each convention
has a checker mistake for the other choice. ``t`` is a long tensor ``(B,)`` (``2..T`` for vlb_term).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..diffusion import p_mean_var, q_posterior_mean_var, q_sample
from ..losses import gaussian_kl as _kl
from ..losses import simple_loss
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._calls import case_timesteps
from ._core import Case, Checker, Fn, Mistake, Spec, specs_of, with_dtype
from ._probe import schedule_candidates
from ._spy import Spy, eps_loss_calls


class ToyEps(nn.Module):
    """A fixed, imperfect, time-dependent noise predictor ``(x_t (B, ...), t (B,)) -> (B, ...)``.

    Its two scalar weights are trainable, so a loss built on it must keep its gradient.
    """

    def __init__(self, T: int) -> None:
        super().__init__()
        self.T = T
        self.a = nn.Parameter(torch.tensor(0.8))
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            raise TypeError(
                "eps_model(x_t, t) takes t as the integer timesteps, a long tensor (B,), like the "
                f"course's networks; it got {t.dtype}"
            )
        s = (t.to(x_t.dtype) / self.T).reshape(-1, *([1] * (x_t.dim() - 1)))
        return self.a.to(x_t.dtype) * torch.tanh(x_t) * s + self.b.to(x_t.dtype) * torch.sin(
            2 * x_t
        )


def _schedules() -> list[NoiseSchedule]:
    return [linear_schedule(20, 0.01, 0.2), cosine_schedule(12)]


def _sched(betas: torch.Tensor) -> NoiseSchedule:
    return NoiseSchedule(betas.double()[1:])


# --- gaussian_kl -------------------------------------------------------------------------------


def _cases_kl() -> list[Case]:
    g = torch.Generator().manual_seed(300)
    out: list[Case] = []
    for shape, vshape in (((5, 3), (5, 1)), ((7,), (7,))):
        m1, m2 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        v1 = torch.rand(vshape, generator=g) * 1.5 + 0.2
        v2 = torch.rand(vshape, generator=g) * 1.5 + 0.2
        out.append(((m1, v1, m2, v2), {}))
    return out + with_dtype(out, (0, 1, 2, 3), torch.float64)[:1]


def _ref_kl(m1, v1, m2, v2):
    return _kl(m1, v1, m2, v2)


def _kl_parts(
    student: Fn, reference: Fn, cases: Sequence[Case], _rtol: float, _atol: float
) -> str | None:
    """Probe the variance part alone (equal means), then the part that grows with (m1 − m2)²."""
    for i, ((m1, v1, m2, v2), _kw) in enumerate(cases):
        shape = torch.broadcast_shapes(m1.shape, v1.shape)
        m1, v1, m2, v2 = (a.double().expand(shape) for a in (m1, v1, m2, v2))
        s_v, r_v = student(m2, v1, m2, v2), reference(m2, v1, m2, v2)
        if not isinstance(s_v, torch.Tensor) or s_v.shape != r_v.shape:
            return None
        if not torch.allclose(s_v.double(), r_v.double(), rtol=1e-4, atol=1e-6):
            forms = {
                "½ [log(var1/var2) + var1/var2 − 1]: the log is upside down, it is "
                "log(var2/var1)": 0.5 * (torch.log(v1 / v2) + v1 / v2 - 1),
                "½ [log(var2/var1) − 1]: var1 is missing from (var1 + (m1 − m2)²)/var2": 0.5
                * (torch.log(v2 / v1) - 1),
                "½ log(var2/var1): you divided (var1 + (m1 − m2)²) by var1, where var2 belongs": 0.5
                * torch.log(v2 / v1),
                "the KL of N(m1, var1²) and N(m2, var2²): the arguments are variances, not "
                "standard deviations, so do not square them": 0.5
                * (torch.log(v2**2 / v1**2) + v1**2 / v2**2 - 1),
            }
            found = next(
                (n for n, f in forms.items() if torch.allclose(s_v.double(), f, rtol=1e-4)), None
            )
            if found:
                return f"with equal means (the variance part alone) your KL is {found}."
            return (
                "with equal means your KL should be ½ [log(var2/var1) + var1/var2 − 1] (= "
                f"{float(r_v.reshape(-1)[0]):.5g} for the first element of test input {i + 1}), "
                f"but it is {float(s_v.reshape(-1)[0]):.5g}: the variance part is wrong."
            )
        s_m, r_m = student(m1, v1, m2, v2), reference(m1, v1, m2, v2)
        d = (m1 - m2) ** 2
        keep = d > 1e-3
        c_s = ((s_m.double() - s_v.double()) / d)[keep]
        c_r = ((r_m.double() - r_v.double()) / d)[keep]
        if torch.allclose(c_s, c_r, rtol=1e-4):
            continue
        coefs = {
            "1/(2 var1): divide (m1 − m2)² by var2, the variance of the second Gaussian": (
                0.5 / v1
            )[keep],
            "1/var2: the ½ in front of the bracket is missing for the mean term": (1 / v2)[keep],
        }
        found = next((n for n, c in coefs.items() if torch.allclose(c_s, c, rtol=1e-4)), None)
        if found:
            return (
                f"the term in (m1 − m2)² has the coefficient {found} (the variance part is right)."
            )
        lin = ((s_m.double() - s_v.double()) / d.sqrt())[keep]
        if torch.allclose(lin, (0.5 / v2)[keep], rtol=1e-4):
            return (
                "the mean term grows like |m1 − m2|, not (m1 − m2)²: square the difference of the "
                "means (the variance part is right)."
            )
        return (
            "the variance part is right (equal means give the right KL), but the term in (m1 − "
            "m2)² is not: it should be (m1 − m2)²/(2 var2)."
        )
    return None


_KL = Spec(
    _cases_kl,
    _ref_kl,
    {
        "missing_half": Mistake(
            lambda m1, v1, m2, v2: 2 * _kl(m1, v1, m2, v2),
            "your KL is twice too large: the whole bracket is multiplied by ½.",
        ),
        "log_of_std": Mistake(
            lambda m1, v1, m2, v2: (
                0.5 * (0.5 * torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)
            ),
            "the log term is log(var2 / var1), a ratio of *variances*; you used the ratio of "
            "standard deviations (half of it).",
        ),
        "reversed": Mistake(
            lambda m1, v1, m2, v2: _kl(m2, v2, m1, v1),
            "this is KL(N2 || N1). KL is not symmetric: KL(N1 || N2) = E_{N1}[log N1 - log N2], "
            "so var1 sits in the numerator of the trace term and var2 divides the squared mean "
            "difference.",
        ),
        "missing_minus_one": Mistake(
            lambda m1, v1, m2, v2: _kl(m1, v1, m2, v2) + 0.5,
            "you forgot the -1 inside the bracket (KL must be 0 when the two Gaussians are equal).",
        ),
    },
    keep_dtype=True,
    diagnoses=(_kl_parts,),
    doc="Check ``gaussian_kl(mean1, var1, mean2, var2) -> KL(N1 || N2)``, elementwise.",
)
check_gaussian_kl = Checker("gaussian_kl", _KL)


# --- vlb_term ------------------------------------------------------------------------------------


def _ts(T: int, B: int, seed: int) -> torch.Tensor:
    return case_timesteps(T, B, seed, low=2, start=(2,))


def _cases_model(seed: int, lo_t: int) -> list[Case]:
    out: list[Case] = []
    for i, (s, shape) in enumerate(zip(_schedules(), [(6, 2), (4, 1, 3, 3)], strict=False)):
        g = torch.Generator().manual_seed(seed + i)
        x0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        t = _ts(s.T, shape[0], seed + 10 + i)
        if lo_t == 1:
            t[1] = 1
        out.append(((ToyEps(s.T), x0, t, s.betas.clone(), s.alpha_bar.clone(), noise), {}))
    return out


def _cases_vlb() -> list[Case]:
    return _cases_model(400, 2)


def _sum_dims(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(1)


def _vlb(kl=_kl, model_var="beta", reduce=_sum_dims):
    def fn(eps_model, x0, t, betas, alpha_bar, noise):
        s = _sched(betas)
        x_t = q_sample(x0, t, s, noise=noise)
        mq, vq = q_posterior_mean_var(x0, x_t, t, s)
        mp, vp = p_mean_var(eps_model, x_t, t, s, model_var)
        return reduce(kl(mq, vq.expand_as(x0), mp, vp.expand_as(x0))).to(x0.dtype)

    return fn


def _mean_dims(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(1)


def _candidates(ab_arg: int, t_arg: int = 2) -> Callable[[Case], dict[str, torch.Tensor]]:
    return lambda case: schedule_candidates(case[0][ab_arg], case[0][t_arg])


def _vlb_from_eps(variant: str) -> Callable[[Spy, Case], torch.Tensor]:
    """L_{t-1} recomputed from the answer's own ε_θ, with one piece of the formula changed."""

    def fn(spy: Spy, case: Case) -> torch.Tensor:
        _, x0, t, betas, alpha_bar, noise = case[0]
        s = _sched(betas)
        x_t = q_sample(x0, t, s, noise=noise)
        mq, vq = q_posterior_mean_var(x0, x_t, t, s)
        eps = spy.outputs[0]
        mp, vp = p_mean_var(lambda x, tt: eps, x_t, t, s, "beta")
        if variant == "slip3":
            ab = alpha_bar[t].to(x0.dtype).reshape(-1, *[1] * (x0.dim() - 1))
            mp = mp * (1 - betas[t].to(x0.dtype)).reshape(ab.shape).sqrt() / ab.sqrt()
        if variant == "q_beta":
            vq = vp
        return _sum_dims(_kl(mq, vq.expand_as(x0), mp, vp.expand_as(x0)))

    return fn


_VLB_USES = {
    "the mean of p_θ divides by √ᾱ_t; it is (x_t − β_t/√(1 − ᾱ_t) ε_θ)/√α_t, one step's α_t "
    "(a slip the lecture decks make too: see the table of slips in the course tour).": (
        _vlb_from_eps("slip3")
    ),
    "you gave q(x_{t−1}|x_t, x_0) the variance β_t; the posterior's variance is "
    "β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (β_t is the model's σ_t² here).": _vlb_from_eps("q_beta"),
}

_VLB = Spec(
    _cases_vlb,
    _vlb(),
    {
        "mean_over_dims": Mistake(
            _vlb(reduce=_mean_dims),
            "you averaged over the data dimensions. A term of the bound is a log-likelihood of "
            "the whole x_0, so the per-dimension KLs are SUMMED (nats per sample).",
        ),
        "beta_tilde_model_variance": Mistake(
            _vlb(model_var="beta_tilde"),
            "the model's variance here is σ_t² = β_t (the exercise's choice); you used β̃_t, the "
            "variance of q.",
        ),
        "reversed_kl": Mistake(
            _vlb(kl=lambda m1, v1, m2, v2: _kl(m2, v2, m1, v1)),
            "you computed KL(p_θ || q); the bound has KL(q(x_{t-1}|x_t,x_0) || p_θ(x_{t-1}|x_t)).",
        ),
        "missing_half": Mistake(
            _vlb(kl=lambda m1, v1, m2, v2: 2 * _kl(m1, v1, m2, v2)),
            "your term is twice too large: check the ½ in the Gaussian KL.",
        ),
        "no_sum": Mistake(
            _vlb(reduce=lambda x: x.reshape(x.shape[0], -1)[:, 0]),
            "return one number per sample: sum the elementwise KL over all data dimensions.",
        ),
    },
    grad=True,  # a term of the bound, trained like a loss: it keeps its gradient per sample
    calls=eps_loss_calls(_candidates(4), ab_arg=4, noise_arg=5, uses=_VLB_USES),
    keep_dtype=True,
    t_arg=2,
    doc="""Check ``vlb_term(eps_model, x0, t: (B,) in 2..T, betas, alpha_bar, noise) -> (B,)``.

    That is L_{t-1} with sigma² = beta, summed over data dimensions.
    """,
)
check_vlb_term = Checker("vlb_term", _VLB)


# --- l_simple ------------------------------------------------------------------------------------


def _cases_simple() -> list[Case]:
    return [((m, x0, t, ab, noise), k) for (m, x0, t, _b, ab, noise), k in _cases_model(500, 1)]


def _ref_simple(eps_model, x0, t, alpha_bar, noise):
    s = NoiseSchedule(1 - alpha_bar[1:].double() / alpha_bar[:-1].double())
    return simple_loss(eps_model, x0, s, t=t, noise=noise)


def _simple(index_shift=0, sqrt=True, target="noise", reduce="mean"):
    def fn(eps_model, x0, t, alpha_bar, noise):
        ab = alpha_bar[t - index_shift].to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        x_t = (ab.sqrt() * x0 + (1 - ab).sqrt() * noise) if sqrt else (ab * x0 + (1 - ab) * noise)
        err = ((noise if target == "noise" else x0) - eps_model(x_t, t)) ** 2
        per = err.reshape(err.shape[0], -1)
        return (per.mean(1) if reduce == "mean" else per.sum(1)).mean()

    return fn


_SIMPLE = Spec(
    _cases_simple,
    _ref_simple,
    {
        "sum_over_dims": Mistake(
            _simple(reduce="sum"),
            "you summed over the data dimensions; L_simple (like minidiff.simple_loss) averages "
            "over the batch AND the data dimensions, so its scale does not depend on the image "
            "size.",
        ),
        "no_sqrt": Mistake(
            _simple(sqrt=False),
            "x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε: the square roots are missing.",
        ),
        "off_by_one": Mistake(
            _simple(index_shift=1),
            "you used alpha_bar[t - 1]; x_t is built with ᾱ_t = alpha_bar[t] (index 0 is clean "
            "data).",
        ),
        "x0_target": Mistake(
            _simple(target="x0"),
            "the network predicts the noise ε that made x_t, so compare its output with `noise`, "
            "not x_0.",
        ),
    },
    calls=eps_loss_calls(_candidates(3)),
    keep_dtype=True,
    doc="Check ``l_simple(eps_model, x0, t: (B,), alpha_bar, noise) -> scalar`` (a mean).",
)
check_l_simple = Checker("l_simple", _SIMPLE)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
__all__ += ["ToyEps"]
