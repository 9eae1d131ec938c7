"""The optimizer step of the training loop: AdamW, a learning-rate schedule, global-norm clipping
and a guard against non-finite steps, with no host synchronisation per step where torch allows.

A training step should never wait for the device to report a number: on a GPU every such read
(``loss.item()``, ``if torch.isnan(loss)``) stalls the queue of kernels. Torch's fused AdamW takes
two device tensors that make the whole step sync-free (:class:`ClippedAdamW`):

- ``grad_scale``: it divides every gradient by this number before the update. Clipping the
  global gradient norm ``|g|`` to ``c`` is exactly ``grad_scale = max(1, |g| / c)``, so the clip
  costs one norm and no pass over the gradients;
- ``found_inf``: when it is non-zero the step is skipped. Kept as a *sticky* flag
  ``found_inf = found_inf or not finite(loss + |g|)``, a non-finite step and every later one leave
  the weights as they were after the last good step, and whoever reads the losses later (every
  ``log_every`` steps) raises naming the first bad step.

Where no fused kernel exists (some dtypes or devices), the step falls back to ``clip_grad_norm_``
and a foreach AdamW, and reads the flag once per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._validation import Check, Int, Number, OneOf, check_positive_int, checked

__all__ = ["ClippedAdamW", "learning_rate", "LR_SCHEDULES"]

LR_SCHEDULES = ("constant", "cosine")


def _step_of_run(value: object, name: str, steps: int) -> int:
    step = check_positive_int(value, name)
    if step > steps:
        raise ValueError(f"{name} must be in 1..steps={steps}, got {step}")
    return step


@checked(
    step=Check(_step_of_run, uses=("steps",)),
    steps=Int(),
    lr=Number(low=0.0),
    warmup_steps=Int(minimum=0),
    schedule=OneOf(LR_SCHEDULES),
)
def learning_rate(step: int, steps: int, lr: float, warmup_steps: int, schedule: str) -> float:
    """The learning rate of optimizer step ``step`` (1-based) in a run of ``steps`` steps.

    Linear warm-up ``lr * step / warmup_steps`` for ``step < warmup_steps``; then ``lr``
    (``"constant"``) or ``lr * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup_steps) /
    (steps - warmup_steps + 1)`` (``"cosine"``, Loshchilov & Hutter, 2017, without restarts),
    which starts at ``lr`` and ends just above 0 at the last step, so that every step still moves
    the weights.
    """
    warm = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant" or step <= warmup_steps:
        return lr * warm
    progress = (step - warmup_steps) / (steps - warmup_steps + 1)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _kernel_devices(kind: str) -> list[str]:
    """The device types with torch's ``kind`` (``"fused"`` or ``"foreach"``) optimizer kernels.

    Torch keeps this list in a private helper (``torch.utils._foreach_utils``), looked up at each
    call; where a torch version lacks it, the answer is ``["cuda"]``, the devices every torch
    version since 2.0 has both kernels for (other devices then take the plain per-tensor path).
    """
    try:
        from torch.utils import _foreach_utils

        devices = getattr(_foreach_utils, f"_get_{kind}_kernels_supported_devices")()
    except (ImportError, AttributeError):
        return ["cuda"]
    return list(devices)


def fused_supported(params: Sequence[Tensor]) -> bool:
    """Whether torch has a fused AdamW kernel for every parameter (device and dtype)."""
    devices = _kernel_devices("fused")
    return all(p.device.type in devices and p.is_floating_point() for p in params)


def _foreach_supported(params: Sequence[Tensor]) -> bool:
    devices = _kernel_devices("foreach")
    return all(p.device.type in devices for p in params)


class ClippedAdamW:
    """AdamW with the global gradient norm clipped to ``grad_clip`` (``None``: no clipping) and a
    sticky guard that skips non-finite steps; sync-free with a fused AdamW (see the module).

    ``step`` after ``backward``: ``norm = opt.clip_grad_norm()``, then ``opt.step(lr, loss, norm)``.
    ``found_inf`` (a device scalar, 1.0 once a step was non-finite) is for the caller to read when
    it reads the losses anyway.
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float,
        weight_decay: float,
        grad_clip: float | None,
        device: torch.device,
    ) -> None:
        self.params = list(params)
        self.grad_clip = grad_clip
        self.optimizer = self._make(lr, weight_decay)
        self.fused = bool(self.optimizer.defaults.get("fused"))
        self.foreach = _foreach_supported(self.params)
        # torch's foreach norm on the CPU is a loop of one kernel per tensor: there, one copy of
        # the gradients into a flat vector and one norm of it cost less
        self.flat_norm = all(p.device.type == "cpu" for p in self.params)
        self.found_inf = torch.zeros((), dtype=torch.float32, device=device)
        self.grad_scale = torch.ones((), dtype=torch.float32, device=device)
        if self.fused:
            self.optimizer.found_inf = self.found_inf  # type: ignore[attr-defined]
            if grad_clip is not None:
                self.optimizer.grad_scale = self.grad_scale  # type: ignore[attr-defined]

    def _make(self, lr: float, weight_decay: float) -> torch.optim.AdamW:
        if fused_supported(self.params):
            try:
                return torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, fused=True)
            except (RuntimeError, ValueError):  # e.g. a dtype without a fused kernel
                pass
        foreach = _foreach_supported(self.params)
        return torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, foreach=foreach)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def clip_grad_norm(self) -> Tensor | None:
        """The global gradient norm (a device scalar), clipped to ``grad_clip``; ``None`` without
        clipping. The fused step clips through ``grad_scale``; otherwise ``clip_grad_norm_``."""
        if self.grad_clip is None:
            return None
        if not self.fused:
            return torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=self.foreach)
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return self.found_inf.new_zeros(())
        if self.flat_norm:
            norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
        else:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        # grad_scale stays float32 (what the fused kernel reads) for float64 weights too
        self.grad_scale.copy_(norm.add(1e-6).div_(self.grad_clip).clamp_(min=1.0))
        return norm

    def step(self, lr: float, loss: Tensor, norm: Tensor | None) -> None:
        """One AdamW step at learning rate ``lr``, skipped (now and from now on) when ``loss`` or
        ``norm`` is not finite."""
        watched = loss.detach() if norm is None else loss.detach() + norm
        self.found_inf.masked_fill_(torch.isfinite(watched).logical_not_(), 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.fused or not bool(self.found_inf):  # the fused kernel reads the flag itself
            self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load AdamW's moments; keep this machine's implementation (fused or foreach), since the
        checkpoint may come from another one."""
        implementation = {k: self.optimizer.defaults.get(k) for k in ("fused", "foreach")}
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:
            group.update(implementation)
