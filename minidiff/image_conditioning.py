"""Conditioning a diffusion model on an image (chapter 14): super-resolution, cascades, masks.

The condition enters through the U-Net's input (``UNetConfig(cond_channels=C_cond)``: ``conv_in``
reads ``cat([x_t, x_cond])``), SR3-style (Saharia et al. 2021):

    super-resolution   x_cond = upsample(x_low)              eps_theta(x_t, t, upsample(x_low))
    inpainting         x_cond = cat([m * x, m])              (the masked image and the mask)
    colorization       x_cond = grayscale(x)

Noise-conditioning augmentation (CDM, Ho et al. 2021; Imagen, Saharia et al. 2022): in a cascade
the super-resolution model is fed the base model's *samples*, not real low-resolution images, so
during training its condition is corrupted by the forward process at a random level ``s``,

    x_cond' = sqrt(ab_s) x_cond + sqrt(1 - ab_s) eps,   s ~ U{0, …, s_max}   (s = 0: clean)

and ``s`` is given to the network as a second embedded scalar (``UNetConfig(aug_embedding=True)``,
embedded like ``t``). At sampling time a fixed level ``s`` is chosen, the condition is corrupted
at that level once, and the same ``s`` is passed to the network. A super-resolution condition
may be given at its own low resolution: it is then corrupted there, where the base model's
defects live, and upsampled after (:func:`lift_condition`), as in CDM; a base model's own state
``x_s`` can stand for the corrupted condition (CDM's truncated conditioning augmentation,
``condition_on(..., noised=True)``).

Shapes: images ``(B, C, H, W)`` in ``[-1, 1]``; levels ``(B,)`` long in ``0..T``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ._validation import (
    Check,
    Flag,
    FloatTensor,
    Int,
    OneOf,
    Rng,
    check_finite,
    check_positive_int,
    check_tensor,
    checked,
)
from .diffusion import EpsModel, q_sample
from .schedules import NoiseSchedule
from .tensors import noise_like, uniform

__all__ = [
    "downsample",
    "upsample",
    "aug_levels",
    "augment_condition",
    "lift_condition",
    "condition_on",
    "masked_condition",
    "to_grayscale",
]

_IMAGES = FloatTensor(dim=4, nonempty=True, finite=True)
# the images this module and the cascade take: (N, C, H, W), finite, in [-1, 1]
IN_RANGE_IMAGES = FloatTensor(dim=4, nonempty=True, finite=True, within=(-1.0, 1.0))
UPSAMPLE_MODES = ("bicubic", "bilinear", "nearest")


@checked(x=_IMAGES, factor=Int(minimum=1))
def downsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Average-pool ``factor x factor`` blocks: ``(B, C, H, W) -> (B, C, H/f, W/f)``."""
    H, W = x.shape[-2:]
    if H % factor or W % factor:
        raise ValueError(
            f"factor={factor} must divide the image size {H}x{W} (x has shape {tuple(x.shape)})"
        )
    return F.avg_pool2d(x, factor) if factor > 1 else x


