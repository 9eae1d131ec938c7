"""What the machine that trains can do: its name, bf16 or not, its peak, the measured step, MFU.

Chapter 12 and ``bench/gpu_*.py`` plan a run from measurements on the device that will train it:

- :func:`device_label` names the device (a GPU by its own name, never a CPU by a GPU's);
- :func:`choose_bf16` decides on bf16 autocast: on a GPU that supports it (Ampere and later), not
  on one that does not (a T4 or a V100: float32, said so), not on a CPU (slower there);
- :func:`time_train_step` times training steps of a model on that device with that precision;
- :func:`forward_flops` counts one forward pass; :func:`mfu` divides the achieved FLOP rate by
  the card's dense peak from :data:`DENSE_PEAK_TFLOPS` (:func:`peak_tflops`), or says that the
  peak of an unknown card is not known rather than guessing it.

Model FLOPs utilisation (MFU, Chowdhery et al. 2022, PaLM, App. B): ``images/s x training FLOPs
per image / peak FLOP/s``, with training FLOPs = 3 x forward FLOPs (the backward pass costs about
twice the forward).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ._validation import (
    Check,
    Flag,
    FloatTensor,
    Function,
    Instance,
    Int,
    Number,
    OneOf,
    Shape,
    check_device,
    checked,
)

__all__ = [
    "DENSE_PEAK_TFLOPS",
    "device_label",
    "choose_bf16",
    "Precision",
    "peak_tflops",
    "forward_flops",
    "StepTime",
    "time_train_step",
    "mfu",
]

DENSE_PEAK_TFLOPS: dict[str, dict[str, float]] = {
    # Vendors' data sheets, dense (no 2:4 sparsity). "bf16": tensor cores with float32
    # accumulation (what autocast uses); "fp32": plain float32, the peak a card without bf16
    # trains at. The first key found in torch.cuda.get_device_name() as whole words wins (not
    # inside a longer model number: "A100" is not the "RTX A1000"), so the more specific names
    # come first.
    "H200 NVL": {},  # PCIe variants at a lower power than the SXM card: not in this table,
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100 NVL": {},  # so unknown rather than the SXM figure
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},  # SXM, "H100 80GB HBM3"
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "L40": {"bf16": 181.0, "fp32": 90.5},
    "L4": {"bf16": 121.0, "fp32": 30.3},
    "A10G": {},  # a cloud variant whose tensor peak is not on a public data sheet: unknown
    "A10": {"bf16": 125.0, "fp32": 31.2},
    # variants named after a desktop card but with peaks of their own: unknown, not the desktop's
    "RTX 4090 Laptop": {},
    "RTX 4090 D": {},
    "RTX 3090 Ti": {},
    "RTX 4090": {"bf16": 165.2, "fp32": 82.6},
    "RTX 3090": {"bf16": 71.0, "fp32": 35.6},
    "RTX A6000": {"bf16": 154.8, "fp32": 38.7},
    "T4": {"fp32": 8.1},  # no bf16 (Turing): trains in float32
    "V100": {"fp32": 15.7},  # no bf16 (Volta)
}
"""Dense peaks in TFLOP/s of common cards, per precision."""


def _device(device: object, name: str = "device") -> torch.device:
    """A device that exists here (:func:`~minidiff._validation.check_device`), ``None`` refused."""
    if device is None:
        raise TypeError(f"{name} must be a torch.device or a string such as 'cuda', got None")
    return check_device(device, name)  # type: ignore[return-value]


_DEVICE = Check(_device)


@checked(device=_DEVICE)
def device_label(device: torch.device | str) -> str:
    """``"cuda (NVIDIA H100 80GB HBM3)"``, ``"cpu"``, ``"mps"``: the device that runs, by name."""
    dev = torch.device(device)  # checked by @checked
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type


class Precision(NamedTuple):
    """The decision of :func:`choose_bf16`: ``bf16`` autocast or not, and why, in a sentence."""

    bf16: bool
    reason: str


@checked(device=_DEVICE)
def choose_bf16(device: torch.device | str) -> Precision:
    """bf16 autocast where it is fast and exact enough, float32 elsewhere, with the reason.

    A CUDA GPU that supports bf16 (``torch.cuda.is_bf16_supported()``: compute capability 8.0 and
    later) trains in bf16; one that does not falls back to float32 (float16 would need loss
    scaling, which the course's loop does not do). A CPU trains in float32: its bf16 matmuls are
    emulated on most processors and slower than float32.
    """
    dev = torch.device(device)  # checked by @checked
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev) if torch.cuda.is_available() else "this GPU"
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Precision(True, f"{name} supports bf16: matmuls and convolutions run in bf16")
        return Precision(
            False,
            f"{name} has no bf16 support (it needs compute capability 8.0, e.g. an A100, L4 or "
            "RTX 30xx): training falls back to float32, slower but exact",
        )
    return Precision(False, f"on the {dev.type} bf16 is not faster: training runs in float32")


@checked(precision=OneOf(("bf16", "fp32")))
def peak_tflops(name: str, precision: str = "bf16") -> float | None:
    """Dense peak (TFLOP/s) of the card called ``name`` in ``precision`` (``"bf16"`` or
    ``"fp32"``), from :data:`DENSE_PEAK_TFLOPS`; ``None`` for a card (or precision) not in it,
    and for a variant with a model name of its own (``RTX 4090 Laptop GPU``, ``RTX 4090 D``,
    ``RTX 3090 Ti``): the first entry whose whole words the name contains gives the figure."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a device name (a str), got {type(name).__name__}")
    for key, peaks in DENSE_PEAK_TFLOPS.items():
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name):
            return peaks.get(precision)
    return None


