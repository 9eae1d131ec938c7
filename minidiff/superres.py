"""Super-resolution and cascades on a laptop CPU (chapter 14): small U-Nets and their samplers.

A cascade (CDM, Ho et al. 2021) draws a low-resolution image from a base model, then a
super-resolution model ``eps_theta(x_t, t, upsample(x_low), s)`` draws the high-resolution image
conditioned on it; :func:`sr_sample` is that second stage, run with stochastic DDIM (``eta = 1``)
over :func:`minidiff.image_conditioning.condition_on`. The networks are
:class:`minidiff.nn.UNet` with the conditioning of chapter 13 (``cond_channels``,
``aug_embedding``), small enough to train in seconds on 8x8 and 16x16 images.

The SR model and the regressor read the upsampled condition twice: as input channels, and as a
skip in image space (:class:`ResidualSR`: ``x̂₀ = up(y) + F_θ``), so the network learns only the
small detail that bicubic upsampling misses. A plain ε-network must instead compute
``(x_t - sqrt(ab_t) up(y)) / sqrt(1 - ab_t)`` itself, a difference amplified up to
``1/sqrt(1 - ab_1)`` at small ``t``; trained briefly it leaves noise in its samples (chapter 14).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar, cast

import torch
from torch import nn

from ._validation import (
    Check,
    Flag,
    Int,
    Rng,
    check_instance,
    check_timesteps,
    check_with,
    checked,
)
from .diffusion import eps_from_x0
from .image_conditioning import (
    IN_RANGE_IMAGES,
    check_aug_level,
    check_condition,
    check_image_model,
    check_up_to_T,
    condition_on,
    upsample,
)
from .losses.image_conditional import image_conditional_loss, regression_loss
from .losses.simple import simple_loss
from .nn.unet import UNet, UNetConfig
from .samplers.ddim import ddim_sample
from .schedules import NoiseSchedule
from .training import train

__all__ = [
    "ResidualSR",
    "cascade_sample",
    "small_unet_config",
    "sr_sample",
    "conditional_sample",
    "train_base",
    "train_sr",
    "train_conditional",
    "train_regressor",
    "train_regression",
    "Regressor",
    "at_image_size",
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

    About 42 k parameters at ``base_channels = 8`` (41.6 k; 43.0 k with the second time
    embedding of ``aug_embedding``); ``image_size`` must be even.
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


def _model_schedule(value: object, name: str, model: Any) -> NoiseSchedule:
    """The argument check of a sampler's schedule: a :class:`NoiseSchedule`, and the model's own
    when the model keeps one (a :class:`ResidualSR` computes its ε with ``model.schedule``, so a
    sampler stepping on another schedule would read timesteps it has not got, or mix two)."""
    schedule: NoiseSchedule = check_instance(value, name, NoiseSchedule)
    own = getattr(model, "schedule", None)
    if not isinstance(own, NoiseSchedule) or own is schedule:
        return schedule
    if own.T != schedule.T or not torch.allclose(own.betas, schedule.betas):
        raise ValueError(
            f"{name} must be the schedule the model was trained with (model.schedule: "
            f"{own!r}), got {schedule!r}; pass model.schedule"
        )
    return schedule


def _condition_in_model_dtype(
    value: object, name: str, model: Any, noised: bool = False
) -> torch.Tensor:
    """The argument check of a sampler's condition (``x_low``, ``x_cond``), under its own name:
    a floating tensor, returned in the dtype of the model's weights (:func:`weights_dtype`),
    whichever float dtype it came in, of a shape and range the model takes
    (:func:`~minidiff.image_conditioning.check_condition`); ``model`` is checked first."""
    dtype = weights_dtype(check_image_model(model, "model"))
    return check_condition(value, name, model, noised).to(dtype)


# the options of the image-conditioned samplers (sr_sample, conditional_sample)
_SAMPLING_OPTIONS = {
    "schedule": Check(_model_schedule, uses=("model",)),
    "steps": Int(),
    "aug_level": Int(minimum=0),
    "noised": Flag,
    "generator": Rng,
}


@checked(x_low=Check(_condition_in_model_dtype, uses=("model", "noised")), **_SAMPLING_OPTIONS)
def sr_sample(
    model: Any,
    x_low: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int = 25,
    aug_level: int = 0,
    eta: float = 1.0,
    noised: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """High-resolution samples ``(B, C, S, S)`` given ``x_low (B, C, h, h)`` in ``[-1, 1]``.

    ``x_low`` is corrupted at ``aug_level`` for a model trained with noise-conditioning
    augmentation (at its own resolution, as in training), upsampled (bicubic) to the model's
    ``image_size``, then DDIM (``steps``, ``eta``, ``x̂₀`` clipped to ``[-1, 1]``) draws the
    image. ``noised=True``: ``x_low`` is already at level ``aug_level`` (the base model's state
    ``x_s``, CDM's truncated conditioning augmentation, see :func:`cascade_sample`). Random
    numbers: the augmentation noise, then ``x_T`` (then each step's noise when ``eta > 0``).
    ``schedule`` must be the model's own where it keeps one (``ResidualSR.schedule``; a
    ``ValueError`` otherwise).

    ``x_low`` of another float dtype than the model's weights is converted to it (a float64
    ``x_low`` for a float32 model, and the other way round).

    ``eta = 1`` (ancestral, DDPM-like steps on the strided grid) is the default: with the
    deterministic ``eta = 0`` a plain ε-U-Net (``train_sr(..., residual=False)``) briefly trained
    on the 16x16 digits returned noise-like images for many inputs (PSNR 16 dB against 28 dB),
    while the fresh noise of each stochastic step lets the sampler correct the network's errors
    instead of carrying them to ``t = 0``.
    """
    return conditional_sample.unchecked(
        model,
        x_low,
        schedule,
        steps=steps,
        aug_level=aug_level,
        eta=eta,
        noised=noised,
        generator=generator,
    )


@checked(x_cond=Check(_condition_in_model_dtype, uses=("model", "noised")), **_SAMPLING_OPTIONS)
def conditional_sample(
    model: Any,
    x_cond: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int = 25,
    aug_level: int = 0,
    eta: float = 1.0,
    clip_x0: Any = "static",
    noised: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Samples ``(B, C, S, S)`` of ``p(x | x_cond)`` from a :func:`train_conditional` model.

    ``x_cond (B, cond_channels, S, S)`` in ``[-1, 1]`` at the model's resolution (an upsampled
    low-resolution image, a gray image, ...), or at a resolution dividing it (upsampled after its
    augmentation; ``noised``: see :func:`minidiff.image_conditioning.condition_on`);
    :func:`minidiff.image_conditioning.condition_on`
    turns the model into an ε-model and DDIM (``steps``, ``eta``) draws the samples, with ``x̂₀``
    clipped to ``[-1, 1]`` or mapped by ``clip_x0`` (any map ``x̂₀ -> x̂₀``, e.g.
    :func:`minidiff.back_projection.low_resolution_projection`). ``eta = 1`` by default, for
    the reason given in :func:`sr_sample`. ``schedule`` must be the model's own where it keeps
    one (``ResidualSR.schedule``; a ``ValueError`` otherwise). ``x_cond`` of another float dtype
    than the model's weights is converted to it, as in :func:`sr_sample`.
    """
    eps_model = condition_on(model, x_cond, schedule, aug_level, generator, noised=noised)
    size, C = model.config.image_size, model.config.in_channels
    return ddim_sample(
        eps_model,
        schedule,
        (x_cond.shape[0], C, size, size),
        steps=steps,
        eta=eta,
        generator=generator,
        clip_x0=clip_x0,
        dtype=weights_dtype(model),
    )


