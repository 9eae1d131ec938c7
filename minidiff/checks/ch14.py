"""Checkers for exercise 14 (diffusion conditioned on images): the inpainting replacement step,
RePaint's jump back up, and noise-conditioning augmentation at training and at sampling time.

The student writes

- ``replacement_step(x_t, t, eps, x_known, mask, schedule, known_noise, z) -> x_{t-1}``: the
  ancestral step (``sigma² = beta``) for the pixels where ``mask = 0``, and the known pixels
  noised to level ``t - 1`` with ``known_noise`` where ``mask = 1`` (level 0: ``x_known``);
- ``repaint_jump(x_s, s, t, schedule, noise) -> x_t``: ``q(x_t | x_s)`` for ``s < t``;
- ``augment_condition(x_cond, s, schedule, noise)``: ``sqrt(ab_s) x_cond + sqrt(1 - ab_s) noise``;
- ``augmented_eps(model, x_t, t, x_cond, s, schedule, noise)``: the SR model's prediction at
  sampling time, with the condition corrupted at level ``s`` and ``s`` passed as ``aug_level``.

References come from ``minidiff`` (:mod:`minidiff.samplers.inpainting`,
:mod:`minidiff.image_conditioning`); every function is called under ``torch.no_grad()``, as a
sampler calls it, in float32 and float64, with ``t``/``s`` as long tensors ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..image_conditioning import augment_condition as _augment
from ..samplers.ddpm import ddpm_step
from ..samplers.inpainting import renoise, replacement_step
from ..schedules import NoiseSchedule, cosine_schedule
from ._calls import under_no_grad
from ._core import Case, Checker, Mistake, Spec, specs_of

__all__ = [
    "check_replacement_step",
    "check_repaint_jump",
    "check_augment_condition",
    "check_augmented_eps",
    "TinyConditionalEps",
    "SPECS",
]

Fn = Callable[..., Any]
SCHEDULE = cosine_schedule(50)


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _ab(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return _col(schedule.alpha_bar[t], like)


def _mask() -> torch.Tensor:
    m = torch.ones(1, 1, 4, 4)
    m[..., 2:, :] = 0  # the bottom half is generated
    return m


# --- section 1: the replacement step -------------------------------------------------------------


def _cases_replacement() -> list[Case]:
    cases: list[Case] = []
    for i, dtype in enumerate((torch.float64, torch.float32)):
        g = torch.Generator().manual_seed(140 + i)
        B = 4
        x_t, eps, x_known, z, e = (
            torch.randn(B, 1, 4, 4, generator=g, dtype=dtype) for _ in range(5)
        )
        t = torch.tensor([1, 2, 17, 50]) if i == 0 else torch.tensor([30, 5, 2, 44])
        cases.append(((x_t, t, eps, x_known.clamp(-1, 1), _mask().to(dtype), SCHEDULE, e, z), {}))
    return cases


def _ref_replacement(x_t, t, eps, x_known, mask, schedule, known_noise, z):
    return replacement_step(x_t, t, eps, x_known, mask, schedule, noise=z, known_noise=known_noise)


def _replacement_with(
    known_level: Callable[[torch.Tensor], torch.Tensor] | None,
    invert: bool = False,
    fresh_noise: bool = True,
    eps_sign: float = 1.0,
    variance: str = "beta",
) -> Fn:
    def fn(x_t, t, eps, x_known, mask, schedule, e, z):
        noise = z if fresh_noise else torch.zeros_like(z)
        unknown = ddpm_step(x_t, t, eps_sign * eps, schedule, noise=noise, variance=variance)
        if known_level is None:
            known = x_known
        else:
            ab = _ab(schedule, known_level(t), x_t)
            known = ab.sqrt() * x_known + (1 - ab).sqrt() * e
        m = 1 - mask if invert else mask
        return m * known + (1 - m) * unknown

    return fn


_REPLACEMENT = Spec(
    _cases_replacement,
    _ref_replacement,
    {
        "known_not_noised": Mistake(
            _replacement_with(None),
            "you pasted the known pixels as they are (clean) at every step. The state x_{t-1} is "
            "noisy everywhere, so its known part must be noised to the same level: "
            "sqrt(ab_{t-1}) x_known + sqrt(1 - ab_{t-1}) e (only at t - 1 = 0 is it x_known "
            "itself). Clean pixels next to noisy ones are a state the model never saw.",
        ),
        "known_noised_at_t": Mistake(
            _replacement_with(lambda t: t),
            "you noised the known pixels to level t; the step produces x_{t-1}, so they must be "
            "at level t - 1: sqrt(ab_{t-1}) x_known + sqrt(1 - ab_{t-1}) e (schedule.alpha_bar"
            "[t - 1]; at t = 1 that is x_known exactly).",
        ),
        "mask_inverted": Mistake(
            _replacement_with(lambda t: t - 1, invert=True),
            "the mask is inverted: mask = 1 marks the KNOWN pixels, which take the noised "
            "x_known; the model's step fills the pixels where mask = 0: "
            "mask * known + (1 - mask) * unknown.",
        ),
        "no_fresh_noise": Mistake(
            _replacement_with(lambda t: t - 1, fresh_noise=False),
            "the generated pixels miss the ancestral step's fresh noise: where mask = 0 the step "
            "is DDPM's, mu_theta(x_t, t) + sigma_t z (z = 0 only at t = 1). Without it the "
            "samples are the posterior means, too smooth.",
        ),
        "eps_sign": Mistake(
            _replacement_with(lambda t: t - 1, eps_sign=-1.0),
            "the term with eps has the wrong sign: the DDPM mean is (x_t - beta_t / "
            "sqrt(1 - ab_t) eps) / sqrt(alpha_t), which removes the predicted noise.",
        ),
        "beta_tilde_variance": Mistake(
            _replacement_with(lambda t: t - 1, variance="beta_tilde"),
            "the generated pixels use the posterior variance beta_tilde_t; this step (and "
            "inpaint_sample) takes sigma_t² = beta_t: ddpm_step(x_t, t, eps, schedule, "
            "noise=z) with its default variance.",
        ),
    },
    wrap=under_no_grad,  # samplers call these without gradients
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="Check ``fn(x_t, t, eps, x_known, mask, schedule, known_noise, z) -> x_{t-1}``, the naive "
    "inpainting step (ancestral step where ``mask = 0``, known pixels at level ``t - 1``).",
)


# --- section 2: RePaint's jump ------------------------------------------------------------------


def _cases_jump() -> list[Case]:
    cases: list[Case] = []
    for i, (dtype, s, t) in enumerate(
        ((torch.float64, 10, 15), (torch.float32, 3, 13), (torch.float64, 0, 5))
    ):
        g = torch.Generator().manual_seed(150 + i)
        x_s = torch.randn(5, 1, 4, 4, generator=g, dtype=dtype)
        cases.append(((x_s, s, t, SCHEDULE, torch.randn(5, 1, 4, 4, generator=g, dtype=dtype)), {}))
    return cases


def _ref_jump(x_s, s, t, schedule, noise):
    return renoise(x_s, s, t, schedule, noise=noise)


def _jump_with(coef: Callable[[NoiseSchedule, int, int], tuple[float, float]]) -> Fn:
    def fn(x_s, s, t, schedule, noise):
        a, b = coef(schedule, s, t)
        return a * x_s + b * noise

    return fn


def _from_x0(sched: NoiseSchedule, s: int, t: int) -> tuple[float, float]:
    ab = float(sched.alpha_bar[t])
    return ab**0.5, (1 - ab) ** 0.5


def _one_step(sched: NoiseSchedule, s: int, t: int) -> tuple[float, float]:
    return float(sched.alphas[t]) ** 0.5, float(sched.betas[t]) ** 0.5


def _std_difference(sched: NoiseSchedule, s: int, t: int) -> tuple[float, float]:
    ratio = float(sched.alpha_bar[t] / sched.alpha_bar[s])
    return ratio**0.5, float(1 - sched.alpha_bar[t]) ** 0.5 - float(1 - sched.alpha_bar[s]) ** 0.5


def _product_shifted(sched: NoiseSchedule, s: int, t: int) -> tuple[float, float]:
    # prod(alphas[s:t]), one index early: ab_{t-1} / ab_{s-1} (alphas[0] = 1 at s = 0)
    ratio = float(sched.alpha_bar[t - 1] / sched.alpha_bar[max(s - 1, 0)])
    return ratio**0.5, (1 - ratio) ** 0.5


_JUMP = Spec(
    _cases_jump,
    _ref_jump,
    {
        "from_x0": Mistake(
            _jump_with(_from_x0),
            "you used q(x_t | x_0)'s coefficients sqrt(ab_t), sqrt(1 - ab_t) as if x_s were "
            "clean; x_s is already at level s, so q(x_t | x_s) has mean sqrt(ab_t / ab_s) x_s and "
            "variance 1 - ab_t / ab_s.",
        ),
        "one_step_only": Mistake(
            _jump_with(_one_step),
            "you took one forward step q(x_t | x_{t-1}) (sqrt(alpha_t), sqrt(beta_t)); the jump "
            "goes from s to t in one draw: sqrt(ab_t / ab_s) x_s + sqrt(1 - ab_t / ab_s) noise.",
        ),
        "std_difference": Mistake(
            _jump_with(_std_difference),
            "you subtracted standard deviations; variances add: the noise has variance "
            "1 - ab_t / ab_s, so its scale is sqrt(1 - ab_t / ab_s).",
        ),
        "product_off_by_one": Mistake(
            _jump_with(_product_shifted),
            "your product of alphas is one index early (alphas[s:t], i.e. ab_{t-1} / ab_{s-1}): "
            "the steps from s to t are s + 1 .. t, so ab_t / ab_s = prod(alphas[s + 1 : t + 1]).",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="Check ``fn(x_s, s, t, schedule, noise) -> x_t ~ q(x_t | x_s)``, RePaint's jump up.",
)


# --- section 3: noise-conditioning augmentation --------------------------------------------------


def _cases_augment() -> list[Case]:
    cases: list[Case] = []
    for i, dtype in enumerate((torch.float64, torch.float32)):
        g = torch.Generator().manual_seed(160 + i)
        x = torch.rand(4, 1, 4, 4, generator=g, dtype=dtype) * 2 - 1
        s = torch.tensor([0, 3, 12, 40]) if i == 0 else torch.tensor([7, 0, 25, 1])
        cases.append(((x, s, SCHEDULE, torch.randn(4, 1, 4, 4, generator=g, dtype=dtype)), {}))
    return cases


def _ref_augment(x_cond, s, schedule, noise):
    return _augment(x_cond, s, schedule, noise=noise)


def _augment_with(level: Callable[[torch.Tensor], torch.Tensor], sqrt: bool = True) -> Fn:
    def fn(x_cond, s, schedule, noise):
        ab = _ab(schedule, level(s), x_cond)
        if not sqrt:
            return ab * x_cond + (1 - ab) * noise
        return ab.sqrt() * x_cond + (1 - ab).sqrt() * noise

    return fn


_AUGMENT = Spec(
    _cases_augment,
    _ref_augment,
    {
        "level_off_by_one": Mistake(
            _augment_with(lambda s: (s + 1).clamp(max=SCHEDULE.T)),
            "you corrupted at level s + 1: level s uses alpha_bar[s], and level 0 must leave the "
            "condition untouched (alpha_bar[0] = 1).",
        ),
        "level_minus_one": Mistake(
            _augment_with(lambda s: s - 1),  # alpha_bar[s - 1]: level 0 wraps round to ab_T
            "you corrupted at level s - 1: level s uses alpha_bar[s] itself (alpha_bar[0] = 1 "
            "is level 0, the clean condition), as q_sample does for x_t.",
        ),
        "no_sqrt": Mistake(
            _augment_with(lambda s: s, sqrt=False),
            "the coefficients are square roots: sqrt(ab_s) x_cond + sqrt(1 - ab_s) noise (the "
            "forward process q_sample, applied to the condition).",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="Check ``fn(x_cond, s, schedule, noise)``, noise-conditioning augmentation at level ``s``.",
)


class TinyConditionalEps(nn.Module):
    """A deterministic ``model(x_t, t, x_cond=..., aug_level=...)`` that depends on all four."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, *, x_cond: torch.Tensor, aug_level: torch.Tensor
    ) -> torch.Tensor:
        w = self.w.to(x_t.dtype)
        tt, ss = _col(t.to(x_t.dtype) / 50, x_t), _col(aug_level.to(x_t.dtype) / 50, x_t)
        return w[0] * x_t + (w[1] + tt) * x_cond.tanh() + w[2] * ss * x_t.sin()


