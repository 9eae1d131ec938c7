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
``w = max(alpha_t²/sigma_t², 1)`` (the paper's choice: the ε-loss is the SNR weight in x-space,
which vanishes at high noise, where a few-step student must still be accurate). The network
predicts ``v = alpha_t eps - sigma_t x`` (the paper's v-parameterisation), ``x`` or ``eps``,
converted by :func:`minidiff.paths.convert_with` (the
package's one converter); :func:`prediction_to_eps` turns any of them into an ``eps_model``, so
the student is sampled with :func:`~minidiff.samplers.ddim.ddim_sample` on ``N`` steps.
The teacher is *any* ``eps_model``: the exact mixture oracle, a trained network,
the previous student, or a classifier-free-guided model (guided distillation: a student that
takes the guidance weight ``w`` as an input learns the guided teacher at every ``w`` at once).

Grids are DDIM's trailing timesteps (:func:`~minidiff.samplers.ddim.ddim_timesteps`): the
``2N``-step grid contains the ``N``-step grid, so the teacher's midpoints are its odd entries.
Shapes: ``x0, z_t: (B, ...)``, ``t: (B,)`` long in ``1..T``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ._validation import (
    Check,
    FloatTensor,
    Function,
    Int,
    OneOf,
    Rng,
    Timesteps,
    call_like,
    check_positive_int,
    checked,
    index_tensor,
)
from .diffusion import EpsModel, call_eps_model, q_sample
from .losses import simple_loss
from .paths import PathCoefficients, convert_with
from .samplers.ddim import ddim_step, ddim_timesteps
from .schedules import NoiseSchedule
from .tensors import mean_data_dims, noise_like, pad_like

__all__ = [
    "DistilledRound",
    "progressive_distillation",
    "PREDICTIONS",
    "WEIGHTINGS",
    "convert_prediction",
    "prediction_to_eps",
    "v_prediction_loss",
    "distillation_grid",
    "distillation_target",
    "progressive_distillation_loss",
]

PREDICTIONS = ("v", "x0", "eps")
WEIGHTINGS = ("truncated_snr", "snr_plus_one")
Network = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``net(z_t (B, ...), t (B,) long) -> prediction (B, ...)`` (``v``, ``x0`` or ``eps``)."""


def _coefficients(tt: torch.Tensor, schedule: NoiseSchedule) -> PathCoefficients:
    """``(alpha_t, sigma_t)`` per row for :func:`~minidiff.paths.convert_with` (the converters
    between eps, x0 and v need no time derivatives)."""
    a = schedule.sqrt_alpha_bar.to(tt.device)[tt]
    s = schedule.sqrt_one_minus_alpha_bar.to(tt.device)[tt]
    zero = torch.zeros_like(a)
    return PathCoefficients(a, s, zero, zero)


@checked(
    value=FloatTensor(),
    z_t=FloatTensor(like="value"),
    t=Timesteps(of="z_t"),
    schedule=NoiseSchedule,
    src=OneOf(PREDICTIONS),
    dst=OneOf(PREDICTIONS),
)
def convert_prediction(
    value: torch.Tensor,
    z_t: torch.Tensor,
    t: torch.Tensor | int,
    schedule: NoiseSchedule,
    *,
    src: str,
    dst: str,
) -> torch.Tensor:
    """A prediction of kind ``src`` at ``(z_t, t)`` as kind ``dst`` on a discrete schedule.

    With ``a = sqrt(alpha_bar_t)``, ``s = sqrt(1 - alpha_bar_t)`` and ``z_t = a x0 + s eps``:
    ``x0 = a z - s v``, ``eps = s z + a v``, ``v = a eps - s x0``
    (:func:`minidiff.paths.convert_with`). ``value, z_t: (B, ...)``, ``t: (B,)`` long.
    """
    return convert_with(_coefficients(t, schedule), value, z_t, src=src, dst=dst)  # type: ignore[arg-type]


@checked(
    net=Function("(z_t, t) -> prediction"), schedule=NoiseSchedule, prediction=OneOf(PREDICTIONS)
)
def prediction_to_eps(net: Network, schedule: NoiseSchedule, prediction: str = "v") -> EpsModel:
    """Wrap a ``v``/``x0``/``eps``-predicting network as an ``eps_model(z_t, t)`` for the samplers.

    ``eps = s z + a v`` (v), ``(z - a x0) / s`` (x0). ``net(z_t (B, ...), t (B,) long)``.
    """

    def eps(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = call_like(net, z, t, name="net", like="z_t")
        if prediction == "eps":
            return out
        return convert_with(_coefficients(t.long(), schedule), out, z, src=prediction, dst="eps")

    return eps


@checked(
    model=Function("(z_t, t) -> v"),
    x0=FloatTensor(finite=True),
    schedule=NoiseSchedule,
    t=Timesteps(of="x0", optional=True),
    generator=Rng,
)
def v_prediction_loss(
    model: Network,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``E ||v - v_theta(z_t, t)||²`` with ``v = alpha_t eps - sigma_t x0`` (Salimans & Ho 2022).

    It is ``L_simple`` of the network read as an ε-model (:func:`prediction_to_eps`), weighted by
    ``1 / alpha_bar_t``: for a v-network ``eps - eps_hat = alpha_t (v - v_hat)``. Same draws as
    :func:`minidiff.simple_loss` (``t`` uniform unless given, then ``eps``); averaged over the
    batch and the data dimensions. ``x0: (B, ...)``.
    """
    return simple_loss(
        prediction_to_eps.unchecked(model, schedule, "v"),
        x0,
        schedule,
        t=t,
        generator=generator,
        weights=1.0 / schedule.alpha_bar,
    )


@checked(schedule=NoiseSchedule, steps=Int())
def distillation_grid(schedule: NoiseSchedule, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's ``steps`` timesteps and, for each, the teacher's midpoint and the next point.

    Returns ``(grid (steps + 1,), mid (steps,))``: ``grid = [tau_N, …, tau_1, 0]`` (DDIM's trailing
    timesteps then 0) and ``mid[i]`` the entry of the ``2 steps`` grid between ``grid[i]`` and
    ``grid[i + 1]``. Needs ``2 steps <= T``.
    """
    if 2 * steps > schedule.T:
        raise ValueError(
            f"steps must be <= T/2 = {schedule.T // 2} (the teacher takes 2 steps per student "
            f"step), got {steps}"
        )
    fine = torch.cat([ddim_timesteps(schedule, 2 * steps), torch.zeros(1, dtype=torch.long)])
    return fine[0::2], fine[1::2]


def _check_next(t_next: object, name: str, z_t: torch.Tensor) -> torch.Tensor:
    """``t_next``: an int or an integer tensor ``(B,)`` like ``t`` and ``t_mid``, in ``0..T-1``
    (the order ``t > t_mid > t_next`` is checked by the caller)."""
    return index_tensor(t_next, name, z_t.shape[0], "timesteps in 0..T-1", device=z_t.device)


@checked(
    teacher=Function("(z_t, t) -> eps"),
    z_t=FloatTensor(finite=True),
    t=Timesteps(of="z_t"),
    t_mid=Timesteps(of="z_t"),
    schedule=NoiseSchedule,
)
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
    tn = _check_next(t_next, "t_next", z_t)
    if bool((t_mid >= t).any()) or bool((tn < 0).any()) or bool((tn >= t_mid).any()):
        raise ValueError("need t > t_mid > t_next >= 0 for every sample (two steps back in time)")
    return _target(teacher, z_t, t, t_mid, tn, schedule)


def _target(
    teacher: EpsModel,
    z: torch.Tensor,
    tt: torch.Tensor,
    tm: torch.Tensor,
    tn: torch.Tensor,
    sched: NoiseSchedule,
) -> torch.Tensor:
    with torch.no_grad():
        eps = call_eps_model.unchecked(teacher, z, tt, "teacher")
        z_mid = ddim_step.unchecked(z, tt, tm, eps, sched)
        eps_mid = call_eps_model.unchecked(teacher, z_mid, tm, "teacher")
        z_next = ddim_step.unchecked(z_mid, tm, tn, eps_mid, sched)
        ab = sched.alpha_bar.to(tt.device)
        ratio = ((1 - ab[tn]) / (1 - ab[tt])).sqrt()  # s''/s in float64: the division below
        denom = ab[tn].sqrt() - ratio * ab[tt].sqrt()  # is small for short steps
        return (z_next - pad_like(ratio, z) * z) / pad_like(denom, z)


def _weight(tt: torch.Tensor, sched: NoiseSchedule, weighting: str) -> torch.Tensor:
    snr = sched.snr.to(tt.device)[tt]
    return snr.clamp(min=1.0) if weighting == "truncated_snr" else snr + 1.0


@checked(
    student=Function("(z_t, t) -> prediction"),
    teacher=Function("(z_t, t) -> eps"),
    x0=FloatTensor(finite=True),
    schedule=NoiseSchedule,
    steps=Int(),
    prediction=OneOf(PREDICTIONS),
    weighting=OneOf(WEIGHTINGS),
    generator=Rng,
)
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
    ``"truncated_snr"`` ``max(SNR, 1)`` (Salimans & Ho's choice) or ``"snr_plus_one"``
    ``SNR + 1`` (with ``prediction="v"`` the plain squared error of ``v``). Averaged over the
    batch and the data dimensions; keeps the student's gradient. Random draws from ``generator``:
    the grid index, then ``eps``. ``x0: (B, ...)``.
    """
    grid, mid = distillation_grid.unchecked(schedule, steps)
    gen_device = generator.device if generator is not None else "cpu"
    i = torch.randint(0, steps, (x0.shape[0],), generator=generator, device=gen_device).cpu()
    tt, tm, tn = (v[i].to(x0.device) for v in (grid[:-1], mid, grid[1:]))
    z = q_sample.unchecked(x0, tt, schedule, noise_like(x0, generator))
    target = _target(teacher, z, tt, tm, tn, schedule)
    out = call_like(student, z, tt, name="student", like="z_t")
    x_hat = convert_with(_coefficients(tt, schedule), out, z, src=prediction, dst="x0")
    err = mean_data_dims((target - x_hat) ** 2)
    return (err * _weight(tt, schedule, weighting).to(err.dtype)).mean()


class DistilledRound(NamedTuple):
    """One round of :func:`progressive_distillation`: the student for ``steps`` DDIM steps."""

    steps: int
    model: nn.Module
    eps_model: EpsModel
    cpu_seconds: float


def _round_checkpoints(options: dict[str, Any], rounds: list[int]) -> dict[int, dict[str, Any]]:
    """``train``'s options for each round: with a ``checkpoint_path`` (given, or in a ``config``)
    each round ``N`` saves to its own file ``{stem}.steps{N}{suffix}`` (``pd.pt`` ->
    ``pd.steps4.pt``), so that a round never resumes another round's checkpoint. Every path is
    checked before any work."""
    from .training import TrainConfig, check_checkpoint_path

    config = options.get("config")
    path = options.get(
        "checkpoint_path", config.checkpoint_path if isinstance(config, TrainConfig) else None
    )
    if path is None:
        return {n: options for n in rounds}
    base = check_checkpoint_path(path, "checkpoint_path")
    out = {}
    for n in rounds:
        own = base.with_name(f"{base.stem}.steps{n}{base.suffix}")
        out[n] = {**options, "checkpoint_path": check_checkpoint_path(own, "checkpoint_path")}
    return out


def _round_steps(value: object, name: str) -> Any:
    """A round's optimizer steps: an int, or a callable ``N -> int`` of the round's step count."""
    return value if callable(value) else check_positive_int(value, name)


@checked(
    student=nn.Module,
    teacher=Function("(z_t, t) -> eps"),
    schedule=NoiseSchedule,
    teacher_steps=Int(minimum=2),
    final_steps=Int(),
    train_steps=Check(_round_steps),
    prediction=OneOf(PREDICTIONS),
)
def progressive_distillation(
    student: nn.Module,
    teacher: EpsModel,
    schedule: NoiseSchedule,
    data: Any,
    *,
    teacher_steps: int = 256,
    final_steps: int = 1,
    train_steps: int | Callable[[int], int] = 200,
    prediction: str = "v",
    progress: bool = True,
    **train_options: Any,
) -> dict[int, DistilledRound]:
    """Salimans & Ho's rounds: ``teacher_steps -> teacher_steps/2 -> … -> final_steps``.

    Round ``N`` trains a copy of the previous student (``student`` itself in the first round)
    with :func:`progressive_distillation_loss` against the previous round's teacher (``teacher``
    in the first round) through :func:`minidiff.training.train`, for ``train_steps(N)`` optimizer
    steps (or a fixed number), and takes its EMA weights as the next teacher. ``data`` and
    ``train_options`` (``batch_size``, ``lr``, ...) go to ``train``; ``teacher_steps`` and
    ``final_steps`` must be powers of two apart. Returns ``{N: DistilledRound}`` in the order
    trained; ``cpu_seconds`` counts every round down to ``N`` (in this call: a round resumed
    from a finished checkpoint counts only its loading).

    With ``checkpoint_path="dir/pd.pt"`` (a ``train`` option) round ``N`` saves to its own
    checkpoint ``dir/pd.stepsN.pt``. Calling again with the same arguments (and ``resume=True``,
    the default) resumes exactly: a finished round loads its student from its checkpoint and
    trains no further, the round that was interrupted continues from its last checkpoint, and
    the rounds after it run as before.
    """
    ratio = teacher_steps // final_steps
    if teacher_steps < 2 * final_steps or teacher_steps % final_steps or ratio & (ratio - 1):
        raise ValueError(
            "teacher_steps must be final_steps · 2^k with k >= 1, "
            f"got teacher_steps={teacher_steps} and final_steps={final_steps}"
        )
    if teacher_steps > schedule.T:
        raise ValueError(
            f"teacher_steps must be <= T={schedule.T} (one timestep per teacher step), "
            f"got {teacher_steps}"
        )
    from .training import train  # the one training loop (imported here: it imports this package)

    per_round = train_steps if callable(train_steps) else (lambda n: train_steps)
    sizes = [teacher_steps >> k for k in range(1, ratio.bit_length())]
    options = _round_checkpoints(train_options, sizes)
    rounds: dict[int, DistilledRound] = {}
    net = copy.deepcopy(student).requires_grad_(True).train()
    cpu = 0.0
    n = teacher_steps // 2
    bar = tqdm(total=ratio.bit_length() - 1, desc="distillation rounds", disable=not progress)
    while n >= final_steps:
        start = time.process_time()

        def loss(
            m: nn.Module, x0: torch.Tensor, g: torch.Generator, n: int = n, tch: EpsModel = teacher
        ) -> torch.Tensor:
            return progressive_distillation_loss(
                m, tch, x0, schedule, n, prediction=prediction, generator=g
            )

        result = train(net, loss, data, steps=per_round(n), progress=False, **options[n])
        done = copy.deepcopy(result.ema.model).eval()
        cpu += time.process_time() - start
        teacher = prediction_to_eps(done, schedule, prediction)
        rounds[n] = DistilledRound(n, done, teacher, cpu)
        net = copy.deepcopy(done).requires_grad_(True).train()
        n //= 2
        bar.update()
    bar.close()
    return rounds
