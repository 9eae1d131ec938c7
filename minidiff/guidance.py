"""Guidance: classifier guidance and classifier-free guidance as wrappers around models.

Bayes' rule for scores, ``∇ log p_t(x | y) = ∇ log p_t(x) + ∇ log p_t(y | x)``, and
``score = -eps / sqrt(1 - alpha_bar_t)`` give the two guided noise predictions of the lectures:

* **classifier guidance** (Dhariwal & Nichol 2021, Algorithm 2) with a classifier
  ``f_phi(y | x_t, t)`` trained on *noised* data::

      eps_hat = eps_theta(x_t, t) - sqrt(1 - alpha_bar_t) · w · ∇_x log f_phi(y | x_t, t)

  i.e. the score ``∇ log p_t(x) + w ∇ log f_phi(y | x)``; ``w = 1`` with the exact classifier is
  the exact conditional score.

* **classifier-free guidance** (Ho & Salimans 2021) with one network ``eps_theta(x_t, t, y)``
  trained with label dropout, so that ``eps_theta(x_t, t, ∅)`` is the unconditional model::

      eps_tilde = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, ∅)
                = eps_theta(x_t, t, y) + w (eps_theta(x_t, t, y) - eps_theta(x_t, t, ∅))

  i.e. the score ``(1 + w) ∇ log p_t(x | y) - w ∇ log p_t(x)``; ``w = 0`` is the conditional model.

Two conventions for the weight: the lectures' ``w`` (also written ``s``), where ``w = 0`` means no
guidance beyond conditioning, and the *guidance scale* ``gamma = 1 + w`` of ``diffusers``
(``guidance_scale``, where ``eps_u + gamma (eps_c - eps_u)``), where 1 means none. And classifier
guidance with weight ``w`` has the score ``∇ log p_t(x) + w (∇ log p_t(x | y) - ∇ log p_t(x))``,
which is classifier-free guidance with weight ``w - 1`` when both use exact models.

Every wrapper returns an ``eps_model(x_t (B, D), t (B,) long)`` (or a ``score_fn(x, t)``), so every
sampler of the registry takes it unchanged. Labels are ``0..C-1``; the null label ∅ is ``C``. The
number of classes ``C`` is read from the model (its ``num_classes``, as
:class:`~minidiff.nn.ConditionalTimeMLP` and :class:`~minidiff.nn.NoisyClassifier` have); give
``num_classes`` for a model without one. A ``num_classes`` that disagrees with the model's is an
error: with too small a ``C`` the "null" label fed to the model would be one of its real classes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._validation import (
    Check,
    FloatTensor,
    Function,
    check_labels,
    check_number,
    check_positive_int,
    checked,
)
from .diffusion import EpsModel
from .schedules import NoiseSchedule, check_timesteps

__all__ = [
    "ConditionalModel",
    "Classifier",
    "guidance_scale",
    "cfg_combine",
    "classifier_free_guidance",
    "classifier_log_prob_grad",
    "classifier_guidance",
    "classifier_guidance_score",
]

ConditionalModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``model(x_t (B, D), t (B,), y (B,) long) -> (B, D)``; ``y = num_classes`` is the null label ∅."""
Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``classifier(x_t (B, D), t (B,)) -> logits (B, C)`` of a time-conditioned (noisy) classifier."""


_CFG_ZERO = "0 = the conditional model, no extra guidance"
_CG_ZERO = "0 = the unconditional model, no guidance; 1 = the conditional model"


def check_guidance_weight(w: object, name: str = "w", zero: str = _CFG_ZERO) -> float:
    """Return ``w`` as a float if it is a finite number ``>= 0``, else raise naming ``name``.
    NumPy scalars and one-element tensors count. ``zero`` is what the message says the weight
    means, by default that of classifier-free guidance (0 = the conditional model)."""
    try:
        return check_number(w, name, low=0.0, low_open=False)
    except ValueError:
        raise ValueError(
            f"{name} must be a finite guidance weight >= 0 ({zero}), got {w!r}"
        ) from None


def _classifier_guidance_weight(w: object, name: str) -> float:
    return check_guidance_weight(w, name, _CG_ZERO)


W = Check(check_guidance_weight)
"""The ``@checked`` spec of a classifier-free guidance weight ``w`` (0: the conditional model)."""
W_CG = Check(_classifier_guidance_weight)
"""The ``@checked`` spec of a classifier guidance weight ``w`` (0: the unconditional model)."""


def unconditional_message(name: str) -> str:
    """What to say of a model built without classes (``num_classes == 0``, e.g. ``UNet("tiny")``)
    where a conditional one is needed."""
    return (
        f"{name} is unconditional (num_classes=0): build it with UNetConfig(num_classes=K) "
        "(K >= 2 classes) and train it with labels"
    )


def _num_classes(model: object, num_classes: object, name: str = "model") -> int:
    """``C`` from ``model.num_classes`` and/or the ``num_classes`` argument (they must agree):
    an int ``>= 2`` (another type is a ``TypeError``, an int below 2 a ``ValueError``)."""
    own = getattr(model, "num_classes", None)
    if own == 0 and not isinstance(own, bool):
        raise ValueError(unconditional_message(name))
    if num_classes is None:
        if own is None:
            raise TypeError(
                f"num_classes is needed: {name} has no num_classes attribute to read it from"
            )
        num_classes = check_positive_int(own, f"{name}.num_classes", minimum=2)
    else:
        num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    if own is not None and own != num_classes:
        raise ValueError(
            f"num_classes={num_classes} disagrees with the {own} classes of {name} "
            f"({name}.num_classes = {own}; its null label ∅ is {own}); leave num_classes out"
        )
    return num_classes


def _check_y(y: object, C: int) -> None:
    # validate the labels once, when the wrapper is built, before any sampling work
    if isinstance(y, torch.Tensor) and y.dim() != 1:
        raise ValueError(f"y must be an int or a long tensor (B,), got shape {tuple(y.shape)}")
    check_labels(y, y.shape[0] if isinstance(y, torch.Tensor) else 1, C)


def _labels(y: int | torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """The labels checked by :func:`_check_y` as a long ``(B,)`` tensor (no host read)."""
    if isinstance(y, int):
        return torch.full((x_t.shape[0],), y, dtype=torch.long, device=x_t.device)
    if y.shape[0] != x_t.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for a batch of {x_t.shape[0]} samples")
    return y.long().to(x_t.device)


@checked(w=W)
def guidance_scale(w: float) -> float:
    """The ``diffusers`` guidance scale ``gamma = 1 + w`` of the lectures' weight ``w``."""
    return 1.0 + w


