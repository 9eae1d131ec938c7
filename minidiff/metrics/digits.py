"""Scoring generated digits: a held-out classifier's confident-and-correct rate, and spread.

For a class-conditional model the question is twofold: does a sample of class ``y`` look like a
``y`` (fidelity to the condition), and do the samples of one class vary as much as real digits of
that class do (diversity)?

- :class:`DigitJudge`: scikit-learn's multinomial logistic regression on the pixels, fitted on
  real digits the diffusion model is compared with (not the ones it is scored against). A sample
  counts when the judge gives its requested class a probability of at least ``threshold`` (0.9):
  *confident and correct*. The same rate on held-out real digits is the reference, so the
  sentence "90 % of real digits' rate" has a meaning that does not depend on the judge.
- :func:`within_class_spread`: the mean distance between two samples of the same class,
  ``E ||x - x'||`` per class, next to the same for real digits (guidance shrinks it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from .._validation import FloatTensor, Int, check_number, check_positive_int, check_tensor, checked

__all__ = ["DigitJudge", "within_class_spread"]


def _labels(labels: object, n: int, name: str = "labels") -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or labels.shape != (n,):
        raise ValueError(f"{name} must be an integer tensor ({n},), one label per image")
    return labels.long()


class DigitJudge:
    """Logistic regression on the pixels of digit images ``(N, 1, S, S)`` in ``[-1, 1]``.

    ``DigitJudge(images, labels)`` fits it; :meth:`proba` gives class probabilities, :meth:`hits`
    the confident-and-correct mask, :meth:`rate` its mean, :meth:`per_class` one rate per class.
    ``pool > 1`` averages ``pool x pool`` blocks of pixels first (32x32 digits upsampled from 8x8
    are judged on 8x8 averages: the same information, a 16 times smaller regression).
    """

    def __init__(
        self, images: Tensor, labels: Tensor, *, pool: int = 1, max_iter: int = 3000
    ) -> None:
        from sklearn.linear_model import LogisticRegression

        x = check_tensor(images, "images", dim=4, finite=True)
        y = _labels(labels, x.shape[0])
        self.pool = check_positive_int(pool, "pool")
        self.shape = tuple(x.shape[1:])
        self.num_classes = int(y.max()) + 1
        self.model = LogisticRegression(max_iter=max_iter).fit(self._features(x), y.numpy())

    def _features(self, x: Tensor) -> np.ndarray:
        x = x.detach().clamp(-1, 1).double()
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return x.flatten(1).numpy()

    def proba(self, images: Tensor) -> np.ndarray:
        """Class probabilities ``(n, num_classes)`` of images clipped to ``[-1, 1]``."""
        x = check_tensor(images, "images", dim=4)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"images must have shape (n, {', '.join(map(str, self.shape))}) like the digits "
                f"the judge was fitted on, got {tuple(x.shape)}"
            )
        return self.model.predict_proba(self._features(x))

    def predict(self, images: Tensor) -> Tensor:
        """The most probable class of each image, long ``(n,)``."""
        return torch.as_tensor(self.proba(images).argmax(1), dtype=torch.long)

    def hits(self, images: Tensor, labels: Tensor, threshold: float = 0.9) -> Tensor:
        """Bool ``(n,)``: the judge gives the requested class probability ``>= threshold``."""
        check_number(threshold, "threshold", low=0.0, high=1.0, high_open=False)
        p = self.proba(images)
        y = _labels(labels, p.shape[0]).numpy()
        return torch.as_tensor(p[np.arange(len(y)), y] >= threshold)

    def rate(self, images: Tensor, labels: Tensor, threshold: float = 0.9) -> float:
        """Fraction of images that are confident-and-correct."""
        return float(self.hits(images, labels, threshold).double().mean())

    def per_class(self, images: Tensor, labels: Tensor, threshold: float = 0.9) -> Tensor:
        """Confident-and-correct rate per class ``(num_classes,)`` (NaN for an absent class)."""
        h = self.hits(images, labels, threshold).double()
        y = _labels(labels, h.shape[0])
        counts = torch.bincount(y, minlength=self.num_classes).double()
        sums = torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, y, h)
        return sums / counts


@checked(images=FloatTensor(min_dim=2), num_classes=Int())
def within_class_spread(images: Tensor, labels: Tensor, num_classes: int = 10) -> Tensor:
    """Mean pixel-space distance between two different images of the same class, per class.

    ``images (n, ...)``, ``labels (n,)`` -> float64 ``(num_classes,)`` (NaN for a class with
    fewer than two images).
    """
    x = images.flatten(1).double()
    y = _labels(labels, x.shape[0])
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        xc = x[y == c]
        m = xc.shape[0]
        if m >= 2:
            d = torch.cdist(xc, xc)
            out[c] = d.sum() / (m * (m - 1))
    return out
