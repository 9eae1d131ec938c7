"""Neural networks for diffusion models, one module per family.

- :mod:`minidiff.nn.mlp`: sinusoidal time embedding and ``TimeMLP``, the time-conditioned MLP
  denoiser for 2D data.
- :mod:`minidiff.nn.unet`: ``UNet`` (DDPM's image denoiser), its blocks and ``UNET_CONFIGS``.
"""

from .mlp import TimeMLP, sinusoidal_embedding
from .unet import (
    UNET_CONFIGS,
    AttentionBlock,
    Downsample,
    ResBlock,
    TimeEmbedding,
    UNet,
    UNetConfig,
    Upsample,
    count_parameters,
)

__all__ = [
    "sinusoidal_embedding",
    "TimeMLP",
    "UNet",
    "UNetConfig",
    "UNET_CONFIGS",
    "ResBlock",
    "AttentionBlock",
    "Downsample",
    "Upsample",
    "TimeEmbedding",
    "count_parameters",
]
