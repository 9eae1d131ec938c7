"""Exercise 13 checkers: behaviour beyond what tests/checks/test_checkers.py checks for every
chapter."""

from __future__ import annotations

import numpy as np

from minidiff.checks import ch13


def test_the_population_std_is_a_right_scale_factor() -> None:
    """``numpy.std`` and ``torch.std(unbiased=False)`` divide by N, ``torch.std`` by N - 1: on
    latents of realistic size both are the scale factor."""
    answers = {
        "torch.std": lambda z: 1.0 / z.std().item(),
        "unbiased=False": lambda z: 1.0 / z.std(unbiased=False).item(),
        "numpy": lambda z: float(1.0 / np.std(z.numpy())),
    }
    for name, answer in answers.items():
        res = ch13.check_latent_scale_factor(answer, display=False)
        assert res.passed, (name, res.message)


def test_scale_factor_slips_are_named() -> None:
    slips = {
        "root_mean_square": lambda z: 1.0 / z.pow(2).mean().sqrt().item(),
        "per_channel_first": lambda z: (1.0 / z.std(dim=(0, 2, 3))).mean().item(),
    }
    for mistake, answer in slips.items():
        res = ch13.check_latent_scale_factor(answer, display=False)
        assert not res.passed and res.mistake == mistake, (mistake, res.message)
