"""Argument checks shared by every module (the contract is asserted at the API boundary).

Every helper raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, bad value)
with a message that starts with the argument's name and says what was expected. A finiteness check
reads the tensor back to the host (a device synchronisation), so public functions check what the
user passed once, at their entry; loops call unchecked internal steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "check_tensor",
    "check_finite",
    "check_all_finite",
    "check_positive_int",
    "check_same_shape",
    "check_broadcast",
    "check_choice",
    "check_number",
    "check_callable",
    "check_generator",
    "check_device",
    "check_float_dtype",
    "check_shape",
]


def _kind(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__ if x is not None else "None"


def check_tensor(
    x: object, name: str, *, min_dim: int = 1, dim: int | None = None, finite: bool = False
) -> torch.Tensor:
    """Return ``x`` if it is a floating tensor of the right rank (finite if asked), else raise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_kind(x)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(x.shape)}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (batch first), "
            f"got shape {tuple(x.shape)}"
        )
    if finite:
        check_finite(x, name)
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity (one device synchronisation)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); expected finite numbers")
    return x


def check_all_finite(*named: tuple[torch.Tensor | None, str]) -> None:
    """Check several ``(tensor, name)`` pairs with a single synchronisation; name the first bad one.

    ``None`` entries (optional arguments left out) are skipped.
    """
    tensors = [(t, n) for t, n in named if t is not None]
    if not tensors:
        return
    if len(tensors) == 1:
        check_finite(*tensors[0])
        return
    device = tensors[0][0].device
    ok = torch.isfinite(tensors[0][0]).all()
    for t, _ in tensors[1:]:
        ok = ok & torch.isfinite(t).all().to(device)
    if bool(ok):
        return
    for t, n in tensors:
        check_finite(t, n)


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same shape (no silent broadcasting)."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} must have the same shape as {name_a}: "
            f"expected {tuple(a.shape)}, got {tuple(b.shape)}"
        )


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of two shapes in pure Python (``torch.broadcast_shapes`` is slower)."""
    n = max(len(a), len(b))
    pa, pb = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    out = []
    for u, v in zip(pa, pb, strict=True):
        if u != v and u != 1 and v != 1:
            return None
        out.append(v if u == 1 else u)
    return tuple(out)


def check_broadcast(*named: tuple[torch.Tensor, str]) -> tuple[int, ...]:
    """Return the broadcast shape of the ``(tensor, name)`` pairs, or raise naming the misfit."""
    shape: tuple[int, ...] = ()
    for i, (t, n) in enumerate(named):
        joint = _broadcast(shape, tuple(t.shape))
        if joint is None:
            before = ", ".join(f"{m} {tuple(u.shape)}" for u, m in named[:i])
            raise ValueError(
                f"{n} of shape {tuple(t.shape)} does not broadcast against {before}; "
                "give tensors of the same shape (or dimensions of size 1)"
            )
        shape = joint
    return shape


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {_kind(value)} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return str(value)


def check_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = True,
    high_open: bool = True,
) -> float:
    """Return ``value`` as a float if it is a finite real number inside the given interval.

    ``low``/``high`` are the bounds (``None``: unbounded); ``low_open``/``high_open`` say whether
    bound itself is excluded. Python numbers, NumPy scalars and one-element tensors are accepted.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        value = value.item()
    if (
        isinstance(value, bool)
        or not hasattr(value, "__float__")
        or isinstance(value, (str, bytes, complex))
    ):
        raise TypeError(f"{name} must be a real number, got {_kind(value)} {value!r}")
    v = float(value)  # type: ignore[arg-type,unused-ignore]
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{lo}, {hi}{right}"
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return v


def check_callable(fn: object, name: str, signature: str = "") -> Callable[..., Any]:
    """Return ``fn`` if it is callable; ``signature`` (e.g. ``"(x_t, t) -> eps"``) is quoted."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable {signature}".rstrip() + f", got {_kind(fn)}")
    return fn


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None "
            "(seed one with torch.Generator().manual_seed(0)), "
            f"got {_kind(generator)}"
        )
    return generator


def check_device(device: object, name: str = "device") -> torch.device | None:
    """Parse ``device`` (``None``, a string such as ``"cpu"``/``"cuda:0"`` or a ``torch.device``).

    Raises ``ValueError`` for a string torch cannot parse and for an accelerator that is not
    available on this machine, instead of torch's ``RuntimeError`` at the first allocation.
    """
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            f"{name} must be a string such as 'cpu' or 'cuda', a torch.device or None, "
            f"got {_kind(device)}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{name} {device!r} is not a device torch knows "
            "(expected e.g. 'cpu', 'cuda', 'cuda:0', 'mps')"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} {device!r} is not available: torch sees no CUDA GPU on this machine "
                "(use 'cpu')"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name} {device!r} is not available: this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s)"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name} {device!r} is not available on this machine (use 'cpu')")
    elif dev.type not in ("cpu", "meta"):
        is_available = getattr(getattr(torch, dev.type, None), "is_available", None)
        if callable(is_available) and not is_available():
            raise ValueError(f"{name} {device!r} is not available on this machine (use 'cpu')")
    return dev


def check_float_dtype(dtype: object, name: str = "dtype") -> torch.dtype:
    """Return ``dtype`` if it is a real floating torch dtype (``torch.float32``, ...)."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"{name} must be a torch floating dtype such as torch.float32, "
            f"got {_kind(dtype)} {dtype!r}"
        )
    if not dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating dtype such as torch.float32 (samples are real numbers), "
            f"got {dtype}"
        )
    return dtype


def check_shape(shape: object, name: str = "shape") -> tuple[int, ...]:
    """Validate the ``shape`` argument of a sampler: a non-empty tuple of positive ints."""
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) == 0:
        raise TypeError(
            f"{name} must be a non-empty tuple of ints such as (1000, 2), got {shape!r}"
        )
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"{name} must contain positive ints, got {tuple(shape)}")
    return tuple(int(s) for s in shape)