def _cases_aug_eps() -> list[Case]:
    cases: list[Case] = []
    for i, dtype in enumerate((torch.float64, torch.float32)):
        g = torch.Generator().manual_seed(170 + i)
        model = TinyConditionalEps(seed=i).to(dtype)
        x_t = torch.randn(4, 1, 4, 4, generator=g, dtype=dtype)
        cond = torch.rand(4, 1, 4, 4, generator=g, dtype=dtype) * 2 - 1
        t = torch.tensor([50, 31, 9, 2])
        s = torch.full((4,), 10 + 5 * i)
        noise = torch.randn(4, 1, 4, 4, generator=g, dtype=dtype)
        cases.append(((model, x_t, t, cond, s, SCHEDULE, noise), {}))
    return cases


def _ref_aug_eps(model, x_t, t, x_cond, s, schedule, noise):
    cond = _augment(x_cond, s, schedule, noise=noise)
    return model(x_t, t, x_cond=cond, aug_level=s.to(x_t.dtype))


def _aug_eps_with(corrupt_at: str, told: str) -> Fn:
    def fn(model, x_t, t, x_cond, s, schedule, noise):
        level = {"s": s, "t": t, "0": torch.zeros_like(s)}
        cond = x_cond
        if corrupt_at != "none":
            ab = _ab(schedule, level[corrupt_at], x_cond)
            cond = ab.sqrt() * x_cond + (1 - ab).sqrt() * noise
        return model(x_t, t, x_cond=cond, aug_level=level[told].to(x_t.dtype))

    return fn


