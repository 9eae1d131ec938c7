"""Consistency models (Song, Dhariwal, Chen & Sutskever 2023): one network call from noise to data.

The probability-flow ODE maps every point ``x_t`` of a trajectory to the same end point. A
*consistency function* ``f(x_t, t)`` returns that end point directly; it is characterised by

    self-consistency   f(x_t, t) = f(x_s, s)  for any two points of one ODE trajectory
    boundary           f(x, t_min) = x        (at the end, nothing is left to do)

The boundary holds by construction with skip-scaling (Song et al. 2023, Sec. 3 and App. C),
written here in the variance-exploding variables of chapter 8, ``x̄ = x / alpha_t`` and
``sigma̅_t = sigma_t / alpha_t`` (in which the VP probability-flow ODE is the VE one):

    f_theta(x_t, t) = c_skip(t) x̄_t + c_out(t) F_theta(x_t, t)
    c_skip = sigma_d² / ((sigma̅_t - sigma̅_min)² + sigma_d²),
    c_out  = sigma_d (sigma̅_t - sigma̅_min) / sqrt(sigma_d² + sigma̅_t²)

so ``c_skip = 1`` and ``c_out = 0`` at ``sigma̅_t = sigma̅_min``. In discrete time the chain ends at
``t = 0`` where ``sigma = 0``: ``sigma̅_min = 0`` and ``f(x, 0) = x`` (EDM's preconditioning
coincides with these scalings there; with a continuous-time boundary ``t_min > 0`` the shift by
``sigma̅_min`` is what keeps ``f(x, t_min) = x``).

**Consistency distillation** (Algorithm 2) enforces self-consistency between neighbours
``t_{n+1} > t_n`` of a grid ``0 = t_0 < … < t_N = T``: draw ``x_{t_{n+1}} ~ q(· | x_0)``, take one
step of the *teacher's* ODE solver to ``x̂_{t_n}``, and minimise
``|| f_theta(x_{t_{n+1}}, t_{n+1}) - f_{theta^-}(x̂_{t_n}, t_n) ||²``, where ``theta^-`` is an
exponential moving average of ``theta`` (the *target network*, no gradient). At ``n = 0`` the
target is ``x̂_0`` itself (boundary), which anchors the chain. **Sampling** (Algorithm 1):
``x = f(x_T, T)``; then, for each further time ``tau``, re-noise ``x_tau = alpha_tau x +
sigma_tau z`` and set ``x = f(x_tau, tau)``: one network call per step.

Shapes: ``x_t: (B, ...)``, ``t: (B,)`` long in ``0..T`` (0 only at the boundary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._validation import (
    FloatTensor,
    Number,
    call_like,
    check_callable,
    check_choice,
    check_generator,
    check_instance,
    check_number,
    check_positive_int,
    check_tensor,
    checked,
    index_tensor,
)
from .diffusion import EpsModel, q_sample
from .distillation import PREDICTIONS, convert_prediction
from .samplers.dpm_solver import denoise, first_order_update
from .samplers.loop import OnStep, batch_time, draw_start, run_sampler
from .samplers.registry import register_sampler
from .schedules import NoiseSchedule
from .tensors import noise_like
from .training import EMA

__all__ = [
    "consistency_scalings",
    "ConsistencyModel",
    "consistency_grid",
    "ConsistencyDistillation",
    "consistency_sample",
    "TEACHER_SOLVERS",
]

TEACHER_SOLVERS = ("ddim", "heun")


@checked(
    sigma_bar=FloatTensor(min_dim=0, finite=True),
    sigma_min=Number(low=0.0, low_open=False),
    sigma_data=Number(low=0.0),
)
def consistency_scalings(
    sigma_bar: torch.Tensor, sigma_min: float = 0.0, sigma_data: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out)`` of Song et al. (2023, App. C) at noise levels ``sigma_bar``.

    ``c_skip = sigma_d² / ((sigma_bar - sigma_min)² + sigma_d²)``,
    ``c_out = sigma_d (sigma_bar - sigma_min) / sqrt(sigma_d² + sigma_bar²)``: ``(1, 0)`` at
    ``sigma_bar = sigma_min``, so ``f(x, t_min) = x`` whatever the network outputs. ``sigma_bar``
    is a float tensor (any shape, values ``>= sigma_min``); results have its shape and dtype.
    """
    if bool((sigma_bar < sigma_min).any()):
        raise ValueError(f"sigma_bar must be >= sigma_min = {sigma_min} (the boundary)")
    return _scalings(sigma_bar, sigma_min, sigma_data)


