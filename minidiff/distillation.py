"""Progressive distillation (Salimans & Ho 2022) and its guided form (Meng et al. 2023).

A *student* learns to do in one DDIM step what its *teacher* does in two. Starting from a teacher
sampled with ``2N`` DDIM steps, the student is trained for ``N`` steps; it then becomes the teacher
of the next round, which halves the steps again: ``256 -> 128 -> … -> 1``.

Target (Salimans & Ho 2022, Algorithm 2). On the student's grid ``t > t''`` with the teacher's
midpoint ``t'`` between them, ``z_t = alpha_t x + sigma_t eps``, two teacher DDIM steps give
``z_{t''}``. The student's one DDIM step ``z_{t''} = alpha_{t''} x̂ + (sigma_{t''}/sigma_t)
(z_t - alpha_t x̂)`` lands there exactly when its prediction is

    x̃ = (z_{t''} - (sigma_{t''}/sigma_t) z_t) / (alpha_{t''} - (sigma_{t''}/sigma_t) alpha_t)

and the loss is ``w(lambda_t) ||x̃ - x̂_theta(z_t)||²`` with the *truncated SNR* weight
``w = max(alpha_t²/sigma_t², 1)`` (the paper's choice, which stays finite at high noise where
``x̂`` from ``eps`` would not). The network predicts ``v = alpha_t eps - sigma_t x`` (the paper's
v-parameterisation), ``x`` or ``eps``; :func:`prediction_to_eps` turns any of them into an
``eps_model`` so that the student is sampled with :func:`~minidiff.samplers.ddim.ddim_sample`
on ``N`` steps. The teacher is *any* ``eps_model``: the exact mixture oracle, a trained network,
the previous student, or a classifier-free-guided model (guided distillation: a student that
takes the guidance weight ``w`` as an input learns the guided teacher at every ``w`` at once).

Grids are DDIM's trailing timesteps (:func:`~minidiff.samplers.ddim.ddim_timesteps`): the
``2N``-step grid contains the ``N``-step grid, so the teacher's midpoints are its odd entries.
Shapes: ``x0, z_t: (B, ...)``, ``t: (B,)`` long in ``1..T``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._validation import (
    call_like,
    check_callable,
    check_choice,
    check_finite,
    check_generator,
    check_positive_int,
    check_tensor,
)
from .diffusion import EpsModel, _check_schedule, _noise_like, _q_sample, call_eps_model
from .samplers.ddim import _ddim_step, ddim_timesteps
from .schedules import NoiseSchedule, check_timesteps

__all__ = [
    "PREDICTIONS",
    "WEIGHTINGS",
    "to_x0",
    "from_x0",
    "prediction_to_eps",
    "distillation_grid",
    "distillation_target",
    "progressive_distillation_loss",
]

PREDICTIONS = ("v", "x0", "eps")
WEIGHTINGS = ("truncated_snr", "snr_plus_one")
Network = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``net(z_t (B, ...), t (B,) long) -> prediction (B, ...)`` (``v``, ``x0`` or ``eps``)."""


