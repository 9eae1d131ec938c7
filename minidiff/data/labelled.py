"""Labelled 2D data for conditional models and guidance (chapter 9).

A :class:`LabelledGaussianMixture` groups the components of a :class:`GaussianMixture` into
classes. With ``x = alpha x_0 + sigma eps`` every class-conditional law is again a mixture, so
at every noise level we know exactly

    p_t(x | y)        = sum_{k in y} (w_k / pi_y) N(x; alpha mu_k, alpha² Sigma_k + sigma² I)
    p_t(y | x)        = pi_y p_t(x | y) / p_t(x)                        (Bayes)
    ∇ log p_t(x | y)  = ∇ log p_t(x) + ∇ log p_t(y | x)                 (Bayes' rule for scores)

with class priors ``pi_y = sum_{k in y} w_k``. These are the oracles of chapter 9: the exact
conditional denoiser, the exact noisy classifier, and the tilted density
``p_0(x | y)^{1+w} / p_0(x)^w`` that guidance is often said to sample.

Labels are ``0..C-1``; the label ``C`` (:attr:`LabelledGaussianMixture.null_label`) means
"no label" (∅) and gives the unconditional model, as in classifier-free guidance.

Non-Gaussian toys with their class labels (moons, circles, spirals) are
:func:`minidiff.data.toys.labelled_toy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validation import (
    Check,
    FloatTensor,
    Int,
    Number,
    Rng,
    check_labels,
    check_timesteps,
    checked,
)
from ..diffusion import eps_from_score, marginal_coefficients
from ..schedules import NoiseSchedule
from .gmm import GaussianMixture, Scalar

__all__ = ["LabelledGaussianMixture"]


# Labels of the mixture that is the method's ``self``: one class, or one per point of ``x``.
def _one_class(y: Any, name: str, mix: LabelledGaussianMixture) -> int:
    return int(check_labels(y, 1, mix.num_classes, name=name)[0])


def _classes(y: Any, name: str, mix: LabelledGaussianMixture, x: torch.Tensor) -> torch.Tensor:
    return check_labels(y, x.shape[0], mix.num_classes, name=name).to(x.device)


def _classes_or_null(
    y: Any, name: str, mix: LabelledGaussianMixture, x: torch.Tensor
) -> torch.Tensor:
    return check_labels(y, x.shape[0], mix.num_classes, allow_null=True, name=name).to(x.device)


_ONE_CLASS = Check(_one_class, uses=("self",))


class LabelledGaussianMixture:
    """A :class:`GaussianMixture` whose components are grouped into ``C`` classes.

    Args:
        mixture: the law of ``x_0`` (``K`` components).
        labels: ``(K,)`` class of each component, every class ``0..C-1`` used at least once.
        names: optional class names (for plots).
    """

    @checked(mixture=GaussianMixture)  # type: ignore[misc]  # (a decorated __init__)
    def __init__(
        self, mixture: GaussianMixture, labels: torch.Tensor, names: list[str] | None = None
    ) -> None:
        lab = torch.as_tensor(labels)
        if lab.dtype.is_floating_point or lab.shape != (mixture.K,):
            raise ValueError(
                f"labels must be an integer tensor of shape ({mixture.K},), "
                f"got {lab.dtype} {tuple(lab.shape)}"
            )
        C = int(lab.max()) + 1
        if int(lab.min()) < 0 or set(lab.tolist()) != set(range(C)):
            raise ValueError(
                f"labels must use every class 0..C-1 at least once, got {lab.tolist()}"
            )
        self.mixture, self.labels, self.num_classes = mixture, lab.long(), C
        self.names = names if names is not None else [f"class {c}" for c in range(C)]
        if len(self.names) != C:
            raise ValueError(f"names must have {C} entries, got {len(self.names)}")
        self.class_prior = torch.stack([mixture.weights[self.labels == c].sum() for c in range(C)])
        self.class_mixtures = [
            GaussianMixture(
                mixture.means[self.labels == c],
                covs=mixture.covs[self.labels == c],
                weights=mixture.weights[self.labels == c] / self.class_prior[c],
            )
            for c in range(C)
        ]

    @property
    def null_label(self) -> int:
        """The label ∅ ("no class") of the unconditional model: ``num_classes``."""
        return self.num_classes

    def __repr__(self) -> str:
        return (
            f"LabelledGaussianMixture(K={self.mixture.K}, C={self.num_classes}, D={self.mixture.D})"
        )

    @classmethod
    def default_2d(cls) -> LabelledGaussianMixture:
        """Three overlapping classes in 2D (six components); the chapter 9 example.

        Class 0 (two components) and class 1 (one wide component) touch in the middle; class 2
        (three components) lies apart, so guidance has something to push away from.
        """
        means = torch.tensor(
            [[-1.6, 0.9], [-0.4, 0.2], [0.9, 0.8], [0.6, -1.5], [1.8, -1.1], [-1.2, -1.4]]
        )
        stds = torch.tensor(
            [[0.35, 0.35], [0.3, 0.3], [0.55, 0.4], [0.3, 0.3], [0.3, 0.3], [0.3, 0.3]]
        )
        weights = torch.tensor([0.2, 0.15, 0.25, 0.15, 0.1, 0.15])
        return cls(
            GaussianMixture(means, stds=stds, weights=weights),
            torch.tensor([0, 0, 1, 2, 2, 2]),
            names=["A (left)", "B (right)", "C (bottom)"],
        )

    # ------------------------------------------------------------------ the data law
    @checked(n=Int(), generator=Rng, y=Check(_one_class, uses=("self",), optional=True))
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, y: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` labelled points ``(x (n, D) float32, y (n,) long)``; only ``y`` if given."""
        if y is None:
            x, k = self.mixture.sample_labelled(n, generator)
            return x, self.labels[k]
        return self.class_mixtures[y].sample(n, generator), torch.full((n,), y, dtype=torch.long)

    # ------------------------------------------------------------------ exact noised quantities
    def class_log_probs(
        self, x: torch.Tensor, alpha: Scalar = 1.0, sigma: Scalar = 0.0
    ) -> torch.Tensor:
        """``log p_t(x | c)`` for every class: ``(N, C)``."""
        return torch.stack(
            [m.marginal_log_prob(x, alpha, sigma) for m in self.class_mixtures], dim=1
        )

    def log_posterior(
        self, x: torch.Tensor, alpha: Scalar = 1.0, sigma: Scalar = 0.0
    ) -> torch.Tensor:
        """The exact noisy classifier ``log p_t(c | x)``, ``(N, C)`` (rows logsumexp to 0)."""
        joint = self.class_log_probs(x, alpha, sigma) + torch.log(self.class_prior).to(x)
        return joint - torch.logsumexp(joint, dim=1, keepdim=True)

    @checked(x=FloatTensor(dim=2), y=Check(_classes_or_null, uses=("self", "x")))
    def cond_score(self, x: torch.Tensor, y: object, alpha: Scalar, sigma: Scalar) -> torch.Tensor:
        """``∇_x log p_t(x | y)``, ``(N, D)``, for labels ``y`` (int or ``(N,)``).

        The null label gives the unconditional score ``∇ log p_t(x)``.
        """
        labels = torch.as_tensor(y)  # @checked made it (N,) long on x's device
        out = self.mixture.marginal_score(x, alpha, sigma)
        for c in labels.unique().tolist():
            if c != self.null_label:
                rows = labels == c
                a, s = _rows(alpha, rows), _rows(sigma, rows)
                out[rows] = self.class_mixtures[c].marginal_score(x[rows], a, s)
        return out

    @checked(x=FloatTensor(dim=2), y=Check(_classes, uses=("self", "x")))
    def classifier_score(
        self, x: torch.Tensor, y: object, alpha: Scalar, sigma: Scalar
    ) -> torch.Tensor:
        """``∇_x log p_t(y | x) = ∇ log p_t(x | y) - ∇ log p_t(x)``, ``(N, D)``."""
        return self.cond_score(x, y, alpha, sigma) - self.mixture.marginal_score(x, alpha, sigma)

    @checked(y=_ONE_CLASS)
    def component_shares(self, x: torch.Tensor, y: int) -> list[float]:
        """For each component of class ``y``: the fraction of *all* ``N`` points ``x (N, D)`` that
        it explains best.

        "Best" is the largest responsibility under ``p_0`` among all components of the mixture; a
        point that a component of another class explains best counts for none, so the shares sum
        to at most 1 (to the fraction of points claimed by class ``y``'s components). A sampler
        that drops a component gets 0.
        """
        resp = self.mixture.responsibilities(x, 1.0, 0.0)
        owner = resp.argmax(1)
        comps = (self.labels == y).nonzero().reshape(-1).tolist()
        return [float((owner == k).double().mean()) for k in comps]

    @checked(x=FloatTensor(dim=2, finite=True), y=_ONE_CLASS, w=Number())
    def tilted_log_density(self, x: torch.Tensor, y: int, w: float) -> torch.Tensor:
        """Unnormalised ``(1 + w) log p_0(x | y) - w log p_0(x)``, ``(N,)``.

        The density ``p_0(x | y)^{1+w} / p_0(x)^w`` that guidance is often said to sample;
        ``x: (N, D)``, ``w`` any finite real (``w = 0``: the class density itself).
        """
        return (1 + w) * self.class_mixtures[y].log_prob(x) - w * self.mixture.log_prob(x)

    # ------------------------------------------------------------------ oracles as models
    @checked(schedule=NoiseSchedule)
    def cond_eps_model(
        self, schedule: NoiseSchedule
    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact ``eps(x_t, t, y) = -sqrt(1 - alpha_bar_t) ∇ log p_t(x_t | y)``.

        ``y = null_label`` gives the unconditional model. Same signature as
        :class:`minidiff.nn.ConditionalTimeMLP`: ``x_t (B, D)``, ``t (B,)`` long, ``y (B,)`` long.
        """

        def eps(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            tt = check_timesteps(t, x_t.shape[0], schedule.T).to(x_t.device)
            a, s = marginal_coefficients.unchecked(tt, schedule, x_t.device)
            score = self.cond_score(x_t.to(torch.float64), y, a, s)
            return eps_from_score.unchecked(score, tt, schedule).to(x_t.dtype)

        return eps

    @checked(schedule=NoiseSchedule)
    def classifier(
        self, schedule: NoiseSchedule
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The exact noisy classifier ``classifier(x_t (B, D), t (B,)) -> log p_t(c | x_t) (B, C)``.

        Differentiable in ``x_t`` (log-probabilities are valid logits), like a trained
        :class:`minidiff.nn.NoisyClassifier`.
        """

        def logits(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            tt = check_timesteps(t, x_t.shape[0], schedule.T)
            a, s = marginal_coefficients.unchecked(tt, schedule, x_t.device)
            return self.log_posterior(x_t.to(torch.float64), a, s).to(x_t.dtype)

        return logits


def _rows(v: Scalar, rows: torch.Tensor) -> Scalar:
    if isinstance(v, torch.Tensor) and v.numel() > 1:
        return v.reshape(-1)[rows.to(v.device)]
    return v
