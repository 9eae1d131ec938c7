"""A KL-regularised convolutional autoencoder: the first stage of latent diffusion (chapter 13).

Rombach et al. (2022, Sec. 3.1 and App. G) compress an image ``x: (B, C, H, W)`` into a latent
``z: (B, c, H/f, W/f)`` (Stable Diffusion: ``[b, 3, 512, 512] -> [b, 4, 64, 64]``, ``f = 8``):

    encoder    E(x) = (mean, logvar)           the posterior q(z | x) = N(mean, diag(exp(logvar)))
    latent     z = mean + exp(logvar / 2) eps  (the reparameterisation trick; eps ~ N(0, I))
    decoder    x_hat = D(z)
    loss       ||x - x_hat||² + beta KL(q(z | x) || N(0, I)),
               KL = 1/2 sum_j (mean_j² + exp(logvar_j) - 1 - logvar_j)       (per image, summed)

A small ``beta`` (SD: 1e-6) only keeps the latent space from drifting to arbitrary scales; it
leaves the latents' variance far from 1, which is why the diffusion model works on
``scale * z`` with ``scale = 1 / std(z)`` (SD's 0.18215; see :mod:`minidiff.latent`). SD adds a
perceptual (LPIPS) and an adversarial term to keep textures sharp; at 32x32 digits and on a CPU the
plain squared error serves.

Both halves are stacks of residual blocks (GroupNorm, SiLU, 3x3 convs, no time input) with the
U-Net's stride-2 :class:`~minidiff.nn.unet.Downsample` and nearest x2
:class:`~minidiff.nn.unet.Upsample`:
``len(channels) - 1`` halvings, so ``f = 2 ** (len(channels) - 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import (
    FloatTensor,
    Number,
    Rng,
    check_finite,
    check_generator,
    check_positive_int,
    check_tensor,
    check_weights_dtype,
    checked,
)
from ..tensors import noise_like
from .unet import Downsample, Upsample

__all__ = ["DiagonalGaussian", "AutoencoderKL", "kl_autoencoder_loss"]


@dataclass
class DiagonalGaussian:
    """The encoder's posterior ``q(z | x) = N(mean, diag(exp(logvar)))``, each ``(B, c, h, w)``."""

    mean: Tensor
    logvar: Tensor

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """``z = mean + std * eps`` (differentiable in mean and logvar)."""
        return self.mean + self.std * noise_like(self.mean, generator)

    def mode(self) -> Tensor:
        """The most likely latent, ``mean``."""
        return self.mean

    def kl(self) -> Tensor:
        """``KL(q || N(0, I))`` per image, summed over the latent dimensions: ``(B,)``."""
        return 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class _Block(nn.Module):
    """``x + conv(SiLU(GN(conv(SiLU(GN(x))))))`` (a 1x1 conv on the skip when widths differ)."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip: nn.Module = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class AutoencoderKL(nn.Module):
    """``encode: (B, C, S, S) -> DiagonalGaussian (B, c, S/f, S/f)``, ``decode: z -> (B, C, S, S)``.

    Args:
        in_channels: ``C`` (1 for digits, 3 for colour).
        latent_channels: ``c`` (SD: 4).
        channels: widths of the levels; ``f = 2 ** (len(channels) - 1)`` (``(32, 64, 64)``: f = 4).
        groups: GroupNorm groups (divides every width).
        image_size: ``S``, divisible by ``f`` (checked at every call).
    """

    def __init__(
        self,
        in_channels: int = 1,
        latent_channels: int = 4,
        channels: tuple[int, ...] = (32, 64, 64),
        groups: int = 8,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("latent_channels", latent_channels),
            ("groups", groups),
            ("image_size", image_size),
        ):
            check_positive_int(value, name)
        if isinstance(channels, (str, bytes)) or not isinstance(channels, (tuple, list)):
            raise TypeError(
                f"channels must be a tuple of ints, one per level (e.g. (32, 64, 64)), "
                f"got {type(channels).__name__} {channels!r}"
            )
        chans = tuple(check_positive_int(c, "channels") for c in channels)
        if not chans or any(c % groups for c in chans):
            raise ValueError(
                f"channels must be non-empty ints divisible by groups ({groups}), got {channels!r}"
            )
        self.factor = 2 ** (len(chans) - 1)
        if image_size % self.factor:
            raise ValueError(
                f"image_size ({image_size}) must be divisible by the factor f = {self.factor}"
            )
        self.in_channels, self.latent_channels, self.image_size = (
            in_channels,
            latent_channels,
            image_size,
        )
        self.channels = chans

        enc: list[nn.Module] = [nn.Conv2d(in_channels, chans[0], 3, padding=1)]
        c = chans[0]
        for i, width in enumerate(chans):
            enc.append(_Block(c, width, groups))
            c = width
            if i < len(chans) - 1:
                enc.append(Downsample(c))
        enc += [_Block(c, c, groups), nn.GroupNorm(groups, c), nn.SiLU()]
        enc.append(nn.Conv2d(c, 2 * latent_channels, 3, padding=1))  # mean and logvar
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv2d(latent_channels, c, 3, padding=1), _Block(c, c, groups)]
        for i, width in reversed(list(enumerate(chans))):
            dec.append(_Block(c, width, groups))
            c = width
            if i > 0:
                dec.append(Upsample(c))
        dec += [nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(c, S/f, S/f)``: the shape of one latent."""
        s = self.image_size // self.factor
        return (self.latent_channels, s, s)

    def _check(self, x: object, name: str, shape: tuple[int, int, int]) -> Tensor:
        x = check_tensor(x, name, dim=4)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{name} must have shape (B, {shape[0]}, {shape[1]}, {shape[2]}) for this "
                f"autoencoder, got {tuple(x.shape)}"
            )
        check_weights_dtype(next(self.parameters()), "autoencoder", **{name: x})
        return check_finite(x, name)

    def encode(self, x: Tensor) -> DiagonalGaussian:
        """``x (B, C, S, S)`` in ``[-1, 1]`` -> ``q(z | x)``: mean, logvar ``(B, c, S/f, S/f)``."""
        size = self.image_size
        x = self._check(x, "x", (self.in_channels, size, size))
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        # as in Stable Diffusion's DiagonalGaussianDistribution: keeps exp() finite early on
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, z: Tensor) -> Tensor:
        """``z: (B, c, S/f, S/f)`` -> the reconstruction ``(B, C, S, S)`` (not clamped)."""
        z = self._check(z, "z", self.latent_shape)
        return self.decoder(z)

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, DiagonalGaussian]:
        """Encode, sample ``z ~ q(z | x)``, decode: ``(x_hat, posterior)``."""
        generator = check_generator(generator)
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator)), posterior


@checked(
    model=AutoencoderKL,
    x=FloatTensor(dim=4, finite=True),
    kl_weight=Number(low=0.0, low_open=False),
    generator=Rng,
)
def kl_autoencoder_loss(
    model: AutoencoderKL,
    x: Tensor,
    *,
    kl_weight: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``mean_b [ ||x_b - D(z_b)||² + kl_weight * KL(q(z | x_b) || N(0, I)) ] / (C H W)``.

    Per image, the squared error is summed over pixels and the KL over latent dimensions (the
    LDM objective without its perceptual and adversarial terms); dividing by the pixel count
    only keeps the numbers near a per-pixel error. ``z`` is one sample from ``generator``.
    """
    x_hat, posterior = model(x, generator)
    rec = ((x - x_hat) ** 2).flatten(1).sum(1)
    return (rec + kl_weight * posterior.kl()).mean() / x[0].numel()
