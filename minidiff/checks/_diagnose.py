"""Diagnoses behind the checkers: what exactly is wrong with an answer that is not right.

Pure helpers for :mod:`._core`: call a function on private copies of its inputs (and notice an
input changed in place), describe an error in the student's terms, and compare a result with the
reference: what came back, its shape and dtype, its gradient, a constant factor or offset, a
transpose, an ignored ``generator``.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

Case = tuple[Sequence[Any], Mapping[str, Any]]
_SKIP_DIRS = (str(Path(torch.__file__).parent), str(Path(__file__).parent))


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


def returned_tensor(value: Any, what: str = "a torch.Tensor") -> torch.Tensor:
    """``value`` if it is a tensor, else ReturnError naming what came back and what was expected."""
    if isinstance(value, torch.Tensor):
        return value
    if value is None:
        raise ReturnError(f"returned None; it should return {what}. Did you forget `return`?")
    raise ReturnError(f"returned a {type(value).__name__}; it should return {what}")


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
    except BaseException as err:  # noqa: BLE001 - any student error becomes feedback
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
        "does not require grad",
        "the loss has lost its gradient: was it computed under torch.no_grad(), or detached?",
    ),
    ("same dtype", "keep the data's dtype: convert schedule values with `.to(x.dtype)`"),
    ("expected scalar type", "keep the data's dtype: convert schedule values with `.to(x.dtype)`"),
    (
        "out of bounds",
        "an index is out of range: schedule arrays have length T + 1 and t runs from 1 to T",
    ),
    (
        "backward through the graph a second time",
        "pass retain_graph=True (or create_graph=True) to "
        "every torch.autograd.grad call but the last",
    ),
)


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


# --- comparing values ---------------------------------------------------------------------------


def as_tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _double(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    """True if ``a`` and ``b`` (tensors, numbers or tuples of them) agree within the tolerances."""
    ta, tb = as_tuple(a), as_tuple(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=False):
        try:
            x, y = torch.broadcast_tensors(_double(x), _double(y))
        except (RuntimeError, TypeError, ValueError):
            return False
        if not torch.allclose(x, y, rtol=rtol, atol=atol):
            return False
    return True


def _shape_message(i: int, g: torch.Tensor, w: torch.Tensor, rtol: float, atol: float) -> str:
    got, want = tuple(g.shape), tuple(w.shape)
    head = f"return value {i} has shape {got}, expected {want}"
    gd, wd = _double(g), _double(w)
    if gd.numel() == wd.numel() and torch.allclose(gd.reshape(want), wd, rtol=rtol, atol=atol):
        return (
            f"{head}. The values are right, only the shape is not: an extra or missing axis "
            "(check `[:, None]`, `.reshape` and `.squeeze`)"
        )
    if gd.dim() == 2 and got[::-1] == want and torch.allclose(gd.T, wd, rtol=rtol, atol=atol):
        return f"{head}. It is the transpose of the right answer"
    try:
        if torch.allclose(gd, wd.expand(got), rtol=rtol, atol=atol):
            return (
                f"{head}. It holds the right values, repeated along extra axes by broadcasting: "
                "a coefficient was not reshaped, or a reduction is missing"
            )
    except RuntimeError:
        pass
    try:
        if torch.allclose(gd.expand(want), wd, rtol=rtol, atol=atol):
            return f"{head}. The values are right; return the full shape {want}"
    except RuntimeError:
        pass
    if gd.dim() > wd.dim() and got[: wd.dim()] == want:
        dims = tuple(range(wd.dim(), gd.dim()))
        for how, red in (("sum", gd.sum(dims)), ("mean", gd.mean(dims))):
            if torch.allclose(red, wd, rtol=rtol, atol=atol):
                return (
                    f"{head}. Its {how} over the last {len(dims)} dimension(s) is the right "
                    f"answer: reduce them (`.{how}(...)`)"
                )
    return head


def return_problem(got: Any, want: Any, keep_dtype: bool, rtol: float, atol: float) -> str | None:
    """What is wrong with the kind, number, shape, dtype or finiteness of what came back, if any."""
    if got is None and want is not None:
        return "your function returned None. Did you forget the `return` statement?"
    tg, tw = as_tuple(got), as_tuple(want)
    if isinstance(want, torch.Tensor) and isinstance(got, (tuple, list)):
        kind = type(got).__name__
        return f"your function returned a {kind} of {len(got)} values; expected one torch.Tensor"
    if isinstance(want, (tuple, list)) and not isinstance(got, (tuple, list)):
        return f"expected a tuple of {len(tw)} values, got a {type(got).__name__}"
    if len(tg) != len(tw):
        return f"expected {len(tw)} return value(s), got {len(tg)}"
    for i, (g, w) in enumerate(zip(tg, tw, strict=False)):
        if not isinstance(w, torch.Tensor):
            continue
        if not isinstance(g, torch.Tensor):
            if isinstance(g, (int, float)) and w.dim() == 0:
                return (
                    f"return value {i} is a Python {type(g).__name__}; return the tensor itself "
                    "(no `.item()` or `float()`), so that a loss keeps its gradient"
                )
            return f"return value {i} should be a torch.Tensor, got {type(g).__name__}"
        if w.is_floating_point() and not g.is_floating_point():
            want = f"a floating-point tensor ({w.dtype})"
            return f"return value {i} has dtype {g.dtype}; expected {want}"
        if g.shape != w.shape:
            return _shape_message(i, g, w, max(rtol, 1e-4), max(atol, 1e-5))
        if keep_dtype and w.is_floating_point() and g.dtype != w.dtype:
            return (
                f"return value {i} has dtype {g.dtype}; it should stay {w.dtype}, the dtype of the "
                "data it was given (convert schedule values with `.to(x.dtype)` before they meet "
                "the data)"
            )
        if not bool(torch.isfinite(g.detach()).all()):
            return f"return value {i} contains NaN or inf"
    return None


# --- gradients ------------------------------------------------------------------------------------


def _params(case: Case) -> list[torch.Tensor]:
    args, kwargs = case
    seen: dict[int, torch.Tensor] = {}
    for v in (*args, *kwargs.values()):
        if isinstance(v, nn.Module):
            for p in v.parameters():
                if p.requires_grad:
                    seen.setdefault(id(p), p)
    return list(seen.values())


def _grads(out: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    gs = torch.autograd.grad((out * w).sum(), params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=False)]


def gradient_problem(
    values: Sequence[Any],
    refs: Sequence[Any],
    cases: Sequence[Case],
    hint: str,
    mode: bool | None = None,
) -> str | None:
    """If the reference keeps a gradient to the case's model parameters, the answer must match.

    ``mode``: ``True`` checks every result, ``False`` none, ``None`` one-number results (losses).
    """
    if mode is False:
        return None
    for i, (v, r, case) in enumerate(zip(values, refs, cases, strict=False)):
        params = _params(case)
        for g, w in zip(as_tuple(v), as_tuple(r), strict=False):
            if not (params and isinstance(w, torch.Tensor) and w.requires_grad):
                continue
            if mode is None and w.numel() != 1:
                continue
            if not (isinstance(g, torch.Tensor) and g.requires_grad):
                return (
                    "your value is right, but it has no gradient, so `loss.backward()` would fail: "
                    "it was computed under torch.no_grad(), or detached (`.detach()`, `.item()`, "
                    "`torch.tensor(...)`). Return the tensor with its graph."
                )
            try:
                mine = _grads(g, params)
            except RuntimeError as err:
                return f"your value is right, but it cannot be differentiated: {err}"
            want = _grads(w, params)
            if not all(
                torch.allclose(a.double(), b.double(), rtol=1e-3, atol=1e-6)
                for a, b in zip(mine, want, strict=False)
            ):
                extra = (
                    f" {hint}"
                    if hint
                    else (
                        " Part of the computation is cut off from autograd (a `.detach()`, "
                        "`torch.no_grad()` or `torch.tensor(...)` on the way?)."
                    )
                )
                return (
                    "your value is right, but its gradient with respect to the model's parameters "
                    f"is not (on test input {i + 1}).{extra}"
                )
    return None


# --- wrong values ---------------------------------------------------------------------------------


def generator_problem(
    fn: Callable[..., Any],
    case: Case,
    first: Any,
    reseed: Callable[[Case, int], Case],
    rtol: float,
    atol: float,
) -> str | None:
    """Tell an answer that ignores its ``generator``: same seed, different result, or reverse."""
    again = call(fn, case)
    if again.error is None and not close(again.value, first, rtol, atol):
        return (
            "two calls with the same seed gave different results: your function draws random "
            "numbers without the `generator` it was given. Pass `generator=generator` to every "
            "torch.randn / torch.randint (torch.randn_like takes no generator: use "
            "`torch.randn(x.shape, generator=generator)`)."
        )
    other = call(fn, reseed(case, 1))
    if other.error is None and close(other.value, first, rtol, atol):
        return (
            "calls with differently seeded generators gave the same result: your function does "
            "not draw its random numbers from the `generator` it was given (does it make its own, "
            "or call torch.manual_seed?)."
        )
    return None


def _pairs(
    values: Sequence[Any], refs: Sequence[Any]
) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    out = []
    for i, (v, r) in enumerate(zip(values, refs, strict=False)):
        for g, w in zip(as_tuple(v), as_tuple(r), strict=False):
            if isinstance(w, torch.Tensor) or isinstance(g, torch.Tensor):
                out.append((i, _double(g), _double(w)))
    return out


def _same_number(xs: list[float]) -> bool:
    return all(math.isclose(x, xs[0], rel_tol=1e-3, abs_tol=1e-6) for x in xs)


def value_problem(values: Sequence[Any], refs: Sequence[Any], rtol: float, atol: float) -> str:
    """Describe a wrong value: a constant factor, a constant offset, a transpose, or where."""
    pairs = [
        (i, g, w)
        for i, g, w in _pairs(values, refs)
        if not torch.allclose(g, w, rtol=rtol, atol=atol)
    ]
    if not pairs:  # pragma: no cover - only called when some value differs
        return "the result differs from the reference; re-read the formula and the shapes."
    factors, offsets = [], []
    for _, g, w in pairs:
        ww = float((w * w).sum())
        c = float((g * w).sum()) / ww if ww > 0 else math.nan
        factors.append(
            c if math.isfinite(c) and torch.allclose(g, c * w, rtol=rtol, atol=atol) else math.nan
        )
        d = float((g - w).mean())
        offsets.append(d if torch.allclose(g, w + d, rtol=rtol, atol=atol) else math.nan)
    if all(math.isfinite(c) for c in factors):
        if _same_number(factors):
            c = factors[0]
            if math.isclose(c, -1.0, rel_tol=1e-3):
                return (
                    "your result differs from the reference in sign only: it is −1 × the right "
                    "answer. Check the sign of each term."
                )
            return (
                f"your result differs from the reference by a constant factor: it is {c:.4g} × the "
                "right answer on every test input. Look for a missing or extra factor (½, 2, a "
                "square "
                "root, a sum where a mean belongs)."
            )
        shown = ", ".join(f"{c:.4g}" for c in factors)
        return (
            f"your result differs from the reference by a factor that changes from input to input "
            f"({shown}): a sum where a mean belongs (or the reverse), or a factor that depends on "
            "the "
            "shape or on t?"
        )
    if all(math.isfinite(d) for d in offsets) and _same_number(offsets):
        return (
            f"your result differs from the reference by a constant offset of {offsets[0]:+.4g} on "
            "every "
            "test input: a constant term is missing or extra."
        )
    i, g, w = pairs[0]
    if (
        g.dim() >= 2
        and g.shape[-1] == g.shape[-2]
        and torch.allclose(g.transpose(-1, -2), w, rtol=rtol, atol=atol)
    ):
        return (
            f"the result differs from the reference on test input {i + 1}: it is the transpose "
            "of the right answer."
        )
    k = int((g - w).abs().reshape(-1).argmax())
    idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(k), g.shape)) if g.dim() else ()
    where = f" at index {idx}" if idx else ""
    return (
        f"the result differs from the reference on test input {i + 1} (largest difference{where}: "
        f"yours {float(g.reshape(-1)[k]):.5g}, expected {float(w.reshape(-1)[k]):.5g}); "
        "re-read the formula and the shapes."
    )
