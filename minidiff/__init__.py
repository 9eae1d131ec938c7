"""minidiff: a small, tested diffusion-model library that backs the course notebooks.

Public API (stable; coursework imports these names from the top level; ``tests/test_api.py``
keeps this list and ``__all__`` in step):

- schedules: ``NoiseSchedule``, ``linear_schedule``, ``cosine_schedule``, ``quadratic_schedule``,
  ``sigmoid_schedule``, ``make_schedule``
- forward process and posterior: ``q_sample``, ``q_step``, ``q_posterior_mean_var``,
  ``predict_x0_from_eps``, ``eps_from_x0``, ``score_from_eps``, ``eps_from_score``, ``p_mean_var``
- losses (all in ``minidiff.losses``): ``gaussian_kl``, ``gaussian_log_likelihood``,
  ``discretized_gaussian_log_likelihood``, ``VLBTerms``, ``vlb_terms``, ``vlb_weights``,
  ``affine_model_nll``, ``simple_loss``, ``vp_eps_loss``, ``dsm_loss``, ``ism_loss``,
  ``ssm_loss``, ``geometric_sigmas``
- samplers: ``ddpm_step``, ``ddpm_sample``, ``ddim_step``, ``ddim_sample``, ``ddim_invert``,
  ``langevin_step``, ``langevin_sample``, ``annealed_langevin_sample``, ``euler_maruyama_sample``,
  ``pf_ode_sample``, ``predictor_corrector_sample``, ``ode_solve``, ``dpm_solver_sample``,
  ``get_sampler``, ``available_samplers``, ``register_sampler``, ``trajectory``
- SDEs: ``SDE``, ``VPSDE``, ``VESDE``, ``score_fn_from_mixture``, ``score_fn_from_eps_model``
  (a continuous-time ε-model), ``score_fn_from_discrete_eps_model`` (a DDPM ε-model trained on a
  schedule, e.g. by ``train_toy``), ``eps_model_from_score_fn``
- likelihood: ``ode_log_likelihood``, ``bits_per_dim``
- data: ``toy_dataset``, ``TOY_DATASETS``, ``GaussianMixture``
- networks and training: ``TimeMLP``, ``NoiseConditionalScoreMLP``, ``UNet``, ``UNetConfig``,
  ``sinusoidal_embedding``, ``train``, ``train_toy`` (the 2D recipe), ``TrainConfig``, ``EMA``,
  ``TrainResult``, ``save_checkpoint``, ``load_checkpoint``, ``NonFiniteLossError`` (the rest of
  training in ``minidiff.training``)
- guidance: ``classifier_guidance``, ``classifier_free_guidance`` (more in ``minidiff.guidance``;
  conditional networks in ``minidiff.nn``, their losses in ``minidiff.losses``, labelled toys in
  ``minidiff.data``)
- metrics for samples: ``mmd``, ``sliced_wasserstein``, ``energy_distance``, ``data_floor``,
  ``distance_with_spread``, ``knn_precision_recall``, ``precision_recall_with_floor``,
  ``mode_coverage``
- the environment: ``fast_mode`` (the notebooks' short runs), ``default_device``

Submodules hold the rest: ``minidiff.viz`` (plots and widgets), ``minidiff.checks`` (exercise
checkers), ``minidiff.training`` (the loop's parts, image runs, several GPUs),
``minidiff.tensors`` (small tensor helpers), ``minidiff._validation`` (the argument checks every
public function declares); sampling in few steps (chapter 15) in ``minidiff.samplers.dpm_solver``,
``minidiff.learned_variance``, ``minidiff.distillation`` and ``minidiff.consistency``. Every
top-level submodule (``minidiff.viz``, ``minidiff.metrics``, ...) is reachable after ``import
minidiff`` alone; those not imported here load on first use. A module inside a subpackage that its
``__init__`` does not import (``minidiff.metrics.color``, ``minidiff.checks.ch01``) needs an import
of its own (``import minidiff.metrics.color``); ``minidiff.training`` loads its modules on first
use.
"""

import importlib as _importlib
import importlib.util as _importlib_util
from typing import Any as _Any

