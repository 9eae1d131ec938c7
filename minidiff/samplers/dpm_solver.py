"""Exponential-integrator solvers of the probability-flow ODE in log-SNR: DPM-Solver++ (Lu et al.
2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models").

With ``x_t = alpha_t x_0 + sigma_t eps`` and the half log-SNR ``lambda_t = log(alpha_t / sigma_t)``
(``½ log SNR``; it grows as the noise shrinks), the probability-flow ODE written with the data
prediction ``D(x, t) = E[x_0 | x_t = x]`` is *linear* in ``x`` up to ``D``. Variation of constants
solves the linear part exactly, from ``t`` to an earlier ``s`` (``h = lambda_s - lambda_t > 0``):

    x_s = (sigma_s / sigma_t) x_t + sigma_s ∫_{lambda_t}^{lambda_s} e^{lambda} D(x_lambda) dlambda

Only the integral of ``D`` is approximated:

    order 1 (D constant)        x_s = (sigma_s/sigma_t) x_t + alpha_s (1 - e^{-h}) D_t     (= DDIM)
    2M (multistep, Alg. 2)      D  = (1 + 1/(2r)) D_t - 1/(2r) D_last,   r = h_last / h
                                with D_last from the previous, noisier step (no extra call)
    Heun in log-SNR (2S-like)   D  = ½ (D_t + D(x̃_s, s)),   x̃_s the order-1 step (2 calls)

``h_last = lambda_t - lambda_last`` is the previous step's length *in lambda*, not in t. The first
step has no ``D_last`` and the last step (to ``t = 0``, where ``sigma = 0`` and ``h = ∞``) takes the
order-1 update, which returns ``D_t`` itself: both are order 1, as in the authors' code and in
``diffusers``' ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2,
final_sigmas_type="zero")``.

Discrete time: ``t`` in ``1..T`` on a :class:`~minidiff.schedules.NoiseSchedule`
(``alpha_t = sqrt(alpha_bar_t)``), ``t = 0`` the clean end; the model is an
``eps_model(x_t (B, ...), t (B,) long)`` and ``D = (x_t - sigma_t eps) / alpha_t``. Timesteps are
those of DDIM (:func:`~minidiff.samplers.ddim.ddim_timesteps`, trailing spacing). Network calls:
``steps`` for 2M, ``2 steps - 1`` for Heun (the last step has no second call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._validation import (
    FloatTensor,
    Function,
    Int,
    OneOf,
    Timesteps,
    check_timesteps,
    checked,
)
from ..diffusion import EpsModel, call_eps_model, predict_x0_from_eps
from ..schedules import NoiseSchedule
from ..tensors import pad_like
from .clipping import CLIP_X0, X0Clip, apply_clip, resolve_clip
from .ddim import T_PREV, ddim_timesteps, resolve_timesteps
from .loop import OnStep, batch_time, draw_start, run_sampler
from .registry import register_sampler

__all__ = [
    "SPACINGS",
    "half_log_snr",
    "log_snr_timesteps",
    "solver_timesteps",
    "data_prediction",
    "first_order_update",
    "dpm_solver_step",
    "heun_log_snr_step",
    "dpm_solver_sample",
    "heun_log_snr_sample",
]

SPACINGS = ("log_snr", "trailing")
"""Timestep spacings of the solvers: even in ``lambda`` (default) or DDIM's even in ``t``."""


@checked(schedule=NoiseSchedule)
def half_log_snr(schedule: NoiseSchedule) -> torch.Tensor:
    """``lambda_t = log(alpha_t / sigma_t) = ½ log(alpha_bar_t / (1 - alpha_bar_t))``, float64
    ``(T + 1,)``; ``lambda_0 = +inf`` (no noise)."""
    return 0.5 * schedule.log_snr


