"""One training loop for every chapter: AdamW, warm-up, gradient clipping, EMA, exact checkpoints.

Randomness is owned by the loop: batches (for tensor data), timesteps and noise (inside
``loss_fn``) are drawn from one CPU ``torch.Generator``. A checkpoint stores that generator's state
together with the model, the EMA, the optimizer, the global torch RNG state (dropout) and the loss
history, so a run that is stopped and resumed produces bitwise the same weights as one that was not.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._foreach_utils import (
    _get_foreach_kernels_supported_devices,
    _get_fused_kernels_supported_devices,
)

from ._validation import check_choice, check_device, check_finite, skip_value_checks

__all__ = [
    "EMA",
    "NonFiniteLossError",
    "TrainResult",
    "train",
    "learning_rate",
    "LR_SCHEDULES",
    "save_checkpoint",
    "load_checkpoint",
    "model_fingerprint",
    "check_model_fingerprint",
    "check_checkpoint_path",
]

LossFn = Callable[[nn.Module, Any, torch.Generator], Tensor]
DataSource = Tensor | Callable[[int, torch.Generator], Any]
CHECKPOINT_VERSION = 1
# (EMA shadows, live parameters, EMA buffers, live buffers), paired up once per model
_Pairs = tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


class NonFiniteLossError(ValueError):
    """The loss (or the gradient norm) became NaN or infinite; stopped before the update."""


class EMA:
    """Exponential moving average of a model's parameters (Polyak averaging).

    After every optimizer step ``n`` (counted from 0):

        decay_n = min(decay, (1 + n) / (10 + n))   if warmup else decay
        shadow  = decay_n * shadow + (1 - decay_n) * param

    The shadow starts as a copy of the initial weights (not zeros), so the average needs no bias
    correction; the warm-up (as in TensorFlow's ``ExponentialMovingAverage(num_updates=...)``) only
    keeps the early average from being dominated by the random initialisation. Buffers (e.g.
    normalisation statistics) are copied, not averaged.

    ``ema.model`` is an eval-mode deep copy of the model that holds the averaged weights: sample
    with it.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_decay(decay)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._cache: tuple[nn.Module, _Pairs] | None = None

    def current_decay(self) -> float:
        """The decay the next ``update`` will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow towards ``model``'s current parameters; copy its buffers.

        One ``torch._foreach_lerp_`` over all parameters (a handful of kernels, not one per
        tensor); the pairing of shadow and live tensors is looked up once per model.
        """
        d = self.current_decay()
        shadows, params, shadow_bufs, bufs = self._pairs(model)
        if shadows:
            torch._foreach_lerp_(shadows, params, 1.0 - d)
        if shadow_bufs:
            torch._foreach_copy_(shadow_bufs, bufs)
        self.num_updates += 1

    def _pairs(self, model: nn.Module) -> _Pairs:
        # Paired once per model object: a hot loop should not walk the module tree every step.
        # Parameters stay the same objects through .to() and load_state_dict. The cache holds the
        # model itself, not its id: a freed model's id can be reused by the next one built.
        if self._cache is not None and self._cache[0] is model:
            return self._cache[1]
        live = dict(model.named_parameters())
        live_b = dict(model.named_buffers())
        shadows: list[Tensor] = []
        params: list[Tensor] = []
        shadow_bufs: list[Tensor] = []
        bufs: list[Tensor] = []
        for name, shadow in self.model.named_parameters():
            p = live[name]  # the Parameter itself: it follows in-place .to() moves
            if p.dtype != shadow.dtype or p.device != shadow.device:
                raise ValueError(
                    f"model parameter {name!r} is {p.dtype} on {p.device} but the EMA holds "
                    f"{shadow.dtype} on {shadow.device}; move the EMA with ema.model.to(...)"
                )
            shadows.append(shadow)
            params.append(p)
        for name, shadow_b in self.model.named_buffers():
            shadow_bufs.append(shadow_b)
            bufs.append(live_b[name])
        pairs: _Pairs = (shadows, params, shadow_bufs, bufs)
        self._cache = (model, pairs)
        return pairs

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters and buffers with the averaged ones."""
        model.load_state_dict(self.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self._cache = None
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])


@dataclass
class TrainResult:
    """What ``train`` returns. ``ema.model`` is the averaged model to sample from."""

    model: nn.Module
    ema: EMA
    losses: list[float] = field(default_factory=list)
    steps_done: int = 0
    seconds: float = 0.0


# ----------------------------------------------------------------------------------- checkpoints


def model_fingerprint(model: nn.Module) -> list[list[Any]]:
    """``[[name, [shape...]], ...]`` for every entry of ``model.state_dict()`` (params, buffers)."""
    return [[name, list(value.shape)] for name, value in model.state_dict().items()]


def check_model_fingerprint(
    model: nn.Module, fingerprint: list[list[Any]], where: str = "checkpoint"
) -> None:
    """Raise ``ValueError`` naming each parameter missing, unexpected or of another shape."""
    ours = {name: list(shape) for name, shape in model_fingerprint(model)}
    theirs = {str(name): list(shape) for name, shape in fingerprint}
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    shapes = sorted(
        f"{n}: {theirs[n]} in {where} vs {ours[n]} in model"
        for n in set(ours) & set(theirs)
        if ours[n] != theirs[n]
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from {where}: {', '.join(missing)}")
        if unexpected:
            parts.append(f"not in model: {', '.join(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {'; '.join(shapes)}")
        raise ValueError(f"{where} does not match the model ({' | '.join(parts)})")


_MAGIC = (
    b"MINIDIFF-CKPT-1\n"  # 16 bytes, then the 32-byte SHA-256 of the payload, then torch.save's zip
)
_HEADER = len(_MAGIC) + 32
_CHUNK = 1 << 20


def check_checkpoint_path(path: object, name: str = "checkpoint_path") -> Path:
    """Return ``path`` as a ``Path`` if a checkpoint can be written there, else raise.

    Refused before any work: a directory (a checkpoint is a file), a path below a regular file
    (``model.pt/ckpt.pt``), an existing non-regular file, and a nearest existing directory that is
    not writable. Missing parent directories are fine (``save_checkpoint`` creates them).
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike file path, got {type(path).__name__}")
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise ValueError(f"{name} must name a file, got {str(path)!r}")
    if p.is_dir():
        raise ValueError(
            f"{name} {str(p)!r} is a directory; give the path of a file in it, "
            f"e.g. {str(p / 'ckpt.pt')!r}"
        )
    if p.exists() and not p.is_file():
        raise ValueError(f"{name} {str(p)!r} exists and is not a regular file")
    for parent in p.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(
                    f"{name} {str(p)!r} lies below {str(parent)!r}, "
                    "which is a file, not a directory"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(
                    f"{name} {str(p)!r} cannot be written: {str(parent)!r} is not writable"
                )
            break
    return p


class _HashingWriter:
    """A write-only file object that feeds every byte to SHA-256 on its way to ``f``."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.sha = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha.update(data)
        return int(self.f.write(data))

    def flush(self) -> None:
        self.f.flush()

    def __getattr__(self, name: str) -> Any:  # anything else (seek, tell, ...) goes to the file
        return getattr(self.f, name)


class _Payload(io.RawIOBase):
    """Read-only view of ``f`` from byte ``offset`` on, so ``torch.load`` reads past the header."""

    def __init__(self, f: Any, offset: int) -> None:
        self.f, self.offset = f, offset
        f.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.f.seek(self.offset + pos if whence == 0 else pos, whence)
        return self.tell()

    def tell(self) -> int:
        return int(self.f.tell()) - self.offset

    def readinto(self, buffer: Any) -> int:
        return int(self.f.readinto(buffer))


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


_TEMP_RE = r"(?:(\d+)\.)?[a-z0-9_]{8}\.tmp"  # [pid.]random.tmp after the prefix


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own saves clean up after themselves; a leftover is stale
    if os.name != "posix":
        return True  # cannot tell cheaply: leave it (removed by age below)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def _remove_stale_temporaries(path: Path, keep: str | None = None) -> list[Path]:
    """Delete temporaries of *this* checkpoint left by saves that were killed mid-write.

    A temporary is ``.<name>.<pid>.<random>.tmp`` next to the checkpoint; it is stale when the
    process that wrote it is gone (or, where that cannot be checked, when it is older than a day).
    Temporaries of other checkpoints and of saves still running are left alone.
    """
    removed: list[Path] = []
    prefix = _temp_prefix(path)
    pattern = re.compile(re.escape(prefix) + _TEMP_RE + r"\Z")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name == keep:
            continue
        m = pattern.match(entry.name)
        if m is None:
            continue
        pid = m.group(1)
        try:
            stale = pid is None or not _pid_running(int(pid))
            if not stale and os.name != "posix":
                stale = time.time() - entry.stat().st_mtime > 86_400
            if stale:
                entry.unlink()
                removed.append(entry)
        except OSError:
            pass  # vanished meanwhile, or not ours to delete
    return removed


def save_checkpoint(path: str | os.PathLike[str], **state: Any) -> None:
    """Write ``state`` with ``torch.save`` atomically, with a SHA-256 of the content.

    The data go to a temporary file ``.<name>.<pid>.<random>.tmp`` in the same directory, are
    flushed and fsync'ed, and then ``os.replace`` swaps the file in: a crash at any moment leaves
    either the old checkpoint or the new one, never a half-written file. Temporaries that earlier
    saves of the same checkpoint left behind when they were killed are deleted first. The file is a
    16-byte tag, the SHA-256 digest of the payload and the payload (``torch.save``'s zip), which
    :func:`load_checkpoint` verifies; read it with ``load_checkpoint``, not ``torch.load``.
    """
    path = check_checkpoint_path(path, "path")
    if not state:
        raise ValueError("save_checkpoint needs at least one keyword to save")
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"path {str(path)!r}: cannot create its directory ({exc})") from exc
    _remove_stale_temporaries(path)
    prefix = f"{_temp_prefix(path)}{os.getpid()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + bytes(32))
            writer = _HashingWriter(f)
            torch.save(state, writer)
            f.seek(len(_MAGIC))
            f.write(writer.sha.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every platform lets us open a directory
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (``torch.load(weights_only=True)``, on CPU).

    The SHA-256 stored in the file is checked first, so a flipped bit or a truncated copy is
    reported as corrupt instead of loading wrong weights. Raises ``FileNotFoundError`` if the file
    does not exist and ``ValueError`` naming the path if it is a directory, corrupt or truncated.
    A plain ``torch.save`` file (no digest, as written before digests were added) still loads, with
    a warning that its integrity cannot be checked.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike file path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    where = f"checkpoint {str(path)!r}"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC))
            if head == _MAGIC:
                digest = f.read(32)
                sha = hashlib.sha256()
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    sha.update(chunk)
                if len(digest) != 32 or sha.digest() != digest:
                    raise ValueError(
                        f"{where} is corrupt: its content does not match the SHA-256 stored in it "
                        "(a damaged or truncated copy); it was not loaded"
                    )
                state = torch.load(_Payload(f, _HEADER), map_location="cpu", weights_only=True)  # type: ignore[arg-type]
            elif head.startswith(b"PK"):
                warnings.warn(
                    f"{where} has no content hash (written by an older minidiff); its integrity "
                    "cannot be checked. Save it again to add one.",
                    stacklevel=2,
                )
                f.seek(0)
                state = torch.load(f, map_location="cpu", weights_only=True)
            else:
                raise ValueError(
                    f"{where} is corrupt: it does not start like a minidiff checkpoint"
                )
    except ValueError:
        raise
    except Exception as exc:  # zip, pickle and EOF errors all mean the same thing here
        raise ValueError(f"{where} is corrupt or truncated and cannot be loaded: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{where} is corrupt: expected a dict, got {type(state).__name__}")
    return state


# ----------------------------------------------------------------------------------- validation


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


def _check_decay(decay: float) -> None:
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not (0.0 <= decay < 1.0):
        raise ValueError(f"ema_decay must be a number in [0, 1), got {decay!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, *, positive: bool, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a finite number {bound}{extra}, got {value!r}")


def _draw_batch(data: DataSource, batch_size: int, generator: torch.Generator) -> Any:
    if isinstance(data, Tensor):
        # With replacement: the whole data order is then a function of the generator state.
        idx = torch.randint(data.shape[0], (batch_size,), generator=generator)
        return data[idx.to(data.device)]
    return data(batch_size, generator)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(step: int, steps: int, lr: float, warmup_steps: int, schedule: str) -> float:
    """The learning rate of optimizer step ``step`` (1-based) in a run of ``steps`` steps.

    Linear warm-up ``lr * step / warmup_steps`` for ``step < warmup_steps``; then ``lr``
    (``"constant"``) or ``lr * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup_steps) /
    (steps - warmup_steps + 1)`` (``"cosine"``), which starts at ``lr`` and ends just above 0 at
    the last step, so that every step still moves the weights.
    """
    warm = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant" or step <= warmup_steps:
        return lr * warm
    progress = (step - warmup_steps) / (steps - warmup_steps + 1)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _make_optimizer(params: Sequence[Tensor], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fastest implementation the parameters allow: fused (one kernel for all
    parameters, and it can skip a non-finite step on the device), else foreach."""
    fused_devices = _get_fused_kernels_supported_devices()
    if all(p.device.type in fused_devices and p.is_floating_point() for p in params):
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # e.g. a dtype without a fused kernel
            pass
    return torch.optim.AdamW(
        params, lr=lr, weight_decay=weight_decay, foreach=_foreach_supported(params)
    )


def _foreach_supported(params: Sequence[Tensor]) -> bool:
    devices = _get_foreach_kernels_supported_devices()
    return all(p.device.type in devices for p in params)


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


# ----------------------------------------------------------------------------------- the loop


def train(
    model: nn.Module,
    loss_fn: LossFn,
    data: DataSource,
    *,
    steps: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    ema_decay: float = 0.999,
    grad_clip: float | None = 1.0,
    warmup_steps: int = 0,
    lr_schedule: str = "constant",
    generator: torch.Generator | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int = 10,
    amp: bool = False,
) -> TrainResult:
    """Minimise ``loss_fn`` with AdamW for ``steps`` optimizer steps (DDPM Algorithm 1 when
    ``loss_fn`` is L_simple).

    Each step ``k = 1..steps``: draw a batch, ``loss = loss_fn(model, batch, generator)``, backward,
    clip the global gradient norm to ``grad_clip``, AdamW step with learning rate
    ``lr * min(1, k / warmup_steps)`` (``lr_schedule="constant"``) or, with ``"cosine"``, that
    warm-up followed by a half cosine from ``lr`` towards 0 at step ``steps`` (see
    :func:`learning_rate`), EMA update (see ``EMA``).

    Args:
        model: the network; moved to ``device`` (default: where its parameters already are).
        loss_fn: ``loss_fn(model, batch, generator) -> scalar tensor``; draw all randomness from
            ``generator`` so that runs are reproducible.
        data: an ``(N, ...)`` tensor (batches of ``batch_size`` rows drawn uniformly *with*
            replacement) or a callable ``data(batch_size, generator) -> batch`` (e.g. infinite
            toy data).
        steps: total number of optimizer steps, counting those already in a resumed checkpoint.
        lr_schedule: ``"constant"`` (after the warm-up) or ``"cosine"`` (Loshchilov & Hutter,
            2017, without restarts). A cosine run depends on ``steps``, so its checkpoint resumes
            only towards the same ``steps``.
        generator: the loop's CPU generator; default ``torch.Generator().manual_seed(seed)``.
        checkpoint_path: if given, save there every ``checkpoint_every`` steps and at the end.
        resume: if a checkpoint exists at ``checkpoint_path``, continue from it (its model and
            training configuration must match; the global torch RNG state is restored too).
        progress: show a ``tqdm.auto`` progress bar with the loss, refreshed every ``log_every``
            steps.
        amp: bfloat16 autocast for the forward pass (useful on recent GPUs; no loss scaling needed).

    Returns:
        ``TrainResult(model, ema, losses, steps_done, seconds)``; ``losses`` has one float per step
        since step 1 (including resumed ones), ``seconds`` is the wall time of this call.

    Raises:
        NonFiniteLossError: at the first step whose loss or gradient norm is NaN/inf, before the
            weights are touched; the message gives the (1-based) step and the value.
    """
    t_start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(
            "loss_fn must be callable (model, batch, generator) -> loss, "
            f"got {type(loss_fn).__name__}"
        )
    if isinstance(data, Tensor):
        if data.ndim < 1 or data.shape[0] < 1:
            raise ValueError(
                f"data must be a tensor of shape (N, ...) with N >= 1, got {tuple(data.shape)}"
            )
    elif not callable(data):
        raise TypeError(
            "data must be a tensor (N, ...) or a callable (batch_size, generator) -> batch, "
            f"got {type(data).__name__}"
        )
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("warmup_steps", warmup_steps, 0)
    _check_int("log_every", log_every, 1)
    _check_int("seed", seed, 0)
    if checkpoint_every is not None:
        _check_int("checkpoint_every", checkpoint_every, 1)
    _check_number("lr", lr, positive=True)
    _check_number("weight_decay", weight_decay, positive=False)
    _check_number("grad_clip", grad_clip, positive=True, allow_none=True)
    _check_decay(ema_decay)
    check_choice(lr_schedule, "lr_schedule", LR_SCHEDULES)
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    elif not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    elif generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    device = check_device(device)
    if checkpoint_path is not None:
        checkpoint_path = check_checkpoint_path(
            checkpoint_path
        )  # before the first step, not after the last
    if isinstance(data, Tensor) and data.is_floating_point():
        # once, here: a NaN row would otherwise surface as a NaN loss much later
        check_finite(data, "data")

    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model.to(device)
    model.train()
    if device.type != "cpu":  # on the CPU the checks cost no synchronisation: keep them all
        loss_fn = _value_checks_on_first_call(loss_fn)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    foreach = _foreach_supported(params)
    optimizer = _make_optimizer(params, lr, weight_decay)
    ema = EMA(model, decay=ema_decay)
    losses: list[float] = []
    start = 0
    config = {
        "batch_size": batch_size,
        "lr": float(lr),
        "weight_decay": float(weight_decay),
        "ema_decay": float(ema_decay),
        "grad_clip": None if grad_clip is None else float(grad_clip),
        "warmup_steps": warmup_steps,
        "amp": bool(amp),
        # only a cosine run records its schedule: checkpoints of constant runs stay as they were
        **({"lr_schedule": f"cosine to step {steps}"} if lr_schedule == "cosine" else {}),
        "data": list(data.shape) if isinstance(data, Tensor) else "callable",
    }

    if checkpoint_path is not None and resume and Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path)
        where = f"checkpoint {str(checkpoint_path)!r}"
        for key in (
            "model",
            "ema",
            "optimizer",
            "step",
            "generator_state",
            "torch_rng_state",
            "losses",
            "model_fingerprint",
            "config",
        ):
            if key not in ckpt:
                raise ValueError(f"{where} is not a training checkpoint: missing {key!r}")
        check_model_fingerprint(model, ckpt["model_fingerprint"], where=where)
        diff = sorted(
            k for k in set(config) | set(ckpt["config"]) if config.get(k) != ckpt["config"].get(k)
        )
        if diff:
            detail = ", ".join(
                f"{k}={ckpt['config'].get(k)!r} in checkpoint vs {config.get(k)!r}" for k in diff
            )
            raise ValueError(
                f"{where} was written with another training configuration ({detail}); "
                "pass resume=False or another checkpoint_path to start afresh"
            )
        start = int(ckpt["step"])
        if start > steps:
            raise ValueError(f"{where} is at step {start}, past steps={steps}")
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        ema.model.to(device)
        implementation = {k: optimizer.defaults.get(k) for k in ("fused", "foreach")}
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # the checkpoint may come from another machine
            group.update(implementation)
        generator.set_state(ckpt["generator_state"])
        torch.set_rng_state(ckpt["torch_rng_state"])
        if device.type == "cuda" and "cuda_rng_state" in ckpt:
            torch.cuda.set_rng_state(ckpt["cuda_rng_state"], device)
        losses = [float(v) for v in ckpt["losses"]]

    def checkpoint(step: int) -> None:
        if checkpoint_path is None:
            return
        if not _all_finite(model):
            raise NonFiniteLossError(
                f"weights are not finite at step {step}; checkpoint not written"
            )
        extra = {}
        if device.type == "cuda":
            extra["cuda_rng_state"] = torch.cuda.get_rng_state(device)
        save_checkpoint(
            checkpoint_path,
            version=CHECKPOINT_VERSION,
            model=model.state_dict(),
            ema=ema.state_dict(),
            optimizer=optimizer.state_dict(),
            step=step,
            generator_state=generator.get_state(),
            torch_rng_state=torch.get_rng_state(),
            losses=list(losses),
            model_fingerprint=model_fingerprint(model),
            config=config,
            **extra,
        )

    bar = None
    if progress and start < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc="train", leave=True)
    # No host synchronisation per step: the loss (and gradient norm) of each step stay on the
    # device until the next flush (every log_every steps, before a checkpoint and at the end).
    # A non-finite step sets the sticky device flag ``found_inf``; fused AdamW skips its update
    # (and every later one) without a sync, so the weights stay those of the last good step, and
    # the flush raises naming that step.
    found_inf = torch.zeros((), dtype=torch.float32, device=device)
    fused = bool(optimizer.defaults.get("fused"))
    grad_scale = torch.ones((), dtype=torch.float32, device=device)
    if fused:
        optimizer.found_inf = found_inf  # type: ignore[attr-defined]
        if grad_clip is not None:
            optimizer.grad_scale = grad_scale  # type: ignore[attr-defined]
    pending: list[tuple[int, Tensor, Tensor | None]] = []
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if amp
        else contextlib.nullcontext()
    )

    def flush() -> None:
        if not pending:
            return
        loss_values = torch.stack([v for _, v, _ in pending]).float().tolist()
        norm_values = (
            torch.stack([n for _, _, n in pending if n is not None]).tolist()
            if grad_clip is not None
            else [0.0] * len(pending)
        )
        for (step, _, _), value, norm in zip(pending, loss_values, norm_values, strict=True):
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
            losses.append(value)
        pending.clear()
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)

    try:
        for step in range(start + 1, steps + 1):
            batch = _to_device(_draw_batch(data, batch_size, generator), device)
            with autocast:
                loss = loss_fn(model, batch, generator)
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                got = type(loss).__name__
                if isinstance(loss, Tensor):
                    got += f" of shape {tuple(loss.shape)}"
                raise TypeError(f"loss_fn must return a scalar tensor, got {got}")
            loss = loss.reshape(())
            optimizer.zero_grad(set_to_none=True)
            loss.float().backward()
            norm = None
            if grad_clip is not None and fused:
                # Clip inside the fused step: it divides every gradient by grad_scale, so
                # grad_scale = max(1, |g| / grad_clip) is clip_grad_norm_ without a pass over the
                # gradients.
                grads = [p.grad for p in params if p.grad is not None]
                norm = (
                    torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                    if grads
                    else found_inf.new_zeros(())
                )
                torch.clamp((norm + 1e-6) / grad_clip, min=1.0, out=grad_scale)
            elif grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=foreach)
            watched = loss.detach() if norm is None else loss.detach() + norm
            torch.maximum(found_inf, (~torch.isfinite(watched)).float(), out=found_inf)
            if not fused and bool(found_inf):  # a sync per step, only without a fused AdamW
                pending.append((step, loss.detach(), norm))
                flush()  # raises before the update
            step_lr = learning_rate(step, steps, lr, warmup_steps, lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = step_lr
            optimizer.step()
            ema.update(model)
            pending.append((step, loss.detach(), norm))
            if step % log_every == 0 or step == steps:
                flush()
                if bar is not None:
                    bar.update(step - bar.n)
            if checkpoint_every is not None and step % checkpoint_every == 0 and step != steps:
                flush()
                checkpoint(step)
        flush()
    finally:
        if bar is not None:
            bar.close()
    if start < steps:
        checkpoint(steps)
    return TrainResult(
        model=model, ema=ema, losses=losses, steps_done=steps, seconds=time.perf_counter() - t_start
    )
