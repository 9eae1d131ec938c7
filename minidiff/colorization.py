"""Colorization (chapter 14): the image-conditioned model of super-resolution, given a gray image.

A colour image ``x`` in RGB is split into its luma and its chroma (ITU-R BT.601, the weights of
:func:`minidiff.image_conditioning.to_grayscale`):

    Y  = 0.299 R + 0.587 G + 0.114 B           (the gray image: the condition)
    Cb = (B - Y) / 1.772,   Cr = (R - Y) / 1.402   (the colour: what the model draws)

For RGB in ``[-1, 1]``, ``Y``, ``Cb`` and ``Cr`` all lie in ``[-1, 1]`` (the largest
``|B - Y|`` is ``2 * 0.886 = 1.772``), so the chroma is an image of the course like any other.
The colorizer is SR3's recipe with ``x_cond = Y``: ``eps_theta(c_t, t, Y)`` on the chroma
``c = (Cb, Cr)``, trained by :func:`minidiff.superres.train_conditional` and sampled by
:func:`minidiff.superres.conditional_sample`, the very functions of super-resolution. Drawing
the chroma rather than the whole RGB image (as Zhang et al. 2016 draw Lab's ``ab`` given ``L``)
keeps the luma exactly as given, as inpainting keeps its known pixels: the model only draws
what the condition does not determine. (Palette, Saharia et al. 2022, draws RGB directly; a
network large enough to learn to copy the gray image can afford that.)

Shapes: RGB ``(B, 3, H, W)``, luma ``(B, 1, H, W)``, chroma ``(B, 2, H, W)``, all in ``[-1, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._validation import Check, FloatTensor, Int, Rng, checked, describe
from .image_conditioning import IN_RANGE_IMAGES
from .schedules import NoiseSchedule
from .superres import (
    Regressor,
    conditional_sample,
    train_conditional,
    train_regression,
)

__all__ = [
    "LUMA",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "chroma_in_gamut",
    "train_colorizer",
    "train_colour_regressor",
    "colorize",
]

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of R, G, B."""
_CB, _CR = 2 * (1 - LUMA[2]), 2 * (1 - LUMA[0])  # 1.772 and 1.402: |B - Y|, |R - Y| <= these

_RGB = FloatTensor(dim=4, nonempty=True, finite=True, within=(-1.0, 1.0))
_IMAGES = FloatTensor(dim=4, nonempty=True, finite=True)


def _channels(x: torch.Tensor, name: str, want: int) -> torch.Tensor:
    if x.shape[1] != want:
        raise ValueError(
            f"{name} must have {want} channel{'s' * (want > 1)}, got shape {tuple(x.shape)}"
        )
    return x