def _scalings(
    sb: torch.Tensor, sigma_min: float, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor]:
    d2 = sigma_data**2
    c_skip = d2 / ((sb - sigma_min) ** 2 + d2)
    c_out = sigma_data * (sb - sigma_min) / (d2 + sb**2).sqrt()
    return c_skip, c_out


class ConsistencyModel(nn.Module):
    """``f_theta(x_t, t) = c_skip(t) x_t / alpha_t + c_out(t) F_theta(x_t, t)`` on a schedule.

    Args:
        net: the network ``net(x_t (B, ...), t (B,) long) -> (B, ...)`` (e.g. a ``TimeMLP``);
            it must accept ``t = 0``, where ``c_out = 0`` cancels it.
        schedule: the noise schedule (``sigma̅_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)``).
        prediction: what ``net`` returns: ``"x0"`` (``F`` is the network itself, Song et al.'s
            form) or ``"v"``/``"eps"``, converted to ``x̂_0`` first. With ``sigma_data = 1``,
            ``c_out -> 1`` and ``c_skip -> 0`` at high noise, so a trained diffusion network
            (its ``x̂_0``) is a natural initialisation: ``f`` starts as the one-step denoiser at
            high noise and as the identity near ``t = 0``, and consistency distillation corrects
            it (latent consistency models do the same).
        sigma_data: ``sigma_d`` of the scalings (about the data's standard deviation; 1 is the
            toys' scale, the 8 Gaussians have a spread of 1.4).

    ``forward(x_t, t)`` returns the estimate of the trajectory's end point ``x_0``;
    ``f(x, 0) = x`` exactly.
    """

    def __init__(
        self,
        net: nn.Module,
        schedule: NoiseSchedule,
        *,
        prediction: str = "x0",
        sigma_data: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.schedule = check_instance(schedule, "schedule", NoiseSchedule)
        self.prediction = check_choice(prediction, "prediction", PREDICTIONS)
        self.sigma_data = check_number(sigma_data, "sigma_data", low=0.0)
        ab = schedule.alpha_bar.to(torch.float64)
        # float64 tables, read in the model's precision: float32 (or float64 for a .double() model)
        self.register_buffer("sigma_bar", ((1 - ab) / ab).sqrt(), persistent=False)
        self.register_buffer("inv_alpha", ab.rsqrt(), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t: (B, ...)``, ``t``: an int or a long tensor ``(B,)`` in ``0..T`` ->
        ``f(x_t, t): (B, ...)``."""
        check_tensor(x_t, "x_t")
        T = self.schedule.T
        tt = index_tensor(t, "t", x_t.shape[0], f"timesteps in 0..T={T}", device=x_t.device)
        if tt.numel() and (int(tt.min()) < 0 or int(tt.max()) > T):
            raise ValueError(f"t must lie in 0..T={T}, got {int(tt.min())}..{int(tt.max())}")
        col = lambda v: v.to(x_t.dtype).reshape(-1, *([1] * (x_t.dim() - 1)))  # noqa: E731
        work = torch.promote_types(x_t.dtype, torch.float32)  # the scalings' precision
        sb = self.get_buffer("sigma_bar")[tt].to(work)
        c_skip, c_out = _scalings(sb, 0.0, self.sigma_data)
        x_bar = x_t * col(self.get_buffer("inv_alpha")[tt].to(work))
        out = call_like(self.net, x_t, tt, name="net", like="x_t")
        if self.prediction != "x0":
            out = convert_prediction.unchecked(
                out, x_t, tt, self.schedule, src=self.prediction, dst="x0"
            )
        return col(c_skip) * x_bar + col(c_out) * out


def consistency_grid(schedule: NoiseSchedule, n: int, rho: float = 7.0) -> torch.Tensor:
    """``0 = t_0 < t_1 < … < t_n = T``: integer timesteps whose ``sigma̅`` follow Karras et al.'s
    (2022) spacing ``(sigma̅_max^(1/rho) + i/(n-1) (sigma̅_min^(1/rho) - sigma̅_max^(1/rho)))^rho``
    from ``t = 1`` to ``T`` (the consistency-model paper's grid), then 0. Long ``(n + 1,)``."""
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    n = check_positive_int(n, "n")
    if n > sched.T:
        raise ValueError(f"n must be an int in 1..T={sched.T}, got {n!r}")
    rho = check_number(rho, "rho", low=0.0)
    ab = sched.alpha_bar
    sb = ((1 - ab[1:]) / ab[1:]).sqrt()  # sigma_bar at t = 1..T, increasing
    if n == 1:
        return torch.tensor([0, sched.T])
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    lo, hi = float(sb[0]) ** (1 / rho), float(sb[-1]) ** (1 / rho)
    targets = (lo + i * (hi - lo)) ** rho
    ts = ((sb[None, :] - targets[:, None]).abs().argmin(dim=1) + 1).tolist()
    ts[0], ts[-1] = 1, sched.T
    for k in range(1, n - 1):  # distinct and increasing where the grid is dense
        ts[k] = max(ts[k], ts[k - 1] + 1)
    for k in range(n - 2, 0, -1):
        ts[k] = min(ts[k], ts[k + 1] - 1)
    return torch.tensor([0, *ts])


class ConsistencyDistillation:
    """The consistency-distillation loss (Song et al. 2023, Algorithm 2) as a ``loss_fn`` for
    :func:`minidiff.train`: ``loss = cd(model, x0, generator)`` with ``model`` the
    :class:`ConsistencyModel` being trained.

    Args:
        model: the student; the target network ``theta^-`` starts as a copy of it.
        teacher: ``eps_model(x_t, t)`` whose probability-flow ODE is distilled (the exact
            mixture oracle or a trained network).
        schedule: the noise schedule of ``teacher`` and ``model``.
        grid: the timesteps ``0 = t_0 < … < t_N = T`` (:func:`consistency_grid`).
        mu: EMA decay of the target network, ``theta^- <- mu theta^- + (1 - mu) theta`` after
            every optimizer step (0 gives ``theta^- = stopgrad(theta)``).
        solver: the teacher's one step ``t_{n+1} -> t_n``: ``"ddim"`` (order 1, one call) or
            ``"heun"`` (Heun in log-SNR, two calls; order 1 into ``t_0 = 0``).

    Each call first moves the target towards ``model`` (that folds in the previous optimizer
    step), then draws ``n`` uniform in ``0..N-1`` and the noise from ``generator``, and returns
    ``mean ||f_theta(x_{t_{n+1}}) - f_{theta^-}(x̂_{t_n})||²`` over the batch and dimensions.
    ``self.target`` is the :class:`~minidiff.training.EMA` holding ``theta^-``; ``state_dict`` and
    ``load_state_dict`` expose it, so :func:`minidiff.train` saves it in the checkpoint and a
    resumed run continues bitwise as if it had not stopped.
    """

    def __init__(
        self,
        model: ConsistencyModel,
        teacher: EpsModel,
        schedule: NoiseSchedule,
        grid: torch.Tensor,
        *,
        mu: float = 0.95,
        solver: str = "heun",
    ) -> None:
        if not isinstance(model, ConsistencyModel):
            raise TypeError(f"model must be a ConsistencyModel, got {type(model).__name__}")
        check_callable(teacher, "teacher", "(x_t, t) -> eps")
        self.schedule = check_instance(schedule, "schedule", NoiseSchedule)
        self.grid = _check_grid(grid, self.schedule)
        self.mu = check_number(mu, "mu", low=0.0, high=1.0, low_open=False)
        self.solver = check_choice(solver, "solver", TEACHER_SOLVERS)
        self.teacher = teacher
        self.target = EMA(model, decay=self.mu, warmup=False)

    def state_dict(self) -> dict[str, Any]:
        """The target network ``theta^-`` (its weights and EMA counters), and the ``mu``,
        ``solver`` and ``grid`` it was trained with."""
        target = self.target.state_dict()
        return {"target": target, "mu": self.mu, "solver": self.solver, "grid": self.grid.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the target network of a stopped run. A state of
        another ``mu``, ``solver`` or ``grid`` is a ``ValueError`` naming the field, before
        anything is loaded (a state saved without them records ``mu`` as its target's decay)."""
        saved: dict[str, Any] = {"mu": state.get("mu", state["target"]["decay"])}
        saved.update({k: state[k] for k in ("solver", "grid") if k in state})
        if "grid" in saved:
            saved["grid"] = torch.as_tensor(saved["grid"]).tolist()
        ours: dict[str, Any] = {"mu": self.mu, "solver": self.solver, "grid": self.grid.tolist()}
        for key, value in saved.items():
            mine = ours[key]
            if value != mine:
                raise ValueError(
                    f"ConsistencyDistillation: {key}={value!r} in checkpoint vs {mine!r}; "
                    f"distil with the {key} the checkpoint was written with, or start afresh"
                )
        self.target.load_state_dict(state["target"])

    def teacher_step(self, x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """One step of the teacher's probability-flow ODE from ``t`` down to ``s`` (no grad)."""
        with torch.no_grad():
            d = denoise(self.teacher, x, t, self.schedule, "teacher")
            x_s = first_order_update(x, t, s, d, self.schedule)
            if self.solver == "heun":
                inner = s > 0
                if bool(inner.any()):
                    si = s.clamp(min=1)
                    d_s = denoise(self.teacher, x_s, si, self.schedule, "teacher")
                    heun = first_order_update(x, t, s, 0.5 * (d + d_s), self.schedule)
                    col = inner.reshape(-1, *([1] * (x.dim() - 1)))
                    x_s = torch.where(col, heun, x_s)
            return x_s

    def __call__(
        self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        check_tensor(x0, "x0", finite=True)
        check_generator(generator)
        self.target.update(model)
        grid = self.grid.to(x0.device)
        gen_device = generator.device if generator is not None else "cpu"
        n = torch.randint(
            0, grid.numel() - 1, (x0.shape[0],), generator=generator, device=gen_device
        )
        t_hi, t_lo = grid[n.to(x0.device) + 1], grid[n.to(x0.device)]
        x_hi = q_sample.unchecked(x0, t_hi, self.schedule, noise_like(x0, generator))
        x_lo = self.teacher_step(x_hi, t_hi, t_lo)
        with torch.no_grad():
            target = self.target.model(x_lo, t_lo)
        pred = call_like(model, x_hi, t_hi, name="model", like="x0")
        return ((pred - target) ** 2).reshape(x0.shape[0], -1).mean(dim=1).mean()


def _check_grid(grid: object, sched: NoiseSchedule) -> torch.Tensor:
    if not isinstance(grid, torch.Tensor) or grid.dim() != 1 or grid.dtype.is_floating_point:
        raise TypeError("grid must be a 1-D long tensor 0 = t_0 < t_1 < … < t_N (consistency_grid)")
    g = grid.long().cpu()
    if g.numel() < 2 or int(g[0]) != 0 or int(g[-1]) > sched.T or bool((g[1:] <= g[:-1]).any()):
        raise ValueError(
            f"grid must increase strictly from 0 to at most T={sched.T}, got {g.tolist()}"
        )
    return g


@register_sampler("consistency")
def consistency_sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: tuple[int, ...] | None = None,
    *,
    x_T: torch.Tensor | None = None,
    timesteps: Sequence[int] | torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    on_step: OnStep | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): one call per timestep.

    ``x = f(x_T, T)``; then for each ``tau`` in ``timesteps[1:]`` (decreasing, in ``1..T-1``):
    ``x = f(alpha_tau x + sigma_tau z, tau)`` with fresh ``z`` from ``generator``.
    ``timesteps`` defaults to ``[T]`` (one step); its first entry must be ``T``. ``model`` is a
    :class:`ConsistencyModel` (any ``f(x_t, t)`` callable works). ``x_T`` is drawn in ``dtype``
    (None: ``torch.float32``) unless given; a given ``x_T`` sets the dtype (``dtype`` must then
    be None or equal, a ``ValueError`` otherwise). Returns ``x``; ``on_step`` sees ``x_T`` and
    ``f`` after each call.
    """
    check_callable(model, "model", "(x_t, t) -> x0")
    sched = check_instance(schedule, "schedule", NoiseSchedule)
    if timesteps is not None and (
        isinstance(timesteps, (str, bytes)) or not isinstance(timesteps, (Sequence, torch.Tensor))
    ):
        raise TypeError(
            f"timesteps must be a sequence of ints or an integer tensor starting at T={sched.T}, "
            f"got {type(timesteps).__name__}"
        )
    ts = torch.tensor([sched.T]) if timesteps is None else torch.as_tensor(timesteps).cpu()
    if ts.is_floating_point() or ts.dtype == torch.bool:
        raise TypeError(f"timesteps must be integers in 1..T={sched.T}, got dtype {ts.dtype}")
    ts = ts.long()
    if ts.dim() != 1 or ts.numel() < 1 or int(ts[0]) != sched.T:
        raise ValueError(f"timesteps must start at T={sched.T}, got {ts.tolist()}")
    if bool((ts[1:] >= ts[:-1]).any()) or int(ts.min()) < 1:
        raise ValueError(f"timesteps must decrease strictly within 1..T, got {ts.tolist()}")
    x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)

    def step(x: torch.Tensor, tau: int, _: int) -> torch.Tensor:
        tt = batch_time(x, tau)
        if tau < sched.T:  # every call but the first re-noises the last estimate to tau
            a = math.sqrt(float(sched.alpha_bar[tau]))
            x = a * x + math.sqrt(1 - a * a) * noise_like(x, generator)
        return call_like(model, x, tt, name="model", like="x_T")

    times = [(tau, 0) for tau in ts.tolist()]
    return run_sampler(
        step, x, times, name="consistency_sample", on_step=on_step, progress=progress
    )
