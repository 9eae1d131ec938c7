"""Numerical solvers for the reverse SDE and the probability-flow ODE (chapter 7).

Time runs from ``t = 1`` down to ``t_end`` (``sde.eps`` by default) on the uniform grid
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
an ``sde`` and the batch ``shape``, an explicit ``generator``, and can return its trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .._validation import (
    call_like,
    check_callable,
    check_choice,
    check_device,
    check_float_dtype,
    check_generator,
    check_positive_int,
    check_tensor,
)
from ..sde import SDE, ReverseSDE, ScoreFn, _batch_time
from ._start import check_start, check_start_device
from .clipping import clip_score_fn
from .ddpm import NonFiniteSampleError
from .langevin import _langevin_step
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


def time_grid(steps: int, t_start: float = 1.0, t_end: float = 1e-3) -> torch.Tensor:
    """``steps + 1`` evenly spaced float64 times from ``t_start`` to ``t_end`` (either way)."""
    steps = check_positive_int(steps, "steps")
    for name, v in (("t_start", t_start), ("t_end", t_end)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= float(v) <= 1.0):
            raise ValueError(f"{name} must be a float in [0, 1], got {v!r}")
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
    if not isinstance(rsde, ReverseSDE):
        raise TypeError(
            f"rsde must be a ReverseSDE (sde.reverse(score_fn)), got {type(rsde).__name__}"
        )
    check_tensor(x, "x")
    check_tensor(noise, "noise")
    if noise.shape != x.shape:
        raise ValueError(
            f"noise must have the shape of x {tuple(x.shape)}, got {tuple(noise.shape)}"
        )
    return _euler_maruyama_step(rsde, x, _batch_time(x, t), dt, noise)


def _euler_maruyama_step(
    rsde: ReverseSDE,
    x: torch.Tensor,
    t: torch.Tensor,
    dt: float | torch.Tensor,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`euler_maruyama_step` without checks, for the samplers' loops (``t``: ``(B,)``)."""
    d = _col(dt, x)
    mean = x + rsde._drift_unchecked(x, t) * d
    g = rsde.sde._diffusion(t.clamp(0.0, 1.0))
    if rsde.probability_flow:
        g = torch.zeros_like(g)
    g = g.expand(x.shape[0]) if g.dim() == 0 else g
    return mean + _col(g, x) * d.abs().sqrt() * noise, mean


