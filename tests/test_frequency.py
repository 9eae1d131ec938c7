"""Chapter 10 derivations: spectra of images, of noise, and of noised images; weightings over λ."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import cosine_schedule, linear_schedule, q_sample
from minidiff.data import image_patches
from minidiff.frequency import (
    cosine_weighting,
    crossover_frequency,
    edm_density,
    edm_weighting,
    elbo_weighting,
    frequency_snr,
    log_snr_density,
    noised_psd,
    power_law_fit,
    power_spectrum,
    radial_counts,
    radial_frequencies,
    radial_psd,
    sigmoid_weighting,
    wiener_gain,
)
from minidiff.schedules import shifted_schedule


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_parseval_for_the_unnormalised_dft() -> None:
    x = torch.randn(3, 2, 16, 16, generator=_g(), dtype=torch.float64)
    n = 16 * 16
    torch.testing.assert_close(power_spectrum(x).sum(dim=(2, 3)), n * (x**2).sum(dim=(2, 3)))
    # the radial average keeps the total of the rings it covers: counts @ psd
    psd = radial_psd(x)
    counts = radial_counts(16).double()
    kept = psd @ counts
    total = power_spectrum(x).mean(dim=1).sum(dim=(1, 2))
    assert bool((kept <= total + 1e-9).all()) and bool((kept > 0.7 * total).all())


def test_rings_partition_and_frequencies() -> None:
    for size in (8, 15, 32):
        f = radial_frequencies(size)
        assert f.shape == (size // 2 + 1,) and float(f[0]) == 0.0
        assert math.isclose(float(f[-1]), (size // 2) / size)
        c = radial_counts(size)
        assert int(c[0]) == 1 and int(c[1]) == 8 and bool((c > 0).all())  # r = 1, √2 -> ring 1
        assert int(c.sum()) <= size * size
    # the docstring states the last ring as it is, (size // 2) / size: 4/9 for size 9, not 0.5
    assert "(size // 2) / size" in (radial_frequencies.__doc__ or "")
    assert "Nyquist frequency 0.5 (" not in (radial_frequencies.__doc__ or "")


def test_half_and_bfloat16_images_are_transformed_in_float32() -> None:
    # torch's FFT has no half kernels on the CPU: these used to raise "Unsupported dtype Half"
    x = torch.randn(4, 3, 9, 9, generator=_g(2))
    for dtype in (torch.float16, torch.bfloat16):
        low = x.to(dtype)
        psd = radial_psd(low)
        assert psd.dtype == torch.float32
        torch.testing.assert_close(psd, radial_psd(low.float()))
        assert power_spectrum(low).dtype == torch.float32


def test_white_noise_has_a_flat_spectrum_within_its_standard_error() -> None:
    sigma, B, H = 0.7, 400, 32
    eps = sigma * torch.randn(B, 1, H, H, generator=_g(1), dtype=torch.float64)
    psd = radial_psd(eps)  # (B, K)
    mean, se = psd.mean(0), psd.std(0) / math.sqrt(B)
    z = (mean - sigma**2 * H * H) / se
    assert float(z.abs().max()) < 4.5, z
    # and a power-law spectrum is far from flat: the test can tell the difference
    patches = radial_psd(image_patches(H, 64, generator=_g(2)).double()).mean(0)
    assert float(patches[1] / patches[-1]) > 100


def test_a_sinusoid_gives_one_peak_at_its_radius() -> None:
    H, (kx, ky) = 32, (3, 4)
    n = torch.arange(H, dtype=torch.float64)
    x = torch.cos(2 * math.pi * (kx * n[None, :] + ky * n[:, None]) / H)[None, None]
    psd = radial_psd(x)[0]
    assert int(psd.argmax()) == 5
    # exactly two coefficients (±k) carry (N/2)² each; the rest of ring 5 is zero
    expected = 2 * (H * H / 2) ** 2 / float(radial_counts(H)[5])
    assert math.isclose(float(psd[5]), expected, rel_tol=1e-9)
    others = torch.cat([psd[:5], psd[6:]])
    assert float(others.max()) < 1e-12 * expected


def test_expected_power_of_image_plus_noise_per_frequency() -> None:
    # E|F(x + σ ε)|² = |F x|² + σ² N at every frequency (full 2D spectrum, every channel)
    x = image_patches(16, 1, generator=_g(3)).double()
    sigma, M, N = 0.5, 600, 16 * 16
    noise = torch.randn(M, 3, 16, 16, generator=_g(4), dtype=torch.float64)
    power = power_spectrum(x + sigma * noise)  # (M, 3, 16, 16)
    mean, se = power.mean(0), power.std(0) / math.sqrt(M)
    z = (mean - (power_spectrum(x)[0] + sigma**2 * N)) / se
    assert float(z.abs().max()) < 5.0
    # forgetting the noise term is detected
    z_wrong = (mean - power_spectrum(x)[0]) / se
    assert float(z_wrong.abs().max()) > 20


@pytest.mark.parametrize("t", [50, 300, 900])
def test_noising_scales_the_radial_spectrum_as_derived(t: int) -> None:
    sch = linear_schedule(1000)
    x0 = image_patches(32, 8, generator=_g(5)).double()
    M = 200
    xs = x0.repeat(M, 1, 1, 1)
    x_t = q_sample(xs, t, sch, generator=_g(6))
    measured = radial_psd(x_t).reshape(M, 8, -1)  # (draws, images, K)
    mean, se = measured.mean(0), measured.std(0) / math.sqrt(M)
    predicted = noised_psd(radial_psd(x0), float(sch.alpha_bar[t]), 32 * 32)
    z = (mean - predicted) / se
    assert float(z.abs().max()) < 5.0


def test_snr_crossover_and_gain_agree() -> None:
    sch = cosine_schedule(1000)
    f = radial_frequencies(32)
    p0 = radial_psd(image_patches(32, 128, generator=_g(7)).double()).mean(0)
    ts = torch.arange(1, 1001)
    ab = sch.alpha_bar[ts]
    snr = frequency_snr(p0, ab, 1024)
    assert snr.shape == (1000, 17)
    torch.testing.assert_close(snr, sch.snr[ts][:, None] * p0[None] / 1024)
    torch.testing.assert_close(wiener_gain(p0, ab, 1024), snr / (1 + snr))
    torch.testing.assert_close(noised_psd(p0, ab, 1024) * snr / (1 + snr), ab[:, None] * p0[None])
    fc = crossover_frequency(p0, ab, 1024, f)
    assert fc.shape == (1000,)
    # high frequencies drown first: the crossover never moves up as t grows
    assert bool((fc.diff() <= 1e-12).all()) and float(fc[0]) == 0.5 and float(fc[-1]) < float(f[2])
    # at a crossover strictly inside, the rings on either side straddle SNR = 1
    for t in (100, 300, 600):
        c = float(fc[t - 1])
        j = int(torch.searchsorted(f, torch.tensor(c, dtype=torch.float64)))
        assert 0 < j < 17 and float(snr[t - 1, j - 1]) >= 1.0 >= float(snr[t - 1, j])
    # scalar alpha_bar gives scalar results
    assert crossover_frequency(p0, 0.5, 1024, f).dim() == 0
    assert frequency_snr(p0, 0.5, 1024).shape == (17,)


def test_crossover_needs_increasing_frequencies() -> None:
    # Reversed rings used to give 0.0 (the scan read the highest ring as the lowest), not 0.25.
    f = radial_frequencies(16)
    p0 = 256 * (f.clamp_min(1 / 16) / 0.25) ** -2.0  # SNR = 1 at f = 0.25 for alpha_bar = 0.5
    assert math.isclose(float(crossover_frequency(p0, 0.5, 256, f)), 0.25, abs_tol=1e-9)
    with pytest.raises(ValueError, match="freqs must be strictly increasing"):
        crossover_frequency(p0.flip(0), 0.5, 256, f.flip(0))
    with pytest.raises(ValueError, match="freqs must be strictly increasing"):
        crossover_frequency(p0, 0.5, 256, torch.zeros(9, dtype=torch.float64))


def test_snr_and_gain_keep_gradients_finite_even_on_clean_data() -> None:
    # frequency_snr used to compute under torch.no_grad(): no gradient reached psd0
    p0 = torch.tensor([4.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    ab = torch.tensor([1.0, 0.5], dtype=torch.float64)
    snr = frequency_snr(p0, ab, 16)
    assert snr.requires_grad and torch.isinf(snr[0]).all()
    (grad,) = torch.autograd.grad(snr[1].sum(), p0)
    torch.testing.assert_close(grad, torch.full((3,), 1 / 16, dtype=torch.float64))
    (grad,) = torch.autograd.grad(wiener_gain(p0, ab, 16).sum(), p0)
    s = p0.detach() / 16  # the gain's row at alpha_bar = 0.5; the clean row is constant 1
    torch.testing.assert_close(grad, (1 / 16) / (1 + s) ** 2)


def test_natural_patches_follow_a_power_law() -> None:
    f = radial_frequencies(32)
    fit = power_law_fit(f, 3.0 * f.clamp_min(1e-9) ** -2.0)
    assert math.isclose(fit.exponent, 2.0, rel_tol=1e-9) and math.isclose(
        fit.amplitude, 3.0, rel_tol=1e-9
    )
    p0 = radial_psd(image_patches(32, 256, generator=_g(8)).double()).mean(0)
    assert 1.5 < power_law_fit(f, p0).exponent < 3.0  # natural images: α ≈ 2


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="square"):
        radial_psd(torch.zeros(1, 1, 8, 6))
    with pytest.raises(ValueError, match="4 dimensions"):
        radial_psd(torch.zeros(8, 8))
    with pytest.raises(TypeError, match="floating"):
        radial_psd(torch.zeros(1, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="non-finite"):
        radial_psd(torch.full((1, 1, 8, 8), float("nan")))
    p0 = torch.ones(5, dtype=torch.float64)
    with pytest.raises(ValueError, match="alpha_bar"):
        noised_psd(p0, 1.5, 64)
    with pytest.raises(ValueError, match="psd0"):
        frequency_snr(-p0, 0.5, 64)
    with pytest.raises(TypeError, match="n_pixels"):
        noised_psd(p0, 0.5, 64.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="freqs"):
        crossover_frequency(p0, 0.5, 64, radial_frequencies(16))
    with pytest.raises(TypeError, match="schedule"):
        log_snr_density("cosine")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lam"):
        edm_weighting([0.0])  # type: ignore[arg-type]


def test_log_snr_density_matches_a_histogram_of_uniform_t() -> None:
    sch = linear_schedule(1000)
    lam, dens = log_snr_density(sch)
    t = torch.randint(1, 1001, (200_000,), generator=_g(9))
    samples = sch.log_snr[t]
    edges = torch.linspace(-8, 6, 15, dtype=torch.float64)
    hist = torch.histogram(samples, bins=edges).hist / (samples.numel() * (edges[1] - edges[0]))
    centres = (edges[:-1] + edges[1:]) / 2
    order = torch.argsort(lam)
    predicted = torch.from_numpy(
        __import__("numpy").interp(centres.numpy(), lam[order].numpy(), dens[order].numpy())
    )
    torch.testing.assert_close(hist, predicted, rtol=0.06, atol=2e-3)
    total = torch.trapezoid(dens[order], lam[order])
    assert abs(float(total) - 1.0) < 0.01


def test_discrete_cosine_density_is_the_sech_weighting_and_shift_moves_it() -> None:
    sch = cosine_schedule(1000)
    lam, dens = log_snr_density(sch)
    mid = lam.abs() < 6
    torch.testing.assert_close(dens[mid], cosine_weighting(lam[mid]), rtol=0.03, atol=0.0)
    shifted = shifted_schedule(sch, 1.5)
    lam_s, dens_s = log_snr_density(shifted)
    torch.testing.assert_close(lam_s, lam + 1.5)
    torch.testing.assert_close(dens_s[mid], dens[mid], rtol=1e-6, atol=0.0)
    grid = torch.linspace(-30, 30, 6001, dtype=torch.float64)
    assert abs(float(torch.trapezoid(cosine_weighting(grid), grid)) - 1.0) < 1e-6


def test_edm_lognormal_weighting() -> None:
    grid = torch.linspace(-25, 30, 11001, dtype=torch.float64)
    d = edm_density(grid)
    mean = torch.trapezoid(grid * d, grid)
    sd = torch.trapezoid((grid - mean) ** 2 * d, grid).sqrt()
    assert abs(float(torch.trapezoid(d, grid)) - 1) < 1e-6
    assert abs(float(mean) - 2.4) < 1e-6 and abs(float(sd) - 2.4) < 1e-6
    # in σ terms (λ = -2 ln σ): density times EDM's (σ² + σ_d²)/(σ σ_d)² x0-weight times σ²
    sigma = torch.tensor([0.02, 0.3, 1.0, 5.0], dtype=torch.float64)
    lam = -2 * sigma.log()
    expected = edm_density(lam) * (sigma**2 + 0.25) / (sigma * 0.5) ** 2 * sigma**2
    torch.testing.assert_close(edm_weighting(lam), expected)
    assert bool((elbo_weighting(lam) == 1).all())
    assert bool((sigmoid_weighting(grid).diff() <= 0).all())  # monotone (Kingma & Gao 2023)
    assert not bool((edm_weighting(grid).diff() <= 0).all())  # EDM's is not


def test_shifted_schedule_shifts_log_snr() -> None:
    base = cosine_schedule(200)
    s = shifted_schedule(base, -2.0)
    # exact up to the last step, where beta is clipped at 0.999 as in the cosine schedule
    torch.testing.assert_close(s.log_snr[1:-1], base.log_snr[1:-1] - 2.0)
    assert abs(float(s.log_snr[-1] - base.log_snr[-1] + 2.0)) < 1e-3
    assert s.T == 200 and float(s.alpha_bar[0]) == 1.0
    with pytest.raises(ValueError, match="shift"):
        shifted_schedule(base, float("inf"))
    with pytest.raises(TypeError, match="schedule"):
        shifted_schedule("cosine", 1.0)  # type: ignore[arg-type]


def test_l_simple_is_the_weighted_loss_with_w_equal_to_the_density() -> None:
    # ½ E_t[e(λ_t)] (L_simple / 2 with uniform t) = ½ ∫ p(λ) e(λ) dλ for any error profile e
    sch = cosine_schedule(1000)
    lam, dens = log_snr_density(sch)
    order = torch.argsort(lam)

    def err(x: torch.Tensor) -> torch.Tensor:
        return 1 / (1 + torch.exp(x - 1.0)) + 0.1

    direct = float(err(sch.log_snr[1:]).mean())  # exact mean over t = 1..T
    quad = float(torch.trapezoid(dens[order] * err(lam[order]), lam[order]))
    assert abs(direct - quad) < 0.005 * direct
    # and with the ELBO's w = 1 instead, the same profile gives a different objective
    elbo = float(torch.trapezoid(err(lam[order]), lam[order]))
    assert abs(elbo - direct) > 0.5 * direct


def test_wiener_gain_band_width_follows_the_power_law() -> None:
    # with P ∝ f^-α, the band where 0.1 < g < 0.9 spans log(81) / (α log 2) octaves
    alpha = 2.0
    f = torch.logspace(-4, 0, 4001, dtype=torch.float64)
    p0 = 1e3 * f**-alpha
    snr_t = 0.1024  # puts SNR = 1 at f = 0.01, with the whole band inside the grid
    g = wiener_gain(p0, snr_t / (1 + snr_t), 1024)
    assert bool((g[0] > 0.9) & (g[-1] < 0.1))
    inside = f[(g > 0.1) & (g < 0.9)]
    octaves = math.log2(float(inside.max() / inside.min()))
    assert abs(octaves - math.log(81) / (alpha * math.log(2))) < 0.01


def test_non_finite_and_bad_parameters_are_named() -> None:
    from minidiff import frequency as fr

    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="x"):
        fr.power_spectrum(x)
    f = torch.tensor([0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="psd"):
        fr.power_law_fit(f, torch.tensor([1.0, float("nan"), 0.5, 0.2]))
    with pytest.raises(ValueError, match="p_std"):
        fr.edm_density(torch.zeros(3), p_std=float("nan"))
    with pytest.raises(ValueError, match="sigma_data"):
        fr.edm_weighting(torch.zeros(3), sigma_data=0.0)


def test_clean_data_has_infinite_snr_and_full_gain_even_in_an_empty_ring() -> None:
    # A ring of zero power at alpha_bar = 1 used to give 0/0 = NaN in both.
    psd0 = torch.tensor([4.0, 0.0, 1.0], dtype=torch.float64)
    snr = frequency_snr(psd0, 1.0, 16)
    gain = wiener_gain(psd0, torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64), 16)
    assert torch.isinf(snr).all()
    assert torch.equal(gain[0], torch.ones(3, dtype=torch.float64))
    assert gain[1, 1] == 0 and gain[2].abs().max() == 0  # an empty ring with noise: nothing to read
    assert not torch.isnan(gain).any()


def test_edm_weighting_vanishes_at_both_ends_of_log_snr() -> None:
    lam = torch.tensor([-math.inf, -40.0, 0.0, 40.0, math.inf], dtype=torch.float64)
    w = edm_weighting(lam)
    assert not torch.isnan(w).any() and w[0] == 0 and w[-1] == 0
    assert w[1] < 1e-20 and w[2] > 0
    for f in (cosine_weighting, sigmoid_weighting, elbo_weighting, edm_density):
        assert not torch.isnan(f(lam)).any(), f.__name__
