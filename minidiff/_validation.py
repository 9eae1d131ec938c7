"""Argument checks: one dialect for the whole package (the contract asserted at the API boundary).

A public function *declares* what each argument must be, in one decorator above its ``def``; its
body is the mathematics alone::

    from ._validation import FloatTensor, Rng, Timesteps, checked
    from .schedules import NoiseSchedule
    from .tensors import noise_like

    @checked(
        x0=FloatTensor(finite=True),
        t=Timesteps(of="x0"),
        schedule=NoiseSchedule,
        noise=FloatTensor(like="x0", finite=True, optional=True),
        generator=Rng,
    )
    def q_sample(x0, t, schedule, noise=None, generator=None):
        # docstring: what it computes, the equation, the shapes
        eps = noise if noise is not None else noise_like(x0, generator)
        a = schedule.gather(schedule.sqrt_alpha_bar, t, x0.dim(), like=x0)
        s = schedule.gather(schedule.sqrt_one_minus_alpha_bar, t, x0.dim(), like=x0)
        return a * x0 + s * eps

How to declare the checks of a new function:

1. Name each argument that needs a check in ``@checked(...)`` and give its *spec*:
   ``FloatTensor`` (a floating tensor: ``dim``, ``min_dim``, ``like="other"`` for the same shape,
   ``finite``, ``positive``, ``within=(lo, hi)``, ``broadcast`` for tensors that must broadcast
   together), ``Timesteps(of="x")`` (discrete ``t`` in ``1..T``: an int or a long ``(B,)``
   tensor; the body receives a long tensor on ``x``'s device), ``Int(minimum=1)``,
   ``Number(low=..., high=...)``, ``OneOf(choices)``, ``Function("(x_t, t) -> eps")``, ``Rng``
   (a ``torch.Generator`` or ``None``), ``Device``, ``FloatDtype``, ``Shape``, a class (the
   argument must be an instance of it, e.g. ``NoiseSchedule``), or ``Check(fn)`` for a check of
   one's own (``fn(value, name) -> value``). ``optional=True`` lets ``None`` through.
2. Write the body for values that passed: a spec may *normalise* what the body receives (an int
   ``t`` becomes a long tensor, a device string a ``torch.device``, a number a ``float``).
   Arguments left at their default are not checked (defaults are trusted).
3. Relations between arguments that no spec expresses (``beta_end >= beta_start``) stay as a
   guard at the top of the body; they are rare.

The exception policy, the same everywhere: the wrong *kind* of object (a string where a number
belongs, an integer tensor where floats belong, ``None`` where a tensor is required) raises
``TypeError``; the right kind with a wrong *value* (NaN, out of range, a shape that does not fit,
an unknown choice) raises ``ValueError``. Every message starts with the argument's name and says
what was expected.

Cost: the checks of *values* (finiteness, ``t`` in range, positivity) read tensors back to the host,
which on an accelerator is a device synchronisation. ``@checked`` gathers all of one call's value
checks into a single read, after every type and shape check has passed. Loops whose inputs were
checked once call the same function without any checks through ``fn.unchecked`` (the bare body,
with arguments already in their normalised form, e.g. ``q_sample.unchecked(x0, t_long, schedule,
eps)``), and a training loop that checked its data can switch the value reads off for a block with
:func:`skip_value_checks` (type and shape checks still run: they cost no synchronisation).

The ``check_*`` functions below are the building blocks of the specs and stay usable on their own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

import numpy as np
import torch

from .tensors import noise_like

__all__ = [
    "checked",
    "Checked",
    "Spec",
    "FloatTensor",
    "Timesteps",
    "PointCloud",
    "Int",
    "Number",
    "OneOf",
    "Function",
    "Instance",
    "Flag",
    "Rng",
    "Device",
    "FloatDtype",
    "Shape",
    "Check",
    "check_with",
    "skip_value_checks",
    "value_checks_enabled",
    "count_host_reads",
    "check_tensor",
    "check_finite",
    "check_all_finite",
    "check_weights_dtype",
    "check_positive_int",
    "check_same_shape",
    "check_broadcast",
    "check_choice",
    "check_number",
    "call_like",
    "call_sampler",
    "check_callable",
    "check_generator",
    "check_device",
    "check_float_dtype",
    "check_shape",
    "describe",
    "check_instance",
    "check_noise",
    "check_timesteps",
    "check_labels",
    "index_tensor",
    "Times",
    "check_time",
    "check_batch_time",
]


_VALUE_CHECKS: ContextVar[bool] = ContextVar("minidiff_value_checks", default=True)


def value_checks_enabled() -> bool:
    """False inside :func:`skip_value_checks` (checks that read values back are then skipped)."""
    return _VALUE_CHECKS.get()


@contextlib.contextmanager
def skip_value_checks() -> Iterator[None]:
    """Skip the checks that read tensor *values* back to the host (NaN/inf, ``t`` in range).

    For hot loops whose inputs are generated by code that was checked once (a training loop
    that checked its data at the start and watches the loss itself): every such check is a
    device synchronisation on a GPU. Type, dtype and shape checks still run (they cost nothing).
    """
    token = _VALUE_CHECKS.set(False)
    try:
        yield
    finally:
        _VALUE_CHECKS.reset(token)


def describe(x: object) -> str:
    """How an argument is described in messages: a tensor by dtype and shape, else its type."""
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__ if x is not None else "None"


def _got(x: object) -> str:
    """What a message says was given: :func:`describe`, then the value itself for a scalar (a
    number or a short string; never ``None``, a tensor or a container, whose repr is long or
    says nothing more)."""
    numpy_scalar = getattr(x, "ndim", None) == 0 and hasattr(x, "dtype")  # np.bool_, say
    if (isinstance(x, (numbers.Number, str, bytes)) or numpy_scalar) and not isinstance(
        x, torch.Tensor
    ):
        text = repr(x)
        return f"{describe(x)} {text if len(text) <= 60 else text[:57] + '...'}"
    return describe(x)


def _integer(value: object) -> int | None:
    """``value`` as a Python int if it is an integer: an ``int`` or any ``numbers.Integral``
    (NumPy's integers), never a bool (``True``/``np.bool_``); else ``None``."""
    if isinstance(value, int):
        return None if isinstance(value, bool) else value
    if isinstance(value, torch.Tensor):  # the common case, before the slower ABC check below
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return None


def _batch_hint(x: object, name: str) -> str:
    """For a tuple or list of tensors where one tensor belongs: most likely a batch of a
    ``TensorDataset`` or ``DataLoader``, which is ``(x, ...)`` even for one tensor."""
    if not (isinstance(x, (tuple, list)) and x and all(isinstance(v, torch.Tensor) for v in x)):
        return ""
    n = len(x)
    return (
        f" of {n} tensor{'s' if n != 1 else ''}: a TensorDataset or DataLoader yields batches "
        f"(x, ...), even of one tensor; unpack the batch first, e.g. {name} = batch[0]"
    )


def check_tensor(
    x: object, name: str, *, min_dim: int = 1, dim: int | None = None, finite: bool = False
) -> torch.Tensor:
    """Return ``x`` if it is a floating tensor of the right rank (finite if asked), else raise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(x)}{_batch_hint(x, name)}")
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


def _all_finite(x: torch.Tensor) -> bool:
    """Whether ``x`` holds no NaN or infinity, in one host read.

    A finite sum proves every element finite (NaN and ±inf propagate through a sum) and costs a
    quarter of ``isfinite(x).all()``; only a sum that overflowed needs the elementwise test.
    """
    return math.isfinite(float(x.detach().sum())) or bool(torch.isfinite(x).all())


def _nonfinite_message(name: str) -> str:
    return f"{name} contains non-finite values (NaN or inf); expected finite numbers"


def check_weights_dtype(weight: torch.Tensor, owner: str, **inputs: torch.Tensor) -> None:
    """Each input in the dtype of ``weight``, else a ``TypeError`` naming it and ``owner`` (e.g.
    ``"U-Net"``). Under autocast torch casts a half or single precision input itself, so those
    pass; a float64 one it leaves as it is, and the layer would fail, so it is refused."""
    for name, z in inputs.items():
        autocast = torch.is_autocast_enabled(z.device.type) and z.dtype != torch.float64
        if z.dtype != weight.dtype and not autocast:
            raise TypeError(
                f"{name} has dtype {z.dtype} but this {owner}'s weights are {weight.dtype}: "
                f"pass {name}.to({weight.dtype}) or convert the model (model.to({z.dtype}))"
            )


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity (one device synchronisation)."""
    if _VALUE_CHECKS.get() and not _all_finite(x):
        raise ValueError(_nonfinite_message(name))
    return x


def check_all_finite(*named: tuple[torch.Tensor | None, str]) -> None:
    """Check several ``(tensor, name)`` pairs with a single synchronisation; name the first bad one.

    ``None`` entries (optional arguments left out) are skipped.
    """
    tensors = [(t, n) for t, n in named if t is not None]
    if not tensors or not _VALUE_CHECKS.get():
        return
    if len(tensors) == 1 or not _defer_reads(tensors[0][0]):
        for t, n in tensors:
            check_finite(t, n)
        return
    device = tensors[0][0].device
    total = tensors[0][0].detach().sum()
    for t, _ in tensors[1:]:
        total = total + t.detach().sum().to(device)
    if math.isfinite(float(total)):
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
    """Return ``value`` as a Python int if it is an integer ``>= minimum``.

    NumPy integers (any ``numbers.Integral``) count and are returned as ``int``; a bool, a float,
    a string or a tensor is a ``TypeError``.
    """
    v = _integer(value)
    if v is None:
        raise TypeError(f"{name} must be an int >= {minimum}, got {_got(value)}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of the strings ``choices`` (a non-string: ``TypeError``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(choices)} (a string), got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


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
        or getattr(getattr(value, "dtype", None), "kind", "") == "b"  # np.bool_
        or not hasattr(value, "__float__")
        or isinstance(value, (str, bytes, complex, torch.Tensor))
        or getattr(value, "size", 1) != 1  # a NumPy array of several numbers
    ):
        raise TypeError(f"{name} must be a real number, got {_got(value)}")
    v = float(value)  # type: ignore[arg-type,unused-ignore]
    finite = math.isfinite(v)
    inside = (low is None or v > low or (v == low and not low_open)) and (
        high is None or v < high or (v == high and not high_open)
    )
    if not (finite and inside):
        interval = _interval(low, high, low_open, high_open)
        if not finite:
            raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return v


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``(0, 1]``-style text of an interval; an absent bound is infinite (and open)."""
    left = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
    right = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
    return f"{left}, {right}"


def check_callable(fn: object, name: str, signature: str = "") -> Callable[..., Any]:
    """Return ``fn`` if it is callable; ``signature`` (e.g. ``"(x_t, t) -> eps"``) is quoted."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable {signature}".rstrip() + f", got {describe(fn)}")
    return fn


