"""Checkers for exercise 10 (frequency content).

- ``radial_psd(x: (B, C, H, H)) -> (B, H // 2 + 1)``: mean over channels and over each ring
  ``round(|k|) = r`` of ``|F x|²`` (unnormalised DFT, rings 0..H//2)
- ``noised_psd(psd0: (K,), alpha_bar: float, n_pixels: int) -> (K,)``: ``ᾱ P_0 + (1 - ᾱ) N``
- ``frequency_snr(psd0: (K,), alpha_bar: float, n_pixels: int) -> (K,)``: ``ᾱ P_0 / ((1 - ᾱ) N)``

Every result keeps the dtype of its input (``x`` or ``psd0``; the cases hold float64 and float32).
References come from :mod:`minidiff.frequency`; each :class:`Mistake` is a common wrong answer.
``SPECS`` lists, per checker, its cases, reference and mistakes (the tests iterate over it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..frequency import frequency_snr as _frequency_snr
from ..frequency import noised_psd as _noised_psd
from ..frequency import radial_counts
from ..frequency import radial_psd as _radial_psd
from ._core import Case, Checker, Mistake, Spec, specs_of
from ._probe import named_result

# --- radial_psd ----------------------------------------------------------------------------------


def _cases_psd() -> list[Case]:
    cases: list[Case] = []
    f64, f32 = torch.float64, torch.float32  # float32 images must give a float32 spectrum
    sizes = [(2, 3, 8, f64), (3, 1, 16, f64), (1, 3, 16, f64), (2, 3, 16, f32)]
    for i, (B, C, H, dtype) in enumerate(sizes):
        g = torch.Generator().manual_seed(100 + i)
        # a smooth image plus a little noise: a falling spectrum, like a photograph
        x = torch.randn(B, C, H, H, generator=g, dtype=torch.float64).cumsum(-1).cumsum(-2) / H
        x = x + 0.1 * torch.randn(B, C, H, H, generator=g, dtype=torch.float64) + 0.3
        cases.append(((x.to(dtype),), {}))
    return cases


def _ring_average(
    power: torch.Tensor,
    centred: bool,
    rounding: Callable[[torch.Tensor], torch.Tensor] = torch.round,
) -> torch.Tensor:
    """Average ``power: (B, H, H)`` over rings of integer radius around index ``[H//2, H//2]``.

    That is the zero frequency after ``fftshift`` (``centred=True``); without the shift
    (``centred=False``) the rings are drawn around the same index all the same: the mistake.
    """
    B, H, _ = power.shape
    c = torch.arange(H, dtype=torch.float64) - H // 2
    r = rounding(torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)).long().flatten()
    K = H // 2 + 1
    keep = r < K
    flat = power.reshape(B, H * H)[:, keep]
    sums = torch.zeros(B, K, dtype=power.dtype).index_add_(1, r[keep], flat)
    return sums / torch.bincount(r[keep], minlength=K).to(power.dtype)


def _psd_variant(
    transform: Callable[[torch.Tensor], torch.Tensor] = lambda x: torch.fft.fft2(x),
    shift: bool = True,
    power: Callable[[torch.Tensor], torch.Tensor] = lambda X: X.abs() ** 2,
    channel_mean_first: bool = False,
    ring_sum: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        if channel_mean_first:
            x = x.mean(dim=1, keepdim=True)
        X = transform(x)
        if shift:
            X = torch.fft.fftshift(X, dim=(-2, -1))
        P = power(X).mean(dim=1)
        out = _ring_average(P, shift)
        if ring_sum:
            out = out * radial_counts(x.shape[-1]).to(out.dtype)
        return out

    return fn


def _psd_forms(case: Case) -> dict[str, torch.Tensor]:
    (x,) = case[0]
    P = torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1)).abs() ** 2
    return {
        "the ring average of mean_c |F x_c|², rings round(|k|) = r": _ring_average(P.mean(1), True),
        "ring averages with rings floor(|k|) = r; the rings are round(|k|) = r, centred on the "
        "integers": _ring_average(P.mean(1), True, torch.floor),
        "ring averages with rings ceil(|k|) = r; the rings are round(|k|) = r": _ring_average(
            P.mean(1), True, torch.ceil
        ),
        "the spectrum of the first channel alone; average the power over all channels": (
            _ring_average(P[:, 0], True)
        ),
        "the power summed over the channels; average it over them (mean_c |F x_c|²)": (
            _ring_average(P.sum(1), True)
        ),
    }


def _floor_forms(case: Case) -> dict[str, torch.Tensor]:
    p, ab, n = case[0]
    p = p.double()
    return {
        "ᾱ P_0 + (1 − ᾱ) N": ab * p + (1 - ab) * n,
        "ᾱ P_0 + √(1 − ᾱ) N: the noise power is the variance (1 − ᾱ) times N, no square root": ab
        * p
        + (1 - ab) ** 0.5 * n,
        "ᾱ P_0 + (1 − ᾱ) N²: white noise of variance σ² has power σ² N per frequency (N pixels), "
        "not σ² N²": ab * p + (1 - ab) * n**2,
        "√ᾱ P_0 + (1 − ᾱ) N: the signal's power scales with ᾱ, the square of its amplitude √ᾱ": ab
        ** 0.5
        * p
        + (1 - ab) * n,
    }


def _snr_forms(case: Case) -> dict[str, torch.Tensor]:
    p, ab, n = case[0]
    p = p.double()
    snr = ab * p / ((1 - ab) * n)
    return {
        "ᾱ P_0 / ((1 − ᾱ) N)": snr,
        "log(ᾱ P_0 / ((1 − ᾱ) N)), the log-SNR; return the ratio itself": torch.log(snr),
        "ᾱ / ((1 − ᾱ) N), the same number at every frequency: the spectrum P_0 is missing": (
            torch.full_like(p, ab / ((1 - ab) * n))
        ),
        "ᾱ P_0 / (1 − ᾱ), without N: white noise has power (1 − ᾱ) N per frequency": ab
        * p
        / (1 - ab),
    }


def _snr_coefficients(
    student: Any, reference: Any, cases: Sequence[Case], rtol: float, _atol: float
) -> str | None:
    """The right shape over the frequencies times a factor that changes with ᾱ: read which
    coefficients of the signal and the noise the factor stands for."""
    factors = []
    for (p, ab, n), _kw in cases:
        got, want = student(p, ab, n), reference(p, ab, n)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            return None
        ratio = got.double() / want.double()
        if not torch.allclose(ratio, ratio[:1].expand_as(ratio), rtol=max(rtol, 1e-6)):
            return None
        factors.append((float(ratio[0]), ab, n))
    forms = {
        "√(1 − ᾱ)/√ᾱ: you scaled the powers by √ᾱ and √(1 − ᾱ), the coefficients of the "
        "amplitudes in x_t = √ᾱ x_0 + √(1 − ᾱ) ε; the powers scale by their squares, ᾱ P_0 and "
        "(1 − ᾱ) N": lambda ab, n: math.sqrt((1 - ab) / ab),
        "√ᾱ/√(1 − ᾱ): ᾱ and 1 − ᾱ appear squared; a power scales by ᾱ and 1 − ᾱ, the squares of "
        "the amplitudes √ᾱ and √(1 − ᾱ)": lambda ab, n: math.sqrt(ab / (1 - ab)),
        "1/ᾱ: the signal's power is ᾱ P_0, ᾱ is missing": lambda ab, n: 1 / ab,
        "1 − ᾱ: the noise's power is (1 − ᾱ) N, 1 − ᾱ is missing": lambda ab, n: 1 - ab,
    }
    for name, form in forms.items():
        if all(math.isclose(c, form(ab, n), rel_tol=1e-5) for c, ab, n in factors):
            return (
                "your SNR has the right shape over the frequencies, but it is off by a factor "
                f"{name}. SNR = ᾱ P_0 / ((1 − ᾱ) N)."
            )
    return None


_PSD = Spec(
    _cases_psd,
    lambda x: _radial_psd(x),
    {
        "no_fftshift": Mistake(
            _psd_variant(shift=False),
            "your rings are centred on the middle of the array, but torch.fft.fft2 puts the zero "
            "frequency at index [0, 0]. Apply torch.fft.fftshift(X, dim=(-2, -1)) first (or "
            "measure the radius with torch.fft.fftfreq).",
        ),
        "amplitude_not_power": Mistake(
            _psd_variant(power=lambda X: X.abs()),
            "you averaged the amplitude |F x|; the power spectrum is the squared magnitude |F x|².",
        ),
        "all_axes": Mistake(
            _psd_variant(transform=lambda x: torch.fft.fftn(x)),
            "your Fourier transform also runs over the batch and channel axes (torch.fft.fftn "
            "without dim=...). Transform only the two spatial axes: torch.fft.fft2(x).",
        ),
        "channel_mean_of_image": Mistake(
            _psd_variant(channel_mean_first=True),
            "you averaged the image over its channels before the transform. Average the *power* "
            "over channels instead: mean_c |F x_c|² is not |F mean_c x_c|².",
        ),
        "ring_sum": Mistake(
            _psd_variant(ring_sum=True),
            "you summed the power over each ring; the radial *average* divides by the number of "
            "frequencies in the ring (outer rings hold more of them).",
        ),
    },
    keep_dtype=True,
    diagnoses=(named_result(_psd_forms),),
    doc="Check ``radial_psd(x: (B, C, H, H)) -> (B, H//2 + 1)``, the ring-averaged ``|F x|²``.",
)
check_radial_psd = Checker("radial_psd", _PSD)


# --- noised_psd and frequency_snr ----------------------------------------------------------------


def _cases_spectrum() -> list[Case]:
    cases: list[Case] = []
    sizes = [(5, 0.3, 64), (9, 0.8, 256), (9, 0.97, 256), (7, 0.5, 64)]
    for i, (K, ab, n) in enumerate(sizes):
        f = torch.arange(1, K + 1, dtype=torch.float64)
        g = torch.Generator().manual_seed(200 + i)
        psd0 = 500.0 * f**-2 * (1 + 0.2 * torch.rand(K, generator=g, dtype=torch.float64))
        if i == len(sizes) - 1:
            psd0 = psd0.float()  # a float32 spectrum stays float32
        cases.append(((psd0, ab, n), {}))
    return cases


_NOISED = Spec(
    _cases_spectrum,
    lambda p, ab, n: _noised_psd(p, ab, n),
    {
        "forgot_noise": Mistake(
            lambda p, ab, n: ab * p,
            "you forgot the noise term: E|F x_t|² = ᾱ·P_0 + (1 − ᾱ)·N, because the noise adds "
            "its own flat spectrum (1 − ᾱ)·N at every frequency.",
        ),
        "sqrt_scaling": Mistake(
            lambda p, ab, n: ab**0.5 * p + (1 - ab) ** 0.5 * n,
            "you scaled the power by √ᾱ and √(1 − ᾱ). Those scale the image (the amplitude); the "
            "power is squared: ᾱ·P_0 + (1 − ᾱ)·N.",
        ),
        "noise_without_pixels": Mistake(
            lambda p, ab, n: ab * p + (1 - ab),
            "your noise floor is (1 − ᾱ), but with the unnormalised DFT white noise of variance "
            "σ² has power σ²·N per frequency (N = number of pixels): ᾱ·P_0 + (1 − ᾱ)·N.",
        ),
        "noise_unscaled": Mistake(
            lambda p, ab, n: ab * p + n,
            "your noise term is N; the noise in x_t has variance (1 − ᾱ), so its power is (1 − "
            "ᾱ)·N.",
        ),
    },
    keep_dtype=True,
    diagnoses=(named_result(_floor_forms),),
    doc="Check ``noised_psd(psd0: (K,), alpha_bar: float, n_pixels: int) -> ᾱ P_0 + (1 - ᾱ) N``.",
)
check_noised_psd = Checker("noised_psd", _NOISED)

_SNR = Spec(
    _cases_spectrum,
    lambda p, ab, n: _frequency_snr(p, ab, n),
    {
        "total_over_noise": Mistake(
            lambda p, ab, n: (ab * p + (1 - ab) * n) / ((1 - ab) * n),
            "you divided the whole spectrum of x_t (signal + noise) by the noise: that is SNR + "
            "1. The SNR is the signal power ᾱ·P_0 over the noise power (1 − ᾱ)·N.",
        ),
        "noise_without_pixels": Mistake(
            lambda p, ab, n: ab * p / (1 - ab),
            "your noise power is (1 − ᾱ); with the unnormalised DFT it is (1 − ᾱ)·N per "
            "frequency (N = number of pixels).",
        ),
        "amplitude_ratio": Mistake(
            lambda p, ab, n: (ab * p) ** 0.5 / ((1 - ab) * n) ** 0.5,
            "you took a ratio of amplitudes; the SNR is a ratio of powers: ᾱ·P_0 / ((1 − ᾱ)·N).",
        ),
        "inverted": Mistake(
            lambda p, ab, n: (1 - ab) * n / (ab * p),
            "your ratio is upside down (noise over signal): SNR = ᾱ·P_0 / ((1 − ᾱ)·N).",
        ),
    },
    keep_dtype=True,
    diagnoses=(named_result(_snr_forms), _snr_coefficients),
    doc="Check ``frequency_snr(psd0: (K,), alpha_bar: float, n_pixels: int) -> ᾱ P_0/((1-ᾱ)N)``.",
)
check_frequency_snr = Checker("frequency_snr", _SNR)

SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
