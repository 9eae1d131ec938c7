"""Data: 2D toys and the exact Gaussian-mixture oracle (images come in later chapters)."""

from .gmm import GaussianMixture
from .labelled import LABELLED_TOYS, LabelledGaussianMixture, check_labels, labelled_toy
from .toys import TOY_DATASETS, toy_dataset

__all__ = [
    "GaussianMixture",
    "TOY_DATASETS",
    "toy_dataset",
    "LabelledGaussianMixture",
    "labelled_toy",
    "LABELLED_TOYS",
    "check_labels",
]
