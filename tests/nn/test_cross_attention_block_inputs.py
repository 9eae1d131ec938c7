"""CrossAttentionBlock names its own arguments: ``heads`` in the constructor, ``h`` in forward.

``CrossAttentionBlock(16, 6, heads=3)`` said "query_dim (16) must be divisible by heads (3), or
give head_dim" (neither query_dim nor head_dim is an argument of the block); a 3-D ``h`` failed
with Python's "not enough values to unpack", a non-tensor ``h`` with an AttributeError, and a
feature map with the wrong channel count inside GroupNorm.
"""

import pytest
import torch

from minidiff.nn import CrossAttentionBlock


def test_heads_that_do_not_divide_the_channels_are_named() -> None:
    with pytest.raises(ValueError, match=r"^heads must divide channels \(16\).*heads=3"):
        CrossAttentionBlock(16, 6, heads=3, groups=4)
    with pytest.raises(TypeError, match="^heads must be an int"):
        CrossAttentionBlock(16, 6, heads=2.0, groups=4)
    assert CrossAttentionBlock(16, 6, heads=4, groups=4).attn.heads == 4


@pytest.mark.parametrize(
    "h, exc",
    [
        (torch.randn(2, 16, 4), ValueError),  # no width
        (torch.randn(2, 8, 4, 4), ValueError),  # wrong channel count
        ("h", TypeError),
        ([torch.randn(2, 16, 4, 4)], TypeError),
    ],
)
def test_a_feature_map_of_the_wrong_kind_or_shape_is_named_h(h: object, exc: type) -> None:
    block = CrossAttentionBlock(16, 6, groups=4)
    with pytest.raises(exc, match=r"^h must be"):
        block(h, torch.randn(2, 3, 6))


def test_a_good_call_is_unchanged() -> None:
    torch.manual_seed(0)
    block = CrossAttentionBlock(16, 6, heads=2, groups=4)
    torch.nn.init.normal_(block.attn.to_out.weight)
    h, context = torch.randn(2, 16, 4, 4), torch.randn(2, 3, 6)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    tokens = block.norm(h).flatten(2).transpose(1, 2)
    want = h + block.attn(tokens, context, mask).transpose(1, 2).reshape(2, 16, 4, 4)
    assert torch.equal(block(h, context, mask), want)
