"""DDPM on images: a U-Net trained on an image data set, in a run folder that survives anything.

The same loop as every chapter (:func:`minidiff.training.train_steps`: AdamW, warm-up, clipping,
EMA, bf16 autocast), driven for a U-Net with what a long run needs:

- ``channels_last`` memory layout and optional ``torch.compile`` of the forward pass;
- DDP under ``torchrun``: each process computes the loss on its shard of the global batch (see
  :mod:`minidiff.training.distributed` for what differs across processes and what agrees);
- data in epochs (each image once per epoch, in an order fixed by the seed and the epoch) whose
  position is part of the exact resume;
- every ``sample_every`` steps (and at the end, or when ``time_budget`` runs out): a PNG grid of
  DDIM samples from the EMA model, a line in ``run.jsonl`` (step, mean loss, images/s) and a
  checkpoint, in that order (:mod:`minidiff.training.run_folder`); at the end ``loss.png`` and
  ``samples.png``.

The loop runs once from start to end; it hands control back after every step, so sampling and
saving need no restart. A run stopped at any time continues from its last checkpoint when started
again with the same arguments (only ``steps``, the sampling options and the time budget may
change). The command line is ``python -m minidiff.training`` (:mod:`minidiff.training.cli`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._config import default_device
from .._memory import check_allocation
from .._validation import Flag, Function, Int, Number, OneOf, check_device, checked, describe
from ..losses import simple_loss
from ..nn.unet import UNET_CONFIGS, UNet, UNetConfig
from ..samplers import ddim_sample
from ..schedules import NoiseSchedule, linear_schedule
from .batches import Batches
from .config import TrainConfig, check_options, option
from .distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank,
    barrier,
    cleanup,
    init_distributed,
    wrap_ddp,
)
from .image_data import DATASETS, EpochSampler, load_images
from .loop import LossFn, ProgressBar, train_steps
from .run_folder import RunFolder
from .state import TrainState

__all__ = [
    "ImageRunConfig",
    "RunResult",
    "run",
    "sample_grid",
]

# What a resumed run may change: its length, how it samples, its budget, how many processes.
FREE = (
    *("steps", "sample_every", "n_samples", "sample_steps", "clip_x0", "time_budget"),
    "world_size",
)
# Where the images came from (the images argument or load_images): said in config.json and in
# errors, not compared (the images themselves are, by their hash).
IMAGES_FROM = "images_from"
CLIP_CHOICES = ("static", "dynamic", "none")
SEED_MAX = 2**63 - 1  # the largest seed of every generator a run seeds (torch's int64)


def _opt(default: Any, check: object, help: str, **kw: Any) -> Any:
    return option(default, check, help=help, **kw)


@dataclass
class ImageRunConfig:
    """Everything a run depends on (saved as ``config.json`` in its folder), checked on
    construction. ``batch_size`` is the *global* batch (all processes together). The defaults
    follow DDPM's CIFAR-10 recipe where it makes sense (lr 2e-4, linear betas, T = 1000, clipping
    1); DDPM warms up over 5000 steps and trains 800k steps at batch 128 with EMA 0.9999."""

    model: str = _opt("digits", OneOf(sorted(UNET_CONFIGS)), "U-Net preset")
    data: str = _opt("digits", OneOf(DATASETS), "image data set")
    steps: int = _opt(2000, Int(), "total optimizer steps (a resumed run may extend them)")
    batch_size: int = _opt(128, Int(), "global batch (all processes together)")
    lr: float = _opt(2e-4, Number(low=0.0), "AdamW learning rate after the warm-up")
    warmup_steps: int = _opt(200, Int(minimum=0), "linear learning-rate warm-up steps")
    ema_decay: float = _opt(
        0.999, Number(low=0.0, high=1.0, low_open=False), "decay of the EMA of the weights"
    )
    grad_clip: float | None = _opt(
        1.0, Number(low=0.0, optional=True), "clip the global gradient norm to this ('none': off)"
    )
    T: int = _opt(1000, Int(), "diffusion steps of the linear schedule")
    bf16: bool = _opt(False, Flag, "bfloat16 autocast in the forward pass (recent GPUs)")
    channels_last: bool = _opt(
        False, Flag, "channels_last memory layout (faster convolutions on GPUs)"
    )
    compile: bool = _opt(False, Flag, "torch.compile the forward pass")
    sample_every: int = _opt(500, Int(), "steps between sample grids, log lines and checkpoints")
    n_samples: int = _opt(64, Int(), "images per sample grid")
    sample_steps: int = _opt(50, Int(), "DDIM steps per sample grid (T if larger)")
    clip_x0: str = _opt(
        "static",
        OneOf(CLIP_CHOICES),
        "x0 clipping of the sample grids (minidiff.samplers.clipping)",
    )
    seed: int = _opt(
        0, Int(minimum=0, maximum=SEED_MAX), "seed of weights, data order, t, noise and dropout"
    )
    time_budget: float | None = _opt(
        None, Number(low=0.0, low_open=False, optional=True),
        "stop after this many seconds of wall time, with a checkpoint, to go on later "
        "(default: none)",
    )  # fmt: skip
    overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "UNetConfig fields"})

    def __post_init__(self) -> None:
        check_options(self)
        unet = self.unet_config()  # the overrides make a valid U-Net
        # a sample grid is one batch: at least its first layer's activations must fit
        check_allocation(
            self.n_samples * unet.base_channels * unet.image_size**2 * 4,
            f"n_samples={self.n_samples}",
            f"a sample grid of {self.model!r} (its first layer alone, float32)",
        )

    @property
    def grid_steps(self) -> int:
        """The DDIM steps a sample grid takes: ``sample_steps``, at most one per timestep."""
        return min(self.sample_steps, self.T)

    def unet_config(self) -> UNetConfig:
        """The preset ``model`` with ``overrides`` (an error naming a bad one)."""
        if not isinstance(self.overrides, dict):
            raise TypeError(f"overrides must be a dict, got {type(self.overrides).__name__}")
        names = {f.name for f in dataclasses.fields(UNetConfig)}
        unknown = sorted(set(self.overrides) - names)
        if unknown:  # a TypeError, as UNet(**fields) and Python say of an unknown keyword
            raise TypeError(
                f"overrides has unknown UNetConfig field(s) {unknown}; the fields are "
                f"{sorted(names)}"
            )
        return dataclasses.replace(UNET_CONFIGS[self.model], **self.overrides)

    def train_config(self, device: torch.device, progress: bool) -> TrainConfig:
        return TrainConfig(
            steps=self.steps, batch_size=self.batch_size, lr=self.lr, ema_decay=self.ema_decay,
            grad_clip=self.grad_clip, warmup_steps=self.warmup_steps, amp=self.bf16,
            seed=self.seed, device=device, progress=progress,
        )  # fmt: skip


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
    steps_done: int = 0
    resumed_from: int = 0


def run(
    config: ImageRunConfig,
    out_dir: str | Path,
    images: Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    schedule: NoiseSchedule | None = None,
    *,
    images_from: str | None = None,
) -> RunResult:
    """Train ``UNet(config.model)`` on ``images`` (default: ``load_images(config.data)``) for
    ``config.steps`` steps (or until ``config.time_budget``), writing checkpoints, sample grids
    and a log under ``out_dir``; continue the run found there, if any.

    ``images``: float32 ``(N, C, H, W)`` in ``[-1, 1]``. ``schedule``: the noise schedule, with
    ``schedule.T == config.T`` (default: ``linear_schedule(config.T)``). The run's folder and
    checkpoint record both (the images by shape and content hash, the schedule by its betas), so
    a run continues only with the same images and schedule: a ``ValueError`` says which differs.
    ``images_from``: where ``images`` came from, as ``config.json`` and the errors say it (e.g.
    ``"load_images('cifar10', root='data')"``; default: ``"the images argument"``; only with
    ``images``).
    """
    if not isinstance(config, ImageRunConfig):
        raise TypeError(f"config must be an ImageRunConfig, got {type(config).__name__}")
    dev = check_device(device) or default_device()
    _check_schedule(schedule, config)
    source = _images_source(images, images_from, config)
    info = init_distributed(dev.type)
    if dev.type == "cuda" and info.distributed:
        dev = torch.device("cuda", info.local_rank)
    unet_cfg = config.unet_config()
    folder = RunFolder(out_dir)
    images = images if images is not None else load_images(config.data)
    _check_image_dtype(images)  # before the hash: float64 copies are not "other images"
    record = _record(config, unet_cfg, info, images, schedule)
    record[IMAGES_FROM] = source
    _check_same_data(folder, record)  # before the shape: other images are the likelier mistake
    _check_images(images, unet_cfg, config, source)
    folder.check_config(
        record, (*FREE, IMAGES_FROM, "images", "schedule"), follows={"unet": ("model", "overrides")}
    )
    schedule = schedule if schedule is not None else linear_schedule(config.T)
    state, sampler, loss_fn = _start(config, unet_cfg, images, info, dev, schedule, progress)
    kept = {k: v for k, v in record.items() if k not in (*FREE, IMAGES_FROM)}
    state.record = {**state.record, "data": kept}
    # the checkpoint's record is checked before config.json is written (or repaired): a refused
    # run changes no file
    state.resume_from(folder.checkpoint, remedy="use another out_dir to start afresh")
    barrier(info)
    if info.is_main:
        folder.write_config(record)
    sampler.position = state.step * config.batch_size  # the data position of the checkpoint
    if progress and info.is_main:
        print(_announce(folder, state.step, config.steps), flush=True)
    result = _loop(state, loss_fn, schedule, config, folder, info)
    barrier(info)
    cleanup(info)
    return result


def _images_source(images: object, images_from: object, config: ImageRunConfig) -> str:
    """Where the run's images come from, as ``config.json`` and the errors say it."""
    if images_from is None:
        return "the images argument" if images is not None else f"load_images({config.data!r})"
    if not isinstance(images_from, str):
        raise TypeError(f"images_from must be a str or None, got {type(images_from).__name__}")
    if images is None:
        raise ValueError(
            "images_from says where the images argument came from, but images is None (run() "
            f"loads load_images({config.data!r}) itself); pass images too, or no images_from"
        )
    return images_from


