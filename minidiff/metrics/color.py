"""Measures of colour for colorization (chapter 14): error against the original, and colourfulness.

chroma error   per image, the root mean square over pixels of ``|c - c_ref|`` with
               ``c = (Cb, Cr)`` the BT.601 chroma (:func:`minidiff.colorization.rgb_to_ycbcr`,
               in ``[-1, 1]``); like PSNR it needs the original and is minimised by the posterior
               mean, so the desaturated average colour wins on it.
colourfulness  Hasler & Süsstrunk (2003), per image on the 0..255 scale,
                   M = sqrt(sd(rg)² + sd(yb)²) + 0.3 sqrt(mean(rg)² + mean(yb)²),
                   rg = R - G,  yb = (R + G) / 2 - B;
               0 for a gray image, about 15 for "slightly", 33 "moderately", 59 "quite" and
               82 "highly colourful" in their survey. It needs only the data's statistics:
               compared with the data's mean, it catches a gray or washed-out output (too low)
               and invented colour noise (too high), which the chroma error alone would not.
"""

from __future__ import annotations

import torch

from .._validation import FloatTensor, checked

__all__ = ["chroma_error", "colourfulness"]

_RGB = FloatTensor(dim=4, nonempty=True, finite=True, within=(-1.0, 1.0))


def _rgb(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.shape[1] != 3:
        raise ValueError(f"{name} must hold RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
    return x.double()


@checked(x=_RGB, x_ref=FloatTensor(like="x", finite=True, within=(-1.0, 1.0)))
def chroma_error(x: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
    """RMS over pixels of the chroma difference ``|(Cb, Cr) - (Cb, Cr)_ref|``: ``(B,)`` float64."""
    from ..colorization import rgb_to_ycbcr

    c, c_ref = rgb_to_ycbcr(_rgb(x, "x"))[:, 1:], rgb_to_ycbcr(_rgb(x_ref, "x_ref"))[:, 1:]
    return ((c - c_ref) ** 2).sum(dim=1).flatten(1).mean(dim=1).sqrt()


@checked(x=_RGB)
def colourfulness(x: torch.Tensor) -> torch.Tensor:
    """Hasler & Süsstrunk's colourfulness of each RGB image in ``[-1, 1]``: ``(B,)`` float64."""
    rgb = (_rgb(x, "x") + 1.0) * 127.5  # the paper's 0..255 scale
    r, g, b = rgb.unbind(dim=1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    offset = (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()
    return spread + 0.3 * offset