@checked(x_low=_IMAGES, size=Int(minimum=1), mode=OneOf(UPSAMPLE_MODES))
def upsample(x_low: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """Interpolate ``(B, C, h, h)`` up to ``(B, C, size, size)`` (``size`` a multiple of ``h``).

    ``bicubic`` overshoots near edges, so the interpolating modes clamp their result to
    ``[-1, 1]`` like every image; ``nearest`` copies pixels and returns them as they are.
    """
    h, w = x_low.shape[-2:]
    if h != w:
        raise ValueError(f"x_low must hold square images, got {h}x{w}")
    if size < h or size % h:
        raise ValueError(
            f"size must be a multiple of x_low's size {h} (a resolution {h} -> {size} is not an "
            f"integer upsampling), got size={size}"
        )
    if mode == "nearest":
        return F.interpolate(x_low, size=(size, size), mode="nearest")
    up = F.interpolate(x_low, size=(size, size), mode=mode, align_corners=False)
    return up.clamp(-1.0, 1.0)


def check_up_to_T(value: object, name: str, schedule: NoiseSchedule, minimum: int = 0) -> int:
    """The argument check of an int in ``minimum..T`` (a level, a number of steps)."""
    level = check_positive_int(value, name, minimum=minimum)
    if level > schedule.T:
        raise ValueError(f"{name} must be in {minimum}..T={schedule.T}, got {level}")
    return level


@checked(
    batch=Int(minimum=1),
    max_level=Check(check_up_to_T, uses=("schedule",)),
    schedule=NoiseSchedule,
    generator=Rng,
)
def aug_levels(
    batch: int,
    max_level: int,
    schedule: NoiseSchedule,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training draws ``s ~ U{0, …, max_level}``, long ``(batch,)`` (``max_level = 0``: all 0)."""
    u = uniform((batch,), generator=generator, device=device)
    return (u * (max_level + 1)).long().clamp(max=max_level)


def _levels(value: object, name: str, x_cond: torch.Tensor, schedule: NoiseSchedule) -> Any:
    B = x_cond.shape[0]
    if isinstance(value, int) and not isinstance(value, bool):
        value = torch.full((B,), value, dtype=torch.long)
    if (
        not isinstance(value, torch.Tensor)
        or value.is_floating_point()
        or value.dtype == torch.bool
    ):
        raise TypeError(f"{name} must be an int or an integer tensor ({B},) in 0..T, got {value!r}")
    if value.shape != (B,):
        raise ValueError(
            f"{name} must have shape ({B},) like x_cond's batch, got {tuple(value.shape)}"
        )
    if bool(((value < 0) | (value > schedule.T)).any()):
        raise ValueError(
            f"{name} must lie in 0..T={schedule.T} (0 = no augmentation), got values in "
            f"{int(value.min())}..{int(value.max())}"
        )
    return value.to(x_cond.device)


@checked(
    x_cond=_IMAGES,
    level=Check(_levels, uses=("x_cond", "schedule")),
    schedule=NoiseSchedule,
    noise=FloatTensor(like="x_cond", optional=True),
    generator=Rng,
)
def augment_condition(
    x_cond: torch.Tensor,
    level: torch.Tensor | int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise-conditioning augmentation: ``sqrt(ab_s) x_cond + sqrt(1 - ab_s) eps`` at level ``s``.

    ``level``: an int or a long tensor ``(B,)`` in ``0..T``; level 0 returns ``x_cond`` unchanged
    (``ab_0 = 1``). The same forward process as :func:`minidiff.q_sample`, applied to the
    *condition*.
    """
    eps = noise if noise is not None else noise_like(x_cond, generator)
    return q_sample.unchecked(x_cond, level, schedule, eps)


def _lift_size(value: object, name: str, x_cond: torch.Tensor) -> int:
    size = check_positive_int(value, name)
    h = x_cond.shape[-1]
    if x_cond.shape[-2] != h or size < h or size % h:
        raise ValueError(
            f"{name} must be a multiple of x_cond's size {h} (square images), got {size} for "
            f"x_cond of shape {tuple(x_cond.shape)}"
        )
    return size


def _lift_level(value: object, name: str, x_cond: torch.Tensor, schedule: Any) -> Any:
    if value is None:
        return None
    if schedule is None:
        raise TypeError(f"schedule is required with {name} (it sets ab_s)")
    return _levels(value, name, x_cond, schedule)


@checked(
    x_cond=_IMAGES,
    size=Check(_lift_size, uses=("x_cond",)),
    level=Check(_lift_level, uses=("x_cond", "schedule"), optional=True),
    schedule=NoiseSchedule,
    noise=FloatTensor(like="x_cond", optional=True),
)
def lift_condition(
    x_cond: torch.Tensor,
    size: int,
    level: torch.Tensor | int | None = None,
    schedule: NoiseSchedule | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The condition the network reads: corrupted at ``level`` at its resolution, then upsampled.

    ``x_cond (B, C, h, h)`` with ``h`` dividing ``size``; ``level`` an int or a long tensor
    ``(B,)`` in ``0..T`` (None: no corruption) with ``schedule``, and ``noise`` like ``x_cond``
    (None: drawn). Upsampling (bicubic, :func:`upsample`, clamped to ``[-1, 1]`` like every
    image) comes after the corruption, so that a low-resolution condition is augmented where a
    cascade's base model makes its errors (CDM, Ho et al. 2021, Sec. 3.2), with noise of the low
    resolution's grain. The clamp cuts the noise where it leaves ``[-1, 1]`` (on the digits'
    background at -1, about half of it); training and sampling both read the clamped image.
    """
    if level is not None and schedule is not None:
        eps = noise if noise is not None else noise_like(x_cond)
        x_cond = q_sample.unchecked(x_cond, level, schedule, eps)
    return x_cond if x_cond.shape[-1] == size else upsample.unchecked(x_cond, size)


def check_aug_level(
    value: object, name: str, model: Any, schedule: NoiseSchedule | None = None
) -> int:
    """The argument check of an augmentation level: an int in ``0..T``, above 0 only for a model
    trained with noise-conditioning augmentation (one told the level: ``aug_embedding=True``)."""
    if schedule is None:
        level = check_positive_int(value, name, minimum=0)
    else:
        level = check_up_to_T(value, name, schedule)
    if level and not getattr(getattr(model, "config", None), "aug_embedding", False):
        raise ValueError(
            f"{name}={level} needs a model trained with noise-conditioning augmentation, one told "
            "the level (UNetConfig(aug_embedding=True); train_sr(..., max_aug_level=...)); give "
            f"{name}=0 for this one"
        )
    return level


def check_image_model(model: object, name: str) -> Any:
    """The argument check of every function that takes an image-conditioned model."""
    config = getattr(model, "config", None)
    if not callable(model) or not getattr(config, "cond_channels", 0):
        raise TypeError(
            f"{name} must be a UNet built with UNetConfig(cond_channels=...) (a model that reads a "
            f"conditioning image), got {type(model).__name__}"
        )
    return model


def check_condition(x: object, name: str, model: Any, noised: bool = False) -> torch.Tensor:
    """The argument check of a condition image for ``model``: a finite ``(B, cond_channels, h,
    h)`` tensor with ``h`` dividing the model's ``image_size``, in ``[-1, 1]`` unless ``noised``."""
    x = check_finite(check_tensor(x, name, dim=4), name)
    cfg = model.config
    C, S, h = cfg.cond_channels, cfg.image_size, x.shape[-1]
    if x.shape[1] != C or x.shape[-2] != h or h > S or S % h:
        raise ValueError(
            f"{name} must have shape (B, {C}, {S}, {S}) to match the model "
            f"(cond_channels={C}, image_size={S}), or (B, {C}, h, h) with h dividing {S} (a "
            f"low-resolution image, upsampled after its augmentation); got {tuple(x.shape)}"
        )
    if not noised and not bool(((x >= -1 - 1e-6) & (x <= 1 + 1e-6)).all()):
        raise ValueError(
            f"{name} must lie in [-1, 1] like every image of the course (got values in "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]); rescale it with 2 x - 1 first"
        )
    return x