def _check_schedule(schedule: object, config: ImageRunConfig) -> None:
    if schedule is None:
        return
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule or None, got {type(schedule).__name__}")
    if schedule.T != config.T:
        raise ValueError(
            f"schedule has T={schedule.T} steps but config.T={config.T}; build the schedule "
            f"with T={config.T} (e.g. cosine_schedule({config.T})) or set config.T={schedule.T}"
        )


def schedule_record(schedule: NoiseSchedule | None, T: int) -> str | dict[str, list[float]]:
    """How a run records its schedule: ``"linear"`` for ``linear_schedule(T)``, otherwise its
    betas ``beta_1..beta_T`` (exact in JSON), which :func:`schedule_from_record` rebuilds."""
    if schedule is None or torch.equal(schedule.betas, linear_schedule(T).betas):
        return "linear"
    return {"betas": schedule.betas[1:].tolist()}


def schedule_from_record(record: dict[str, Any]) -> NoiseSchedule:
    """The schedule of a run from its record (``config.json`` or a checkpoint's); a record from
    before schedules were recorded means the default, ``linear_schedule(T)``."""
    saved = record.get("schedule", "linear")
    if saved == "linear":
        return linear_schedule(int(record["T"]))
    if isinstance(saved, dict) and isinstance(saved.get("betas"), list):
        return NoiseSchedule(saved["betas"])
    raise ValueError(f"the run's record holds a schedule that cannot be rebuilt: {saved!r:.80}")


