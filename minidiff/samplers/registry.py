"""A registry of samplers by name, so notebooks and benchmarks can loop over them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["register_sampler", "get_sampler", "available_samplers"]

_SAMPLERS: dict[str, Callable[..., Any]] = {}
F = TypeVar("F", bound=Callable[..., Any])


def register_sampler(name: str) -> Callable[[F], F]:
    """Decorator: make ``fn`` available as ``get_sampler(name)`` (``name`` a non-empty string)."""
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a string such as 'my_sampler', got {type(name).__name__} {name!r}"
        )
    if not name.strip():
        raise ValueError("name must be a non-empty string")

    def deco(fn: F) -> F:
        if not callable(fn):
            raise TypeError(
                f"register_sampler({name!r}) decorates a function, got {type(fn).__name__}"
            )
        if name in _SAMPLERS and _SAMPLERS[name] is not fn:
            raise ValueError(f"a sampler named {name!r} is already registered")
        _SAMPLERS[name] = fn
        return fn

    return deco


def get_sampler(name: str) -> Callable[..., Any]:
    """Look a sampler up by name (see :func:`available_samplers`)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a sampler's name (a string), got {type(name).__name__}")
    if name not in _SAMPLERS:
        raise ValueError(f"name must be one of {available_samplers()}, got {name!r}")
    return _SAMPLERS[name]


def available_samplers() -> list[str]:
    """Sorted names of every registered sampler."""
    return sorted(_SAMPLERS)
