"""Tests for minidiff.nn: sinusoidal embedding and the time-conditioned MLP."""

import math
from collections.abc import Callable

import pytest
import torch

from minidiff.nn import NoiseConditionalScoreMLP, TimeMLP, sinusoidal_embedding


def test_embedding_matches_formula() -> None:
    t = torch.tensor([0, 1, 7, 999])
    dim, max_period = 8, 10_000.0
    emb = sinusoidal_embedding(t, dim, max_period)
    assert emb.shape == (4, dim) and emb.dtype == torch.get_default_dtype()
    half = dim // 2
    for i, ti in enumerate(t.tolist()):
        for k in range(half):
            w = max_period ** (-k / half)
            assert emb[i, k].item() == pytest.approx(math.cos(ti * w), abs=1e-6)
            assert emb[i, half + k].item() == pytest.approx(math.sin(ti * w), abs=1e-6)


def test_embedding_odd_dim_float_input_and_distinct_timesteps() -> None:
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    emb = sinusoidal_embedding(t, 7)
    assert emb.shape == (5, 7) and emb.dtype == torch.float64
    assert torch.all(emb[:, -1] == 0)
    steps = sinusoidal_embedding(torch.arange(1, 1001), 64)
    # Every integer timestep gets its own code (no two rows closer than a small margin).
    d = torch.cdist(steps, steps) + torch.eye(1000) * 1e9
    assert d.min() > 1e-2


@pytest.mark.parametrize(
    "t, dim, max_period, exc",
    [
        (torch.zeros(3, 1), 4, 1e4, ValueError),
        ([1, 2], 4, 1e4, TypeError),
        (torch.zeros(3), 0, 1e4, ValueError),
        (torch.zeros(3), 4, -1.0, ValueError),
        (torch.tensor([float("nan")]), 4, 1e4, ValueError),
        (torch.tensor([True]), 4, 1e4, TypeError),
    ],
)
def test_embedding_errors(t: object, dim: int, max_period: float, exc: type) -> None:
    with pytest.raises(exc):
        sinusoidal_embedding(t, dim, max_period)  # type: ignore[arg-type]


def test_time_mlp_shapes_and_time_dependence() -> None:
    torch.manual_seed(0)
    model = TimeMLP(data_dim=3, hidden=32, n_layers=2, time_dim=16)
    x = torch.randn(5, 3)
    t = torch.tensor([1, 2, 3, 4, 5])
    out = model(x, t)
    assert out.shape == (5, 3)
    # Zero-initialised output layer: the untrained model predicts eps = 0.
    assert torch.all(out == 0)
    # After perturbing all weights the output depends on t (the conditioning is wired in).
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    a = model(x, torch.full((5,), 10))
    b = model(x, torch.full((5,), 500))
    assert not torch.allclose(a, b)
    # Row i depends only on (x_i, t_i): the unique-timestep shortcut must not mix rows.
    mixed = model(x, t)
    for i in range(5):
        single = model(x[i : i + 1], t[i : i + 1])
        assert torch.allclose(mixed[i], single[0], atol=1e-6)
    # Float timesteps and time_scale work too.
    cont = TimeMLP(data_dim=3, hidden=32, n_layers=2, time_scale=1000.0, layer_norm=False)
    assert cont(x, torch.rand(5)).shape == (5, 3)


