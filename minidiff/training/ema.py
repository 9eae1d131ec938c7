"""Exponential moving average of a model's weights (Polyak averaging): the model to sample from."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from .._validation import Flag, Instance, Number, checked

__all__ = ["EMA"]

# (EMA shadows, live parameters, EMA buffers, live buffers), paired up once per model
_Pairs = tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


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

    @checked(  # type: ignore[misc]  # (a decorated __init__)
        model=Instance(nn.Module, "a torch.nn.Module"),
        decay=Number(low=0.0, high=1.0, low_open=False),
        warmup=Flag,
    )
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        self.decay = float(decay)
        self.warmup = warmup
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
        self._check_same_model(model)
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
        self._check_same_model(model)
        model.load_state_dict(self.model.state_dict())

    def _check_same_model(self, model: object) -> None:
        """``model`` has the averaged model's parameters (names and shapes), else a clear error
        before anything is touched."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        ours = {k: tuple(v.shape) for k, v in self.model.named_parameters()}
        theirs = {k: tuple(v.shape) for k, v in model.named_parameters()}
        if ours != theirs:
            missing = sorted(set(ours) - set(theirs))
            shapes = [k for k in ours if k in theirs and ours[k] != theirs[k]]
            detail = (
                f"it lacks {missing[:3]}"
                if missing
                else f"{shapes[0]!r} is {theirs[shapes[0]]} here, {ours[shapes[0]]} in the EMA"
                if shapes
                else f"it has parameters the EMA lacks: {sorted(set(theirs) - set(ours))[:3]}"
            )
            raise ValueError(
                f"model is not the model this EMA averages ({detail}); build the EMA from it"
            )

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
