"""Two digits side by side, described by a prompt: a compositional task for cross-attention.

An image is a 16x16 canvas (background -1) with two of scikit-learn's 8x8 digits in rows 4..11,
one in columns 0..7 (left) and one in columns 8..15 (right). Its prompt names both digits and
where the first one sits:

    "3 left of 7"   ->  3 on the left, 7 on the right
    "7 right of 3"  ->  the same picture, said the other way round

A model that reads the prompt as a bag of words cannot tell "3 left of 7" from "7 left of 3"; it
has to route each digit token to its half of the image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._validation import Check, FloatTensor, Int, Rng, checked
from ..nn.text import Vocabulary

__all__ = [
    "PAIR_WORDS",
    "PAIR_PROMPT_LENGTH",
    "pair_vocabulary",
    "pair_prompt",
    "compose_pairs",
    "split_pair",
]

PAIR_WORDS: tuple[str, ...] = (*[str(d) for d in range(10)], "left", "right", "of")
PAIR_PROMPT_LENGTH = 4
_TOP = 4  # first row of the digits on the 16-row canvas


def pair_vocabulary() -> Vocabulary:
    """The task's vocabulary: the ten digits, ``left``, ``right``, ``of`` (and ``<pad>`` = 0)."""
    return Vocabulary(PAIR_WORDS)


def pair_prompt(left: int, right: int, relation: str = "left") -> str:
    """The prompt for ``left`` on the left and ``right`` on the right, said with ``relation``."""
    for name, d in (("left", left), ("right", right)):
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 9:
            raise ValueError(f"{name} must be a digit 0..9, got {d!r}")
    if relation == "left":
        return f"{left} left of {right}"
    if relation == "right":
        return f"{right} right of {left}"
    raise ValueError(f"relation must be 'left' or 'right', got {relation!r}")


def _labels_like(labels: object, name: str) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.dim() != 1:
        raise TypeError(f"{name} must be an integer tensor (N,) of digit labels")
    return labels


def _relations(relations: object, name: str) -> tuple[str, ...]:
    if (
        not isinstance(relations, tuple)
        or not relations
        or any(r not in ("left", "right") for r in relations)
    ):
        raise ValueError(f"{name} must be a non-empty tuple of 'left'/'right', got {relations!r}")
    return relations


@checked(
    images=FloatTensor(dim=4),
    labels=Check(_labels_like),
    n=Int(),
    generator=Rng,
    relations=Check(_relations),
)
def compose_pairs(
    images: Tensor,
    labels: Tensor,
    n: int,
    generator: torch.Generator | None = None,
    *,
    relations: tuple[str, ...] = ("left", "right"),
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Draw ``n`` two-digit images with their prompts.

    Args:
        images: digits ``(N, 1, 8, 8)`` in ``[-1, 1]`` (``load_digits(8)``); labels ``(N,)``.
        n: number of pairs; both digits are drawn uniformly from the ``N`` images, the relation
            uniformly from ``relations``.

    Returns:
        ``canvas (n, 1, 16, 16)``, ``ids (n, 4)`` (the prompts in :func:`pair_vocabulary`),
        ``left (n,)`` and ``right (n,)`` (the digit labels of the two halves).
    """
    if tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"images must have shape (N, 1, 8, 8), got {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},) like images, got {tuple(labels.shape)}"
        )
    i = torch.randint(0, images.shape[0], (n,), generator=generator)
    j = torch.randint(0, images.shape[0], (n,), generator=generator)
    r = torch.randint(0, len(relations), (n,), generator=generator)
    canvas = torch.full((n, 1, 16, 16), -1.0, dtype=images.dtype)
    canvas[:, :, _TOP : _TOP + 8, :8] = images[i]
    canvas[:, :, _TOP : _TOP + 8, 8:] = images[j]
    left, right = labels[i].long(), labels[j].long()
    vocab = pair_vocabulary()
    prompts = [
        pair_prompt(int(a), int(b), relations[int(k)])
        for a, b, k in zip(left.tolist(), right.tolist(), r.tolist(), strict=True)
    ]
    return canvas, vocab(prompts, PAIR_PROMPT_LENGTH), left, right


@checked(canvas=FloatTensor(dim=4))
def split_pair(canvas: Tensor) -> tuple[Tensor, Tensor]:
    """The two 8x8 cells of ``canvas (n, 1, 16, 16)``: ``(left, right)``, each ``(n, 1, 8, 8)``."""
    if tuple(canvas.shape[1:]) != (1, 16, 16):
        raise ValueError(f"canvas must have shape (n, 1, 16, 16), got {tuple(canvas.shape)}")
    rows = canvas[:, :, _TOP : _TOP + 8]
    return rows[..., :8], rows[..., 8:]
