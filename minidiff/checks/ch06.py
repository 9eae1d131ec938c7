"""Checkers for exercise 6 (score matching).

- ``dsm_target(x_tilde: (B, D), x0: (B, D), sigma: (B,)) -> (B, D)``   ``-(x̃ - x0) / σ²``
- ``dsm_loss(score_model, x0: (B, D), sigma: (B,), noise: (B, D)) -> scalar``
  ``mean_b σ_b² · ½ ||s(x̃_b, σ_b) - target_b||²`` with ``x̃ = x0 + σ noise``
  (Song & Ermon 2019, Eq. 6)
- ``ism_loss(score_model, x: (B, 2)) -> scalar``   ``mean_b [tr ∇_x s(x_b) + ½ ||s(x_b)||²]``
  (Hyvärinen 2005)
- ``score_from_eps(eps: (B, ...), t: (B,) long, alpha_bar: (T+1,)) -> -eps / sqrt(1 - alpha_bar_t)``

References come from :mod:`minidiff.losses.score_matching` and :mod:`minidiff.diffusion`; each
:class:`Mistake` is a common wrong answer. ``SPECS`` lists, per checker, its cases, reference
and mistakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..diffusion import score_from_eps as _score_from_eps
from ..losses import dsm_loss as _dsm_loss
from ..losses import ism_loss as _ism_loss
from ..schedules import NoiseSchedule, cosine_schedule, linear_schedule
from ._core import Case, Checker, Mistake, Spec, Terms, specs_of, with_dtype
from ._probe import schedule_candidates, sigma_candidates
from ._spy import ModelCalls, Spy


def _sigmas(B: int, seed: int) -> torch.Tensor:
    # distinct levels on both sides of 1, so that σ vs σ² and the σ² weighting all matter
    g = torch.Generator().manual_seed(seed)
    s = torch.exp(torch.empty(B).uniform_(-2.5, 1.0, generator=g))
    s[0], s[-1] = 2.5, 0.15
    return s


class ToyNCScore(nn.Module):
    """A fixed, non-trivial noise-conditional 'model' ``s(x (B, D), σ (B,)) -> (B, D)``.

    Its weights are trainable, so a loss built on it must keep its gradient.
    """

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(0.5))
        self.w = nn.Parameter(torch.tensor(0.3))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, *([1] * (x.dim() - 1)))
        c, w = self.c.to(x.dtype), self.w.to(x.dtype)
        return -x / (c + s**2) + w * torch.sin(2 * x) / s


class ToyScore(nn.Module):
    """A fixed 2D 'model' ``s(x (B, 2)) -> (B, 2)`` with a non-symmetric, x-dependent Jacobian.

    Its weights are trainable: the trace term of the ISM loss must keep its gradient too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[1.0, 0.7], [-0.4, 0.5]]))
        self.w = nn.Parameter(torch.tensor([0.8, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A, w = self.A.to(x.dtype), self.w.to(x.dtype)
        return -x + w[0] * torch.tanh(x @ A) + w[1] * x[:, [1, 0]] ** 2


# --- dsm_target ----------------------------------------------------------------------------------


def _cases_target() -> list[Case]:
    cases: list[Case] = []
    for i, (B, D) in enumerate([(6, 2), (5, 3)]):
        g = torch.Generator().manual_seed(60 + i)
        x0, z = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
        sig = _sigmas(B, 70 + i)
        cases.append(((x0 + sig[:, None] * z, x0, sig), {}))
    return cases + with_dtype(cases, (0, 1, 2), torch.float64)[:1]


def _target(x_tilde: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return -(x_tilde - x0) / sigma[:, None] ** 2


_TARGET = Spec(
    _cases_target,
    _target,
    {
        "wrong_sign": Mistake(
            lambda xt, x0, s: (xt - x0) / s[:, None] ** 2,
            "wrong sign: the score of N(x0, σ²I) at x̃ points back *towards* x0, i.e. -(x̃ - x0)/σ².",
        ),
        "sigma_not_squared": Mistake(
            lambda xt, x0, s: -(xt - x0) / s[:, None],
            "you divided by σ; ∇ log N(x̃; x0, σ²I) = -(x̃ - x0)/σ² (the variance, not the std). "
            "Note -(x̃ - x0)/σ = -z, the ε-target, which is the score times σ.",
        ),
        "not_divided": Mistake(
            lambda xt, x0, s: -(xt - x0),
            "you forgot to divide by σ²: target = -(x̃ - x0)/σ².",
        ),
    },
    keep_dtype=True,
    terms=Terms({"x_tilde": 0, "x0": 1}, lambda case: sigma_candidates(case[0][2])),
    doc=(
        "Check ``dsm_target(x_tilde: (B, D), x0: (B, D), sigma: (B,)) -> -(x_tilde - x0)/sigma²``."
    ),
)
check_dsm_target = Checker("dsm_target", _TARGET)


# --- dsm_loss ------------------------------------------------------------------------------------


def _cases_loss() -> list[Case]:
    cases: list[Case] = []
    for i, (B, D) in enumerate([(8, 2), (6, 3)]):
        g = torch.Generator().manual_seed(80 + i)
        x0, z = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
        cases.append(((ToyNCScore(), x0, _sigmas(B, 90 + i), z), {}))
    return cases


def _ref_loss(
    model: Callable[..., torch.Tensor], x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    idx = torch.arange(x0.shape[0])
    return _dsm_loss(model, x0, sigma, sigma_idx=idx, noise=noise)


def _loss_variant(
    target_fn: Callable[..., torch.Tensor], weight: bool = True, half: float = 0.5
) -> Callable[..., Any]:
    def fn(
        model: Callable[..., torch.Tensor],
        x0: torch.Tensor,
        sigma: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        xt = x0 + sigma[:, None] * noise
        per = half * ((model(xt, sigma) - target_fn(xt, x0, sigma)) ** 2).sum(dim=1)
        return (sigma**2 * per if weight else per).mean()

    return fn


def _dsm_uses() -> dict[str, Callable[[Spy, Case], torch.Tensor]]:
    def per(spy: Spy, c: Case) -> torch.Tensor:
        _, x0, sigma, noise = c[0]
        return 0.5 * ((spy.outputs[0] + noise / sigma[:, None]) ** 2).sum(1)

    return {
        "you weighted each sample by σ; the weighting is w(σ) = σ², which makes every noise "
        "level count alike (σ² · ½||s − target||² = ½||σ s + z||²).": lambda spy, c: (
            c[0][2] * per(spy, c)
        ).mean(),
        "you averaged the squared error over the D coordinates; the loss sums it over them, "
        "½||s − target||², and averages over the batch.": lambda spy, c: (
            c[0][2] ** 2 * per(spy, c) / c[0][1].shape[1]
        ).mean(),
    }


_LOSS = Spec(
    _cases_loss,
    _ref_loss,
    {
        "no_weighting": Mistake(
            _loss_variant(_target, weight=False),
            "you forgot the weighting w(σ) = σ²: without it the small-σ levels (whose targets "
            "are ~1/σ) dominate the loss. Multiply each sample's ½||s - target||² by σ².",
        ),
        "wrong_sign": Mistake(
            _loss_variant(_TARGET.mistakes["wrong_sign"].fn),
            "the target has the wrong sign: it is -(x̃ - x0)/σ² = -noise/σ.",
        ),
        "sigma_not_squared": Mistake(
            _loss_variant(_TARGET.mistakes["sigma_not_squared"].fn),
            "the target divides by σ instead of σ²: target = -(x̃ - x0)/σ² = -noise/σ.",
        ),
        "no_half": Mistake(
            _loss_variant(_target, half=1.0),
            "missing the ½: the loss is σ²·½||s - target||² (sum over dimensions, mean over the "
            "batch).",
        ),
    },
    calls=ModelCalls(
        0,
        x_terms=Terms({"x0": 1, "the noise": 3}, lambda case: sigma_candidates(case[0][2])),
        t_arg=2,
        uses=_dsm_uses(),
        level=True,
    ),
    keep_dtype=True,
    doc="Check ``dsm_loss(score_model, x0: (B, D), sigma: (B,), noise: (B, D)) -> scalar``.",
)
check_dsm_loss = Checker("dsm_loss", _LOSS)


# --- ism_loss ------------------------------------------------------------------------------------


def _cases_ism() -> list[Case]:
    return [
        ((ToyScore(), torch.randn(B, 2, generator=torch.Generator().manual_seed(100 + B))), {})
        for B in (7, 16)
    ]


def _jac(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    s = model(x)
    rows = [torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0] for i in range(x.shape[1])]
    return s.detach(), torch.stack(rows, dim=1)  # J[b, i, j] = d s_i / d x_j


def _ism_variant(kind: str) -> Callable[..., Any]:
    def fn(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        s, J = _jac(model, x)
        sq = 0.5 * (s**2).sum(1)
        tr = torch.diagonal(J, dim1=1, dim2=2).sum(1)
        out = {
            "no_half": tr + 2 * sq,
            "trace_sign": -tr + sq,
            "no_trace": sq,
            "first_diag_only": J[:, 0, 0] + sq,
            "jacobian_sum": J.sum((1, 2)) + sq,
        }[kind]
        return out.mean()

    return fn


def _ism_uses() -> dict[str, Callable[[Spy, Case], torch.Tensor]]:
    def parts(spy: Spy, c: Case) -> tuple[torch.Tensor, torch.Tensor]:
        s, J = _jac(spy.inner, c[0][1])
        return torch.diagonal(J, dim1=1, dim2=2).sum(1), s

    def mean_dims(spy: Spy, c: Case) -> torch.Tensor:
        tr, s = parts(spy, c)
        return (tr + 0.5 * (s**2).mean(1)).mean()

    def norm(spy: Spy, c: Case) -> torch.Tensor:
        tr, s = parts(spy, c)
        return (tr + 0.5 * (s**2).sum(1).sqrt()).mean()

    return {
        "the norm term averages s² over the D coordinates; it is ½||s||², the sum of the "
        "squares.": mean_dims,
        "the norm term is ½||s||, not squared: ½||s||² = ½ Σ_i s_i².": norm,
    }


_ISM = Spec(
    _cases_ism,
    lambda m, x: _ism_loss(m, x),
    {
        "no_half": Mistake(_ism_variant("no_half"), "the norm term is ½||s||², not ||s||²."),
        "trace_sign": Mistake(
            _ism_variant("trace_sign"),
            "the trace enters with a + sign: integration by parts turns -E[sᵀ∇log p] into +E[tr "
            "∇s].",
        ),
        "no_trace": Mistake(
            _ism_variant("no_trace"),
            "you left out the trace term tr(∇_x s) = Σ_i ∂s_i/∂x_i; without it the minimiser is "
            "s = 0.",
        ),
        "first_diag_only": Mistake(
            _ism_variant("first_diag_only"),
            "you used only ∂s_1/∂x_1; the trace sums ∂s_i/∂x_i over every dimension i (one "
            "autograd call each).",
        ),
        "jacobian_sum": Mistake(
            _ism_variant("jacobian_sum"),
            "you summed the whole Jacobian: grad(s.sum(), x) gives Σ_i ∂s_i/∂x_j, which mixes in "
            "the off-diagonal entries. Take grad(s[:, i].sum(), x)[:, i] for each i and add "
            "those.",
        ),
    },
    grad_hint="The trace term must stay differentiable with respect to the model's parameters: "
    "pass create_graph=True to torch.autograd.grad (retain_graph=True is not enough).",
    calls=ModelCalls(0, uses=_ism_uses(), x_pos=99),
    keep_dtype=True,
    doc="Check ``ism_loss(score_model, x: (B, 2)) -> scalar`` (exact trace by autograd).",
)
check_ism_loss = Checker("ism_loss", _ISM)


# --- score_from_eps ------------------------------------------------------------------------------


def _cases_sfe() -> list[Case]:
    cases: list[Case] = []
    for i, (s, shape) in enumerate(
        zip(
            [linear_schedule(20, 0.01, 0.2), cosine_schedule(12)],
            [(6, 2), (4, 1, 2, 2)],
            strict=True,
        )
    ):
        g = torch.Generator().manual_seed(110 + i)
        eps = torch.randn(shape, generator=g)
        t = torch.randint(1, s.T + 1, (shape[0],), generator=g)
        t[0], t[-1] = 1, s.T
        cases.append(((eps, t, s.alpha_bar.clone()), {}))
    return cases + with_dtype(cases, (0,), torch.float64)[:1]


def _ab(alpha_bar: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return alpha_bar[t].to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _ref_sfe(eps: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    ab = alpha_bar.double()
    return _score_from_eps(eps, t, NoiseSchedule(1.0 - ab[1:] / ab[:-1]))


_SFE = Spec(
    _cases_sfe,
    _ref_sfe,
    {
        "no_sqrt": Mistake(
            lambda e, t, ab: -e / (1 - _ab(ab, t, e)),
            "you divided by 1 - ᾱ_t (the variance); divide by its square root, the noise std "
            "sqrt(1 - ᾱ_t).",
        ),
        "wrong_sign": Mistake(
            lambda e, t, ab: e / (1 - _ab(ab, t, e)).sqrt(),
            "wrong sign: the score points against the noise that was added, score = -eps / "
            "sqrt(1 - ᾱ_t).",
        ),
        "sqrt_alpha_bar": Mistake(
            lambda e, t, ab: -e / _ab(ab, t, e).sqrt(),
            "you divided by sqrt(ᾱ_t), the signal scale; the noise std is sqrt(1 - ᾱ_t).",
        ),
        "multiplied": Mistake(
            lambda e, t, ab: -e * (1 - _ab(ab, t, e)).sqrt(),
            "you multiplied by sqrt(1 - ᾱ_t); that is eps_from_score run backwards. score = -eps "
            "/ sqrt(1 - ᾱ_t).",
        ),
    },
    keep_dtype=True,
    terms=Terms({"eps": 0}, lambda case: schedule_candidates(case[0][2], case[0][1]), t_arg=1),
    t_arg=1,
    doc="Check ``score_from_eps(eps: (B, ...), t: (B,) long, alpha_bar: (T+1,)) -> (B, ...)``.",
)
check_score_from_eps = Checker("score_from_eps", _SFE)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
__all__ += ["ToyNCScore", "ToyScore"]
