"""Run under ``torchrun`` by tests/training/test_image_runs.py: a tiny U-Net on fixed images.

``ddp_worker.py OUT STEPS BATCH [DROPOUT RECORD_DIR]``: with a record folder, each process also
writes ``rank<r>.pt`` with what the test checks: the dropout masks it drew at each step, the loss
of its own shard at each step, and how many checkpoints it wrote.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import minidiff.training.images as images_module
import minidiff.training.state as state_module
from minidiff.training.images import ImageRunConfig, run


def tiny_config(
    steps: int, batch_size: int, sample_every: int | None = None, dropout: float | None = None
) -> ImageRunConfig:
    return ImageRunConfig(
        model="tiny", data="digits", steps=steps, batch_size=batch_size, lr=1e-3,
        warmup_steps=0, ema_decay=0.9, T=20, sample_every=sample_every or steps,
        n_samples=4, sample_steps=2, overrides={} if dropout is None else {"dropout": dropout},
    )  # fmt: skip


def tiny_images(n: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


def _record(folder: Path) -> dict[str, Any]:
    """Watch dropout masks, shard losses and checkpoint writes of this process."""
    seen: dict[str, Any] = {"masks": [], "losses": [], "saves": 0}

    def on_dropout(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            seen["masks"].append((output == 0).flatten().clone())

    real_loss, real_save = images_module.simple_loss, state_module.save_checkpoint

    def loss(*a: Any, **k: Any) -> torch.Tensor:
        value = real_loss(*a, **k)
        seen["losses"].append(float(value))
        return value

    def save(*a: Any, **k: Any) -> None:
        seen["saves"] += 1
        real_save(*a, **k)

    images_module.simple_loss = loss  # type: ignore[assignment]
    state_module.save_checkpoint = save  # type: ignore[assignment]
    real_start = images_module._start

    def start(*a: Any, **k: Any) -> Any:
        state, sampler, loss_fn = real_start(*a, **k)
        for m in state.model.modules():
            if isinstance(m, nn.Dropout):
                m.register_forward_hook(on_dropout)
        return state, sampler, loss_fn

    images_module._start = start  # type: ignore[assignment]
    return seen


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    dropout = float(sys.argv[4]) if len(sys.argv) > 4 else None
    seen = _record(Path(sys.argv[5])) if len(sys.argv) > 5 else None
    config = tiny_config(steps, batch, dropout=dropout)
    run(config, out, images=tiny_images(), device="cpu", progress=False)
    if seen is not None:
        rank = int(os.environ.get("RANK", "0"))
        torch.save(seen, Path(sys.argv[5]) / f"rank{rank}.pt")