def weights_dtype(model: Any) -> torch.dtype:
    """The dtype a model computes in (its first floating parameter's; float32 if it has none):
    the dtype a sampler draws ``x_T`` in, so that a float64 model samples in float64."""
    params = model.parameters() if isinstance(model, nn.Module) else ()
    return next((p.dtype for p in params if p.is_floating_point()), torch.float32)


def _base_model(model: object, name: str, sr_model: Any) -> Any:
    cfg = getattr(model, "config", None)
    if not callable(model) or not hasattr(cfg, "image_size") or not hasattr(cfg, "in_channels"):
        raise TypeError(
            f"{name} must be an unconditional ε-model with a .config (image_size, in_channels), "
            f"such as a minidiff UNet from train_base; got {type(model).__name__}"
        )
    h, C, sr_cfg = cfg.image_size, cfg.in_channels, sr_model.config  # type: ignore[union-attr]
    if sr_cfg.image_size % h or C != sr_cfg.cond_channels:
        raise ValueError(
            f"{name} draws ({C}, {h}, {h}) images, which sr_model cannot read: it takes "
            f"{sr_cfg.cond_channels} condition channels at a size dividing {sr_cfg.image_size}"
        )
    return model


@checked(
    base=Check(_base_model, uses=("sr_model",)),
    sr_model=Check(check_image_model),
    schedule=NoiseSchedule,  # its type first; the model's own: at the top of the body
    n=Int(),
    steps=Check(partial(check_up_to_T, minimum=2), uses=("schedule",)),
    aug_level=Check(check_aug_level, uses=("sr_model", "schedule")),
    truncate=Flag,
    generator=Rng,
)
def cascade_sample(
    base: Any,
    sr_model: Any,
    schedule: NoiseSchedule,
    n: int,
    *,
    steps: int = 25,
    aug_level: int = 0,
    truncate: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-stage cascade (CDM): ``n`` base samples, then the SR model conditioned on them.

    ``base`` is an unconditional ε-model at the low resolution (a :class:`minidiff.nn.UNet`); it
    samples in its weights' dtype, and :func:`sr_sample` reads its samples in ``sr_model``'s;
    both stages run stochastic DDIM (``eta = 1``, ``steps`` steps, ``x̂₀`` clipped). With
    ``aug_level = s > 0`` (a model trained with augmentation) the base sample is corrupted at
    level ``s`` before the SR model reads it; ``truncate=True`` instead stops the base sampler at
    ``x_s`` and hands that state over (CDM's truncated conditioning augmentation: the base skips
    the timesteps below ``s``). Truncated, the base visits ``steps`` timesteps spaced evenly from
    ``T`` down to ``s`` (rounded; fewer when ``T - s < steps - 1`` makes some coincide), one
    network call each, and takes a last step to ``x_0`` that is discarded (the sampler always
    finishes at 0): the same ``steps`` calls as untruncated whenever ``T - s >= steps - 1``. Returns
    ``(low (n, C, h, h), high (n, C, S, S))``: for ``truncate`` the low-resolution output is the
    base state ``x_s``, still noisy. ``schedule`` must be ``sr_model``'s own where it keeps one
    (``ResidualSR.schedule``): a ``ValueError`` after the other arguments' checks, before any
    sampling.
    """
    _model_schedule(schedule, "schedule", sr_model)
    cfg = base.config
    shape = (n, cfg.in_channels, cfg.image_size, cfg.image_size)
    # the base's stochastic DDIM, x̂₀ clipped, in the base's dtype (both branches)
    run_base = partial(
        ddim_sample, base, schedule, shape, eta=1.0, generator=generator, clip_x0="static",
        dtype=weights_dtype(base),
    )  # fmt: skip
    if not truncate or aug_level == 0:
        low = run_base(steps=steps)
        high = sr_sample(
            sr_model, low, schedule, steps=steps, aug_level=aug_level, generator=generator
        )
        return low, high
    # ``steps`` timesteps from T down to s; DDIM's last step (s -> 0) is taken and discarded
    grid = torch.linspace(schedule.T, aug_level, steps).round().long().unique_consecutive()
    states: dict[int, torch.Tensor] = {}
    run_base(timesteps=grid, on_step=lambda st: states.update({int(st.t): st.x}))
    low = states[aug_level]
    high = sr_sample(
        sr_model, low, schedule, steps=steps, aug_level=aug_level, noised=True, generator=generator
    )
    return low, high


class ResidualSR(nn.Module):
    """SR3's ε-model with the condition as a skip in image space: ``ε_θ(x_t, t, c[, s])``.

        x̂₀ = c[:, :C] + F_θ(x_t, t, c[, s]),     ε_θ = (x_t - sqrt(ab_t) x̂₀) / sqrt(1 - ab_t)

    with ``F_θ`` a :class:`minidiff.nn.UNet` (``config``: ``cond_channels``, optionally
    ``aug_embedding``) and ``c = up(y)`` (or its augmented version). It is an ε-model like any other
    (``L_simple``, every sampler); only the parameterisation differs: ``F_θ`` predicts the residual
    ``x₀ - up(y)``, small and well scaled at every ``t``. Shapes: ``x_t (B, C, S, S)``, ``t (B,)``
    long in ``1..T``, ``x_cond (B, cond_channels, S, S)``; returns ``(B, C, S, S)``.
    """

    def __init__(self, config: UNetConfig, schedule: NoiseSchedule) -> None:
        super().__init__()
        check_instance(config, "config", UNetConfig)
        check_instance(schedule, "schedule", NoiseSchedule)
        if config.cond_channels < config.in_channels:
            raise ValueError(
                f"config.cond_channels must be >= in_channels={config.in_channels} (the skip adds "
                f"the condition's first channels), got {config.cond_channels}"
            )
        self.net = UNet(config)
        self.config = config
        self.schedule = schedule

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        x_cond: torch.Tensor,
        aug_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        t = check_timesteps(t, x_t.shape[0], self.schedule.T).to(x_t.device)
        kw = {} if aug_level is None else {"aug_level": aug_level}
        x0 = x_cond[:, : self.config.in_channels] + self.net(x_t, t, x_cond=x_cond, **kw)
        return eps_from_x0.unchecked(x_t, t, x0, self.schedule)


def _seeded(build: Any, seed: int) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _seeded_unet(config: UNetConfig, seed: int) -> UNet:
    return cast(UNet, _seeded(lambda: UNet(config), seed))


def train_base(
    images: torch.Tensor, schedule: NoiseSchedule, *, steps: int, seed: int = 0, **options: Any
) -> UNet:
    """An unconditional small U-Net on ``images (N, C, S, S)`` with ``L_simple``; its EMA copy.

    The model is built and trained in the images' dtype: float32 or float64 (any other dtype is
    a ``TypeError``).

    ``options`` go to :func:`minidiff.train` (defaults: batch 32, lr 2e-3, EMA decay 0.99).
    """
    images = _unit_images(images, "images")
    check_instance(schedule, "schedule", NoiseSchedule)
    cfg = small_unet_config(images.shape[-1], images.shape[1])
    model = _seeded_unet(cfg, seed).to(images.dtype)
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
    residual: bool = True,
    seed: int = 0,
    **options: Any,
) -> ResidualSR | UNet:
    """An SR3 model ``eps_theta(x_t, t, upsample(x_low)[, s])`` on ``x_high (N, C, S, S)``.

    ``x_low`` is the ``factor x factor`` average of ``x_high``; ``max_aug_level > 0`` trains with
    noise-conditioning augmentation (``aug_embedding=True``), applied to ``x_low`` before it is
    upsampled, as in CDM. The network is a
    :class:`ResidualSR` (the condition also skips to ``x̂₀``); ``residual=False`` trains the
    plain ε-U-Net instead (the comparison of chapter 14's bench). The model is built and trained
    in ``x_high``'s dtype (float32 or float64). Returns the EMA copy.
    """
    from .image_conditioning import downsample

    x_high = _unit_images(x_high, "x_high")
    return train_conditional(
        x_high,
        downsample(x_high, factor),  # upsampled in the loss, after its augmentation
        schedule,
        steps=steps,
        max_aug_level=max_aug_level,
        residual=residual,
        seed=seed,
        **options,
    )


def train_conditional(
    x: torch.Tensor,
    x_cond: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    steps: int,
    max_aug_level: int = 0,
    residual: bool = False,
    seed: int = 0,
    **options: Any,
) -> ResidualSR | UNet:
    """SR3's recipe for any image condition: ``eps_theta(x_t, t, x_cond[, s])``; its EMA copy.

    ``x (N, C, S, S)`` are the images to draw and ``x_cond (N, C_cond, S, S)`` their conditions,
    pair by pair (an upsampled low-resolution image for super-resolution, the gray image for
    colorization), or ``(N, C_cond, h, h)`` with ``h`` dividing ``S`` (a low-resolution image,
    augmented at ``h`` and upsampled after). The network is :func:`small_unet_config` with
    ``cond_channels = C_cond``, trained by :func:`minidiff.train` on :func:`image_conditional_loss`
    (noise-conditioning augmentation up to ``max_aug_level``); ``options`` go to
    :func:`minidiff.train` (defaults: batch 32, lr 2e-3, EMA decay 0.99). ``residual=True``
    wraps it in :class:`ResidualSR` (``x̂₀ = x_cond[:, :C] + F_θ``: for a condition that already
    approximates ``x``). The model is built and trained in the images' dtype: ``x`` float32 or
    float64, and ``x_cond`` in the same dtype.
    """
    x, x_cond = _image_pairs(x, x_cond, low_resolution=True)
    check_instance(schedule, "schedule", NoiseSchedule)
    check_up_to_T(max_aug_level, "max_aug_level", schedule)
    C, S = x.shape[1], x.shape[-1]
    cfg = small_unet_config(S, C, cond_channels=x_cond.shape[1], aug_embedding=max_aug_level > 0)
    model = _seeded(lambda: ResidualSR(cfg, schedule) if residual else UNet(cfg), seed)
    model = model.to(x.dtype)
    opts = {"batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, **options}

    def loss(m: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        x0, c = batch
        return image_conditional_loss(m, x0, c, schedule, max_aug_level=max_aug_level, generator=g)

    res = train(model, loss, (x, x_cond), steps=steps, seed=seed, **opts)
    return cast("ResidualSR | UNet", res.ema.model.eval())


class Regressor(nn.Module):
    """``x_cond -> x``: a small U-Net with its time input held at 1 (a plain image-to-image net).

    With ``config.cond_channels = 0`` the condition is the U-Net's input (``x`` and ``x_cond``
    have the same channels); otherwise the condition enters through the conditioning channels
    and the input ``x_t`` is held at 0, so that ``x`` may have other channels than ``x_cond``
    (colorization: 1 channel in, 2 out). ``residual=True`` adds the same image-space skip as
    :class:`ResidualSR`: ``x_cond[:, :C] + F(x_cond)``.
    """

    def __init__(self, config: UNetConfig, residual: bool = False) -> None:
        super().__init__()
        self.net = UNet(config)
        cfg = self.net.config
        if residual and cfg.cond_channels and cfg.cond_channels < cfg.in_channels:
            raise ValueError(
                f"residual=True adds the condition's first {cfg.in_channels} channels to the "
                f"output, but config.cond_channels={cfg.cond_channels} < "
                f"in_channels={cfg.in_channels}"
            )
        self.residual = residual

    def forward(self, x_cond: torch.Tensor) -> torch.Tensor:
        t = torch.ones(x_cond.shape[0], dtype=torch.long, device=x_cond.device)
        cfg = self.net.config
        if not cfg.cond_channels:
            out = self.net(x_cond, t)
        else:
            x_t = x_cond.new_zeros(x_cond.shape[0], cfg.in_channels, *x_cond.shape[2:])
            out = self.net(x_t, t, x_cond=x_cond)
        return x_cond[:, : cfg.in_channels] + out if self.residual else out


def train_regressor(
    x_high: torch.Tensor, *, steps: int, factor: int = 2, seed: int = 0, **options: Any
) -> Regressor:
    """The posterior mean ``E[x_high | x_low]`` as a regression on ``upsample(x_low)`` (MSE), with
    the image-space skip (``Regressor(residual=True)``)."""
    from .image_conditioning import downsample

    x_high = _unit_images(x_high, "x_high")
    cond = upsample(downsample(x_high, factor), x_high.shape[-1])
    return train_regression(x_high, cond, steps=steps, residual=True, seed=seed, **options)


def train_regression(
    x: torch.Tensor,
    x_cond: torch.Tensor,
    *,
    steps: int,
    residual: bool = False,
    seed: int = 0,
    **options: Any,
) -> Regressor:
    """The posterior mean ``E[x | x_cond]`` as a regression (``regression_loss``, MSE); EMA copy.

    ``x (N, C, S, S)``, ``x_cond (N, C_cond, S, S)`` pair by pair; the baseline that every
    conditional diffusion model of chapter 14 is compared with (blurry, desaturated, best on
    PSNR). ``options`` go to :func:`minidiff.train` (defaults: batch 32, lr 2e-3, EMA 0.99).
    ``residual``: the :class:`Regressor`'s image-space skip (needs ``C_cond >= C``). The model
    is built and trained in the images' dtype: ``x`` float32 or float64, ``x_cond`` the same.
    """
    x, x_cond = _image_pairs(x, x_cond)
    C, Cc, S = x.shape[1], x_cond.shape[1], x.shape[-1]
    cfg = small_unet_config(S, C, cond_channels=0 if Cc == C else Cc)
    model = _seeded(lambda: Regressor(cfg, residual=residual), seed).to(x.dtype)
    opts = {"batch_size": 32, "lr": 2e-3, "ema_decay": 0.99, **options}

    def loss(m: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        x0, c = batch
        return regression_loss(m, x0, c)

    res = train(model, loss, (x, x_cond), steps=steps, seed=seed, **opts)
    return cast(Regressor, res.ema.model.eval())


_TRAINING_DTYPES = (torch.float32, torch.float64)


def _unit_images(x: object, name: str) -> torch.Tensor:
    """Training images ``x (N, C, S, S)``: float32 or float64 (the dtypes a model here is built
    and trained in), finite, in ``[-1, 1]`` (``image_conditioning``'s image spec), square."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype not in _TRAINING_DTYPES:
        raise TypeError(
            f"{name} must be a float32 or float64 tensor (the model is built in the images' "
            f"dtype), got dtype {x.dtype}: pass {name}.float()"
        )
    images: torch.Tensor = check_with(IN_RANGE_IMAGES, x, name)
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"{name} must hold square images (N >= 1, C, S, S), got {tuple(images.shape)}"
        )
    return images


