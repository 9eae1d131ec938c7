"""Measures of sample quality, one module per family.

- :mod:`minidiff.metrics.distances`: MMD, sliced Wasserstein, energy distance, and the data floor
  (the distance between two independent samples of the data) with its spread.
"""

from .distances import (
    METRICS,
    Spread,
    data_floor,
    distance_with_spread,
    energy_distance,
    median_bandwidth,
    mmd,
    sliced_wasserstein,
)

__all__ = [
    "mmd",
    "sliced_wasserstein",
    "energy_distance",
    "median_bandwidth",
    "Spread",
    "distance_with_spread",
    "data_floor",
    "METRICS",
]
