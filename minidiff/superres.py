"""Super-resolution and cascades on a laptop CPU (chapter 14): small U-Nets and their samplers.

A cascade (CDM, Ho et al. 2021) draws a low-resolution image from a base model, then a
super-resolution model ``eps_theta(x_t, t, upsample(x_low), s)`` draws the high-resolution image
conditioned on it; :func:`sr_sample` is that second stage, run with DDIM over
:func:`minidiff.image_conditioning.condition_on`. The networks are :class:`minidiff.nn.UNet` with
the conditioning of chapter 13 (``cond_channels``, ``aug_embedding``), small enough to train in
seconds on 8x8 and 16x16 images.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from ._validation import Int, Rng, checked
from .image_conditioning import condition_on, upsample
from .losses.image_conditional import image_conditional_loss, regression_loss
from .losses.simple import simple_loss
from .nn.unet import UNet, UNetConfig
from .samplers.ddim import ddim_sample
from .schedules import NoiseSchedule
from .training import train

__all__ = [
    "small_unet_config",
    "sr_sample",
    "train_base",
    "train_sr",
    "train_regressor",
    "Regressor",
]


@checked(
    image_size=Int(minimum=2),
    in_channels=Int(),
    cond_channels=Int(minimum=0),
    base_channels=Int(minimum=4),
)
def small_unet_config(
    image_size: int,
    in_channels: int = 1,
    *,
    cond_channels: int = 0,
    aug_embedding: bool = False,
    base_channels: int = 8,
) -> UNetConfig:
    """Two levels (``base, 2 base`` channels), one ResBlock each, no attention, no dropout.

    About 45 k parameters at ``base_channels = 8`` (a second time embedding with
    ``aug_embedding``); ``image_size`` must be even.
    """
    return UNetConfig(
        image_size=image_size,
        in_channels=in_channels,
        base_channels=base_channels,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(),
        dropout=0.0,
        groups=4,
        cond_channels=cond_channels,
        aug_embedding=aug_embedding,
    )


@checked(schedule=NoiseSchedule, steps=Int(), aug_level=Int(minimum=0), generator=Rng)
def sr_sample(
    model: Any,
    x_low: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int = 25,
    aug_level: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """High-resolution samples ``(B, C, S, S)`` given ``x_low (B, C, h, h)`` in ``[-1, 1]``.

    ``x_low`` is upsampled (bicubic) to the model's ``image_size``, corrupted at ``aug_level`` for
    a model trained with noise-conditioning augmentation, then DDIM (``steps``, ``eta = 0``,
    ``x̂₀`` clipped to ``[-1, 1]``) draws the image. Random numbers: the augmentation noise, then
    ``x_T``.
    """
    size = model.config.image_size
    cond = upsample(x_low, size)
    eps_model = condition_on(model, cond, schedule, aug_level, generator)
    C = model.config.in_channels
    out = ddim_sample(
        eps_model,
        schedule,
        (x_low.shape[0], C, size, size),
        steps=steps,
        generator=generator,
        clip_x0="static",
    )
    return out


def _seeded_unet(config: UNetConfig, seed: int) -> UNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(config)


def train_base(
    images: torch.Tensor, schedule: NoiseSchedule, *, steps: int, seed: int = 0, **options: Any
) -> UNet:
    """An unconditional small U-Net on ``images (N, C, S, S)`` with ``L_simple``; its EMA copy.

    ``options`` go to :func:`minidiff.train` (defaults: batch 32, lr 2e-3, EMA decay 0.99).
    """
    cfg = small_unet_config(images.shape[-1], images.shape[1])
    model = _seeded_unet(cfg, seed)
    opts = {"batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, **options}

    def loss(m: nn.Module, x0: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return simple_loss(m, x0, schedule, generator=g)

    res = train(model, loss, images, steps=steps, seed=seed, **opts)
    return cast(UNet, res.ema.model.eval())


def train_sr(
    x_high: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int,
    max_aug_level: int = 0,
    factor: int = 2,
    seed: int = 0,
    **options: Any,
) -> UNet:
    """An SR3 model ``eps_theta(x_t, t, upsample(x_low)[, s])`` on ``x_high (N, C, S, S)``.

    ``x_low`` is the ``factor x factor`` average of ``x_high``; ``max_aug_level > 0`` trains with
    noise-conditioning augmentation (``aug_embedding=True``). Returns the EMA copy.
    """
    from .image_conditioning import downsample

    C, S = x_high.shape[1], x_high.shape[-1]
    cond = upsample(downsample(x_high, factor), S)
    cfg = small_unet_config(S, C, cond_channels=C, aug_embedding=max_aug_level > 0)
    model = _seeded_unet(cfg, seed)
    opts = {"batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, **options}

    def loss(m: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        x0, c = batch
        return image_conditional_loss(m, x0, c, schedule, max_aug_level=max_aug_level, generator=g)

    res = train(model, loss, (x_high, cond), steps=steps, seed=seed, **opts)
    return cast(UNet, res.ema.model.eval())


class Regressor(nn.Module):
    """``x_cond -> x``: a small U-Net with its time input held at 1 (a plain image-to-image net)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.net = UNet(config)

    def forward(self, x_cond: torch.Tensor) -> torch.Tensor:
        t = torch.ones(x_cond.shape[0], dtype=torch.long, device=x_cond.device)
        return self.net(x_cond, t)


def train_regressor(
    x_high: torch.Tensor, *, steps: int, factor: int = 2, seed: int = 0, **options: Any
) -> Regressor:
    """The posterior mean ``E[x_high | x_low]`` as a regression on ``upsample(x_low)`` (MSE)."""
    from .image_conditioning import downsample

    C, S = x_high.shape[1], x_high.shape[-1]
    cond = upsample(downsample(x_high, factor), S)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Regressor(small_unet_config(S, C))
    opts = {"batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, **options}

    def loss(m: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        x0, c = batch
        return regression_loss(m, x0, c)

    res = train(model, loss, (x_high, cond), steps=steps, seed=seed, **opts)
    return cast(Regressor, res.ema.model.eval())
