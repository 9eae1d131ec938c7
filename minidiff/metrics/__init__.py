"""Measures of sample quality, one module per family.

- :mod:`minidiff.metrics.distances`: MMD, sliced Wasserstein, energy distance, and the data floor
  (the distance between two independent samples of the data) with its spread.
- :mod:`minidiff.metrics.precision_recall`: k-NN precision (fidelity) and recall (diversity)
  against the data's own floor, and mode coverage with per-mode widths for Gaussian mixtures.
- :mod:`minidiff.metrics.fid`: FID and KID on features (Inception-v3 features from torch-fidelity,
  an optional extra, with local weights).
"""

from . import distances
from .distances import *  # noqa: F403 - every name in distances.__all__, re-exported below
from .fid import KID, fid_from_features, frechet_distance, inception_features, kid_from_features
from .precision_recall import (
    ModeCoverage,
    PrecisionRecall,
    PrecisionRecallFloor,
    knn_precision_recall,
    knn_radii,
    mode_coverage,
    precision_recall_with_floor,
)

__all__ = [
    "fid_from_features",
    "frechet_distance",
    "kid_from_features",
    "KID",
    "inception_features",
    *distances.__all__,
    "knn_precision_recall",
    "knn_radii",
    "precision_recall_with_floor",
    "mode_coverage",
    "PrecisionRecall",
    "PrecisionRecallFloor",
    "ModeCoverage",
]
