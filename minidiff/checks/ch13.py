"""Checkers for exercise 13: cross-attention, the latent scale, classifier-free guidance on images.

The student writes:

- ``cross_attention(x, context, mask, w_q, w_k, w_v, heads) -> (B, N, heads d)``: queries from
  ``x (B, N, C)``, keys and values from ``context (B, L, D)``, ``heads`` heads of width
  ``d = w_q.shape[1] // heads``, ``softmax(Q K^T / sqrt(d))`` over the keys, padding (``mask``
  False) left out with the most negative finite score (the exercise's advice: ``-inf`` would turn
  some wrong answers into NaN, which the checker could not name), heads concatenated (no output
  projection). Checked in float32 and float64,
  with the gradient reaching the weights (it is a layer of a network that trains).
- ``latent_scale_factor(latents) -> float``: ``1 / std`` over all entries.
- ``encode_latents(encoder, x, scale) = scale * encoder(x)`` and
  ``decode_latents(decoder, z0, scale) = decoder(z0 / scale)`` around a tiny autoencoder.
- ``cfg_image_eps(model, x_t, t, y, w, null_label)``: ``(1 + w) eps(x_t, t, y) - w eps(x_t, t, ∅)``
  for a class-conditional ``minidiff.nn.UNet`` on images, run under ``torch.no_grad()`` as a
  sampler runs it, in float32 and float64.

References are minidiff's own (:func:`minidiff.nn.attention.attention`,
:func:`minidiff.latent.latent_scale`, :func:`minidiff.classifier_free_guidance`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..latent import latent_scale
from ..nn.attention import attention
from ..nn.autoencoder import AutoencoderKL
from ..nn.unet import UNet
from ._calls import own_rng, seeded, under_no_grad
from ._cfg import cfg_slip, reference_cfg
from ._core import Case, Checker, Mistake, Spec, returned_number, specs_of

Fn = Callable[..., Any]


# --- cross_attention ---------------------------------------------------------------------------


class _Weights(nn.Module):
    """The three projections as parameters, so that the checker can follow their gradients."""

    def __init__(self, c: int, d_ctx: int, inner: int, seed: int, dtype: torch.dtype) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w_q = nn.Parameter(torch.randn(c, inner, generator=g, dtype=dtype) / math.sqrt(c))
        self.w_k = nn.Parameter(
            torch.randn(d_ctx, inner, generator=g, dtype=dtype) / math.sqrt(d_ctx)
        )
        self.w_v = nn.Parameter(
            torch.randn(d_ctx, inner, generator=g, dtype=dtype) / math.sqrt(d_ctx)
        )


@own_rng
def _cases_attn() -> list[Case]:
    cases: list[Case] = []
    # the context has the image's width, so that K, V taken from the image still run (and are named)
    for i, (B, N, L, C, inner, heads, dtype) in enumerate(
        [(2, 6, 4, 8, 8, 2, torch.float32), (3, 5, 3, 6, 12, 3, torch.float64),
         (2, 4, 5, 4, 8, 1, torch.float64), (1, 9, 4, 8, 16, 4, torch.float32)]
    ):  # fmt: skip
        g = torch.Generator().manual_seed(20 + i)
        x = 2.0 * torch.randn(B, N, C, generator=g, dtype=dtype)
        ctx = 2.0 * torch.randn(B, L, C, generator=g, dtype=dtype)
        mask = torch.ones(B, L, dtype=torch.bool)
        for b in range(B):  # one padding token per prompt, at different places
            mask[b, (b + L - 1) % L] = False
        cases.append(((_Weights(C, C, inner, 30 + i, dtype), x, ctx, mask, heads), {}))
    return cases


def _attn_harness(fn: Fn) -> Fn:
    """Call ``fn(x, context, mask, w_q, w_k, w_v, heads)`` with the case's weight parameters."""

    def run(weights: _Weights, x: Tensor, ctx: Tensor, mask: Tensor, heads: int) -> Any:
        return fn(x, ctx, mask, weights.w_q, weights.w_k, weights.w_v, heads)

    return run


