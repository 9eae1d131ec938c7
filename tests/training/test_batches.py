"""Labelled and iterable data in ``train``: what each kind of data source gives the loss, and
that each kind that is documented to resume exactly does (straight run == crashed + resumed)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from minidiff.training import load_checkpoint, save_checkpoint, train
from minidiff.training.batches import ResumeWarning, batches_from

N = 40
X = torch.randn(N, 3, generator=torch.Generator().manual_seed(0))
Y = torch.arange(N) % 4  # labels
KW: dict[str, Any] = dict(batch_size=8, lr=1e-2, ema_decay=0.9, progress=False, log_every=1)


class Labelled(nn.Module):
    """A tiny label-conditional regressor with dropout (dropout draws from the global RNG)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(4, 3)
        self.net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.emb(y))


def labelled_loss(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
    x, y = batch
    x = x + 0.01 * torch.randn(x.shape, generator=g)  # randomness from the loop's generator
    target = x.sum(1, keepdim=True) * (y[:, None].float() - 1.5)
    return ((model(x, y) - target) ** 2).mean()


class Augmented(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random augmentations from torch's, NumPy's and Python's global RNGs."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        jitter = 0.1 * torch.randn(3) + float(np.random.uniform(-0.1, 0.1)) + random.random() * 0.1
        return X[i] + jitter, Y[i]


def _loader(kind: str) -> Any:
    ds = TensorDataset(X, Y)
    if kind == "loader_shuffled":
        return DataLoader(ds, batch_size=8, shuffle=True)
    if kind == "loader_own_generator":
        own = torch.Generator().manual_seed(3)
        return DataLoader(ds, batch_size=8, shuffle=True, generator=own)
    if kind == "loader_augmented":
        return DataLoader(Augmented(), batch_size=8, shuffle=True)
    if kind == "loader_sequential_ragged":
        return DataLoader(ds, batch_size=6)  # 6 full batches and one of 4 per pass
    if kind == "list_of_batches":
        return [(X[i : i + 8], Y[i : i + 8]) for i in range(0, N, 8)]
    if kind == "tuple":
        return (X, Y)
    if kind == "tensor_dataset":
        return ds
    if kind == "callable":
        return lambda n, g: (lambda i: (X[i], Y[i]))(torch.randint(N, (n,), generator=g))
    raise AssertionError(kind)


KINDS = [
    "tuple",
    "tensor_dataset",
    "callable",
    "loader_shuffled",
    "loader_own_generator",
    "loader_augmented",
    "loader_sequential_ragged",
    "list_of_batches",
]


def _run(
    data: Any, steps: int, path: Path | None = None, crash_at: int | None = None, seed: int = 0
) -> Any:
    """Train from the global RNGs seeded with ``seed`` (initial weights, augmentations); a
    resumed run is given another seed: the checkpoint must restore everything."""
    calls = {"n": 0}

    def loss_fn(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise KeyboardInterrupt
        return labelled_loss(model, batch, g)

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    kw = dict(checkpoint_path=path, checkpoint_every=3) if path else {}
    return train(Labelled(), loss_fn, data, steps=steps, **KW, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_data_resumes_bitwise(kind: str, tmp_path: Path) -> None:
    """8 kinds of data; each run is crashed at step 8 (mid-pass for the loaders: checkpoint at 6,
    passes of 5 or 7 batches) and resumed; a second crash at step 11 crosses a pass boundary."""
    straight = _run(_loader(kind), 14)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(_loader(kind), 14, path, crash_at=8)
    assert load_checkpoint(path)["step"] == 6
    with pytest.raises(KeyboardInterrupt):
        _run(_loader(kind), 14, path, crash_at=11 - 6, seed=99)
    at_9 = load_checkpoint(path)
    assert at_9["step"] == 9
    resumed = _run(_loader(kind), 14, path, seed=98)
    assert resumed.losses == straight.losses and len(straight.losses) == 14
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    if kind.startswith(("loader", "list")):
        # not vacuous: without the data position a resumed run sees other batches
        assert at_9["data_state"]["passes"] == 1
        del at_9["data_state"]
        save_checkpoint(tmp_path / "no_position.pt", **at_9)
        other = _run(_loader(kind), 14, tmp_path / "no_position.pt", seed=98)
        assert other.losses[:9] == straight.losses[:9] and other.losses != straight.losses


def test_an_epoch_sampler_resumes_bitwise_with_its_position_in_the_checkpoint(
    tmp_path: Path,
) -> None:
    """The chapter 12 recipe: train() on an EpochSampler, stopped and continued, equals a
    straight run; the checkpoint holds the sampler's position (a callable with state), and a
    checkpoint without it is refused rather than resumed from the start of the data."""
    from minidiff.nn.unet import UNet
    from minidiff.schedules import linear_schedule
    from minidiff.training.image_data import EpochSampler

    images = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    schedule = linear_schedule(50)

    def loss(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        x0, t, noise = batch
        x_t = schedule.sqrt_alpha_bar[t].float()[:, None, None, None] * x0 + (
            schedule.sqrt_one_minus_alpha_bar[t].float()[:, None, None, None] * noise
        )
        return ((model(x_t, t) - noise) ** 2).mean()

    def fit(steps: int, path: Path) -> Any:
        torch.manual_seed(0)
        sampler = EpochSampler(images, T=50, global_batch=4)
        opts = {**KW, "batch_size": 4, "checkpoint_path": path}
        return train(UNet("tiny"), loss, sampler, steps=steps, **opts)

    straight = fit(4, tmp_path / "a.pt")
    fit(2, tmp_path / "b.pt")
    assert load_checkpoint(tmp_path / "b.pt")["data_state"] == {"callable": {"position": 8}}
    resumed = fit(4, tmp_path / "b.pt")
    assert resumed.losses == straight.losses
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    fit(2, tmp_path / "c.pt")
    at_2 = load_checkpoint(tmp_path / "c.pt")
    del at_2["data_state"]
    save_checkpoint(tmp_path / "c.pt", **at_2)
    with pytest.raises(ValueError, match="holds no state of data"):
        fit(4, tmp_path / "c.pt")


def test_labelled_rows_stay_together() -> None:
    """x and y of a batch are the same rows, for the tuple, the TensorDataset and a loader."""
    x = torch.arange(N, dtype=torch.float32)[:, None]
    y = 3 * torch.arange(N)
    for data in ((x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), 8, shuffle=True)):
        source = batches_from(data)
        for _ in range(7):
            bx, by = source.draw(8, torch.Generator().manual_seed(1))
            assert torch.equal(3 * bx[:, 0].long(), by)


def test_a_one_shot_iterator_trains_and_warns_on_resume(tmp_path: Path) -> None:
    """A generator object: trains; it cannot be replayed, so a resume warns (and, with an
    iterator that repeats its batches, still repeats the run)."""

    def stream() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, N, 4):
            yield X[i : i + 4], Y[i : i + 4]

    straight = _run(stream(), 10)
    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(stream(), 10, path, crash_at=5)
    with pytest.warns(ResumeWarning, match="one-shot iterator.*skips the 3 batches"):
        resumed = _run(stream(), 10, path, seed=98)
    assert resumed.losses == straight.losses
    with pytest.raises(ValueError, match="ran out after 10 batches"):
        _run(stream(), 11)


def test_a_loader_shorter_than_its_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(_loader("list_of_batches"), 14, path, crash_at=5)
    with pytest.raises(ValueError, match="fewer batches than the checkpoint used"):
        _run([(X[:8], Y[:8])], 14, path)


class Rows:
    """A data callable that keeps a state (how many batches it gave) between calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        idx = torch.randint(N, (n,), generator=g)
        return X[idx], Y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])


class SavesOnly:
    """A data callable with state_dict but no load_state_dict: its state could not be restored."""

    def __call__(self, n: int, g: torch.Generator) -> Any:
        return Rows()(n, g)

    def state_dict(self) -> dict[str, Any]:
        return {}


class LoadsOnly:
    def __call__(self, n: int, g: torch.Generator) -> Any:
        return Rows()(n, g)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Unsavable(Rows):
    def state_dict(self) -> dict[str, Any]:
        return {"calls": np.int64(self.calls)}  # not something torch.load(weights_only) reads


def test_a_refused_resume_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    """A checkpoint without the state of a stateful data callable is refused, naming its path,
    before any of it is loaded: the model's weights stay those it had."""
    path = tmp_path / "ckpt.pt"
    torch.manual_seed(0)
    train(Labelled(), labelled_loss, Rows(), steps=2, checkpoint_path=path, **KW)
    at_2 = load_checkpoint(path)
    del at_2["data_state"]  # as a run with other data would have written it
    save_checkpoint(path, **at_2)
    torch.manual_seed(1)
    model = Labelled()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=f"checkpoint '{path}' holds no state of data .Rows"):
        train(model, labelled_loss, Rows(), steps=4, checkpoint_path=path, **KW)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_data_whose_state_a_checkpoint_cannot_hold_is_refused_before_any_step(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    def loss_fn(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return labelled_loss(model, batch, g)

    with pytest.raises(TypeError, match=r"data.state_dict\(\)\['calls'\] is a int64"):
        train(Labelled(), loss_fn, Unsavable(), steps=3, checkpoint_path=tmp_path / "c.pt", **KW)
    assert calls == [] and not (tmp_path / "c.pt").exists()
    assert train(Labelled(), loss_fn, Unsavable(), steps=1, **KW).steps_done == 1  # nothing saved


BAD: list[tuple[object, type[Exception], str]] = [
    (SavesOnly(), TypeError, r"data \(SavesOnly\) has state_dict\(\) but no load_state_dict"),
    (LoadsOnly(), TypeError, r"data \(LoadsOnly\) has load_state_dict\(\) but no state_dict"),
    (None, TypeError, "data must be"),
    ("moons", TypeError, "data must be"),
    (np.zeros((4, 3)), TypeError, "data must be"),
    ({"x": X}, TypeError, "data must be"),
    (Augmented(), TypeError, "wrap it in torch.utils.data.DataLoader"),
    ((X, Y[:10]), ValueError, "same number of rows"),
    ((X, torch.zeros(0)), ValueError, r"data\[1\]"),
    ((X, torch.full((N,), float("nan"))), ValueError, r"data\[1\] contains non-finite"),
    (torch.zeros(0, 2), ValueError, "N >= 1"),
    ([], ValueError, "yields no batches"),
]


@pytest.mark.parametrize(("data", "exc", "match"), BAD)
def test_bad_data_is_named_before_any_step(data: object, exc: type[Exception], match: str) -> None:
    """10 bad data sources: each a TypeError/ValueError naming data; the loss is never called."""
    calls: list[int] = []

    def loss_fn(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return labelled_loss(model, batch, g)

    with pytest.raises(exc, match=match):
        train(Labelled(), loss_fn, data, steps=3, **KW)
    assert calls == []


def test_a_list_is_an_iterable_of_batches_and_a_tuple_of_tensors_is_labelled_rows() -> None:
    seen: list[Any] = []

    def loss_fn(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        seen.append(batch)
        return labelled_loss(model, batch, g)

    train(Labelled(), loss_fn, [(X[:5], Y[:5])], steps=2, **KW)
    assert all(b[0].shape == (5, 3) for b in seen)
    seen.clear()
    train(Labelled(), loss_fn, (X, Y), steps=2, **KW)
    assert all(b[0].shape == (8, 3) and isinstance(b, tuple) for b in seen)


def test_batches_of_any_structure_reach_the_device_whole() -> None:
    """Tensors inside tuples, lists, dicts and named tuples are moved; the structure is kept."""
    from typing import NamedTuple

    from minidiff.training.batches import to_device

    class Pair(NamedTuple):
        x: torch.Tensor
        y: torch.Tensor

    batch = {"pair": Pair(X[:2], Y[:2]), "list": [X[:1], (Y[:1], "tag")]}
    out = to_device(batch, torch.device("cpu"))
    assert isinstance(out["pair"], Pair) and torch.equal(out["pair"].y, Y[:2])
    assert isinstance(out["list"], list) and out["list"][1][1] == "tag"
