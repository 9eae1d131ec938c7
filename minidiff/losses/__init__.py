"""Every training objective of the course, one module per family.

- :mod:`minidiff.losses.elbo`: the variational bound term by term (chapter 3): Gaussian KL,
  Gaussian and discretized (8-bit) log-likelihoods, ``vlb_terms``, the weights ``vlb_weights``
  that turn ``L_simple`` back into the bound, and the exact likelihood of an affine model.
- :mod:`minidiff.losses.simple`: ``L_simple`` (chapter 4) and its continuous-time form on VP-SDE
  marginals (chapters 7–8), with the timestep draws that train it.
- :mod:`minidiff.losses.score_matching`: explicit, implicit, sliced and denoising score matching
  (chapter 6) and NCSN's noise levels.
- :mod:`minidiff.losses.conditional`: label dropout and the losses of a conditional model and of a
  noisy classifier (chapter 9).

A new family of objectives (flow matching, distillation, consistency) gets a module of its own
here and a line in this list.
"""

from .conditional import conditional_eps_loss, drop_labels, noisy_classifier_loss
from .elbo import (
    DECODERS,
    VLBTerms,
    affine_model_nll,
    affine_reverse_marginal,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    gaussian_log_likelihood,
    vlb_terms,
    vlb_weights,
)
from .score_matching import dsm_loss, esm_loss, geometric_sigmas, ism_loss, ssm_loss
from .simple import sample_timesteps, simple_loss, timestep_probabilities, vp_eps_loss

__all__ = [
    "DECODERS",
    "VLBTerms",
    "affine_model_nll",
    "affine_reverse_marginal",
    "conditional_eps_loss",
    "discretized_gaussian_log_likelihood",
    "drop_labels",
    "dsm_loss",
    "esm_loss",
    "gaussian_kl",
    "gaussian_log_likelihood",
    "geometric_sigmas",
    "ism_loss",
    "noisy_classifier_loss",
    "sample_timesteps",
    "simple_loss",
    "ssm_loss",
    "timestep_probabilities",
    "vlb_terms",
    "vlb_weights",
    "vp_eps_loss",
]