@checked(schedule=NoiseSchedule, steps=Int(), t_min=Int())
def log_snr_timesteps(schedule: NoiseSchedule, steps: int, t_min: int = 1) -> torch.Tensor:
    """``steps`` decreasing timesteps from ``T`` to ``t_min`` evenly spaced in ``lambda``.

    The solvers' local error is a function of the step ``h`` in ``lambda``, so equal ``h`` spreads
    it evenly (Lu et al. 2022, "logSNR" steps). Each target ``lambda`` is rounded to the nearest
    integer timestep, then the smallest ones are pushed apart so that the sequence stays strictly
    decreasing (``steps == T - t_min + 1`` gives every timestep). The sampler's last step jumps
    from ``t_min`` to 0; ``steps = 1`` is the single jump ``T -> 0``. Returns a long tensor
    ``(steps,)``.
    """
    if t_min > schedule.T:
        raise ValueError(f"t_min must be <= T={schedule.T}, got {t_min}")
    if steps > schedule.T - t_min + 1:
        raise ValueError(
            f"steps must be <= T - t_min + 1 = {schedule.T - t_min + 1} (distinct timesteps), "
            f"got {steps}"
        )
    if steps == 1:
        return torch.tensor([schedule.T])
    lam = 0.5 * schedule.log_snr[1:]  # lam[t - 1], decreasing in t
    targets = torch.linspace(float(lam[-1]), float(lam[t_min - 1]), steps, dtype=torch.float64)
    ts = ((lam[None, :] - targets[:, None]).abs().argmin(dim=1) + 1).tolist()
    ts[0], ts[-1] = schedule.T, t_min
    for k in range(steps - 2, 0, -1):  # keep them distinct where lambda is steep (small t)
        ts[k] = max(ts[k], ts[k + 1] + 1)
    for k in range(1, steps):  # and below T (feasible since steps <= T - t_min + 1)
        ts[k] = min(ts[k], ts[k - 1] - 1)
    return torch.tensor(ts)


@checked(schedule=NoiseSchedule, steps=Int(), spacing=OneOf(SPACINGS))
def solver_timesteps(schedule: NoiseSchedule, steps: int, spacing: str = "log_snr") -> torch.Tensor:
    """:func:`log_snr_timesteps` (``"log_snr"``) or :func:`~minidiff.samplers.ddim.ddim_timesteps`
    (``"trailing"``) for ``steps`` steps."""
    if spacing == "trailing":
        return ddim_timesteps(schedule, steps)
    return log_snr_timesteps.unchecked(schedule, steps)


def _timesteps(
    schedule: NoiseSchedule, steps: object, timesteps: object, spacing: str
) -> torch.Tensor:
    if timesteps is None and steps is not None:
        return solver_timesteps(schedule, steps, spacing)  # type: ignore[arg-type]
    if timesteps is not None and spacing != "log_snr":  # it would be silently ignored
        raise ValueError(
            f"spacing chooses the timesteps of steps=; it cannot apply to explicit timesteps, "
            f"got spacing={spacing!r} with timesteps"
        )
    return resolve_timesteps(schedule, steps, timesteps)


def _solver_steps(
    schedule: NoiseSchedule, steps: object, timesteps: object, spacing: str
) -> list[tuple[int, int]]:
    """The ``(t, s)`` pairs of a solver's steps: from each of its timesteps to the next, and from
    the last one to ``t = 0``."""
    ts = _timesteps(schedule, steps, timesteps, spacing).tolist()
    return list(zip(ts, ts[1:] + [0], strict=True))


_X = FloatTensor(finite=True)


data_prediction = predict_x0_from_eps
"""``D = x̂_0 = (x_t - sigma_t eps) / alpha_t``: the data prediction the solvers integrate (Lu et
al.'s name for :func:`~minidiff.diffusion.predict_x0_from_eps`)."""


def denoise(
    eps_model: EpsModel,
    x: torch.Tensor,
    tt: torch.Tensor,
    s: NoiseSchedule,
    name: str = "eps_model",
) -> torch.Tensor:
    """``D(x, t)``: one network call and its data prediction (unchecked, for the solvers' loops).

    ``x: (B, ...)``, ``tt: (B,)`` long; ``name`` is the model's name in a shape error."""
    eps = call_eps_model.unchecked(eps_model, x, tt, name)
    return predict_x0_from_eps.unchecked(x, tt, eps, s)


def first_order_update(
    x: torch.Tensor, tt: torch.Tensor, tp: torch.Tensor, d: torch.Tensor, s: NoiseSchedule
) -> torch.Tensor:
    """The first-order DPM-Solver++ update from ``t`` to ``s`` with the data prediction ``d``:
    ``(sigma_s / sigma_t) x + alpha_s (1 - e^{-h}) d`` (Lu et al. 2022, Eq. 5 at order 1; the
    DDIM step when ``d`` is x̂₀). ``e^{-h} = sigma_s alpha_t / (alpha_s sigma_t)`` is formed from
    the ratios, so ``s = 0`` (``h = ∞``) needs no infinity.

    ``x, d: (B, ...)``, ``tt, tp: (B,)`` long timesteps ``t`` and ``s``; ``s`` the schedule.
    Unchecked: the samplers and the consistency models call it inside their checked loops.
    """
    a, sig = s.sqrt_alpha_bar.to(tt.device), s.sqrt_one_minus_alpha_bar.to(tt.device)
    exp_neg_h = sig[tp] * a[tt] / (a[tp] * sig[tt])
    return pad_like(sig[tp] / sig[tt], x) * x + pad_like(a[tp] * (1 - exp_neg_h), x) * d


