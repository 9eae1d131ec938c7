"""Student answers to exercises 9-16 written differently from the solution: a right one passes, a
wrong one is told what it got wrong (each test pins a verdict the checkers once got wrong)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from minidiff.checks import ch11, ch13


def _attention_sdpa(
    h: torch.Tensor,
    w_qkv: torch.Tensor,
    b_qkv: torch.Tensor,
    w_proj: torch.Tensor,
    b_proj: torch.Tensor,
) -> torch.Tensor:
    B, C, H, W = h.shape
    seq = h.flatten(2).transpose(1, 2)  # (B, HW, C)
    q, k, v = F.linear(seq, w_qkv, b_qkv).chunk(3, dim=-1)
    out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
    return F.linear(out, w_proj, b_proj).transpose(1, 2).reshape(B, C, H, W)


def test_attention_through_scaled_dot_product_attention_is_accepted() -> None:
    # the key bias's true gradient is zero; float32 rounding there (about 1e-6) once failed this
    # right answer with "a wrong gradient reaches `b_qkv`"
    result = ch11.check_attention(_attention_sdpa, display=False)
    assert result.passed, result.message


def test_attention_with_a_detached_bias_is_still_refused() -> None:
    def detached(h, w_qkv, b_qkv, w_proj, b_proj):  # type: ignore[no-untyped-def]
        return _attention_sdpa(h, w_qkv, b_qkv.detach(), w_proj, b_proj)

    result = ch11.check_attention(detached, display=False)
    assert not result.passed
    assert "`b_qkv`" in result.message


def test_attention_that_changes_its_input_bias_is_refused() -> None:
    def in_place(x, wqkv, bqkv, wo, bo):  # type: ignore[no-untyped-def]
        out = _attention_sdpa(x, wqkv, bqkv, wo, bo)
        with torch.no_grad():
            bqkv.mul_(2.0)
        return out

    result = ch11.check_attention(in_place, display=False)
    assert not result.passed
    assert "in place" in result.message and "`bqkv`" in result.message  # the student's own name


def test_latent_scale_with_the_population_std_is_accepted() -> None:
    # np.std's default (ddof=0) is "the std of all entries" as much as torch's unbiased one; on
    # the old cases of 128 to 1024 entries the two differed by 1/(2n) > rtol and it was refused
    for fn in (
        lambda z: 1.0 / z.std(correction=0).item(),
        lambda z: float(1.0 / np.std(z.numpy())),
        lambda z: 1.0 / float(((z - z.mean()) ** 2).mean().sqrt()),
    ):
        result = ch13.check_latent_scale_factor(fn, display=False)
        assert result.passed, result.message


def test_latent_scale_from_the_uncentred_root_mean_square_is_named() -> None:
    result = ch13.check_latent_scale_factor(
        lambda z: 1.0 / float(z.pow(2).mean().sqrt()), display=False
    )
    assert not result.passed
    assert result.mistake == "root_mean_square"
