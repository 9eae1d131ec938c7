"""Recipes: settings measured to work, each one line for a student.

``train_toy(data)`` trains the recommended 2D recipe on a toy data set (a name of
:data:`minidiff.TOY_DATASETS`, a tensor ``(N, D)`` or a callable ``(n, generator) -> (n, D)``)::

    result = minidiff.train_toy("two_spirals")          # 3000 steps, ~10 s of one idle CPU core
    samples = minidiff.ddpm_sample(result.ema.model, minidiff.linear_schedule(1000), (2000, 2))

The recipe (chosen by learning speed per CPU-second; ``bench/README.md`` has the sweep): a narrow
``TimeMLP`` (hidden 64, 3 blocks) with the NeRF input encoding (``x_frequencies=5``, so that it
draws thin structures), batch 256, AdamW lr 3e-3 with a 100-step warm-up and a cosine decay,
EMA 0.99, gradient clipping at 1, and ``L_simple`` with ``t = floor(T u^2) + 1`` (``P(t) ~
t^(-1/2)``: small ``t``, where thin structures are decided, drawn more often). With it every toy of
``bench/ddpm_toys.py`` reaches at least 0.95 x the data's own k-NN precision and recall in the
default 3000 steps, which cost about 10 s of one idle CPU core (``bench/README.md``).

Why a recipe and not new defaults: ``train`` serves every chapter (U-Nets at lr 2e-4, classifiers,
score networks), where lr 3e-3 and EMA 0.99 would be wrong; ``simple_loss`` draws ``t`` uniformly
because that is DDPM's Algorithm 1, which chapters 3 and 4 derive and check; and the default
``TimeMLP`` without the input encoding is the network chapters 3, 6, 8 and 9 measure their
numbers with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .._validation import Instance, call_sampler, check_choice, checked, describe
from ..data import TOY_DATASETS, toy_dataset
from ..losses import sample_timesteps, simple_loss
from ..nn.mlp import TimeMLP
from ..schedules import NoiseSchedule, linear_schedule
from .loop import LossFn, TrainResult, train

__all__ = [
    "TOY_2D_NETWORK",
    "TOY_2D_OPTIONS",
    "TOY_2D_T_POWER",
    "TOY_2D_STEPS",
    "toy_model",
    "toy_loss",
    "train_toy",
]

#: ``TimeMLP`` arguments of the 2D recipe.
TOY_2D_NETWORK: dict[str, int] = {"hidden": 64, "n_layers": 3, "time_dim": 64, "x_frequencies": 5}
#: ``train`` options of the 2D recipe (the warm-up is capped at ``steps``).
TOY_2D_OPTIONS: dict[str, Any] = {
    "batch_size": 256,
    "lr": 3e-3,
    "warmup_steps": 100,
    "lr_schedule": "cosine",
    "ema_decay": 0.99,
    "grad_clip": 1.0,
}
#: ``t = floor(T u^p) + 1`` with this ``p`` (:func:`minidiff.losses.sample_timesteps`).
TOY_2D_T_POWER = 2.0
#: Steps of ``train_toy`` by default: about 10 s of one idle CPU core (3 ms per step).
TOY_2D_STEPS = 3000


def toy_model(data_dim: int = 2) -> TimeMLP:
    """The recipe's network: ``TimeMLP(data_dim, **TOY_2D_NETWORK)``."""
    net = TOY_2D_NETWORK
    return TimeMLP(
        data_dim,
        net["hidden"],
        net["n_layers"],
        net["time_dim"],
        x_frequencies=net["x_frequencies"],
    )


def toy_loss(schedule: NoiseSchedule) -> LossFn:
    """``L_simple`` on ``schedule`` with the recipe's timesteps ``t = floor(T u^2) + 1``: the
    same minimiser as uniform ``t`` for a model that fits every ``t``, weighted ``w_t = T P(t)``."""

    def loss_fn(model: nn.Module, x0: Tensor, generator: torch.Generator) -> Tensor:
        t = sample_timesteps(x0.shape[0], schedule.T, generator, power=TOY_2D_T_POWER)
        return simple_loss(model, x0, schedule, t=t, generator=generator)

    return loss_fn


