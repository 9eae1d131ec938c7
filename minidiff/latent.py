"""Latent diffusion: encode, diffuse in the latent space, decode (Rombach et al. 2022).

With a trained autoencoder ``(E, D)`` (:class:`~minidiff.nn.autoencoder.AutoencoderKL`) the
diffusion model never sees pixels:

    train   z0 = s * z,  z ~ q(z | x) = E(x)          L_LDM = E ||eps - eps_theta(z_t, t, y)||²
    sample  z0 ~ any sampler of the course in the latent shape;   x = D(z0 / s)

``L_LDM`` is L_simple (or ``conditional_eps_loss`` with labels) on ``z0``, so the course's loss,
training loop, samplers and guidance are used unchanged; this module only moves data in and out of
the latent space.

**The scale** ``s``. The forward process ``z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps`` was designed
for data of unit variance: with ``Var z0 = v`` the signal-to-noise ratio at every ``t`` is
``v · SNR(t)``, i.e. the whole log-SNR curve shifts by ``log v``, and a schedule that ends at
``x_T ≈ N(0, I)`` for ``v = 1`` leaves visible signal at ``t = T`` for ``v >> 1``. Rombach et
al. rescale the latents to unit standard deviation, ``s = 1 / std(z)`` estimated on data, and
Stable Diffusion's ``scale_factor = 0.18215`` is exactly that number for its autoencoder
(``std(z) ≈ 5.49``). The same ``s`` must be used on the way in (``s * z``) and on the way out
(``D(z0 / s)``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._validation import (
    Flag,
    FloatTensor,
    check_generator,
    check_number,
    check_positive_int,
    check_with,
    checked,
    describe,
)
from .nn.autoencoder import AutoencoderKL, DiagonalGaussian

__all__ = ["latent_scale", "LatentSpace"]


@checked(latents=FloatTensor(min_dim=2, finite=True))
def latent_scale(latents: Tensor) -> float:
    """``1 / std(latents)`` over all their entries: the scale that gives unit-variance latents.

    ``latents: (N, c, h, w)``, e.g. samples ``z ~ q(z | x)`` of a data set (SD takes its first
    training batch). Raises ``ValueError`` for constant latents (no scale makes them unit).
    """
    z = latents
    if z.numel() < 2:
        raise ValueError(f"latents must hold at least 2 numbers, got shape {tuple(z.shape)}")
    std = float(z.detach().double().std())
    if std == 0.0:
        raise ValueError("latents are constant (std 0): there is no scale to estimate")
    return 1.0 / std


def _check_labels(labels: object, images: object) -> None:
    """``labels``: a tensor with one row per image (``images``' own checks come after)."""
    n = images.shape[0] if isinstance(images, Tensor) and images.dim() else None
    per_image = f"one row per image ({n})" if n is not None else "one row per image"
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a tensor with {per_image}, got {describe(labels)}")
    if n is not None and (labels.dim() == 0 or labels.shape[0] != n):
        raise ValueError(f"labels must have {per_image}, got shape {tuple(labels.shape)}")


class LatentSpace:
    """An autoencoder and its latent scale ``s``: ``encode(x) = s z``, ``decode(z0) = D(z0 / s)``.

    Args:
        autoencoder: a trained :class:`AutoencoderKL`; the space keeps a frozen copy (eval mode,
            gradients off) and leaves the caller's autoencoder as it is (still trainable).
        scale: ``s``; :meth:`fit` estimates it from data as :func:`latent_scale`.
    """

    def __init__(self, autoencoder: AutoencoderKL, scale: float) -> None:
        if not isinstance(autoencoder, AutoencoderKL):
            raise TypeError(
                f"autoencoder must be an AutoencoderKL, got {type(autoencoder).__name__}"
            )
        self.autoencoder = copy.deepcopy(autoencoder).eval().requires_grad_(False)
        self.scale = check_number(scale, "scale", low=0.0)

    @classmethod
    def fit(
        cls,
        autoencoder: AutoencoderKL,
        images: Tensor,
        *,
        batch_size: int = 256,
        generator: torch.Generator | None = None,
    ) -> LatentSpace:
        """Measure ``s = 1 / std(z)`` with ``z ~ q(z | x)`` over ``images`` and return the space."""
        space = cls(autoencoder, 1.0)
        z = space.posterior(images, batch_size=batch_size).sample(check_generator(generator))
        space.scale = latent_scale(z)
        return space

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(c, h, w)`` of one latent: pass ``(n, *space.latent_shape)`` to a sampler."""
        return self.autoencoder.latent_shape

    @torch.no_grad()
    def posterior(self, images: Tensor, *, batch_size: int = 256) -> DiagonalGaussian:
        """``q(z | x)`` of every image, **unscaled**, in batches: mean, logvar ``(N, c, h, w)``."""
        check_positive_int(batch_size, "batch_size")
        ae = self.autoencoder
        images = ae._check(images, "images", (ae.in_channels, ae.image_size, ae.image_size))
        parts = [self.autoencoder.encode(x) for x in torch.split(images, batch_size)]
        return DiagonalGaussian(
            torch.cat([p.mean for p in parts]), torch.cat([p.logvar for p in parts])
        )

    @torch.no_grad()
    def encode(
        self,
        images: Tensor,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
        batch_size: int = 256,
    ) -> Tensor:
        """``s * z`` with ``z ~ q(z | x)`` (``sample=False``: the mean): ``(N, c, h, w)``,
        encoded ``batch_size`` images at a time."""
        sample = check_with(Flag, sample, "sample")
        generator = check_generator(generator)
        q = self.posterior(images, batch_size=batch_size)
        z = q.sample(generator) if sample else q.mode()
        return self.scale * z

    @torch.no_grad()
    def decode(self, z0: Tensor, *, batch_size: int = 256) -> Tensor:
        """``D(z0 / s)`` in batches: latents ``(N, c, h, w)`` -> images ``(N, C, S, S)``."""
        check_positive_int(batch_size, "batch_size")
        self.autoencoder._check(z0, "z0", self.latent_shape)
        return torch.cat(
            [self.autoencoder.decode(z / self.scale) for z in torch.split(z0, batch_size)]
        )

    def batches(
        self, images: Tensor, labels: Tensor | None = None, *, batch_size: int = 256
    ) -> Callable[[int, torch.Generator], Any]:
        """A ``data(n, generator)`` callable for ``minidiff.train``: fresh ``s z, z ~ q(z | x)``.

        Encodes ``images`` once (the encoder is frozen) and draws, per batch, ``n`` rows uniformly
        with replacement and a new latent sample of each: ``z0`` or ``(z0, y)`` with ``labels``,
        a tensor with one row per image (checked before any image is encoded).
        """
        if labels is not None:
            _check_labels(labels, images)
        q = self.posterior(images, batch_size=batch_size)
        mean, std, s = q.mean, q.std, self.scale

        def draw(n: int, generator: torch.Generator) -> Any:
            i = torch.randint(0, mean.shape[0], (n,), generator=generator)
            eps = torch.randn(mean[i].shape, generator=generator)
            z0 = s * (mean[i] + std[i] * eps)
            return z0 if labels is None else (z0, labels[i])

        return draw

    def sample(
        self,
        sampler: Callable[..., Tensor],
        eps_model: Callable[[Tensor, Tensor], Tensor],
        schedule: Any,
        n: int,
        **kwargs: Any,
    ) -> Tensor:
        """Run ``sampler(eps_model, schedule, (n, *latent_shape), **kwargs)`` and decode: images.

        Any sampler of the course works (``ddim_sample``, ``ddpm_sample``, ...), with guidance
        wrappers as ``eps_model`` — the latent space changes only the shape. A sampler that takes
        ``dtype`` draws in the dtype of the autoencoder's weights unless ``dtype`` or ``x_T`` is
        given (a float64 autoencoder samples in float64); a given ``dtype`` of another kind is a
        ``TypeError`` before sampling.
        """
        from .superres import weights_dtype  # (imported here: superres imports the trainer)

        check_positive_int(n, "n")
        dtype = weights_dtype(self.autoencoder)
        if _takes_dtype(sampler) and "x_T" not in kwargs:
            given = kwargs.setdefault("dtype", dtype)
            if given is not None and given != dtype:
                raise TypeError(
                    f"dtype is {given} but this autoencoder's weights are {dtype}: its decoder "
                    f"takes {dtype} latents (leave dtype out, or convert the autoencoder)"
                )
        z0 = sampler(eps_model, schedule, (n, *self.latent_shape), **kwargs)
        return self.decode(z0)


def _takes_dtype(sampler: Callable[..., Tensor]) -> bool:
    """Whether ``sampler`` has a ``dtype`` argument (the course's samplers do)."""
    try:
        return "dtype" in inspect.signature(sampler).parameters
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return False
