"""minidiff.tensors: the small helpers every module shares (one home each)."""

from __future__ import annotations

import torch

from minidiff.tensors import (
    mean_data_dims,
    noise_like,
    pad_like,
    pairwise_sq_dists,
    standard_normal,
    sum_data_dims,
    uniform,
)


def test_pad_like_scales_each_sample_by_its_own_value() -> None:
    x = torch.ones(3, 2, 4, 4, dtype=torch.float64)
    v = torch.tensor([1.0, 2.0, 3.0])  # float32: takes x's dtype
    out = pad_like(v, x) * x
    assert pad_like(v, x).shape == (3, 1, 1, 1) and out.dtype == torch.float64
    assert torch.equal(out.flatten(1).mean(1), v.double())
    assert pad_like(torch.tensor(2.0), x).shape == ()  # a scalar stays a scalar


def test_draws_come_from_the_generator_and_land_on_the_device() -> None:
    a = standard_normal((5, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    b = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(a, b)
    x = torch.zeros(4, 3, dtype=torch.float64)
    z = noise_like(x, torch.Generator().manual_seed(1))
    assert z.shape == x.shape and z.dtype == x.dtype and z.device == x.device
    u = uniform((1000,), generator=torch.Generator().manual_seed(2), device="cpu")
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.05


def test_data_dim_reductions_and_pairwise_distances() -> None:
    x = torch.arange(24.0).reshape(2, 3, 4)
    assert torch.equal(sum_data_dims(x), x.flatten(1).sum(1))
    assert torch.equal(mean_data_dims(x), x.flatten(1).mean(1))
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)
    b = torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pairwise_sq_dists(a, b), torch.cdist(a, b) ** 2)
    assert float(pairwise_sq_dists(a, a).diagonal().abs().max()) < 1e-12
