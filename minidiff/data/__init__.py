"""Data: 2D toys, the exact Gaussian-mixture oracle, and real images.

- :mod:`minidiff.data.toys`, :mod:`minidiff.data.gmm`: 2D toy sets (also with labels, for
  guidance) and ``GaussianMixture``.
- :mod:`minidiff.data.labelled`: ``LabelledGaussianMixture``, the exact oracle of guidance.
- :mod:`minidiff.data.images`: images that ship with scikit-learn (offline): ``load_digits``,
  ``sample_photos``, ``image_patches``, and ``to_unit_range`` (pixels to ``[-1, 1]``).
- :mod:`minidiff.data.cifar10`: ``load_cifar10`` (download with MD5 check into a cache directory,
  or an extracted folder); ``load_cifar10_or_fallback`` says why when it trains on other data.
"""

from .cifar10 import (
    CIFAR10_CLASSES,
    CorruptDatasetError,
    download_cifar10,
    load_cifar10,
    load_cifar10_or_fallback,
)
from .gmm import GaussianMixture
from .images import PHOTO_NAMES, image_patches, load_digits, sample_photos, to_unit_range
from .labelled import LabelledGaussianMixture
from .toys import LABELLED_TOYS, TOY_DATASETS, labelled_toy, toy_dataset

__all__ = [
    "CIFAR10_CLASSES",
    "CorruptDatasetError",
    "download_cifar10",
    "GaussianMixture",
    "image_patches",
    "load_cifar10",
    "load_cifar10_or_fallback",
    "load_digits",
    "PHOTO_NAMES",
    "sample_photos",
    "to_unit_range",
    "TOY_DATASETS",
    "toy_dataset",
    "LabelledGaussianMixture",
    "labelled_toy",
    "LABELLED_TOYS",
]
