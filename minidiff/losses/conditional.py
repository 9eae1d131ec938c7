"""Objectives of the conditional models of chapter 9 (guidance).

    conditional eps:  E || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t, y') ||²,
                      y' = ∅ with probability p_uncond (label dropout, Ho & Salimans 2021)
                                                                       -> conditional_eps_loss
    noisy classifier: -E log f_phi(y | x_t, t),  x_t ~ q(x_t | x_0)   -> noisy_classifier_loss
                      (Dhariwal & Nichol 2021, for classifier guidance)

The networks they train are :class:`minidiff.nn.ConditionalTimeMLP` (labels ``0..C-1``, the null
label ∅ = ``C``) and :class:`minidiff.nn.NoisyClassifier`. Shapes: ``x0: (B, D)``, ``y: (B,)``.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from .._validation import (
    Check,
    FloatTensor,
    Int,
    Number,
    Rng,
    Timesteps,
    check_labels,
    checked,
    describe,
)
from ..diffusion import q_sample
from ..guidance import unconditional_message
from ..schedules import NoiseSchedule
from ..tensors import noise_like, uniform
from .simple import sample_timesteps

__all__ = ["drop_labels", "conditional_eps_loss", "noisy_classifier_loss"]

_PROBABILITY = Number(low=0.0, high=1.0, low_open=False, high_open=False)


def _class_model(model: Any, name: str) -> Any:
    """A network with an int ``num_classes >= 2`` (a conditional model or a classifier)."""
    if getattr(model, "num_classes", None) == 0 and not isinstance(model.num_classes, bool):
        raise ValueError(unconditional_message(name))
    if not isinstance(getattr(model, "num_classes", None), int) or model.num_classes < 2:
        raise TypeError(
            f"{name} must be a model with a num_classes attribute (e.g. ConditionalTimeMLP or "
            f"NoisyClassifier), got {describe(model)}"
        )
    return model


def _labels_of(y: Any, name: str, model: Any, x0: Tensor) -> Tensor:
    return check_labels(y, x0.shape[0], model.num_classes, name=name)


def _labels_below(y: Any, name: str, null_label: int) -> Tensor:
    batch = y.shape[0] if isinstance(y, Tensor) and y.dim() == 1 else 1
    return check_labels(y, batch, null_label, name=name)


@checked(
    y=Check(_labels_below, uses=("null_label",)),
    p_uncond=_PROBABILITY,
    null_label=Int(minimum=1),
    generator=Rng,
)
def drop_labels(
    y: Tensor, p_uncond: float, null_label: int, generator: torch.Generator | None = None
) -> Tensor:
    """Label dropout: replace each label by ``null_label`` with probability ``p_uncond``.

    Draws ``u = rand(B)`` from ``generator`` and drops where ``u < p_uncond``. Used in training
    only: at sampling time the guidance wrapper chooses the conditional and null labels itself.
    """
    u = uniform((y.shape[0],), generator=generator, device=y.device)
    return torch.where(u < p_uncond, torch.full_like(y, null_label), y)


@checked(
    model=Check(_class_model),
    x0=FloatTensor(finite=True),
    y=Check(_labels_of, uses=("model", "x0")),
    schedule=NoiseSchedule,
    p_uncond=_PROBABILITY,
    generator=Rng,
)
def conditional_eps_loss(
    model: nn.Module,
    x0: Tensor,
    y: Tensor,
    schedule: NoiseSchedule,
    *,
    p_uncond: float = 0.2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``mean ||eps - eps_theta(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t, y')||²`` with label dropout.

    Random numbers in this order: ``t ~ U{1..T}``, ``eps ~ N(0, I)``, the dropout draw of
    :func:`drop_labels` (``y' = ∅`` where ``u < p_uncond``). ``x0: (B, D)``, ``y: (B,)`` long.
    ``p_uncond = 0`` trains a purely conditional model, which has no ∅ to guide with.
    """
    C = cast(int, model.num_classes)  # an int >= 2, checked by @checked
    t = sample_timesteps.unchecked(x0.shape[0], schedule.T, generator, x0.device)
    noise = noise_like(x0, generator)
    y_in = drop_labels.unchecked(y.to(x0.device), p_uncond, C, generator)
    x_t = q_sample.unchecked(x0, t, schedule, noise)
    return ((noise - model(x_t, t, y_in)) ** 2).mean()


@checked(
    classifier=Check(_class_model),
    x0=FloatTensor(finite=True),
    y=Check(_labels_of, uses=("classifier", "x0")),
    schedule=NoiseSchedule,
    generator=Rng,
    t=Timesteps(of="x0", optional=True),
)
def noisy_classifier_loss(
    classifier: nn.Module,
    x0: Tensor,
    y: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
) -> Tensor:
    """Cross-entropy ``-mean log f_phi(y | x_t, t)`` on ``x_t ~ q(x_t | x_0)``.

    ``t ~ U{1..T}`` is drawn first (also when ``t`` is given, so that the noise that follows is
    the same), then ``eps``.
    """
    drawn = sample_timesteps.unchecked(x0.shape[0], schedule.T, generator, x0.device)
    noise = noise_like(x0, generator)
    tt = drawn if t is None else t
    x_t = q_sample.unchecked(x0, tt, schedule, noise)
    return nn.functional.cross_entropy(classifier(x_t, tt), y.to(x0.device))
