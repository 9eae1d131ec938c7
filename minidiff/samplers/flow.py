"""Sampling a flow: integrate ``dx/dt = u(x, t)`` from noise (``t = 1``) to data (``t = 0``).

The flow ODE of a Gaussian path (:mod:`minidiff.paths`) moves a sample of ``p_1`` along the
marginal velocity ``u_t(x) = E[alpha' x_0 + sigma' eps | x_t = x]`` and keeps it distributed as
``p_t`` for every ``t`` (the continuity equation ``∂p/∂t + ∇·(p u) = 0``). It is chapter 7's
probability-flow ODE seen from the velocity: on the VP path ``u = f - ½ g² ∇log p_t``.
Integration is :func:`~minidiff.samplers.sde_solvers.ode_solve` (Euler, Heun or RK4) on a
decreasing time grid; NFE = ``steps`` × (1, 2 or 4).

``diffusers``' ``FlowMatchEulerDiscreteScheduler`` is ``method="euler"`` on the rectified-flow
path (its ``sigmas`` are our ``t``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import (
    Check,
    Device,
    FloatTensor,
    Function,
    Instance,
    Int,
    OneOf,
    Rng,
    call_like,
    check_float_dtype,
    check_positive_int,
    check_same_shape,
    check_tensor,
    check_with,
    checked,
    describe,
)
from ..paths import GaussianPath, RectifiedFlowPath
from ..tensors import pad_like
from .loop import OnStep, draw_start, normal_prior
from .registry import register_sampler
from .sde_solvers import ODE_METHODS, ode_solve, time_grid

__all__ = ["flow_sample", "flow_time_grid", "straightness"]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity_fn(x (B, ...), t (B,) float in [0, 1]) -> dx/dt (B, ...)``."""


