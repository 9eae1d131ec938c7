"""Calling a student's function for a checker: on private copies of its inputs, and in words.

:func:`call` runs a function on copies of the case's tensors and notices an input changed in place;
:func:`describe_error` turns an exception into one sentence about the student's own line;
:func:`returned_number` and :func:`returned_tensor` let a harness say what came back when it cannot
be used (a missing ``return``, a list), instead of failing inside the checker. :func:`seeded`,
:func:`under_no_grad` and :func:`own_rng` call a function the way the course does (a sampler:
no gradient, a seeded global RNG) without moving the student's own random stream;
:func:`case_timesteps` draws the timesteps of a case; :func:`schedule_from_betas` and
:func:`schedule_from_alpha_bar` build the package's schedule from the arrays a student is given.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..schedules import NoiseSchedule

Case = tuple[Sequence[Any], Mapping[str, Any]]
Fn = Callable[..., Any]
# frames that are not the student's: torch's and the whole package's (a check inside a network or a
# loss the student called raises there, but the line to show is the student's call)
_SKIP_DIRS = (str(Path(torch.__file__).parent), str(Path(__file__).parent.parent))


class ReturnError(Exception):
    """What a student's function returned cannot be used; the message says what was expected.

    Harnesses raise it (through :func:`returned_number` and :func:`returned_tensor`) so that a
    missing ``return`` is reported as such, not as an error inside the checker.
    """


def returned_number(value: Any, what: str = "the loss as a Python float (`loss.item()`)") -> float:
    """``value`` as a float if it is one number (float or one-element tensor); else ReturnError."""
    if value is None:
        raise ReturnError(f"returned None; it should return {what}. Did you forget `return`?")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ReturnError(
                f"returned a tensor of shape {tuple(value.shape)}; it should return {what}"
            )
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ReturnError(f"returned a {type(value).__name__}; it should return {what}")


def python_float(rest: str) -> Callable[[Callable[..., Any]], Callable[..., float]]:
    """A ``wrap`` for an exercise function that must return a Python number, not a tensor.

    ``None`` or any other type is a :class:`ReturnError`: "returned a Tensor; return a Python
    float (`float(...)`" + ``rest``, where ``rest`` closes the parenthesis and says what the
    number is for.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., float]:
        @functools.wraps(fn)
        def run(*args: Any) -> float:
            value = fn(*args)
            if value is None:
                raise ReturnError(
                    "returned None; it should return a Python float. Did you forget `return`?"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ReturnError(
                    f"returned a {type(value).__name__}; return a Python float (`float(...)`{rest}"
                )
            return float(value)

        return run

    return wrap


def returned_tensor(value: Any, what: str = "a torch.Tensor") -> torch.Tensor:
    """``value`` if it is a tensor, else ReturnError naming what came back and what was expected."""
    if isinstance(value, torch.Tensor):
        return value
    if value is None:
        raise ReturnError(f"returned None; it should return {what}. Did you forget `return`?")
    raise ReturnError(f"returned a {type(value).__name__}; it should return {what}")


# --- calling the way the course does -------------------------------------------------------------


def seeded(fn: Callable[..., Any], seed: int = 1234) -> Callable[..., Any]:
    """``fn`` run with the global RNG seeded (and the caller's restored afterwards), so that an
    answer that draws from it (label dropout, ``torch.randn``) gives the same numbers each call."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return fn(*args, **kwargs)

    return run


def under_no_grad(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run under ``torch.no_grad()``, as a sampler calls it."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


def own_rng(build: Callable[[], list[Case]]) -> Callable[[], list[Case]]:
    """``build`` (a spec's ``cases``) run without touching the caller's global RNG: building a
    network's layers draws from it, and a check must leave the notebook's random stream alone."""

    def cases() -> list[Case]:
        with torch.random.fork_rng():
            return build()

    return cases


def seeded_mlp(n_in: int, hidden: int, n_out: int, seed: int) -> torch.nn.Sequential:
    """A small ``Linear-Tanh-Linear`` network with weights ``0.7 N(0, 1)`` drawn from ``seed``:
    a checker's stand-in model, the same at every call. Building it leaves the global RNG alone
    (``nn.Linear``'s default init would draw from the student's random stream)."""
    with torch.random.fork_rng(devices=[]):
        net = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n_out)
        )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g))
    return net


def case_timesteps(
    T: int, B: int, seed: int, *, low: int = 1, start: Sequence[int] = (1,)
) -> torch.Tensor:
    """``B`` seeded timesteps in ``low..T`` that begin with ``start`` and end with ``T``: the ends
    of the range, where off-by-one errors show."""
    t = torch.randint(low, T + 1, (B,), generator=torch.Generator().manual_seed(seed))
    t[: len(start)] = torch.tensor(list(start))
    t[-1] = T
    return t


# --- calling on copies --------------------------------------------------------------------------


def _copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone().requires_grad_(obj.requires_grad)
    if type(obj) in (list, tuple):
        return type(obj)(_copy(o) for o in obj)
    if type(obj) is dict:
        return {k: _copy(v) for k, v in obj.items()}
    return obj  # models and callables are shared: a checker compares their gradients, not state


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a.detach(), b.detach()))
    if type(a) in (list, tuple) and type(b) is type(a):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    return True


@dataclass
class Outcome:
    """What one call gave: its ``value`` or ``error``, and the first input it changed in place."""

    value: Any = None
    error: BaseException | None = None
    changed: int | str | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def call(fn: Callable[..., Any], case: Case) -> Outcome:
    """Call ``fn`` on copies of the case's tensors; record its value, its error, a changed input."""
    args, kwargs = case
    a, k = _copy(tuple(args)), _copy(dict(kwargs))
    try:
        out = Outcome(value=fn(*a, **k))
    except Exception as err:  # any error of the student's code becomes feedback; Ctrl-C still stops
        out = Outcome(error=err)
    for i, (x, y) in enumerate(zip(args, a, strict=False)):
        if not _same(x, y):
            out.changed = i
            break
    else:
        out.changed = next((n for n, v in kwargs.items() if not _same(v, k[n])), None)
    return out


# --- errors -------------------------------------------------------------------------------------

_HINTS = (
    (
        "must match the size of tensor",
        "a (B,) coefficient must be reshaped to (B, 1, …, 1) (for example `[:, None]`) before it "
        "multiplies a (B, …) tensor",
    ),
    (
        "One of the differentiated Tensors does not require grad",
        "the tensor you differentiate with respect to must require grad: "
        "`x = x.detach().requires_grad_(True)` before the model sees it",
    ),
    (
        "does not require grad",
        "the loss has lost its gradient: was it computed under torch.no_grad(), or detached?",
    ),
    (
        "same dtype",
        "keep the data's dtype in every tensor you make: `torch.randn(..., dtype=x.dtype)`, "
        "schedule values `.to(x.dtype)`",
    ),
    (
        "expected scalar type",
        "keep the data's dtype in every tensor you make: `torch.randn(..., dtype=x.dtype)`, "
        "schedule values `.to(x.dtype)`",
    ),
    (
        "out of bounds",
        "an index is out of range: schedule arrays have length T + 1 and t runs from 1 to T",
    ),
    (
        "division by zero",
        "one of the inputs the exercise allows makes that denominator zero (an edge of its "
        "range): give that case its own branch before the division, with the value the "
        "exercise asks for there",
    ),
    (
        "cannot be multiplied",
        "the two sides of a matrix product do not fit: (B, E) @ (E, C) needs the weight "
        "transposed, `emb @ weight.T` for a weight of shape (C, E)",
    ),
    (
        "only one element tensors can be converted to Python scalars",
        "a function of the math module (math.sqrt, math.log, math.exp, …) takes one number, not "
        "a tensor: use torch.sqrt, torch.log, torch.exp (or the tensor's .sqrt(), .log()) on "
        "tensors",
    ),
    (
        "backward through the graph a second time",
        "pass create_graph=True to every torch.autograd.grad call: its result is part of a loss "
        "that is differentiated again (retain_graph=True alone is not enough)",
    ),
)


def unfinished_helper(err: BaseException) -> str | None:
    """The name of the student's function that raised ``err`` when it is not the one checked
    (another exercise function, still a stub, that the checked one calls), else None."""
    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(_SKIP_DIRS)
    ]
    if len(frames) >= 2 and frames[-1].name != frames[0].name and frames[-1].name != "<lambda>":
        return frames[-1].name
    return None


def _student_line(err: BaseException) -> str:
    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(_SKIP_DIRS)
    ]
    if frames and frames[-1].line:
        return f" in the line `{frames[-1].line.strip()}`"
    return ""


def describe_error(err: BaseException) -> str:
    """One sentence about an error from the student's function (or a :class:`ReturnError`)."""
    if isinstance(err, ReturnError):
        return f"your function {err}"
    text = f"your function raised {type(err).__name__}{_student_line(err)}: {err}"
    hint = next((h for key, h in _HINTS if key in str(err)), None)
    return f"{text} — {hint}" if hint else text


def schedule_from_betas(betas: torch.Tensor) -> NoiseSchedule:
    """The :class:`NoiseSchedule` whose ``betas`` array (index 0 unused) is ``betas`` (float64)."""
    return NoiseSchedule(betas.double()[1:])


def schedule_from_alpha_bar(alpha_bar: torch.Tensor) -> NoiseSchedule:
    """The :class:`NoiseSchedule` with ``alpha_bar`` (``alpha_bar[0] = 1``):
    ``beta_t = 1 - ab_t / ab_{t-1}``."""
    ab = alpha_bar.double()
    return NoiseSchedule(1.0 - ab[1:] / ab[:-1])