@checked(model=Instance(nn.Module), shape=Shape, device=_DEVICE)
def forward_flops(model: nn.Module, shape: tuple[int, ...], device: torch.device | str) -> float:
    """FLOPs of one forward pass of ``model(x (1, *shape), t (1,))`` (2 per multiply-add).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` with attention on the math backend,
    whose matrix products it counts on every device (it misses some fused attention kernels).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    dev = torch.device(device)  # checked by @checked
    x = torch.randn(1, *shape, device=dev)
    t = torch.tensor([500], device=dev)
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x, t)
    return float(counter.get_total_flops())


class StepTime(NamedTuple):
    """Measured training speed: seconds per step and images per second."""

    seconds_per_step: float
    images_per_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@checked(
    model=Instance(nn.Module),
    loss_fn=Function("(model, batch) -> loss"),
    batch=FloatTensor(nonempty=True),
    bf16=Flag,
    steps=Int(),
    warmup=Int(minimum=0),
)
def time_train_step(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Tensor], Tensor],
    batch: Tensor,
    *,
    bf16: bool = False,
    steps: int = 3,
    warmup: int = 1,
) -> StepTime:
    """Time ``steps`` AdamW steps of ``loss_fn(model, batch)`` on ``batch``'s device, after
    ``warmup`` untimed ones (allocation, cuDNN's choice of kernels), with bf16 autocast if asked.

    The model is trained in place on a copy of nothing else: give it a throw-away model (or
    reload its weights) if the steps must not count.
    """
    dev = batch.device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(dev)
            start = time.perf_counter()
        with torch.autocast(dev.type, torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(dev)
    per_step = (time.perf_counter() - start) / steps
    return StepTime(per_step, batch.shape[0] / per_step)


_TFLOPS_BELOW = 1e6
"""A ``peak`` below this is read in TFLOP/s by :func:`mfu`, one at or above it in FLOP/s."""


@checked(
    images_per_s=Number(low=0.0),
    train_flops_per_image=Number(low=0.0),
    peak=Number(low=0.0, optional=True),
)
def mfu(images_per_s: float, train_flops_per_image: float, peak: float | None) -> float | None:
    """``images/s x FLOPs per training image / peak FLOP/s`` (a fraction), ``None`` without a
    known peak.

    ``peak`` is in FLOP/s (``989e12``) or in TFLOP/s as :func:`peak_tflops` gives it (``989.0``):
    a value below ``1e6`` is read in TFLOP/s. No accelerator reaches
    ``1e6`` TFLOP/s, and none has a peak below ``1e6`` FLOP/s, so the two never meet. All three
    numbers must be positive and finite (``ValueError``; a string or a bool: ``TypeError``).
    """
    if peak is None:
        return None
    flops = peak * 1e12 if peak < _TFLOPS_BELOW else peak
    return images_per_s * train_flops_per_image / flops
