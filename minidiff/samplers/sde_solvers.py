"""Numerical solvers for the reverse SDE and the probability-flow ODE (chapter 7).

Time runs from ``t = 1`` down to ``t_end`` (``sde.t_min`` by default) on the uniform grid
``t_0 = 1 > t_1 > … > t_N = t_end`` with signed steps ``dt = t_{i+1} - t_i < 0``.

    Euler–Maruyama   x_{i+1} = x_i + F(x_i, t_i) dt + g(t_i) sqrt(|dt|) z       F = f - g² score
    Euler (ODE)      x_{i+1} = x_i + F(x_i, t_i) dt                               F = f - ½ g² score
    Heun (ODE)       x' = x_i + F(x_i, t_i) dt;  x_{i+1} = x_i + ½ [F(x_i, t_i) + F(x', t_{i+1})] dt
    Predictor–corrector: Langevin corrector steps at t_i, then an Euler–Maruyama predictor
                     (Song et al. 2021, Algorithms 2–3 and Appx. G)

Network (score) evaluations, NFE (see :func:`count_nfe`): Euler–Maruyama and Euler ``steps``;
Heun ``2 · steps`` (no evaluation is shared between steps); RK4 ``4 · steps``;
predictor–corrector ``steps · (1 + corrector_steps)``.

:func:`ode_solve` is the one fixed-step ODE integrator; the PF-ODE samplers and
:mod:`minidiff.likelihood` both use it. Every sampler takes ``score_fn(x (B, ...), t (B,) float)``,
an ``sde`` and the batch ``shape`` (or a start ``x_T``), an explicit ``generator``, ``clip_x0``
(:mod:`minidiff.samplers.clipping`) and ``on_step``, and runs through the one loop of
:mod:`minidiff.samplers.loop`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from .._validation import (
    Check,
    Flag,
    FloatTensor,
    Function,
    Int,
    Number,
    OneOf,
    call_like,
    check_batch_time,
    check_choice,
    checked,
)
from ..sde import SDE, SDE_ARG, ReverseSDE, ScoreFn
from ..tensors import noise_like, pad_like
from .clipping import CLIP_X0, X0Clip, clip_score_fn
from .langevin import langevin_step
from .loop import OnStep, batch_time, draw_start, run_sampler
from .registry import register_sampler

__all__ = [
    "ODE_METHODS",
    "ODESolution",
    "time_grid",
    "euler_step",
    "heun_step",
    "rk4_step",
    "euler_maruyama_step",
    "ode_solve",
    "count_nfe",
    "euler_maruyama_sample",
    "pf_ode_sample",
    "pf_ode_euler_sample",
    "pf_ode_heun_sample",
    "predictor_corrector_sample",
]

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``F(x: (B, ...), t: (B,) float) -> dx/dt: (B, ...)``."""


_UNIT = Number(low=0.0, high=1.0, low_open=False, high_open=False)


@checked(steps=Int(), t_start=_UNIT, t_end=_UNIT)
def time_grid(steps: int, t_start: float = 1.0, t_end: float = 1e-3) -> torch.Tensor:
    """``steps + 1`` evenly spaced float64 times from ``t_start`` to ``t_end`` (either way)."""
    if t_start == t_end:
        raise ValueError(f"t_start and t_end must differ, got both = {t_start}")
    return torch.linspace(float(t_start), float(t_end), steps + 1, dtype=torch.float64)


# ---------------------------------------------------------------------------- one-step rules


def euler_step(
    fn: VectorField, x: torch.Tensor, t: torch.Tensor, dt: float | torch.Tensor
) -> torch.Tensor:
    """Explicit Euler: ``x + F(x, t) dt`` (1 evaluation; ``dt < 0`` integrates backwards)."""
    return x + fn(x, t) * _col(dt, x)


def heun_step(
    fn: VectorField, x: torch.Tensor, t: torch.Tensor, dt: float | torch.Tensor
) -> torch.Tensor:
    """Heun (explicit trapezoid, 2nd order, 2 evaluations):
    ``x + ½ [F(x, t) + F(x + F(x, t) dt, t + dt)] dt``."""
    d = _col(dt, x)
    k1 = fn(x, t)
    k2 = fn(x + k1 * d, t + dt)
    return x + 0.5 * (k1 + k2) * d


