"""Inpainting with an unconditional ε-model: naive replacement and RePaint (chapter 14).

The known pixels ``x_known`` (where ``mask = 1``) are pasted into the sampler's state at every
step, noised to the state's own level so that the state stays a sample of ``q(x_t)``; the
unknown pixels (``mask = 0``) follow the model's reverse step:

    replacement (Song et al. 2021, "inpainting by conditioning"; RePaint's eq. 8):
        x_{t-1}^unknown = mu_theta(x_t, t) + sigma_t z         (the ancestral step)
        x_{t-1}^known   = sqrt(ab_{t-1}) x_known + sqrt(1 - ab_{t-1}) eps'    (q(x_{t-1} | x_0))
        x_{t-1}         = m * x_{t-1}^known + (1 - m) * x_{t-1}^unknown

    RePaint (Lugmayr et al. 2022): the same step, but after every ``jump_length`` steps down the
    state is noised back up ``jump_length`` steps with the forward process
        x_{t+j} ~ q(x_{t+j} | x_t) = N(sqrt(ab_{t+j} / ab_t) x_t, (1 - ab_{t+j} / ab_t) I)
    and denoised again, ``resamplings - 1`` extra times per place: each pass lets the generated
    pixels catch up with the known ones they were pasted next to.

At ``t - 1 = 0`` the known part is ``x_known`` itself, so the result keeps the known pixels
exactly (``torch.equal``). Shapes: ``x_known: (B, C, H, W)``; ``mask`` broadcasts to it
(``(B, 1, H, W)``, ``(1, 1, H, W)``, ``(B, C, H, W)``, ...) and holds only 0 and 1.
"""

from __future__ import annotations

from typing import Any, cast

import torch

from .._validation import (
    Check,
    FloatTensor,
    Function,
    Int,
    OneOf,
    Rng,
    Timesteps,
    checked,
)
from ..diffusion import VARIANCES, EpsModel, call_eps_model, q_sample
from ..schedules import NoiseSchedule
from ..tensors import noise_like, pad_like
from .clipping import clip_eps_model
from .ddpm import ddpm_step
from .loop import OnStep, batch_time, draw_start, run_sampler
from .registry import register_sampler

__all__ = [
    "check_mask",
    "paste_known",
    "noised_known",
    "replacement_step",
    "renoise",
    "repaint_times",
    "inpaint_sample",
    "repaint_sample",
]


def check_mask(mask: object, name: str, x_known: torch.Tensor) -> torch.Tensor:
    """A mask of 0s and 1s (1 = known) that broadcasts to ``x_known (B, C, H, W)``; as a float."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of 0s and 1s (1 = known pixel), got {mask!r}")
    if mask.is_complex():
        raise TypeError(f"{name} must be a real or bool tensor, got dtype {mask.dtype}")
    if mask.dim() != 4:
        raise ValueError(
            f"{name} must have 4 dimensions (B or 1, C or 1, H, W) like x_known "
            f"{tuple(x_known.shape)}, got shape {tuple(mask.shape)}"
        )
    try:
        shape = torch.broadcast_shapes(mask.shape, x_known.shape)
    except RuntimeError:
        shape = None
    if shape != x_known.shape:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} must broadcast to x_known's shape "
            f"{tuple(x_known.shape)} (e.g. (B, 1, H, W) or (1, 1, H, W))"
        )
    m = mask.to(x_known.dtype)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError(f"{name} must hold only 0 (to generate) and 1 (known); got other values")
    return m.to(x_known.device)


_KNOWN = FloatTensor(dim=4, nonempty=True, finite=True)
MASK = Check(check_mask, uses=("x_known",))
"""``mask``: 0/1 values broadcastable to ``x_known`` (1 = known pixel), see :func:`check_mask`."""
RESTORING_SAMPLER = dict(
    eps_model=Function("(x_t, t) -> eps"), schedule=NoiseSchedule, x_known=_KNOWN, mask=MASK
)
"""The checks of the arguments every sampler that restores ``x_known`` starts with
(:func:`inpaint_sample`, :func:`~minidiff.samplers.dps.dps_sample`)."""


@checked(x=FloatTensor(dim=4), x_known=FloatTensor(like="x", finite=True), mask=MASK)
def paste_known(x: torch.Tensor, x_known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``m * x_known + (1 - m) * x``: the known pixels from ``x_known``, the rest from ``x``."""
    return torch.where(mask.bool(), x_known, x)


