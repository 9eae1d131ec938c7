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

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..diffusion import p_mean_var, q_posterior_mean_var, q_sample
from ..losses import gaussian_kl as _kl
from ..losses import simple_loss
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._core import Case, CheckResult, Mistake, Spec, check_spec

__all__ = ["check_gaussian_kl", "check_vlb_term", "check_l_simple", "SPECS", "ToyEps"]


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
    return out


def _ref_kl(m1, v1, m2, v2):
    return _kl(m1, v1, m2, v2)


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
            "standard "
            "deviations (half of it).",
        ),
        "reversed": Mistake(
            lambda m1, v1, m2, v2: _kl(m2, v2, m1, v1),
            "this is KL(N2 || N1). KL is not symmetric: KL(N1 || N2) = E_{N1}[log N1 - log N2], "
            "so var1 "
            "sits in the numerator of the trace term and var2 divides the squared mean difference.",
        ),
        "missing_minus_one": Mistake(
            lambda m1, v1, m2, v2: _kl(m1, v1, m2, v2) + 0.5,
            "you forgot the -1 inside the bracket (KL must be 0 when the two Gaussians are equal).",
        ),
    },
)


# --- vlb_term ------------------------------------------------------------------------------------


def _ts(T: int, B: int, seed: int) -> torch.Tensor:
    t = torch.randint(2, T + 1, (B,), generator=torch.Generator().manual_seed(seed))
    t[0], t[-1] = 2, T
    return t


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


_VLB = Spec(
    _cases_vlb,
    _vlb(),
    {
        "mean_over_dims": Mistake(
            _vlb(reduce=_mean_dims),
            "you averaged over the data dimensions. A term of the bound is a log-likelihood of "
            "the whole "
            "x_0, so the per-dimension KLs are SUMMED (nats per sample).",
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
)


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
            "over the "
            "batch AND the data dimensions, so its scale does not depend on the image size.",
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
)

SPECS: dict[str, Spec] = {"gaussian_kl": _KL, "vlb_term": _VLB, "l_simple": _SIMPLE}


def check_gaussian_kl(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``gaussian_kl(mean1, var1, mean2, var2) -> KL(N1 || N2)``, elementwise."""
    return check_spec("gaussian_kl", SPECS["gaussian_kl"], fn, display=display)


def check_vlb_term(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``vlb_term(eps_model, x0, t: (B,) in 2..T, betas, alpha_bar, noise) -> (B,)``.

    That is L_{t-1} with sigma² = beta, summed over data dimensions.
    """
    return check_spec("vlb_term", SPECS["vlb_term"], fn, display=display)


def check_l_simple(fn: Callable[..., Any], display: bool = True) -> CheckResult:
    """Check ``l_simple(eps_model, x0, t: (B,), alpha_bar, noise) -> scalar`` (a mean)."""
    return check_spec("l_simple", SPECS["l_simple"], fn, display=display)