from . import consistency as _consistency  # noqa: F401, I001  (registers the "consistency" sampler)
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
from .guidance import classifier_free_guidance, classifier_guidance
from .likelihood import bits_per_dim, ode_log_likelihood
from .losses import (
    VLBTerms,
    affine_model_nll,
    discretized_gaussian_log_likelihood,
    dsm_loss,
    gaussian_kl,
    gaussian_log_likelihood,
    geometric_sigmas,
    ism_loss,
    simple_loss,
    ssm_loss,
    vlb_terms,
    vlb_weights,
    vp_eps_loss,
)
from .metrics import (
    data_floor,
    distance_with_spread,
    energy_distance,
    knn_precision_recall,
    mmd,
    mode_coverage,
    precision_recall_with_floor,
    sliced_wasserstein,
)
from .nn import NoiseConditionalScoreMLP, TimeMLP, UNet, UNetConfig, sinusoidal_embedding
from .samplers import (
    annealed_langevin_sample,
    available_samplers,
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    dpm_solver_sample,
    euler_maruyama_sample,
    get_sampler,
    langevin_sample,
    langevin_step,
    ode_solve,
    pf_ode_sample,
    predictor_corrector_sample,
    register_sampler,
    trajectory,
)
from .schedules import (
    NoiseSchedule,
    cosine_schedule,
    linear_schedule,
    make_schedule,
    quadratic_schedule,
    sigmoid_schedule,
)
from .sde import (
    SDE,
    VESDE,
    VPSDE,
    eps_model_from_score_fn,
    score_fn_from_discrete_eps_model,
    score_fn_from_eps_model,
    score_fn_from_mixture,
)
from .training import (
    EMA,
    NonFiniteLossError,
    TrainConfig,
    TrainResult,
    load_checkpoint,
    save_checkpoint,
    train,
    train_toy,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> _Any:
    """``minidiff.viz``, ``minidiff.checks``, ...: a submodule not imported above, on first use
    (PEP 562), so that it needs no import of its own and costs nothing until then."""
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "affine_model_nll",
    "annealed_langevin_sample",
    "available_samplers",
    "bits_per_dim",
    "classifier_free_guidance",
    "classifier_guidance",
    "cosine_schedule",
    "data_floor",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "dpm_solver_sample",
    "default_device",
    "discretized_gaussian_log_likelihood",
    "distance_with_spread",
    "dsm_loss",
    "EMA",
    "energy_distance",
    "eps_from_score",
    "eps_from_x0",
    "eps_model_from_score_fn",
    "euler_maruyama_sample",
    "fast_mode",
    "gaussian_kl",
    "gaussian_log_likelihood",
    "GaussianMixture",
    "geometric_sigmas",
    "get_sampler",
    "ism_loss",
    "knn_precision_recall",
    "langevin_sample",
    "langevin_step",
    "linear_schedule",
    "load_checkpoint",
    "make_schedule",
    "mmd",
    "mode_coverage",
    "NoiseConditionalScoreMLP",
    "NoiseSchedule",
    "NonFiniteLossError",
    "ode_log_likelihood",
    "ode_solve",
    "p_mean_var",
    "pf_ode_sample",
    "precision_recall_with_floor",
    "predict_x0_from_eps",
    "predictor_corrector_sample",
    "q_posterior_mean_var",
    "q_sample",
    "q_step",
    "quadratic_schedule",
    "register_sampler",
    "trajectory",
    "save_checkpoint",
    "score_fn_from_discrete_eps_model",
    "score_fn_from_eps_model",
    "score_fn_from_mixture",
    "score_from_eps",
    "SDE",
    "sigmoid_schedule",
    "simple_loss",
    "sinusoidal_embedding",
    "sliced_wasserstein",
    "ssm_loss",
    "TimeMLP",
    "toy_dataset",
    "TOY_DATASETS",
    "train",
    "train_toy",
    "TrainConfig",
    "TrainResult",
    "UNet",
    "UNetConfig",
    "VESDE",
    "vlb_terms",
    "vlb_weights",
    "VLBTerms",
    "vp_eps_loss",
    "VPSDE",
]
