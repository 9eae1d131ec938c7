"""Where the training loop's batches come from, and how a resumed run draws the same ones again.

:func:`batches_from` accepts, and resumes exactly (bit for bit, also after SIGKILL):

- a tensor ``(N, ...)``, a tuple of tensors ``(x, y, ...)`` with the same ``N`` (labelled data;
  the batch is the tuple of the same rows of each), or a ``TensorDataset`` (the same as the tuple
  of its tensors): ``batch_size`` rows drawn uniformly *with* replacement from the loop's
  generator, whose state is in every checkpoint;
- a callable ``data(batch_size, generator) -> batch`` that draws only from ``generator``, or
  that also keeps a state of its own between calls (a position in the data, as
  :class:`~minidiff.training.image_data.EpochSampler` does) and exposes it as ``state_dict()`` /
  ``load_state_dict(state)``: a checkpoint then holds that state, and a resume restores it;
- a ``DataLoader``, a list of batches or any other re-iterable: each pass over it is started
  anew when the previous one ends. A checkpoint stores how far the current pass got and the
  random state when it began (torch's global RNG, the loader's and its sampler's generators,
  NumPy's and Python's global RNGs); a resumed run restores that state, starts the pass again and
  skips the batches already used. This repeats the run for every sampler of ``torch.utils.data``
  (shuffled or not, with a generator of your own or without) and for augmentations that draw
  from those RNGs, in the main process or in workers. It cannot repeat what depends on anything
  else (a NumPy ``Generator`` object inside the dataset, files that changed).
- a one-shot iterator (a generator object): used as it comes. A resumed run gets a new iterator
  and skips as many batches as were used, which repeats the run only if the new iterator yields
  the same batches; :func:`batches_from` warns about this when it resumes.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from .._validation import check_finite

__all__ = ["Batches", "batches_from", "to_device", "ResumeWarning"]


class ResumeWarning(UserWarning):
    """A resumed run cannot promise to draw the same batches as the run it continues."""


class Batches:
    """A source of batches: ``draw(batch_size, generator)``, plus the state a checkpoint keeps."""

    description: Any = "callable"

    def __init__(self, fn: Callable[[int, torch.Generator], Any]) -> None:
        self.fn = fn

    def draw(self, batch_size: int, generator: torch.Generator) -> Any:
        return self.fn(batch_size, generator)

    def state_dict(self) -> dict[str, Any] | None:
        return None  # everything is in the loop's generator

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        pass

    def check_state(self, state: dict[str, Any] | None, where: str) -> None:
        """``ValueError`` if ``state`` (a checkpoint's ``data_state``) cannot be loaded; checked
        before anything of the checkpoint is loaded."""


class _StatefulCallable(Batches):
    """A callable that keeps state between calls (``state_dict``/``load_state_dict``): its state
    is saved with every checkpoint and restored on resume."""

    def __init__(self, fn: Any) -> None:
        super().__init__(fn)
        self.stateful: Any = fn
        self.description = f"callable {type(fn).__name__} with state"

    def state_dict(self) -> dict[str, Any] | None:
        return {"callable": self.stateful.state_dict()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.check_state(state, "the checkpoint")
        assert state is not None
        self.stateful.load_state_dict(state["callable"])

    def check_state(self, state: dict[str, Any] | None, where: str) -> None:
        if state is None or "callable" not in state:
            raise ValueError(
                f"{where} holds no state of data ({type(self.fn).__name__} keeps state "
                "between calls); it was written by a run with other data"
            )


def keeps_state(obj: object, name: str) -> bool:
    """Whether ``obj`` (the argument ``name``) keeps state that a checkpoint must hold: it has
    ``state_dict`` and ``load_state_dict``, as a torch module or optimizer does. One of the two
    without the other is a ``TypeError`` naming ``name``: its state could be neither saved nor
    restored, and a resumed run would silently differ."""
    has = [m for m in ("state_dict", "load_state_dict") if callable(getattr(obj, m, None))]
    if len(has) == 1:
        lacks = "load_state_dict" if has == ["state_dict"] else "state_dict"
        raise TypeError(
            f"{name} ({type(obj).__name__}) has {has[0]}() but no {lacks}(); give it both to "
            "keep its state in checkpoints (a resumed run restores it), or neither"
        )
    return len(has) == 2


class _Rows(Batches):
    """Rows drawn with replacement: the whole data order is a function of the generator state."""

    def __init__(self, tensors: tuple[Tensor, ...], single: bool) -> None:
        self.tensors, self.single = tensors, single
        shapes = [list(t.shape) for t in tensors]
        self.description = shapes[0] if single else shapes

    def draw(self, batch_size: int, generator: torch.Generator) -> Any:
        idx = torch.randint(self.tensors[0].shape[0], (batch_size,), generator=generator)
        rows = tuple(t[idx.to(t.device)] for t in self.tensors)
        return rows[0] if self.single else rows


class _Passes(Batches):
    """Batches of a re-iterable, pass after pass, replayable from a checkpoint (see the module)."""

    def __init__(self, data: Iterable[Any]) -> None:
        self.data = data
        self.one_shot = isinstance(data, Iterator)
        kind = type(data).__name__
        if isinstance(data, DataLoader):
            kind = f"DataLoader(batch_size={data.batch_size})"
        self.description = kind
        self.passes, self.position = 0, 0  # passes finished; batches used in the current one
        self._it: Iterator[Any] | None = None
        self._start: dict[str, Any] | None = None

    def _begin_pass(self) -> None:
        self._start = _random_state(self.data)
        self._it = iter(self.data)

    def draw(self, batch_size: int, generator: torch.Generator) -> Any:
        if self._it is None:
            self._begin_pass()
        assert self._it is not None
        for _ in range(2):
            try:
                batch = next(self._it)
                self.position += 1
                return batch
            except StopIteration:
                if self.one_shot or self.position == 0:
                    raise ValueError(self._ran_out()) from None
                self.passes, self.position = self.passes + 1, 0
                self._begin_pass()
        raise AssertionError("unreachable")

    def _ran_out(self) -> str:
        if self.position == 0:
            return f"data ({self.description}) yields no batches"
        return (
            f"data (a one-shot {self.description}) ran out after {self.position} batches; give "
            "a re-iterable (a DataLoader, a list of batches) or fewer steps"
        )

    def state_dict(self) -> dict[str, Any] | None:
        return {
            "passes": self.passes,
            "position": self.position,
            "start": self._start,
            "now": _random_state(self.data, torch_global=False),
        }

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Start the pass of the checkpoint again from its random state and skip the batches it
        used; the caller restores torch's global RNG state afterwards."""
        if state is None or state["start"] is None:
            return
        self.passes, position = int(state["passes"]), int(state["position"])
        if self.one_shot:
            warnings.warn(
                f"data is a one-shot iterator ({self.description}): the resumed run skips the "
                f"{position} batches the checkpoint used, which repeats the run only if this "
                "iterator yields the same batches; pass a DataLoader or a list to resume exactly",
                ResumeWarning,
                stacklevel=4,
            )
        else:
            _set_random_state(self.data, state["start"])
        self._begin_pass()
        assert self._it is not None
        for used in range(position):
            if next(self._it, None) is None:
                raise ValueError(
                    f"data ({self.description}) has fewer batches than the checkpoint used "
                    f"({used} of {position} in pass {self.passes + 1}); resume with the same data"
                )
        self.position = position
        _set_random_state(self.data, state["now"])


def _generators(data: object) -> dict[str, torch.Generator]:
    """The torch generators a DataLoader draws its order (and workers' seeds) from."""
    found = {"loader": getattr(data, "generator", None)}
    sampler = getattr(data, "sampler", None)
    found["sampler"] = getattr(sampler, "generator", None)
    batch_sampler = getattr(getattr(data, "batch_sampler", None), "sampler", None)
    found["batch_sampler"] = getattr(batch_sampler, "generator", None)
    return {k: g for k, g in found.items() if isinstance(g, torch.Generator)}


def _random_state(data: object, torch_global: bool = True) -> dict[str, Any]:
    state: dict[str, Any] = {k: g.get_state() for k, g in _generators(data).items()}
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    # as tensors and numbers: a checkpoint loads with weights_only=True, which refuses arrays
    state["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    state["python"] = random.getstate()
    if torch_global:
        state["torch"] = torch.get_rng_state()
    return state


def _set_random_state(data: object, state: dict[str, Any]) -> None:
    for k, g in _generators(data).items():
        if k in state:
            g.set_state(state[k])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "torch" in state:
        torch.set_rng_state(state["torch"])


def batches_from(data: object) -> Batches:
    """The :class:`Batches` of ``data`` (see the module for the kinds accepted and how each
    resumes); ``TypeError``/``ValueError`` naming ``data`` before any work."""
    if isinstance(data, TensorDataset):
        return _rows(tuple(data.tensors), single=False)
    if isinstance(data, Tensor):
        return _rows((data,), single=True)
    if isinstance(data, tuple) and data and all(isinstance(t, Tensor) for t in data):
        return _rows(data, single=False)
    if isinstance(data, (Dataset, IterableDataset)) and not isinstance(data, Iterator):
        raise TypeError(
            f"data is a {type(data).__name__} of single examples; wrap it in "
            "torch.utils.data.DataLoader(data, batch_size=..., shuffle=True) to train on batches"
        )
    if isinstance(data, (str, bytes, dict, np.ndarray)) or data is None:
        raise TypeError(_WHAT_DATA + f", got {type(data).__name__}")
    if isinstance(data, Iterable):
        return _Passes(data)
    if callable(data):
        return _StatefulCallable(data) if keeps_state(data, "data") else Batches(data)
    raise TypeError(_WHAT_DATA + f", got {type(data).__name__}")


_WHAT_DATA = (
    "data must be a tensor (N, ...), a tuple of tensors (x, y, ...), a TensorDataset, a "
    "DataLoader or other iterable of batches, or a callable (batch_size, generator) -> batch"
)


def _rows(tensors: tuple[Tensor, ...], single: bool) -> _Rows:
    n = tensors[0].shape[0] if tensors[0].ndim else 0
    for i, t in enumerate(tensors):
        where = "data" if single else f"data[{i}]"
        if t.ndim < 1 or t.shape[0] < 1:
            raise ValueError(f"{where} must have shape (N, ...) with N >= 1, got {tuple(t.shape)}")
        if t.shape[0] != n:
            raise ValueError(
                f"the tensors of data must have the same number of rows, got "
                f"{[t.shape[0] for t in tensors]}"
            )
        if t.is_floating_point():  # once, here: a NaN row would surface as a NaN loss much later
            check_finite(t, where)
    return _Rows(tensors, single)


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or tuples, lists and dicts of them) on ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(to_device(b, device) for b in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