def call_like(
    fn: Callable[..., torch.Tensor], x: torch.Tensor, *args: Any, name: str, like: str = "x"
) -> torch.Tensor:
    """``fn(x, *args)``, checked to be a tensor of ``x``'s shape (``like`` names ``x`` in the
    message). Reads no values, so it costs no device synchronisation."""
    out = fn(x, *args)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(
            f"{name} must return a tensor of shape {tuple(x.shape)} (like {like}), "
            f"got {tuple(out.shape)}"
        )
    return out


def call_sampler(
    fn: Callable[..., Any], n: int, generator: torch.Generator | None, name: str
) -> Any:
    """``fn(n, generator)`` for the sampler argument ``name``. A ``TypeError`` raised by the call
    itself (Python could not bind the two arguments: ``lambda n: ...``, a keyword-only
    ``generator``) is re-raised naming ``name`` and the call it must accept; one raised inside
    the sampler's own code passes unchanged."""
    try:
        return fn(n, generator)
    except TypeError as exc:
        if exc.__traceback__ is None or exc.__traceback__.tb_next is not None:
            raise  # raised inside the sampler: its own error, with its own traceback
        raise TypeError(
            f"{name} must accept the call {name}(n, generator) -> (n, D), with the number of "
            f"points and a torch.Generator or None, positionally (e.g. lambda n, g: "
            f"toy_dataset('moons', n, g)); calling it raised: {exc}"
        ) from exc


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """Return ``generator`` if it is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator or None "
            "(seed one with torch.Generator().manual_seed(0)), "
            f"got {describe(generator)}"
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
            f"got {describe(device)}"
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
            f"got {describe(dtype)} {dtype!r}"
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
    dims = [_integer(s) for s in shape]
    if any(d is None for d in dims):
        raise TypeError(f"{name} must contain ints, got {tuple(shape)}")
    if not all(d >= 1 for d in dims):  # type: ignore[operator]
        raise ValueError(f"{name} must contain positive ints, got {tuple(shape)}")
    return tuple(dims)  # type: ignore[arg-type]


def check_instance(value: object, name: str, cls: type, what: str | None = None) -> Any:
    """Return ``value`` if it is an instance of ``cls`` (``what`` names it in the message)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what or 'a ' + cls.__name__}, got {describe(value)}")
    return value


