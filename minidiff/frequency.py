"""Frequency content of images under the forward process (chapter 10).

Fourier transform (unnormalised DFT over the two spatial axes, ``torch.fft.fft2``'s default):
``X[k] = sum_n x[n] exp(-2πi k·n / N)`` for an ``N = H x W`` image, so that Parseval reads
``sum_k |X[k]|² = N sum_n x[n]²`` and white noise of variance σ² has ``E|X[k]|² = σ² N`` at every
frequency (a flat spectrum). Because the DFT is linear,

    F(x_t) = sqrt(ᾱ_t) F(x_0) + sqrt(1 - ᾱ_t) F(ε),   E|F(x_t)|² = ᾱ_t |F(x_0)|² + (1 - ᾱ_t) N,

so the per-frequency signal-to-noise ratio is ``SNR_t(k) = ᾱ_t P_0(k) / ((1 - ᾱ_t) N)``: the
schedule's SNR(t) times ``P_0(k) / N``. Natural images have a power law ``P_0(f) ∝ f^(-α)``,
α ≈ 2, so high frequencies drown first as t grows.

Weightings over log-SNR λ (Kingma & Gao 2023, "Understanding diffusion objectives as the ELBO
with simple data augmentation"): ``L_w = ½ E_{u~U(0,1), ε}[w(λ_u) (-dλ/du) ||ε̂ - ε||²]``; the
ELBO is ``w = 1`` and L_simple (uniform u, ε-loss) is ``w(λ) = -du/dλ = p(λ)``, the density of λ
under the schedule.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._memory import check_allocation
from ._validation import FloatTensor, Number, check_finite, check_number, check_tensor, checked
from .schedules import NoiseSchedule

__all__ = [
    "radial_frequencies",
    "radial_counts",
    "power_spectrum",
    "radial_psd",
    "noised_psd",
    "frequency_snr",
    "wiener_gain",
    "crossover_frequency",
    "power_law_fit",
    "PowerLaw",
    "log_snr_density",
    "elbo_weighting",
    "cosine_weighting",
    "edm_density",
    "edm_weighting",
    "sigmoid_weighting",
]


# ------------------------------------------------------------------ spectra


def _check_size(size: object, name: str = "size") -> int:
    """An image side ``>= 2`` whose ``size x size`` frequency grid fits in memory."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{name} must be an int, got {type(size).__name__}")
    if size < 2:
        raise ValueError(f"{name} must be >= 2, got {size}")
    # the radius grid: a few float64 and int64 arrays of size x size
    check_allocation(4 * 8 * size * size, f"{name}={size}", f"a {size}x{size} frequency grid")
    return size


def _radius_index(size: int) -> torch.Tensor:
    """Integer ring index ``round(sqrt(kx² + ky²))`` of every DFT coefficient, ``(size, size)``."""
    k = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)  # 0, 1, ..., -2, -1
    r = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    return torch.round(r).long()