def _multistep_d(
    d: torch.Tensor,
    d_last: torch.Tensor,
    tl: torch.Tensor,
    tt: torch.Tensor,
    tp: torch.Tensor,
    s: NoiseSchedule,
) -> torch.Tensor:
    """``(1 + 1/(2r)) D_t - 1/(2r) D_last`` with ``r = h_last / h`` in lambda; rows stepping to
    ``t = 0`` keep ``D_t`` (order 1)."""
    lam = 0.5 * s.log_snr.to(tt.device)
    final = tp == 0
    h = torch.where(final, torch.ones_like(lam[tt]), lam[tp.clamp(min=1)] - lam[tt])
    r = (lam[tt] - lam[tl]) / h
    c = torch.where(final, torch.zeros_like(r), 0.5 / r)
    return d + pad_like(c, d) * (d - d_last)


@checked(
    x_t=_X,
    t=Timesteps(of="x_t"),
    t_prev=T_PREV,
    x0=FloatTensor(like="x_t", finite=True),
    schedule=NoiseSchedule,
    x0_last=FloatTensor(like="x_t", finite=True, optional=True),
)
def dpm_solver_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    x0_last: torch.Tensor | None = None,
    t_last: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """One DPM-Solver++ step ``x_t -> x_{t_prev}`` (Lu et al. 2022, Alg. 2: "2M").

    ``x0 = D(x_t, t)`` is the model's data prediction at this step. Without ``x0_last`` (the first
    step) the step is order 1, ``(sigma_s/sigma_t) x_t + alpha_s (1 - e^{-h}) x0``, which is DDIM
    (η = 0). With the previous step's prediction ``x0_last = D(x_{t_last}, t_last)``
    (``t_last > t``) it uses ``D = (1 + 1/(2r)) x0 - 1/(2r) x0_last``, ``r = h_last / h``, both
    lengths in ``lambda = log(alpha/sigma)``; a step to ``t_prev = 0`` stays order 1 (it returns
    ``x0``).

    Shapes: ``x_t, x0, x0_last: (B, ...)``; ``t, t_prev, t_last: (B,)`` long (or ints) with
    ``t_last > t > t_prev >= 0``.
    """
    tt = torch.as_tensor(t)
    tp = torch.as_tensor(t_prev)  # @checked made it a long tensor (B,) below t
    if (x0_last is None) != (t_last is None):
        raise TypeError("give x0_last and t_last together (or neither, for the first step)")
    d = x0
    if x0_last is not None:
        tl = check_timesteps(t_last, x_t.shape[0], schedule.T, "t_last").to(x_t.device)
        if bool((tl <= tt).any()):
            raise ValueError(
                "t_last must be larger than t for every sample (the previous, noisier step)"
            )
        d = _multistep_d(x0, x0_last, tl, tt, tp, schedule)
    return first_order_update(x_t, tt, tp, d, schedule)