def test_time_mlp_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = TimeMLP(hidden=16, n_layers=2, time_dim=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, t = torch.randn(64, 2), torch.randint(1, 100, (64,))
    for _ in range(2):  # the first step only moves the zero-initialised output layer
        opt.zero_grad()
        ((model(x, t) - x) ** 2).mean().backward()
        opt.step()
    opt.zero_grad()
    ((model(x, t) - x) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_time_mlp_errors() -> None:
    model = TimeMLP(hidden=16, n_layers=1, time_dim=8)
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(4), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(4, 3), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="t must have shape"):
        model(torch.randn(4, 2), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="t must have shape"):
        model(torch.randn(4, 2), torch.ones(4, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="t must be"):
        model(torch.randn(4, 2), 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden"):
        TimeMLP(hidden=0)
    with pytest.raises(ValueError, match="time_scale"):
        TimeMLP(time_scale=float("inf"))


@pytest.mark.parametrize(
    ("factory", "error", "message"),
    [
        (lambda: TimeMLP(layer_norm="False"), TypeError, "layer_norm must be True or False"),
        (lambda: TimeMLP(layer_norm=None), TypeError, "layer_norm must be True or False"),
        (
            lambda: NoiseConditionalScoreMLP(scale_by_sigma="False"),
            TypeError,
            "scale_by_sigma must be True or False",
        ),
        (lambda: NoiseConditionalScoreMLP(sigma_scale=-1.0), ValueError, "^sigma_scale"),
        (lambda: NoiseConditionalScoreMLP(sigma_scale="10"), TypeError, "^sigma_scale"),
        (lambda: NoiseConditionalScoreMLP(emb_dim=0), ValueError, "^emb_dim"),
        (lambda: NoiseConditionalScoreMLP(emb_dim=2.5), TypeError, "^emb_dim"),
        (lambda: NoiseConditionalScoreMLP(hidden=0), ValueError, "^hidden"),
        (lambda: NoiseConditionalScoreMLP(data_dim="2"), TypeError, "^data_dim"),
    ],
)
def test_mlp_constructors_refuse_bad_options_under_the_names_given(
    factory: Callable[[], object], error: type[Exception], message: str
) -> None:
    """A string is not read as a flag (bool("False") is True), and NoiseConditionalScoreMLP names
    its own arguments, not the TimeMLP ones it forwards them to (time_scale, time_dim)."""
    with pytest.raises(error, match=message):
        factory()


def test_flags_given_as_bools_still_work() -> None:
    assert isinstance(TimeMLP(hidden=8, n_layers=1, layer_norm=False).norms[0], torch.nn.Identity)
    assert NoiseConditionalScoreMLP(hidden=8, scale_by_sigma=False).scale_by_sigma is False


def test_time_mlp_training_path_equals_sampling_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training runs the time branch per row (no torch.unique); eval/no-grad deduplicates t.
    Both must give the same function."""
    torch.manual_seed(0)
    model = TimeMLP(hidden=32, n_layers=2, time_dim=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(64, 2)
    t = torch.randint(1, 6, (64,))  # repeated timesteps, so deduplication has work to do
    calls = {"unique": 0}
    real_unique = torch.unique

    def counting_unique(*args: object, **kwargs: object) -> object:
        calls["unique"] += 1
        return real_unique(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(torch, "unique", counting_unique)
    model.train()
    train_out = model(x, t)
    assert calls["unique"] == 0 and train_out.requires_grad
    model.eval()
    with torch.no_grad():
        eval_out = model(x, t)
    assert calls["unique"] == 1
    torch.testing.assert_close(train_out.detach(), eval_out, rtol=1e-5, atol=1e-6)


def test_time_mlp_input_encoding() -> None:
    """x_frequencies = K adds [sin(2^k pi x), cos(2^k pi x)]_{k<K} (NeRF) and keeps state dicts
    of the default model unchanged."""
    model = TimeMLP(hidden=16, n_layers=1, time_dim=8, x_frequencies=3)
    x = torch.tensor([[0.25, -0.5]])
    enc = model.encode_input(x)
    expected = [0.25, -0.5]
    angles = [math.pi * f * v for v in (0.25, -0.5) for f in (1, 2, 4)]
    expected += [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
    torch.testing.assert_close(enc, torch.tensor([expected]))
    assert model.input.in_features == 2 * (1 + 2 * 3)
    assert model(torch.randn(5, 2), torch.arange(1, 6)).shape == (5, 2)
    assert "x_freqs" not in model.state_dict()
    plain = TimeMLP(hidden=16, n_layers=1, time_dim=8)
    assert torch.equal(plain.encode_input(x), x)
    assert set(plain.state_dict()) == set(model.state_dict())
    for bad, error in ((-1, ValueError), (17, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="x_frequencies"):
            TimeMLP(x_frequencies=bad)  # type: ignore[arg-type]
