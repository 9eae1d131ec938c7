"""Training: one loop for every chapter, each of its parts in its own module.

- :mod:`~minidiff.training.loop`: ``train`` and the loop it drives, ``train_steps`` (a generator
  of optimizer steps: draw, loss, backward, clip, AdamW step, EMA).
- :mod:`~minidiff.training.config`: ``TrainConfig``, the loop's options, validated, and the
  record a resumed run must match.
- :mod:`~minidiff.training.state`: ``TrainState``, what a step changes and a checkpoint holds.
- :mod:`~minidiff.training.batches`: tensors, labelled tuples, ``DataLoader``\\ s and callables as
  sources of batches, and how each resumes exactly.
- :mod:`~minidiff.training.optim`: AdamW with clipping and a non-finite guard without host
  synchronisation (``ClippedAdamW``), the learning-rate schedule.
- :mod:`~minidiff.training.ema`: the exponential moving average of the weights.
- :mod:`~minidiff.training.checkpoint`: atomic checkpoint files with a content hash.
- :mod:`~minidiff.training.images`: DDPM on image data sets, with sample grids and a log;
  :mod:`~minidiff.training.image_data` holds its data and their order,
  :mod:`~minidiff.training.run_folder` its files (written so that nothing is lost) and
  :mod:`~minidiff.training.cli` its command line, ``python -m minidiff.training`` (``--help``).
- :mod:`~minidiff.training.distributed`: several GPUs (or CPU processes) under ``torchrun``.
- :mod:`~minidiff.training.recipes`: measured settings in one line (``train_toy``: the 2D recipe).

Every submodule is reachable as an attribute (``minidiff.training.images``) without an import of
its own; those not imported here load on first use.
"""

import importlib as _importlib
import importlib.util as _importlib_util
from typing import Any as _Any

from .checkpoint import (
    check_checkpoint_path,
    check_model_fingerprint,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
)
from .config import TrainConfig
from .ema import EMA
from .loop import TrainResult, train, train_steps
from .optim import LR_SCHEDULES, ClippedAdamW, learning_rate
from .recipes import train_toy
from .state import NonFiniteLossError, TrainState

__all__ = [
    "train",
    "train_steps",
    "train_toy",
    "TrainConfig",
    "TrainState",
    "TrainResult",
    "EMA",
    "NonFiniteLossError",
    "ClippedAdamW",
    "learning_rate",
    "LR_SCHEDULES",
    "save_checkpoint",
    "load_checkpoint",
    "model_fingerprint",
    "check_model_fingerprint",
    "check_checkpoint_path",
]


def __getattr__(name: str) -> _Any:
    """A submodule not imported above (``images``, ``cli``, ``distributed``, ...), on first use."""
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
