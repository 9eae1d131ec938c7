"""Exercise 10 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

import torch

from minidiff.checks import ch10


def _radial_psd_sum_then_divide(
    x: torch.Tensor, acc_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The hint's way: integer radius once, then ``index_add_`` and ``bincount`` (no fftshift:
    the radius is measured with ``fftfreq``). ``acc_dtype`` overrides the accumulator's dtype."""
    B, C, H, _ = x.shape
    K = H // 2 + 1
    power = (torch.fft.fft2(x).abs() ** 2).mean(dim=1).reshape(B, H * H)
    k = torch.fft.fftfreq(H, d=1.0 / H)
    r = (k[:, None] ** 2 + k[None, :] ** 2).sqrt().round().long().flatten()
    keep = r < K
    dtype = power.dtype if acc_dtype is None else acc_dtype
    sums = torch.zeros(B, K, dtype=dtype).index_add_(1, r[keep], power[:, keep].to(dtype))
    return sums / torch.bincount(r[keep], minlength=K).to(dtype)


def test_cases_hold_float64_and_float32_inputs() -> None:
    for name in ("radial_psd", "noised_psd", "frequency_snr"):
        spec = ch10.SPECS[name]
        assert spec.keep_dtype, name
        dtypes = {args[0].dtype for args, _ in spec.cases()}
        assert dtypes == {torch.float64, torch.float32}, (name, dtypes)


def test_a_correct_variant_is_accepted_in_both_dtypes() -> None:
    res = ch10.check_radial_psd(_radial_psd_sum_then_divide, display=False)
    assert res.passed, res.message


def test_a_spectrum_in_the_default_dtype_is_told_to_keep_the_data_dtype() -> None:
    # a float32 accumulator (torch.zeros' default) for float64 images: right to 1e-7, wrong dtype
    res = ch10.check_radial_psd(
        lambda x: _radial_psd_sum_then_divide(x, torch.float32), display=False
    )
    assert not res.passed and "should stay torch.float64" in res.message, res.message
    # and float64 arithmetic on float32 images
    res = ch10.check_radial_psd(
        lambda x: _radial_psd_sum_then_divide(x, torch.float64), display=False
    )
    assert not res.passed and "should stay torch.float32" in res.message, res.message


def test_noised_psd_and_snr_that_promote_to_float64_are_rejected() -> None:
    res = ch10.check_noised_psd(lambda p, ab, n: ab * p.double() + (1 - ab) * n, display=False)
    assert not res.passed and "should stay torch.float32" in res.message, res.message
    ab_t = lambda ab: torch.tensor([ab], dtype=torch.float64)  # noqa: E731 - a (1,) tensor promotes
    res = ch10.check_frequency_snr(
        lambda p, ab, n: ab_t(ab) * p / ((1 - ab_t(ab)) * n), display=False
    )
    assert not res.passed and "should stay torch.float32" in res.message, res.message
