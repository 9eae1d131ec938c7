"""Diagnoses behind the checkers: what exactly is wrong with an answer that is not right.

Pure helpers for :mod:`._core`: compare a result with the reference (what came back, its shape and
dtype), its gradient, and a wrong value (a constant factor or offset, a transpose, an ignored
``generator``), each in a sentence for the student.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ._calls import Case, call

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


def _shape_message(label: str, g: torch.Tensor, w: torch.Tensor, rtol: float, atol: float) -> str:
    got, want = tuple(g.shape), tuple(w.shape)
    head = f"{label} has shape {got}, expected {want}"
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
        label = "your result" if len(tw) == 1 else f"return value {i + 1} of {len(tw)}"
        if not isinstance(g, torch.Tensor):
            if isinstance(g, (int, float)) and w.dim() == 0:
                return (
                    f"{label} is a Python {type(g).__name__}; return the tensor itself "
                    "(no `.item()` or `float()`), so that a loss keeps its gradient"
                )
            return f"{label} should be a torch.Tensor, got {type(g).__name__}"
        if w.is_floating_point() and not g.is_floating_point():
            wanted = f"a floating-point tensor ({w.dtype})"
            return f"{label} has dtype {g.dtype}; expected {wanted}"
        if g.shape != w.shape:
            return _shape_message(label, g, w, max(rtol, 1e-4), max(atol, 1e-5))
        if keep_dtype and w.is_floating_point() and g.dtype != w.dtype:
            return (
                f"{label} has dtype {g.dtype}; it should stay {w.dtype}, the dtype of the "
                "data it was given (convert schedule values with `.to(x.dtype)` before they meet "
                "the data)"
            )
        if not bool(torch.isfinite(g.detach()).all()):
            return f"{label} contains NaN or inf"
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
