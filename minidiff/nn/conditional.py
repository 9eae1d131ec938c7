"""Conditional networks for guidance (chapter 9).

- :class:`ConditionalTimeMLP` ``eps_theta(x_t, t, y)``: the time MLP of chapter 4 with a class
  embedding added to the time embedding; the extra label ``num_classes`` is the null label ∅, so
  one network is both the conditional and the unconditional model (Ho & Salimans 2021).
- :class:`NoisyClassifier` ``f_phi(y | x_t, t)``: a time-conditioned classifier trained on noised
  data, for classifier guidance (Dhariwal & Nichol 2021).

Their objectives (``conditional_eps_loss`` with label dropout, ``noisy_classifier_loss``) live in
:mod:`minidiff.losses.conditional`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import Check, Int, check_labels, checked
from .mlp import TIME_NET_INPUTS, TimeMLP

__all__ = ["ConditionalTimeMLP", "NoisyClassifier"]


def _labels_or_null(y: object, name: str, model: ConditionalTimeMLP, x: Tensor) -> Tensor:
    """Labels ``(B,)`` in ``0..C-1`` or the null label ``C``, on ``x``'s device."""
    return check_labels(y, x.shape[0], model.num_classes, allow_null=True, name=name).to(x.device)


class ConditionalTimeMLP(TimeMLP):
    """``eps_theta(x (B, D), t (B,), y (B,) long) -> (B, D)`` with labels ``0..C-1`` and ∅ = ``C``.

    The FiLM conditioning of :class:`TimeMLP` receives ``MLP(emb(t) + E[y])`` with a learned
    class embedding ``E`` of ``C + 1`` rows (the last one is ∅). Other arguments as for ``TimeMLP``.
    """

    @checked(num_classes=Int(minimum=2))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, num_classes: int, data_dim: int = 2, **kwargs: object) -> None:
        super().__init__(data_dim, **kwargs)  # type: ignore[arg-type]
        self.num_classes = num_classes
        self.label_embedding = nn.Embedding(self.num_classes + 1, self.time_dim)
        nn.init.normal_(self.label_embedding.weight, std=0.5)

    @property
    def null_label(self) -> int:
        """The label ∅ of the unconditional model: ``num_classes``."""
        return self.num_classes

    def _cond_film(self, t: Tensor, y: Tensor) -> Tensor:
        return self._film(t, self.label_embedding(y))

    @checked(**TIME_NET_INPUTS, y=Check(_labels_or_null, uses=("self", "x"), optional=True))
    def forward(  # type: ignore[override]
        self, x: Tensor, t: Tensor, y: Tensor | None = None
    ) -> Tensor:
        """Predict the noise; ``y=None`` (or the null label) is the unconditional model."""
        yy = torch.full_like(t, self.null_label, dtype=torch.long) if y is None else y
        if self.training and torch.is_grad_enabled():
            film = self._cond_film(t, yy)  # training: a fresh (t, y) per row, nothing to share
        else:
            # sampling: one conditioning vector per distinct (t, y) pair (one or two of them);
            # t keeps its fractional part (continuous time, time_scale > 1), y is exact in float64
            pairs = torch.stack([t.to(torch.float64), yy.to(torch.float64)], dim=1)
            p_unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
            film = self._cond_film(p_unique[:, 0], p_unique[:, 1].long())
            if p_unique.shape[0] > 1:
                film = film[inverse]
        return self._trunk(x, film)


class NoisyClassifier(TimeMLP):
    """A time-conditioned classifier ``f_phi(x_t (B, D), t (B,)) -> logits (B, C)``.

    The :class:`TimeMLP` body with a ``C``-way output layer (zero-initialised: uniform at first).
    """

    @checked(num_classes=Int(minimum=2))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, num_classes: int, data_dim: int = 2, **kwargs: object) -> None:
        super().__init__(data_dim, **kwargs)  # type: ignore[arg-type]
        self.num_classes = num_classes
        self.output = nn.Linear(self.hidden, self.num_classes)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
