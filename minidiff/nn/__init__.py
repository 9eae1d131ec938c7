"""Neural networks for diffusion models, one module per family.

- :mod:`minidiff.nn.mlp`: sinusoidal time embedding and ``TimeMLP``, the time-conditioned MLP
  denoiser for 2D data.
"""

from .mlp import TimeMLP, sinusoidal_embedding

__all__ = ["sinusoidal_embedding", "TimeMLP"]
