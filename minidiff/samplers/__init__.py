"""Samplers, one module per family, all reachable by name through the registry."""

from .ddpm import NonFiniteSampleError, check_shape, ddpm_sample, ddpm_step
from .registry import available_samplers, get_sampler, register_sampler

__all__ = [
    "NonFiniteSampleError",
    "available_samplers",
    "check_shape",
    "ddpm_sample",
    "ddpm_step",
    "get_sampler",
    "register_sampler",
]
