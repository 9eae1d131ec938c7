"""Exercises 1-8 answered as a student would: wrong answers that a checker must name, each
called exactly as the exercise notebook calls its checker."""

from __future__ import annotations

import math
from typing import Any

import torch

from minidiff.checks import ch01, ch03, ch04, ch08


def test_prior_kl_with_the_log_of_the_std_is_named() -> None:
    """½ (σ² + μ² − 1 − log σ) takes the log of the standard deviation: a constant offset, which
    is not the −1 (the earlier message sent the student to the −1)."""

    def prior_kl(x0: torch.Tensor, alpha_bar_T: float) -> torch.Tensor:
        var = 1 - alpha_bar_T
        mean = math.sqrt(alpha_bar_T) * x0
        return (0.5 * (var + mean**2 - 1) - 0.5 * math.log(math.sqrt(var))).sum(dim=1)

    res = ch01.check_prior_kl(prior_kl, display=False)
    assert not res.passed
    assert "log σ" in res.message and "standard deviation" in res.message
    assert "−1 inside" not in res.message


def test_prior_kl_without_the_minus_one_is_named() -> None:
    def prior_kl(x0: torch.Tensor, alpha_bar_T: float) -> torch.Tensor:
        var = 1 - alpha_bar_T
        mean = math.sqrt(alpha_bar_T) * x0
        return (0.5 * (var + mean**2 - math.log(var))).sum(dim=1)

    res = ch01.check_prior_kl(prior_kl, display=False)
    assert not res.passed and "−1 inside the bracket is missing" in res.message


def test_math_log_on_a_tensor_gets_a_hint_to_use_torch() -> None:
    """math.log(tensor) of many elements raises "only one element tensors can be converted";
    the feedback says to use torch.log."""

    def gaussian_kl(mean1: Any, var1: Any, mean2: Any, var2: Any) -> Any:
        return 0.5 * (math.log(var2 / var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)

    res = ch03.check_gaussian_kl(gaussian_kl, display=False)
    assert not res.passed
    assert "ValueError" in res.message and "torch.log" in res.message


def _ancestral_step(
    x_t: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    betas: torch.Tensor,
    alpha_bar: torch.Tensor,
    variance: str,
    z: torch.Tensor,
) -> torch.Tensor:
    beta = betas[t].to(x_t.dtype)[:, None]
    ab = alpha_bar[t].to(x_t.dtype)[:, None]
    ab_prev = alpha_bar[t - 1].to(x_t.dtype)[:, None]
    mean = (x_t - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
    var = beta if variance == "beta" else (1 - ab_prev) / (1 - ab) * beta
    return mean + (t > 1).to(x_t.dtype)[:, None] * var.sqrt() * z


def test_sample_loop_that_runs_down_to_t0_is_named() -> None:
    """range(T, -1, -1) takes one step too many, at t = 0, where 1 − ᾱ_0 = 0 gives NaN: the
    feedback names the loop's timesteps, not only the NaN."""

    def sample(
        eps_model: Any,
        betas: torch.Tensor,
        alpha_bar: torch.Tensor,
        shape: tuple[int, ...],
        variance: str,
        generator: torch.Generator,
    ) -> torch.Tensor:
        T = betas.shape[0] - 1
        x = torch.randn(shape, generator=generator)
        with torch.no_grad():
            for step in range(T, -1, -1):
                t = torch.full((shape[0],), step, dtype=torch.long)
                z = torch.randn(shape, generator=generator)
                x = _ancestral_step(x, t, eps_model(x, t), betas, alpha_bar, variance, z)
        return x

    res = ch04.check_sample(sample, display=False)
    assert not res.passed
    assert "[1, 0]" in res.message and "range(T, 0, -1)" in res.message


def test_ddim_sigma_that_ignores_eta_is_named() -> None:
    """σ_t without its factor η was described as "a factor that changes from input to input
    ... a sum where a mean belongs"; it is named as the missing η."""

    def ddim_sigma(
        t: torch.Tensor, t_prev: torch.Tensor, alpha_bar: torch.Tensor, eta: float
    ) -> torch.Tensor:
        ab_t, ab_prev = alpha_bar[t], alpha_bar[t_prev]
        return ((1 - ab_prev) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_prev).sqrt()

    res = ch08.check_ddim_sigma(ddim_sigma, display=False)
    assert not res.passed
    assert "without the factor η" in res.message and "sum where a mean" not in res.message
