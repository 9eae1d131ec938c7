"""Chapter 14: colorization (chroma given luma) and the conditional path it shares with SR."""

from __future__ import annotations

import itertools

import pytest
import torch

from minidiff import cosine_schedule
from minidiff.colorization import (
    chroma_in_gamut,
    colorize,
    rgb_to_ycbcr,
    train_colorizer,
    train_colour_regressor,
    ycbcr_to_rgb,
)
from minidiff.image_conditioning import to_grayscale
from minidiff.metrics.color import chroma_error, colourfulness
from minidiff.superres import conditional_sample, train_conditional, train_regression

SCHED = cosine_schedule(20)


def _rgb(b: int = 4, s: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_ycbcr_round_trip_and_range():
    x = _rgb()
    ycc = rgb_to_ycbcr(x)
    assert torch.allclose(ycc[:, :1], to_grayscale(x), atol=1e-6)  # the luma is the gray image
    assert torch.allclose(ycbcr_to_rgb(ycc[:, :1], ycc[:, 1:]), x, atol=1e-5)
    corners = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=3))).view(8, 3, 1, 1)
    extreme = rgb_to_ycbcr(corners)
    assert extreme.abs().max() <= 1 + 1e-6  # Y, Cb, Cr stay in [-1, 1] on the whole RGB cube
    assert torch.isclose(extreme[:, 1].max(), torch.tensor(1.0))  # ... and reach its ends
    assert torch.isclose(extreme[:, 2].min(), torch.tensor(-1.0))
    gray = ycbcr_to_rgb(ycc[:, :1], torch.zeros(4, 2, 8, 8))
    assert torch.allclose(gray, ycc[:, :1].expand(4, 3, 8, 8), atol=1e-6)  # no chroma = gray


def test_colour_measures():
    x = _rgb()
    gray = to_grayscale(x).expand(4, 3, 8, 8)
    assert torch.equal(chroma_error(x, x), torch.zeros(4, dtype=torch.float64))
    rms = rgb_to_ycbcr(x)[:, 1:].double().pow(2).sum(1).flatten(1).mean(1).sqrt()
    assert torch.allclose(chroma_error(gray, x), rms, atol=1e-6)
    assert torch.allclose(colourfulness(gray), torch.zeros(4, dtype=torch.float64), atol=1e-9)
    red = torch.full((1, 3, 4, 4), -1.0)
    red[:, 0] = 1.0  # rg = 255, yb = 127.5, no spread: M = 0.3 * sqrt(255² + 127.5²)
    assert colourfulness(red).item() == pytest.approx(0.3 * (255**2 + 127.5**2) ** 0.5)
    half = red.clone()
    half[..., :2] = -1.0  # half black: rg and yb each take two values, spread adds to offset
    rg, yb = torch.tensor([0.0, 255.0]), torch.tensor([0.0, 127.5])
    want = (rg.var(unbiased=False) + yb.var(unbiased=False)).sqrt() + 0.3 * (
        rg.mean() ** 2 + yb.mean() ** 2
    ).sqrt()
    assert colourfulness(half).item() == pytest.approx(want.item())


def test_colour_bad_inputs():
    with pytest.raises(ValueError, match="x must have 3 channels"):
        rgb_to_ycbcr(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="chroma must have 2 channels"):
        ycbcr_to_rgb(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="chroma must have luma's batch"):
        ycbcr_to_rgb(torch.zeros(1, 1, 4, 4), torch.zeros(2, 2, 4, 4))
    with pytest.raises(ValueError, match="x must hold RGB"):
        colourfulness(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="x"):
        colourfulness(torch.full((1, 3, 4, 4), 2.0))  # outside [-1, 1]
    with pytest.raises(ValueError, match="x_ref"):
        chroma_error(_rgb(2), _rgb(3))


def test_conditional_path_trains_and_samples_any_condition():
    x = _rgb(16)
    ycc = rgb_to_ycbcr(x)
    model = train_conditional(ycc[:, 1:], ycc[:, :1], SCHED, steps=2, batch_size=4)
    assert (model.config.in_channels, model.config.cond_channels) == (2, 1)
    out = conditional_sample(model, ycc[:4, :1], SCHED, steps=3, generator=torch.Generator())
    assert out.shape == (4, 2, 8, 8) and out.abs().max() <= 1 + 1e-6
    reg = train_regression(ycc[:, 1:], ycc[:, :1], steps=2, batch_size=4)
    with torch.no_grad():
        assert reg(ycc[:4, :1]).shape == (4, 2, 8, 8)
    with pytest.raises(ValueError, match="x_cond must pair with x"):
        train_conditional(ycc[:, 1:], ycc[:8, :1], SCHED, steps=1)
    with pytest.raises(ValueError, match="x_cond must pair with x"):
        train_regression(ycc[:, 1:], ycc[:, :1, :4, :4], steps=1)