@checked(x=_RGB)
def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` in ``[-1, 1]`` to ``(Y, Cb, Cr) (B, 3, H, W)``, all in ``[-1, 1]``."""
    r, g, b = _channels(x, "x", 3).unbind(dim=1)
    y = LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
    return torch.stack([y, (b - y) / _CB, (r - y) / _CR], dim=1)


@checked(luma=_IMAGES, chroma=FloatTensor(dim=4, finite=True))
def ycbcr_to_rgb(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """Luma ``Y (B, 1, H, W)`` and chroma ``(Cb, Cr) (B, 2, H, W)`` to RGB ``(B, 3, H, W)``.

    Clamped to ``[-1, 1]``: the exact inverse of :func:`rgb_to_ycbcr` wherever the result lies
    in ``[-1, 1]``; a drawn
    chroma that leaves the RGB cube is clamped (which then changes the luma a little).
    """
    _channels(luma, "luma", 1)
    _channels(chroma, "chroma", 2)
    if chroma.shape[0] != luma.shape[0] or chroma.shape[2:] != luma.shape[2:]:
        raise ValueError(
            f"chroma must have luma's batch and size {tuple(luma.shape[:1] + luma.shape[2:])}, "
            f"got {tuple(chroma.shape)}"
        )
    return (luma + _rgb_offset(chroma)).clamp(-1.0, 1.0)


def train_colorizer(
    x: torch.Tensor, schedule: NoiseSchedule, *, steps: int, seed: int = 0, **options: Any
) -> Any:
    """The conditional diffusion model ``eps_theta(c_t, t, Y)`` of chroma given luma; EMA copy.

    ``x (N, 3, S, S)`` RGB in ``[-1, 1]``; :func:`minidiff.superres.train_conditional` on
    ``(chroma, luma)`` pairs (``options`` go to :func:`minidiff.train`).
    """
    ycc = rgb_to_ycbcr(x)
    return train_conditional(ycc[:, 1:], ycc[:, :1], schedule, steps=steps, seed=seed, **options)


def train_colour_regressor(
    x: torch.Tensor, *, steps: int, seed: int = 0, **options: Any
) -> Regressor:
    """The posterior mean ``E[chroma | luma]`` (MSE regression), the desaturated baseline."""
    ycc = rgb_to_ycbcr(x)
    return train_regression(ycc[:, 1:], ycc[:, :1], steps=steps, seed=seed, **options)


@checked(gray=IN_RANGE_IMAGES)
def chroma_in_gamut(gray: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A sampler's ``clip_x0`` for chroma given the luma ``gray (B, 1, S, S)`` in ``[-1, 1]``.

    The static clip keeps ``Cb, Cr`` in ``[-1, 1]``, but which chroma is a colour depends on the
    luma (only gray is possible at ``Y = ±1``). With ``Y`` fixed, RGB ``= Y + M c`` is linear in
    the chroma ``c``, and ``c = 0`` (gray) is always inside the cube, so the valid chroma form a
    convex set around 0. This map scales each pixel's ``c`` by the largest ``λ <= 1`` with
    ``Y + λ M c`` in ``[-1, 1]³``: the hue and the luma stay, only the saturation drops.
    """
    _channels(gray, "gray", 1)

    def clip(chroma: torch.Tensor) -> torch.Tensor:
        y = gray.to(chroma)
        rgb_minus_y = _rgb_offset(chroma)  # (B, 3, H, W): M c
        room = torch.where(rgb_minus_y > 0, 1.0 - y, -1.0 - y)  # how far each channel may move
        ratio = torch.where(rgb_minus_y.abs() > 1e-12, room / rgb_minus_y, torch.ones_like(room))
        lam = ratio.clamp(min=0.0).amin(dim=1, keepdim=True).clamp(max=1.0)
        return chroma * lam

    return clip


def _rgb_offset(chroma: torch.Tensor) -> torch.Tensor:
    """``M c``: what the chroma ``(B, 2, H, W)`` adds to the luma in each of R, G, B."""
    cb, cr = chroma[:, 0], chroma[:, 1]
    r, b = _CR * cr, _CB * cb
    return torch.stack([r, -(LUMA[0] * r + LUMA[2] * b) / LUMA[1], b], dim=1)


def _colorizer(model: object, name: str) -> Any:
    """A conditional image model with a ``.config`` (``TypeError`` otherwise) drawing the 2 chroma
    channels from the 1 luma channel (``ValueError`` for other channel counts)."""
    cfg: Any = getattr(model, "config", None)
    if not callable(model) or not all(
        hasattr(cfg, a) for a in ("in_channels", "cond_channels", "image_size")
    ):
        raise TypeError(
            f"{name} must be an image-conditional ε-model with a .config (in_channels, "
            "cond_channels, image_size), such as train_colorizer's; "
            f"got {describe(model)}"
        )
    if (cfg.in_channels, cfg.cond_channels) != (2, 1):
        raise ValueError(
            f"{name} must draw the 2 chroma channels (in_channels=2) from the 1 luma channel "
            f"(cond_channels=1), as train_colorizer's does; got in_channels={cfg.in_channels}, "
            f"cond_channels={cfg.cond_channels}"
        )
    return model


@checked(
    model=Check(_colorizer), gray=IN_RANGE_IMAGES, schedule=NoiseSchedule, steps=Int(),
    generator=Rng,
)  # fmt: skip
def colorize(
    model: Any,
    gray: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int = 25,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RGB samples ``(B, 3, S, S)`` given ``gray (B, 1, S, S)`` (the luma, in ``[-1, 1]``).

    ``S`` is the model's ``image_size`` (:func:`minidiff.superres.at_image_size` gives a model
    for another size): the luma is kept as given, so it must already have the output's size.

    The chroma is drawn by :func:`minidiff.superres.conditional_sample` (stochastic DDIM,
    ``eta = 1``, ``x̂₀`` kept in the RGB cube by :func:`chroma_in_gamut`), then recombined with
    the given luma (:func:`ycbcr_to_rgb`).
    """
    _channels(gray, "gray", 1)
    S = model.config.image_size
    if tuple(gray.shape[-2:]) != (S, S):
        raise ValueError(
            f"gray must have shape (B, 1, {S}, {S}): the luma of the output, at the model's "
            f"image_size={S} (at_image_size(model, size) runs it at another size); got "
            f"{tuple(gray.shape)}"
        )
    chroma = conditional_sample(
        model,
        gray,
        schedule,
        steps=steps,
        eta=eta,
        clip_x0=chroma_in_gamut(gray),
        generator=generator,
    )
    return ycbcr_to_rgb(gray, chroma)