def images_record(images: Tensor) -> dict[str, Any]:
    """What a run records of its images: their shape, dtype and the SHA-256 of their values."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a float32 tensor (N, C, H, W), got {describe(images)}")
    x = images.detach().cpu().contiguous()
    digest = hashlib.sha256(x.reshape(-1).view(torch.uint8).numpy().data).hexdigest()
    return {"shape": list(x.shape), "dtype": str(x.dtype), "sha256": digest}


def _record(
    config: ImageRunConfig,
    unet_cfg: UNetConfig,
    info: DistInfo,
    images: Tensor,
    schedule: NoiseSchedule | None,
) -> dict[str, Any]:
    """The run's record as ``config.json`` holds it (tuples read back as lists, so a record
    compares equal to the one saved)."""
    record = {
        **asdict(config), "unet": unet_cfg.to_dict(), "world_size": info.world_size,
        "images": images_record(images), "schedule": schedule_record(schedule, config.T),
    }  # fmt: skip
    normalised = json.loads(json.dumps(record))
    assert isinstance(normalised, dict)
    return normalised


def _check_same_data(folder: RunFolder, record: dict[str, Any]) -> None:
    """``ValueError`` if the run in ``folder`` was trained on other images, or with another
    schedule, than ``record`` says."""
    old = folder.read_config()
    if old is None:
        return
    if "images" not in old:  # a run recorded before runs recorded their images and schedule
        warnings.warn(
            f"the run in {str(folder.out)!r} was recorded without its images and schedule; it "
            "continues, but cannot check that they are the same as before",
            stacklevel=3,
        )
        for key in ("images", "schedule", IMAGES_FROM):  # its checkpoint holds neither
            record.pop(key)
        return
    if old.get("schedule", "linear") != record["schedule"]:
        raise ValueError(
            f"schedule: the run in {str(folder.out)!r} was trained with "
            f"{_said(old.get('schedule', 'linear'), old.get('T'))}, not with "
            f"{_said(record['schedule'], record['T'])}; to continue it pass the same schedule "
            "(run(..., schedule=...)), or use another out_dir"
        )
    if old["images"] == record["images"]:
        return
    was, now = old["images"], record["images"]
    raise ValueError(
        f"images: the run in {str(folder.out)!r} was trained on other images "
        f"({old.get(IMAGES_FROM, 'unknown source')}, shape {tuple(was['shape'])}, sha256 "
        f"{str(was['sha256'])[:12]}...) than these ({record[IMAGES_FROM]}, shape "
        f"{tuple(now['shape'])}, sha256 {str(now['sha256'])[:12]}...); to continue it pass the "
        "same images (run(config, out_dir, images=...)), or use another out_dir"
    )


def _said(schedule: object, T: object) -> str:
    if isinstance(schedule, dict) and isinstance(schedule.get("betas"), list):
        b = schedule["betas"]
        shown = (
            ", ".join(f"{v:.4g}" for v in b)
            if len(b) <= 3
            else f"{b[0]:.4g}, {b[1]:.4g}, ..., {b[-1]:.4g}"
        )
        return f"the schedule of betas ({shown})"
    return f"linear_schedule({T})"


def _announce(folder: RunFolder, step: int, steps: int) -> str:
    if step == 0:
        return f"new run in {str(folder.out)!r}: {steps} steps"
    if step >= steps:
        return f"run in {str(folder.out)!r} is complete at step {step}: nothing to train"
    return f"resuming the run in {str(folder.out)!r} from its checkpoint at step {step} of {steps}"


def _check_images(
    images: Tensor, unet_cfg: UNetConfig, config: ImageRunConfig, source: str
) -> None:
    expected = (unet_cfg.in_channels, unet_cfg.image_size, unet_cfg.image_size)
    _check_image_dtype(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] < 1:
        raise ValueError(
            f"images ({source}) have shape {tuple(images.shape)} but model "
            f"{config.model!r} expects (N, {', '.join(map(str, expected))})"
        )
    lo, hi = float(images.min()), float(images.max())
    if not (-1.0 <= lo and hi <= 1.0):  # also NaN
        raise ValueError(
            f"images must lie in [-1, 1] (minidiff.data.to_unit_range maps 8-bit pixels there), "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )


def _check_image_dtype(images: object) -> None:
    if not isinstance(images, Tensor):
        got = type(images).__name__
        raise TypeError(f"images must be a float32 tensor (N, C, H, W), got {got}")
    if images.dtype != torch.float32:  # the U-Net's weights are float32
        hint = (
            "minidiff.data.to_unit_range(images, 255.0) maps 8-bit pixels to float32 in [-1, 1]"
            if not images.is_floating_point()
            else "images.float() converts them"
        )
        raise TypeError(
            f"images must be a float32 tensor (N, C, H, W), got dtype {images.dtype}; {hint}"
        )


def _start(
    config: ImageRunConfig,
    unet_cfg: UNetConfig,
    images: Tensor,
    info: DistInfo,
    dev: torch.device,
    schedule: NoiseSchedule,
    progress: bool,
) -> tuple[TrainState, EpochSampler, LossFn]:
    """The model (the same initial weights on every process), its training state and data."""
    torch.manual_seed(config.seed)
    model = UNet(unet_cfg).to(dev)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    forward: nn.Module = wrap_ddp(model, info, dev)
    if config.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    sampler = EpochSampler(
        images, config.T, config.batch_size, info, config.seed, config.channels_last
    )
    train_config = config.train_config(dev, progress and info.is_main)
    state = TrainState(model, train_config, Batches(sampler))
    state.reduce = lambda losses: all_reduce_mean(losses, info)

    def loss_fn(_: nn.Module, batch: tuple[Tensor, Tensor, Tensor], g: torch.Generator) -> Tensor:
        x0, t, noise = batch  # drawn by the sampler: this process's shard of the global batch
        return simple_loss(forward, x0, schedule, t=t, noise=noise)

    return state, sampler, loss_fn


def _loop(
    state: TrainState,
    loss_fn: LossFn,
    schedule: NoiseSchedule,
    config: ImageRunConfig,
    folder: RunFolder,
    info: DistInfo,
) -> RunResult:
    """Train to the end (or the time budget), sampling, logging and saving at each sample point."""
    log = folder.read_log(up_to=state.step)
    start, deadline = state.step, _Deadline(config.time_budget, info, state.device)
    mark = (time.perf_counter(), state.step)
    grid = None
    with ProgressBar(state.config, state.step) as bar:
        for step in train_steps(state, loss_fn):
            out_of_time = deadline.passed(step)
            if step % state.config.log_every == 0:
                state.flush()
                bar.show(state)
            if step % config.sample_every and step < config.steps and not out_of_time:
                continue
            state.flush()
            seconds = time.perf_counter() - mark[0]
            if info.is_main:
                grid = sample_grid(state.ema.model, config, state.device, schedule=schedule)
                path = folder.save_grid(grid, folder.grid(state.step))
                log.append(_entry(state, mark[1], seconds, config, path))
                folder.write_log(log)  # the grid and the log line first, then the checkpoint
                state.save(folder.checkpoint)
            barrier(info)
            mark = (time.perf_counter(), state.step)
            if out_of_time:
                break
    if info.is_main:
        if grid is None:  # nothing was trained: sample from the checkpoint's EMA model
            grid = sample_grid(state.ema.model, config, state.device, schedule=schedule)
        folder.save_final(
            state.losses, grid, f"DDPM training loss: {config.model} on {config.data}"
        )
    return RunResult(
        model=state.model, ema_model=state.ema.model, losses=state.losses,
        images_per_second=[r["images_per_s"] for r in log], out_dir=folder.out, log=log,
        rank=info.rank, steps_done=state.step, resumed_from=start,
    )  # fmt: skip


def _entry(
    state: TrainState, since: int, seconds: float, config: ImageRunConfig, grid: Path
) -> dict[str, Any]:
    done = state.step - since
    return {
        "step": state.step,
        "loss": sum(state.losses[since : state.step]) / done,
        "images_per_s": done * config.batch_size / seconds,
        "seconds": seconds,
        "grid": grid.name,
    }


class _Deadline:
    """The time budget; under DDP the processes agree (every 10 steps) to stop at the same step."""

    def __init__(self, seconds: float | None, info: DistInfo, device: torch.device) -> None:
        self.at = None if seconds is None else time.perf_counter() + seconds
        self.info, self.device = info, device

    def passed(self, step: int) -> bool:
        if self.at is None or (self.info.distributed and step % 10):
            return False
        return any_rank(time.perf_counter() > self.at, self.info, self.device)


@checked(model=Function("(x_t, t) -> eps"), seed=Int(minimum=0, maximum=2**63 - 1))
def sample_grid(
    model: nn.Module,
    config: ImageRunConfig,
    device: torch.device | str | None = None,
    seed: int = 12345,
    schedule: NoiseSchedule | None = None,
) -> Tensor:
    """``config.n_samples`` images from ``model`` (on ``device``: a ``torch.device``, a string
    such as ``"cpu"``, or ``None`` for the default device) with ``config.grid_steps`` DDIM steps
    (η = 0) and ``config.clip_x0``, starting from noise seeded by ``seed`` (an int in
    ``0..2**63-1``): ``(n_samples, C, S, S)`` on the CPU. ``schedule`` defaults to
    ``linear_schedule(config.T)``."""
    if not isinstance(config, ImageRunConfig):
        raise TypeError(f"config must be an ImageRunConfig, got {type(config).__name__}")
    device = check_device(device) or default_device()
    _check_schedule(schedule, config)
    unet_cfg = config.unet_config()
    c, size = unet_cfg.in_channels, unet_cfg.image_size
    schedule = schedule if schedule is not None else linear_schedule(config.T)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=config.bf16):
        x = ddim_sample(
            model, schedule, (config.n_samples, c, size, size),
            steps=config.grid_steps, generator=g, device=device,
            clip_x0=None if config.clip_x0 == "none" else config.clip_x0,
        )  # fmt: skip
    assert isinstance(x, Tensor)
    return x.float().cpu()