def test_colorize_keeps_the_luma():
    x = _rgb(16, seed=1) * 0.5
    gray = to_grayscale(x)
    model = train_colorizer(x, SCHED, steps=2, batch_size=4, seed=1)
    out = colorize(model, gray[:4], SCHED, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 8, 8)
    inside = (out.abs() < 1).all(dim=1, keepdim=True)  # pixels the clamp did not touch
    assert inside.any()  # (an untrained model draws extreme chroma: most pixels leave the cube)
    assert torch.allclose((to_grayscale(out) - gray[:4])[inside], torch.tensor(0.0), atol=1e-5)
    regressor = train_colour_regressor(x, steps=2, batch_size=4)
    assert regressor.net.config.cond_channels == 1
    with pytest.raises(ValueError, match="gray must have 1 channel"):
        colorize(model, x[:4], SCHED, steps=3)


def test_colorize_refuses_a_gray_image_of_another_size_than_the_model_draws() -> None:
    model = train_colorizer(_rgb(8), SCHED, steps=1, batch_size=4)  # draws 8x8 chroma
    gray = to_grayscale(_rgb(2))
    with pytest.raises(
        ValueError, match=r"gray must have shape \(B, 1, 8, 8\).*got \(2, 1, 4, 4\)"
    ):
        colorize(model, gray[..., ::2, ::2], SCHED, steps=3)


def test_colorize_and_chroma_in_gamut_name_gray_outside_the_unit_range() -> None:
    model = train_colorizer(_rgb(8), SCHED, steps=1, batch_size=4)
    gray = to_grayscale(_rgb(2))
    with pytest.raises(ValueError, match=r"^gray must lie in \[-1, 1\]"):
        colorize(model, gray * 3, SCHED, steps=3)
    with pytest.raises(ValueError, match=r"^gray must lie in \[-1, 1\]"):
        chroma_in_gamut(gray * 3)


def test_chroma_in_gamut_moves_x0_into_the_rgb_cube():
    gray = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    wild = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(3)) * 3
    c = chroma_in_gamut(gray)(wild)
    y = gray[:, 0]
    r, b = y + 1.402 * c[:, 1], y + 1.772 * c[:, 0]  # the inverse without its clamp
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    assert torch.stack([r, g, b]).abs().max() <= 1 + 1e-5
    inside = rgb_to_ycbcr(torch.rand(3, 3, 8, 8) * 1.8 - 0.9)  # already valid: left unchanged
    kept = chroma_in_gamut(inside[:, :1])(inside[:, 1:])
    torch.testing.assert_close(kept, inside[:, 1:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="gray must have 1 channel"):
        chroma_in_gamut(torch.zeros(1, 3, 4, 4))


def test_colorize_names_a_model_that_does_not_draw_chroma_from_luma() -> None:
    import torch

    from minidiff import cosine_schedule
    from minidiff.colorization import colorize
    from minidiff.nn.unet import UNet
    from minidiff.superres import small_unet_config

    gray = torch.rand(2, 1, 8, 8) * 2 - 1
    wrong = UNet(small_unet_config(8, 1, cond_channels=1))
    with pytest.raises(ValueError, match="in_channels=1, cond_channels=1"):
        colorize(wrong, gray, cosine_schedule(50), steps=3)
    # not a model with a .config at all: the wrong kind of object, a TypeError
    for bad in (None, "unet", lambda x, t, c: x):
        with pytest.raises(TypeError, match=r"^model must be an image-conditional ε-model"):
            colorize(bad, gray, cosine_schedule(50), steps=3)


def test_float64_images_train_a_float64_colorizer_that_samples_in_float64():
    x = _rgb().double()
    model = train_colorizer(x, SCHED, steps=2, progress=False)
    reg = train_colour_regressor(x, steps=2, progress=False)
    for m in (model, reg):
        assert {p.dtype for p in m.parameters()} == {torch.float64}
    with torch.no_grad():
        out = colorize(model, to_grayscale(x), SCHED, steps=3, generator=torch.Generator())
        assert out.dtype == torch.float64
        assert reg(to_grayscale(x)).dtype == torch.float64
    with pytest.raises(TypeError, match=r"^x must be a float32 or float64 tensor"):
        train_colorizer(x.half(), SCHED, steps=1, progress=False)
