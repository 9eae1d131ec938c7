"""Measures for image-conditioned generation (chapter 14): fidelity, sharpness, seams.

PSNR          10 log10(range² / mean (x - x_ref)²), range = 2 for images in [-1, 1];
              per image, against *the* original: the posterior mean maximises it (it minimises
              the expected squared error), so blur wins on PSNR.
high band     the mean over rings of frequency >= cutoff (cycles per pixel) of
              |10 log10 P_x(f) - 10 log10 P_data(f)| in dB, with P the batch-averaged radial
              power spectrum of chapter 10 (:func:`minidiff.frequency.radial_psd`); it does not
              need the original, only the data's statistics, and it punishes missing detail
              (blur) and invented noise alike.
seam          the mean |x_i - x_j| over 4-neighbour pixel pairs (i known, j generated) across
              an inpainting mask's edge, per image; a completion that ignores the known part
              shows a larger jump there than the real images do.
"""

from __future__ import annotations

import torch

from .._validation import FloatTensor, Number, checked
from ..frequency import radial_frequencies, radial_psd

__all__ = ["psnr", "highband_spectrum_distance", "seam_jump"]

_IMAGES = FloatTensor(dim=4, nonempty=True, finite=True)


@checked(
    x=FloatTensor(dim=4, nonempty=True, finite=True, within=(-1.0, 1.0)),
    x_ref=FloatTensor(like="x", finite=True, within=(-1.0, 1.0)),
)
def psnr(x: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image against its reference: ``(B,)``.

    Images in ``[-1, 1]`` (peak-to-peak range 2; images outside, e.g. 8-bit pixels in
    ``0..255``, are refused with a ``ValueError``, as the colour measures do); identical images
    give ``inf``.
    """
    mse = ((x.double() - x_ref.double()) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(4.0 / mse)


@checked(x=_IMAGES, data=_IMAGES, cutoff=Number(low=0.0, high=0.5, high_open=False))
def highband_spectrum_distance(x: torch.Tensor, data: torch.Tensor, cutoff: float = 0.25) -> float:
    """Mean ``|10 log10 P_x(f) - 10 log10 P_data(f)|`` (dB) over rings with ``f >= cutoff``.

    ``x, data: (B, C, S, S)`` with the same ``C, S`` (any batch sizes); ``f`` in cycles per pixel
    (:func:`minidiff.frequency.radial_frequencies`), at most the Nyquist frequency 0.5. A ring
    where both have zero power (constant images) counts as 0 dB apart; a ring where only one of
    them has zero power is infinitely many dB away, and raises a ``ValueError`` naming it.
    """
    if x.shape[1:] != data.shape[1:]:
        raise ValueError(
            f"x and data must have the same image shape (C, S, S), got {tuple(x.shape[1:])} and "
            f"{tuple(data.shape[1:])}"
        )
    S = x.shape[-1]
    keep = radial_frequencies(S) >= cutoff - 1e-12
    p_x = radial_psd(x.double()).mean(dim=0)[keep]
    p_d = radial_psd(data.double()).mean(dim=0)[keep]
    both = (p_x == 0) & (p_d == 0)
    for name, p in (("x", p_x), ("data", p_d)):
        if bool(((p == 0) & ~both).any()):
            raise ValueError(
                f"{name} has zero power at frequencies >= cutoff={cutoff:g} where the other "
                "does not (constant images?): their distance in dB is infinite"
            )
    db = 10.0 * (p_x.log10() - p_d.log10())
    return float(torch.where(both, 0.0, db).abs().mean())


@checked(x=_IMAGES)
def seam_jump(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``|x_i - x_j|`` over horizontal and vertical neighbours across the mask's edge.

    ``mask`` of 0/1 (1 = known) broadcasting to ``x (B, C, H, W)``; returns ``(B,)`` (channels
    averaged). The mask must have an edge (both values next to each other somewhere).
    """
    from ..samplers.inpainting import check_mask

    m = check_mask(mask, "mask", x).expand_as(x)
    xd = x.double()
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    count = torch.zeros_like(total)
    for dim in (2, 3):
        a, b = xd.narrow(dim, 0, x.shape[dim] - 1), xd.narrow(dim, 1, x.shape[dim] - 1)
        ma, mb = m.narrow(dim, 0, x.shape[dim] - 1), m.narrow(dim, 1, x.shape[dim] - 1)
        edge = (ma != mb).double()
        total += ((a - b).abs() * edge).flatten(1).sum(dim=1)
        count += edge.flatten(1).sum(dim=1)
    if bool((count == 0).any()):
        raise ValueError("mask must have an edge between known and generated pixels in every image")
    return total / count
