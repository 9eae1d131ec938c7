"""Samplers, one module per family, all reachable by name through the registry.

=====================  ==============================  ============================================
name                   function                        model it needs
=====================  ==============================  ============================================
"ddpm"                 ``ddpm_sample``                 ``eps_model(x, t_long)`` + ``NoiseSchedule``
"ddim"                 ``ddim_sample``                 ``eps_model(x, t_long)`` + ``NoiseSchedule``
"langevin"             ``langevin_sample``             ``score_fn(x)``
"annealed_langevin"    ``annealed_langevin_sample``    ``score_fn(x, sigma)``
"euler_maruyama"       ``euler_maruyama_sample``       ``score_fn(x, t_float)`` + ``SDE``
"pf_ode_euler"         ``pf_ode_euler_sample``         ``score_fn(x, t_float)`` + ``SDE``
"pf_ode_heun"          ``pf_ode_heun_sample``          ``score_fn(x, t_float)`` + ``SDE``
"predictor_corrector"  ``predictor_corrector_sample``  ``score_fn(x, t_float)`` + ``SDE``
"flow_ode"             ``flow_sample``                 ``velocity_fn(x, t_float)`` + a path
"dpm_solver++"         ``dpm_solver_sample``           ``eps_model(x, t_long)`` + ``NoiseSchedule``
"heun_log_snr"         ``heun_log_snr_sample``         ``eps_model(x, t_long)`` + ``NoiseSchedule``
"consistency"          ``consistency_sample``          ``f(x, t_long)`` + ``NoiseSchedule``
                       (in :mod:`minidiff.consistency`)
"inpaint", "repaint"   ``inpaint_sample``,             ``eps_model(x, t_long)`` + ``NoiseSchedule``
                       ``repaint_sample``              + known pixels and a mask
=====================  ==============================  ============================================
"""

from .clipping import (
    CLIP_MODES,
    clip_eps_model,
    clip_score_fn,
    dynamic_threshold,
    resolve_clip,
    static_clip,
)
from .ddim import (
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    respace_eps_model,
    respace_schedule,
)
from .ddpm import NonFiniteSampleError, ddpm_sample, ddpm_step
from .dpm_solver import (
    dpm_solver_sample,
    dpm_solver_step,
    heun_log_snr_sample,
    log_snr_timesteps,
)
from .flow import flow_sample, straightness
from .inpainting import (
    inpaint_sample,
    noised_known,
    paste_known,
    renoise,
    repaint_sample,
    repaint_times,
    replacement_step,
)
from .langevin import annealed_langevin_sample, annealed_step_sizes, langevin_sample, langevin_step
from .registry import available_samplers, get_sampler, register_sampler
from .sde_solvers import (
    count_nfe,
    euler_maruyama_sample,
    ode_solve,
    pf_ode_euler_sample,
    pf_ode_heun_sample,
    pf_ode_sample,
    predictor_corrector_sample,
)

__all__ = [
    "CLIP_MODES",
    "clip_eps_model",
    "clip_score_fn",
    "dynamic_threshold",
    "resolve_clip",
    "static_clip",
    "NonFiniteSampleError",
    "annealed_langevin_sample",
    "annealed_step_sizes",
    "available_samplers",
    "count_nfe",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "dpm_solver_sample",
    "dpm_solver_step",
    "heun_log_snr_sample",
    "inpaint_sample",
    "noised_known",
    "paste_known",
    "renoise",
    "repaint_sample",
    "repaint_times",
    "replacement_step",
    "log_snr_timesteps",
    "ddpm_step",
    "euler_maruyama_sample",
    "flow_sample",
    "get_sampler",
    "langevin_sample",
    "langevin_step",
    "ode_solve",
    "pf_ode_euler_sample",
    "pf_ode_heun_sample",
    "pf_ode_sample",
    "predictor_corrector_sample",
    "register_sampler",
    "respace_eps_model",
    "respace_schedule",
    "straightness",
]
