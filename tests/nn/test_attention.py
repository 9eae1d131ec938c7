"""Cross-attention: the formula, multi-head shapes, masks, and a cross-check against torch's MHA."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from minidiff.nn.attention import CrossAttention, CrossAttentionBlock, attention, check_context


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_attention_is_softmax_of_scaled_scores_over_the_keys() -> None:
    q = torch.randn(2, 3, 6, 8, generator=_g(0), dtype=torch.float64)
    k = torch.randn(2, 3, 5, 8, generator=_g(1), dtype=torch.float64)
    v = torch.randn(2, 3, 5, 4, generator=_g(2), dtype=torch.float64)
    out, w = attention(q, k, v)
    assert out.shape == (2, 3, 6, 4) and w.shape == (2, 3, 6, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 6, dtype=torch.float64))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    manual = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(8))
    torch.testing.assert_close(w, manual / manual.sum(-1, keepdim=True))


def test_masked_keys_get_zero_weight() -> None:
    q, k, v = (torch.randn(2, 4, 8, generator=_g(i)) for i in range(3))
    mask = torch.tensor([[True, True, False, True], [True, False, False, False]])[:, None, :]
    out, w = attention(q, k, v, mask)
    assert (w[0, :, 2] == 0).all() and (w[1, :, 1:] == 0).all()
    torch.testing.assert_close(out[1], v[1, :1].expand(4, 8))  # only one key left: its value
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_sqrt_d_keeps_the_logits_at_unit_variance() -> None:
    # q, k with unit-variance entries: q.k sums d products, so its variance is d; /sqrt(d) -> 1
    for d in (4, 64, 256):
        q = torch.randn(4000, d, generator=_g(d))
        k = torch.randn(4000, d, generator=_g(d + 1))
        dots = (q * k).sum(1)
        assert abs(dots.var().item() / d - 1) < 0.1
        assert abs((dots / math.sqrt(d)).var().item() - 1) < 0.1


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_cross_attention_matches_torch_multihead_attention(heads: int) -> None:
    torch.manual_seed(0)
    ours = CrossAttention(16, 12, heads=heads)
    with torch.no_grad():
        ours.to_out.bias.zero_()
    mha = torch.nn.MultiheadAttention(16, heads, bias=False, kdim=12, vdim=12, batch_first=True)
    with torch.no_grad():
        mha.q_proj_weight.copy_(ours.to_q.weight)
        mha.k_proj_weight.copy_(ours.to_k.weight)
        mha.v_proj_weight.copy_(ours.to_v.weight)
        mha.out_proj.weight.copy_(ours.to_out.weight)
    x, ctx = torch.randn(3, 10, 16, generator=_g(1)), torch.randn(3, 7, 12, generator=_g(2))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 5:] = False
    expected, _ = mha(x, ctx, ctx, key_padding_mask=~mask)  # torch: True = ignore
    torch.testing.assert_close(ours(x, ctx, mask), expected, atol=1e-5, rtol=1e-5)


def test_kept_weights_give_the_same_output_and_one_map_per_head() -> None:
    torch.manual_seed(0)
    attn = CrossAttention(16, 12, heads=4)
    x, ctx = torch.randn(2, 9, 16, generator=_g(1)), torch.randn(2, 3, 12, generator=_g(2))
    fast = attn(x, ctx)
    attn.keep_weights = True
    slow = attn(x, ctx)
    torch.testing.assert_close(fast, slow, atol=1e-6, rtol=1e-5)
    assert attn.weights is not None and attn.weights.shape == (2, 4, 9, 3)
    torch.testing.assert_close(attn.weights.sum(-1), torch.ones(2, 4, 9))


def test_queries_come_from_the_image_and_keys_values_from_the_context() -> None:
    torch.manual_seed(0)
    attn = CrossAttention(8, 5, heads=2)
    x, ctx = torch.randn(1, 6, 8, requires_grad=True), torch.randn(1, 4, 5, requires_grad=True)
    attn(x, ctx).sum().backward()
    assert x.grad is not None and ctx.grad is not None
    assert attn.to_q.weight.shape == (8, 8) and attn.to_k.weight.shape == (8, 5)
    with pytest.raises(ValueError, match="context_dim=5"):  # K/V read the context's width 5
        attn(x, x)
    with pytest.raises(ValueError, match=r"x must be queries of shape \(B, N, query_dim=8\)"):
        attn(ctx, ctx)


def test_block_keeps_the_feature_map_shape_and_starts_as_identity() -> None:
    block = CrossAttentionBlock(16, 12, heads=2, groups=4)
    h = torch.randn(2, 16, 4, 6, generator=_g(0))
    ctx = torch.randn(2, 77, 12, generator=_g(1))
    assert torch.equal(block(h, ctx), h)
    with torch.no_grad():
        block.attn.to_out.weight.normal_()
    out = block(h, ctx)
    assert out.shape == h.shape and (out - h).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("context", "mask", "error", "words"),
    [
        ([1.0], None, TypeError, "torch.Tensor"),
        (torch.zeros(2, 3, 4, dtype=torch.long), None, TypeError, "token embeddings"),
        (torch.zeros(2, 3), None, ValueError, "(B, L, 4) = (2, L, 4)"),
        (torch.zeros(2, 0, 4), None, ValueError, "(B, L, 4)"),
        (torch.zeros(2, 3, 5), None, ValueError, "context_dim=4"),
        (torch.zeros(2, 3, 4), torch.ones(2, 3), TypeError, "boolean"),
        (torch.zeros(2, 3, 4), torch.ones(2, 2, dtype=torch.bool), ValueError, "(2, 3)"),
    ],
)
def test_check_context_names_the_problem(
    context: object, mask: object, error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        check_context(context, 2, 4, mask)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("args", "words"),
    [((16, 12, 0), "heads"), ((15, 12, 2), "divisible"), ((16, 0, 1), "context_dim")],
)
def test_bad_cross_attention_sizes(args: tuple[int, int, int], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CrossAttention(*args)


_X, _CTX = torch.randn(2, 5, 8, generator=_g(0)), torch.randn(2, 3, 6, generator=_g(1))
_H = torch.randn(2, 8, 3, 3, generator=_g(2))


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda a, b: a(_X.double(), _CTX.double()), TypeError, "x has dtype torch.float64"),
        (lambda a, b: a(_X, _CTX.double()), TypeError, "context has dtype torch.float64"),
        (lambda a, b: b(_H.double(), _CTX), TypeError, "h has dtype torch.float64"),
        (lambda a, b: b(_H, _CTX.double()), TypeError, "context has dtype torch.float64"),
        (lambda a, b: a(_X, _CTX, torch.ones(2, 3)), TypeError, "mask must be a boolean"),
        (lambda a, b: b(_H, _CTX, torch.ones(2, 3)), TypeError, "mask must be a boolean"),
        (
            lambda a, b: a(_X, _CTX, torch.ones(2, 4, dtype=torch.bool)),
            ValueError,
            "mask must have shape (B, L) = (2, 3)",
        ),
        (
            lambda a, b: b(_H, _CTX, torch.zeros(2, 3, dtype=torch.bool)),
            ValueError,
            "mask has a row with no True entry",
        ),
    ],
)
def test_cross_attention_names_its_own_arguments(call: object, error: type, words: str) -> None:
    """The forward passes name ``mask`` (their parameter), not the U-Net's ``context_mask``, and
    refuse inputs in another dtype than the weights before any matrix product."""
    torch.manual_seed(0)
    attn, block = CrossAttention(8, 6, heads=2), CrossAttentionBlock(8, 6, heads=2, groups=4)
    with pytest.raises(error) as info:
        call(attn, block)  # type: ignore[operator]
    assert str(info.value).startswith(words)
    # the U-Net's parameter keeps its name, and a float64 module takes float64 inputs
    with pytest.raises(TypeError, match="^context_mask must be a boolean"):
        check_context(_CTX, 2, 6, torch.ones(2, 3))
    with torch.autocast("cpu", torch.bfloat16):  # autocast casts single precision, not double
        assert attn(_X, _CTX).dtype == torch.bfloat16
        with pytest.raises(TypeError, match="^x has dtype torch.float64"):
            attn(_X.double(), _CTX)
    assert attn.double()(_X.double(), _CTX.double()).dtype == torch.float64
