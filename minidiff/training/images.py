"""DDPM on images: ``python -m minidiff.train_images --model digits --data digits --out runs/d``.

The same loop as every chapter (:func:`minidiff.train.train`: AdamW, warm-up, clipping, EMA, bf16
autocast, exact checkpoints), driven for a U-Net on an image data set, with what a long run needs:

- ``channels_last`` memory layout and optional ``torch.compile`` of the forward pass;
- DDP under ``torchrun``: each process computes the loss on its shard of the global batch;
- data in epochs (each image once per epoch, in an order fixed by the seed and the epoch) whose
  position is part of the exact resume;
- every ``sample_every`` steps: a checkpoint, a PNG grid of DDIM samples from the EMA model and a
  line in ``run.jsonl`` (step, mean loss, images/s); at the end ``loss.png`` and ``samples.png``.

Between two such points the loop is resumed from its own checkpoint, so every run exercises the
exact resume; a run stopped at any time continues from its last checkpoint when started again
with the same arguments. The global batch must be divisible by the number of processes.

Under DDP every process holds the same state (weights, EMA, optimizer, generators), so each writes
the same checkpoint file (atomically, through its own temporary file) and each resumes from it;
only rank 0 shows a progress bar and writes the grids, the log and ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._config import default_device
from .distributed import DistInfo, barrier, cleanup, init_distributed, shard_size, wrap_ddp
from .losses import simple_loss
from .nn.unet import UNET_CONFIGS, UNet, UNetConfig
from .samplers import ddim_sample
from .schedules import NoiseSchedule, linear_schedule
from .train import load_checkpoint, train
from .viz.grid import save_image_grid

__all__ = ["ImageRunConfig", "EpochSampler", "RunResult", "load_images", "run", "main"]

DATASETS = ("digits", "patches", "cifar10")


@dataclass
class ImageRunConfig:
    """Everything a run depends on (saved as ``config.json`` next to its checkpoint).

    ``batch_size`` is the *global* batch (all processes together). The defaults follow DDPM's
    CIFAR-10 recipe where it makes sense (lr 2e-4, linear betas, T = 1000, EMA 0.9999, clipping 1);
    DDPM warms up over 5000 steps and trains 800k steps at batch 128.
    """

    model: str = "digits"
    data: str = "digits"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    T: int = 1000
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    sample_every: int = 500
    n_samples: int = 64
    sample_steps: int = 50
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in UNET_CONFIGS:
            raise ValueError(f"model must be one of {sorted(UNET_CONFIGS)}, got {self.model!r}")
        if self.data not in DATASETS:
            raise ValueError(f"data must be one of {DATASETS}, got {self.data!r}")
        for name in ("steps", "batch_size", "T", "sample_every", "n_samples", "sample_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


class EpochSampler:
    """The data source for :func:`minidiff.train.train`: ``(x0, t, noise)`` for this process.

    Global batch ``k`` (0-based) holds the images at positions ``k B .. (k + 1) B - 1`` of the
    sequence ``perm_0, perm_1, ...`` where ``perm_e`` is a permutation of the data set fixed by
    ``(seed, e)``; ``t ~ U{1..T}`` and ``eps ~ N(0, I)`` are drawn for the whole global batch from
    the loop's generator. Process ``r`` of ``R`` keeps rows ``r B/R .. (r+1) B/R - 1``, so the R
    shards together are exactly the single-process batch. ``position`` (in images) is the data
    position that a resume restores.
    """

    def __init__(
        self,
        images: Tensor,
        T: int,
        global_batch: int,
        info: DistInfo | None = None,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.images, self.T, self.global_batch, self.seed = images, T, global_batch, seed
        info = info if info is not None else DistInfo()
        self.local = shard_size(global_batch, info.world_size)
        self.rank = info.rank
        self.channels_last = channels_last
        self.position = 0
        self._epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _perm_of(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.images.shape[0], generator=g), epoch
        return self._perm

    def indices(self, start: int, count: int) -> Tensor:
        """Data-set indices at sequence positions ``start .. start + count - 1``."""
        n = self.images.shape[0]
        out = []
        while count > 0:
            epoch, offset = divmod(start, n)
            take = min(count, n - offset)
            out.append(self._perm_of(epoch)[offset : offset + take])
            start, count = start + take, count - take
        return torch.cat(out)

    def __call__(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, Tensor]:
        if batch_size != self.global_batch:
            raise ValueError(f"batch_size must be the global batch {self.global_batch}")
        b = self.global_batch
        idx = self.indices(self.position, b)
        t = torch.randint(1, self.T + 1, (b,), generator=generator)
        noise = torch.randn((b, *self.images.shape[1:]), generator=generator)
        self.position += b
        rows = slice(self.rank * self.local, (self.rank + 1) * self.local)
        x0, eps = self.images[idx[rows]], noise[rows]
        if self.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
            eps = eps.contiguous(memory_format=torch.channels_last)
        return x0, t[rows], eps


def load_images(
    name: str, root: str | None = None, download: bool = False, n_patches: int = 20_000
) -> Tensor:
    """The training images ``(N, C, H, W)`` in ``[-1, 1]`` of data set ``name``:
    ``digits`` (scikit-learn, 8x8 grey), ``patches`` (32x32 crops of scikit-learn's sample
    photographs) or ``cifar10`` (``root`` or the cache; downloaded only if ``download``)."""
    from . import data

    if name == "digits":
        return data.load_digits(size=8)[0]
    if name == "patches":
        return data.image_patches(size=32, n=n_patches, generator=torch.Generator().manual_seed(0))
    if name == "cifar10":
        return data.load_cifar10(root=root, train=True, download=download)[0]
    raise ValueError(f"data must be one of {DATASETS}, got {name!r}")


@dataclass
class RunResult:
    """What :func:`run` returns (on every process)."""

    model: nn.Module
    ema_model: nn.Module
    losses: list[float]
    images_per_second: list[float]
    out_dir: Path
    log: list[dict[str, Any]]
    rank: int = 0


def _check_run_dir(out: Path, record: dict[str, Any]) -> None:
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        free = ("steps", "world_size")  # a run may be extended, or resumed on more processes
        diff = sorted(
            k for k in set(old) | set(record) if k not in free and old.get(k) != record.get(k)
        )
        if diff:
            detail = ", ".join(f"{k}={old.get(k)!r} there vs {record.get(k)!r} now" for k in diff)
            raise ValueError(
                f"{str(out)!r} holds a run of another configuration ({detail}); "
                "use another --out directory"
            )


def run(
    config: ImageRunConfig,
    out_dir: str | Path,
    images: Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    schedule: NoiseSchedule | None = None,
) -> RunResult:
    """Train ``UNet(config.model)`` on ``images`` (default: ``load_images(config.data)``) for
    ``config.steps`` steps, writing checkpoints, sample grids and a log under ``out_dir``."""
    info = init_distributed(torch.device(device or default_device()).type)
    dev = torch.device(device) if device is not None else default_device()
    if dev.type == "cuda" and info.distributed:
        dev = torch.device("cuda", info.local_rank)
    unet_cfg = UNet(config.model, **config.overrides).config
    if images is None:
        images = load_images(config.data)
    expected = (unet_cfg.in_channels, unet_cfg.image_size, unet_cfg.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images of data {config.data!r} have shape {tuple(images.shape)} but model "
            f"{config.model!r} expects (N, {', '.join(map(str, expected))})"
        )
    out = Path(out_dir)
    record = {**asdict(config), "unet": unet_cfg.to_dict(), "world_size": info.world_size}
    _check_run_dir(out, record)
    barrier(info)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(record, indent=1))

    torch.manual_seed(config.seed)  # initial weights: the same on every process
    model = UNet(unet_cfg).to(dev)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: nn.Module = wrap_ddp(model, info, dev)
    if config.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    schedule = schedule if schedule is not None else linear_schedule(config.T)

    def loss_fn(_: nn.Module, batch: tuple[Tensor, Tensor, Tensor], g: torch.Generator) -> Tensor:
        x0, t, noise = batch
        return simple_loss(forward, x0, schedule, t=t, noise=noise)

    sampler = EpochSampler(
        images, config.T, config.batch_size, info, config.seed, config.channels_last
    )
    ckpt_path = out / "checkpoint.pt"
    step = int(load_checkpoint(ckpt_path)["step"]) if ckpt_path.exists() else 0
    log: list[dict[str, Any]] = []
    log_path = out / "run.jsonl"
    if log_path.exists():
        log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        log = [r for r in log if r["step"] <= step]
    last_grid: Tensor | None = None
    while True:
        target = min(config.steps, (step // config.sample_every + 1) * config.sample_every)
        sampler.position = step * config.batch_size  # the data position of the checkpoint
        t0 = time.perf_counter()
        result = train(
            model, loss_fn, sampler, steps=target, batch_size=config.batch_size, lr=config.lr,
            ema_decay=config.ema_decay, grad_clip=config.grad_clip,
            warmup_steps=config.warmup_steps, seed=config.seed, device=dev,
            checkpoint_path=ckpt_path, progress=progress and info.is_main, amp=config.bf16,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        done = target - step
        if info.is_main and done > 0:
            last_grid = grid = _sample_grid(result.ema.model, schedule, config, unet_cfg, dev)
            grid_path = save_image_grid(grid, out / f"samples_{target:07d}.png", scale=2)
            entry = {
                "step": target,
                "loss": sum(result.losses[step:target]) / done,
                "images_per_s": done * config.batch_size / seconds,
                "seconds": seconds,
                "grid": grid_path.name,
            }
            log.append(entry)
            with log_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
        step = target
        barrier(info)
        if step >= config.steps:
            break
    if info.is_main:
        if last_grid is None:  # the run was already complete: sample from its EMA model
            last_grid = _sample_grid(result.ema.model, schedule, config, unet_cfg, dev)
        _save_final(result.losses, last_grid, config, out)
    barrier(info)
    cleanup(info)
    return RunResult(
        model=model, ema_model=result.ema.model, losses=result.losses,
        images_per_second=[r["images_per_s"] for r in log], out_dir=out, log=log, rank=info.rank,
    )  # fmt: skip


def _sample_grid(
    model: nn.Module,
    schedule: NoiseSchedule,
    config: ImageRunConfig,
    unet_cfg: UNetConfig,
    dev: torch.device,
) -> Tensor:
    c, size = unet_cfg.in_channels, unet_cfg.image_size
    g = torch.Generator().manual_seed(12345)
    with torch.no_grad(), torch.autocast(dev.type, torch.bfloat16, enabled=config.bf16):
        x = ddim_sample(
            model, schedule, (config.n_samples, c, size, size),
            steps=min(config.sample_steps, config.T), generator=g, device=dev,
        )  # fmt: skip
    assert isinstance(x, Tensor)
    return x.float().cpu()


def _save_final(losses: list[float], grid: Tensor, config: ImageRunConfig, out: Path) -> None:
    # A Figure without pyplot: no backend is touched (a notebook keeps its inline plots).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    w = max(1, len(losses) // 50)
    ax.plot(range(1, len(losses) + 1), losses, lw=0.5 if w > 1 else 1.5, label="per step")
    if w > 1:
        smooth = torch.tensor(losses).unfold(0, w, 1).mean(1)
        ax.plot(range(w, len(losses) + 1), smooth.tolist(), lw=1.5, label=f"mean of {w}")
    ax.set(xlabel="optimizer step", ylabel="L_simple (MSE of eps)", yscale="log",
           title=f"DDPM training loss: {config.model} on {config.data}")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    save_image_grid(grid, out / "samples.png", scale=2)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minidiff.train_images", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="run directory (checkpoint, log, PNG grids)")
    p.add_argument(
        "--data-root", default=None, help="CIFAR-10 folder (default: MINIDIFF_DATA cache)"
    )
    p.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not cached")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true")
    for f in fields(ImageRunConfig):
        if f.name == "overrides":
            continue
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", default=default)
        elif f.name == "grad_clip":
            p.add_argument(flag, type=float, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    return p


def main(argv: Sequence[str] | None = None) -> RunResult:
    """The command line (see ``--help``)."""
    args = _parser().parse_args(argv)
    kwargs = {
        f.name: getattr(args, f.name) for f in fields(ImageRunConfig) if f.name != "overrides"
    }
    config = ImageRunConfig(
        **kwargs, overrides={} if args.dropout is None else {"dropout": args.dropout}
    )
    images = load_images(config.data, root=args.data_root, download=args.download)
    result = run(config, args.out, images=images, device=args.device, progress=not args.no_progress)
    if result.log and result.rank == 0:
        last = result.log[-1]
        print(f"step {last['step']}: loss {last['loss']:.4f}, {last['images_per_s']:.1f} images/s")
    return result


if __name__ == "__main__":
    main()
