"""A network that takes the guidance weight as an input, for guided distillation (Meng et al.
2023, "On Distillation of Guided Diffusion Models").

Classifier-free guidance costs two network calls per step,
``(1 + w) eps(x, t, y) - w eps(x, t, ∅)``,
and each ``w`` is a different sampler. Meng et al. train *one* student ``x̂_theta(z_t, t, y, w)``
to reproduce the guided teacher at every ``w`` in a range (stage 1), then halve its steps by
progressive distillation (stage 2): one call per step, ``w`` chosen at sampling time.

:class:`GuidedTimeMLP` is :class:`~minidiff.nn.ConditionalTimeMLP` with a second conditioning
vector for ``w``: Fourier features of ``w`` through a small MLP, added to the time and label
embeddings that drive the FiLM layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import Check, Int, check_labels, checked, describe
from .conditional import ConditionalTimeMLP
from .mlp import TIME_NET_INPUTS

__all__ = ["GuidedTimeMLP"]


def _guidance_weights(w: object, name: str, x: Tensor) -> Tensor:
    """Guidance weights ``(B,)`` on ``x``'s device: a real number (the whole batch) or a floating
    tensor ``(B,)`` or 0-d (no value is read: a forward runs at every step of a loop)."""
    B = x.shape[0]
    expected = f"a number or a floating tensor of shape ({B},)"
    if isinstance(w, (int, float)) and not isinstance(w, bool):
        ww = torch.as_tensor(float(w), device=x.device)
    elif isinstance(w, Tensor) and w.is_floating_point():
        ww = w.to(x.device)
    else:
        got = f"a {w.dtype} tensor" if isinstance(w, Tensor) else describe(w)
        raise TypeError(f"{name} must be {expected}, got {got}")
    if ww.dim() == 0:
        ww = ww.expand(B)
    if ww.shape != (B,):
        raise ValueError(f"{name} must be {expected}, got shape {tuple(ww.shape)}")
    return ww


class GuidedTimeMLP(ConditionalTimeMLP):
    """``net(x (B, D), t (B,) long, y (B,) long, w (B,) float) -> (B, D)``.

    ``y`` is a class in ``0..C-1`` (the null label is accepted too), ``w >= 0`` the guidance weight
    (any float tensor ``(B,)``; the student is trained on a range such as ``[0, 4]``). Other
    arguments as for :class:`~minidiff.nn.TimeMLP`; ``w_frequencies`` Fourier features
    ``[sin(2^k w), cos(2^k w)]`` with ``k = -2 .. w_frequencies - 3`` feed the ``w`` embedding.
    """

    @checked(w_frequencies=Int())  # type: ignore[misc]  # (a decorated __init__)
    def __init__(
        self, num_classes: int, data_dim: int = 2, w_frequencies: int = 6, **kwargs: object
    ) -> None:
        super().__init__(num_classes, data_dim, **kwargs)
        freqs = 2.0 ** (torch.arange(w_frequencies, dtype=torch.float32) - 2)
        self.register_buffer("w_freqs", freqs, persistent=False)
        self.w_embedding = nn.Sequential(
            nn.Linear(2 * w_frequencies + 1, self.time_dim),
            nn.SiLU(),
            nn.Linear(self.time_dim, self.time_dim),
        )

    def _w_features(self, w: Tensor) -> Tensor:
        angles = w[:, None] * self.get_buffer("w_freqs")
        return torch.cat([w[:, None], angles.sin(), angles.cos()], dim=1)

    @checked(**TIME_NET_INPUTS, w=Check(_guidance_weights, uses=("x",), optional=True))
    def forward(  # type: ignore[override]
        self, x: Tensor, t: Tensor, y: Tensor | None = None, w: Tensor | float | None = None
    ) -> Tensor:
        """Predict for class ``y`` at guidance weight ``w`` (``None``: 0): a number or a floating
        tensor ``(B,)`` (an integer tensor is a ``TypeError``, another shape a ``ValueError``)."""
        B = x.shape[0]
        yy = torch.full_like(t, self.null_label, dtype=torch.long) if y is None else y
        yy = check_labels(yy, B, self.num_classes, allow_null=True).to(x.device)
        ww = torch.zeros(B, device=x.device) if w is None else torch.as_tensor(w)
        extra = self.label_embedding(yy) + self.w_embedding(
            self._w_features(ww.to(self.input.weight.dtype))
        )
        return self._trunk(x, self._film(t, extra))
