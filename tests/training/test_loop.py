"""Tests for minidiff.training: the loop, EMA, exact resume and safe checkpoints."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from minidiff.training import (
    EMA,
    NonFiniteLossError,
    learning_rate,
    load_checkpoint,
    save_checkpoint,
    train,
)

W_TRUE = torch.tensor([[2.0], [-1.0], [0.5]])


def make_data(n: int = 256) -> torch.Tensor:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    return torch.cat([x, x @ W_TRUE], dim=1)  # (n, 4): features and target


def make_model() -> nn.Module:
    # Dropout draws from the global RNG, so exact resume must restore that state too.
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))


def regression_loss(
    model: nn.Module, batch: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    x, y = batch[:, :3], batch[:, 3:]
    # Input noise from the loop's generator, as a diffusion loss would draw t and eps.
    x = x + 0.01 * torch.randn(x.shape, generator=generator)
    return ((model(x) - y) ** 2).mean()


KW: dict[str, Any] = dict(batch_size=32, lr=1e-2, ema_decay=0.9, warmup_steps=3, progress=False)


def test_train_reduces_loss_and_ema_tracks() -> None:
    torch.manual_seed(0)
    result = train(make_model(), regression_loss, make_data(), steps=200, **KW)
    assert len(result.losses) == 200 and result.steps_done == 200 and result.seconds > 0
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.1 * first
    ema_model = result.ema.model
    assert not ema_model.training
    assert all(not p.requires_grad for p in ema_model.parameters())
    x = make_data()[:, :3]
    with torch.no_grad():
        assert ((ema_model(x) - x @ W_TRUE) ** 2).mean() < 0.1 * first


def test_train_with_callable_data() -> None:
    def sampler(batch_size: int, generator: torch.Generator) -> torch.Tensor:
        x = torch.randn(batch_size, 3, generator=generator)
        return torch.cat([x, x @ W_TRUE], dim=1)

    torch.manual_seed(0)
    result = train(make_model(), regression_loss, sampler, steps=150, **KW)
    assert sum(result.losses[-10:]) < 0.1 * sum(result.losses[:10])


def test_ema_follows_each_new_model_it_is_given() -> None:
    """EMA.update pairs shadow and live parameters once per model; a model built after another
    was freed (often at the same address, so the same id) gets its own pairing."""
    ema = EMA(nn.Linear(2, 2), decay=0.0, warmup=False)  # decay 0: the shadow copies the model
    for k in range(50):
        model = nn.Linear(2, 2)
        with torch.no_grad():
            model.weight.fill_(float(k))
        ema.update(model)
        assert torch.equal(ema.model.weight, model.weight), k
        del model


def test_ema_update_rule() -> None:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9, warmup=True)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # n = 0: decay = min(0.9, 1/10) = 0.1
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 0.9))
    ema.update(model)  # n = 1: decay = min(0.9, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.model.weight, torch.full((1, 2), d * 0.9 + (1 - d)))
    no_warm = EMA(nn.Linear(2, 1, bias=False), decay=0.5, warmup=False)
    assert no_warm.current_decay() == 0.5
    target = nn.Linear(2, 1, bias=False)
    ema.copy_to(target)
    assert torch.equal(target.weight, ema.model.weight)
    clone = EMA(model, decay=0.9)
    clone.load_state_dict(ema.state_dict())
    assert clone.num_updates == 2 and torch.equal(clone.model.weight, ema.model.weight)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def _assert_state_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_state_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_state_equal(u, v, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_is_bitwise_exact(tmp_path: Path) -> None:
    data = make_data()
    ref_ckpt = tmp_path / "ref.pt"
    torch.manual_seed(123)
    full = train(make_model(), regression_loss, data, steps=20, checkpoint_path=ref_ckpt, **KW)

    ckpt = tmp_path / "run.pt"
    torch.manual_seed(123)
    first = train(make_model(), regression_loss, data, steps=10, checkpoint_path=ckpt, **KW)
    assert first.losses == full.losses[:10]
    torch.manual_seed(999)  # a different global RNG state and different initial weights
    resumed = train(make_model(), regression_loss, data, steps=20, checkpoint_path=ckpt, **KW)

    assert resumed.losses == full.losses and len(resumed.losses) == 20
    _assert_state_equal(full.model.state_dict(), resumed.model.state_dict(), "model")
    _assert_state_equal(full.ema.state_dict(), resumed.ema.state_dict(), "ema")
    a, b = load_checkpoint(ref_ckpt), load_checkpoint(ckpt)
    _assert_state_equal(a["optimizer"], b["optimizer"], "optimizer")
    _assert_state_equal(a["generator_state"], b["generator_state"], "generator")
    assert a["step"] == b["step"] == 20

    # Re-running a finished cell loads the checkpoint instead of training again.
    again = train(make_model(), regression_loss, data, steps=20, checkpoint_path=ckpt, **KW)
    _assert_state_equal(full.model.state_dict(), again.model.state_dict(), "model")
    with pytest.raises(ValueError, match="past steps"):
        train(make_model(), regression_loss, data, steps=5, checkpoint_path=ckpt, **KW)
    # A different configuration cannot silently continue the run.
    with pytest.raises(ValueError, match="batch_size"):
        train(
            make_model(),
            regression_loss,
            data,
            steps=30,
            checkpoint_path=ckpt,
            **{**KW, "batch_size": 8},
        )


def test_periodic_checkpoints_do_not_change_the_run(tmp_path: Path) -> None:
    data = make_data()
    torch.manual_seed(0)
    plain = train(make_model(), regression_loss, data, steps=12, **KW)
    torch.manual_seed(0)
    saved = train(
        make_model(),
        regression_loss,
        data,
        steps=12,
        checkpoint_path=tmp_path / "c.pt",
        checkpoint_every=5,
        **KW,
    )
    assert plain.losses == saved.losses
    _assert_state_equal(plain.model.state_dict(), saved.model.state_dict())


def test_failed_save_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, step=1, weights=torch.arange(5.0))
    before = path.read_bytes()
    real_save = torch.save

    def broken_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(10)  # half a file on disk, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, step=2, weights=torch.zeros(5))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt.pt"
    ]  # no temporary file left behind
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.arange(5.0))


def test_corrupt_checkpoint_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    save_checkpoint(path, step=3, weights=torch.randn(100))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="broken.pt"):
        train(make_model(), regression_loss, make_data(), steps=2, checkpoint_path=path, **KW)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_model_names_the_parameter(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    train(make_model(), regression_loss, make_data(), steps=2, checkpoint_path=path, **KW)
    other = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 1))
    with pytest.raises(ValueError, match=r"0\.weight") as info:
        train(other, regression_loss, make_data(), steps=4, checkpoint_path=path, **KW)
    assert "3.weight" in str(info.value) and "shape" in str(info.value)
    extra = nn.Sequential(
        nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1), nn.Linear(1, 1)
    )
    with pytest.raises(ValueError, match=r"4\.bias"):
        train(extra, regression_loss, make_data(), steps=4, checkpoint_path=path, **KW)
    # resume=False starts afresh and overwrites.
    fresh = train(
        other, regression_loss, make_data(), steps=3, checkpoint_path=path, resume=False, **KW
    )
    assert len(fresh.losses) == 3


def test_nan_loss_stops_with_step_number(tmp_path: Path) -> None:
    calls = {"n": 0}

    def loss_fn(model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        loss = regression_loss(model, batch, generator)
        return loss * float("nan") if calls["n"] == 7 else loss

    path = tmp_path / "c.pt"
    model = make_model()
    with pytest.raises(NonFiniteLossError, match=r"step 7\b.*|nan.*step 7") as info:
        train(model, loss_fn, make_data(), steps=20, checkpoint_path=path, checkpoint_every=5, **KW)
    assert "nan" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert load_checkpoint(path)["step"] == 5  # the last good checkpoint, nothing after the NaN


def test_nan_step_leaves_the_weights_of_the_last_good_step() -> None:
    """The loop does not look at the loss every step (no host sync), yet a non-finite step and
    every later one are skipped on the device: the weights are those after step 6."""
    calls = {"n": 0}

    def loss_fn(model: nn.Module, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        loss = regression_loss(model, batch, generator)
        return loss * float("nan") if calls["n"] == 7 else loss

    kw = {**KW, "log_every": 50}
    torch.manual_seed(0)
    good = train(make_model(), regression_loss, make_data(), steps=6, **kw)
    torch.manual_seed(0)
    model = make_model()
    with pytest.raises(NonFiniteLossError, match=r"nan at step 7\b"):
        train(model, loss_fn, make_data(), steps=20, **kw)
    assert calls["n"] == 20  # it ran on to the flush at the last step ...
    _assert_state_equal(good.model.state_dict(), model.state_dict(), "model")  # ... untouched


def test_no_host_sync_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values come back to the host once per ``log_every`` steps, not once per step."""
    reads = {"n": 0}
    for method in ("item", "tolist", "__float__", "__bool__"):
        real = getattr(torch.Tensor, method)

        def counted(self: torch.Tensor, *a: Any, _real: Any = real, **k: Any) -> Any:
            reads["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, counted)
    result = train(
        make_model(),
        regression_loss,
        make_data(),
        steps=100,
        log_every=25,
        **{k: v for k, v in KW.items() if k != "log_every"},
    )
    assert len(result.losses) == 100 and all(isinstance(v, float) for v in result.losses)
    assert reads["n"] <= 2 * 100 // 25 + 4, reads["n"]


def test_warmup_reaches_the_full_learning_rate() -> None:
    model = make_model()
    seen: list[float] = []
    real_step = torch.optim.AdamW.step

    def step(self: torch.optim.AdamW, *a: Any, **k: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", step)
        train(model, regression_loss, make_data(), steps=6, **{**KW, "warmup_steps": 4})
    assert seen == pytest.approx([0.25e-2, 0.5e-2, 0.75e-2, 1e-2, 1e-2, 1e-2])


def test_cosine_schedule_matches_torch_cosine_annealing() -> None:
    steps, warmup, lr = 50, 5, 2e-3
    ours = [learning_rate(k, steps, lr, warmup, "cosine") for k in range(1, steps + 1)]
    # After the warm-up, step k is epoch k - warmup of CosineAnnealingLR over steps - warmup + 1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - warmup + 1, eta_min=0.0)
    theirs = []
    for _ in range(warmup, steps):
        opt.step()
        sched.step()
        theirs.append(opt.param_groups[0]["lr"])
    assert ours[:warmup] == pytest.approx([lr * k / warmup for k in range(1, warmup + 1)])
    assert ours[warmup:] == pytest.approx(theirs, rel=1e-9)
    assert all(a > b for a, b in zip(ours[warmup:-1], ours[warmup + 1 :], strict=True))
    assert 0 < ours[-1] < 0.01 * lr
    assert [learning_rate(k, steps, lr, 0, "constant") for k in (1, 25, 50)] == [lr] * 3


def test_train_follows_the_cosine_schedule_and_resumes_exactly(tmp_path: Path) -> None:
    seen: list[float] = []
    real_step = torch.optim.AdamW.step

    def step(self: torch.optim.AdamW, *a: Any, **k: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    kw = {**KW, "lr_schedule": "cosine"}
    data = make_data()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", step)
        torch.manual_seed(5)
        train(make_model(), regression_loss, data, steps=12, **kw)
    assert seen == pytest.approx([learning_rate(k, 12, 1e-2, 3, "cosine") for k in range(1, 13)])

    # Interrupted after the checkpoint of step 8, then resumed: the same run, bit for bit.
    calls = {"n": 0}

    def crashing(n: int, g: torch.Generator) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return data[torch.randint(0, len(data), (n,), generator=g)]

    def same(n: int, g: torch.Generator) -> torch.Tensor:
        return data[torch.randint(0, len(data), (n,), generator=g)]

    ckpt = tmp_path / "cos.pt"
    torch.manual_seed(5)
    ref = train(make_model(), regression_loss, same, steps=12, **kw)
    torch.manual_seed(5)
    with pytest.raises(KeyboardInterrupt):
        train(
            make_model(),
            regression_loss,
            crashing,
            steps=12,
            checkpoint_path=ckpt,
            checkpoint_every=4,
            **kw,
        )
    assert load_checkpoint(ckpt)["step"] == 8
    torch.manual_seed(77)
    resumed = train(make_model(), regression_loss, same, steps=12, checkpoint_path=ckpt, **kw)
    assert resumed.losses == ref.losses
    _assert_state_equal(ref.model.state_dict(), resumed.model.state_dict(), "model")
    _assert_state_equal(ref.ema.state_dict(), resumed.ema.state_dict(), "ema")
    # A cosine run decays towards its own last step: continuing it to another length is refused.
    with pytest.raises(ValueError, match="lr_schedule"):
        train(make_model(), regression_loss, data, steps=20, checkpoint_path=ckpt, **kw)
    # ... and a constant run (whose record has no lr_schedule) is shown as constant, not None
    flat = tmp_path / "flat.pt"
    train(make_model(), regression_loss, data, steps=3, checkpoint_path=flat, **KW)
    with pytest.raises(ValueError, match="lr_schedule='constant' in checkpoint vs 'cosine to"):
        train(make_model(), regression_loss, data, steps=5, checkpoint_path=flat, **kw)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=0), "steps"),
        (dict(steps=5, lr_schedule="linear"), "lr_schedule"),
        (dict(steps=5, batch_size=0), "batch_size"),
        (dict(steps=5, lr=0.0), "lr"),
        (dict(steps=5, lr=float("nan")), "lr"),
        (dict(steps=5, ema_decay=1.0), "ema_decay"),
        (dict(steps=5, ema_decay=-0.1), "ema_decay"),
        (dict(steps=5, weight_decay=-1.0), "weight_decay"),
        (dict(steps=5, grad_clip=0.0), "grad_clip"),
        (dict(steps=5, warmup_steps=-1), "warmup_steps"),
        (dict(steps=5, checkpoint_every=0), "checkpoint_every"),
        (dict(steps=5, checkpoint_every=2), "checkpoint_every=2 needs a checkpoint_path"),
    ],
)
def test_argument_validation(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        train(make_model(), regression_loss, make_data(), progress=False, **kwargs)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(steps=2.5), "steps"),
        (dict(steps="3"), "steps"),
        (dict(steps=5, batch_size=8.0), "batch_size"),
        (dict(steps=5, lr="0.1"), "lr"),
        (dict(steps=5, amp=1), "amp"),
        (dict(steps=5, generator=42), "generator"),
        (dict(steps=5, bogus=1), "bogus"),
        (dict(batch_size=8), "steps"),
    ],
)
def test_wrong_types_are_type_errors(kwargs: dict[str, Any], name: str) -> None:
    """7 wrong kinds of value and one unknown option: a TypeError naming it, before any step."""
    with pytest.raises(TypeError, match=name):
        train(make_model(), regression_loss, make_data(), progress=False, **kwargs)


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="data"):
        train(make_model(), regression_loss, "moons", steps=2, progress=False)
    with pytest.raises(TypeError, match="scalar tensor"):
        train(make_model(), lambda m, b, g: 1.0, make_data(), steps=1, progress=False)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="loss_fn"):
        train(make_model(), "mse", make_data(), steps=1, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        train("model", regression_loss, make_data(), steps=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clipping_inside_the_fused_step_equals_clip_grad_norm(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    """With a fused AdamW the loop clips through the optimizer's grad_scale; without one it calls
    clip_grad_norm_. A small grad_clip makes clipping act at every step; both must agree, for
    float32 and float64 weights (the float32 grad_scale takes a float64 norm)."""
    from minidiff.training import optim

    kw = {**KW, "grad_clip": 0.05}
    if not optim.fused_supported(list(make_model().to(dtype).parameters())):
        pytest.skip("this torch has no fused AdamW for the CPU: nothing to compare")
    made: list[optim.ClippedAdamW] = []
    real_init = optim.ClippedAdamW.__init__

    def recording(self: optim.ClippedAdamW, *a: Any, **k: Any) -> None:
        real_init(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(optim.ClippedAdamW, "__init__", recording)
    torch.manual_seed(0)
    fused = train(make_model().to(dtype), regression_loss, make_data().to(dtype), steps=8, **kw)
    monkeypatch.setattr(optim, "fused_supported", lambda params: False)
    torch.manual_seed(0)
    plain = train(make_model().to(dtype), regression_loss, make_data().to(dtype), steps=8, **kw)
    assert [m.fused for m in made] == [True, False]
    for (name, a), b in zip(
        fused.model.state_dict().items(), plain.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert fused.losses == pytest.approx(plain.losses, rel=1e-5)
    # the comparison is not vacuous: clipping changed the run
    torch.manual_seed(0)
    unclipped = train(
        make_model().to(dtype),
        regression_loss,
        make_data().to(dtype),
        steps=8,
        **{**KW, "grad_clip": None},
    )
    assert (
        max(
            (a - b).abs().max().item()
            for a, b in zip(
                unclipped.model.state_dict().values(),
                fused.model.state_dict().values(),
                strict=True,
            )
        )
        > 1e-3
    )


def test_ema_names_a_model_it_does_not_average() -> None:
    from minidiff.nn import TimeMLP

    ema = EMA(TimeMLP(2, 8, 1, 8))
    for method in (ema.update, ema.copy_to):
        with pytest.raises(ValueError, match="model is not the model this EMA averages"):
            method(TimeMLP(2, 16, 1, 8))
        with pytest.raises(ValueError, match="it lacks"):
            method(nn.Linear(2, 2))
        with pytest.raises(TypeError, match="model must be a torch.nn.Module, got NoneType"):
            method(None)  # type: ignore[arg-type]


def test_a_custom_loop_takes_plain_data_and_names_what_is_wrong() -> None:
    from minidiff.training import TrainConfig, TrainState, train_steps

    model, data = nn.Linear(2, 2), torch.randn(64, 2)
    state = TrainState(model, TrainConfig(steps=3, batch_size=8, progress=False), data)
    done = list(train_steps(state, lambda m, x, g: (m(x) - x).pow(2).mean()))
    assert done == [1, 2, 3]
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        TrainState(model, {"steps": 3}, data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        list(train_steps(TrainState(model, TrainConfig(steps=1), data), None))  # type: ignore[arg-type]


def test_train_toy_reads_the_dimension_of_a_callable() -> None:
    from minidiff.training import train_toy

    result = train_toy(lambda n, g: torch.randn(n, 3, generator=g), steps=2, progress=False)
    x = torch.randn(5, 3)
    assert result.ema.model(x, torch.full((5,), 10)).shape == (5, 3)


class _CountingLoss:
    """A loss_fn that keeps a state between steps (how often it was called)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model: nn.Module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        self.calls += 1
        return regression_loss(model, batch, g)

    def state_dict(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])


class _SavesOnly(_CountingLoss):
    load_state_dict = None  # type: ignore[assignment]


class _LoadsOnly(_CountingLoss):
    state_dict = None  # type: ignore[assignment]


class _Unsavable(_CountingLoss):
    def state_dict(self) -> dict[str, Any]:
        return {"calls": np.int64(self.calls)}


def test_a_loss_fn_with_half_a_state_is_refused_naming_what_it_lacks() -> None:
    for loss, has, lacks in [
        (_SavesOnly(), "state_dict", "load_state_dict"),
        (_LoadsOnly(), "load_state_dict", "state_dict"),
    ]:
        with pytest.raises(TypeError, match=rf"loss_fn \(.*\) has {has}\(\) but no {lacks}\(\)"):
            train(make_model(), loss, make_data(), steps=2, **KW)
        assert loss.calls == 0


def test_a_loss_state_a_checkpoint_cannot_hold_is_refused_before_the_first_step(
    tmp_path: Path,
) -> None:
    loss = _Unsavable()
    with pytest.raises(TypeError, match=r"loss_fn.state_dict\(\)\['calls'\] is a int64"):
        train(make_model(), loss, make_data(), steps=3, checkpoint_path=tmp_path / "c.pt", **KW)
    assert loss.calls == 0 and not (tmp_path / "c.pt").exists()


def test_kernel_support_follows_torch_and_survives_a_torch_without_its_private_helper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Which devices have fused/foreach AdamW is torch's private list, looked up when asked (not
    bound at import: a torch without it still imports minidiff); without it, only CUDA."""
    from torch.utils import _foreach_utils

    from minidiff.training import optim

    cpu = [torch.zeros(2, requires_grad=True)]
    monkeypatch.setattr(_foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cpu"])
    assert optim.fused_supported(cpu)
    monkeypatch.delattr(_foreach_utils, "_get_fused_kernels_supported_devices")
    monkeypatch.delattr(_foreach_utils, "_get_foreach_kernels_supported_devices")
    assert not optim.fused_supported(cpu)
    assert not optim._foreach_supported(cpu)
