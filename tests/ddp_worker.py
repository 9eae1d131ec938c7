"""Run under ``torchrun`` by tests/test_train_images.py: a tiny U-Net run on fixed random images."""

from __future__ import annotations

import sys

import torch

from minidiff.train_images import ImageRunConfig, run


def tiny_config(steps: int, batch_size: int, sample_every: int | None = None) -> ImageRunConfig:
    return ImageRunConfig(
        model="tiny", data="digits", steps=steps, batch_size=batch_size, lr=1e-3,
        warmup_steps=0, ema_decay=0.9, T=20, sample_every=sample_every or steps,
        n_samples=4, sample_steps=2,
    )  # fmt: skip


def tiny_images(n: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    run(tiny_config(steps, batch), out, images=tiny_images(), device="cpu", progress=False)