def check_noise(
    noise: object, like: torch.Tensor, like_name: str, generator: torch.Generator | None
) -> torch.Tensor:
    """A given ``noise`` checked (a finite floating tensor of ``like``'s shape), or ``N(0, I)``
    drawn like ``like`` from ``generator``."""
    check_generator(generator)
    if noise is None:
        return noise_like(like, generator)
    check_tensor(noise, "noise")
    check_same_shape(like, noise, like_name, "noise")  # type: ignore[arg-type]
    return check_finite(noise, "noise")  # type: ignore[arg-type]


def index_tensor(
    value: object,
    name: str,
    batch_size: int,
    what: str,
    *,
    allow_int: bool = True,
    device: torch.device | None = None,
) -> torch.Tensor:
    """``value`` as a long tensor ``(batch_size,)``: "an int or an integer tensor ``(B,)``".

    An int (where ``allow_int``) or a 0-d integer tensor stands for the whole batch; a tensor
    holds integers and has shape ``(batch_size,)``. A wrong type (a bool, a float, a floating or
    bool tensor) is a ``TypeError``, a wrong shape a ``ValueError``; both name ``name`` and say
    what the integers are (``what``: "class indices in 0..9", "timesteps in 1..1000"). The range
    is the caller's to check (it knows it, and when a host read is due). The result is on
    ``device`` if given.
    """
    kind = "an int or an integer tensor" if allow_int else "an integer tensor"
    if allow_int and not isinstance(value, (int, torch.Tensor)):
        n = _integer(value)  # NumPy's integers stand for their Python int
        value = value if n is None else n
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, torch.Tensor))
        or not allow_int
        and isinstance(value, int)
    ):
        raise TypeError(
            f"{name} must be {kind} of shape ({batch_size},) ({what}), got {describe(value)}"
        )
    if isinstance(value, int):
        return torch.full((batch_size,), value, dtype=torch.long, device=device)
    if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer (long) tensor of {what}, got dtype {value.dtype}"
        )
    if value.dim() == 0 and allow_int:
        value = value.expand(batch_size)
    if value.dim() != 1 or value.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have shape ({batch_size},) (one per sample)"
            f"{' or be an int' if allow_int else ''}, got {tuple(value.shape)}"
        )
    return value.to(device=device, dtype=torch.long) if device is not None else value.long()