@checked(
    model=Check(check_image_model),
    x_cond=Check(check_condition, uses=("model", "noised")),
    schedule=NoiseSchedule,
    aug_level=Check(check_aug_level, uses=("model", "schedule")),
    generator=Rng,
    noised=Flag,
)
def condition_on(
    model: Any,
    x_cond: torch.Tensor,
    schedule: NoiseSchedule | None = None,
    aug_level: int = 0,
    generator: torch.Generator | None = None,
    *,
    noised: bool = False,
) -> EpsModel:
    """An ε-model ``(x_t, t) -> model(x_t, t, x_cond=x_cond', aug_level=s)`` for any sampler.

    ``x_cond (B, cond_channels, S, S)`` in ``[-1, 1]`` at the model's resolution, or
    ``(B, cond_channels, h, h)`` with ``h`` dividing ``S`` (upsampled here, after its
    corruption: :func:`lift_condition`). For a model with ``aug_embedding``: the condition is
    corrupted once at level ``s = aug_level`` (with ``generator``) and ``s`` is passed at every
    call; ``noised=True`` says that ``x_cond`` is already at level ``s`` (a base model's state
    ``x_s``, CDM's truncated conditioning augmentation) and skips the corruption and the range
    check. A model without ``aug_embedding`` takes ``aug_level = 0`` only.
    """
    aug, level = bool(model.config.aug_embedding), aug_level
    if noised and not (aug and level):
        raise ValueError(
            "noised=True needs a model trained with augmentation and aug_level >= 1 (the level "
            f"x_cond was noised to); got aug_level={level}"
        )
    size, s = model.config.image_size, None
    cond = lift_condition.unchecked(x_cond, size)
    if aug:
        if schedule is None:
            raise TypeError("schedule is required for a model with aug_embedding (it sets ab_s)")
        s = torch.full((x_cond.shape[0],), level, dtype=torch.long, device=x_cond.device)
        if not noised:
            eps = noise_like(x_cond, generator)
            cond = lift_condition.unchecked(x_cond, size, s, schedule, eps)

    def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if s is None:
            return model(x_t, t, x_cond=cond)
        return model(x_t, t, x_cond=cond, aug_level=s.to(x_t.dtype))

    return eps_model


@checked(x=IN_RANGE_IMAGES)
def masked_condition(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The condition of a mask-conditioned inpainting model: ``cat([m * x + (1 - m) * 0, m])``.

    ``x (B, C, H, W)`` in ``[-1, 1]``, ``mask`` of 0/1 (1 = known) broadcasting to it; returns
    ``(B, C + 1, H, W)`` (the hidden pixels read 0, the mask tells 0 from a known mid-grey).
    """
    from .samplers.inpainting import check_mask

    m = check_mask(mask, "mask", x)
    m1 = m.expand_as(x)[:, :1]
    return torch.cat([m * x, m1], dim=1)


@checked(x=IN_RANGE_IMAGES)
def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B``: ``(B, 3, H, W) -> (B, 1, H, W)``."""
    if x.shape[1] != 3:
        raise ValueError(f"x must have 3 channels (RGB), got shape {tuple(x.shape)}")
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