def rk4_step(
    fn: VectorField, x: torch.Tensor, t: torch.Tensor, dt: float | torch.Tensor
) -> torch.Tensor:
    """Classical 4th-order Runge–Kutta step (4 evaluations)."""
    d = _col(dt, x)
    k1 = fn(x, t)
    k2 = fn(x + 0.5 * d * k1, t + 0.5 * dt)
    k3 = fn(x + 0.5 * d * k2, t + 0.5 * dt)
    k4 = fn(x + d * k3, t + dt)
    return x + d / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


ODE_METHODS: dict[str, tuple[Callable[..., torch.Tensor], int]] = {
    "euler": (euler_step, 1),
    "heun": (heun_step, 2),
    "rk4": (rk4_step, 4),
}
"""method name -> (step function, evaluations of F per step)."""


@checked(rsde=ReverseSDE, x=FloatTensor(), noise=FloatTensor(like="x"))
def euler_maruyama_step(
    rsde: ReverseSDE,
    x: torch.Tensor,
    t: torch.Tensor,
    dt: float | torch.Tensor,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler–Maruyama step of ``rsde`` from ``t`` to ``t + dt`` (``dt < 0`` backwards in time).

    ``mean = x + F(x, t) dt`` and ``x_next = mean + g(t) sqrt(|dt|) z``. Returns ``(x_next, mean)``;
    samplers return the mean after the last step (Song et al.'s "denoising" of the final step).
    """
    return _euler_maruyama_step(rsde, x, check_batch_time(x, t), dt, noise)


def _euler_maruyama_step(
    rsde: ReverseSDE,
    x: torch.Tensor,
    t: torch.Tensor,
    dt: float | torch.Tensor,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`euler_maruyama_step` without checks, for the samplers' loops (``t``: ``(B,)``)."""
    d = _col(dt, x)
    mean = x + ReverseSDE.drift.unchecked(rsde, x, t) * d
    g = rsde.sde._diffusion(t.clamp(0.0, 1.0))
    if rsde.probability_flow:
        g = torch.zeros_like(g)
    g = g.expand(x.shape[0]) if g.dim() == 0 else g
    return mean + _col(g, x) * d.abs().sqrt() * noise, mean


def _col(v: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A number or a ``(B,)`` tensor as ``(B, 1, …, 1)`` (or a scalar tensor) in ``x``'s dtype."""
    return pad_like(torch.as_tensor(v, dtype=x.dtype, device=x.device), x)


# ---------------------------------------------------------------------------- the integrator


@dataclass
class ODESolution:
    """What :func:`ode_solve` returns: the state at ``ts[-1]`` and the number of evaluations."""

    x: torch.Tensor
    nfe: int = 0


def _grid(ts: object, name: str) -> list[float]:
    """A strictly monotone 1-D floating tensor of at least 2 finite times, as a list of floats."""
    if not isinstance(ts, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D floating tensor of times, got {type(ts).__name__}")
    if not ts.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor of continuous times, got dtype {ts.dtype}"
        )
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(
            f"{name} must be a 1-D tensor of at least 2 times, got shape {tuple(ts.shape)}"
        )
    grid = ts.to(torch.float64).tolist()  # one read; the loop then reads nothing per step
    if not all(math.isfinite(v) for v in grid):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    dts = [b - a for a, b in zip(grid[:-1], grid[1:], strict=True)]
    if not (all(d > 0 for d in dts) or all(d < 0 for d in dts)):
        raise ValueError(
            f"{name} must be strictly monotone "
            "(decreasing for sampling, increasing for likelihoods)"
        )
    return grid


@checked(
    fn=Function("(x, t) -> dx/dt"),
    x=FloatTensor(finite=True),
    ts=Check(_grid),
    method=OneOf(tuple(ODE_METHODS)),
)
def ode_solve(
    fn: VectorField,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    method: str = "heun",
    name: str = "ode_solve",
    on_step: OnStep | None = None,
    progress: bool = False,
) -> ODESolution:
    """Integrate ``dx/dt = F(x, t)`` with a fixed-step method over the time grid ``ts``.

    Args:
        fn: ``F(x (B, ...), t (B,) float64) -> (B, ...)``.
        x: the state at ``ts[0]``, ``(B, ...)``.
        ts: ``(N + 1,)`` monotone float times (decreasing for sampling, increasing for
            likelihoods).
        method: ``"euler"``, ``"heun"`` or ``"rk4"`` (see ``ODE_METHODS``).
        name: used in the error raised when the state becomes NaN/inf (which names the step).
        on_step: called with the start and the state at each grid time.
    Returns:
        :class:`ODESolution` with ``x`` at ``ts[-1]`` and ``nfe`` (evaluations of ``fn``).
    """
    grid: list[float] = ts  # type: ignore[assignment]  # @checked made it a list of floats
    step_fn, per_step = ODE_METHODS[method]

    def step(x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
        tt = batch_time(x, t, torch.float64)
        return step_fn(lambda x_, t_: call_like(fn, x_, t_, name="fn"), x, tt, t_next - t)

    times = list(zip(grid[:-1], grid[1:], strict=True))
    x = run_sampler(step, x, times, name=name, on_step=on_step, progress=progress)
    return ODESolution(x=x, nfe=per_step * len(times))


@checked(steps=Int(), corrector_steps=Int(minimum=0))
def count_nfe(sampler: str, steps: int, corrector_steps: int = 1) -> int:
    """Score evaluations of a sampler of this module: ``steps`` (EM, Euler), ``2 steps`` (Heun),
    ``steps (1 + corrector_steps)`` (predictor–corrector)."""
    per = {"euler_maruyama": 1, "pf_ode_euler": 1, "pf_ode_heun": 2, "pf_ode_rk4": 4}
    check_choice(sampler, "sampler", sorted([*per, "predictor_corrector"]))
    if sampler == "predictor_corrector":
        return steps * (1 + corrector_steps)
    return steps * per[sampler]


# ---------------------------------------------------------------------------- samplers


def _start(
    sde: SDE,
    shape: tuple[int, ...] | None,
    x_T: torch.Tensor | None,
    steps: int,
    t_end: float | None,
    *,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start ``x_1`` (``x_T`` or a prior draw) and the float64 grid ``1 = t_0 > … > t_N =
    t_end``."""
    grid = time_grid(steps, 1.0, sde.t_min if t_end is None else t_end)

    def prior(
        size: tuple[int, ...], g: torch.Generator | None, dt: torch.dtype, dev: torch.device
    ) -> torch.Tensor:
        return sde.prior_sampling(size, g, dtype=dt, device=dev)

    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype, prior=prior)
    return x, grid


_T_END = Number(low=0.0, high=1.0, low_open=False, optional=True)

_SDE_SAMPLER = dict(score_fn=Function("(x, t) -> score"), sde=SDE_ARG, steps=Int())
"""The checks of the arguments every sampler of this module starts with."""


_PF_ODE_OPTIONS = dict(t_end=_T_END, clip_x0=CLIP_X0)
"""The checks of :func:`pf_ode_sample`'s options that its fixed-method forms share."""


@checked(
    **_SDE_SAMPLER,
    method=OneOf(tuple(ODE_METHODS)),
    **_PF_ODE_OPTIONS,
)
def pf_ode_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int,
    method: str = "heun",
    t_end: float | None = None,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Integrate the probability-flow ODE ``dx/dt = f - ½ g² score`` from ``t = 1`` to ``t_end``.

    Deterministic given ``x_1 ~`` prior (the only randomness, drawn from ``generator``), or given
    ``x_T`` (a start ``x_1`` of shape ``(B, ...)``; then nothing is drawn and ``shape`` may be
    omitted, e.g. to decode latents found by integrating the same ODE forwards in time; the ODE
    then runs in ``x_T``'s dtype, and ``dtype`` must be None or equal, a ``ValueError``
    otherwise; without ``x_T`` the prior is drawn in ``dtype``, None meaning ``torch.float32``).
    ``method``: ``"euler"`` (NFE = ``steps``), ``"heun"`` (``2 steps``) or ``"rk4"`` (``4 steps``).
    ``clip_x0`` (None, ``"static"``, ``"dynamic"`` or a map ``x̂₀ -> x̂₀``; for images in
    ``[-1, 1]``): the ODE is driven by the score of the clipped ``x̂₀ = (x + σ² score) / α``
    (:func:`~minidiff.samplers.clipping.clip_score_fn`). Returns ``x`` at ``t_end``.

    ``t_end = 0``: Euler never evaluates the score at ``t_end``; Heun and RK4 do, where
    ``sigma(0) = 0``. There a clipped score ``(α clip(x̂₀) - x) / σ²`` is 0/0, so ``t_end = 0``
    with ``clip_x0`` and ``"heun"``/``"rk4"`` is refused (``ValueError``, before any work); an
    unclipped score must be finite at ``t = 0`` (an exact oracle such as
    :func:`~minidiff.sde.score_fn_from_mixture` is, an ε-model's ``-ε/σ(t)`` is not: the last
    step then raises :class:`~minidiff.samplers.loop.NonFiniteSampleError`).
    """
    if t_end == 0.0 and clip_x0 is not None and method != "euler":
        raise ValueError(
            f"t_end must be > 0 with clip_x0 and method={method!r}: its last step evaluates the "
            "clipped score at t_end, (alpha clip(x0) - x) / sigma^2 with sigma(0) = 0; leave "
            "t_end=None (sde.t_min) or use Euler steps (method='euler', pf_ode_euler_sample)"
        )
    name = f"pf_ode_sample ({method})"
    x, ts = _start(sde, shape, x_T, steps, t_end, generator=generator, device=device, dtype=dtype)
    rsde = sde.reverse(clip_score_fn(score_fn, sde._marginal, clip_x0), probability_flow=True)
    return ode_solve(
        partial(ReverseSDE.drift.unchecked, rsde),
        x,
        ts,
        method=method,
        name=name,
        on_step=on_step,
        progress=progress,
    ).x


@register_sampler("pf_ode_euler")
@checked(**_SDE_SAMPLER, **_PF_ODE_OPTIONS)
def pf_ode_euler_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int,
    t_end: float | None = None,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """:func:`pf_ode_sample` with Euler steps (NFE = ``steps``); the same arguments but
    ``method`` (fixed: call :func:`pf_ode_sample` to choose it)."""
    return pf_ode_sample.unchecked(
        score_fn, sde, shape, x_T=x_T, steps=steps, method="euler", t_end=t_end, clip_x0=clip_x0,
        generator=generator, device=device, dtype=dtype, on_step=on_step, progress=progress,
    )  # fmt: skip


@register_sampler("pf_ode_heun")
@checked(**_SDE_SAMPLER, **_PF_ODE_OPTIONS)
def pf_ode_heun_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int,
    t_end: float | None = None,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """:func:`pf_ode_sample` with Heun steps (NFE = ``2 · steps``); the same arguments but
    ``method`` (fixed: call :func:`pf_ode_sample` to choose it)."""
    return pf_ode_sample.unchecked(
        score_fn, sde, shape, x_T=x_T, steps=steps, method="heun", t_end=t_end, clip_x0=clip_x0,
        generator=generator, device=device, dtype=dtype, on_step=on_step, progress=progress,
    )  # fmt: skip


@register_sampler("predictor_corrector")
@checked(
    **_SDE_SAMPLER,
    corrector_steps=Int(minimum=0),
    snr=Number(low=0.0),
    t_end=_T_END,
    denoise=Flag,
    clip_x0=CLIP_X0,
)
def predictor_corrector_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int,
    corrector_steps: int = 1,
    snr: float = 0.16,
    t_end: float | None = None,
    denoise: bool = True,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Predictor–corrector sampler (Song et al. 2021, Alg. 2–3): NFE = steps (1 + corrector_steps).

    At each ``t_i``: ``corrector_steps`` Langevin steps on ``p_{t_i}`` (:func:`langevin_step`,
    ``x + (h/2) s + sqrt(h) z``), then one Euler–Maruyama predictor step to ``t_{i+1}``: corrector
    first, the order of the authors' code (``score_sde``, ``sampling.py``, ``pc_sampler``); the
    paper's Algorithms 2–3 write the predictor first. The two orders differ only at the ends
    (corrector-first corrects the prior draw at ``t = 1`` and not after the last predictor). The
    step is set by the signal-to-noise ratio ``snr`` as in Song et al.'s code:
    ``h = 4 α_i (snr · ‖z‖ / ‖s‖)²`` (their step ``2 α (snr ‖z‖/‖s‖)²`` in the
    ``x + τ s + sqrt(2τ) z`` convention), with norms averaged over the batch and
    ``α_i = (alpha(t_i) / alpha(t_{i+1}))²`` (``1 - β_i`` for the VP-SDE, 1 for the VE-SDE).
    ``corrector_steps=0`` is :func:`euler_maruyama_sample`.

    Args:
        score_fn: ``(x (B, ...), t (B,) float) -> score (B, ...)``.
        sde: the forward SDE (its prior gives ``x_1``).
        shape: batch shape, e.g. ``(2000, 2)``; may be omitted when ``x_T`` is given.
        x_T: a given start ``x_1`` ``(B, ...)`` instead of a prior draw (the sampler runs in its
            dtype and on its device, and ``generator`` draws only the per-step noise).
        steps: number of steps from ``t = 1`` to ``t_end`` (default ``sde.t_min``).
        denoise: return the mean of the last step (no noise added at the end).
        clip_x0: clip the score's ``x̂₀`` (:func:`~minidiff.samplers.clipping.clip_score_fn`).
        dtype: dtype of the drawn start (None: ``torch.float32``); with ``x_T`` it must be None or
            ``x_T``'s dtype (a ``ValueError`` otherwise: the sampler runs in ``x_T``'s dtype).
        on_step: called with ``x_1`` and the state at each grid time.
    Returns:
        ``x`` at ``t_end``.
    """
    name = "predictor_corrector_sample" if corrector_steps else "euler_maruyama_sample"
    x, grid = _start(sde, shape, x_T, steps, t_end, generator=generator, device=device, dtype=dtype)
    rsde = sde.reverse(clip_score_fn(score_fn, sde._marginal, clip_x0))
    g = grid.tolist()
    times = list(zip(g[:-1], g[1:], strict=True))
    alphas = sde._marginal(grid)[0]
    # α_i = (alpha(t_i) / alpha(t_{i+1}))² = 1 - β_i <= 1, as in Song et al.
    ratio = dict(zip(grid[:-1].tolist(), ((alphas[:-1] / alphas[1:]) ** 2).tolist(), strict=True))
    t_last = times[-1][1]

    def step(x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
        tt = batch_time(x, t, torch.float64)
        for _ in range(corrector_steps):
            s = ReverseSDE.score.unchecked(rsde, x, tt)
            z = noise_like(x, generator)
            s_norm = s.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            h = 4.0 * ratio[t] * (snr * z.flatten(1).norm(dim=1).mean() / s_norm) ** 2
            x = langevin_step.unchecked(x, s, h.to(x.dtype), z)
        z = noise_like(x, generator)
        x_next, mean = _euler_maruyama_step(rsde, x, tt, t_next - t, z)
        return mean if (denoise and t_next == t_last) else x_next

    return run_sampler(step, x, times, name=name, on_step=on_step, progress=progress)


@register_sampler("euler_maruyama")
@checked(**_SDE_SAMPLER, t_end=_T_END, denoise=Flag, clip_x0=CLIP_X0)
def euler_maruyama_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    steps: int,
    t_end: float | None = None,
    denoise: bool = True,
    clip_x0: str | X0Clip | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Euler–Maruyama on the reverse SDE ``dx = [f - g² score] dt + g dw̄`` (NFE = ``steps``).

    :func:`predictor_corrector_sample` without corrector steps, with its arguments but
    ``corrector_steps`` and ``snr`` (which only the corrector uses; a ``TypeError``): ``score_fn``
    ``(x (B, ...), t (B,) float) -> score (B, ...)``, the forward ``sde`` (its prior gives
    ``x_1``), ``shape`` or a start ``x_T``, ``steps`` from ``t = 1`` to ``t_end`` (default
    ``sde.t_min``), ``denoise`` (return the mean of the last step), ``clip_x0``, ``generator``,
    ``device``, ``dtype``, ``on_step``, ``progress``.
    """
    return predictor_corrector_sample.unchecked(
        score_fn, sde, shape, x_T=x_T, steps=steps, corrector_steps=0, t_end=t_end,
        denoise=denoise, clip_x0=clip_x0, generator=generator, device=device, dtype=dtype,
        on_step=on_step, progress=progress,
    )  # fmt: skip