def _col(v: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A number or a ``(B,)`` tensor as ``(B, 1, …, 1)`` (or a scalar tensor) in ``x``'s dtype."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return v.reshape(-1, *([1] * (x.dim() - 1))) if v.dim() == 1 else v


# ---------------------------------------------------------------------------- the integrator


@dataclass
class ODESolution:
    """What :func:`ode_solve` returns: final state, states on the grid (if asked), NFE."""

    x: torch.Tensor
    trajectory: list[torch.Tensor] = field(default_factory=list)
    nfe: int = 0


def ode_solve(
    fn: VectorField,
    x: torch.Tensor,
    ts: torch.Tensor,
    *,
    method: str = "heun",
    return_trajectory: bool = False,
    name: str = "ode_solve",
    progress: bool = False,
) -> ODESolution:
    """Integrate ``dx/dt = F(x, t)`` with a fixed-step method over the time grid ``ts``.

    Args:
        fn: ``F(x (B, ...), t (B,) float64) -> (B, ...)``.
        x: the state at ``ts[0]``, ``(B, ...)``.
        ts: ``(N + 1,)`` monotone times (decreasing for sampling, increasing for likelihoods).
        method: ``"euler"``, ``"heun"`` or ``"rk4"`` (see ``ODE_METHODS``).
        name: used in the error raised when the state becomes NaN/inf (which names the step).
    Returns:
        :class:`ODESolution` with ``x`` at ``ts[-1]``, ``trajectory`` ``[x(ts[0]), …, x(ts[-1])]``
        when asked, and ``nfe`` (evaluations of ``fn``).
    """
    check_callable(fn, "fn", "(x, t) -> dx/dt")
    check_choice(method, "method", list(ODE_METHODS))
    check_tensor(x, "x", finite=True)
    if not isinstance(ts, torch.Tensor):
        raise TypeError(f"ts must be a 1-D floating tensor of times, got {type(ts).__name__}")
    if not ts.is_floating_point():
        raise TypeError(f"ts must be a floating tensor of continuous times, got dtype {ts.dtype}")
    if ts.dim() != 1 or ts.numel() < 2:
        raise ValueError(
            f"ts must be a 1-D tensor of at least 2 times, got shape {tuple(ts.shape)}"
        )
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("ts contains non-finite values (NaN or inf)")
    dts = ts[1:] - ts[:-1]
    if not (bool((dts > 0).all()) or bool((dts < 0).all())):
        raise ValueError(
            "ts must be strictly monotone (decreasing for sampling, increasing for likelihoods)"
        )
    step_fn, per_step = ODE_METHODS[method]

    def checked_fn(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:  # no synchronisation
        return call_like(fn, x_, t_, name="fn")

    ts = ts.to(torch.float64)
    B, steps = x.shape[0], ts.numel() - 1
    traj = [x] if return_trajectory else []
    for i in tqdm(range(steps), desc=name, disable=not progress, leave=False):
        t = ts[i].expand(B).to(x.device)
        x = step_fn(checked_fn, x, t, ts[i + 1] - ts[i])
        _check_finite(x, name, i, steps, float(ts[i]))
        if return_trajectory:
            traj.append(x)
    return ODESolution(x=x, trajectory=traj, nfe=per_step * steps)


def _check_finite(x: torch.Tensor, name: str, i: int, steps: int, t: float) -> None:
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteSampleError(
            f"{name} produced non-finite values at step {i + 1} of {steps} (from t={t:.4g})"
        )


def count_nfe(sampler: str, steps: int, corrector_steps: int = 1) -> int:
    """Score evaluations of a sampler of this module: ``steps`` (EM, Euler), ``2 steps`` (Heun),
    ``steps (1 + corrector_steps)`` (predictor–corrector)."""
    steps = check_positive_int(steps, "steps")
    per = {"euler_maruyama": 1, "pf_ode_euler": 1, "pf_ode_heun": 2, "pf_ode_rk4": 4}
    if sampler == "predictor_corrector":
        return steps * (1 + check_positive_int(corrector_steps, "corrector_steps", minimum=0))
    if sampler not in per:
        raise ValueError(
            f"sampler must be one of {sorted([*per, 'predictor_corrector'])}, got {sampler!r}"
        )
    return steps * per[sampler]


# ---------------------------------------------------------------------------- samplers


def _setup(
    sde: SDE,
    shape: tuple[int, ...] | None,
    steps: int,
    t_end: float | None,
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
    x_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The start ``x_1`` (``x_T`` if given, else a prior draw) and the time grid ``1 -> t_end``."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an SDE (VPSDE or VESDE), got {type(sde).__name__}")
    shape = check_start(x_T, shape)
    steps = check_positive_int(steps, "steps")
    check_generator(generator)
    check_float_dtype(dtype)
    device = check_device(device)
    t_end = sde.eps if t_end is None else t_end
    if isinstance(t_end, bool) or not isinstance(t_end, (int, float)) or not (0.0 <= t_end < 1.0):
        raise ValueError(f"t_end must be a float in [0, 1), got {t_end!r}")
    ts = time_grid(steps, 1.0, float(t_end))
    if x_T is not None:
        check_start_device(x_T, device)
        return x_T.detach().clone(), ts
    return sde.prior_sampling(shape, generator, dtype=dtype, device=device), ts


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=dev).to(x.device)


@register_sampler("euler_maruyama")
def euler_maruyama_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    t_end: float | None = None,
    denoise: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Euler–Maruyama on the reverse SDE ``dx = [f - g² score] dt + g dw̄`` (NFE = ``steps``).

    Args:
        score_fn: ``(x (B, ...), t (B,) float) -> score (B, ...)``.
        sde: the forward SDE (its prior gives ``x_1``).
        shape: batch shape, e.g. ``(2000, 2)``.
        steps: number of steps from ``t = 1`` to ``t_end`` (default ``sde.eps``).
        denoise: return the mean of the last step (no noise added at the end).
        return_trajectory: also return ``[x_1, …, x_{t_end}]`` (``steps + 1`` tensors).
        x_T: a given start ``x_1`` ``(B, ...)`` instead of a prior draw (``shape`` may then be
            omitted; the sampler runs in ``x_T``'s dtype and on its device, and ``generator``
            draws only the per-step noise).
    """
    return _reverse_sde_loop(
        "euler_maruyama_sample",
        score_fn,
        sde,
        shape,
        steps,
        0,
        0.0,
        generator,
        return_trajectory,
        t_end,
        denoise,
        device,
        dtype,
        progress,
        x_T,
    )


def pf_ode_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int,
    method: str = "heun",
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    t_end: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    x_T: torch.Tensor | None = None,
    clip_x0: object = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate the probability-flow ODE ``dx/dt = f - ½ g² score`` from ``t = 1`` to ``t_end``.

    Deterministic given ``x_1 ~`` prior (the only randomness, drawn from ``generator``), or given
    ``x_T`` (a start ``x_1`` of shape ``(B, ...)``; then nothing is drawn and ``shape`` may be
    omitted, e.g. to decode latents found by integrating the same ODE forwards in time).
    ``method``: ``"euler"`` (NFE = ``steps``), ``"heun"`` (``2 steps``) or ``"rk4"`` (``4 steps``).
    ``clip_x0`` (None, ``"static"``, ``"dynamic"`` or a map ``x̂₀ -> x̂₀``; for images in
    ``[-1, 1]``): the ODE is driven by the score of the clipped ``x̂₀ = (x + σ² score) / α``
    (:func:`~minidiff.samplers.clipping.clip_score_fn`).
    Returns ``x`` or ``(x, [x_1, …, x_{t_end}])``.
    """
    check_callable(score_fn, "score_fn", "(x, t) -> score")
    check_choice(method, "method", list(ODE_METHODS))
    x, ts = _setup(sde, shape, steps, t_end, generator, device, dtype, x_T)
    score_fn = clip_score_fn(score_fn, sde._marginal, clip_x0)
    rsde = sde.reverse(score_fn, probability_flow=True)
    with torch.no_grad():
        sol = ode_solve(
            rsde._drift_unchecked,
            x,
            ts,
            method=method,
            return_trajectory=return_trajectory,
            name=f"pf_ode_sample ({method})",
            progress=progress,
        )
    return (sol.x, sol.trajectory) if return_trajectory else sol.x


@register_sampler("pf_ode_euler")
def pf_ode_euler_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int,
    **kwargs: object,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`pf_ode_sample` with Euler steps (NFE = ``steps``)."""
    return pf_ode_sample(score_fn, sde, shape, steps=steps, method="euler", **kwargs)  # type: ignore[arg-type]


@register_sampler("pf_ode_heun")
def pf_ode_heun_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int,
    **kwargs: object,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`pf_ode_sample` with Heun steps (NFE = ``2 · steps``)."""
    return pf_ode_sample(score_fn, sde, shape, steps=steps, method="heun", **kwargs)  # type: ignore[arg-type]


@register_sampler("predictor_corrector")
def predictor_corrector_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int,
    corrector_steps: int = 1,
    snr: float = 0.16,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    t_end: float | None = None,
    denoise: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Predictor–corrector sampler (Song et al. 2021, Alg. 2–3): NFE = steps (1 + corrector_steps).

    At each ``t_i``: ``corrector_steps`` Langevin steps on ``p_{t_i}`` (:func:`langevin_step`,
    ``x + (ε/2) s + sqrt(ε) z``), then one Euler–Maruyama predictor step to ``t_{i+1}``: corrector
    first, the order of the authors' code (``score_sde``, ``sampling.py``, ``pc_sampler``); the
    paper's Algorithms 2–3 write the predictor first. The two orders differ only at the ends
    (corrector-first corrects the prior draw at ``t = 1`` and not after the last predictor). The
    step is set by the signal-to-noise ratio ``snr`` as in Song et al.'s code:
    ``ε = 4 α_i (snr · ‖z‖ / ‖s‖)²`` (their step ``2 α (snr ‖z‖/‖s‖)²`` in the
    ``x + τ s + sqrt(2τ) z``
    convention), with norms averaged over the batch and ``α_i = (alpha(t_i) / alpha(t_{i+1}))²``
    (``1 - β_i`` for the VP-SDE, 1 for the VE-SDE). Returns ``x`` or ``(x, [x_1, …])`` (the
    state after each predictor).
    """
    corrector_steps = check_positive_int(corrector_steps, "corrector_steps", minimum=0)
    if (
        isinstance(snr, bool)
        or not isinstance(snr, (int, float))
        or not (math.isfinite(snr) and snr > 0)
    ):
        raise ValueError(f"snr must be a finite number > 0, got {snr!r}")
    return _reverse_sde_loop(
        "predictor_corrector_sample",
        score_fn,
        sde,
        shape,
        steps,
        corrector_steps,
        float(snr),
        generator,
        return_trajectory,
        t_end,
        denoise,
        device,
        dtype,
        progress,
        x_T,
    )


def _reverse_sde_loop(
    name: str,
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...] | None,
    steps: int,
    corrector_steps: int,
    snr: float,
    generator: torch.Generator | None,
    return_trajectory: bool,
    t_end: float | None,
    denoise: bool,
    device: torch.device | str | None,
    dtype: torch.dtype,
    progress: bool,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Euler–Maruyama predictor on the reverse SDE, after ``corrector_steps`` Langevin steps at each
    ``t_i`` (0 for plain Euler–Maruyama). Shared by the two public samplers above."""
    x, ts = _setup(sde, shape, steps, t_end, generator, device, dtype, x_T)
    rsde = sde.reverse(score_fn)
    alphas, _ = sde.marginal_coefficients(ts)
    traj = [x] if return_trajectory else []
    with torch.no_grad():
        for i in tqdm(range(steps), desc=name, disable=not progress, leave=False):
            t = ts[i].expand(x.shape[0]).to(x.device)
            a = float((alphas[i] / alphas[i + 1]) ** 2)  # = 1 - beta_i <= 1, as in Song et al.
            for _ in range(corrector_steps):
                s = rsde._score_unchecked(x, t)
                z = _randn_like(x, generator)
                s_norm = s.flatten(1).norm(dim=1).mean()
                z_norm = z.flatten(1).norm(dim=1).mean()
                step = 4.0 * a * (snr * z_norm / s_norm.clamp_min(1e-12)) ** 2
                if not bool(torch.isfinite(step)):
                    raise NonFiniteSampleError(
                        f"{name}: the score is non-finite at "
                        f"step {i + 1} of {steps} "
                        f"(corrector at t={float(ts[i]):.4g})"
                    )
                x = _langevin_step(x, s, step.to(x.dtype), z)
            x, mean = _euler_maruyama_step(
                rsde, x, t, float(ts[i + 1] - ts[i]), _randn_like(x, generator)
            )
            if denoise and i == steps - 1:
                x = mean
            _check_finite(x, name, i, steps, float(ts[i]))
            if return_trajectory:
                traj.append(x)
    return (x, traj) if return_trajectory else x