def flow_time_grid(steps: int, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    """``steps + 1`` evenly spaced float64 times from ``t_start`` down to ``t_end``."""
    ts = time_grid(steps, t_start, t_end)
    if not t_start > t_end:
        raise ValueError(f"t_start must be > t_end (sampling runs to the data), got {t_start}")
    return ts


@register_sampler("flow_ode")
@checked(
    velocity_fn=Function("(x, t) -> velocity"), path=Instance(GaussianPath, optional=True),
    steps=Int(optional=True), method=OneOf(list(ODE_METHODS)),
    ts=FloatTensor(dim=1, finite=True, optional=True), generator=Rng, device=Device,
    dtype=Check(check_float_dtype, optional=True),
)  # fmt: skip
def flow_sample(
    velocity_fn: VelocityFn,
    path: GaussianPath | None = None,
    shape: tuple[int, ...] | None = None,
    *,
    steps: int | None = None,
    method: str = "euler",
    ts: torch.Tensor | None = None,
    x_T: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Integrate the flow ODE ``dx/dt = velocity_fn(x, t)`` from ``t = 1`` to ``t = 0``.

    Args:
        velocity_fn: ``(x (B, ...), t (B,) in x's dtype) -> (B, ...)``; e.g. a trained flow
            matching model, ``convert_model(eps_model, path, src="eps", dst="velocity")`` or the
            exact :func:`~minidiff.paths.mixture_predictor`.
        path: gives the start ``x_1 ~ N(0, sigma(ts[0])² I)`` (exact when ``alpha(ts[0]) = 0``,
            as on the default :class:`~minidiff.paths.RectifiedFlowPath`).
        shape: batch shape such as ``(1000, 2)``; may be omitted when ``x_T`` is given.
        steps: number of steps on the uniform grid ``1 -> 0`` (:func:`flow_time_grid`), or
        ts: an explicit strictly decreasing grid of times in ``[0, 1]`` (float).
        method: ``"euler"`` (NFE = steps), ``"heun"`` (2 steps) or ``"rk4"`` (4 steps).
        x_T: a given start ``(B, ...)`` (then nothing is drawn; the sampler runs in its dtype and
            on its device).
        dtype: dtype of the drawn start (None: ``torch.float32``); with ``x_T`` it must be None or
            ``x_T``'s dtype (a ``ValueError`` otherwise: the sampler runs in ``x_T``'s dtype).
        on_step: called with the start and the state at each grid time
            (:func:`~minidiff.samplers.loop.trajectory` gives ``[x_{ts[0]}, …, x_{ts[-1]}]``).
    Returns:
        ``x_0`` ``(B, ...)``.
    """
    path = RectifiedFlowPath() if path is None else path
    grid = _resolve_grid(steps, ts)
    sigma_1 = float(path.coefficients(float(grid[0])).sigma)
    prior = normal_prior.unchecked(sigma_1)  # the path's own sigma, not an argument
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype, prior=prior)

    def field(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        return call_like(velocity_fn, x_, t_.to(x_.dtype), name="velocity_fn")

    name = f"flow_sample ({method})"
    return ode_solve(field, x, grid, method=method, name=name, on_step=on_step, progress=progress).x


def _resolve_grid(steps: int | None, ts: torch.Tensor | None) -> torch.Tensor:
    if (steps is None) == (ts is None):
        raise TypeError("give exactly one of steps (an int >= 1) or ts (a decreasing time grid)")
    if ts is None:
        return flow_time_grid(check_positive_int(steps, "steps"))
    grid = ts.to(torch.float64)
    if grid.numel() < 2 or not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError("ts must hold at least 2 strictly decreasing times (1 -> 0)")
    if float(grid.min()) < 0.0 or float(grid.max()) > 1.0:
        raise ValueError(f"ts must lie in [0, 1], got {float(grid.min())}..{float(grid.max())}")
    return grid


def _monotone_times(value: object, name: str) -> torch.Tensor:
    """A 1-D finite floating grid of at least 2 strictly monotone times (either direction)."""
    ts = check_with(FloatTensor(dim=1, finite=True), value, name)
    steps = ts[1:] - ts[:-1]
    if ts.numel() < 2 or not (bool((steps < 0).all()) or bool((steps > 0).all())):
        raise ValueError(
            f"{name} must hold at least 2 strictly monotone times (e.g. 1 -> 0, as from "
            f"flow_time_grid), got {ts.tolist() if ts.numel() <= 8 else tuple(ts.shape)}"
        )
    return ts


def _trajectory(value: object, name: str, ts: object) -> list[torch.Tensor]:
    """A list or tuple of floating tensors ``(B, ...)`` of one shape and dtype, one per time of
    ``ts``, or those states stacked in one tensor ``(K, B, ...)``."""
    if isinstance(value, torch.Tensor) and value.ndim >= 3:
        value = list(value)  # stacked states: one per time along the first axis
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a list of tensors (one per time in ts, e.g. from "
            f"trajectory(flow_sample, ...)) or their stack (K, B, ...), got {describe(value)}"
        )
    states = [check_tensor(x, f"{name}[{i}]", min_dim=2) for i, x in enumerate(value)]
    for i, x in enumerate(states[1:], start=1):
        if x.dtype != states[0].dtype:
            raise TypeError(
                f"{name}[{i}] must have {name}[0]'s dtype {states[0].dtype}, got {x.dtype}"
            )
    if isinstance(ts, torch.Tensor) and len(states) != ts.numel():
        raise ValueError(
            f"{name} must be a list of {ts.numel()} tensors (one per time in ts), got {len(states)}"
        )
    for i, x in enumerate(states[1:], start=1):
        check_same_shape(states[0], x, f"{name}[0]", f"{name}[{i}]")
    return states


@checked(ts=Check(_monotone_times), trajectory=Check(_trajectory, uses=("ts",)))
def straightness(
    trajectory: list[torch.Tensor] | tuple[torch.Tensor, ...] | torch.Tensor, ts: torch.Tensor
) -> torch.Tensor:
    """Per-sample ``S = ∫ ||dx/dt - (x_1 - x_0)||² dt`` along a sampled path (Liu et al. 2023).

    ``trajectory`` is ``[x_{ts[0]}, …, x_{ts[-1]}]`` (``trajectory(flow_sample, ...)``
    on the grid ``ts`` from 1 to 0), a list or tuple of tensors of one shape and dtype, or their
    stack ``(len(ts), B, ...)``; ``ts`` a finite
    1-D floating grid of at least 2 strictly monotone times. ``dx/dt`` is taken per grid interval,
    so a fine grid measures the flow and a coarse one the sampler's own path. ``S = 0`` exactly
    when every path is a straight line travelled at constant speed, which one Euler step
    integrates without error. Returns ``(B,)`` in the trajectory's dtype. A wrong type of either
    argument is a ``TypeError``, a wrong length, shape or grid a ``ValueError``.
    """
    xs = torch.stack(list(trajectory))  # (N + 1, B, ...)
    dts = (ts[1:] - ts[:-1]).to(xs)
    chord = (xs[-1] - xs[0]) / (ts[-1] - ts[0]).to(xs)
    speeds = (xs[1:] - xs[:-1]) / pad_like(dts, xs)
    dev = (speeds - chord).flatten(2).pow(2).sum(-1)  # (N, B)
    return (dev * dts.abs()[:, None]).sum(0)
