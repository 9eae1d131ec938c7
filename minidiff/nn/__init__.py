"""Neural networks for diffusion models, one module per family.

- :mod:`minidiff.nn.mlp`: sinusoidal time embedding, ``TimeMLP`` (the time-conditioned MLP
  denoiser for 2D data) and ``NoiseConditionalScoreMLP`` (a score network ``s(x, sigma)``).
- :mod:`minidiff.nn.unet`: ``UNet`` (DDPM's image denoiser), its blocks and ``UNET_CONFIGS``.
- :mod:`minidiff.nn.conditional`: ``ConditionalTimeMLP`` (class labels and a null label for
  classifier-free guidance) and ``NoisyClassifier`` (for classifier guidance).

Networks only: their training objectives live in :mod:`minidiff.losses`.
"""

from .conditional import ConditionalTimeMLP, NoisyClassifier
from .mlp import NoiseConditionalScoreMLP, TimeMLP, sinusoidal_embedding
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
    "NoiseConditionalScoreMLP",
    "UNet",
    "UNetConfig",
    "UNET_CONFIGS",
    "ResBlock",
    "AttentionBlock",
    "Downsample",
    "Upsample",
    "TimeEmbedding",
    "count_parameters",
    "ConditionalTimeMLP",
    "NoisyClassifier",
]
