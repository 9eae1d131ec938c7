"""Neural networks for diffusion models, one module per family.

- :mod:`minidiff.nn.mlp`: sinusoidal time embedding, ``TimeMLP`` (the time-conditioned MLP
  denoiser for 2D data) and ``NoiseConditionalScoreMLP`` (a score network ``s(x, sigma)``).
- :mod:`minidiff.nn.unet`: ``UNet`` (DDPM's image denoiser), its blocks and ``UNET_CONFIGS``.
- :mod:`minidiff.nn.conditional`: ``ConditionalTimeMLP`` (class labels and a null label for
  classifier-free guidance) and ``NoisyClassifier`` (for classifier guidance).
- :mod:`minidiff.nn.attention`: ``CrossAttention`` (queries from the image, keys and values from
  condition tokens) and the block the U-Net uses for it.
- :mod:`minidiff.nn.autoencoder`: ``AutoencoderKL``, the first stage of latent diffusion, and its
  loss (``minidiff.latent`` moves data in and out of its latent space).
- :mod:`minidiff.nn.text`: a word ``Vocabulary``, a ``TokenEncoder`` and ``PromptUNet``, a
  prompt-conditioned U-Net with its loss and classifier-free guidance over prompts.

Networks only: the training objectives of the models of chapters 3-9 live in
:mod:`minidiff.losses`.
"""

from .attention import CrossAttention, CrossAttentionBlock, attention
from .autoencoder import AutoencoderKL, DiagonalGaussian, kl_autoencoder_loss
from .conditional import ConditionalTimeMLP, NoisyClassifier
from .mlp import NoiseConditionalScoreMLP, TimeMLP, sinusoidal_embedding
from .text import (
    PromptUNet,
    TokenEncoder,
    Vocabulary,
    prompt_eps_loss,
    prompt_guidance,
)
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
    "AutoencoderKL",
    "DiagonalGaussian",
    "kl_autoencoder_loss",
    "Vocabulary",
    "TokenEncoder",
    "PromptUNet",
    "prompt_eps_loss",
    "prompt_guidance",
]