_TOY_DATA = "a toy name (str), a tensor (N, D) or a callable (n, generator) -> (n, D)"


def _toy_data_dim(data: object) -> int:
    """The data dimension ``D`` of ``train_toy``'s ``data`` (2 for a toy name; a callable's read
    off one point drawn with a throwaway generator); ``TypeError``/``ValueError`` naming ``data``
    for anything else, since the recipe's loss takes plain ``(B, D)`` batches."""
    if isinstance(data, str):
        check_choice(data, "data", TOY_DATASETS)
        return 2
    if data is toy_dataset:  # its first argument is the name: toy_dataset(1, g) would blame it
        raise TypeError(
            "data must be a toy name or a callable (n, generator) -> (n, D), got toy_dataset "
            "itself: pass the name, data='moons', or lambda n, g: toy_dataset('moons', n, g)"
        )
    if isinstance(data, Tensor):
        probe, what = data, "data"
    elif callable(data) and not isinstance(data, type):
        probe = call_sampler(data, 1, torch.Generator().manual_seed(0), "data")
        what = "data(1, generator)"
    else:
        hint = ""
        if isinstance(data, (TensorDataset, tuple)):
            hint = " (a TensorDataset or a tuple of tensors: pass its tensor of points)"
        elif isinstance(data, list):
            hint = " (a list of points: pass torch.tensor(data))"
        raise TypeError(f"data must be {_TOY_DATA}, got {describe(data)}{hint}")
    if not isinstance(probe, Tensor) or not probe.is_floating_point():
        raise TypeError(f"{what} must be a floating tensor (N, D), got {describe(probe)}")
    if probe.ndim != 2 or probe.shape[1] < 1:
        raise ValueError(f"{what} must have shape (N, D) with D >= 1, got {tuple(probe.shape)}")
    return int(probe.shape[1])


@checked(
    schedule=Instance(
        NoiseSchedule, "a NoiseSchedule or None (linear_schedule(1000))", optional=True
    )
)
def train_toy(
    data: str | Tensor | Callable[[int, torch.Generator], Tensor],
    steps: int = TOY_2D_STEPS,
    *,
    schedule: NoiseSchedule | None = None,
    seed: int = 0,
    **options: Any,
) -> TrainResult:
    """Train the 2D recipe on ``data`` for ``steps`` steps; sample from ``result.ema.model``.

    ``data``: a toy name (fresh points every step), a floating tensor ``(N, D)`` or a callable
    ``(n, generator) -> (n, D)``; the network is built for that ``D`` (a callable is called once
    with a throwaway generator to read it). Anything else (a ``TensorDataset``, a ``DataLoader``,
    a list) is a ``TypeError`` before any work: :func:`minidiff.train` takes those, with a loss
    that unpacks their batches. ``schedule``: a :class:`NoiseSchedule` (default
    ``linear_schedule(1000)``; anything else is a ``TypeError`` before any work). ``seed`` fixes
    the initial weights and the run's generator. ``options`` override :data:`TOY_2D_OPTIONS` or add
    any other option of :func:`minidiff.train` (``progress``, ``checkpoint_path``, ...).
    """
    dim = _toy_data_dim(data)  # before any work: a wrong kind of data builds no network
    if isinstance(data, str):
        name = data

        def source(n: int, g: torch.Generator) -> Tensor:
            return toy_dataset(name, n, g)

        data_source: Any = source
    else:
        data_source = data
    schedule = schedule if schedule is not None else linear_schedule(1000)
    settings = {**TOY_2D_OPTIONS, "seed": seed, **options}
    if isinstance(steps, int) and not isinstance(steps, bool):
        settings["warmup_steps"] = min(settings["warmup_steps"], steps)
    torch.manual_seed(seed)
    return train(toy_model(dim), toy_loss(schedule), data_source, steps=steps, **settings)