@checked(cond=FloatTensor(finite=True), uncond=FloatTensor(like="cond", finite=True), w=W)
def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """``(1 + w) cond - w uncond`` for ε predictions or scores alike (the combination is linear).

    ``cond, uncond: (B, ...)`` floating, finite (one host read, skipped inside a sampler's loop),
    ``w`` a finite number ``>= 0``.
    """
    return cond + w * (cond - uncond)


@checked(model=Function("(x_t, t, y) -> eps"), w=W)
def classifier_free_guidance(
    model: ConditionalModel, y: int | torch.Tensor, w: float, *, num_classes: int | None = None
) -> EpsModel:
    """Classifier-free guidance: ``eps_model(x_t, t) = (1 + w) eps(x_t, t, y) - w eps(x_t, t, ∅)``.

    Args:
        model: conditional ``model(x_t, t, y)`` trained with label dropout; ``∅ = num_classes``.
        y: the class to generate, an int or a long tensor ``(B,)`` (one per sample).
        w: guidance weight ``>= 0``; 0 returns the conditional model (one call per step),
            otherwise conditional and unconditional rows go through the model in one batch.
        num_classes: ``C``, the number of real classes; read from ``model.num_classes`` when
            left out (required for a model without it; an error when they disagree).

    Works unchanged for a conditional *score* model ``score(x, t, y)`` with continuous ``t``.
    """
    C = _num_classes(model, num_classes)
    _check_y(y, C)

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        yy = _labels(y, x_t)
        if w == 0:
            return model(x_t, t, yy)
        both = model(
            torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([yy, torch.full_like(yy, C)])
        )
        cond, uncond = both.chunk(2)
        return cfg_combine(cond, uncond, w)

    return eps


