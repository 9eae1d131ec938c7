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

from .._validation import check_labels
from .mlp import TimeMLP

__all__ = ["ConditionalTimeMLP", "NoisyClassifier"]


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
