"""Chapter 14: SR on photo patches — held-out patches, back-projection, training on crops."""

from __future__ import annotations

import pytest
import torch

from minidiff import cosine_schedule
from minidiff.back_projection import low_resolution_projection, project_to_measurement
from minidiff.data.images import image_patches, sample_photos
from minidiff.image_conditioning import downsample, upsample
from minidiff.nn import UNet
from minidiff.superres import Regressor, at_image_size, conditional_sample, small_unet_config


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_projection_is_the_nearest_image_with_the_measured_averages():
    x0 = torch.randn(3, 2, 8, 8, generator=_g(1), dtype=torch.float64)
    y = torch.rand(3, 2, 4, 4, generator=_g(2), dtype=torch.float64) * 2 - 1
    p = project_to_measurement(x0, y)
    torch.testing.assert_close(downsample(p, 2), y)  # D D⁺ = I: the measurement holds
    torch.testing.assert_close(project_to_measurement(p, y), p)  # a projection: idempotent
    # any other image with the same averages is p plus a null-space image n (D n = 0) ...
    n = torch.randn(3, 2, 8, 8, generator=_g(3), dtype=torch.float64)
    n = n - upsample(downsample(n, 2), 8, "nearest")
    torch.testing.assert_close(downsample(n, 2), torch.zeros_like(y), atol=1e-12, rtol=0)
    # ... and x0 - p is orthogonal to every such n, so p is the nearest (Pythagoras)
    assert abs(float(((x0 - p) * n).sum())) < 1e-9
    assert float(((p + n - x0) ** 2).sum()) > float(((p - x0) ** 2).sum())
    with pytest.raises(ValueError, match=r"x0 must have shape \(3, 2, 12, 12\)"):
        project_to_measurement(x0, y, 3)


def test_sampling_with_the_projection_keeps_the_low_resolution_image():
    torch.manual_seed(0)
    model = UNet(small_unet_config(8, 3, cond_channels=3))  # untrained: the map does the work
    y = torch.rand(4, 3, 4, 4, generator=_g(4)) * 1.6 - 0.8  # away from ±1: no clamp at the end
    sched = cosine_schedule(20)
    out = conditional_sample(
        model, upsample(y, 8), sched, steps=4, clip_x0=low_resolution_projection(y), generator=_g()
    )
    torch.testing.assert_close(downsample(out, 2), y, atol=1e-5, rtol=0)
    plain = conditional_sample(model, upsample(y, 8), sched, steps=4, generator=_g())
    assert float((downsample(plain, 2) - y).abs().max()) > 0.1  # without it, nothing holds y


def test_at_image_size_runs_the_same_weights_on_larger_images():
    torch.manual_seed(0)
    small = UNet(small_unet_config(8, 1, cond_channels=1)).eval()
    big = at_image_size(small, 16)
    assert big.config.image_size == 16 and not big.training
    x, c, t = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16), torch.tensor([3, 9])
    with torch.no_grad():
        torch.testing.assert_close(
            at_image_size(big, 8)(x[..., :8, :8], t, x_cond=c[..., :8, :8]),
            small(x[..., :8, :8], t, x_cond=c[..., :8, :8]),
        )
        assert big(x, t, x_cond=c).shape == (2, 1, 16, 16)
    reg = Regressor(small_unet_config(8, 2, cond_channels=1)).eval()
    reg32 = at_image_size(reg, 16)  # a module holding a UNet as .net: a copy with a new .net
    assert reg32.net.config.image_size == 16 and reg.net.config.image_size == 8
    with torch.no_grad():
        assert reg32(torch.zeros(1, 1, 16, 16)).shape == (1, 2, 16, 16)
    with pytest.raises(TypeError, match="model must be a minidiff UNet"):
        at_image_size(torch.nn.Linear(2, 2), 16)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size must be divisible"):
        at_image_size(small, 9)


def test_image_patches_from_a_band_of_columns():
    photos = sample_photos(2)
    W = photos.shape[-1]
    first = round(0.75 * W)
    # a band exactly one patch wide: every patch starts at the band's first column
    p = image_patches(8, 6, columns=(0.75, (first + 8) / W), generator=_g(5))
    for patch in p:
        hits = [
            (a, top)
            for a in range(2)
            for top in range(photos.shape[2] - 7)
            if torch.equal(photos[a, :, top : top + 8, first : first + 8], patch)
        ]
        assert hits, "a patch is not the crop at the band's first column"
    train = image_patches(16, 4, columns=(0.0, 0.75), generator=_g(6))
    assert train.shape == (4, 3, 16, 16)
    torch.testing.assert_close(
        image_patches(16, 4, columns=(0.0, 1.0), generator=_g(6)),
        image_patches(16, 4, generator=_g(6)),
    )
    with pytest.raises(ValueError, match="columns must satisfy 0 <= lo < hi <= 1"):
        image_patches(16, 4, columns=(0.5, 0.5))
    with pytest.raises(ValueError, match="narrower than size=32"):
        image_patches(32, 4, columns=(0.9, 0.95))
    with pytest.raises(TypeError, match="columns must be a pair"):
        image_patches(16, 4, columns=[0.0, 0.5])  # type: ignore[arg-type]