def _image_pairs(
    x: object, x_cond: object, low_resolution: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (N, C, S, S)`` and ``x_cond (N, C_cond, S, S)``: finite images, pair by pair
    (``low_resolution``: also ``x_cond (N, C_cond, h, h)`` with ``h`` dividing ``S``)."""
    x, x_cond = _unit_images(x, "x"), _unit_images(x_cond, "x_cond")
    if x_cond.dtype != x.dtype:
        raise TypeError(
            f"x_cond must have x's dtype {x.dtype} (the model is built in it), got dtype "
            f"{x_cond.dtype}: pass x_cond.to(x.dtype)"
        )
    if x.shape[0] == 0 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"x must hold square images (N >= 1, C, S, S), got {tuple(x.shape)}")
    N, S, h = x.shape[0], x.shape[-1], x_cond.shape[-1]
    fits = h == S or (low_resolution and h < S and S % h == 0)
    if x_cond.shape[0] != N or x_cond.shape[-2] != h or not fits:
        lower = f", or h x h with h dividing {S}" if low_resolution else ""
        raise ValueError(
            f"x_cond must pair with x: shape ({N}, C_cond, {S}, {S}){lower}; got "
            f"{tuple(x_cond.shape)} (upsample a low-resolution condition to x's size first)"
        )
    return x, x_cond


M = TypeVar("M", bound=nn.Module)


@checked(image_size=Int(minimum=2))
def at_image_size(model: M, image_size: int) -> M:
    """The same network for images of another size: a copy built for ``image_size``, same weights.

    A U-Net without attention is convolutional: none of its weights depends on the image size
    (only the shape check of its input does), so a model trained on small crops can be run on
    larger images, four times cheaper to train on half-size crops. ``model`` is a
    :class:`minidiff.nn.UNet` or a module that wraps one as ``model.net`` (a :class:`Regressor`,
    an SR model with a skip); ``image_size`` must suit its levels (divisible by
    ``2 ** (levels - 1)``).
    """
    if isinstance(model, UNet):
        return cast(M, _unet_at_size(model, image_size))
    net = getattr(model, "net", None)
    if not isinstance(model, nn.Module) or not isinstance(net, UNet):
        raise TypeError(
            f"model must be a minidiff UNet or a module holding one as .net, got "
            f"{type(model).__name__}"
        )
    out = copy.copy(model)  # a shallow copy: the new .net replaces the old one in it alone
    out._modules = dict(model._modules)
    out.net = _unet_at_size(net, image_size)
    if getattr(model, "config", None) == net.config:
        out.config = out.net.config  # type: ignore[assignment]
    return out


def _unet_at_size(model: UNet, image_size: int) -> UNet:
    if model.config.attn_resolutions:
        raise ValueError(
            "model must have no attention (attn_resolutions=()): attention at a resolution "
            f"ties it to the image size, got attn_resolutions={model.config.attn_resolutions}"
        )
    out = UNet(replace(model.config, image_size=image_size))
    out.load_state_dict(model.state_dict())
    return out.train(model.training)
