"""The one sampler loop: the start, the steps, the NaN watch, the trajectory and the progress bar.

Every sampler of this package is a *step function* and a few lines around this loop
(smalldiffusion's ``samples`` and score_sde's ``pc_sampler`` are built the same way)::

    x = draw_start(x_T, shape, ...)              # x_T if given, else a draw from the prior
    for k, (t, t_next) in enumerate(times, 1):   # the sampler's clock: DDPM T..1, SDE 1..t_min
        x = step(x, t, t_next)                   # under torch.no_grad(), without per-step checks
        if not finite(x): raise NonFiniteSampleError(f"... step {k} of {n} (t={t} -> {t_next})")
        on_step(SamplerState(k, n, t_next, x))   # a trajectory, a live plot, a log line

:func:`run_sampler` is that loop. It runs the steps inside
:func:`~minidiff._validation.skip_value_checks`, so the step functions may call the checked public
functions of :mod:`minidiff.diffusion` (``p_mean_var``, ``predict_x0_from_eps``) without a host
read each: the arguments were checked once, at the sampler's entry, and the NaN watch below (one
host read per step, the only one) catches what goes wrong inside.

The trajectory is not a return value: every sampler returns its final tensor, and takes
``on_step``, a callable that receives a :class:`SamplerState` for the start (``step = 0``) and after
each step. :func:`trajectory` collects the states of any sampler:
``xs = trajectory(ddpm_sample, eps_model, schedule, (500, 2), generator=g)`` gives
``[x_T, x_{T-1}, …, x_0]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from .._validation import (
    Flag,
    Number,
    check_callable,
    check_device,
    check_float_dtype,
    check_generator,
    check_shape,
    check_tensor,
    check_with,
    checked,
    skip_value_checks,
)
from ..tensors import standard_normal

__all__ = [
    "NonFiniteSampleError",
    "SamplerState",
    "OnStep",
    "Prior",
    "StepFn",
    "batch_time",
    "draw_start",
    "normal_prior",
    "run_sampler",
    "trajectory",
]


class NonFiniteSampleError(ValueError):
    """Raised when a sampler produces NaN or infinity; the message names the step."""


@dataclass(frozen=True)
class SamplerState:
    """A sampler's state, handed to ``on_step`` at the start (``step = 0``) and after each step.

    ``t`` is the time the state belongs to on the sampler's own clock: the DDPM/DDIM timestep
    (``T .. 0``), the SDE time (``1 .. t_min``), the Langevin iteration, or the annealed Langevin
    noise level ``sigma``. ``x: (B, ...)``.
    """

    step: int
    steps: int
    t: float
    x: torch.Tensor


OnStep = Callable[[SamplerState], Any]
"""``on_step(state)``: called with the start and after every step; its return value is ignored."""

Prior = Callable[[tuple[int, ...], torch.Generator | None, torch.dtype, torch.device], torch.Tensor]
"""``prior(shape, generator, dtype, device) -> x (shape)``: the law a sampler starts from."""

StepFn = Callable[[torch.Tensor, Any, Any], torch.Tensor]
"""``step(x (B, ...), t, t_next) -> x_next (B, ...)``: one step of a sampler between two times."""


def batch_time(x: torch.Tensor, t: float, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A step's time ``t`` (a Python number from ``times``) as a ``(B,)`` tensor on ``x``'s device:
    what a model or a schedule is called with (``long`` timesteps, ``float64`` SDE times)."""
    return torch.full((x.shape[0],), t, dtype=dtype, device=x.device)


def draw_start(
    x_T: torch.Tensor | None,
    shape: object,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    prior: Prior | None = None,
) -> torch.Tensor:
    """The starting point of a sampler: a copy of ``x_T``, or a draw ``prior(shape, ...)``.

    ``x_T``: None or a finite floating tensor ``(B, ...)``; then the sampler runs in its dtype and
    on its device (``dtype`` must be None or equal, ``device`` None or agree, ``shape`` None or
    equal: a ``ValueError`` otherwise). Without ``x_T``, ``shape`` (a tuple of positive ints) is
    drawn from ``prior`` (default ``N(0, I)``) in ``dtype`` (None: ``torch.float32``) with
    ``generator``, on the generator's device (so a seed gives the same start everywhere), then
    moved to ``device``.
    """
    check_generator(generator)
    dev = check_device(device)
    if dtype is not None:
        check_float_dtype(dtype)
    if x_T is None:
        if shape is None:
            raise TypeError("give shape (e.g. (1000, 2)) or a starting point x_T")
        size = check_shape(shape)
        gen_dev = generator.device if generator is not None else (dev or torch.device("cpu"))
        if prior is None:
            return standard_normal(
                size, generator=generator, dtype=dtype or torch.float32, device=dev or gen_dev
            )
        return prior(size, generator, dtype or torch.float32, gen_dev).to(dev or gen_dev)
    check_tensor(x_T, "x_T", finite=True)
    if x_T.shape[0] == 0:
        raise ValueError(f"x_T must have shape (B, ...) with B >= 1, got {tuple(x_T.shape)}")
    if shape is not None and check_shape(shape) != tuple(x_T.shape):
        raise ValueError(
            f"shape {tuple(shape)} disagrees with x_T's shape {tuple(x_T.shape)} "  # type: ignore[arg-type]
            "(give one of them, or the same)"
        )
    if dev is not None and dev.type != x_T.device.type:
        raise ValueError(
            f"device {device} disagrees with x_T's device {x_T.device} "
            "(leave device=None when x_T is given)"
        )
    if dtype is not None and dtype != x_T.dtype:
        raise ValueError(
            f"dtype {dtype} disagrees with x_T's dtype {x_T.dtype} "
            f"(leave dtype=None when x_T is given, or pass x_T.to({dtype}))"
        )
    return x_T.detach().clone()