def radial_frequencies(size: int) -> torch.Tensor:
    """Centre frequency of each ring in cycles per pixel: ``k / size`` for ``k = 0..size//2``.

    Returns float64 ``(size // 2 + 1,)``; the last ring is ``(size // 2) / size``: the Nyquist
    frequency 0.5 for an even ``size``, just below it for an odd one (``4 / 9`` for ``size=9``).
    The corners of the 2D spectrum, beyond the last ring, are left out of the radial average.
    """
    size = _check_size(size)
    return torch.arange(size // 2 + 1, dtype=torch.float64) / size


def radial_counts(size: int) -> torch.Tensor:
    """Number of DFT coefficients in each ring, long ``(size // 2 + 1,)``."""
    size = _check_size(size)
    idx = _radius_index(size).flatten()
    return torch.bincount(idx, minlength=size + 1)[: size // 2 + 1]


def _check_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    """A batch of images ``(B, C, H, W)`` with at least one image, channel and pixel."""
    if 0 in x.shape:
        raise ValueError(
            f"{name} must hold at least one image of at least one channel and pixel, "
            f"got shape {tuple(x.shape)}"
        )
    return x


def _check_images(x: object, name: str = "x") -> torch.Tensor:
    x = _check_batch(check_tensor(x, name, dim=4), name)
    _, _, H, W = x.shape
    if H != W:
        raise ValueError(
            f"{name} must hold square images (B, C, H, H) for a radial spectrum, got H={H}, W={W}; "
            "crop them to a square first"
        )
    if H < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels, got {H}x{W}")
    return check_finite(x, name)


def _fft_dtype(x: torch.Tensor) -> torch.Tensor:
    """Half and bfloat16 images upcast to float32 (torch's FFT has no such kernels on the CPU,
    and only for power-of-two sizes on a GPU); float32 and float64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def power_spectrum(x: torch.Tensor) -> torch.Tensor:
    """``|F x|²`` per image and channel: ``x: (B, C, H, W)`` -> real ``(B, C, H, W)``.

    Unnormalised DFT, zero frequency at index ``[0, 0]`` (no ``fftshift``). The result has the
    dtype of ``x``, except that half and bfloat16 images are transformed in float32 (and give a
    float32 spectrum).
    """
    x = check_finite(_check_batch(check_tensor(x, "x", dim=4), "x"), "x")
    return torch.fft.fft2(_fft_dtype(x)).abs() ** 2


def radial_psd(x: torch.Tensor) -> torch.Tensor:
    """Radially averaged power spectral density: ``x: (B, C, H, H)`` -> ``(B, H // 2 + 1)``.

    ``P[b, k] = mean over channels c and over DFT coefficients in ring k of |F x[b, c]|²``,
    where ring k holds the frequencies with ``round(|(kx, ky)|) = k``. The result has the dtype
    of ``x`` (float32 for half and bfloat16 images, which are transformed in float32, as in
    :func:`power_spectrum`); frequencies are :func:`radial_frequencies`.
    """
    x = _check_images(x)
    B, C, H, _ = x.shape
    K = H // 2 + 1
    power = power_spectrum(x).mean(dim=1).reshape(B, H * H)  # mean over channels
    idx = _radius_index(H).flatten().to(x.device)
    keep = idx < K
    sums = torch.zeros(B, K, dtype=power.dtype, device=x.device)
    sums.index_add_(1, idx[keep], power[:, keep])
    counts = torch.bincount(idx[keep], minlength=K).to(power.dtype)
    return sums / counts


def _alpha_bar(alpha_bar: object) -> torch.Tensor:
    """``alpha_bar`` (a number or a real tensor of at most one dimension) as float64 in [0, 1]."""
    if isinstance(alpha_bar, torch.Tensor):
        if not alpha_bar.is_floating_point():
            raise TypeError(f"alpha_bar must be a floating tensor, got dtype {alpha_bar.dtype}")
        a = alpha_bar.detach().to(torch.float64)
    else:
        a = torch.tensor(check_number(alpha_bar, "alpha_bar"), dtype=torch.float64)
    if a.dim() > 1:
        raise ValueError(f"alpha_bar must be a float or a 1-D tensor, got shape {tuple(a.shape)}")
    if not bool(((a >= 0) & (a <= 1)).all()):  # also refuses NaN
        raise ValueError("alpha_bar must lie in [0, 1]")
    return a


def _check_psd(psd0: object) -> torch.Tensor:
    p = check_tensor(psd0, "psd0", min_dim=1)
    if p.shape[-1] == 0:
        raise ValueError(f"psd0 must hold at least one ring, got shape {tuple(p.shape)}")
    check_finite(p, "psd0")
    if bool((p < 0).any()):
        raise ValueError("psd0 must be a power spectrum (non-negative)")
    return p


def _check_positive(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def _broadcast(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``a`` scalar -> as is; ``a: (A,)`` -> ``(A, 1, ..., 1)`` against ``p: (..., K)``."""
    a = a.to(dtype=p.dtype, device=p.device)
    return a if a.dim() == 0 else a.reshape(-1, *([1] * p.dim()))


def noised_psd(psd0: torch.Tensor, alpha_bar: float | torch.Tensor, n_pixels: int) -> torch.Tensor:
    """Expected spectrum of ``x_t``: ``ᾱ P_0 + (1 - ᾱ) N`` (N = ``n_pixels``, the noise floor).

    ``psd0: (..., K)``; ``alpha_bar`` a float (result ``(..., K)``) or ``(A,)`` (result
    ``(A, ..., K)``). The cross term has mean zero because ε is independent of ``x_0``.
    """
    p = _check_psd(psd0)
    a = _broadcast(_alpha_bar(alpha_bar), p)
    n = _check_positive(n_pixels, "n_pixels")
    return a * p + (1 - a) * n


def frequency_snr(
    psd0: torch.Tensor, alpha_bar: float | torch.Tensor, n_pixels: int
) -> torch.Tensor:
    """Per-frequency SNR of ``x_t``: ``ᾱ P_0(k) / ((1 - ᾱ) N)``; shapes as :func:`noised_psd`.

    ``+inf`` where ``ᾱ = 1`` (clean data, no noise), also for a ring of zero power. Gradients
    flow back to ``psd0`` (finite ones: the ``ᾱ = 1`` entries are constants).
    """
    p = _check_psd(psd0)
    a = _broadcast(_alpha_bar(alpha_bar), p)
    n = _check_positive(n_pixels, "n_pixels")
    clean = a == 1
    # divide by 1 where ᾱ = 1, so that no inf or NaN enters the graph (their gradient is NaN)
    snr = a * p / torch.where(clean, torch.ones_like(a), (1 - a) * n)
    return torch.where(clean, torch.full_like(snr, math.inf), snr)


def wiener_gain(psd0: torch.Tensor, alpha_bar: float | torch.Tensor, n_pixels: int) -> torch.Tensor:
    """``SNR / (1 + SNR)`` per frequency: how much of ``x_0`` the best linear denoiser recovers.

    For Gaussian data with spectrum ``P_0``, ``E[F x_0 | x_t] = g(k) F(x_t) / sqrt(ᾱ)`` with this
    gain (the Wiener filter); 1 = frequency fully readable, 0 = drowned.
    Shapes as :func:`noised_psd`. Exactly 1 where ``ᾱ = 1`` (nothing to denoise), even in a ring
    of zero power (where ``SNR / (1 + SNR)`` would be ``inf / inf``).
    """
    snr = frequency_snr(psd0, alpha_bar, n_pixels)
    clean = torch.isinf(snr)
    finite = torch.where(clean, torch.zeros_like(snr), snr)  # keeps inf / inf out of the graph
    return torch.where(clean, torch.ones_like(snr), finite / (1 + finite))


def crossover_frequency(
    psd0: torch.Tensor, alpha_bar: float | torch.Tensor, n_pixels: int, freqs: torch.Tensor
) -> torch.Tensor:
    """The frequency at which noise overtakes signal, ``SNR_t(f) = 1``, for each ``ᾱ``.

    ``psd0: (K,)`` and ``freqs: (K,)``, the frequencies strictly increasing (a ``ValueError``
    otherwise: the scan takes the rings in the order given, from low to high frequency);
    ``alpha_bar`` a float or ``(A,)``. Interpolates ``log SNR`` linearly between the last ring
    above 1 and the first below. Returns ``freqs[-1]`` when no ring is drowned yet and ``0``
    when even the lowest ring is; float64 ``()`` or ``(A,)``.
    """
    p = _check_psd(psd0)
    if p.dim() != 1:
        raise ValueError(f"psd0 must be one spectrum (K,), got shape {tuple(p.shape)}")
    f = check_finite(check_tensor(freqs, "freqs", dim=1), "freqs").to(torch.float64)
    if f.shape != p.shape:
        raise ValueError(f"freqs must have shape {tuple(p.shape)} like psd0, got {tuple(f.shape)}")
    if f.numel() > 1 and not bool((f[1:] > f[:-1]).all()):
        raise ValueError(
            "freqs must be strictly increasing (the rings from low to high frequency, as "
            "radial_frequencies gives them); sort freqs and psd0 together first"
        )
    a = _alpha_bar(alpha_bar)
    snr = frequency_snr(p.double(), a.reshape(-1), n_pixels)  # (A, K)
    log_snr = torch.log(snr.clamp_min(1e-300))
    below = log_snr < 0
    out = torch.full((snr.shape[0],), float(f[-1]), dtype=torch.float64)
    any_below = below.any(dim=1)
    first = torch.argmax(below.long(), dim=1)  # first ring with SNR < 1
    for i in torch.nonzero(any_below).flatten().tolist():
        j = int(first[i])
        if j == 0:
            out[i] = 0.0
            continue
        hi, lo = float(log_snr[i, j - 1]), float(log_snr[i, j])
        frac = hi / (hi - lo) if math.isfinite(hi) else 1.0
        out[i] = f[j - 1] + frac * (f[j] - f[j - 1])
    return out if a.dim() == 1 else out[0]


class PowerLaw(NamedTuple):
    """``P(f) ≈ amplitude · f^(-exponent)``, fitted by least squares in log-log coordinates."""

    exponent: float
    amplitude: float


def power_law_fit(freqs: torch.Tensor, psd: torch.Tensor) -> PowerLaw:
    """Fit ``log P = log A - α log f`` over the rings with ``f > 0``; ``freqs, psd: (K,)``."""
    f = check_finite(check_tensor(freqs, "freqs", dim=1), "freqs").double()
    p = check_finite(check_tensor(psd, "psd", dim=1), "psd").double()
    if f.shape != p.shape:
        raise ValueError(f"psd must have shape {tuple(f.shape)} like freqs, got {tuple(p.shape)}")
    keep = (f > 0) & (p > 0)
    if int(keep.sum()) < 2:
        raise ValueError("need at least two rings with f > 0 and P > 0 to fit a power law")
    X = torch.stack([torch.ones_like(f[keep]), f[keep].log()], dim=1)
    coef = torch.linalg.lstsq(X, p[keep].log()[:, None]).solution[:, 0]
    return PowerLaw(exponent=float(-coef[1]), amplitude=float(coef[0].exp()))


# ------------------------------------------------------------------ weightings over log-SNR


def log_snr_density(schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """The density ``p(λ)`` of ``λ_t = log SNR(t)`` when ``t`` is uniform on ``1..T``.

    With ``u = t / T`` uniform on (0, 1], ``p(λ) = |du/dλ| = 1 / (T |Δλ_t|)`` (central
    differences). This is the weighting ``w(λ)`` that L_simple puts on each noise level.
    Returns ``(lam, density)``, float64 ``(T,)`` each, ``lam`` decreasing in t.
    """
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    if schedule.T < 3:
        raise ValueError(f"schedule must have T >= 3 for a density, got T={schedule.T}")
    lam = schedule.log_snr[1:]
    (dlam_dt,) = torch.gradient(lam)
    return lam, 1.0 / (schedule.T * dlam_dt.abs())


# λ may be ±inf (t = 0 has λ = +inf, a schedule ending at ᾱ_T = 0 has λ = -inf), never NaN.
_LAM = FloatTensor(min_dim=0)


def _no_nan(lam: torch.Tensor) -> torch.Tensor:
    if bool(torch.isnan(lam).any()):
        raise ValueError("lam contains NaN; expected log-SNR values (±inf allowed)")
    return lam


@checked(lam=_LAM)
def elbo_weighting(lam: torch.Tensor) -> torch.Tensor:
    """``w(λ) = 1``: the weighting under which ``L_w`` is the ELBO (Kingma et al. 2021, VDM)."""
    return torch.ones_like(_no_nan(lam))


@checked(lam=_LAM)
def cosine_weighting(lam: torch.Tensor) -> torch.Tensor:
    """``w(λ) = sech(λ / 2) / (2π)``: L_simple under the continuous cosine schedule.

    ``λ(u) = -2 log tan(π u / 2)`` gives ``du/dλ = -sech(λ/2) / (2π)`` (a density over λ).
    """
    return 1.0 / (torch.cosh(_no_nan(lam) / 2) * 2 * math.pi)


@checked(lam=_LAM, p_mean=Number(), p_std=Number(low=0.0))
def edm_density(lam: torch.Tensor, p_mean: float = -1.2, p_std: float = 1.2) -> torch.Tensor:
    """Density of λ when ``ln σ ~ N(p_mean, p_std²)`` (Karras et al. 2022, EDM's log-normal).

    With ``λ = -2 ln σ``, ``λ ~ N(-2 p_mean, (2 p_std)²)``: mean 2.4 and std 2.4 by default.
    """
    mu, sd = -2.0 * p_mean, 2.0 * p_std
    return torch.exp(-0.5 * ((_no_nan(lam) - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


@checked(lam=_LAM, p_mean=Number(), p_std=Number(low=0.0), sigma_data=Number(low=0.0))
def edm_weighting(
    lam: torch.Tensor, p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5
) -> torch.Tensor:
    """EDM's total weighting over λ: ``N(λ; 2.4, 2.4²) · (e^(-λ) + σ_d²) / σ_d²``.

    The log-normal density of noise levels times EDM's loss weight ``(σ² + σ_d²) / (σ σ_d)²`` on
    the x0-error, which is ``σ² ·`` that on the ε-error (Kingma & Gao 2023, Table 1).
    """
    density = edm_density.unchecked(_no_nan(lam), p_mean, p_std)
    w = density * (torch.exp(-lam) + sigma_data**2) / sigma_data**2
    # at λ = -inf (pure noise) the Gaussian density wins over e^(-λ): the limit is 0, not inf * 0
    return torch.where(lam == -math.inf, torch.zeros_like(w), w)


@checked(lam=_LAM, bias=Number())
def sigmoid_weighting(lam: torch.Tensor, bias: float = 0.0) -> torch.Tensor:
    """``w(λ) = sigmoid(bias - λ)``: a monotone weighting (Kingma & Gao 2023), so ``L_w`` is an
    ELBO of noise-augmented data."""
    return torch.sigmoid(bias - _no_nan(lam))
