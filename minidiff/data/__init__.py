"""Data: 2D toys and the exact Gaussian-mixture oracle (images come in later chapters)."""

from .gmm import GaussianMixture
from .toys import TOY_DATASETS, toy_dataset

__all__ = ["GaussianMixture", "TOY_DATASETS", "toy_dataset"]