_AUG_EPS = Spec(
    _cases_aug_eps,
    _ref_aug_eps,
    {
        "level_not_passed": Mistake(
            _aug_eps_with("s", "0"),
            "you corrupted the condition at level s but told the network aug_level = 0: it then "
            "trusts the noisy condition as if it were clean. Pass the same level s that you "
            "corrupted with.",
        ),
        "corrupted_at_t": Mistake(
            _aug_eps_with("t", "s"),
            "you corrupted the condition at the sampling timestep t; the augmentation level s is "
            "a separate, fixed choice for the whole sampling run (corrupt once at s, pass s).",
        ),
        "not_corrupted": Mistake(
            _aug_eps_with("none", "s"),
            "you passed aug_level = s but fed the clean condition: the network expects a "
            "condition corrupted at level s (sqrt(ab_s) x_cond + sqrt(1 - ab_s) noise).",
        ),
        "told_t": Mistake(
            _aug_eps_with("s", "t"),
            "you corrupted the condition at level s but told the network aug_level = t, the "
            "sampling timestep; aug_level is the condition's own noise level: pass s.",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    rtol=1e-6,
    atol=1e-6,
    doc="Check ``fn(model, x_t, t, x_cond, s, schedule, noise) -> eps``, the SR model's call at "
    "sampling time (condition corrupted at ``s``, ``aug_level = s``).",
)

check_replacement_step = Checker("replacement_step", _REPLACEMENT)
check_repaint_jump = Checker("repaint_jump", _JUMP)
check_augment_condition = Checker("augment_condition", _AUGMENT)
check_augmented_eps = Checker("augmented_eps", _AUG_EPS)

SPECS: dict[str, Spec] = specs_of(globals())
