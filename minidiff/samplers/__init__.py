"""Samplers, one module per family, all reachable by name through the registry."""

from .ddpm import NonFiniteSampleError, check_shape, ddpm_sample, ddpm_step
from .registry import available_samplers, get_sampler, register_sampler
from . import langevin as langevin  # registers "langevin", "annealed_langevin"
from . import ddim as ddim  # registers "ddim"

__all__ = [
    "NonFiniteSampleError",
    "available_samplers",
    "check_shape",
    "ddpm_sample",
    "ddpm_step",
    "get_sampler",
    "register_sampler",
]
from . import sde_solvers as sde_solvers  # registers "euler_maruyama", "pf_ode_euler", "pf_ode_heun", "predictor_corrector"