def check_labels(
    y: object,
    batch_size: int,
    num_classes: int,
    *,
    allow_null: bool = False,
    name: str = "y",
    null_in_play: bool = True,
) -> torch.Tensor:
    """Validate class labels and return a long tensor ``(batch_size,)``.

    ``y`` is an int (the same class for the whole batch) or an integer tensor ``(batch_size,)``
    (:func:`index_tensor`) with values in ``0..num_classes-1``; with ``allow_null`` the null label
    ``num_classes`` (∅) is accepted too. Anything else raises a ``TypeError``/``ValueError``
    naming ``name``. The label ``num_classes`` refused is explained as the null label of
    guidance; ``null_in_play=False`` (labels of a plain classifier, where no null label exists)
    reports it like any other label out of range.
    """
    top = num_classes if allow_null else num_classes - 1
    y = index_tensor(y, name, batch_size, f"class indices in 0..{top}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > top):
        bad = int(y.max()) if int(y.max()) > top else int(y.min())
        if bad == num_classes and null_in_play:
            raise ValueError(
                f"{name} contains the null label {num_classes} (∅, 'no class'), "
                "which is not a class here: "
                f"use a class index in 0..{num_classes - 1}"
            )
        what = f"0..{num_classes - 1}" + (f" or the null label {num_classes}" if allow_null else "")
        raise ValueError(f"{name} must be a class index in {what}, got {bad}")
    return y


def check_timesteps(t: object, batch_size: int, T: int, name: str = "t") -> torch.Tensor:
    """Validate discrete timesteps and return them as a long tensor of shape ``(batch_size,)``.

    ``t`` may be a Python int (the same step for the whole batch) or an integer tensor of shape
    ``(batch_size,)`` with values in ``1..T``. Floats, wrong shapes and out-of-range values raise.
    The range is read back (one host read) unless inside :func:`skip_value_checks`.
    """
    tt = _timestep_tensor(t, name, batch_size, T, None)
    if tt.numel() and _VALUE_CHECKS.get() and not _timesteps_in_range(tt, T):
        raise ValueError(_timesteps_message(tt, name, T))
    return tt


def _timestep_tensor(
    t: object, name: str, batch_size: int, T: int, device: torch.device | None
) -> torch.Tensor:
    """Types and shape of ``t`` checked, an int's range too (NumPy's integers count as ints);
    returns a long ``(batch_size,)``."""
    n = _integer(t)
    if n is not None and not 1 <= n <= T:
        raise ValueError(f"{name} must lie in 1..{T}, got {n}")
    return index_tensor(t, name, batch_size, f"timesteps in 1..{T}", device=device)


def _timesteps_in_range(tt: torch.Tensor, T: int) -> bool:
    # one reduction and one read, instead of two comparisons of the whole batch
    lo, hi = torch.stack(torch.aminmax(tt)).tolist()
    return bool(1 <= lo and hi <= T)


def _timesteps_witness(tt: torch.Tensor, T: int) -> torch.Tensor:
    lo, hi = torch.aminmax(tt)
    return (lo >= 1) & (hi <= T)


def _timesteps_message(tt: torch.Tensor, name: str, T: int) -> str:
    return f"{name} must lie in 1..{T}, got values in {int(tt.min())}..{int(tt.max())}"


# ------------------------------------------------------------------ the declared contracts

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
S = TypeVar("S")
_MISSING: Any = object()


_DEFER_ON_CPU = False  # tests set it to exercise the accelerator's path on the CPU


def _defer_reads(x: torch.Tensor) -> bool:
    """Whether value checks on ``x`` are gathered into one read (on an accelerator, where every
    read is a synchronisation) rather than read one by one (on the CPU, where reads are free)."""
    return _DEFER_ON_CPU or x.device.type != "cpu"


class _Call:
    """The state of one checked call: the values checked so far and the deferred value checks."""

    __slots__ = ("values", "defaults", "pending", "index", "args", "kwargs")

    def __init__(
        self,
        defaults: dict[str, Any],
        index: dict[str, int] | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.values: dict[str, Any] = {}
        self.defaults = defaults
        self.pending: list[tuple[torch.Tensor, Callable[[], bool], Callable[[], str]]] = []
        self.index, self.args, self.kwargs = index or {}, args, kwargs or {}

    def get(self, name: str) -> Any:
        """The value of argument ``name``: checked if it has a spec, as given if it has none
        (``self`` of a method, say), its default if it was left out."""
        value = self.values.get(name, _MISSING)
        if value is not _MISSING:
            return value
        if name in self.kwargs:
            return self.kwargs[name]
        pos = self.index.get(name)
        if pos is not None and pos < len(self.args):
            return self.args[pos]
        return self.defaults.get(name, _MISSING)

    def require(
        self,
        x: torch.Tensor,
        holds: Callable[[], bool],
        message: Callable[[], str],
        witness: Callable[[], torch.Tensor] | None = None,
    ) -> None:
        """Require a condition about tensor ``x``; raise ``ValueError(message())`` if it fails.

        On the CPU ``holds()`` is evaluated at once (host reads cost no synchronisation there).
        On an accelerator ``witness()``, a 0-d boolean tensor that is true only if the condition
        holds, is queued and read with the call's other witnesses in one read; ``holds()`` then
        decides only when a witness is false (a witness may be a cheap sufficient test).
        """
        if not _defer_reads(x):
            if not holds():
                raise ValueError(message())
            return
        self.pending.append((witness() if witness else torch.tensor(False), holds, message))

    def read_values(self) -> None:
        """One host read for all the queued conditions; on failure, name the first that failed."""
        pending = self.pending
        ok = pending[0][0]
        for cond, _, _ in pending[1:]:
            ok = ok & cond.to(ok.device)
        if bool(ok):
            return
        for cond, holds, message in pending:
            if not bool(cond) and not holds():
                raise ValueError(message())


class Spec:
    """What one argument must be. :meth:`check` raises or returns the value the body receives.

    ``refs`` names the other arguments the check reads (they are checked first); ``optional``
    lets ``None`` through unchecked.
    """

    optional = False
    refs: tuple[str, ...] = ()
    broadcast = False

    def check(self, value: Any, name: str, call: _Call) -> Any:
        raise NotImplementedError


class FloatTensor(Spec):
    """A floating-point tensor, batch first.

    Args:
        dim: exact number of dimensions; ``min_dim`` the least (default 1: a batch dimension).
        nonempty: at least one sample (a batch dimension of size >= 1).
        like: name of another tensor argument it must have the same shape as; a floating value
            is cast to that argument's dtype, so that the result keeps the data's dtype.
        finite: no NaN or infinity. ``positive``: every value ``> 0``. ``within=(lo, hi)``:
            every value in ``[lo, hi]`` (up to ``WITHIN_TOL``). These read values (deferred,
            one read).
        broadcast: the ``broadcast=True`` tensors of a call must broadcast together.
        optional: ``None`` is allowed.
    """

    WITHIN_TOL = 1e-6
    """The slack of ``within``: values at most this far outside ``[lo, hi]`` pass (float32
    round-off of an image computed in ``[-1, 1]``, e.g. a blur, lands a few ulps outside)."""

    def __init__(
        self,
        *,
        dim: int | None = None,
        min_dim: int = 1,
        nonempty: bool = False,
        like: str | None = None,
        finite: bool = False,
        positive: bool = False,
        within: tuple[float, float] | None = None,
        broadcast: bool = False,
        optional: bool = False,
    ) -> None:
        self.dim, self.min_dim, self.like, self.nonempty = dim, min_dim, like, nonempty
        self.finite, self.positive, self.within = finite, positive, within
        self.broadcast, self.optional = broadcast, optional
        self.refs = (like,) if like is not None else ()

    def check(self, value: Any, name: str, call: _Call) -> torch.Tensor:
        check_tensor(value, name, min_dim=self.min_dim, dim=self.dim)
        if self.nonempty and value.shape[0] < 1:
            raise ValueError(
                f"{name} must hold at least one sample, got shape {tuple(value.shape)}"
            )
        if self.like is not None:
            other = call.get(self.like)
            if isinstance(other, torch.Tensor):
                check_same_shape(other, value, self.like, name)
                if other.is_floating_point() and value.dtype != other.dtype:
                    value = value.to(other.dtype)  # the result keeps the data's dtype
        if not _VALUE_CHECKS.get():
            return value
        if self.finite:
            call.require(
                value,
                lambda: _all_finite(value),
                lambda: _nonfinite_message(name),
                witness=lambda: torch.isfinite(value.detach().sum()),
            )
        if self.positive:
            positive = lambda: (value > 0).all()  # noqa: E731
            call.require(value, lambda: bool(positive()), lambda: f"{name} must be > 0", positive)
        if self.within is not None:
            lo, hi = self.within
            tol = self.WITHIN_TOL
            inside = lambda: ((value >= lo - tol) & (value <= hi + tol)).all()  # noqa: E731
            message = lambda: f"{name} must lie in [{lo:g}, {hi:g}]"  # noqa: E731
            call.require(value, lambda: bool(inside()), message, inside)
        return value


class PointCloud(Spec):
    """A point cloud ``(N, D)``: a real tensor (integers allowed) with finite values, ``D >= 1``.

    The body receives it detached and in float64 (metrics are computed in double precision).

    Args:
        min_rows: the least ``N``; ``more_rows_than="k"``: ``N`` must exceed argument ``k``.
        same_dim_as: another point cloud argument whose ``D`` it must share.
    """

    def __init__(
        self,
        *,
        min_rows: int = 1,
        more_rows_than: str | None = None,
        same_dim_as: str | None = None,
        optional: bool = False,
    ) -> None:
        self.min_rows, self.more_rows_than, self.same_dim_as = min_rows, more_rows_than, same_dim_as
        self.optional = optional
        self.refs = tuple(r for r in (more_rows_than, same_dim_as) if r is not None)

    def check(self, value: Any, name: str, call: _Call) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {describe(value)}")
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
        if value.ndim != 2 or value.shape[1] < 1:
            raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(value.shape)}")
        least = self.min_rows
        if self.more_rows_than is not None and isinstance(call.get(self.more_rows_than), int):
            least = max(least, call.get(self.more_rows_than) + 1)
        if value.shape[0] < least:
            raise ValueError(f"{name} must have at least {least} rows, got {value.shape[0]}")
        other = call.get(self.same_dim_as) if self.same_dim_as is not None else None
        if isinstance(other, torch.Tensor) and other.shape[1] != value.shape[1]:
            raise ValueError(
                f"{self.same_dim_as} and {name} must have the same dimension D, "
                f"got {other.shape[1]} and {value.shape[1]}"
            )
        x64 = value.detach().to(torch.float64)
        if _VALUE_CHECKS.get():
            call.require(
                x64,
                lambda: _all_finite(x64),
                lambda: f"{name} must contain only finite values",
                witness=lambda: torch.isfinite(x64.sum()),
            )
        return x64


class Timesteps(Spec):
    """Discrete timesteps ``t ∈ 1..T``: an int (the whole batch) or an integer tensor ``(B,)``.

    ``of`` names the data argument that gives ``B`` and the device, ``schedule`` the argument
    that gives ``T``. The body receives a long tensor ``(B,)`` on the data's device.
    """

    def __init__(self, of: str = "x", schedule: str = "schedule", optional: bool = False) -> None:
        self.of, self.schedule, self.optional = of, schedule, optional
        self.refs = (of, schedule)

    def check(self, value: Any, name: str, call: _Call) -> Any:
        x, sched = call.get(self.of), call.get(self.schedule)
        if not isinstance(x, torch.Tensor) or not hasattr(sched, "T"):
            return value  # the call misses an argument: Python's own TypeError will say which
        T = sched.T
        tt = _timestep_tensor(value, name, x.shape[0], T, x.device)
        if isinstance(value, torch.Tensor) and tt.numel() and _VALUE_CHECKS.get():
            call.require(
                tt,
                lambda: _timesteps_in_range(tt, T),
                lambda: _timesteps_message(tt, name, T),
                witness=lambda: _timesteps_witness(tt, T),
            )
        return tt


_T_TOL = 1e-6  # grids built in floating point may overshoot [0, 1] by a few ulps


def check_time(t: object, name: str = "t") -> torch.Tensor:
    """Validate continuous time: a Python number or a floating tensor with values in ``[0, 1]``.

    Integer tensors are refused on purpose: ``t`` in ``1..T`` is the *discrete* DDPM index
    (divide by ``T`` first). Returns a floating tensor (float64 for a Python number), clamped to
    ``[0, 1]`` (values within ``1e-6`` outside, from a floating-point grid, are accepted).
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be a float in [0, 1] or a floating tensor, got bool")
    if isinstance(t, (int, float)):
        t = torch.tensor(float(t), dtype=torch.float64)
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"{name} must be a float in [0, 1] or a floating tensor, got {type(t).__name__}"
        )
    if not torch.is_floating_point(t):
        raise TypeError(
            f"{name} must be a floating tensor of continuous times in [0, 1], got dtype {t.dtype} "
            "(discrete DDPM steps i in 1..T correspond to t = i / T)"
        )
    # one host read when all is well; the diagnosis below only runs on failure
    if (
        t.numel()
        and value_checks_enabled()
        and not bool(((t >= -_T_TOL) & (t <= 1.0 + _T_TOL)).all())
    ):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite")
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{float(t.min()):.6g}, {float(t.max()):.6g}]"
        )
    return t.clamp(0.0, 1.0)


def check_batch_time(x: torch.Tensor, t: object, name: str = "t") -> torch.Tensor:
    """``t`` (:func:`check_time`) as a ``(B,)`` tensor on ``x``'s device, ``B = x.shape[0]``; a
    number or a 0-d tensor is broadcast to the batch."""
    tt = check_time(t, name)
    B = x.shape[0]
    if tt.dim() == 0:
        tt = tt.expand(B)
    if tt.shape != (B,):
        raise ValueError(
            f"{name} must have shape ({B},) (one time per sample) or be a number, "
            f"got {tuple(tt.shape)}"
        )
    return tt.to(x.device)


class Times(Spec):
    """Continuous times ``t ∈ [0, 1]`` (:func:`check_time`): a number or a floating tensor.

    With ``of="x"`` the body receives a ``(B,)`` tensor on ``x``'s device
    (:func:`check_batch_time`); without, the checked tensor of whatever shape was given.
    """

    def __init__(self, of: str | None = None, optional: bool = False) -> None:
        self.of, self.optional = of, optional
        self.refs = (of,) if of is not None else ()

    def check(self, value: Any, name: str, call: _Call) -> torch.Tensor:
        x = call.get(self.of) if self.of is not None else None
        return (
            check_batch_time(x, value, name)
            if isinstance(x, torch.Tensor)
            else check_time(value, name)
        )


class Int(Spec):
    """An integer (not a bool) ``>= minimum`` (and ``<= maximum`` if given); a NumPy integer
    counts, and the body receives a Python ``int``."""

    def __init__(
        self, minimum: int = 1, maximum: int | None = None, optional: bool = False
    ) -> None:
        self.minimum, self.maximum, self.optional = minimum, maximum, optional

    def check(self, value: Any, name: str, call: _Call) -> int:
        value = check_positive_int(value, name, minimum=self.minimum)
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{name} must be <= {self.maximum}, got {value}")
        return value


class Number(Spec):
    """A finite real number in an interval (see :func:`check_number`); the body gets a float."""

    def __init__(
        self,
        *,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = True,
        high_open: bool = True,
        optional: bool = False,
    ) -> None:
        self.bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
        self.optional = optional

    def check(self, value: Any, name: str, call: _Call) -> float:
        return check_number(value, name, **self.bounds)  # type: ignore[arg-type]


class OneOf(Spec):
    """One of a fixed set of strings."""

    def __init__(self, choices: Sequence[str], optional: bool = False) -> None:
        self.choices, self.optional = tuple(choices), optional

    def check(self, value: Any, name: str, call: _Call) -> str:
        return check_choice(value, name, self.choices)


class Function(Spec):
    """A callable; ``signature`` (e.g. ``"(x_t, t) -> eps"``) is quoted in the message."""

    def __init__(self, signature: str = "", optional: bool = False) -> None:
        self.signature, self.optional = signature, optional

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return check_callable(value, name, self.signature)


class Instance(Spec):
    """An instance of ``cls`` (write the class itself in ``@checked`` for short)."""

    def __init__(self, cls: type, what: str | None = None, optional: bool = False) -> None:
        self.cls, self.what, self.optional = cls, what, optional

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return check_instance(value, name, self.cls, self.what)


class Flag(Spec):
    """``True`` or ``False``, or a numpy bool (``np.True_``, the body gets a ``bool``); a string
    such as ``"no"``, a number, ``None`` or a tensor is refused, not read as true or false."""

    def check(self, value: Any, name: str, call: _Call) -> Any:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise TypeError(f"{name} must be True or False, got {_got(value)}")


class Rng(Spec):
    """A ``torch.Generator`` or ``None``."""

    optional = True

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return check_generator(value, name)


class Device(Spec):
    """``None``, a device string (``"cpu"``, ``"cuda:0"``) or a ``torch.device`` that exists here;
    the body gets a ``torch.device`` or ``None``."""

    optional = True

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return check_device(value, name)


class FloatDtype(Spec):
    """A real floating torch dtype."""

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return check_float_dtype(value, name)


class Shape(Spec):
    """A non-empty tuple of positive ints (the body gets a tuple)."""

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return check_shape(value, name)


class Check(Spec):
    """A check of one's own: ``fn(value, name) -> value`` raising ``TypeError``/``ValueError``.

    ``uses`` names other arguments the check needs; their checked values follow ``name``:
    ``Check(fn, uses=("schedule",))`` calls ``fn(value, name, schedule)``.
    """

    def __init__(
        self, fn: Callable[..., Any], *, uses: tuple[str, ...] = (), optional: bool = False
    ) -> None:
        self.fn, self.optional, self.refs = fn, optional, uses

    def check(self, value: Any, name: str, call: _Call) -> Any:
        return self.fn(value, name, *(call.get(r) for r in self.refs))


def check_with(spec: object, value: Any, name: str) -> Any:
    """Check one value against a spec outside ``@checked`` (e.g. one branch of an argument that
    may be a tensor or a callable); returns what a body would receive."""
    call = _Call({})
    out = _as_spec(spec).check(value, name, call)
    if call.pending:
        call.read_values()
    return out


def _as_spec(spec: object) -> Spec:
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, type):
        return spec() if issubclass(spec, Spec) else Instance(spec)
    raise TypeError(f"not an argument spec: {spec!r} (give a Spec, a Spec class or a class)")


class Checked(Protocol[P, R]):
    """The type of a function decorated by :func:`checked`: itself, plus ``.unchecked``."""

    unchecked: Callable[P, R]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Checked[P, R]: ...

    @overload
    def __get__(
        self: Checked[Concatenate[S, P2], R], obj: S, objtype: type | None = None
    ) -> Checked[P2, R]: ...


def checked(**specs: object) -> Callable[[Callable[P, R]], Checked[P, R]]:
    """Declare the argument checks of a function (see the module docstring for the dialect).

    Each keyword names an argument and gives its spec. The decorated function checks its
    arguments, reads every deferred value check back at once, then runs the body with the
    normalised values. The body alone stays reachable as ``fn.unchecked``.
    """

    def decorate(fn: Callable[P, R]) -> Checked[P, R]:
        params = inspect.signature(fn).parameters
        unknown = sorted(set(specs) - set(params))
        if unknown:
            raise TypeError(f"@checked names arguments {fn.__name__} does not have: {unknown}")
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        index = {n: i for i, (n, p) in enumerate(params.items()) if p.kind in positional}
        defaults = {n: p.default for n, p in params.items() if p.default is not p.empty}
        parsed = {n: _as_spec(s) for n, s in specs.items()}
        order: list[str] = []
        while len(order) < len(parsed):  # an argument after those it refers to
            ready = [
                n
                for n in params
                if n in parsed
                and n not in order
                and all(r in order or r not in parsed for r in parsed[n].refs)
            ]
            if not ready:
                raise TypeError(f"@checked on {fn.__name__}: arguments refer to each other")
            order += ready
        plan = tuple((n, index.get(n), parsed[n]) for n in order)
        broadcast = tuple(n for n in order if parsed[n].broadcast)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            arglist = list(args)
            call = _Call(defaults, index, arglist, kwargs)
            values = call.values
            n_args = len(arglist)
            for name, pos, spec in plan:
                if pos is not None and pos < n_args:
                    value = arglist[pos]
                elif name in kwargs:
                    value = kwargs[name]
                else:
                    continue  # left at its default
                if value is not None or not spec.optional:
                    value = spec.check(value, name, call)
                    if pos is not None and pos < n_args:
                        arglist[pos] = value
                    else:
                        kwargs[name] = value
                values[name] = value
            if broadcast:
                check_broadcast(*[(values[n], n) for n in broadcast if values.get(n) is not None])
            if call.pending:
                call.read_values()
            return fn(*arglist, **kwargs)

        wrapper.unchecked = fn  # type: ignore[attr-defined]
        wrapper.contract = dict(parsed)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


# ----------------------------------------------------------- measuring the cost of checks

_HOST_READS = ("__bool__", "__int__", "__float__", "__index__", "item", "tolist")


@contextlib.contextmanager
def count_host_reads() -> Iterator[list[int]]:
    """Count calls that copy a tensor's value to the host (each is a sync on an accelerator)."""
    counter = [0]
    saved = {name: getattr(torch.Tensor, name) for name in _HOST_READS}

    def wrap(orig: Callable[..., Any]) -> Callable[..., Any]:
        def inner(self: torch.Tensor, *a: Any, **k: Any) -> Any:
            counter[0] += 1
            return orig(self, *a, **k)

        return inner

    for name, orig in saved.items():
        setattr(torch.Tensor, name, wrap(orig))
    try:
        yield counter
    finally:
        for name, orig in saved.items():
            setattr(torch.Tensor, name, orig)
