"""One training loop for every chapter: draw, loss, backward, clip, AdamW step, EMA.

:func:`train_steps` is the loop itself, a generator that yields after every optimizer step, so
that a caller can sample, log or checkpoint between steps; :func:`train` drives it with a progress
bar and periodic checkpoints. Their options are a :class:`~minidiff.training.TrainConfig`, their
state (what a checkpoint holds) a :class:`~minidiff.training.TrainState`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import check_callable, skip_value_checks
from .batches import batches_from, to_device
from .config import TrainConfig, signature_with_options
from .ema import EMA
from .optim import learning_rate
from .state import TrainState

__all__ = ["train", "train_steps", "TrainResult", "ProgressBar", "LossFn"]

LossFn = Callable[[nn.Module, Any, torch.Generator], Tensor]


@dataclass
class TrainResult:
    """What ``train`` returns. ``ema.model`` is the averaged model to sample from."""

    model: nn.Module
    ema: EMA
    losses: list[float] = field(default_factory=list)
    steps_done: int = 0
    seconds: float = 0.0


def train_steps(state: TrainState, loss_fn: LossFn) -> Iterator[int]:
    """The optimizer steps ``state.step + 1 .. config.steps`` (DDPM Algorithm 1 when ``loss_fn``
    is L_simple), yielding the number of each step once it is done (``state`` holds the rest).

    Nothing in a step reads a value back from the device: the loss and the gradient norm of each
    step wait in ``state.pending`` until the caller calls ``state.flush()``.
    """
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a TrainState, got {type(state).__name__}")
    check_callable(loss_fn, "loss_fn", "(model, batch, generator) -> scalar loss")
    model, opt, g, cfg = state.model, state.optimizer, state.generator, state.config
    autocast = torch.autocast(state.device.type, torch.bfloat16) if cfg.amp else None
    if state.device.type != "cpu":  # on the CPU the checks cost no synchronisation: keep them all
        loss_fn = _value_checks_on_first_call(loss_fn)
    for step in range(state.step + 1, cfg.steps + 1):
        # draw a batch (rows, t and noise all come from the run's generator)
        batch = to_device(state.batches.draw(cfg.batch_size, g), state.device)
        # the loss
        with autocast or contextlib.nullcontext():
            loss = _scalar(loss_fn(model, batch, g))
        # backward
        opt.zero_grad()
        loss.float().backward()
        # clip the global gradient norm
        norm = opt.clip_grad_norm()
        # AdamW step at this step's learning rate (skipped if the loss or the norm is not finite)
        lr = learning_rate.unchecked(step, cfg.steps, cfg.lr, cfg.warmup_steps, cfg.lr_schedule)
        opt.step(lr, loss, norm)
        # EMA of the weights
        state.ema.update(model)
        state.step = step
        state.pending.append((step, loss.detach(), norm))
        yield step


def train(
    model: nn.Module, loss_fn: LossFn, data: Any, config: TrainConfig | None = None, **options: Any
) -> TrainResult:
    """Minimise ``loss_fn`` with AdamW for ``steps`` optimizer steps, keeping an EMA of the weights.

    Each step ``k = 1..steps``: draw a batch from ``data``, ``loss = loss_fn(model, batch,
    generator)``, backward, clip the global gradient norm, AdamW step at :func:`learning_rate`
    ``(k)``, EMA update (:func:`train_steps` is that loop).

    Args:
        model: the network; moved to ``device`` (default: where its parameters already are).
        loss_fn: ``loss_fn(model, batch, generator) -> scalar tensor``; draw all randomness from
            ``generator`` so that runs are reproducible. A loss that keeps state between steps
            exposes it as ``state_dict``/``load_state_dict`` and the checkpoint holds it too.
        data: a tensor ``(N, ...)``, a tuple ``(x, y, ...)`` of tensors, a ``TensorDataset``, a
            ``DataLoader`` or other iterable of batches, or a callable ``(batch_size, generator)
            -> batch`` (see :mod:`minidiff.training.batches` for how each resumes).
        config, options: a :class:`TrainConfig`, and/or its fields as keywords (``steps`` is
            required): ``batch_size``, ``lr``, ``weight_decay``, ``ema_decay``, ``grad_clip``,
            ``warmup_steps``, ``lr_schedule``, ``amp``, ``generator``, ``seed``, ``device``,
            ``checkpoint_path``, ``checkpoint_every``, ``resume``, ``progress``, ``log_every``.

    Returns:
        ``TrainResult(model, ema, losses, steps_done, seconds)``; ``losses`` has one float per step
        since step 1 (including resumed ones), ``seconds`` is the wall time of this call.

    Raises:
        NonFiniteLossError: at the first step whose loss or gradient norm is NaN/inf (read every
            ``log_every`` steps); that update and every later one were skipped.
    """
    t_start = time.perf_counter()
    config = TrainConfig.from_options(config, options)
    check_callable(loss_fn, "loss_fn", "(model, batch, generator) -> loss")
    state = TrainState(model, config, batches_from(data), loss_fn)
    path = config.checkpoint_path
    state.resume_from(path if config.resume else None)
    start, every = state.step, config.checkpoint_every
    with ProgressBar(config, start) as bar:
        for step in train_steps(state, loss_fn):
            if step % config.log_every == 0 or step == config.steps:
                state.flush()
                bar.show(state)
            if path is not None and every and step % every == 0 and step < config.steps:
                state.save(path)
        state.flush()
    if path is not None and start < config.steps:
        state.save(path)
    seconds = time.perf_counter() - t_start
    return TrainResult(model, state.ema, state.losses, state.step, seconds)


train.__signature__ = signature_with_options(train, leading=4)  # type: ignore[attr-defined]


class ProgressBar:
    """A ``tqdm.auto`` bar (``config.progress``) showing the step and the last loss."""

    def __init__(self, config: TrainConfig, start: int) -> None:
        self.bar = None
        if config.progress and start < config.steps:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=config.steps, initial=start, desc="train", leave=True)

    def show(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{state.losses[-1]:.4f}", refresh=False)
            self.bar.update(state.step - self.bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _scalar(loss: object) -> Tensor:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        got = type(loss).__name__
        if isinstance(loss, Tensor):
            got += f" of shape {tuple(loss.shape)}"
        raise TypeError(f"loss_fn must return a scalar tensor, got {got}")
    return loss.reshape(())


def _value_checks_on_first_call(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` whose argument checks read values back (NaN, ``t`` range) on its first call only.

    On an accelerator each such read is a device synchronisation, and a training step should
    have none; a bug in how the loss draws ``t`` or noise shows up on the first step, and the
    loop's own watch on the loss catches NaN later.
    """
    calls = 0

    def wrapped(model: nn.Module, batch: Any, generator: torch.Generator) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return loss_fn(model, batch, generator)
        with skip_value_checks():
            return loss_fn(model, batch, generator)

    return wrapped
