"""The options of :func:`minidiff.train`, validated in one place, and the record a resume checks.

``TrainConfig`` holds every option of the loop. Its fields marked ``resume`` change what a step
computes (batch, learning rate, EMA, clipping, ...): they are written into each checkpoint, and a
checkpoint resumes only under the same values. The others (how long, where to save, how often to
log, the device) may change between an interrupted run and its continuation.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .._validation import (
    check_choice,
    check_device,
    check_generator,
    check_number,
    check_positive_int,
)
from .checkpoint import check_checkpoint_path
from .optim import LR_SCHEDULES

__all__ = ["TrainConfig", "check_resume_record"]

_RESUME = {"resume": True}  # a field that a checkpoint records and a resume must match


@dataclass
class TrainConfig:
    """Every option of :func:`minidiff.train`; checked on construction (``TypeError`` for a wrong
    kind of value, ``ValueError`` for a wrong value), before any work.

    Attributes:
        steps: total optimizer steps, counting those already in a resumed checkpoint.
        batch_size: rows per batch drawn from a tensor (or tuple of tensors) or asked of a
            callable; a ``DataLoader`` or other iterable brings its own batches.
        lr: peak AdamW learning rate. weight_decay: AdamW's decoupled weight decay.
        ema_decay: decay of the exponential moving average of the weights (see ``EMA``).
        grad_clip: clip the global gradient norm to this (``None``: no clipping).
        warmup_steps: linear warm-up of the learning rate over this many steps.
        lr_schedule: ``"constant"`` after the warm-up, or ``"cosine"`` decay to 0 at ``steps``
            (see :func:`learning_rate`); a cosine run resumes only towards the same ``steps``.
        amp: bfloat16 autocast for the forward pass (recent GPUs; no loss scaling needed).
        generator: the loop's CPU generator (batches, and ``t`` and noise inside ``loss_fn``);
            default ``torch.Generator().manual_seed(seed)``.
        seed: seed of the default generator.
        device: where to train (default: where the model's parameters are).
        checkpoint_path: save there every ``checkpoint_every`` steps and at the end.
        resume: continue from the checkpoint at ``checkpoint_path`` if there is one (its model and
            resume record must match; the global torch RNG state is restored too).
        progress: a ``tqdm.auto`` progress bar with the loss, refreshed every ``log_every`` steps.
        log_every: read the losses back from the device every this many steps.
    """

    steps: int
    batch_size: int = field(default=512, metadata=_RESUME)
    lr: float = field(default=1e-3, metadata=_RESUME)
    weight_decay: float = field(default=0.0, metadata=_RESUME)
    ema_decay: float = field(default=0.999, metadata=_RESUME)
    grad_clip: float | None = field(default=1.0, metadata=_RESUME)
    warmup_steps: int = field(default=0, metadata=_RESUME)
    lr_schedule: str = field(default="constant", metadata=_RESUME)
    amp: bool = field(default=False, metadata=_RESUME)
    generator: torch.Generator | None = None
    seed: int = 0
    device: torch.device | str | None = None
    checkpoint_path: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    resume: bool = True
    progress: bool = True
    log_every: int = 10

    def __post_init__(self) -> None:
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.warmup_steps, "warmup_steps", minimum=0)
        check_positive_int(self.log_every, "log_every")
        check_positive_int(self.seed, "seed", minimum=0)
        if self.checkpoint_every is not None:
            check_positive_int(self.checkpoint_every, "checkpoint_every")
        self.lr = check_number(self.lr, "lr", low=0.0)
        self.weight_decay = check_number(self.weight_decay, "weight_decay", low=0.0, low_open=False)
        self.ema_decay = check_number(
            self.ema_decay, "ema_decay", low=0.0, high=1.0, low_open=False
        )
        if self.grad_clip is not None:
            self.grad_clip = check_number(self.grad_clip, "grad_clip", low=0.0)
        check_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        for name in ("amp", "resume", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        generator = check_generator(self.generator)
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"generator must be a CPU torch.Generator, got one on {generator.device}"
            )
        self.device = check_device(self.device)
        if self.checkpoint_path is not None:  # before the first step, not after the last
            self.checkpoint_path = check_checkpoint_path(self.checkpoint_path)

    def resume_record(self, data: Any) -> dict[str, Any]:
        """What a checkpoint records and a resume must match: the ``resume`` fields and ``data``
        (a description of the data source)."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata}
        if record.pop("lr_schedule") == "cosine":  # a cosine run decays towards its own last step
            record["lr_schedule"] = f"cosine to step {self.steps}"
        return {**record, "data": data}

    @classmethod
    def from_options(cls, config: TrainConfig | None, options: dict[str, Any]) -> TrainConfig:
        """``config`` with ``options`` replaced, or ``TrainConfig(**options)``; an unknown option
        is a ``TypeError`` naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; the options are {sorted(names)}")
        if config is None:
            if "steps" not in options:
                raise TypeError("steps must be given: the number of optimizer steps (an int >= 1)")
            return cls(**options)
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
        return dataclasses.replace(config, **options)


def check_resume_record(saved: dict[str, Any], ours: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming every entry in which a checkpoint's record and ours differ."""
    diff = sorted(k for k in set(ours) | set(saved) if ours.get(k) != saved.get(k))
    if diff:
        detail = ", ".join(f"{k}={saved.get(k)!r} in checkpoint vs {ours.get(k)!r}" for k in diff)
        raise ValueError(
            f"{where} was written with another training configuration ({detail}); "
            "pass resume=False or another checkpoint_path to start afresh"
        )


def signature_with_options(fn: Any, leading: int) -> inspect.Signature:
    """``fn``'s first ``leading`` parameters followed by every option of ``TrainConfig`` as a
    keyword, so that ``help(train)`` and a notebook's tooltip list the options and defaults."""
    params = list(inspect.signature(fn).parameters.values())[:leading]
    for f in dataclasses.fields(TrainConfig):
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default))
    return inspect.signature(fn).replace(parameters=params)
