"""Neural networks for diffusion models, one module per family.

- :mod:`minidiff.nn.mlp`: sinusoidal time embedding, ``TimeMLP`` (the time-conditioned MLP
  denoiser for 2D data) and ``NoiseConditionalScoreMLP`` (a score network ``s(x, sigma)``).
- :mod:`minidiff.nn.unet`: ``UNet`` (DDPM's image denoiser), its blocks and ``UNET_CONFIGS``.
- :mod:`minidiff.nn.conditional`: ``ConditionalTimeMLP`` (class labels and a null label for
  classifier-free guidance) and ``NoisyClassifier`` (for classifier guidance).
- :mod:`minidiff.nn.attention`: ``CrossAttention`` (queries from the image, keys and values from
  condition tokens) and the block the U-Net uses for it.

Networks only: their training objectives live in :mod:`minidiff.losses`.
"""

from .attention import CrossAttention, CrossAttentionBlock, attention
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
    "attention",
    "CrossAttention",
    "CrossAttentionBlock",
]
