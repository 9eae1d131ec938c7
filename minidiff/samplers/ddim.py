"""DDIM: denoising diffusion implicit models (Song, Meng & Ermon 2021).

A non-Markovian forward process with the same marginals ``q(x_t | x_0)`` as DDPM gives the
reverse step (Eq. 12), for any earlier timestep ``t_prev < t``:

    x0_hat     = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)                      "predicted x_0"
    x_{t_prev} = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma²) eps + sigma z
    sigma(eta) = eta · sqrt((1 - ab_prev) / (1 - ab_t)) · sqrt(1 - ab_t / ab_prev)   (Eq. 16)

``ab`` is ``alpha_bar`` and ``ab_prev = alpha_bar[t_prev]`` (``alpha_bar[0] = 1``, so the last step
``t -> 0`` returns ``x0_hat``). Two knobs cover a family of samplers: the *timesteps* (all ``T..1``
or a strided subset) and ``eta``. With ``eta = 1`` and every timestep, ``sigma² = beta_tilde_t``
and the step *is* ancestral DDPM with ``sigma² = beta_tilde``; with ``eta = 0`` the sampler is
deterministic: an Euler step of the probability-flow ODE in the variables
``(x / sqrt(ab), sqrt(1 - ab) / sqrt(ab))`` (chapter 8).

``diffusers`` calls this ``DDIMScheduler`` (``eta`` has the same meaning; their ``timesteps`` are
our ``t - 1``) and the inversion ``DDIMInverseScheduler``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._validation import (
    Check,
    FloatTensor,
    Function,
    Instance,
    Int,
    Number,
    Rng,
    Timesteps,
    check_timesteps,
    checked,
    index_tensor,
)
from ..diffusion import EpsModel, call_eps_model, predict_x0_from_eps
from ..schedules import NoiseSchedule
from ..tensors import noise_like, pad_like
from .clipping import CLIP_X0, X0Clip, clipped_x0_eps
from .loop import OnStep, batch_time, draw_start, run_sampler
from .registry import register_sampler

__all__ = [
    "ddim_sigma",
    "ddim_step",
    "ddim_sample",
    "ddim_invert",
    "ddim_timesteps",
    "respace_schedule",
    "respace_eps_model",
]


ETA = Number(low=0.0, low_open=False)
"""``eta``: finite and ``>= 0`` (0 = deterministic DDIM, 1 = DDPM)."""


def check_prev_timesteps(
    t_prev: object, tt: torch.Tensor, T: int, name: str = "t_prev"
) -> torch.Tensor:
    """``t_prev`` as a long tensor ``(B,)`` in ``0..T-1`` with ``t_prev < tt`` elementwise (``tt``:
    the step's checked long timesteps ``(B,)``); one host read when all is well."""
    what = f"timesteps in 0..{T - 1}"
    tp = index_tensor(t_prev, name, tt.shape[0], what, device=tt.device)
    if tp.numel() and bool(((tp >= 0) & (tp <= T - 1) & (tp < tt)).all()):
        return tp  # one host read when all is well
    if tp.numel() and (int(tp.min()) < 0 or int(tp.max()) > T - 1):
        raise ValueError(
            f"{name} must lie in 0..{T - 1}, got values in {int(tp.min())}..{int(tp.max())}"
        )
    if bool((tp >= tt).any()):
        raise ValueError(
            f"{name} must be smaller than t for every sample (a DDIM step goes back in time)"
        )
    return tp


def _prev_of_t(t_prev: object, name: str, tt: object, schedule: object) -> object:
    if not isinstance(tt, torch.Tensor) or not isinstance(schedule, NoiseSchedule):
        return t_prev  # the call misses an argument: Python's own TypeError will say which
    return check_prev_timesteps(t_prev, tt, schedule.T, name)


T_PREV = Check(_prev_of_t, uses=("t", "schedule"))
"""``t_prev`` of a step from ``t``: an int or a long tensor ``(B,)`` in ``0..T-1``, ``< t``
elementwise (the body receives a long tensor on ``t``'s device)."""


def _eta_of_step(eta: object, name: str, tt: object, tp: object, schedule: object) -> float:
    value: float = ETA.check(eta, name, None)  # type: ignore[arg-type]
    if (
        value > 0
        and isinstance(tt, torch.Tensor)
        and isinstance(tp, torch.Tensor)
        and isinstance(schedule, NoiseSchedule)
    ):
        # t is in 1..T here on the CPU; on an accelerator its range is read later (clamped: an
        # index out of range would abort the device rather than raise)
        _check_eta_fits(tt.clamp(0, schedule.T), tp, schedule, value, name)
    return value


ETA_OF_STEP = Check(_eta_of_step, uses=("t", "t_prev", "schedule"))
"""``eta`` of one DDIM step: :data:`ETA`, and small enough that ``sigma² <= 1 - alpha_bar[t_prev]``
(always true for ``eta <= 1``)."""


@checked(schedule=NoiseSchedule, eta=ETA)
def ddim_sigma(
    t: torch.Tensor | int, t_prev: torch.Tensor | int, schedule: NoiseSchedule, eta: float
) -> torch.Tensor:
    """``sigma_t(eta) = eta sqrt((1 - ab_prev)/(1 - ab_t)) sqrt(1 - ab_t/ab_prev)`` (Song et al.
    2021, Eq. 16).

    ``t: (B,)`` long in ``1..T`` (or an int), ``t_prev: (B,)`` in ``0..T-1`` with ``t_prev < t``.
    Returns a float64 tensor ``(B,)``. For ``t_prev = t - 1`` and ``eta = 1``,
    ``sigma² = beta_tilde_t``.
    """
    B = (
        t.shape[0]
        if isinstance(t, torch.Tensor)
        else (t_prev.shape[0] if isinstance(t_prev, torch.Tensor) else 1)
    )
    tt = check_timesteps(t, B, schedule.T)
    return _sigma(tt, check_prev_timesteps(t_prev, tt, schedule.T), schedule, eta)


def _sigma(tt: torch.Tensor, tp: torch.Tensor, sched: NoiseSchedule, eta: float) -> torch.Tensor:
    ab = sched.alpha_bar.to(tt.device)
    ab_t, ab_p = ab[tt], ab[tp]
    return eta * ((1 - ab_p) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_p).clamp(min=0.0).sqrt()


@checked(
    x_t=FloatTensor(finite=True),
    t=Timesteps(of="x_t"),
    t_prev=T_PREV,
    eps=FloatTensor(like="x_t", finite=True),
    schedule=NoiseSchedule,
    eta=ETA_OF_STEP,
    noise=FloatTensor(like="x_t", finite=True, optional=True),
    generator=Rng,
    clip_x0=CLIP_X0,
)
def ddim_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    eps: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_x0: str | X0Clip | None = None,
) -> torch.Tensor:
    """One DDIM step ``x_t -> x_{t_prev}`` (Song et al. 2021, Eq. 12) given
    ``eps = eps_theta(x_t, t)``.

    ``x_{t_prev} = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma²) eps + sigma z`` with
    ``x0_hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)`` and ``sigma = ddim_sigma(t, t_prev, eta)``.

    Shapes: ``x_t, eps, noise: (B, ...)``; ``t: (B,)`` long in ``1..T``; ``t_prev: (B,)`` long in
    ``0..T-1`` (ints broadcast). Randomness: when ``eta > 0`` and ``noise`` is None, one ``z`` is
    drawn from ``generator`` (also on the last step, where ``sigma = 0``, so that the draws line up
    with :func:`~minidiff.samplers.ddpm.ddpm_step`); when ``eta = 0`` nothing is drawn.
    ``clip_x0``: the step uses ``clip(x̂₀)`` and the ``ε`` re-derived from it
    (:mod:`minidiff.samplers.clipping`).
    """
    tt: torch.Tensor = t  # type: ignore[assignment]  # @checked made t a long tensor
    tp: torch.Tensor = t_prev  # type: ignore[assignment]  # @checked made t_prev a long tensor
    z = noise if noise is not None else (noise_like(x_t, generator) if eta > 0 else None)
    clip: X0Clip | None = clip_x0  # type: ignore[assignment]  # @checked resolved the name
    x0 = None
    if clip is not None:
        x0, eps = clipped_x0_eps(x_t, tt, eps, schedule, clip)
    return _ddim_step(x_t, tt, tp, eps, schedule, eta=eta, z=z, x0_hat=x0)


