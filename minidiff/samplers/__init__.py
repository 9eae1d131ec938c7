"""Samplers: one loop, one step function per sampler, every sampler reachable by name.

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
"dps"                  ``dps_sample``                  the same (guidance, :mod:`.dps`)
=====================  ==============================  ============================================

``available_samplers()`` lists every registered name (the table above plus any sampler added since).

Every sampler returns its final tensor ``(B, ...)`` and shares one vocabulary: ``shape`` or a start
``x_T`` (one of them; the inpainting samplers take the start's shape from their known pixels),
``generator``, ``device``, ``dtype`` (of a drawn start, None meaning ``torch.float32``; a
given ``x_T`` sets the dtype and device, and ``dtype``/``device`` must then be None or agree),
``on_step`` (a callable that sees the start and every state; :func:`trajectory` collects them)
and ``progress``. The samplers of ε-models and scores
also take ``clip_x0`` (:mod:`.clipping`). Modules: :mod:`.loop` (the loop: start, NaN watch,
trajectory, progress), :mod:`.clipping`, :mod:`.ddpm`, :mod:`.ddim`, :mod:`.langevin`,
:mod:`.sde_solvers`, :mod:`.dpm_solver`, :mod:`.flow`, :mod:`.inpainting`, :mod:`.dps`,
:mod:`.registry`.

**Adding a sampler** touches one file (plus its tests): put a module in this package, e.g.
``minidiff/samplers/my_solver.py``, with a step function and a sampler around the loop::

    from .loop import OnStep, draw_start, run_sampler
    from .registry import register_sampler

    @register_sampler("my_solver")
    def my_solver_sample(eps_model, schedule, shape=None, *, x_T=None, steps,
                         generator=None, device=None, dtype=None,
                         on_step: OnStep | None = None, progress=False) -> torch.Tensor:
        # check the sampler's own arguments here, once
        x = draw_start(x_T, shape, generator=generator, device=device, dtype=dtype)

        def step(x, t, t_next):          # one step, no checks: the loop watches for NaN
            ...
            return x_next

        times = [...]                    # the (t, t_next) pairs, Python numbers
        return run_sampler(step, x, times, name="my_solver_sample",
                           on_step=on_step, progress=progress)

This package imports every module in it, so the new sampler is in the registry
(``get_sampler("my_solver")``) and its module is ``minidiff.samplers.my_solver`` without editing
any other file. Tests go to ``tests/samplers/test_my_solver.py``; compare against an exact oracle
(the Gaussian mixture's ``eps_model``) or a reference library, as the existing tests do.
"""

import importlib as _importlib
import pkgutil as _pkgutil

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
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    respace_eps_model,
    respace_schedule,
)
from .ddpm import ddpm_sample, ddpm_step
from .dpm_solver import (
    dpm_solver_sample,
    dpm_solver_step,
    heun_log_snr_sample,
    log_snr_timesteps,
)
from .dps import dps_sample, dps_step, reconstruction_gradient
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
from .loop import NonFiniteSampleError, SamplerState, draw_start, run_sampler, trajectory
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
    "ddim_sigma",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "dpm_solver_sample",
    "dpm_solver_step",
    "dps_sample",
    "dps_step",
    "reconstruction_gradient",
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
    "run_sampler",
    "SamplerState",
    "draw_start",
    "trajectory",
    "straightness",
]


def _discover() -> None:
    """Import every module of this package, so that a sampler in a new file registers itself."""
    for m in _pkgutil.iter_modules(__path__):
        _importlib.import_module(f"{__name__}.{m.name}")


_discover()