def _coefs(
    tt: torch.Tensor, sched: NoiseSchedule, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    a = sched.gather(sched.sqrt_alpha_bar, tt, like.dim(), like=like)
    s = sched.gather(sched.sqrt_one_minus_alpha_bar, tt, like.dim(), like=like)
    return a, s


# The three parameterisations, with x_t = a x0 + s eps and a² + s² = 1:
#   eps -> x0 = (x_t - s eps) / a        v = a eps - s x0 -> x0 = a x_t - s v
def _x0(pred: torch.Tensor, z: torch.Tensor, a: torch.Tensor, s: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "v":
        return a * z - s * pred
    if kind == "eps":
        return (z - s * pred) / a
    return pred


def _from_x0(x0: torch.Tensor, z: torch.Tensor, a: torch.Tensor, s: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "v":
        return (a * z - x0) / s
    if kind == "eps":
        return (z - a * x0) / s
    return x0


def to_x0(
    pred: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule,
    prediction: str = "v",
) -> torch.Tensor:
    """``x̂_0`` from a network output: ``a z - s v`` (v), ``(z - s eps) / a`` (eps) or itself (x0).

    ``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)``; ``pred, z_t: (B, ...)``.
    """
    check_choice(prediction, "prediction", PREDICTIONS)
    check_tensor(z_t, "z_t")
    check_tensor(pred, "pred")
    sched = _check_schedule(schedule)
    tt = check_timesteps(t, z_t.shape[0], sched.T).to(z_t.device)
    a, s = _coefs(tt, sched, z_t)
    return _x0(pred, z_t, a, s, prediction)


def from_x0(
    x0: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor | int, schedule: NoiseSchedule,
    prediction: str = "v",
) -> torch.Tensor:
    """The network output that gives ``x0`` at ``z_t``: ``v = (a z - x0) / s``, ``eps = (z - a x0)
    / s`` or ``x0`` itself (the inverse of :func:`to_x0`)."""
    check_choice(prediction, "prediction", PREDICTIONS)
    check_tensor(z_t, "z_t")
    check_tensor(x0, "x0")
    sched = _check_schedule(schedule)
    tt = check_timesteps(t, z_t.shape[0], sched.T).to(z_t.device)
    a, s = _coefs(tt, sched, z_t)
    return _from_x0(x0, z_t, a, s, prediction)


def prediction_to_eps(net: Network, schedule: NoiseSchedule, prediction: str = "v") -> EpsModel:
    """Wrap a ``v``/``x0``/``eps``-predicting network as an ``eps_model(z_t, t)`` for the samplers.

    ``eps = s z + a v`` (v), ``(z - a x0) / s`` (x0). ``net(z_t (B, ...), t (B,) long)``.
    """
    check_callable(net, "net", "(z_t, t) -> prediction")
    check_choice(prediction, "prediction", PREDICTIONS)
    sched = _check_schedule(schedule)

    def eps(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = call_like(net, z, t, name="net", like="z_t")
        if prediction == "eps":
            return out
        a, s = _coefs(t.long(), sched, z)
        return _from_x0(_x0(out, z, a, s, prediction), z, a, s, "eps")

    return eps


def distillation_grid(schedule: NoiseSchedule, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's ``steps`` timesteps and, for each, the teacher's midpoint and the next point.

    Returns ``(grid (steps + 1,), mid (steps,))``: ``grid = [tau_N, …, tau_1, 0]`` (DDIM's trailing
    timesteps then 0) and ``mid[i]`` the entry of the ``2 steps`` grid between ``grid[i]`` and
    ``grid[i + 1]``. Needs ``2 steps <= T``.
    """
    sched = _check_schedule(schedule)
    check_positive_int(steps, "steps")
    if 2 * steps > sched.T:
        raise ValueError(
            f"steps must be <= T/2 = {sched.T // 2} (the teacher takes 2 steps per student step), "
            f"got {steps}"
        )
    fine = torch.cat([ddim_timesteps(sched, 2 * steps), torch.zeros(1, dtype=torch.long)])
    return fine[0::2], fine[1::2]


def distillation_target(
    teacher: EpsModel,
    z_t: torch.Tensor,
    t: torch.Tensor,
    t_mid: torch.Tensor,
    t_next: torch.Tensor,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """The student's target ``x̃``: two teacher DDIM steps ``t -> t_mid -> t_next``, then the
    ``x̂`` whose single DDIM step ``t -> t_next`` lands on the same point (Algorithm 2).

    ``x̃ = (z'' - (s''/s) z_t) / (a'' - (s''/s) a)``; for ``t_next = 0`` this is ``z''`` itself.
    ``teacher``: ``eps_model(z (B, ...), t (B,) long)``, called twice without gradients.
    ``t, t_mid, t_next: (B,)`` long with ``t > t_mid > t_next >= 0``.
    """
    check_callable(teacher, "teacher", "(z_t, t) -> eps")
    check_tensor(z_t, "z_t")
    sched = _check_schedule(schedule)
    tt = check_timesteps(t, z_t.shape[0], sched.T).to(z_t.device)
    tm = check_timesteps(t_mid, z_t.shape[0], sched.T, "t_mid").to(z_t.device)
    if bool((tm >= tt).any()):
        raise ValueError("t_mid must be smaller than t for every sample (a step back in time)")
    if not isinstance(t_next, torch.Tensor) or t_next.dtype.is_floating_point:
        raise TypeError(f"t_next must be a long tensor ({z_t.shape[0]},) of timesteps in 0..T-1")
    if t_next.shape != tt.shape:
        raise ValueError(f"t_next must have shape {tuple(tt.shape)}, got {tuple(t_next.shape)}")
    tn = t_next.long().to(z_t.device)
    if bool((tn < 0).any()) or bool((tn >= tm).any()):
        raise ValueError("t_next must satisfy 0 <= t_next < t_mid for every sample")
    check_finite(z_t, "z_t")
    return _target(teacher, z_t, tt, tm, tn, sched)


def _target(
    teacher: EpsModel,
    z: torch.Tensor,
    tt: torch.Tensor,
    tm: torch.Tensor,
    tn: torch.Tensor,
    sched: NoiseSchedule,
) -> torch.Tensor:
    with torch.no_grad():
        z_mid = _ddim_step(z, tt, tm, call_eps_model(teacher, z, tt, "teacher"), sched, 0.0, None)
        z_next = _ddim_step(
            z_mid, tm, tn, call_eps_model(teacher, z_mid, tm, "teacher"), sched, 0.0, None
        )
        ab = sched.alpha_bar.to(tt.device)
        ratio = ((1 - ab[tn]) / (1 - ab[tt])).sqrt()  # s''/s in float64: the division below
        denom = ab[tn].sqrt() - ratio * ab[tt].sqrt()  # is small for short steps
        col = lambda v: v.to(z.dtype).reshape(-1, *([1] * (z.dim() - 1)))  # noqa: E731
        return (z_next - col(ratio) * z) / col(denom)


def _weight(tt: torch.Tensor, sched: NoiseSchedule, weighting: str) -> torch.Tensor:
    snr = sched.snr.to(tt.device)[tt]
    return snr.clamp(min=1.0) if weighting == "truncated_snr" else snr + 1.0


def progressive_distillation_loss(
    student: Network,
    teacher: EpsModel,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    prediction: str = "v",
    weighting: str = "truncated_snr",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One minibatch of progressive distillation: ``E[w(t) ||x̃ - x̂_student(z_t, t)||²]``.

    ``t`` is drawn uniformly from the student's ``steps`` grid (:func:`distillation_grid`),
    ``z_t = alpha_t x0 + sigma_t eps``, ``x̃`` by :func:`distillation_target` from ``teacher``
    (no gradient), and ``x̂`` from the student's output by ``prediction``. ``weighting``:
    ``"truncated_snr"`` ``max(SNR, 1)`` or ``"snr_plus_one"`` ``SNR + 1`` (the plain squared error
    of ``v``). Averaged over the batch and the data dimensions; keeps the student's gradient.
    Random draws from ``generator``: the grid index, then ``eps``.
    """
    check_callable(student, "student", "(z_t, t) -> prediction")
    check_callable(teacher, "teacher", "(z_t, t) -> eps")
    check_tensor(x0, "x0")
    sched = _check_schedule(schedule)
    check_choice(prediction, "prediction", PREDICTIONS)
    check_choice(weighting, "weighting", WEIGHTINGS)
    check_generator(generator)
    grid, mid = distillation_grid(sched, steps)
    check_finite(x0, "x0")
    gen_device = generator.device if generator is not None else "cpu"
    i = torch.randint(0, steps, (x0.shape[0],), generator=generator, device=gen_device).cpu()
    tt, tm, tn = (v[i].to(x0.device) for v in (grid[:-1], mid, grid[1:]))
    z = _q_sample(x0, tt, sched, _noise_like(x0, None, generator, "x0"))
    target = _target(teacher, z, tt, tm, tn, sched)
    a, s = _coefs(tt, sched, z)
    x_hat = _x0(call_like(student, z, tt, name="student", like="z_t"), z, a, s, prediction)
    err = ((target - x_hat) ** 2).reshape(x0.shape[0], -1).mean(dim=1)
    return (err * _weight(tt, sched, weighting).to(err.dtype)).mean()
