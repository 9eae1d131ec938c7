"""Cross-attention: how a sequence of condition tokens enters an image network (chapter 13).

Scaled dot-product attention (Vaswani et al. 2017) of ``N`` queries over ``L`` keys and values,
per head of width ``d``:

    A = softmax(Q K^T / sqrt(d))     softmax over the L keys: each row of A sums to 1   (N, L)
    out = A V                                                                           (N, d)

In **cross**-attention the queries come from one sequence and the keys and values from another.
Latent diffusion (Rombach et al. 2022, Sec. 3.3) conditions its U-Net this way: with the feature
map ``h: (B, C, H, W)`` read as ``N = H W`` tokens and the condition as ``L`` tokens of width
``D`` (Stable Diffusion: CLIP's text states, ``(B, 77, 768)``),

    Q = h W_q  (B, N, heads d)      K = c W_k,  V = c W_v  (B, L, heads d)      from the condition
    out = concat_heads(softmax(Q_h K_h^T / sqrt(d)) V_h) W_o                  (B, N, C)

so every position of the image chooses, by its own query, which tokens to read. The ``sqrt(d)``
keeps the logits' variance near 1 for unit-variance q and k (their dot product sums d terms), so
the softmax neither saturates nor flattens as ``d`` grows. A boolean ``mask (B, L)`` (True = a
real token) removes padding from the softmax.

Module names follow ``diffusers`` (``to_q``, ``to_k``, ``to_v``, ``to_out``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import (
    Int,
    Number,
    check_positive_int,
    check_weights_dtype,
    checked,
    describe,
)

__all__ = [
    "attention",
    "check_context",
    "CrossAttention",
    "CrossAttentionBlock",
]


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``softmax(q k^T / sqrt(d)) v`` and the weights, written out (for teaching and for maps).

    Shapes: ``q: (..., N, d)``, ``k: (..., L, d)``, ``v: (..., L, d_v)``, ``mask``: boolean,
    broadcastable to ``(..., N, L)`` (True = attend). Returns ``out (..., N, d_v)`` and the
    weights ``(..., N, L)``, whose rows sum to 1 over the keys.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def check_context(
    context: object,
    batch_size: int,
    context_dim: int,
    mask: object = None,
    *,
    name: str = "context",
    mask_name: str | None = None,
) -> Tensor | None:
    """Validate condition tokens ``(B, L, context_dim)`` and an optional mask; return the mask.

    ``mask`` is a boolean ``(B, L)`` with at least one True per row (a row with no token to
    attend to has no softmax); ``None`` means every token is real. Messages name the tokens
    ``name`` and the mask ``mask_name`` (default ``f"{name}_mask"``, as the U-Net's
    ``context_mask``), as the caller's parameters are spelled.
    """
    mask_name = f"{name}_mask" if mask_name is None else mask_name
    expected = f"(B, L, {context_dim}) = ({batch_size}, L, {context_dim})"
    if not isinstance(context, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of condition tokens {expected}, "
            f"got {type(context).__name__}"
        )
    if not context.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor of token embeddings, got dtype {context.dtype} "
            "(encode token ids first, e.g. with a TokenEncoder)"
        )
    if context.ndim != 3 or context.shape[0] != batch_size or context.shape[1] < 1:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(context.shape)}")
    if context.shape[2] != context_dim:
        raise ValueError(
            f"{name} has tokens of width {context.shape[2]} but this network expects "
            f"context_dim={context_dim}: {name} must have shape {expected}, "
            f"got {tuple(context.shape)}"
        )
    if mask is None:
        return None
    shape = (batch_size, context.shape[1])
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(
            f"{mask_name} must be a boolean tensor {shape} (True = a real token), got {got}"
        )
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"{mask_name} must have shape (B, L) = {shape} like {name}, got {tuple(mask.shape)}"
        )
    if not bool(mask.any(dim=1).all()):
        raise ValueError(
            f"{mask_name} has a row with no True entry: every sample needs at least one token "
            "to attend to"
        )
    return mask


class CrossAttention(nn.Module):
    """Multi-head attention of ``x: (B, N, query_dim)`` over ``context: (B, L, context_dim)``.

    ``heads`` heads of width ``head_dim`` (default ``query_dim // heads``); the output has the
    query's shape ``(B, N, query_dim)``. Queries from ``x``, keys and values from ``context``;
    with ``context = x`` it is self-attention. If ``keep_weights`` is set, the last forward pass
    stores its attention weights ``(B, heads, N, L)`` in ``self.weights`` (for attention maps).
    """

    def __init__(
        self, query_dim: int, context_dim: int, heads: int = 1, head_dim: int | None = None
    ) -> None:
        super().__init__()
        for name, value in (
            ("query_dim", query_dim),
            ("context_dim", context_dim),
            ("heads", heads),
        ):
            check_positive_int(value, name)
        if head_dim is not None:
            head_dim = check_positive_int(head_dim, "head_dim")
        if head_dim is None:
            if query_dim % heads:
                raise ValueError(
                    f"query_dim ({query_dim}) must be divisible by heads ({heads}), "
                    "or give head_dim"
                )
            head_dim = query_dim // heads
        self.heads, self.head_dim, self.context_dim = heads, head_dim, context_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)
        self.keep_weights = False
        self.weights: Tensor | None = None

    def _split(self, z: Tensor) -> Tensor:  # (B, n, heads d) -> (B, heads, n, d)
        return z.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x: (B, N, query_dim)``, ``context: (B, L, context_dim)``, ``mask: (B, L)`` bool,
        ``x`` and ``context`` in the weights' dtype (a ``TypeError`` names the one that is not).
        """
        query_dim = self.to_q.in_features
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of queries, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[2] != query_dim:
            raise ValueError(
                f"x must be queries of shape (B, N, query_dim={query_dim}), got {tuple(x.shape)}"
            )
        mask = check_context(context, x.shape[0], self.context_dim, mask, mask_name="mask")
        check_weights_dtype(self.to_q.weight, "CrossAttention", x=x, context=context)
        q, k, v = (
            self._split(self.to_q(x)),
            self._split(self.to_k(context)),
            self._split(self.to_v(context)),
        )
        m = (
            None if mask is None else mask[:, None, None, :]
        )  # (B, 1, 1, L): same keys for every query
        if self.keep_weights:
            out, w = attention(q, k, v, m)
            self.weights = w.detach()
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        return self.to_out(out.transpose(1, 2).flatten(2))


def check_groups(groups: int, **channels: int) -> None:
    """The relation between a block's ``groups`` and its channel counts (``groups`` itself was
    checked by the block's ``@checked``; the default 32 is checked here too): GroupNorm splits
    the channels into ``groups`` equal groups, so ``groups`` must divide each count."""
    bad = {name: c for name, c in channels.items() if c % groups}
    if bad:
        counts = ", ".join(f"{name}={c}" for name, c in bad.items())
        raise ValueError(
            f"groups must divide the channel count ({counts}): GroupNorm splits the channels "
            f"into groups of equal size, got groups={groups}"
        )


NORM_EPS = Number(low=0.0, high=1.0)
"""The check of a GroupNorm ``eps``, shared by ``UNetConfig.norm_eps`` and the U-Net's blocks."""


class CrossAttentionBlock(nn.Module):
    """Cross-attention for a feature map: ``h (B, C, H, W)``, ``context (B, L, D)`` -> like ``h``.

        out = h + to_out(CrossAttention(GN(h) as (B, HW, C), context))

    The output projection starts at zero, so a new block is the identity (like the U-Net's
    self-attention block): conditioning is learned as a correction, not forced in at init.
    """

    @checked(  # type: ignore[misc]  # (a decorated __init__)
        channels=Int(), context_dim=Int(), heads=Int(), groups=Int(), eps=NORM_EPS
    )
    def __init__(
        self, channels: int, context_dim: int, heads: int = 1, groups: int = 32, eps: float = 1e-5
    ) -> None:
        super().__init__()
        check_groups(groups, channels=channels)
        if channels % heads:
            raise ValueError(
                f"heads must divide channels ({channels}): each head reads channels / heads of "
                f"them, got heads={heads}"
            )
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.attn = CrossAttention(channels, context_dim, heads)
        nn.init.zeros_(self.attn.to_out.weight)
        nn.init.zeros_(self.attn.to_out.bias)

    def forward(self, h: Tensor, context: Tensor, mask: Tensor | None = None) -> Tensor:
        """``h: (B, C, H, W)``, ``context: (B, L, context_dim)``, ``mask: (B, L)`` bool; ``h``
        and ``context`` in the weights' dtype (a ``TypeError`` names the one that is not)."""
        c = self.norm.num_channels
        if not isinstance(h, Tensor):
            raise TypeError(f"h must be a torch.Tensor (B, {c}, H, W), got {describe(h)}")
        if h.ndim != 4 or h.shape[1] != c:
            raise ValueError(f"h must be a feature map (B, {c}, H, W), got {tuple(h.shape)}")
        check_weights_dtype(self.norm.weight, "CrossAttentionBlock", h=h)
        b, _, hh, ww = h.shape
        tokens = self.norm(h).flatten(2).transpose(1, 2)  # (B, HW, C): positions as queries
        out = self.attn(tokens, context, mask)
        return h + out.transpose(1, 2).reshape(b, c, hh, ww)
