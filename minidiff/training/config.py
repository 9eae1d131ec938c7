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

from .._validation import Check, Device, Flag, Int, Number, OneOf, Rng, check_with
from .checkpoint import check_checkpoint_path
from .optim import LR_SCHEDULES

__all__ = ["TrainConfig", "option", "check_options", "check_resume_record"]


def option(default: Any, check: object = None, *, resume: bool = False, **meta: Any) -> Any:
    """A config field with its default and its check (a spec of :mod:`minidiff._validation`);
    ``resume=True`` marks what a checkpoint records and a resume must match."""
    return field(default=default, metadata={"check": check, "resume": resume, **meta})


def check_options(config: Any) -> None:
    """Check every field of a config dataclass against its spec; store what the check returns
    (a number becomes a float, a device string a ``torch.device``)."""
    for f in dataclasses.fields(config):
        spec, value = f.metadata.get("check"), getattr(config, f.name)
        if spec is not None and (value is not None or not getattr(spec, "optional", False)):
            setattr(config, f.name, check_with(spec, value, f.name))


def _cpu_generator(value: object, name: str) -> torch.Generator:
    generator = check_with(Rng, value, name)
    if generator.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU torch.Generator, not one on {generator.device}")
    return generator


_REQUIRED = dataclasses.MISSING


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

    steps: int = option(_REQUIRED, Int())
    batch_size: int = option(512, Int(), resume=True)
    lr: float = option(1e-3, Number(low=0.0), resume=True)
    weight_decay: float = option(0.0, Number(low=0.0, low_open=False), resume=True)
    ema_decay: float = option(0.999, Number(low=0.0, high=1.0, low_open=False), resume=True)
    grad_clip: float | None = option(1.0, Number(low=0.0, optional=True), resume=True)
    warmup_steps: int = option(0, Int(minimum=0), resume=True)
    lr_schedule: str = option("constant", OneOf(LR_SCHEDULES), resume=True)
    amp: bool = option(False, Flag, resume=True)
    generator: torch.Generator | None = option(None, Check(_cpu_generator, optional=True))
    seed: int = option(0, Int(minimum=0))
    device: torch.device | str | None = option(None, Device)
    # checked before the first step, not after the last
    checkpoint_path: str | os.PathLike[str] | None = option(
        None, Check(check_checkpoint_path, optional=True)
    )
    checkpoint_every: int | None = option(None, Int(optional=True))
    resume: bool = option(True, Flag)
    progress: bool = option(True, Flag)
    log_every: int = option(10, Int())

    def __post_init__(self) -> None:
        check_options(self)
        if self.checkpoint_every is not None and self.checkpoint_path is None:
            raise ValueError(
                f"checkpoint_every={self.checkpoint_every} needs a checkpoint_path to save to"
            )

    def resume_record(self, data: Any) -> dict[str, Any]:
        """What a checkpoint records and a resume must match: the ``resume`` fields and ``data``
        (a description of the data source)."""
        fields = dataclasses.fields(self)
        record = {f.name: getattr(self, f.name) for f in fields if f.metadata["resume"]}
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


# What a record without the entry means: a constant-rate run records no lr_schedule (as every run
# did before the option existed), so that its checkpoints and the older ones resume alike.
_UNRECORDED = {"lr_schedule": "constant"}


def check_resume_record(
    saved: dict[str, Any],
    ours: dict[str, Any],
    where: str,
    remedy: str = "pass resume=False or another checkpoint_path to start afresh",
) -> None:
    """Raise ``ValueError`` naming every entry in which a checkpoint's record and ours differ
    (inside a nested record by its dotted path, ``data.lr``), followed by ``remedy``: what the
    caller can do instead. Tuples and lists compare equal (a record read back from JSON, or saved
    by an older version, holds lists where the caller's held tuples)."""
    old, new = _flat(_plain(saved)), _flat(_plain(ours))
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    # an entry the data's record repeats (an image run records its lr there too) is said once
    diff = [k for k in diff if not _repeats(k, diff, old, new)]
    if diff:

        def shown(record: dict[str, Any], k: str) -> str:
            text = repr(record.get(k, _UNRECORDED.get(k)))
            return text if len(text) <= 60 else text[:57] + "..."

        detail = ", ".join(f"{k}={shown(old, k)} in checkpoint vs {shown(new, k)}" for k in diff)
        raise ValueError(
            f"{where} was written with another training configuration ({detail}); {remedy}"
        )


def _repeats(key: str, diff: list[str], old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether ``key`` is ``data.<name>`` and ``<name>`` differs in just the same way."""
    name = key.removeprefix("data.")
    return (
        name != key
        and name in diff
        and (old.get(key), new.get(key))
        == (
            old.get(name),
            new.get(name),
        )
    )


def _plain(value: Any) -> Any:
    """``value`` with every tuple a list, as a JSON round trip would give it."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``record`` with its nested dicts spread out under dotted keys (``{"data": {"lr": 1}}`` ->
    ``{"data.lr": 1}``), so that a difference is named by the entry that differs."""
    flat: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, dict):  # an empty one adds nothing: its entries are absent
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def signature_with_options(fn: Any, leading: int) -> inspect.Signature:
    """``fn``'s first ``leading`` parameters followed by every option of ``TrainConfig`` as a
    keyword, so that ``help(train)`` and a notebook's tooltip list the options and defaults."""
    params = list(inspect.signature(fn).parameters.values())[:leading]
    for f in dataclasses.fields(TrainConfig):
        default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default))
    return inspect.signature(fn).replace(parameters=params)
