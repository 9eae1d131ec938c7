"""Real images that ship inside installed packages, so that every chapter runs offline.

- :func:`load_digits`: scikit-learn's 1,797 labelled 8x8 handwritten digits (UCI optdigits),
  optionally upsampled to 16x16 or 32x32.
- :func:`sample_photos`: scikit-learn's two bundled colour photographs (``china.jpg`` and
  ``flower.jpg``, 427x640; decoding them needs Pillow, which matplotlib already requires).
- :func:`image_patches`: random square crops of those photographs (natural-image statistics:
  a power-law spectrum) as a small data set of real pictures.

Every function returns float32 tensors in ``[-1, 1]`` of shape ``(B, C, H, W)`` (the course's
image contract). scikit-image's bundled pictures were left out on purpose: its wheel ships about
thirty (astronaut, camera, coffee, ...), but it would add scikit-image with scipy, networkx,
imageio and tifffile to the dependencies for images that two photographs already stand in for.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .._memory import check_allocation
from .._validation import Check, Flag, Int, Number, Rng, check_positive_int, checked

__all__ = ["load_digits", "sample_photos", "image_patches", "to_unit_range", "PHOTO_NAMES"]

PHOTO_NAMES: tuple[str, ...] = ("china", "flower")
_DIGIT_SIZES = (8, 16, 32)


@checked(max_value=Number(low=0.0))
def to_unit_range(images: np.ndarray | torch.Tensor, max_value: float) -> torch.Tensor:
    """Map pixel values in ``[0, max_value]`` to float32 in ``[-1, 1]``: ``2 x / max_value - 1``."""
    if not isinstance(images, (np.ndarray, torch.Tensor)) or images.dtype == bool:
        raise TypeError(
            f"images must be a numpy array or a tensor of pixel values, got {type(images).__name__}"
        )
    x = torch.from_numpy(np.array(images, dtype=np.float32))  # a copy: the sources are read-only
    return x * (2.0 / float(max_value)) - 1.0


def load_digits(
    size: int = 8, *, classes: tuple[int, ...] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's handwritten digits as images in ``[-1, 1]``.

    Args:
        size: 8 (the original resolution), 16 or 32 (bilinear upsampling of the 8x8 images).
        classes: keep only these digit labels (e.g. ``(0, 1)``); all ten by default.

    Returns:
        ``images``: float32 ``(N, 1, size, size)`` in ``[-1, 1]`` (-1 = background), and
        ``labels``: long ``(N,)`` in ``0..9``; ``N = 1797`` for all classes.
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int (one of {_DIGIT_SIZES}), got {type(size).__name__}")
    if size not in _DIGIT_SIZES:
        raise ValueError(f"size must be one of {_DIGIT_SIZES}, got {size}")
    images, labels = _digits_arrays()
    x = to_unit_range(images, 16.0).unsqueeze(1)  # the raw pixels are integers 0..16
    y = torch.as_tensor(labels, dtype=torch.long)
    if classes is not None:
        if not isinstance(classes, (tuple, list)):
            raise TypeError(
                f"classes must be a tuple of digits such as (0, 1), got {type(classes).__name__} "
                f"{classes!r}"
            )
        wanted = tuple(classes)
        if not wanted or any(
            isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 9 for c in wanted
        ):
            raise ValueError(
                f"classes must be a non-empty tuple of digits in 0..9, got {classes!r}"
            )
        keep = torch.isin(y, torch.tensor(wanted, dtype=torch.long))
        x, y = x[keep], y[keep]
    if size != 8:
        # Bilinear interpolation is a convex combination of pixels, so the range stays [-1, 1].
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(), y


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def _photo_arrays() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    by_name = {}
    for name, img in zip(bunch.filenames, bunch.images, strict=True):
        stem = str(name).replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
        by_name[stem] = img
    return tuple(by_name[n] for n in PHOTO_NAMES)


def _check_downscale(downscale: object) -> int:
    return check_positive_int(downscale, "downscale")


def sample_photos(downscale: int = 1) -> torch.Tensor:
    """scikit-learn's two sample photographs (:data:`PHOTO_NAMES`) as one batch in ``[-1, 1]``.

    ``downscale`` > 1 averages ``downscale x downscale`` blocks of pixels first (a box filter,
    then subsampling). Returns float32 ``(2, 3, 427 // downscale, 640 // downscale)``.
    """
    d = _check_downscale(downscale)
    if d > 64:
        raise ValueError(f"downscale must be <= 64 for the 427x640 photographs, got {d}")
    x = torch.stack([to_unit_range(img, 255.0).permute(2, 0, 1) for img in _photo_arrays()])
    if d > 1:
        x = F.avg_pool2d(x, kernel_size=d, stride=d)
    return x.contiguous()


def _check_columns(value: object, name: str) -> tuple[float, float]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
    ):
        raise TypeError(
            f"{name} must be a pair of fractions (lo, hi) such as (0.0, 0.75), got {value!r}"
        )
    lo, hi = float(value[0]), float(value[1])
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(
            f"{name} must satisfy 0 <= lo < hi <= 1 (fractions of the width), got {value!r}"
        )
    return lo, hi


@checked(
    size=Int(minimum=2),
    n=Int(),
    downscale=Int(),
    grayscale=Flag,
    columns=Check(_check_columns),
    generator=Rng,
)
def image_patches(
    size: int = 32,
    n: int = 256,
    *,
    downscale: int = 2,
    grayscale: bool = False,
    columns: tuple[float, float] = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random ``size x size`` crops of the sample photographs, a small set of natural images.

    Each patch picks one of the two photographs with equal probability and a uniformly random
    position inside it (after ``downscale``, see :func:`sample_photos`; the default 2 gives each
    32x32 patch more structure than a crop at full resolution).

    Args:
        size: side of the square patches in pixels (e.g. 32 or 64).
        n: number of patches.
        downscale: block-average factor applied to the photographs before cropping.
        grayscale: return one channel (the mean of R, G, B) instead of three.
        columns: the patches lie inside this band ``(lo, hi)`` of each photograph's width, as
            fractions; disjoint bands give held-out patches, e.g. ``(0.0, 0.75)`` to train on and
            ``(0.75, 1.0)`` to test on.
        generator: fixes the positions.

    Returns:
        float32 ``(n, 3, size, size)`` (or ``(n, 1, size, size)``) in ``[-1, 1]``.
    """
    photos = sample_photos(downscale)
    _, C, H, W = photos.shape
    if size > H:
        raise ValueError(
            f"size must be <= {H} (the photographs are {H}x{W} pixels after "
            f"downscale={downscale}), got {size}"
        )
    first, last = round(columns[0] * W), round(columns[1] * W)  # the band's columns first..last-1
    if size > last - first:
        raise ValueError(
            f"columns={columns} leaves a band {last - first} pixels wide (of {W}), narrower than "
            f"size={size}"
        )
    # the float32 patches and the int64 indices of their gather
    check_allocation(n * C * size * size * (4 + 8), f"n={n} with size={size}", "the patches")
    which = torch.randint(0, photos.shape[0], (n,), generator=generator)
    top = torch.randint(0, H - size + 1, (n,), generator=generator)
    left = torch.randint(first, last - size + 1, (n,), generator=generator)
    # Gather all crops at once: row and column indices of every pixel of every patch.
    ar = torch.arange(size)
    rows = (top[:, None] + ar)[:, None, :, None]  # (n, 1, size, 1)
    cols = (left[:, None] + ar)[:, None, None, :]  # (n, 1, 1, size)
    chans = torch.arange(photos.shape[1])[None, :, None, None]  # (1, C, 1, 1)
    patches = photos[which[:, None, None, None], chans, rows, cols]
    if grayscale:
        patches = patches.mean(dim=1, keepdim=True)
    return patches.contiguous()
