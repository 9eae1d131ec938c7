"""The U-Net noise predictor ``eps_theta(x_t, t)`` for images (Ho et al., 2020, Appendix B).

Shapes for a batch of ``B`` images with ``C`` channels of size ``S x S`` and
``L = len(channel_mult)`` resolution levels (``ch = base_channels``):

    emb   = MLP(sinusoidal_embedding(t, ch))        Linear -> SiLU -> Linear        (B, 4 ch)
    h     = conv_in(x)                                                              (B, ch, S, S)
    down  level i: n_res x [ResBlock (+ Attention at attn_resolutions)], then a
          stride-2 conv except after the last level                 (B, ch*mult_i, S/2^i, S/2^i)
    mid   ResBlock -> Attention -> ResBlock                         (B, ch*mult_L-1, ., .)
    up    level i (reversed): (n_res + 1) x [concat skip -> ResBlock (+ Attention)], then
          nearest x2 + conv except after level 0
    out   GroupNorm -> SiLU -> conv                                                 (B, C, S, S)

Every activation saved on the way down (``conv_in``'s output, every block's output, every
downsample's output) is concatenated back on the way up, so the output has the input's shape and
fine detail reaches the output without passing through the 4x4 bottleneck.

The DDPM CIFAR-10 network (``UNET_CONFIGS["ddpm_cifar10"]``: base 128, multipliers 1, 2, 2, 2, two
ResBlocks per level, attention at 16x16, dropout 0.1) has 35.7 M parameters.

Three conventions differ between published implementations of this same network and change its
output for the same weights; ``UNetConfig`` names each (``UNET_CONFIGS["ddpm_cifar10_diffusers"]``
sets all three as DDPM's TensorFlow code and diffusers' ``UNet2DModel`` for google/ddpm-cifar10-32
have them, so that those weights load with ``minidiff.interop.unet_from_diffusers``):

    downsample_padding  "symmetric": pad 1 on every side, then the stride-2 conv (PyTorch habit);
                        "asymmetric": pad 1 only after the last row and column (TensorFlow's "SAME"
                        for a stride-2 3x3 conv on an even size; diffusers' downsample_padding=0)
    time_features       "minidiff": [cos, sin] of t, frequencies 10000^(-k/half) (guided-diffusion);
                        "ddpm": [sin, cos] of t - 1 (DDPM's code counts steps from 0), frequencies
                        10000^(-k/(half - 1)), in float32 (diffusers' flip_sin_to_cos=False,
                        freq_shift=1)
    norm_eps            the epsilon of every GroupNorm: 1e-5 (PyTorch) or 1e-6 (DDPM, diffusers)

Conditioning (chapter 13; every kind is off by default, and an unconditional U-Net has the same
parameters, names and outputs as without it):

    labels      y: (B,) long in 0..K-1, null label K      emb += Embedding(K + 1, 4 ch)[y]
    tokens      context: (B, L, D), mask: (B, L) bool     cross-attention after every attention
                                                          block (queries from h, keys/values
                                                          from the tokens; ``nn.attention``)
    channels    x_cond: (B, C_cond, S, S)                 conv_in reads cat([x, x_cond], dim=1)
    a scalar    aug_level: (B,)                           emb += MLP(sinusoidal(aug_level))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import (
    Int,
    Number,
    OneOf,
    check_all_finite,
    check_choice,
    check_finite,
    check_labels,
    check_positive_int,
    check_weights_dtype,
    check_with,
    checked,
)
from .attention import NORM_EPS, CrossAttentionBlock, check_context, check_groups
from .mlp import sinusoidal_embedding

__all__ = [
    "UNetConfig",
    "MAX_PARAMETERS",
    "ddpm_time_features",
    "UNET_CONFIGS",
    "UNet",
    "ResBlock",
    "AttentionBlock",
    "Downsample",
    "Upsample",
    "TimeEmbedding",
    "count_parameters",
    "parameter_count",
]

TIME_INJECTIONS = ("add", "adagn")
DOWNSAMPLE_PADDINGS = ("symmetric", "asymmetric")
TIME_FEATURES = ("minidiff", "ddpm")

#: The check of a dropout probability, shared by ``UNetConfig.dropout`` and the blocks (GroupNorm's
#: eps has one too: ``attention.NORM_EPS``).
_DROPOUT = Number(low=0.0, high=1.0, low_open=False)
MAX_PARAMETERS = 2**31
"""The largest U-Net this module builds (8.6 GB of float32 weights, 4x that with AdamW's moments):
a larger one is almost always a typo (``base_channels=12800``) that would exhaust the memory."""


def _int_tuple(value: object, name: str, example: str) -> tuple[int, ...]:
    """``value`` as a tuple of ints >= 1 (a list is accepted), else a TypeError/ValueError."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(
            f"{name} must be a tuple of ints such as {example}, got {type(value).__name__} "
            f"{value!r}"
        )
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must hold ints, got {type(v).__name__} {v!r} in {value!r}")
        if v < 1:
            raise ValueError(f"{name} must hold ints >= 1, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of a ``UNet`` (validated in ``__post_init__``).

    Attributes:
        image_size: ``S``, the height and width of the square input; divisible by
            ``2 ** (len(channel_mult) - 1)``.
        in_channels: ``C``, channels of the input and of the predicted noise.
        base_channels: ``ch``, channels at the first level (a multiple of ``groups``).
        channel_mult: channels at level ``i`` are ``ch * channel_mult[i]``.
        num_res_blocks: ResBlocks per level on the way down (one more on the way up).
        attn_resolutions: feature-map sizes at which self-attention follows each ResBlock.
        dropout: dropout probability inside every ResBlock.
        groups: GroupNorm groups.
        time_injection: ``"add"`` (DDPM: add a projection of the embedding after the first conv)
            or ``"adagn"`` (adaptive GroupNorm, Dhariwal & Nichol 2021: scale and shift the second
            norm's output).
        downsample_padding: ``"symmetric"`` or ``"asymmetric"`` (see the module docstring).
        time_features: ``"minidiff"`` or ``"ddpm"`` (see the module docstring).
        norm_eps: epsilon of every GroupNorm, in ``(0, 1)``.
        num_classes: ``K >= 2`` class labels ``0..K-1`` (the label ``K`` is the null label ∅ of
            classifier-free guidance) embedded and added to the time embedding; 0 = none.
        context_dim: width ``D`` of condition tokens ``(B, L, D)`` read by cross-attention at
            every attention block (``attn_resolutions`` and the middle); 0 = none.
        heads: attention heads of the cross-attention.
        cond_channels: channels of a conditioning image concatenated to the input (e.g. the
            upsampled low-resolution image of super-resolution); 0 = none.
        aug_embedding: embed a scalar ``aug_level (B,)`` like ``t`` and add it to the time
            embedding (e.g. the noise-augmentation level of a cascade).

    Sequences may be given as lists (they are stored as tuples); a wrong type raises
    ``TypeError`` and a wrong value ``ValueError``, both naming the field.
    """

    image_size: int = 32
    in_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    groups: int = 32
    time_injection: str = "add"
    downsample_padding: str = "symmetric"
    time_features: str = "minidiff"
    norm_eps: float = 1e-5
    num_classes: int = 0
    context_dim: int = 0
    heads: int = 1
    cond_channels: int = 0
    aug_embedding: bool = False

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "base_channels", "num_res_blocks", "groups"):
            check_positive_int(getattr(self, name), name)
        mult = _int_tuple(self.channel_mult, "channel_mult", "(1, 2, 2, 2)")
        if not mult:
            raise ValueError("channel_mult must hold at least one level, got ()")
        object.__setattr__(self, "channel_mult", mult)
        object.__setattr__(
            self, "attn_resolutions", _int_tuple(self.attn_resolutions, "attn_resolutions", "(16,)")
        )
        factor = 2 ** (len(mult) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size must be divisible by 2**(len(channel_mult) - 1) = {factor} "
                f"for {len(mult)} levels, got {self.image_size}"
            )
        sizes = [self.image_size // 2**i for i in range(len(mult))]
        bad = [r for r in self.attn_resolutions if r not in sizes]
        if bad:
            raise ValueError(
                f"attn_resolutions must be feature-map sizes of this U-Net {sizes}, got {bad}"
            )
        if self.base_channels % self.groups:
            raise ValueError(
                f"base_channels ({self.base_channels}) must be a multiple of groups ({self.groups})"
            )
        check_with(_DROPOUT, self.dropout, "dropout")
        check_choice(self.time_injection, "time_injection", TIME_INJECTIONS)
        check_choice(self.downsample_padding, "downsample_padding", DOWNSAMPLE_PADDINGS)
        check_choice(self.time_features, "time_features", TIME_FEATURES)
        if self.time_features == "ddpm" and self.base_channels < 4:
            raise ValueError(
                'base_channels must be >= 4 with time_features="ddpm" (its frequencies divide '
                f"by half - 1 = base_channels // 2 - 1), got {self.base_channels}"
            )
        object.__setattr__(self, "norm_eps", check_with(NORM_EPS, self.norm_eps, "norm_eps"))
        self._check_conditioning()

    def _check_conditioning(self) -> None:
        for name in ("num_classes", "context_dim", "cond_channels"):
            check_positive_int(getattr(self, name), name, minimum=0)
        if self.num_classes == 1:
            raise ValueError("num_classes must be 0 (no labels) or >= 2, got 1")
        check_positive_int(self.heads, "heads")
        if self.context_dim:
            widths = sorted(set(self._cross_attention_widths()))
            bad = [c for c in widths if c % self.heads]
            if bad:
                raise ValueError(
                    f"heads ({self.heads}) must divide the channel count of every level with "
                    f"cross-attention {widths} (base_channels * channel_mult at attn_resolutions "
                    f"and the middle), got {bad} not divisible"
                )
        if not isinstance(self.aug_embedding, bool):
            raise TypeError(f"aug_embedding must be a bool, got {self.aug_embedding!r}")

    def _cross_attention_widths(self) -> list[int]:
        """Channel counts of the levels that attend to condition tokens (and of the middle)."""
        widths = [
            self.base_channels * m
            for i, m in enumerate(self.channel_mult)
            if self.image_size // 2**i in self.attn_resolutions
        ]
        return [*widths, self.base_channels * self.channel_mult[-1]]

    @property
    def conditional(self) -> bool:
        """Whether any kind of conditioning is switched on."""
        return bool(
            self.num_classes or self.context_dim or self.cond_channels or self.aug_embedding
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for checkpoints and run logs); conditioning fields only when used."""
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        for name, default in _CONDITIONING_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d


_CONDITIONING_DEFAULTS: dict[str, Any] = {
    "num_classes": 0,
    "context_dim": 0,
    "heads": 1,
    "cond_channels": 0,
    "aug_embedding": False,
}


UNET_CONFIGS: dict[str, UNetConfig] = {
    # Ho et al. (2020), CIFAR-10: 35.7 M parameters.
    "ddpm_cifar10": UNetConfig(),
    # The same network with the conventions of DDPM's code and of diffusers' google/ddpm-cifar10-32
    # (asymmetric downsampling padding, DDPM's time features, GroupNorm eps 1e-6): its weights
    # load into this configuration (minidiff.interop.unet_from_diffusers).
    "ddpm_cifar10_diffusers": UNetConfig(
        downsample_padding="asymmetric", time_features="ddpm", norm_eps=1e-6
    ),
    # A laptop-CPU version of the same shape: 32x32 RGB, about 1.1 M parameters.
    "cifar10_cpu": UNetConfig(
        base_channels=32,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(8,),
        dropout=0.0,
        groups=8,
    ),
    # scikit-learn's 8x8 digits, one channel: about 1.1 M parameters.
    "digits": UNetConfig(
        image_size=8,
        in_channels=1,
        base_channels=32,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.0,
        groups=8,
    ),
    # The smallest that still has every part (tests, fast mode).
    "tiny": UNetConfig(
        image_size=8,
        in_channels=1,
        base_channels=16,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(4,),
        dropout=0.0,
        groups=4,
    ),
}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _zero_init(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def ddpm_time_features(t: Tensor, dim: int) -> Tensor:
    """The time features of DDPM's code (and diffusers' ``flip_sin_to_cos=False, freq_shift=1``).

    With ``half = dim // 2`` and ``w_k = 10000^(-k / (half - 1))``: ``[sin((t-1) w), cos((t-1) w)]``
    (DDPM's code numbers the steps ``0..T-1``, the lectures ``1..T``), computed in float32 as that
    code does, so that weights trained on these exact values see them again.
    ``t: (B,)`` -> ``(B, dim)`` float32 (a trailing zero column when ``dim`` is odd).
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(10_000.0) * k / (half - 1))
    args = (t - 1).float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimeEmbedding(nn.Module):
    """``t: (B,)`` -> ``(B, 4 ch)``: sinusoidal features (width ``ch``), Linear, SiLU, Linear.

    ``features``: ``"minidiff"`` (:func:`~minidiff.nn.mlp.sinusoidal_embedding`) or ``"ddpm"``
    (:func:`ddpm_time_features`).
    """

    @checked(base_channels=Int(), features=OneOf(TIME_FEATURES))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, base_channels: int, features: str = "minidiff") -> None:
        super().__init__()
        if features == "ddpm" and base_channels < 4:
            raise ValueError(
                'base_channels must be >= 4 with features="ddpm" (its frequencies divide by '
                f"half - 1 = base_channels // 2 - 1), got {base_channels}"
            )
        self.base_channels = base_channels
        self.features = features
        self.mlp = nn.Sequential(
            nn.Linear(base_channels, 4 * base_channels),
            nn.SiLU(),
            nn.Linear(4 * base_channels, 4 * base_channels),
        )

    def forward(self, t: Tensor) -> Tensor:
        if self.features == "ddpm":
            if t.is_floating_point():
                check_finite(t, "t")
            emb = ddpm_time_features(t, self.base_channels)
        else:
            emb = sinusoidal_embedding(t, self.base_channels)
        return self.mlp(emb.to(next(self.mlp.parameters()).dtype))


class ResBlock(nn.Module):
    """Residual block with time conditioning: ``(B, c_in, H, W), (B, E) -> (B, c_out, H, W)``.

        h = conv(SiLU(GN(x)))
        "add":   h = h + Linear(SiLU(emb))[:, :, None, None];   h = GN(h)
        "adagn": (s, b) = Linear(SiLU(emb));                     h = GN(h) * (1 + s) + b
        h = conv(dropout(SiLU(h)))
        out = skip(x) + h        (skip is a 1x1 conv when c_in != c_out)

    GroupNorm normalises over channel groups of one example, so it behaves the same for a batch
    of 1 (sampling) as for a training batch, unlike BatchNorm.
    """

    @checked(  # type: ignore[misc]  # (a decorated __init__)
        in_channels=Int(),
        out_channels=Int(),
        emb_dim=Int(),
        dropout=_DROPOUT,
        groups=Int(),
        time_injection=OneOf(TIME_INJECTIONS),
        eps=NORM_EPS,
    )
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float = 0.0,
        groups: int = 32,
        time_injection: str = "add",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        check_groups(groups, in_channels=in_channels, out_channels=out_channels)
        self.time_injection = time_injection
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        n_emb = out_channels * (2 if time_injection == "adagn" else 1)
        self.emb_proj = nn.Linear(emb_dim, n_emb)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # The residual branch starts at zero: every block is the identity (plus skip) at init.
        _zero_init(self.conv2)
        self.skip: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.time_injection == "add":
            h = self.norm2(h + e)
        else:
            scale, shift = e.chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the ``H * W`` positions: ``(B, c, H, W) -> (B, c, H, W)``.

        q, k, v = 1x1 convs of GN(x);   out = x + proj(softmax(q^T k / sqrt(c)) v)

    Used only at low resolution: its cost grows like ``(H W)^2``.
    """

    @checked(channels=Int(), groups=Int(), eps=NORM_EPS)  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__()
        check_groups(groups, channels=channels)
        self.norm = nn.GroupNorm(groups, channels, eps=eps)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        _zero_init(self.proj)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        # (B, 1, HW, c): one head, positions as the sequence
        q, k, v = (z.transpose(1, 2).unsqueeze(1) for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve the resolution by a stride-2 3x3 convolution: ``(B, c, H, W) -> (B, c, H/2, W/2)``.

    ``padding="symmetric"`` pads one pixel on every side; ``"asymmetric"`` pads one only after the
    last row and column (TensorFlow's "SAME", as in DDPM's code): the same output size, but the
    3x3 windows sit one pixel further down and right.
    """

    @checked(channels=Int(), padding=OneOf(DOWNSAMPLE_PADDINGS))  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, channels: int, padding: str = "symmetric") -> None:
        super().__init__()
        self.padding = padding
        pad = 1 if padding == "symmetric" else 0
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=pad)

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == "asymmetric":
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2 then a 3x3 conv (no checkerboard artefacts of a
    transposed convolution): ``(B, c, H, W) -> (B, c, 2H, 2W)``."""

    @checked(channels=Int())  # type: ignore[misc]  # (a decorated __init__)
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """ResBlocks (each optionally followed by attention) at one resolution.

    With ``cross`` (a conditional U-Net), each block's cross-attention (or ``nn.Identity`` where
    there is none) is kept in ``self.cross``; an unconditional level has no such attribute, so its
    parameter names stay ``blocks.*`` and ``attns.*``.
    """

    def __init__(
        self, blocks: list[ResBlock], attns: list[nn.Module], cross: list[nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)
        if cross is not None:
            self.cross = nn.ModuleList(cross)

    def pairs(self) -> list[tuple[ResBlock, nn.Module]]:
        return [(cast(ResBlock, b), a) for b, a in zip(self.blocks, self.attns, strict=True)]

    def cross_blocks(self) -> list[nn.Module | None]:
        """Per block: its cross-attention, or None (no tokens, or no attention at this size)."""
        cross = getattr(self, "cross", None)
        if cross is None:
            return [None] * len(self.blocks)
        return [None if isinstance(c, nn.Identity) else c for c in cross]


def parameter_count(config: UNetConfig) -> int:
    """The number of weights of ``UNet(config)``, in closed form (nothing is built or allocated).

    Per part (``E = 4 ch`` the embedding width, ``k = 2`` for adaptive GroupNorm, else 1):
    ResBlock ``(c_in -> c)``: ``2 c_in + 9 c_in c + c + k (E + 1) c + 2 c + 9 c² + c`` plus a
    ``c_in c + c`` skip when ``c_in != c``; attention ``4 c² + 6 c``; a down/upsampling conv
    ``9 c² + c``; with conditioning, cross-attention ``2 c² + 2 D c + 3 c`` next to every attention,
    ``(K + 1) E`` for labels, ``9 C_cond ch`` in ``conv_in`` and a second time embedding for the
    scalar. ``tests/nn/test_unet.py`` and ``tests/nn/test_unet_conditioning.py`` check it against
    the built networks.
    """
    cfg = config
    ch, n, C = cfg.base_channels, cfg.num_res_blocks, cfg.in_channels
    emb, k = 4 * ch, (2 if cfg.time_injection == "adagn" else 1)

    def res(c_in: int, c: int) -> int:
        skip = c_in * c + c if c_in != c else 0
        return 2 * c_in + 9 * c_in * c + c + k * (emb + 1) * c + 2 * c + 9 * c * c + c + skip

    def attn(c: int) -> int:
        return 4 * c * c + 6 * c

    def cross(c: int) -> int:  # GroupNorm, to_q, to_k, to_v (no bias), to_out
        D = cfg.context_dim
        return 2 * c * c + 2 * D * c + 3 * c if D else 0

    chans = [ch * m for m in cfg.channel_mult]
    sizes = [cfg.image_size // 2**i for i in range(len(chans))]
    total = 20 * ch * ch + 8 * ch + 9 * C * ch + ch  # time embedding, conv_in
    c_prev = ch
    for i, (c, size) in enumerate(zip(chans, sizes, strict=True)):  # the way down
        a = attn(c) + cross(c) if size in cfg.attn_resolutions else 0
        total += res(c_prev, c) + (n - 1) * res(c, c) + n * a
        total += 9 * c * c + c if i < len(chans) - 1 else 0
        c_prev = c
    total += 2 * res(c_prev, c_prev) + attn(c_prev) + cross(c_prev)  # the middle
    for i in reversed(range(len(chans))):  # the way up: n + 1 blocks, each with a skip
        c, a = (
            chans[i],
            (attn(chans[i]) + cross(chans[i]) if sizes[i] in cfg.attn_resolutions else 0),
        )
        last_skip = chans[i - 1] if i > 0 else ch
        total += res(c_prev + c, c) + (n - 1) * res(2 * c, c) + res(c + last_skip, c)
        total += (n + 1) * a + (9 * c * c + c if i > 0 else 0)
        c_prev = c
    total += 9 * cfg.cond_channels * ch  # conv_in's extra input channels
    total += (cfg.num_classes + 1) * emb if cfg.num_classes else 0  # label embedding
    total += 20 * ch * ch + 8 * ch if cfg.aug_embedding else 0  # a second time embedding
    return total + 2 * c_prev + 9 * c_prev * C + C  # norm_out, conv_out


def _check_size(cfg: UNetConfig) -> None:
    """Refuse a configuration with more than :data:`MAX_PARAMETERS` weights before building it."""
    n = parameter_count(cfg)
    if n > MAX_PARAMETERS:
        raise ValueError(
            f"base_channels={cfg.base_channels} with channel_mult={cfg.channel_mult} and "
            f"num_res_blocks={cfg.num_res_blocks} gives a U-Net of {n:.2e} parameters "
            f"({4 * n / 1e9:,.0f} GB in float32); the limit is {MAX_PARAMETERS:.2e}: choose "
            "smaller values (the DDPM CIFAR-10 network has 3.57e7)"
        )


def _resolve_config(config: UNetConfig | str, overrides: dict[str, Any]) -> UNetConfig:
    """The configuration a :class:`UNet` is built from: a preset name or a ``UNetConfig``, with
    ``overrides`` (UNetConfig fields) replacing its values."""
    if isinstance(config, str):
        if config not in UNET_CONFIGS:
            raise ValueError(
                f"config must be a UNetConfig or one of {sorted(UNET_CONFIGS)}, got {config!r}"
            )
        config = UNET_CONFIGS[config]
    if not isinstance(config, UNetConfig):
        raise TypeError(f"config must be a UNetConfig or a str, got {type(config).__name__}")
    if not overrides:
        return config
    known = {f.name for f in fields(UNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown UNetConfig field(s) {unknown}; the fields are {sorted(known)}")
    return UNetConfig(**{**config.to_dict(), **overrides})


class UNet(nn.Module):
    """DDPM's U-Net ``eps_theta(x_t, t)``: ``x: (B, C, S, S)``, ``t: (B,)`` -> ``(B, C, S, S)``.

    Build it from a ``UNetConfig``, a preset name of ``UNET_CONFIGS`` or keyword overrides:
    ``UNet("digits")``, ``UNet(UNetConfig(base_channels=64))``, ``UNet("ddpm_cifar10", dropout=0)``.
    ``t`` is the integer timestep in ``1..T`` (any finite float works too).
    """

    def __init__(self, config: UNetConfig | str = "ddpm_cifar10", **overrides: Any) -> None:
        super().__init__()
        self.config = cfg = _resolve_config(config, overrides)
        _check_size(cfg)
        ch, g = cfg.base_channels, cfg.groups
        emb_dim = 4 * ch

        def res(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(
                c_in, c_out, emb_dim, cfg.dropout, g, cfg.time_injection, eps=cfg.norm_eps
            )

        tokens = cfg.context_dim > 0

        def cross(c: int, here: bool) -> nn.Module:
            if here and tokens:
                return CrossAttentionBlock(c, cfg.context_dim, cfg.heads, g, cfg.norm_eps)
            return nn.Identity()

        self.time_embed = TimeEmbedding(ch, cfg.time_features)
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, ch, 3, padding=1)

        skip_channels = [ch]
        c, size = ch, cfg.image_size
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, mult in enumerate(cfg.channel_mult):
            blocks: list[ResBlock] = []
            attns: list[nn.Module] = []
            crosses: list[nn.Module] = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(res(c, ch * mult))
                c = ch * mult
                attns.append(
                    AttentionBlock(c, g, cfg.norm_eps)
                    if size in cfg.attn_resolutions
                    else nn.Identity()
                )
                crosses.append(cross(c, size in cfg.attn_resolutions))
                skip_channels.append(c)
            self.down.append(_Level(blocks, attns, crosses if tokens else None))
            last = i == len(cfg.channel_mult) - 1
            self.downsample.append(nn.Identity() if last else Downsample(c, cfg.downsample_padding))
            if not last:
                skip_channels.append(c)
                size //= 2

        self.mid1 = res(c, c)
        self.mid_attn = AttentionBlock(c, g, cfg.norm_eps)
        if tokens:
            self.mid_cross = cross(c, True)
        self.mid2 = res(c, c)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.channel_mult))):
            blocks, attns, crosses = [], [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(res(c + skip_channels.pop(), ch * mult))
                c = ch * mult
                attns.append(
                    AttentionBlock(c, g, cfg.norm_eps)
                    if size in cfg.attn_resolutions
                    else nn.Identity()
                )
                crosses.append(cross(c, size in cfg.attn_resolutions))
            self.up.append(_Level(blocks, attns, crosses if tokens else None))
            self.upsample.append(Upsample(c) if i > 0 else nn.Identity())
            if i > 0:
                size *= 2
        assert not skip_channels

        self.norm_out = nn.GroupNorm(g, c, eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        _zero_init(self.conv_out)
        # Built last: an unconditional U-Net draws exactly the initial weights it drew before
        # conditioning existed (cross-attention, where used, sits inside the levels).
        if cfg.num_classes:
            self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_dim)
        if cfg.aug_embedding:
            self.aug_embed = TimeEmbedding(ch, cfg.time_features)

    def _check_inputs(self, x: Tensor, t: Tensor) -> None:
        cfg = self.config
        expected = f"(B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size})"
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape {expected}, got {type(x).__name__}")
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a torch.Tensor of shape (B,), got {type(t).__name__}")
        if x.ndim != 4:
            raise ValueError(f"x must have shape {expected}, got {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels but this U-Net expects in_channels="
                f"{cfg.in_channels}: x must have shape {expected}, got {tuple(x.shape)}"
            )
        if x.shape[2] != cfg.image_size or x.shape[3] != cfg.image_size:
            raise ValueError(
                f"x is {x.shape[2]}x{x.shape[3]} but this U-Net expects image_size="
                f"{cfg.image_size}: x must have shape {expected}, got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got dtype {x.dtype}")
        check_weights_dtype(self.conv_in.weight, "U-Net", x=x)
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"t must have shape (B,) = ({x.shape[0]},) matching x, got {tuple(t.shape)}"
            )
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must be an integer or floating tensor, got dtype {t.dtype}")

    @property
    def num_classes(self) -> int:
        """Number of real class labels (0 without labels); the null label ∅ is ``num_classes``."""
        return self.config.num_classes

    @property
    def null_label(self) -> int:
        """The label ∅ of the unconditional model (classifier-free guidance)."""
        if not self.config.num_classes:
            raise ValueError("this U-Net has no labels (num_classes=0), so no null label")
        return self.config.num_classes

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        y: Tensor | None = None,
        *,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        x_cond: Tensor | None = None,
        aug_level: Tensor | None = None,
    ) -> Tensor:
        """Predict the noise in ``x: (B, C, S, S)`` at timesteps ``t: (B,)`` -> ``(B, C, S, S)``.

        The conditions this U-Net was built for (see ``UNetConfig``): ``y (B,)`` labels, ``None``
        meaning the null label; ``context (B, L, context_dim)`` tokens with an optional boolean
        ``context_mask (B, L)``; ``x_cond (B, cond_channels, S, S)``; ``aug_level (B,)``.
        """
        self._check_inputs(x, t)
        y, context_mask = self._check_conditions(x, y, context, context_mask, x_cond, aug_level)
        if isinstance(aug_level, int):  # one level for the whole batch, as for y and t
            aug_level = torch.full((x.shape[0],), aug_level, device=x.device)
        # every float input finite, in one synchronisation
        check_all_finite(
            (x, "x"), (context, "context"), (x_cond, "x_cond"), (aug_level, "aug_level")
        )
        emb = self.time_embed(t)
        if y is not None:
            emb = emb + self.label_embed(y)
        if aug_level is not None:
            emb = emb + self.aug_embed(aug_level)
        h = self.conv_in(x if x_cond is None else torch.cat([x, x_cond.to(x.dtype)], dim=1))
        skips = [h]
        for level, down in zip(self.down, self.downsample, strict=True):
            lvl = cast(_Level, level)
            for (block, attn), cross in zip(lvl.pairs(), lvl.cross_blocks(), strict=True):
                h = attn(block(h, emb))
                if cross is not None:
                    h = cross(h, context, context_mask)
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self.mid_attn(self.mid1(h, emb))
        if context is not None:
            h = self.mid_cross(h, context, context_mask)
        h = self.mid2(h, emb)
        for level, up in zip(self.up, self.upsample, strict=True):
            lvl = cast(_Level, level)
            for (block, attn), cross in zip(lvl.pairs(), lvl.cross_blocks(), strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
                if cross is not None:
                    h = cross(h, context, context_mask)
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _check_conditions(
        self,
        x: Tensor,
        y: object,
        context: object,
        context_mask: object,
        x_cond: object,
        aug_level: object,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Check each condition against the config; return the labels (∅ for None) and mask."""
        cfg, B = self.config, x.shape[0]
        given = {"y": y, "context": context, "x_cond": x_cond, "aug_level": aug_level}
        wanted = {
            "y": "num_classes",
            "context": "context_dim",
            "x_cond": "cond_channels",
            "aug_level": "aug_embedding",
        }
        for arg, field_name in wanted.items():
            if given[arg] is not None and not getattr(cfg, field_name):
                raise ValueError(
                    f"{arg} was given but this U-Net takes no {arg} ({field_name}="
                    f"{getattr(cfg, field_name)!r}); build it with UNetConfig({field_name}=...)"
                )
        if context_mask is not None and context is None:
            raise ValueError("context_mask was given without context")
        labels = None
        if cfg.num_classes:
            labels = check_labels(
                cfg.num_classes if y is None else y, B, cfg.num_classes, allow_null=True
            ).to(x.device)
        mask = None
        if cfg.context_dim:
            if context is None:
                raise ValueError(
                    f"context is required: this U-Net cross-attends to condition tokens "
                    f"(B, L, {cfg.context_dim}) (for the unconditional model pass the encoded "
                    "null prompt)"
                )
            mask = check_context(context, B, cfg.context_dim, context_mask)
            if cast(Tensor, context).dtype != x.dtype:
                raise TypeError(
                    f"context has dtype {cast(Tensor, context).dtype} but x has {x.dtype}: encode "
                    f"the tokens in the model's dtype (context.to({x.dtype}))"
                )
        if cfg.cond_channels:
            _check_x_cond(x_cond, x, cfg)
        if cfg.aug_embedding:
            _check_aug_level(aug_level, B)
        return labels, mask

    def parameter_table(self) -> list[tuple[str, int]]:
        """``[(part, n_params), ...]``: embedding, input conv, each level (cross-attention
        included), middle, output, then the label and augmentation embeddings if any."""
        rows = [
            ("time_embed", count_parameters(self.time_embed)),
            ("conv_in", count_parameters(self.conv_in)),
        ]
        for i, (level, down) in enumerate(zip(self.down, self.downsample, strict=True)):
            rows.append((f"down[{i}]", count_parameters(level) + count_parameters(down)))
        mid = [self.mid1, self.mid_attn, self.mid2] + [
            m for m in (getattr(self, "mid_cross", None),) if m is not None
        ]
        rows.append(("mid", sum(count_parameters(m) for m in mid)))
        n = len(self.up)
        for j, (level, up) in enumerate(zip(self.up, self.upsample, strict=True)):
            rows.append((f"up[{n - 1 - j}]", count_parameters(level) + count_parameters(up)))
        rows.append(("out", count_parameters(self.norm_out) + count_parameters(self.conv_out)))
        for name in ("label_embed", "aug_embed"):
            if hasattr(self, name):
                rows.append((name, count_parameters(getattr(self, name))))
        return rows


def _check_x_cond(x_cond: object, x: Tensor, cfg: UNetConfig) -> None:
    """The conditioning image: floating, ``(B, cond_channels, S, S)`` like ``x``."""
    B = x.shape[0]
    expected = f"({B}, {cfg.cond_channels}, {cfg.image_size}, {cfg.image_size})"
    if not isinstance(x_cond, Tensor) or not x_cond.is_floating_point():
        got = f"dtype {x_cond.dtype}" if isinstance(x_cond, Tensor) else type(x_cond).__name__
        raise TypeError(f"x_cond must be a floating tensor {expected}, got {got}")
    if tuple(x_cond.shape) != (B, cfg.cond_channels, *x.shape[2:]):
        raise ValueError(
            f"x_cond must have shape {expected} (cond_channels={cfg.cond_channels}, "
            f"the input's batch and size), got {tuple(x_cond.shape)}"
        )


def _check_aug_level(aug_level: object, B: int) -> None:
    """The augmentation level: an int (the whole batch) or a real tensor ``(B,)``."""
    if isinstance(aug_level, bool) or not isinstance(aug_level, (int, Tensor)):
        raise TypeError(
            f"aug_level must be an int or a tensor ({B},) of augmentation levels, "
            f"got {type(aug_level).__name__}"
        )
    if isinstance(aug_level, Tensor):
        if aug_level.dtype == torch.bool or aug_level.is_complex():
            raise TypeError(
                f"aug_level must be an integer or floating tensor, got {aug_level.dtype}"
            )
        if aug_level.shape != (B,):
            raise ValueError(
                f"aug_level must have shape (B,) = ({B},) matching x, got {tuple(aug_level.shape)}"
            )
