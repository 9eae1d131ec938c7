"""Refuse an allocation that cannot fit, before any work is done, naming the argument that asked.

A typo such as ``n=10**12`` or ``size=10**6`` otherwise reaches the allocator, which fails with a
message about bytes that names no argument (or, on a machine that overcommits, starts swapping).
"""

from __future__ import annotations

import os

__all__ = ["machine_memory", "check_allocation", "format_bytes"]

_FALLBACK = 1 << 40  # where the operating system does not say (1 TiB: still refuses terabytes)


def machine_memory() -> int:
    """Physical memory of this machine in bytes (``sysconf``), or 1 TiB where it is unknown."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return _FALLBACK


def format_bytes(n: float) -> str:
    """``1.5e12`` -> ``'1.5 TB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_allocation(n_bytes: int, arguments: str, what: str) -> None:
    """Raise ``ValueError`` if ``n_bytes`` exceed this machine's memory.

    ``arguments`` names the arguments and values that asked (``"n=1000000000000"``); ``what``
    says what would be allocated (``"patches of 3x32x32 float32"``).
    """
    limit = machine_memory()
    if n_bytes > limit:
        raise ValueError(
            f"{arguments} asks for {what}: {format_bytes(n_bytes)}, more than the "
            f"{format_bytes(limit)} of memory of this machine; choose smaller values"
        )
