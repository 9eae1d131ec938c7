"""Conditional networks for guidance (chapter 9) and their training objectives.

- :class:`ConditionalTimeMLP` ``eps_theta(x_t, t, y)``: the time MLP of chapter 4 with a class
  embedding added to the time embedding; the extra label ``num_classes`` is the null label ∅, so
  one network is both the conditional and the unconditional model (Ho & Salimans 2021).
- :class:`NoisyClassifier` ``f_phi(y | x_t, t)``: a time-conditioned classifier trained on noised
  data, for classifier guidance (Dhariwal & Nichol 2021).
- :func:`conditional_eps_loss`: ``E ||eps - eps_theta(x_t, t, y')||²`` with label dropout
  (``y' = ∅`` with probability ``p_uncond``); :func:`noisy_classifier_loss`: cross-entropy of
  ``f_phi(y | x_t, t)`` on ``x_t ~ q(x_t | x_0)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.labelled import check_labels
from ..diffusion import q_sample
from ..losses import sample_timesteps
from ..schedules import NoiseSchedule, check_timesteps
from ..tensors import noise_like
from .mlp import TimeMLP

__all__ = [
    "ConditionalTimeMLP",
    "NoisyClassifier",
    "conditional_eps_loss",
    "noisy_classifier_loss",
    "drop_labels",
]


def _check_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


class ConditionalTimeMLP(TimeMLP):
    """``eps_theta(x (B, D), t (B,), y (B,) long) -> (B, D)`` with labels ``0..C-1`` and ∅ = ``C``.

    The FiLM conditioning of :class:`TimeMLP` receives ``MLP(emb(t) + E[y])`` with a learned
    class embedding ``E`` of ``C + 1`` rows (the last one is ∅). Other arguments as for ``TimeMLP``.
    """

    def __init__(self, num_classes: int, data_dim: int = 2, **kwargs: object) -> None:
        super().__init__(data_dim, **kwargs)  # type: ignore[arg-type]
        self.num_classes = _check_classes(num_classes)
        self.label_embedding = nn.Embedding(self.num_classes + 1, self.time_dim)
        nn.init.normal_(self.label_embedding.weight, std=0.5)

    @property
    def null_label(self) -> int:
        """The label ∅ of the unconditional model: ``num_classes``."""
        return self.num_classes

    def _cond_film(self, t: Tensor, y: Tensor) -> Tensor:
        return self._film(t, self.label_embedding(y))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict the noise; ``y=None`` (or the null label) is the unconditional model."""
        self._check_inputs(x, t)
        yy = torch.full_like(t, self.null_label, dtype=torch.long) if y is None else y
        yy = check_labels(yy, x.shape[0], self.num_classes, allow_null=True).to(x.device)
        if self.training and torch.is_grad_enabled():
            film = self._cond_film(t, yy)  # training: a fresh (t, y) per row, nothing to share
        else:
            # sampling: one conditioning vector per distinct (t, y) pair (one or two of them)
            key = t.long() * (self.num_classes + 1) + yy
            k_unique, inverse = torch.unique(key, return_inverse=True)
            film = self._cond_film(
                k_unique // (self.num_classes + 1), k_unique % (self.num_classes + 1)
            )
            if k_unique.numel() > 1:
                film = film[inverse]
        return self._trunk(x, film)


class NoisyClassifier(TimeMLP):
    """A time-conditioned classifier ``f_phi(x_t (B, D), t (B,)) -> logits (B, C)``.

    The :class:`TimeMLP` body with a ``C``-way output layer (zero-initialised: uniform at first).
    """

    def __init__(self, num_classes: int, data_dim: int = 2, **kwargs: object) -> None:
        super().__init__(data_dim, **kwargs)  # type: ignore[arg-type]
        self.num_classes = _check_classes(num_classes)
        self.output = nn.Linear(self.hidden, self.num_classes)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)


def drop_labels(
    y: Tensor, p_uncond: float, null_label: int, generator: torch.Generator | None = None
) -> Tensor:
    """Label dropout: replace each label by ``null_label`` with probability ``p_uncond``.

    Draws ``u = rand(B)`` from ``generator`` and drops where ``u < p_uncond``. Used in training
    only: at sampling time the guidance wrapper chooses the conditional and null labels itself.
    """
    if (
        not isinstance(p_uncond, (int, float))
        or isinstance(p_uncond, bool)
        or not 0 <= p_uncond <= 1
    ):
        raise ValueError(f"p_uncond must be a probability in [0, 1], got {p_uncond!r}")
    yy = check_labels(y, y.shape[0] if isinstance(y, Tensor) and y.dim() == 1 else 1, null_label)
    gen_device = generator.device if generator is not None else yy.device
    u = torch.rand(yy.shape[0], generator=generator, device=gen_device).to(yy.device)
    return torch.where(u < p_uncond, torch.full_like(yy, null_label), yy)


def _draw_t_noise(
    x0: Tensor, schedule: NoiseSchedule, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """``t ~ U{1..T}`` ``(B,)``, then ``eps ~ N(0, I)`` shaped like ``x0``, both on its device."""
    t = sample_timesteps(x0.shape[0], schedule.T, generator, x0.device)
    return t, noise_like(x0, generator)


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
    C = int(getattr(model, "num_classes", 0))
    if C < 2:
        raise TypeError(
            "model must be a conditional model with a num_classes attribute "
            "(e.g. ConditionalTimeMLP)"
        )
    check_labels(y, x0.shape[0], C)
    t, noise = _draw_t_noise(x0, schedule, generator)
    y_in = drop_labels(y, p_uncond, C, generator)
    x_t = q_sample(x0, t, schedule, noise=noise)
    return ((noise - model(x_t, t, y_in)) ** 2).mean()


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

    ``t ~ U{1..T}`` is drawn first (or given), then ``eps``.
    """
    C = int(getattr(classifier, "num_classes", 0))
    if C < 2:
        raise TypeError("classifier must have a num_classes attribute (e.g. NoisyClassifier)")
    yy = check_labels(y, x0.shape[0], C)
    tt, noise = _draw_t_noise(x0, schedule, generator)
    if t is not None:
        tt = check_timesteps(t, x0.shape[0], schedule.T).to(x0.device)
    x_t = q_sample(x0, tt, schedule, noise=noise)
    return nn.functional.cross_entropy(classifier(x_t, tt), yy)