@checked(
    x_known=_KNOWN,
    t=Timesteps(of="x_known", optional=True),
    schedule=NoiseSchedule,
    noise=FloatTensor(like="x_known", finite=True, optional=True),
    generator=Rng,
)
def noised_known(
    x_known: torch.Tensor,
    t: torch.Tensor | int | None,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The known image at level ``t``: ``sqrt(ab_t) x_known + sqrt(1 - ab_t) eps``.

    ``t = None`` means level 0: ``x_known`` itself (no noise is drawn).
    """
    if t is None:
        return x_known
    return q_sample.unchecked(x_known, t, schedule, noise, generator)


@checked(
    x_t=FloatTensor(dim=4, finite=True),
    t=Timesteps(of="x_t"),
    eps=FloatTensor(like="x_t", finite=True),
    x_known=FloatTensor(like="x_t", finite=True),
    mask=MASK,
    schedule=NoiseSchedule,
    variance=OneOf(VARIANCES),
    noise=FloatTensor(like="x_t", finite=True, optional=True),
    known_noise=FloatTensor(like="x_t", finite=True, optional=True),
    generator=Rng,
)
def replacement_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    eps: torch.Tensor,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str = "beta",
    noise: torch.Tensor | None = None,
    known_noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One inpainting step ``x_t -> x_{t-1}``: the ancestral step for the unknown pixels, the
    known pixels noised to level ``t - 1`` for the rest (level 0: exactly ``x_known``).

    ``eps`` is the model's prediction at ``(x_t, t)``; ``noise`` the ancestral step's ``z`` and
    ``known_noise`` the ``eps'`` of the known pixels (both drawn from ``generator`` if omitted,
    ``z`` first). ``t: (B,)`` long in ``1..T`` (or an int); shapes ``(B, C, H, W)``.
    """
    z = noise if noise is not None else noise_like(x_t, generator)
    e = known_noise if known_noise is not None else noise_like(x_t, generator)
    tt = cast(torch.Tensor, t)  # @checked made it a long tensor (B,)
    return _replacement(
        lambda x, t_: eps, x_t, tt, x_known, mask, schedule, variance=variance, z=z, e=e
    )


def _replacement(
    model: EpsModel,
    x_t: torch.Tensor,
    tt: torch.Tensor,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    variance: str,
    z: torch.Tensor,
    e: torch.Tensor,
) -> torch.Tensor:
    eps = call_eps_model.unchecked(model, x_t, tt)
    unknown = ddpm_step.unchecked(x_t, tt, eps, schedule, variance=variance, noise=z)
    prev = tt - 1
    ab = pad_like(schedule.alpha_bar.to(x_t.device)[prev], x_t)  # ab_0 = 1: x_known exactly
    known = torch.where(pad_like(prev, x_t) > 0, ab.sqrt() * x_known + (1 - ab).sqrt() * e, x_known)
    return torch.where(mask.bool(), known, unknown)


@checked(
    x_s=FloatTensor(finite=True),
    s=Int(minimum=0),
    t=Int(minimum=1),
    schedule=NoiseSchedule,
    noise=FloatTensor(like="x_s", finite=True, optional=True),
    generator=Rng,
)
def renoise(
    x_s: torch.Tensor,
    s: int,
    t: int,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RePaint's jump up: ``x_t ~ q(x_t | x_s) = N(sqrt(ab_t / ab_s) x_s, (1 - ab_t / ab_s) I)``.

    The forward process run from level ``s`` to a noisier level ``t`` (``0 <= s < t <= T``) in
    one draw; ``s = t - 1`` is :func:`minidiff.q_step`. ``x_s: (B, ...)``.
    """
    if not s < t <= schedule.T:
        raise ValueError(f"renoise needs 0 <= s < t <= T={schedule.T}, got s={s}, t={t}")
    eps = noise if noise is not None else noise_like(x_s, generator)
    return _renoise(x_s, s, t, schedule, eps)


def _renoise(
    x_s: torch.Tensor, s: int, t: int, schedule: NoiseSchedule, eps: torch.Tensor
) -> torch.Tensor:
    ratio = float(schedule.alpha_bar[t] / schedule.alpha_bar[s])
    return ratio**0.5 * x_s + (1.0 - ratio) ** 0.5 * eps


@checked(T=Int(minimum=1), jump_length=Int(minimum=1), resamplings=Int(minimum=1))
def repaint_times(T: int, jump_length: int = 10, resamplings: int = 10) -> list[tuple[int, int]]:
    """RePaint's schedule as ``(t, t_next)`` pairs: ``t_next = t - 1`` is a reverse step (one
    network call), ``t_next = t + jump_length`` a jump back up (:func:`renoise`, no call).

    Walking down from ``T``, at every level ``j, 2j, … <= T - j`` (``j = jump_length``) the
    state jumps up ``j`` levels and comes down again, ``resamplings - 1`` times per level.
    Network calls: ``T + (resamplings - 1) * j * floor((T - j) / j)``; ``resamplings = 1`` is
    plain replacement.
    """
    jumps = {k: resamplings - 1 for k in range(jump_length, T - jump_length + 1, jump_length)}
    pairs: list[tuple[int, int]] = []
    t = T
    while t > 0:
        pairs.append((t, t - 1))
        t -= 1
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            pairs.append((t, t + jump_length))
            t += jump_length
    return pairs


@register_sampler("inpaint")
@checked(
    **RESTORING_SAMPLER,
    method=OneOf(("replace", "repaint")),
    jump_length=Int(minimum=1),
    resamplings=Int(minimum=1),
    variance=OneOf(VARIANCES),
    generator=Rng,
)
def inpaint_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    *,
    method: str = "replace",
    jump_length: int = 10,
    resamplings: int = 10,
    variance: str = "beta",
    clip_x0: object = None,
    x_T: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Fill the pixels where ``mask = 0`` with an unconditional ε-model; keep the others exactly.

    Args:
        eps_model: ``(x_t (B, C, H, W), t (B,) long) -> eps``, trained without masks.
        x_known: the images whose known pixels are kept ``(B, C, H, W)``, in ``[-1, 1]``.
        mask: 1 = known, 0 = to generate; broadcasts to ``x_known`` (e.g. ``(1, 1, H, W)``).
        method: ``"replace"`` (naive: :func:`replacement_step` at ``t = T..1``) or ``"repaint"``
            (the same steps over :func:`repaint_times` ``(T, jump_length, resamplings)``).
        generator: draws ``x_T``, then per step ``z`` and the known pixels' noise (and per jump
            the forward noise).
        clip_x0: None, ``"static"`` or ``"dynamic"`` (or a map ``x̂₀ -> x̂₀``): the reverse step
            uses the clipped ``x̂₀`` (:mod:`minidiff.samplers.clipping`).
        x_T: a given start, of ``x_known``'s shape and dtype, instead of the draw
            ``x_T ~ N(0, I)``.
        on_step: called with the start and the state after every step and jump
            (:class:`~minidiff.samplers.loop.SamplerState`; its ``t`` is the timestep reached).
    Returns:
        ``x_0 (B, C, H, W)`` with ``x_0[mask == 1] == x_known[mask == 1]`` exactly.
    """
    model = clip_eps_model(eps_model, schedule, clip_x0)
    if method == "replace":
        times = [(t, t - 1) for t in range(schedule.T, 0, -1)]
    else:
        times = repaint_times.unchecked(schedule.T, jump_length, resamplings)

    def step(x: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        if t_next > t:  # RePaint's jump back up: the forward process, no network call
            return _renoise(x, t, t_next, schedule, noise_like(x, generator))
        tt = batch_time(x, t)
        z, e = noise_like(x, generator), noise_like(x, generator)
        return _replacement(model, x, tt, x_known, mask, schedule, variance=variance, z=z, e=e)

    x = start_like_known(x_T, x_known, generator)
    name = f"inpaint_sample ({method})"
    return run_sampler(step, x, times, name=name, on_step=on_step, progress=progress)


def start_like_known(
    x_T: torch.Tensor | None, x_known: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """The start of a sampler that restores ``x_known``: ``x_T`` (of ``x_known``'s shape and
    floating dtype: a ``TypeError`` naming both otherwise, since the known pixels pasted or
    pulled in would change the state's dtype on the way) or a draw ``N(0, I)`` of that shape,
    dtype and device."""
    if isinstance(x_T, torch.Tensor) and x_T.shape != x_known.shape:
        raise ValueError(
            f"x_T must have x_known's shape {tuple(x_known.shape)}, got {tuple(x_T.shape)}"
        )
    if isinstance(x_T, torch.Tensor) and x_T.is_floating_point() and x_T.dtype != x_known.dtype:
        raise TypeError(
            f"x_T must have x_known's dtype {x_known.dtype}, got {x_T.dtype} "
            f"(pass x_T.to({x_known.dtype}), or x_known in the dtype to sample in)"
        )
    shape = tuple(x_known.shape)
    return draw_start(x_T, shape, generator=generator, device=x_known.device, dtype=x_known.dtype)


@register_sampler("repaint")
def repaint_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    **kwargs: Any,
) -> torch.Tensor:
    """:func:`inpaint_sample` with ``method="repaint"`` (RePaint, Lugmayr et al. 2022); the other
    keyword arguments are :func:`inpaint_sample`'s. ``method`` is not one of them (a
    ``TypeError``): call :func:`inpaint_sample` to choose the method."""
    if "method" in kwargs:
        raise TypeError(
            f"repaint_sample always uses method='repaint', got method={kwargs['method']!r}; "
            "call inpaint_sample(..., method=...) to choose the method"
        )
    return inpaint_sample(eps_model, schedule, x_known, mask, method="repaint", **kwargs)
