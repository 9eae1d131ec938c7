"""The state of a training run: everything a step changes, and so everything a checkpoint holds.

Randomness is owned by the run: batches (for tensor data), timesteps and noise (inside
``loss_fn``) are drawn from one CPU ``torch.Generator``. A checkpoint stores that generator's
state together with the model, the EMA, the optimizer, the global torch RNG state (dropout), the
position in the data, the loss history and the state of a ``loss_fn`` that keeps one
(``state_dict``/``load_state_dict``), so a run that is stopped and resumed produces bitwise
the same weights as one that was not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

from .batches import Batches, batches_from, keeps_state
from .checkpoint import (
    check_loadable,
    check_model_fingerprint,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
)
from .config import TrainConfig, check_resume_record
from .ema import EMA
from .optim import ClippedAdamW

__all__ = ["TrainState", "NonFiniteLossError", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1
_REQUIRED = (
    *("model", "ema", "optimizer", "step", "generator_state", "torch_rng_state", "losses"),
    *("model_fingerprint", "config"),
)


class NonFiniteLossError(ValueError):
    """The loss (or the gradient norm) became NaN or infinite; that update and every later one
    were skipped, so the weights are those after the last good step."""


class TrainState:
    """Model, EMA, optimizer, generator, step and losses of one run, built from a ``TrainConfig``.

    ``pending`` holds ``(step, loss, grad_norm)`` of the steps whose values are still on the
    device; :meth:`flush` reads them back (one synchronisation), averaged across processes by
    ``reduce`` when it is set, and raises :class:`NonFiniteLossError` at the first bad step.
    """

    def __init__(
        self, model: nn.Module, config: TrainConfig, batches: Batches | Any, loss_fn: object = None
    ) -> None:
        """``batches``: a :class:`Batches`, or any data :func:`batches_from` takes (a tensor, a
        sampler ``(n, generator) -> batch``, a ``DataLoader``, ...). ``loss_fn``: the objective;
        one that keeps state between steps (``state_dict``/``load_state_dict``, e.g. consistency
        distillation's target network) is saved and restored with the checkpoint."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(
                f"config must be a TrainConfig (e.g. TrainConfig(steps=100)), got "
                f"{type(config).__name__}"
            )
        if not isinstance(batches, Batches):
            batches = batches_from(batches)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("model has no trainable parameters")
        device = config.device if config.device is not None else params[0].device
        self.device = torch.device(device)
        self.model = model.to(self.device).train()
        self.config, self.batches = config, batches
        self.optimizer = ClippedAdamW(
            params, config.lr, config.weight_decay, config.grad_clip, self.device
        )
        self.ema = EMA(model, decay=config.ema_decay)
        generator = config.generator
        self.generator = generator if generator is not None else torch.Generator()
        if generator is None:
            self.generator.manual_seed(config.seed)
        self.record = config.resume_record(batches.description)
        self.step = 0
        self.losses: list[float] = []
        self.pending: list[tuple[int, Tensor, Tensor | None]] = []
        self.reduce: Callable[[Tensor], Tensor] | None = None
        self.stateful_loss: _Stateful | None = (
            cast(_Stateful, loss_fn) if keeps_state(loss_fn, "loss_fn") else None
        )
        if config.checkpoint_path is not None:  # refused now, not at the first save
            self._check_savable()

    def _check_savable(self) -> None:
        """``TypeError`` if the state of ``loss_fn`` or of the data is something a checkpoint
        cannot hold (checked before the first step, not after the steps up to the first save)."""
        if self.stateful_loss is not None:
            check_loadable(self.stateful_loss.state_dict(), "loss_fn.state_dict()")
        data = getattr(self.batches, "stateful", None)
        if data is not None:
            check_loadable(data.state_dict(), "data.state_dict()")

    # ------------------------------------------------------------------------ reading the losses

    def flush(self) -> None:
        """Read the pending losses back (one synchronisation) and append them to ``losses``."""
        if not self.pending:
            return
        values = torch.stack([loss for _, loss, _ in self.pending]).float()
        values = self.reduce(values) if self.reduce is not None else values
        norms = [n for _, _, n in self.pending if n is not None]
        norm_values = torch.stack(norms).tolist() if norms else [0.0] * len(self.pending)
        steps = [step for step, _, _ in self.pending]
        self.pending.clear()
        for step, value, norm in zip(steps, values.tolist(), norm_values, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"non-finite loss {value} at step {step}; training stopped and this update "
                    "and every later one skipped (the weights are those after the last good step)"
                )
            if not math.isfinite(norm):
                raise NonFiniteLossError(
                    f"non-finite gradient norm {norm} at step {step} (loss {value}); training "
                    "stopped and this update and every later one skipped"
                )
            self.losses.append(value)

    # ------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint of the current step (read the pending losses first with ``flush``)."""
        state = {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "generator_state": self.generator.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "losses": list(self.losses),
            "model_fingerprint": model_fingerprint(self.model),
            "config": self.record,
        }
        if self.device.type == "cuda":
            state["cuda_rng_state"] = torch.cuda.get_rng_state(self.device)
        if self.stateful_loss is not None:
            state["loss_state"] = self.stateful_loss.state_dict()
        data_state = self.batches.state_dict()
        return state if data_state is None else {**state, "data_state": data_state}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the checkpoint of the current step atomically (after reading pending losses)."""
        self.flush()
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise NonFiniteLossError(
                f"weights are not finite at step {self.step}; checkpoint not written"
            )
        save_checkpoint(path, **self.state_dict())

    def load_state_dict(
        self, ckpt: dict[str, Any], where: str = "checkpoint", remedy: str | None = None
    ) -> None:
        """Continue from ``ckpt``: refused (``ValueError`` naming what differs, then ``remedy``,
        what the caller can do instead) unless it is a training checkpoint of this model under
        the same resume record, at most at ``steps``, holding the state of a stateful
        ``loss_fn`` and data source. Every check runs before anything is loaded: a refused
        checkpoint leaves the model, EMA and optimizer as they were."""
        missing = [key for key in _REQUIRED if key not in ckpt]
        if missing:
            raise ValueError(f"{where} is not a training checkpoint: missing {missing[0]!r}")
        check_model_fingerprint(self.model, ckpt["model_fingerprint"], where=where)
        if remedy is None:
            check_resume_record(ckpt["config"], self.record, where)
        else:
            check_resume_record(ckpt["config"], self.record, where, remedy)
        if int(ckpt["step"]) > self.config.steps:
            raise ValueError(f"{where} is at step {ckpt['step']}, past steps={self.config.steps}")
        if self.stateful_loss is not None and "loss_state" not in ckpt:
            raise ValueError(
                f"{where} holds no state of loss_fn ({type(self.stateful_loss).__name__} keeps "
                "state between steps); it was written by a run with another loss_fn"
            )
        self.batches.check_state(ckpt.get("data_state"), where)
        if self.stateful_loss is not None:  # first: its own checks may still refuse
            self.stateful_loss.load_state_dict(ckpt["loss_state"])
        self.step = int(ckpt["step"])
        self.model.load_state_dict(ckpt["model"])
        self.ema.load_state_dict(ckpt["ema"])
        self.ema.model.to(self.device)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.generator.set_state(ckpt["generator_state"])
        self.batches.load_state_dict(ckpt.get("data_state"))  # before the RNG: it replays a pass
        torch.set_rng_state(ckpt["torch_rng_state"])
        if self.device.type == "cuda" and "cuda_rng_state" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng_state"], self.device)
        self.losses = [float(v) for v in ckpt["losses"]]

    def resume_from(self, path: str | os.PathLike[str] | None, remedy: str | None = None) -> None:
        """Load the checkpoint at ``path`` if there is one (``remedy``: see
        :meth:`load_state_dict`)."""
        if path is not None and Path(path).exists():
            where = f"checkpoint {str(path)!r}"
            self.load_state_dict(load_checkpoint(path), where=where, remedy=remedy)


class _Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
