"""The 2D recipe as one call: ``train_toy`` trains the recipe's network with the recipe's options
and timestep law (its quality within 10 CPU-seconds is bench/ddpm_toys.py's business)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import minidiff
from minidiff import ddpm_sample, linear_schedule, precision_recall_with_floor, toy_dataset
from minidiff.nn import TimeMLP
from minidiff.training import recipes
from minidiff.training.recipes import TOY_2D_OPTIONS, toy_loss, train_toy


def test_train_toy_trains_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real_train = recipes.train

    def spy(model: torch.nn.Module, loss_fn: Any, data: Any, **kw: Any) -> Any:
        seen.update(kw, model=model)
        return real_train(model, loss_fn, data, **kw)

    monkeypatch.setattr(recipes, "train", spy)
    result = minidiff.train_toy("two_spirals", 30, progress=False)
    model = seen.pop("model")
    assert isinstance(model, TimeMLP)
    assert (model.hidden, model.n_layers, model.time_dim, model.x_frequencies) == (64, 3, 64, 5)
    expected = {**TOY_2D_OPTIONS, "warmup_steps": 30, "steps": 30, "seed": 0, "progress": False}
    assert seen == expected
    assert len(result.losses) == 30
    with pytest.raises(ValueError, match="^data must be one of"):
        train_toy("spirals", 30)


def test_train_toy_builds_the_network_for_the_dimension_of_its_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """D is read from a tensor (N, D) and from a callable's output; no fall-back to 2."""
    seen: dict[str, object] = {}

    def spy(model: object, loss_fn: object, data: object, **options: object) -> object:
        seen["dim"] = model.data_dim  # type: ignore[attr-defined]
        return "trained"

    monkeypatch.setattr(recipes, "train", spy)
    pts = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    for data in (pts, lambda n, g: torch.randn(n, 3, generator=g)):
        assert train_toy(data, 1) == "trained"  # type: ignore[arg-type, comparator-overlap]
        assert seen.pop("dim") == 3
    assert train_toy("moons", 1) == "trained"  # type: ignore[comparator-overlap]
    assert seen.pop("dim") == 2


def test_train_toy_refuses_data_it_does_not_document_before_any_work() -> None:
    """A TensorDataset, a tuple, a DataLoader or a list is a TypeError naming data (they built a
    2-D network, or failed with an AttributeError), with a hint where one helps."""
    pts = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    for data, hint in (
        (TensorDataset(pts), "pass its tensor of points"),
        ((pts,), "pass its tensor of points"),
        (pts.tolist(), "pass torch.tensor(data)"),
        (DataLoader(pts, batch_size=4), "got DataLoader"),
    ):
        with pytest.raises(TypeError, match="^data must be a toy name") as info:
            train_toy(data, 2, progress=False)  # type: ignore[arg-type]
        assert hint in str(info.value)
    with pytest.raises(TypeError, match=r"^data\(1, generator\) must be a floating tensor"):
        train_toy(lambda n, g: [[0.0, 0.0]] * n, 2, progress=False)  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match=r"^data\(1, generator\) must have shape \(N, D\)"):
        train_toy(lambda n, g: torch.zeros(n), 2, progress=False)


def test_a_data_callable_that_cannot_take_the_call_is_named() -> None:
    """``lambda n: ...`` failed with Python's bare "takes 1 positional argument": now a TypeError
    naming data and the call it must accept; a TypeError raised inside the callable's own code
    passes unchanged."""
    with pytest.raises(TypeError, match=r"^data must accept the call data\(n, generator\)"):
        train_toy(lambda n: torch.randn(n, 2), 3, progress=False)  # type: ignore[arg-type]

    def inside(n: int, g: torch.Generator) -> torch.Tensor:
        raise TypeError("my own bug")

    with pytest.raises(TypeError, match="^my own bug$"):
        train_toy(inside, 3, progress=False)
    # toy_dataset itself binds (name=1, n=generator) and blamed its own argument, name
    with pytest.raises(TypeError, match=r"^data must be .* got toy_dataset itself: pass the name"):
        train_toy(toy_dataset, 3, progress=False)  # type: ignore[arg-type]


def test_the_recipe_draws_small_t_more_often() -> None:
    """t = floor(T u^2) + 1: P(t <= T/4) = 1/2 (uniform t: 1/4), over 20 000 draws."""
    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return torch.zeros_like(x)

    loss_fn = toy_loss(linear_schedule(1000))
    loss_fn(model, torch.zeros(20_000, 2), torch.Generator().manual_seed(0))
    t = torch.cat(seen)
    assert int(t.min()) >= 1 and int(t.max()) <= 1000
    assert abs(float((t <= 250).double().mean()) - 0.5) < 0.015


def test_train_toy_learns_moons_in_600_steps() -> None:
    """A smoke test of quality: 600 steps (a fifth of the default) already reach 0.85 x the
    data's precision and recall on moons (2 x 1000 samples)."""
    result = train_toy("moons", 600, progress=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = ddpm_sample(result.ema.model, linear_schedule(1000), (2000, 2), generator=g)
    pr = precision_recall_with_floor(x, lambda n, gen: toy_dataset("moons", n, gen), n=1000,
                                     draws=2, generator=g)  # fmt: skip
    assert pr.precision.mean >= 0.85 * pr.precision_floor.mean, pr
    assert pr.recall.mean >= 0.85 * pr.recall_floor.mean, pr
