"""Scoring generated 8x8 digits on a laptop: a classifier trained in seconds, and an FID stand-in.

FID needs Inception-v3 and its weights (a 100 MB download); scikit-learn's digits need neither. A
small convolutional network trained on real digits in a few CPU-seconds (:func:`train_digit_cnn`)
does the reading instead:

- :func:`confident_rate`: the share of images it labels with probability ``>= 0.9``; compared
  with the same share for held-out real digits, it says how many samples read as a clear digit;
- :func:`digit_fid`: the Fréchet distance of two sets of images in its 64 penultimate features,
  playing the role of Inception's 2048. It is a *stand-in*: its numbers are not comparable with
  published FIDs, only with each other (the same network, the same sample sizes; FID is biased at
  small N).

Why this network and not the most accurate classifier: a judge of samples must also *refuse*
what is not a digit. On held-out digits an RBF SVC is the most accurate of the quick classifiers
``bench/unet_digits.py`` compares (98.6 % against 97.8 % for this CNN), but with calibrated
probabilities it is confident about half of all uniform-noise images and about blurred digits as
often as about real ones; logistic regression and an MLP are confident that a blank image is a
digit. This CNN refuses blank images and most noise (the bench prints each classifier's
confident rate on such non-digits).

Images are float ``(N, 1, 8, 8)`` in ``[-1, 1]`` (``minidiff.data.load_digits()``); values outside
are clamped before scoring, as saving a picture would.

For a *class-conditional* model the question is twofold: does a sample of class ``y`` look like a
``y`` (fidelity to the condition), and do the samples of one class vary as much as real digits of
that class do (diversity)?

- :class:`DigitJudge`: scikit-learn's multinomial logistic regression on the pixels, fitted on
  real digits the diffusion model is compared with (not the ones it is scored against). A sample
  counts when the judge gives its *requested* class a probability of at least ``threshold`` (0.9):
  *confident and correct*. The same rate on held-out real digits is the reference, so the
  sentence "90 % of real digits' rate" has a meaning that does not depend on the judge. It also
  reads 32x32 digits (``pool``), which the CNN does not.
- :func:`within_class_spread`: the mean distance between two samples of the same class,
  ``E ||x - x'||`` per class, next to the same for real digits (guidance shrinks it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import (
    FloatTensor,
    Int,
    Number,
    Rng,
    check_labels,
    check_number,
    check_positive_int,
    check_tensor,
    checked,
    index_tensor,
)
from .fid import fid_from_features

__all__ = [
    "DigitCNN",
    "train_digit_cnn",
    "confident_rate",
    "digit_fid",
    "out_of_range_fraction",
    "DigitJudge",
    "within_class_spread",
]

_DIGITS = FloatTensor(dim=4, finite=True)


def _check_digits(images: Tensor, name: str = "images", min_rows: int = 1) -> None:
    if tuple(images.shape[1:]) != (1, 8, 8) or images.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have shape (N, 1, 8, 8) with N >= {min_rows}, got {tuple(images.shape)}"
        )


def _labels(labels: object, n: int, num_classes: int | None = None) -> Tensor:
    """``labels`` as a long tensor ``(n,)``, one class index per image: an integer tensor (else a
    ``TypeError``) of values in ``0..num_classes-1`` (``>= 0`` where ``num_classes`` is ``None``;
    else a ``ValueError``)."""
    what = "class indices" + (f" in 0..{num_classes - 1}" if num_classes is not None else " >= 0")
    y = index_tensor(labels, "labels", n, what, allow_int=False)
    if num_classes is not None:
        return check_labels(y, n, num_classes, name="labels", null_in_play=False)
    if n and int(y.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0, got {int(y.min())}")
    return y


class DigitCNN(nn.Module):
    """``(B, 1, 8, 8) -> logits (B, 10)``: three 3x3 convolutions (16, 32, 32 channels, two 2x2
    max-pools), a 64-unit layer (:meth:`features`) and the 10-way output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.ModuleList(
            [nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1),
             nn.Conv2d(32, 32, 3, padding=1)]
        )  # fmt: skip
        self.fc = nn.Linear(32 * 2 * 2, 64)
        self.out = nn.Linear(64, 10)

    def features(self, x: Tensor) -> Tensor:
        """The 64 penultimate activations ``(B, 64)`` (the feature space of :func:`digit_fid`)."""
        h = F.silu(self.conv[0](x.clamp(-1, 1)))
        h = F.max_pool2d(F.silu(self.conv[1](h)), 2)
        h = F.max_pool2d(F.silu(self.conv[2](h)), 2)
        return F.silu(self.fc(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


@checked(images=_DIGITS, steps=Int(), lr=Number(low=0.0), generator=Rng)
def train_digit_cnn(
    images: Tensor,
    labels: Tensor,
    *,
    steps: int = 400,
    lr: float = 5e-3,
    generator: torch.Generator | None = None,
) -> DigitCNN:
    """A :class:`DigitCNN` trained on ``images (N, 1, 8, 8)``, ``labels (N,)`` (cross-entropy,
    AdamW with a one-cycle learning rate, batches of 128 shifted by up to one pixel); returned in
    eval mode. 400 steps take about 5 CPU-seconds and reach about 98 % on held-out digits."""
    _check_digits(images)
    y = _labels(labels, images.shape[0], 10)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        net = DigitCNN()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    padded = F.pad(images, (1, 1, 1, 1), value=-1.0)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(0, images.shape[0], (128,), generator=g)
            dy, dx = torch.randint(0, 3, (2,), generator=g).tolist()  # a shift of -1, 0 or 1
            x = padded[idx, :, dy : dy + 8, dx : dx + 8]
            loss = F.cross_entropy(net(x), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def _pixels(images: Tensor) -> np.ndarray:
    return images.detach().float().clamp(-1, 1).flatten(1).cpu().numpy()


@checked(images=_DIGITS, threshold=Number(low=0.0, high=1.0, high_open=False))
def confident_rate(classifier: Any, images: Tensor, threshold: float = 0.9) -> float:
    """Share of ``images (N, 1, 8, 8)`` that ``classifier`` (a :class:`DigitCNN`, or any object
    with scikit-learn's ``predict_proba`` on the 64 pixels) labels with probability
    ``>= threshold``. Compare it with the same rate on held-out real digits: the ratio is the
    quality figure of ``bench/unet_digits.py``."""
    _check_digits(images)
    if isinstance(classifier, nn.Module):
        with torch.no_grad():
            proba = classifier(images.float()).softmax(1).cpu().numpy()
    else:
        proba = classifier.predict_proba(_pixels(images))
    return float((proba.max(1) >= threshold).mean())


@checked(samples=_DIGITS, reference=_DIGITS)
def digit_fid(cnn: DigitCNN, samples: Tensor, reference: Tensor) -> float:
    """The FID stand-in: Fréchet distance between ``samples`` and ``reference`` (both
    ``(N, 1, 8, 8)``, N >= 2) in the 64-d feature space of ``cnn`` (:meth:`DigitCNN.features`).
    Comparable only at equal sample sizes and with the same network."""
    if not isinstance(cnn, DigitCNN):
        raise TypeError(f"cnn must be a DigitCNN (train_digit_cnn), got {type(cnn).__name__}")
    _check_digits(samples, "samples", min_rows=2)  # a covariance needs two images
    _check_digits(reference, "reference", min_rows=2)
    with torch.no_grad():
        fa = cnn.features(samples.float()).double()
        fb = cnn.features(reference.float()).double()
    return fid_from_features(fa, fb)


@checked(x=FloatTensor(), limit=Number(low=0.0))
def out_of_range_fraction(x: Tensor, limit: float = 1.0) -> float:
    """Share of the values of ``x`` outside ``[-limit, limit]`` (NaN counts as outside): for
    images in ``[-1, 1]``, the pixels a picture would have to clip."""
    if x.numel() == 0:
        raise ValueError("x must hold at least one value")
    inside = x.detach().abs() <= limit
    return float(1.0 - inside.double().mean())


class DigitJudge:
    """Logistic regression on the pixels of digit images ``(N, 1, S, S)`` in ``[-1, 1]``.

    ``DigitJudge(images, labels)`` fits it; :meth:`proba` gives class probabilities, :meth:`hits`
    the confident-and-correct mask, :meth:`rate` its mean, :meth:`per_class` one rate per class.
    ``pool > 1`` averages ``pool x pool`` blocks of pixels first (32x32 digits upsampled from 8x8
    are judged on 8x8 averages: the same information, a 16 times smaller regression).
    Classes are the labels themselves: ``num_classes`` is the largest fitted label + 1, and a
    judge fitted on a subset (say the digits 3 and 5) gives the other classes probability 0.
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
        """Class probabilities ``(n, num_classes)`` of images clipped to ``[-1, 1]``: column ``k``
        is class ``k``; a class absent from the fitting labels has probability 0."""
        x = check_tensor(images, "images", dim=4)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"images must have shape (n, {', '.join(map(str, self.shape))}) like the digits "
                f"the judge was fitted on, got {tuple(x.shape)}"
            )
        # scikit-learn's columns are the classes seen in fitting (model.classes_, sorted), not
        # 0..num_classes-1: fitted on the digits 3 and 5, column 1 is the digit 5
        seen = self.model.predict_proba(self._features(x))
        proba = np.zeros((seen.shape[0], self.num_classes), dtype=seen.dtype)
        proba[:, self.model.classes_] = seen
        return proba

    def predict(self, images: Tensor) -> Tensor:
        """The most probable class of each image, long ``(n,)`` (one of the fitted labels)."""
        return torch.as_tensor(self.proba(images).argmax(1), dtype=torch.long)

    def hits(self, images: Tensor, labels: Tensor, threshold: float = 0.9) -> Tensor:
        """Bool ``(n,)``: the judge gives the requested class probability ``>= threshold``
        (``labels``: an integer tensor ``(n,)`` of classes in ``0..num_classes-1``)."""
        check_number(threshold, "threshold", low=0.0, high=1.0, high_open=False)
        p = self.proba(images)
        y = _labels(labels, p.shape[0], self.num_classes).numpy()
        return torch.as_tensor(p[np.arange(len(y)), y] >= threshold)

    def rate(self, images: Tensor, labels: Tensor, threshold: float = 0.9) -> float:
        """Fraction of images that are confident-and-correct."""
        return float(self.hits(images, labels, threshold).double().mean())

    def per_class(self, images: Tensor, labels: Tensor, threshold: float = 0.9) -> Tensor:
        """Confident-and-correct rate per class ``(num_classes,)`` (NaN for an absent class)."""
        h = self.hits(images, labels, threshold).double()
        y = _labels(labels, h.shape[0], self.num_classes)
        counts = torch.bincount(y, minlength=self.num_classes).double()
        sums = torch.zeros(self.num_classes, dtype=torch.float64).index_add_(0, y, h)
        return sums / counts


@checked(images=FloatTensor(min_dim=2), num_classes=Int())
def within_class_spread(images: Tensor, labels: Tensor, num_classes: int = 10) -> Tensor:
    """Mean pixel-space distance between two different images of the same class, per class.

    ``images (n, ...)``, ``labels (n,)`` -> float64 ``(num_classes,)`` (NaN for a class with
    fewer than two images). ``labels`` is an integer tensor of class indices in
    ``0..num_classes-1`` (a float tensor is a ``TypeError``, a label outside a ``ValueError``).
    """
    x = images.flatten(1).double()
    y = _labels(labels, x.shape[0], num_classes)
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        xc = x[y == c]
        m = xc.shape[0]
        if m >= 2:
            d = torch.cdist(xc, xc)
            out[c] = d.sum() / (m * (m - 1))
    return out