@checked(classifier=Function("(x_t, t) -> logits"), x_t=FloatTensor())
def classifier_log_prob_grad(
    classifier: Classifier,
    x_t: torch.Tensor,
    t: torch.Tensor,
    y: int | torch.Tensor,
    *,
    num_classes: int | None = None,
) -> torch.Tensor:
    """``∇_x log f(y | x_t, t)`` with ``log f = log_softmax(classifier(x_t, t))``; shape of ``x_t``.

    Autograd runs even inside a sampler's ``torch.no_grad()``. Raises ``ValueError`` if the
    classifier does not return logits ``(B, num_classes)``; ``num_classes`` defaults to
    ``classifier.num_classes``.
    """
    C = _num_classes(classifier, num_classes, "classifier")
    return _log_prob_grad(classifier, x_t, t, check_labels(y, x_t.shape[0], C).to(x_t.device), C)


def _log_prob_grad(
    classifier: Classifier, x_t: torch.Tensor, t: torch.Tensor, yy: torch.Tensor, C: int
) -> torch.Tensor:
    """:func:`classifier_log_prob_grad` for checked labels ``yy: (B,)`` (the wrappers' step)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        logits = classifier(x, t)
        if (
            not isinstance(logits, torch.Tensor)
            or logits.dim() != 2
            or logits.shape[0] != x_t.shape[0]
        ):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"classifier must return logits of shape ({x_t.shape[0]}, {C}), got {got}"
            )
        if logits.shape[1] != C:
            raise ValueError(
                f"classifier returned {logits.shape[1]} classes but num_classes={C}: "
                "guide with a classifier trained on the same classes"
            )
        log_p = torch.log_softmax(logits, dim=1).gather(1, yy[:, None]).sum()
        (grad,) = torch.autograd.grad(log_p, x)
    return grad.detach()


@checked(
    eps_model=Function("(x_t, t) -> eps"),
    classifier=Function("(x_t, t) -> logits"),
    w=W_CG,
    schedule=NoiseSchedule,
)
def classifier_guidance(
    eps_model: EpsModel,
    classifier: Classifier,
    y: int | torch.Tensor,
    w: float,
    schedule: NoiseSchedule,
    *,
    num_classes: int | None = None,
) -> EpsModel:
    """Classifier guidance: ``eps_model(x_t, t) = eps - sqrt(1 - ab_t) w ∇ log f(y | x_t, t)``.

    ``eps_model(x_t, t)`` is the unconditional model, ``classifier(x_t, t)`` a noisy classifier
    returning logits ``(B, C)``, ``y`` an int or ``(B,)`` long, ``w >= 0``; ``num_classes``
    defaults to ``classifier.num_classes``.
    """
    C = _num_classes(classifier, num_classes, "classifier")
    _check_y(y, C)

    first_call = [True]

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = check_timesteps(t, x_t.shape[0], schedule.T)
        if first_call[0]:  # inside a sampler the range is not read: once, against a schedule
            first_call[0] = False  # built for another T (a sampler starts at its own T)
            if tt.numel() and int(tt.max()) > schedule.T:
                raise ValueError(
                    f"t={int(tt.max())} lies beyond T={schedule.T} of the schedule given to "
                    "classifier_guidance: build it with the sampler's schedule"
                )
        out = eps_model(x_t, t)
        if w == 0:
            return out
        grad = _log_prob_grad(classifier, x_t, t, _labels(y, x_t), C)
        sigma = schedule.gather(schedule.sqrt_one_minus_alpha_bar, tt, x_t.dim(), like=x_t)
        return out - sigma * w * grad

    return eps


@checked(score_fn=Function("(x, t) -> score"), classifier=Function("(x_t, t) -> logits"), w=W_CG)
def classifier_guidance_score(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    classifier: Classifier,
    y: int | torch.Tensor,
    w: float,
    *,
    num_classes: int | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Classifier guidance in score form: ``score(x, t) + w ∇ log f(y | x, t)``.

    For any time variable, the SDE samplers' continuous ``t`` included.
    """
    C = _num_classes(classifier, num_classes, "classifier")
    _check_y(y, C)

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = score_fn(x, t)
        return out if w == 0 else out + w * _log_prob_grad(classifier, x, t, _labels(y, x), C)

    return score
