"""Offline image data: scikit-learn's digits and sample photographs follow the image contract."""

from __future__ import annotations

import pytest
import torch

from minidiff.data import PHOTO_NAMES, image_patches, load_digits, sample_photos


@pytest.mark.parametrize("size", [8, 16, 32])
def test_load_digits_contract(size: int) -> None:
    x, y = load_digits(size)
    assert x.shape == (1797, 1, size, size) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.long
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0  # background and full ink are hit
    assert set(y.tolist()) == set(range(10))


def test_load_digits_matches_sklearn_and_upsampling_keeps_the_mean() -> None:
    from sklearn.datasets import load_digits as sk

    raw = torch.as_tensor(sk().images, dtype=torch.float32)
    x8, _ = load_digits(8)
    torch.testing.assert_close(x8[:, 0], raw / 8.0 - 1.0)
    x32, _ = load_digits(32)
    # Bilinear 4x upsampling (half-pixel centres, edge clamping) keeps each image's mean to ~1%.
    torch.testing.assert_close(x32.mean(dim=(1, 2, 3)), x8.mean(dim=(1, 2, 3)), atol=0.03, rtol=0)


def test_load_digits_classes_and_bad_input() -> None:
    x, y = load_digits(8, classes=(0, 7))
    assert set(y.tolist()) == {0, 7} and x.shape[0] == int(((y == 0) | (y == 7)).sum())
    with pytest.raises(ValueError, match="size must be one of"):
        load_digits(12)
    with pytest.raises(TypeError, match="size"):
        load_digits(8.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="classes"):
        load_digits(8, classes=(10,))


def test_sample_photos_and_downscale_is_a_block_average() -> None:
    full = sample_photos()
    assert full.shape == (len(PHOTO_NAMES), 3, 427, 640) and full.dtype == torch.float32
    assert -1.0 <= float(full.min()) < -0.9 and 0.9 < float(full.max()) <= 1.0
    small = sample_photos(4)
    assert small.shape == (2, 3, 106, 160)
    torch.testing.assert_close(small[0, :, 0, 0], full[0, :, :4, :4].mean(dim=(1, 2)))
    with pytest.raises(ValueError, match="downscale"):
        sample_photos(0)


def test_image_patches_are_crops_of_the_photos() -> None:
    g = torch.Generator().manual_seed(0)
    p = image_patches(32, 64, generator=g)
    assert p.shape == (64, 3, 32, 32) and p.dtype == torch.float32
    assert float(p.min()) >= -1.0 and float(p.max()) <= 1.0
    again = image_patches(32, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(p, again)
    # every patch is the crop at the positions drawn in order (photo, top, left)
    photos = sample_photos(2)
    g2 = torch.Generator().manual_seed(0)
    which = torch.randint(0, 2, (64,), generator=g2)
    top = torch.randint(0, photos.shape[2] - 31, (64,), generator=g2)
    left = torch.randint(0, photos.shape[3] - 31, (64,), generator=g2)
    for i in range(0, 64, 7):
        a, b, c = int(which[i]), int(top[i]), int(left[i])
        torch.testing.assert_close(p[i], photos[a, :, b : b + 32, c : c + 32], rtol=0, atol=0)
    # patches differ from one another (positions are random)
    assert float((p[0] - p[1]).abs().max()) > 0.1
    gray = image_patches(64, 3, grayscale=True, downscale=1, generator=g)
    assert gray.shape == (3, 1, 64, 64)


def test_image_patches_bad_input() -> None:
    with pytest.raises(ValueError, match="size must be <="):
        image_patches(300)
    with pytest.raises(ValueError, match="n must be >= 1"):
        image_patches(32, 0)
    with pytest.raises(TypeError, match="size"):
        image_patches(32.0)  # type: ignore[arg-type]