def _check_eta_fits(
    tt: torch.Tensor, tp: torch.Tensor, sched: NoiseSchedule, eta: float, name: str = "eta"
) -> None:
    """``sigma² <= 1 - alpha_bar[t_prev]`` for every step (always true for ``eta <= 1``)."""
    ab = sched.alpha_bar.to(tt.device)
    dir_var = 1.0 - ab[tp] - _sigma(tt, tp, sched, eta) ** 2
    if bool((dir_var < -1e-12).any()):
        raise ValueError(
            f"{name}={eta} is too large for this step: sigma² exceeds 1 - alpha_bar[t_prev]"
        )


def _ddim_step(
    x_t: torch.Tensor,
    tt: torch.Tensor,
    tp: torch.Tensor,
    eps: torch.Tensor,
    sched: NoiseSchedule,
    *,
    eta: float,
    z: torch.Tensor | None,
    x0_hat: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 12 from level ``tt`` to level ``tp`` (long tensors; ``z`` None: no noise).

    Also the inversion step (``tp > tt``, ``eta = 0``), and ``tt = 0`` is allowed there
    (``x̂₀ = x`` at ``ᾱ_0 = 1``): the samplers call it inside their loop, after their checks.
    ``x0_hat``: the clipped ``x̂₀`` that ``eps`` was re-derived from (else derived from ``eps``).
    """
    ab_p = sched.alpha_bar.to(tt.device)[tp]
    sigma64 = _sigma(tt, tp, sched, eta) if eta > 0 else torch.zeros_like(ab_p)
    dir_var = (1.0 - ab_p - sigma64**2).clamp(min=0.0)

    if x0_hat is None:
        x0_hat = predict_x0_from_eps.unchecked(x_t, tt, eps, sched)
    x_prev = pad_like(ab_p.sqrt(), x_t) * x0_hat + pad_like(dir_var.sqrt(), x_t) * eps
    return x_prev if z is None else x_prev + pad_like(sigma64, x_t) * z


@checked(schedule=NoiseSchedule, steps=Int())
def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> torch.Tensor:
    """``steps`` evenly strided, strictly decreasing timesteps ``T, T - T/steps, …, T/steps``
    (rounded).

    Returns a long tensor ``(steps,)``. ``steps == T`` gives every timestep ``T, …, 1``;
    ``steps == 1`` gives ``[T]`` (one jump to 0). This is the "trailing" spacing of Lin et al.
    (2024, Table 2): the first step starts from the schedule's own ``x_T`` and the ``steps`` jumps
    (the last one from ``tau_1 ≈ T/steps`` to 0) are equally long, like a uniform grid on
    ``t/T ∈ [0, 1]``. (``schedule.timesteps(steps)`` ends at ``t = 1`` instead, which wastes one
    network call on the tiny jump ``1 -> 0``.)
    """
    if steps > schedule.T:
        raise ValueError(
            f"steps must be <= T={schedule.T} (one network call per timestep), got {steps}"
        )
    k = torch.arange(steps, dtype=torch.float64)
    # the stride T/steps >= 1 keeps the rounded values distinct
    return (schedule.T - k * schedule.T / steps).round().long()


def resolve_timesteps(schedule: NoiseSchedule, steps: object, timesteps: object) -> torch.Tensor:
    """The strictly decreasing long timesteps ``(S,)`` in ``1..T`` (on the CPU) that a strided
    sampler visits: ``timesteps`` checked, or :func:`ddim_timesteps` of ``steps`` (both given: they
    must agree). Neither is a ``TypeError``."""
    if timesteps is None:
        if steps is None:
            raise TypeError("give steps (an int in 1..T) or an explicit timesteps sequence")
        return ddim_timesteps(schedule, steps)  # type: ignore[arg-type]
    if isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}")
    try:
        ts = torch.as_tensor(timesteps)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}") from exc
    if ts.dtype.is_floating_point or ts.dtype == torch.bool or ts.dim() != 1 or ts.numel() < 1:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}")
    ts = ts.long().cpu()
    if int(ts.min()) < 1 or int(ts.max()) > schedule.T:
        raise ValueError(
            f"timesteps must lie in 1..{schedule.T}, got {int(ts.min())}..{int(ts.max())}"
        )
    if ts.numel() > 1 and bool((ts[1:] >= ts[:-1]).any()):
        raise ValueError("timesteps must be strictly decreasing (e.g. 1000, 980, …, 1)")
    if steps is not None:
        if Int().check(steps, "steps", None) != ts.numel():  # type: ignore[arg-type]
            raise ValueError(f"steps={steps} disagrees with len(timesteps)={ts.numel()}")
    return ts


@register_sampler("ddim")
@checked(eps_model=Function("(x_t, t) -> eps"), schedule=NoiseSchedule, eta=ETA, clip_x0=CLIP_X0)
def ddim_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int | None = None,
    timesteps: Sequence[int] | torch.Tensor | None = None,
    eta: float = 0.0,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw ``shape[0]`` samples with ``steps`` DDIM steps (one network call each).

    Args:
        eps_model: callable ``(x_t (B, ...), t (B,) long) -> eps (B, ...)``.
        shape: batch shape, e.g. ``(10_000, 2)``; may be omitted when ``x_T`` is given.
        x_T: a given starting point ``(B, ...)`` at ``t = T`` (e.g. the latents of
            :func:`ddim_invert`) instead of a draw ``x_T ~ N(0, I)``. The sampler then runs in
            ``x_T``'s dtype and on its device (``dtype`` and ``device`` must be None or agree)
            and ``generator`` is used only for the per-step noise when ``eta > 0``.
        steps: number of timesteps, evenly strided ``T .. 1`` (:func:`ddim_timesteps`).
        timesteps: an explicit strictly decreasing sequence in ``1..T`` instead of ``steps``.
        eta: 0 = deterministic DDIM, 1 = ancestral DDPM with ``sigma² = beta_tilde`` on these
            timesteps.
        clip_x0: None (the maths of chapter 8), ``"static"``, ``"dynamic"`` or a map
            ``x̂₀ -> x̂₀``: each step uses the clipped ``x̂₀`` and the ``ε`` re-derived from it
            (:mod:`minidiff.samplers.clipping`; for images in ``[-1, 1]``). ``diffusers``'
            ``DDIMScheduler`` does the same with ``use_clipped_model_output=True``; by default it
            keeps the unclipped ``ε`` in the direction term.
        generator: draws ``x_T`` first, then (only if ``eta > 0``) one ``z`` per step, in the
            same order as :func:`~minidiff.samplers.ddpm.ddpm_sample`.
        dtype: dtype of the drawn start (None: ``torch.float32``); with ``x_T`` it must be None or
            ``x_T``'s dtype (a ``ValueError`` otherwise: the sampler runs in ``x_T``'s dtype).
        on_step: called with the start and each state ``x_{tau_S-1}, …, x_0``
            (:func:`~minidiff.samplers.loop.trajectory` collects them).
    """
    sched = schedule
    ts = resolve_timesteps(sched, steps, timesteps)
    prev = torch.cat([ts[1:], ts.new_zeros(1)])
    _check_eta_fits(ts, prev, sched, eta)
    clip: X0Clip | None = clip_x0  # type: ignore[assignment]  # @checked resolved the name
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)

    def step(x: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        tt = batch_time(x, t)
        tp = batch_time(x, t_next)
        eps = call_eps_model(eps_model, x, tt)
        x0 = None
        if clip is not None:
            x0, eps = clipped_x0_eps(x, tt, eps, sched, clip)
        z = noise_like(x, generator) if eta > 0 else None
        return _ddim_step(x, tt, tp, eps, sched, eta=eta, z=z, x0_hat=x0)

    times = list(zip(ts.tolist(), prev.tolist(), strict=True))
    return run_sampler(step, x, times, name="ddim_sample", on_step=on_step, progress=progress)


@checked(eps_model=Function("(x_t, t) -> eps"), schedule=NoiseSchedule, x0=FloatTensor(finite=True))
def ddim_invert(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    steps: int | None = None,
    timesteps: Sequence[int] | torch.Tensor | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Deterministic DDIM encoding ``x_0 -> x_T`` (the ``eta = 0`` ODE run forwards).

    The ``eta = 0`` step from ``s`` up to ``t > s`` is
    ``x_t = sqrt(ab_t) x0_hat + sqrt(1 - ab_t) eps`` with
    ``x0_hat = (x_s - sqrt(1 - ab_s) eps) / sqrt(ab_s)``. The exact inverse of the sampler's step
    ``t -> s`` would need ``eps_theta(x_t, t)`` at the unknown ``x_t``; we use ``eps_theta(x_s, t)``
    instead (``x_t ≈ x_s`` inside the network, the usual approximation of DDIM inversion), so no
    call at ``t = 0`` is needed and the round-trip error ``|ddim_sample(ddim_invert(x0)) - x0|``
    shrinks as ``steps`` grows.

    Args:
        x0: data ``(B, ...)``.
        steps / timesteps: the same strided set as :func:`ddim_sample` (visited upwards).
        on_step: called with ``x_0`` and each state ``x_{tau_1}, …, x_{tau_S}``.
    Returns:
        ``x_T`` (``(B, ...)``). Decode it with
        ``ddim_sample(eps_model, schedule, steps=steps, x_T=x_T)`` (the same strided steps).
    """
    sched = schedule
    ts = resolve_timesteps(sched, steps, timesteps).flip(0)  # increasing tau_1 < … < tau_S
    prev = torch.cat([ts.new_zeros(1), ts[:-1]])

    def step(x: torch.Tensor, s: int, t: int) -> torch.Tensor:
        ss = batch_time(x, s)
        tt = batch_time(x, t)
        return _ddim_step(x, ss, tt, call_eps_model(eps_model, x, tt), sched, eta=0.0, z=None)

    times = list(zip(prev.tolist(), ts.tolist(), strict=True))
    return run_sampler(step, x0, times, name="ddim_invert", on_step=on_step, progress=progress)


@checked(schedule=NoiseSchedule)
def respace_schedule(
    schedule: NoiseSchedule, timesteps: Sequence[int] | torch.Tensor
) -> NoiseSchedule:
    """The schedule of the sub-chain ``tau_1 < … < tau_S``: ``ab'_i = ab_{tau_i}``,
    ``beta'_i = 1 - ab_{tau_i}/ab_{tau_{i-1}}``.

    ``timesteps`` may be given in either order (values in ``1..T``). DDPM on the respaced schedule
    with ``eps'(x, i) = eps(x, tau_i)`` (:func:`respace_eps_model`) and ``sigma² = beta_tilde`` is
    exactly DDIM with ``eta = 1`` on the strided timesteps (Nichol & Dhariwal 2021, Sec. 4).
    """
    sched = schedule
    if timesteps is None or isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a 1-D sequence of ints in 1..T, got {timesteps!r}")
    try:
        raw = torch.as_tensor(timesteps)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}") from exc
    if raw.dim() == 1 and raw.numel() > 1:
        raw = raw.sort(descending=True).values
        if bool((raw[1:] == raw[:-1]).any()):
            raise ValueError(f"timesteps must not repeat a value, got {timesteps!r}")
    ts = resolve_timesteps(sched, None, raw).flip(0)
    ab = sched.alpha_bar[ts]
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    betas = 1.0 - ab / ab_prev
    if bool((betas >= 1.0).any()):
        raise ValueError(
            f"schedule's alpha_bar is so small at the timesteps {timesteps!r} (alpha_bar_T = "
            f"{float(sched.alpha_bar[-1]):.3g}) that a respaced beta rounds to 1, a step that "
            "destroys all signal: use a schedule whose alpha_bar_T is not negligible"
        )
    return NoiseSchedule(betas)


@checked(eps_model=Function("(x_t, t) -> eps"), schedule=Instance(NoiseSchedule, optional=True))
def respace_eps_model(
    eps_model: EpsModel,
    timesteps: Sequence[int] | torch.Tensor,
    schedule: NoiseSchedule | None = None,
) -> EpsModel:
    """Wrap ``eps_model`` so that step ``i`` of the respaced chain calls it at ``tau_i``
    (increasing order). ``timesteps`` follow :func:`respace_schedule`'s rules (distinct, ``>= 1``;
    given ``schedule``, also ``<= T``, as that function checks)."""
    if timesteps is None or isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a 1-D sequence of ints in 1..T, got {timesteps!r}")
    raw = torch.as_tensor(timesteps)
    if raw.dtype.is_floating_point or raw.dtype == torch.bool or raw.dim() != 1 or raw.numel() < 1:
        raise TypeError(f"timesteps must be a 1-D sequence of ints, got {timesteps!r}")
    ts = raw.long().sort().values
    if bool((ts[1:] == ts[:-1]).any()):
        raise ValueError(f"timesteps must not repeat a value, got {timesteps!r}")
    top = schedule.T if schedule is not None else None
    if int(ts[0]) < 1 or (top is not None and int(ts[-1]) > top):
        raise ValueError(f"timesteps must lie in 1..{top or 'T'}, got {timesteps!r}")
    table = torch.cat([ts.new_zeros(1), ts])

    def eps(x_t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return eps_model(x_t, table.to(i.device)[i])

    return eps