def _heads(z: Tensor, heads: int) -> Tensor:  # (B, n, heads d) -> (B, heads, n, d)
    return z.unflatten(-1, (heads, z.shape[-1] // heads)).transpose(1, 2)


def _ref_attn(
    x: Tensor, ctx: Tensor, mask: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, heads: int
) -> Tensor:
    q, k, v = _heads(x @ w_q, heads), _heads(ctx @ w_k, heads), _heads(ctx @ w_v, heads)
    out, _ = attention(q, k, v, mask[:, None, None, :])
    return out.transpose(1, 2).flatten(2)


def _attn_variant(kind: str) -> Fn:
    def fn(
        x: Tensor, ctx: Tensor, mask: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, heads: int
    ) -> Tensor:
        source = x if kind == "kv_from_image" else ctx
        h = 1 if kind == "one_head" else heads
        q, k, v = _heads(x @ w_q, h), _heads(source @ w_k, h), _heads(source @ w_v, h)
        d = q.shape[-1]
        scale = {
            "no_sqrt_d": 1.0,
            "divide_by_d": float(d),
            "sqrt_full_width": math.sqrt(w_q.shape[1]),
        }
        scores = q @ k.transpose(-1, -2) / scale.get(kind, math.sqrt(d))
        keep = mask[:, None, None, :]
        if kind == "kv_from_image":
            keep = torch.ones_like(scores, dtype=torch.bool)
        elif kind == "mask_ignored":
            keep = torch.ones_like(keep)
        elif kind == "mask_inverted":
            keep = ~keep
        scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
        w = torch.softmax(scores, dim=-2 if kind == "softmax_over_queries" else -1)
        return (w @ v).transpose(1, 2).flatten(2)

    return fn


_ATTN = Spec(
    _cases_attn,
    _attn_harness(_ref_attn),
    {
        "softmax_over_queries": Mistake(
            _attn_variant("softmax_over_queries"),
            "your softmax runs over the wrong axis (the queries, dim=-2). Each image position "
            "(a row of Q K^T) chooses among the *tokens*: softmax over the last axis, the keys, so "
            "that every row of the attention matrix sums to 1.",
        ),
        "no_sqrt_d": Mistake(
            _attn_variant("no_sqrt_d"),
            "the scores are not scaled: divide Q K^T by sqrt(d), d the width of one head. With "
            "unit-variance entries q·k has variance d, and the softmax saturates as d grows.",
        ),
        "divide_by_d": Mistake(
            _attn_variant("divide_by_d"),
            "you divided by d; the scale is sqrt(d), which brings the variance d of q·k back to 1.",
        ),
        "sqrt_full_width": Mistake(
            _attn_variant("sqrt_full_width"),
            "you scaled by the square root of the full width (heads * d); each head's dot product "
            "sums only d = width // heads terms, so divide by sqrt(d).",
        ),
        "one_head": Mistake(
            _attn_variant("one_head"),
            "you computed one attention over the full width: split Q, K and V into `heads` "
            "heads of width d (reshape to (B, heads, n, d)), attend in each, then concatenate.",
        ),
        "kv_from_image": Mistake(
            _attn_variant("kv_from_image"),
            "your keys and values come from the image x: that is self-attention. In "
            "cross-attention only the queries come from the image; K = context W_K and "
            "V = context W_V come from the condition tokens.",
        ),
        "mask_ignored": Mistake(
            _attn_variant("mask_ignored"),
            "the mask is ignored: padding tokens (mask False) must get weight 0 — set their "
            "scores to -inf before the softmax.",
        ),
        "mask_inverted": Mistake(
            _attn_variant("mask_inverted"),
            "the mask is inverted: True marks a real token to attend to, False the padding to "
            "leave out (scores.masked_fill(~mask, -inf)).",
        ),
    },
    wrap=_attn_harness,
    keep_dtype=True,
    grad=True,
    grad_hint="Keep every step a tensor operation on the weights (no .detach(), no no_grad).",
    doc="Check ``cross_attention(x, context, mask, w_q, w_k, w_v, heads) -> (B, N, heads d)``.",
)
check_cross_attention = Checker("cross_attention", _ATTN)


# --- latent_scale_factor -----------------------------------------------------------------------


@own_rng
def _cases_scale() -> list[Case]:
    cases: list[Case] = []
    # at least 20000 entries each: the sample std (torch's default) and the population std
    # (np.std's default, ``correction=0``) then agree to 1/(2n) < rtol, and both answers pass; the
    # exercise asks for "the std of all entries", an estimate, not for one of its two conventions
    for i, (std, shape) in enumerate(
        [(5.49, (80, 4, 8, 8)), (0.3, (40, 2, 16, 16)), (2.0, (320, 4, 4, 4))]
    ):
        g = torch.Generator().manual_seed(40 + i)
        z = 0.5 + std * torch.randn(shape, generator=g)
        z[:, 0] += 1.0  # channels with different means: the std is over every entry at once
        cases.append(((z,), {}))
    return cases


def _as_number(fn: Fn) -> Fn:
    def run(latents: Tensor) -> Tensor:
        value = returned_number(fn(latents), "the scale as a Python float")
        return torch.tensor(value, dtype=torch.float64)

    return run


_SCALE = Spec(
    _cases_scale,
    _as_number(latent_scale),
    {
        "std_not_inverse": Mistake(
            lambda z: float(z.std()),
            "you returned the standard deviation itself; the scale is its inverse, s = 1 / std(z), "
            "so that s * z has unit standard deviation (SD: 1 / 5.49 = 0.18215).",
        ),
        "inverse_variance": Mistake(
            lambda z: float(1.0 / z.var()),
            "you divided by the variance; the scale is 1 / std(z) (multiplying z by s multiplies "
            "its variance by s², so s² = 1 / Var z).",
        ),
        "inverse_mean_abs": Mistake(
            lambda z: float(1.0 / z.abs().mean()),
            "you used the mean absolute value; the scale is 1 / std(z), the standard deviation "
            "over all entries.",
        ),
        "root_mean_square": Mistake(
            lambda z: float(1.0 / z.pow(2).mean().sqrt()),
            "you divided by the root mean square √(mean z²); the standard deviation subtracts the "
            "mean first, √(mean (z − mean z)²) = z.std(), and these latents are not centred.",
        ),
        "per_channel_first": Mistake(
            lambda z: float(1.0 / z.std(dim=(0, 2, 3)).mean()),
            "you combined per-channel standard deviations; take one std over every entry of the "
            "latents (z.std()), as Stable Diffusion does.",
        ),
    },
    wrap=_as_number,
    rtol=1e-4,
    doc="Check ``latent_scale_factor(latents) -> float`` (``1 / std`` over all entries).",
)
check_latent_scale_factor = Checker("latent_scale_factor", _SCALE)


# --- encode_latents / decode_latents -----------------------------------------------------------


def _tiny_autoencoder(seed: int, dtype: torch.dtype) -> AutoencoderKL:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ae = AutoencoderKL(1, 2, (4, 8), groups=4, image_size=8).to(dtype).eval()
    return ae.requires_grad_(False)


class _Encoder(nn.Module):
    """The mean of ``q(z | x)`` of a tiny autoencoder: ``(B, 1, 8, 8) -> (B, 2, 4, 4)``."""

    def __init__(self, ae: AutoencoderKL) -> None:
        super().__init__()
        self.ae = ae

    def forward(self, x: Tensor) -> Tensor:
        return self.ae.encode(x).mean


class _Decoder(nn.Module):
    """The tiny autoencoder's decoder: ``(B, 2, 4, 4) -> (B, 1, 8, 8)``."""

    def __init__(self, ae: AutoencoderKL) -> None:
        super().__init__()
        self.ae = ae

    def forward(self, z: Tensor) -> Tensor:
        return self.ae.decode(z)


def _cases_codec(kind: str) -> Callable[[], list[Case]]:
    @own_rng
    def build() -> list[Case]:
        cases: list[Case] = []
        for i, (scale, dtype) in enumerate(
            [(0.18215, torch.float32), (2.5, torch.float64), (0.6, torch.float32)]
        ):
            ae = _tiny_autoencoder(50 + i, dtype)
            g = torch.Generator().manual_seed(60 + i)
            if kind == "encode":
                x = torch.rand(3, 1, 8, 8, generator=g, dtype=dtype) * 2 - 1
                cases.append(((_Encoder(ae), x, scale), {}))
            else:
                z0 = torch.randn(3, 2, 4, 4, generator=g, dtype=dtype)
                cases.append(((_Decoder(ae), z0, scale), {}))
        return cases

    return build


_ENCODE = Spec(
    _cases_codec("encode"),
    under_no_grad(lambda enc, x, s: s * enc(x)),
    {
        "not_scaled": Mistake(
            lambda enc, x, s: enc(x),
            "the latents are not scaled on the way in: the scale is applied on decode but not on "
            "encode. The diffusion model must see z0 = scale * E(x) (unit variance), and the "
            "decoder undoes it with D(z0 / scale).",
        ),
        "divided": Mistake(
            lambda enc, x, s: enc(x) / s,
            "you divided by the scale on the way in; encode multiplies, z0 = scale * E(x), and "
            "decode divides, D(z0 / scale).",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    doc="Check ``encode_latents(encoder, x, scale) = scale * encoder(x)``.",
)
check_encode_latents = Checker("encode_latents", _ENCODE)

_DECODE = Spec(
    _cases_codec("decode"),
    under_no_grad(lambda dec, z0, s: dec(z0 / s)),
    {
        "not_unscaled": Mistake(
            lambda dec, z0, s: dec(z0),
            "the sampled latents go to the decoder still scaled: undo the scale first, "
            "x = D(z0 / scale) — the decoder was trained on unscaled latents.",
        ),
        "multiplied": Mistake(
            lambda dec, z0, s: dec(z0 * s),
            "you multiplied by the scale on the way out; decode divides, D(z0 / scale), to undo "
            "the z0 = scale * E(x) of encoding.",
        ),
        "scaled_output": Mistake(
            lambda dec, z0, s: dec(z0) / s,
            "you divided the decoded image by the scale; the scale belongs to the latent: "
            "D(z0 / scale), not D(z0) / scale (the decoder is not linear).",
        ),
    },
    wrap=under_no_grad,
    keep_dtype=True,
    doc="Check ``decode_latents(decoder, z0, scale) = decoder(z0 / scale)``.",
)
check_decode_latents = Checker("decode_latents", _DECODE)


# --- cfg_image_eps -----------------------------------------------------------------------------


def _tiny_unet(seed: int, dtype: torch.dtype) -> UNet:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = UNet("tiny", num_classes=3)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net.to(dtype).eval().requires_grad_(False)


@own_rng
def _cases_cfg() -> list[Case]:
    cases: list[Case] = []
    for i, (w, dtype) in enumerate(
        [(0.5, torch.float32), (3.0, torch.float64), (7.0, torch.float32)]
    ):
        g = torch.Generator().manual_seed(70 + i)
        x_t = torch.randn(5, 1, 8, 8, generator=g, dtype=dtype)
        t = torch.tensor([1, 250, 500, 750, 1000])
        y = torch.tensor([1, 2, 1, 0, 2])
        cases.append(((_tiny_unet(80 + i, dtype), x_t, t, y, w, 3), {}))
    return cases


def _sampler_like(fn: Fn) -> Fn:
    """Run under ``torch.no_grad()`` (as a sampler does) with the global RNG seeded."""
    return seeded(under_no_grad(fn))


_CFG = Spec(
    _cases_cfg,
    _sampler_like(reference_cfg),
    {
        "w_instead_of_1_plus_w": Mistake(
            cfg_slip("scale"),
            "you used w as the guidance *scale*: ε_∅ + w (ε_y - ε_∅). In the lectures' convention "
            "w = 0 is the conditional model: ε̃ = (1+w) ε_θ(x_t,t,y) - w ε_θ(x_t,t,∅).",
        ),
        "swapped": Mistake(
            cfg_slip("swapped"),
            "conditional and unconditional are swapped: extrapolate away from ∅ towards y, "
            "(1+w) ε_θ(x_t,t,y) - w ε_θ(x_t,t,∅).",
        ),
        "null_as_class_zero": Mistake(
            cfg_slip("null_zero"),
            "the unconditional branch used label 0, the digit 0. The null label ∅ is null_label "
            "(= the number of classes), the extra row of the U-Net's label table.",
        ),
        "dropout_at_sampling": Mistake(
            cfg_slip("dropout"),
            "you dropped labels at sampling time. Label dropout belongs to training only; when "
            "sampling, call the U-Net with y and with ∅ for every image.",
        ),
    },
    wrap=_sampler_like,
    keep_dtype=True,
    doc="Check ``cfg_image_eps(model, x_t, t, y, w, null_label)`` on a class-conditional U-Net.",
)
check_cfg_image_eps = Checker("cfg_image_eps", _CFG)


SPECS: dict[str, Spec] = specs_of(globals())
__all__ = ["SPECS", *(f"check_{name}" for name in SPECS)]
