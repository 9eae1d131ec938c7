"""Course-wide settings: fast mode and the default device."""

from __future__ import annotations

import os

import torch

__all__ = ["fast_mode", "default_device"]

_TRUE = {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """True when ``MINIDIFF_FAST`` is set to 1/true/yes/on.

    Notebooks shrink training and sample sizes under fast mode so that CI can execute every
    notebook in minutes; the results are then rougher but every check still runs.
    """
    return os.environ.get("MINIDIFF_FAST", "").strip().lower() in _TRUE


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu`` (override with ``MINIDIFF_DEVICE``)."""
    name = os.environ.get("MINIDIFF_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
