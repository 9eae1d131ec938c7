"""minidiff: a small, tested diffusion-model library that backs the course notebooks.

Public API (stable; coursework imports these names from the top level):

- schedules: ``NoiseSchedule``, ``linear_schedule``, ``cosine_schedule``, ``quadratic_schedule``,
  ``sigmoid_schedule``, ``make_schedule``
- forward process and posterior: ``q_sample``, ``q_step``, ``q_posterior_mean_var``,
  ``predict_x0_from_eps``, ``eps_from_x0``, ``score_from_eps``, ``eps_from_score``, ``p_mean_var``
- losses: ``gaussian_kl``, ``discretized_gaussian_log_likelihood``, ``vlb_terms``, ``vlb_weights``,
  ``simple_loss``
- samplers: ``ddpm_step``, ``ddpm_sample``, ``get_sampler``, ``available_samplers``
- data: ``toy_dataset``, ``TOY_DATASETS``, ``GaussianMixture``
- networks and training: ``TimeMLP``, ``sinusoidal_embedding``, ``train``, ``EMA``, ``TrainResult``,
  ``save_checkpoint``, ``load_checkpoint``, ``NonFiniteLossError``
- metrics for samples: ``mmd``, ``sliced_wasserstein``, ``energy_distance``, ``data_floor``,
  ``distance_with_spread``

Submodules hold the rest: ``minidiff.viz`` (plots and widgets), ``minidiff.checks`` (exercise checkers).
"""

from ._config import default_device, fast_mode
from .data import TOY_DATASETS, GaussianMixture, toy_dataset
from .diffusion import (
    eps_from_score,
    eps_from_x0,
    p_mean_var,
    predict_x0_from_eps,
    q_posterior_mean_var,
    q_sample,
    q_step,
    score_from_eps,
)
from .losses import (
    VLBTerms,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    gaussian_log_likelihood,
    simple_loss,
    vlb_terms,
    vlb_weights,
)
from .metrics import data_floor, distance_with_spread, energy_distance, mmd, sliced_wasserstein
from .nn import TimeMLP, sinusoidal_embedding
from .samplers import available_samplers, ddpm_sample, ddpm_step, get_sampler, register_sampler
from .schedules import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    quadratic_schedule,
    sigmoid_schedule,
)
from .train import EMA, NonFiniteLossError, TrainResult, load_checkpoint, save_checkpoint, train

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "GaussianMixture",
    "NonFiniteLossError",
    "TimeMLP",
    "TrainResult",
    "data_floor",
    "distance_with_spread",
    "energy_distance",
    "load_checkpoint",
    "mmd",
    "save_checkpoint",
    "sinusoidal_embedding",
    "sliced_wasserstein",
    "train",
    "NoiseSchedule",
    "TOY_DATASETS",
    "VLBTerms",
    "available_samplers",
    "cosine_schedule",
    "ddpm_sample",
    "ddpm_step",
    "default_device",
    "discretized_gaussian_log_likelihood",
    "eps_from_score",
    "eps_from_x0",
    "fast_mode",
    "gaussian_kl",
    "gaussian_log_likelihood",
    "get_sampler",
    "linear_schedule",
    "make_schedule",
    "p_mean_var",
    "predict_x0_from_eps",
    "q_posterior_mean_var",
    "q_sample",
    "q_step",
    "quadratic_schedule",
    "register_sampler",
    "score_from_eps",
    "sigmoid_schedule",
    "simple_loss",
    "toy_dataset",
    "vlb_terms",
    "vlb_weights",
]