@checked(scale=Number(low=0.0, low_open=False))
def normal_prior(scale: float) -> Prior:
    """The prior ``N(0, scale² I)``: ``scale`` times a standard normal draw (the start of a
    sampler whose chain begins at noise level ``scale``). ``scale``: a finite real number
    ``>= 0`` (kept as a float)."""

    def draw(
        shape: tuple[int, ...], g: torch.Generator | None, dtype: torch.dtype, dev: torch.device
    ) -> torch.Tensor:
        return scale * torch.randn(shape, generator=g, dtype=dtype, device=dev)

    return draw


def run_sampler(
    step: StepFn,
    x: torch.Tensor,
    times: Sequence[tuple[Any, Any]],
    *,
    name: str,
    on_step: OnStep | None = None,
    progress: bool = False,
    hint: str = "",
    clock: str = "t",
) -> torch.Tensor:
    """Run ``x <- step(x, t, t_next)`` over ``times`` and return the last state.

    ``times``: the ``(t, t_next)`` pairs of the steps, as Python numbers (a sampler converts its
    grid once, so the loop reads nothing back per step). Each step runs under ``torch.no_grad()``
    and :func:`~minidiff._validation.skip_value_checks`; after it, one host read checks that ``x``
    is finite, else :class:`NonFiniteSampleError` names the sampler (``name``), the step and its
    times (named ``clock``, e.g. ``"sigma"``), plus ``hint`` (e.g. "try a smaller step_size").
    ``on_step`` sees the start and every state; ``progress`` (True or False, else a
    ``TypeError`` before the first step) shows a tqdm bar labelled ``name``.
    """
    if on_step is not None:
        check_callable(on_step, "on_step", "(state) -> None")
    check_with(Flag, progress, "progress")
    n = len(times)
    first = times[0][0] if n else 0
    if on_step is not None:
        on_step(SamplerState(0, n, _num(first), x))
    with torch.no_grad(), skip_value_checks():
        for k, (t, t_next) in enumerate(
            tqdm(times, desc=name, disable=not progress, leave=False), start=1
        ):
            x = step(x, t, t_next)
            if not bool(torch.isfinite(x).all()):
                raise NonFiniteSampleError(
                    f"{name} produced non-finite values at step {k} of {n} "
                    f"({clock}={_fmt(t)} -> {_fmt(t_next)}){'; ' + hint if hint else ''}"
                )
            if on_step is not None:
                on_step(SamplerState(k, n, _num(t_next), x))
    return x


def _num(t: Any) -> float:
    return float(t) if isinstance(t, (int, float)) else math.nan


def _fmt(t: Any) -> str:
    return f"{t:.4g}" if isinstance(t, float) else str(t)


def trajectory(sampler: Callable[..., torch.Tensor] | str, *args: Any, **kwargs: Any) -> list[Any]:
    """Run ``sampler`` (a function of this package, or a registered name) and return every state.

    ``trajectory(ddpm_sample, eps_model, schedule, (500, 2), generator=g)`` returns the list
    ``[x_T, x_{T-1}, …, x_0]`` of ``(B, ...)`` tensors (``steps + 1`` of them; the last is what
    the sampler returns). For the times too, pass ``on_step`` to the sampler yourself.
    """
    if isinstance(sampler, str):
        from .registry import get_sampler

        sampler = get_sampler(sampler)
    check_callable(sampler, "sampler", "(...) -> samples")
    if "on_step" in kwargs:
        raise TypeError("trajectory() passes its own on_step; call the sampler directly to add one")
    states: list[torch.Tensor] = []
    sampler(*args, on_step=lambda s: states.append(s.x), **kwargs)
    return states
