"""The facts that the model answers to the exercises' think questions state, checked numerically."""

from __future__ import annotations

import math

import torch

import minidiff
from minidiff.samplers.langevin import langevin_step


def test_ex01_linear_schedule_ends_near_4e_5_and_sqrt_point_1() -> None:
    ab_T = float(minidiff.linear_schedule(1000).alpha_bar[-1])
    assert 3.5e-5 < ab_T < 4.5e-5
    # a schedule that ended at alpha_bar_T = 0.1 would keep a mean of about 0.32 x_0 at t = T
    T = 100
    short = minidiff.NoiseSchedule(torch.full((T,), 1 - 0.1 ** (1 / T), dtype=torch.float64))
    x0 = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    mean_T = minidiff.q_sample(x0, T, short, noise=torch.zeros_like(x0))
    assert torch.allclose(mean_T, 0.32 * x0, rtol=0.02, atol=0.0)


def test_ex01_same_snr_same_information() -> None:
    # x_t / sqrt(ab) = x0 + SNR^{-1/2} eps, whatever the schedule
    lin, cos = minidiff.linear_schedule(1000), minidiff.cosine_schedule(1000)
    snr_lin, snr_cos = lin.alpha_bar / (1 - lin.alpha_bar), cos.alpha_bar / (1 - cos.alpha_bar)
    t1 = 300
    t2 = int((snr_cos[1:] - snr_lin[t1]).abs().argmin()) + 1
    x0, eps = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    a = lin.alpha_bar[t1].sqrt() * x0 + (1 - lin.alpha_bar[t1]).sqrt() * eps
    b = cos.alpha_bar[t2].sqrt() * x0 + (1 - cos.alpha_bar[t2]).sqrt() * eps
    rel = float((snr_cos[t2] - snr_lin[t1]).abs() / snr_lin[t1])
    err = (a / lin.alpha_bar[t1].sqrt() - b / cos.alpha_bar[t2].sqrt()).abs().max()
    assert rel < 0.02 and err < 0.02 * eps.abs().max() / float(snr_lin[t1].sqrt())


def test_ex02_posterior_is_narrower_and_a_point_mass_at_t_1() -> None:
    for s in (minidiff.linear_schedule(1000), minidiff.cosine_schedule(100)):
        bt, b = s.posterior_variance[1:], s.betas[1:]
        assert float(bt[0]) == 0.0 and bool((bt <= b).all()) and bool((bt[1:] < b[1:]).all())
        assert math.isclose(float(s.betas[1] / (1 - s.alpha_bar[1])), 1.0, rel_tol=1e-12)


def test_ex03_lambda_t_is_largest_at_small_t() -> None:
    s = minidiff.linear_schedule(1000)
    b, ab = s.betas[1:], s.alpha_bar[1:]
    lam = b / (2 * (1 - b) * (1 - ab))
    assert int(lam.argmax()) == 0 and float(lam[0]) > 10 * float(lam[100:].max())


def test_ex05_langevin_on_a_gaussian_samples_a_wider_gaussian() -> None:
    s2, eps, n = 1.0, 0.8, 200_000
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, dtype=torch.float64)
    for _ in range(60):
        x = langevin_step(x, -x / s2, eps, torch.randn(n, generator=g, dtype=torch.float64))
    v = s2 / (1 - eps / (4 * s2))
    assert abs(float(x.var()) - v) < 5 * v * math.sqrt(2 / n) and v > 1.2 * s2
    y = torch.ones(4, dtype=torch.float64)
    for _ in range(50):  # eps = 4 s^2 + a little: the chain diverges
        y = langevin_step(y, -y / s2, 4.2 * s2, torch.zeros(4, dtype=torch.float64))
    assert float(y.abs().min()) > 1e1


def test_ex05_plain_langevin_keeps_the_split_it_started_with() -> None:
    gmm = minidiff.GaussianMixture(
        torch.tensor([[-2.5, 0.0], [2.5, 0.0]]), stds=0.5, weights=torch.tensor([0.8, 0.2])
    )
    g = torch.Generator().manual_seed(0)
    n = 2000
    x = torch.randn(n, 2, generator=g)
    for _ in range(300):
        x = langevin_step(x, gmm.marginal_score(x, 1.0, 0.0), 0.01, torch.randn(n, 2, generator=g))
    left = float((x[:, 0] < 0).float().mean())
    assert abs(left - 0.5) < 0.06 and abs(left - 0.8) > 0.2


# --- exercise 10: frequency content -------------------------------------------------------------


def _ex10_patches() -> torch.Tensor:
    """The photo patches of exercise 10's last section: 256 crops of 32x32, seed 0, float64."""
    from minidiff.data import image_patches

    return image_patches(32, 256, generator=torch.Generator().manual_seed(0)).double()


