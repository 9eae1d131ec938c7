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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import check_choice, check_finite, check_number, check_positive_int
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
        check_number(self.dropout, "dropout", low=0.0, high=1.0, low_open=False)
        check_choice(self.time_injection, "time_injection", TIME_INJECTIONS)
        check_choice(self.downsample_padding, "downsample_padding", DOWNSAMPLE_PADDINGS)
        check_choice(self.time_features, "time_features", TIME_FEATURES)
        if self.time_features == "ddpm" and self.base_channels < 4:
            raise ValueError(
                'base_channels must be >= 4 with time_features="ddpm" (its frequencies divide '
                f"by half - 1 = base_channels // 2 - 1), got {self.base_channels}"
            )
        object.__setattr__(
            self, "norm_eps", check_number(self.norm_eps, "norm_eps", low=0.0, high=1.0)
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for checkpoints and run logs)."""
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d


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

    def __init__(self, base_channels: int, features: str = "minidiff") -> None:
        super().__init__()
        self.base_channels = base_channels
        self.features = check_choice(features, "features", TIME_FEATURES)
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
        self.time_injection = check_choice(time_injection, "time_injection", TIME_INJECTIONS)
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

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__()
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

    def __init__(self, channels: int, padding: str = "symmetric") -> None:
        super().__init__()
        self.padding = check_choice(padding, "padding", DOWNSAMPLE_PADDINGS)
        pad = 1 if padding == "symmetric" else 0
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=pad)

    def forward(self, x: Tensor) -> Tensor:
        if self.padding == "asymmetric":
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2 then a 3x3 conv (no checkerboard artefacts of a
    transposed convolution): ``(B, c, H, W) -> (B, c, 2H, 2W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """ResBlocks (each optionally followed by attention) at one resolution."""

    def __init__(self, blocks: list[ResBlock], attns: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)

    def pairs(self) -> list[tuple[ResBlock, nn.Module]]:
        return [(cast(ResBlock, b), a) for b, a in zip(self.blocks, self.attns, strict=True)]


def parameter_count(config: UNetConfig) -> int:
    """The number of weights of ``UNet(config)``, in closed form (nothing is built or allocated).

    Per part (``E = 4 ch`` the embedding width, ``k = 2`` for adaptive GroupNorm, else 1):
    ResBlock ``(c_in -> c)``: ``2 c_in + 9 c_in c + c + k (E + 1) c + 2 c + 9 c² + c`` plus a
    ``c_in c + c`` skip when ``c_in != c``; attention ``4 c² + 6 c``; a down/upsampling conv
    ``9 c² + c``. ``tests/test_unet.py`` checks it against the built networks.
    """
    cfg = config
    ch, n, C = cfg.base_channels, cfg.num_res_blocks, cfg.in_channels
    emb, k = 4 * ch, (2 if cfg.time_injection == "adagn" else 1)

    def res(c_in: int, c: int) -> int:
        skip = c_in * c + c if c_in != c else 0
        return 2 * c_in + 9 * c_in * c + c + k * (emb + 1) * c + 2 * c + 9 * c * c + c + skip

    def attn(c: int) -> int:
        return 4 * c * c + 6 * c

    chans = [ch * m for m in cfg.channel_mult]
    sizes = [cfg.image_size // 2**i for i in range(len(chans))]
    total = 20 * ch * ch + 8 * ch + 9 * C * ch + ch  # time embedding, conv_in
    c_prev = ch
    for i, (c, size) in enumerate(zip(chans, sizes, strict=True)):  # the way down
        a = attn(c) if size in cfg.attn_resolutions else 0
        total += res(c_prev, c) + (n - 1) * res(c, c) + n * a
        total += 9 * c * c + c if i < len(chans) - 1 else 0
        c_prev = c
    total += 2 * res(c_prev, c_prev) + attn(c_prev)  # the middle
    for i in reversed(range(len(chans))):  # the way up: n + 1 blocks, each with a skip
        c, a = chans[i], (attn(chans[i]) if sizes[i] in cfg.attn_resolutions else 0)
        last_skip = chans[i - 1] if i > 0 else ch
        total += res(c_prev + c, c) + (n - 1) * res(2 * c, c) + res(c + last_skip, c)
        total += (n + 1) * a + (9 * c * c + c if i > 0 else 0)
        c_prev = c
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


class UNet(nn.Module):
    """DDPM's U-Net ``eps_theta(x_t, t)``: ``x: (B, C, S, S)``, ``t: (B,)`` -> ``(B, C, S, S)``.

    Build it from a ``UNetConfig``, a preset name of ``UNET_CONFIGS`` or keyword overrides:
    ``UNet("digits")``, ``UNet(UNetConfig(base_channels=64))``, ``UNet("ddpm_cifar10", dropout=0)``.
    ``t`` is the integer timestep in ``1..T`` (any finite float works too).
    """

    def __init__(self, config: UNetConfig | str = "ddpm_cifar10", **overrides: Any) -> None:
        super().__init__()
        if isinstance(config, str):
            if config not in UNET_CONFIGS:
                raise ValueError(
                    f"config must be a UNetConfig or one of {sorted(UNET_CONFIGS)}, got {config!r}"
                )
            config = UNET_CONFIGS[config]
        if not isinstance(config, UNetConfig):
            raise TypeError(f"config must be a UNetConfig or a str, got {type(config).__name__}")
        if overrides:
            known = {f.name for f in fields(UNetConfig)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise TypeError(
                    f"unknown UNetConfig field(s) {unknown}; the fields are {sorted(known)}"
                )
            config = UNetConfig(**{**config.to_dict(), **overrides})
        self.config = cfg = config
        _check_size(cfg)
        ch, g = cfg.base_channels, cfg.groups
        emb_dim = 4 * ch

        def res(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(
                c_in, c_out, emb_dim, cfg.dropout, g, cfg.time_injection, eps=cfg.norm_eps
            )

        self.time_embed = TimeEmbedding(ch, cfg.time_features)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        skip_channels = [ch]
        c, size = ch, cfg.image_size
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, mult in enumerate(cfg.channel_mult):
            blocks: list[ResBlock] = []
            attns: list[nn.Module] = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(res(c, ch * mult))
                c = ch * mult
                attns.append(
                    AttentionBlock(c, g, cfg.norm_eps)
                    if size in cfg.attn_resolutions
                    else nn.Identity()
                )
                skip_channels.append(c)
            self.down.append(_Level(blocks, attns))
            last = i == len(cfg.channel_mult) - 1
            self.downsample.append(nn.Identity() if last else Downsample(c, cfg.downsample_padding))
            if not last:
                skip_channels.append(c)
                size //= 2

        self.mid1 = res(c, c)
        self.mid_attn = AttentionBlock(c, g, cfg.norm_eps)
        self.mid2 = res(c, c)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.channel_mult))):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(res(c + skip_channels.pop(), ch * mult))
                c = ch * mult
                attns.append(
                    AttentionBlock(c, g, cfg.norm_eps)
                    if size in cfg.attn_resolutions
                    else nn.Identity()
                )
            self.up.append(_Level(blocks, attns))
            self.upsample.append(Upsample(c) if i > 0 else nn.Identity())
            if i > 0:
                size *= 2
        assert not skip_channels

        self.norm_out = nn.GroupNorm(g, c, eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        _zero_init(self.conv_out)

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
        weight = self.conv_in.weight
        if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"x has dtype {x.dtype} but this U-Net's weights are {weight.dtype}: pass "
                f"x.to({weight.dtype}) or convert the model (model.to({x.dtype}))"
            )
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"t must have shape (B,) = ({x.shape[0]},) matching x, got {tuple(t.shape)}"
            )
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must be an integer or floating tensor, got dtype {t.dtype}")
        check_finite(x, "x")

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Predict the noise in ``x: (B, C, S, S)`` at timesteps ``t: (B,)`` -> ``(B, C, S, S)``."""
        self._check_inputs(x, t)
        emb = self.time_embed(t)
        h = self.conv_in(x)
        skips = [h]
        for level, down in zip(self.down, self.downsample, strict=True):
            for block, attn in cast(_Level, level).pairs():
                h = attn(block(h, emb))
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample, strict=True):
            for block, attn in cast(_Level, level).pairs():
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def parameter_table(self) -> list[tuple[str, int]]:
        """``[(part, n_params), ...]``: embedding, input conv, each level, middle, output."""
        rows = [
            ("time_embed", count_parameters(self.time_embed)),
            ("conv_in", count_parameters(self.conv_in)),
        ]
        for i, (level, down) in enumerate(zip(self.down, self.downsample, strict=True)):
            rows.append((f"down[{i}]", count_parameters(level) + count_parameters(down)))
        rows.append(
            ("mid", sum(count_parameters(m) for m in (self.mid1, self.mid_attn, self.mid2)))
        )
        n = len(self.up)
        for j, (level, up) in enumerate(zip(self.up, self.upsample, strict=True)):
            rows.append((f"up[{n - 1 - j}]", count_parameters(level) + count_parameters(up)))
        rows.append(("out", count_parameters(self.norm_out) + count_parameters(self.conv_out)))
        return rows
