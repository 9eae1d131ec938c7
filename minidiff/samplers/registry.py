"""A registry of samplers by name, so notebooks and benchmarks can loop over them."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["register_sampler", "get_sampler", "available_samplers"]

_SAMPLERS: dict[str, Callable[..., Any]] = {}
F = TypeVar("F", bound=Callable[..., Any])


_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _origin(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """Where a function was defined: its module and qualified name (None if it has neither)."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    return module, qualname


def _in_package(fn: Callable[..., Any]) -> bool:
    """Whether the code that runs when ``fn`` is called was written in minidiff itself.

    Wrappers without code of their own (``@checked``) are looked through; a function made with
    ``functools.wraps`` has code of its own and is judged by it, not by the ``__module__`` and
    ``__qualname__`` it copied from the function it wraps.
    """
    inner = inspect.unwrap(fn, stop=lambda f: hasattr(f, "__code__"))
    code = getattr(inner, "__code__", None)
    filename = getattr(code, "co_filename", "")
    return isinstance(filename, str) and Path(filename).resolve().is_relative_to(_PACKAGE_DIR)


def _replaceable(old: Callable[..., Any], fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` may take the place of ``old``: the same definition run again (a notebook
    cell re-run: same module and qualified name). A sampler of the package itself is replaced
    only by its own module imported again, never by a function from outside the package."""
    origin = _origin(old)
    if origin is None or origin != _origin(fn):
        return False
    return _in_package(fn) or not _in_package(old)


def register_sampler(name: str) -> Callable[[F], F]:
    """Decorator: make ``fn`` available as ``get_sampler(name)`` (``name`` a non-empty string).

    A name already taken is refused (``ValueError``), unless the new function is the same one
    defined again, with the same module and qualified name: a notebook cell that registers a
    sampler may be re-run, and the registry then holds the new definition. A built-in sampler
    (one whose code is in minidiff) is never replaced from outside the package, not even by a
    ``functools.wraps`` wrapper of it, which copies its module and name; nor is another
    function under that name.
    """
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
        old = _SAMPLERS.get(name)
        if old is not None and old is not fn:
            if not _replaceable(old, fn):
                origin = _origin(old)
                where = ".".join(origin) if origin else repr(old)
                raise ValueError(
                    f"name {name!r} is already registered to another sampler ({where}); "
                    "choose another name"
                )
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
