"""Classifier-free guidance for the checkers of chapters 9 and 13: the reference and its slips.

Both chapters ask for ``cfg_eps(model, x_t, t, y, w, null_label)`` = ``(1 + w) ε_θ(x_t, t, y) −
w ε_θ(x_t, t, ∅)`` (Ho & Salimans, 2022, in the convention where ``w = 0`` is the conditional
model); chapter 9 on a small MLP, chapter 13 on a U-Net. The wrong answers they recognise are the
same four slips, written once here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..guidance import classifier_free_guidance

Fn = Callable[..., Any]

P_UNCOND = 0.2
"""The label-dropout probability of the exercise."""

SLIPS = ("scale", "swapped", "null_zero", "dropout")


def reference_cfg(
    model: Fn, x_t: Tensor, t: Tensor, y: Tensor, w: float, null_label: int
) -> Tensor:
    """The guided ``ε̃`` from :func:`minidiff.guidance.classifier_free_guidance`."""
    return classifier_free_guidance(model, y, w, num_classes=null_label)(x_t, t)


def cfg_slip(kind: str) -> Fn:
    """A ``cfg_eps`` with one slip: ``"scale"`` (``ε_∅ + w (ε_y − ε_∅)``), ``"swapped"`` (the
    two branches exchanged), ``"null_zero"`` (label 0 as ∅) or ``"dropout"`` (labels dropped with
    probability :data:`P_UNCOND` at sampling time)."""
    if kind not in SLIPS:
        raise ValueError(f"kind must be one of {SLIPS}, got {kind!r}")

    def fn(model: Fn, x_t: Tensor, t: Tensor, y: Tensor, w: float, null_label: int) -> Tensor:
        null = torch.full_like(y, null_label)
        if kind == "null_zero":
            null = torch.zeros_like(y)
        y_c = y
        if kind == "dropout":
            y_c = torch.where(torch.rand(y.shape[0]) < P_UNCOND, torch.full_like(y, null_label), y)
        e_c, e_u = model(x_t, t, y_c), model(x_t, t, null)
        if kind == "scale":
            return e_u + w * (e_c - e_u)
        if kind == "swapped":
            return (1 + w) * e_u - w * e_c
        return (1 + w) * e_c - w * e_u

    return fn