def test_ex10_photo_spectrum_falls_as_a_power_law_by_several_hundred() -> None:
    from minidiff.frequency import power_law_fit, radial_frequencies, radial_psd

    p0 = radial_psd(_ex10_patches()).mean(dim=0)
    fit = power_law_fit(radial_frequencies(32), p0)
    assert 2.2 < fit.exponent < 2.6, fit  # "about 2.4"
    assert 200 < float(p0[1] / p0[16]) < 1000  # "a factor of several hundred" to Nyquist


def test_ex10_crossover_moves_down_an_octave_when_snr_falls_by_2_to_the_alpha() -> None:
    from minidiff.frequency import frequency_snr

    n, alpha = 1024, 2.0
    f = torch.linspace(0.02, 0.5, 200, dtype=torch.float64)
    p0 = 3.0 * f**-alpha
    for ab in (0.9, 0.7, 0.5):  # f* and f*/2 both inside the grid
        snr_t = ab / (1 - ab)
        ab_lower = (snr_t / 2**alpha) / (1 + snr_t / 2**alpha)  # SNR(t) divided by 2^alpha = 4
        f_star = math.sqrt(snr_t * 3.0 / n)  # SNR_t(f*) = 1 for P0 = 3 f^-2
        at = frequency_snr(torch.tensor([3.0 * f_star**-alpha], dtype=torch.float64), ab, n)
        p_half = torch.tensor([3.0 * (f_star / 2) ** -alpha], dtype=torch.float64)
        at_half = frequency_snr(p_half, ab_lower, n)
        assert math.isclose(float(at), 1.0, rel_tol=1e-12)
        assert math.isclose(float(at_half), 1.0, rel_tol=1e-12)
        # on the grid: the first drowned frequency halves too (to within one grid step)
        first = float(f[frequency_snr(p0, ab, n) < 1][0])
        first_lower = float(f[frequency_snr(p0, ab_lower, n) < 1][0])
        step = float(f[1] - f[0])
        assert abs(first_lower - first / 2) < 1.5 * step


def test_ex10_doubling_the_resolution_raises_coarse_snr_4_times() -> None:
    from minidiff.frequency import frequency_snr, radial_psd
    from minidiff.schedules import shifted_schedule

    x = _ex10_patches()
    up = x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # 64x64, each pixel 2x2
    p32, p64 = radial_psd(x).mean(dim=0), radial_psd(up).mean(dim=0)
    assert 15.5 < float(p64[1] / p32[1]) <= 16.0  # "power grows about 16 times" (ring 1)
    cos = minidiff.cosine_schedule(1000)
    ab = float(cos.alpha_bar[300])
    ratio = float(frequency_snr(p64[:2], ab, 64 * 64)[1] / frequency_snr(p32[:2], ab, 32 * 32)[1])
    assert 3.9 < ratio <= 4.0  # "4 times higher": log-SNR up by 2 log 2
    assert abs(math.log(ratio) - 1.39) < 0.03  # "log-SNR up by 2 log 2 = 1.39"

    # the last step at which ring 1 is readable (SNR > 1) comes later at 64x64 ...
    def last_readable(p: torch.Tensor, n: int, s: minidiff.NoiseSchedule) -> int:
        snr = frequency_snr(p[1:2], s.alpha_bar[1:], n)[:, 0]
        return int(torch.nonzero(snr > 1).flatten().max()) + 1

    t32, t64 = last_readable(p32, 32 * 32, cos), last_readable(p64, 64 * 64, cos)
    assert t64 > t32 + 20
    # ... and shifting the log-SNR by -2 log 2 gives it back (to within a few steps)
    shifted = shifted_schedule(cos, -2 * math.log(2))
    assert abs(last_readable(p64, 64 * 64, shifted) - t32) <= 3


def test_ex10_white_noise_floor_is_sigma2_n_in_every_ring_and_sigma2_with_ortho() -> None:
    from minidiff.frequency import frequency_snr, radial_psd

    n_img, sigma, H = 2000, 0.5, 32
    g = torch.Generator().manual_seed(0)
    eps = sigma * torch.randn(n_img, 3, H, H, generator=g, dtype=torch.float64)
    psd = radial_psd(eps)
    z = (psd.mean(0) - 256.0) / (psd.std(0) / math.sqrt(n_img))
    assert sigma**2 * H * H == 256.0 and float(z.abs().max()) < 4.5  # "256 in every ring"
    ortho = (torch.fft.fft2(eps, norm="ortho").abs() ** 2).mean(dim=(0, 1))  # (H, H)
    se = float(ortho.std()) / math.sqrt(n_img * 3)
    assert float((ortho - sigma**2).abs().max()) < 0.05 and abs(float(ortho.mean()) - 0.25) < 5 * se
    # the SNR does not depend on the normalisation: P0 and the floor both shrink by N
    p0 = radial_psd(_ex10_patches()[:16]).mean(dim=0)
    p0_ortho = p0 / (H * H)
    for ab in (0.2, 0.7):
        assert torch.allclose(
            frequency_snr(p0, ab, H * H), ab * p0_ortho / ((1 - ab) * 1.0), rtol=1e-12
        )