@checked(
    x_t=_X,
    t=Timesteps(of="x_t"),
    t_prev=T_PREV,
    x0=FloatTensor(like="x_t", finite=True),
    x0_next=FloatTensor(like="x_t", finite=True),
    schedule=NoiseSchedule,
)
def heun_log_snr_step(
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    x0: torch.Tensor,
    x0_next: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """The corrector of Heun's method in log-SNR: ``(sigma_s/sigma_t) x_t + alpha_s (1 - e^{-h})
    · ½ (x0 + x0_next)``.

    ``x0 = D(x_t, t)``; ``x0_next = D(x̃_s, s)`` at the order-1 prediction
    ``x̃_s = dpm_solver_step(x_t, t, s, x0, schedule)``: the trapezoidal rule for the integral of
    ``D`` in lambda (DPM-Solver++(2S) with its intermediate point at the step's end).
    ``t_prev`` must be ``>= 1`` (there is no model call at ``t = 0``; the sampler's last step is
    order 1). Shapes as in :func:`dpm_solver_step`.
    """
    tt = torch.as_tensor(t)
    tp = torch.as_tensor(t_prev)  # @checked made it a long tensor (B,) below t
    if bool((tp == 0).any()):
        raise ValueError(
            "t_prev must be >= 1 for a Heun step (the model is not called at t = 0); "
            "take the order-1 step dpm_solver_step to t_prev = 0"
        )
    return first_order_update(x_t, tt, tp, 0.5 * (x0 + x0_next), schedule)


# ---------------------------------------------------------------------------- samplers


def _data_prediction(
    eps_model: EpsModel, sched: NoiseSchedule, clip_x0: object
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``D(x, t) = x̂₀``, mapped by ``clip_x0`` (the solvers' data prediction)."""
    clip = resolve_clip(clip_x0)

    def d(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = denoise(eps_model, x, t, sched)
        return x0 if clip is None else apply_clip(clip, x0)

    return d


_SOLVER = dict(
    eps_model=Function("(x_t, t) -> eps"), schedule=NoiseSchedule, spacing=OneOf(SPACINGS)
)


@register_sampler("dpm_solver++")
@checked(**_SOLVER, order=Int(minimum=1, maximum=2), clip_x0=CLIP_X0)
def dpm_solver_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int | None = None,
    order: int = 2,
    spacing: str = "log_snr",
    timesteps: Sequence[int] | torch.Tensor | None = None,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample with DPM-Solver++ on ``steps`` timesteps: one network call per step.

    ``order=2`` is the multistep "2M" solver (order 1 on the first and the last step); ``order=1``
    is DDIM with η = 0, step for step on the same timesteps. ``spacing``: ``"log_snr"`` (even in
    ``lambda``, :func:`log_snr_timesteps`, the default) or ``"trailing"`` (DDIM's
    :func:`~minidiff.samplers.ddim.ddim_timesteps`); ``timesteps`` gives them explicitly (strictly
    decreasing in ``1..T``; the last step goes to 0). Other arguments as in
    :func:`~minidiff.samplers.ddim.ddim_sample` (``x_T`` a given start, ``generator`` draws it
    otherwise; nothing else is random; ``clip_x0`` maps each data prediction ``D = x̂₀`` before
    the solver uses it, so the last step returns the clipped ``x̂₀``). Returns ``x_0`` ``(B, ...)``.
    """
    sched = schedule
    times = _solver_steps(sched, steps, timesteps, spacing)
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)
    data_prediction = _data_prediction(eps_model, sched, clip_x0)
    last: list[tuple[torch.Tensor, torch.Tensor]] = []  # (t_last, D_last) of the previous step

    def step(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
        tt = batch_time(x, t)
        tp = torch.full_like(tt, s)
        d = data_prediction(x, tt)
        step_d = (
            d
            if (order == 1 or not last)
            else _multistep_d(d, last[0][1], last[0][0], tt, tp, sched)
        )
        last[:] = [(tt, d)]
        return first_order_update(x, tt, tp, step_d, sched)

    return run_sampler(step, x, times, name="dpm_solver_sample", on_step=on_step, progress=progress)


@register_sampler("heun_log_snr")
@checked(**_SOLVER, clip_x0=CLIP_X0)
def heun_log_snr_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int | None = None,
    spacing: str = "log_snr",
    timesteps: Sequence[int] | torch.Tensor | None = None,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Heun's method in log-SNR on ``steps`` timesteps: ``2 steps - 1`` network calls.

    Each step takes the order-1 prediction ``x̃_s`` and corrects it with the trapezoid
    ``½ (D_t + D(x̃_s, s))`` (:func:`heun_log_snr_step`); the last step, to ``t = 0``, stays
    order 1. Arguments as in :func:`dpm_solver_sample`.
    """
    sched = schedule
    times = _solver_steps(sched, steps, timesteps, spacing)
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)
    data_prediction = _data_prediction(eps_model, sched, clip_x0)

    def step(x: torch.Tensor, t: int, s: int) -> torch.Tensor:
        tt = batch_time(x, t)
        tp = torch.full_like(tt, s)
        d = data_prediction(x, tt)
        x_pred = first_order_update(x, tt, tp, d, sched)
        if s > 0:
            d_next = data_prediction(x_pred, tp)
            x_pred = first_order_update(x, tt, tp, 0.5 * (d + d_next), sched)
        return x_pred

    return run_sampler(
        step, x, times, name="heun_log_snr_sample", on_step=on_step, progress=progress
    )
