"""Diagnoses behind the checkers: what exactly is wrong with an answer that is not right.

Pure helpers for :mod:`._core`: compare a result with the reference (what came back, its shape and
dtype), its gradient, and a wrong value (a constant factor or offset, a transpose, an ignored
``generator``), each in a sentence for the student.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._calls import Case, call

# --- comparing values ---------------------------------------------------------------------------


def as_tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _double(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def same_shape(a: Any, b: Any) -> bool:
    """True if ``a`` and ``b`` have the same structure and every tensor the same shape."""
    ta, tb = as_tuple(a), as_tuple(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb, strict=False):
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if isinstance(x, torch.Tensor) and x.shape != y.shape:
            return False
    return True


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
            f"{head}. The values are right, only the shape is not: an extra or missing axis (check "
            "`[:, None]`, `.reshape` and `.squeeze`)"
        )
    if gd.dim() == 2 and got[::-1] == want and torch.allclose(gd.T, wd, rtol=rtol, atol=atol):
        return f"{head}. It is the transpose of the right answer"
    try:
        if torch.allclose(gd, wd.expand(got), rtol=rtol, atol=atol):
            return (
                f"{head}. It holds the right values, repeated along extra axes by broadcasting: a "
                "coefficient was not reshaped, or a reduction is missing"
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
        label = "your result" if len(tw) == 1 else f"return value {i + 1} of {len(tw)}"
        problem = _tensor_problem(label, g, w, keep_dtype, rtol, atol)
        if problem:
            return problem
    return None


def _is_real(v: Any) -> bool:
    """A plain real number (a Python or numpy scalar, not a bool)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _tensor_problem(
    label: str, g: Any, w: Any, keep_dtype: bool, rtol: float, atol: float
) -> str | None:
    """One returned value against the reference's tensor: kind, dtype, shape, finiteness."""
    if not isinstance(w, torch.Tensor):
        # NaN equals nothing, so it would otherwise read as an answer that changes between calls
        if _is_real(w) and not math.isnan(float(w)) and _is_real(g) and math.isnan(float(g)):
            return f"{label} is NaN, where a number belongs"
        return None
    if not isinstance(g, torch.Tensor):
        if isinstance(g, (int, float)) and w.dim() == 0:
            return (
                f"{label} is a Python {type(g).__name__}; return the tensor itself (no "
                "`.item()` or `float()`), so that a loss keeps its gradient"
            )
        return f"{label} should be a torch.Tensor, got {type(g).__name__}"
    if w.is_floating_point() and not g.is_floating_point():
        wanted = f"a floating-point tensor ({w.dtype})"
        return f"{label} has dtype {g.dtype}; expected {wanted}"
    if g.shape != w.shape:
        return _shape_message(label, g, w, max(rtol, 1e-4), max(atol, 1e-5))
    if keep_dtype and w.is_floating_point() and g.dtype != w.dtype:
        return (
            f"{label} has dtype {g.dtype}; it should stay {w.dtype}, the dtype of the data it "
            "was given: a float64 value (a schedule array, a tensor made from a Python float) "
            "promotes float32 data, so convert it with `.to(x.dtype)` before it meets the data"
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
                    "your value is right, but it has no gradient, so `loss.backward()` would "
                    "fail: it was computed under torch.no_grad(), or detached (`.detach()`, "
                    "`.item()`, `torch.tensor(...)`). Return the tensor with its graph."
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


def _t_of(case: Case, t_arg: int | None) -> torch.Tensor | None:
    if t_arg is None or len(case[0]) <= t_arg:
        return None
    t = case[0][t_arg]
    return t if isinstance(t, torch.Tensor) and t.dim() == 1 else None


def nonfinite_rows(got: Any, want: Any, case: Case, t_arg: int | None) -> str:
    """``", rows where t = …"`` for a result with NaN/inf where the reference is finite."""
    t = _t_of(case, t_arg)
    for g in as_tuple(got):
        if not (isinstance(g, torch.Tensor) and g.is_floating_point() and g.dim() >= 1):
            continue
        bad = ~torch.isfinite(g.detach()).reshape(g.shape[0], -1).all(1)
        if not bool(bad.any()) or t is None or t.shape[0] != g.shape[0]:
            continue
        ts = sorted(set(t[bad].tolist()))
        shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in ts[:4])
        text = f", in the rows where t = {shown}"
        if ts == [1]:
            text += (
                ": at t = 1, 1 − ᾱ_{t−1} = 1 − ᾱ_0 = 0, so a division by it or by a value read at "
                "t − 1 where t belongs gives NaN"
            )
        return text
    return ""


def input_gradient_problem(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    grad_args: dict[str, int],
) -> str | None:
    """Gradients of the result with respect to the inputs ``grad_args`` (name -> position) must
    match the reference's: a layer of a network passes gradients to everything it uses."""
    if not grad_args:
        return None
    for i, (args, kwargs) in enumerate(cases):
        grads = []
        for f in (fn, reference):
            a = [
                v.detach().clone().requires_grad_(True)
                if j in grad_args.values() and isinstance(v, torch.Tensor)
                else v
                for j, v in enumerate(args)
            ]
            with torch.enable_grad():
                out = f(*a, **kwargs)
            if not (isinstance(out, torch.Tensor) and out.requires_grad):
                return (
                    "your values are right, but no gradient flows through your result: it was "
                    "computed under torch.no_grad(), or detached. Every input "
                    f"({', '.join(f'`{n}`' for n in grad_args)}) must receive its gradient: the "
                    "losses and networks built on this function backpropagate through it."
                )
            inputs = [a[j] for j in grad_args.values()]
            w = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
            gs = torch.autograd.grad((out * w).sum(), inputs, allow_unused=True)
            grads.append(
                [torch.zeros_like(x) if g is None else g for g, x in zip(gs, inputs, strict=True)]
            )
        for name, g, r in zip(grad_args, grads[0], grads[1], strict=True):
            if not torch.allclose(g.double(), r.double(), rtol=1e-3, atol=1e-6):
                none = "no" if not bool(g.abs().any()) else "a wrong"
                return (
                    f"your values are right, but {none} gradient reaches `{name}` (on test input "
                    f"{i + 1}): part of the computation is cut off from autograd (a `.detach()`, "
                    "`torch.no_grad()`, `.data` or `torch.tensor(...)` on the way?)."
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


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _pairs(
    values: Sequence[Any], refs: Sequence[Any]
) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    out = []
    for i, (v, r) in enumerate(zip(values, refs, strict=False)):
        for g, w in zip(as_tuple(v), as_tuple(r), strict=False):
            if (
                isinstance(w, torch.Tensor)
                or isinstance(g, torch.Tensor)
                or (_number(g) and _number(w))
            ):
                out.append((i, _double(g), _double(w)))
    return out


def _same_number(xs: list[float]) -> bool:
    return all(math.isclose(x, xs[0], rel_tol=1e-3, abs_tol=1e-6) for x in xs)


def _shape_numbers(case: Case) -> dict[str, float]:
    """Sizes a wrong reduction multiplies a mean by: the batch, the data dimensions, both."""
    for v in case[0]:
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= 2:
            B, N = v.shape[0], v.numel()
            return {"B": float(B), "D": float(N // B), "N": float(N)}
    return {}


_REDUCTIONS = {
    "D": "a sum over the data dimensions where the mean belongs (or the reverse)",
    "N": "a sum over every element (batch and dimensions) where the mean belongs",
    "B": "a sum over the batch where the mean belongs",
}


def _size_ratio(
    pairs: list[tuple[int, Tensor, Tensor]], ratios: list[float], cases: Sequence[Case]
) -> str | None:
    """A scalar that is ``n ×`` or ``1/n ×`` the right one, ``n`` a size of the input (batch,
    dimensions, pixels): a sum where a mean belongs, or the reverse."""
    for key, text in _REDUCTIONS.items():
        sizes = [_shape_numbers(cases[i]).get(key, 0.0) for i, _, _ in pairs]
        if all(s > 0 for s in sizes):
            pairs_rs = list(zip(ratios, sizes, strict=True))
            for factor, power in ((key, 1), (f"1/{key}", -1)):
                if all(math.isclose(r, s**power, rel_tol=1e-3) for r, s in pairs_rs):
                    named = _NAMED_FACTORS.get(round(sizes[0] ** power, 6))
                    if named and _same_number(sizes):  # D = 2 everywhere: ½ and 1/D look alike
                        return (
                            f"your result is {named} × the right one on every test input, where "
                            f"{key} = {sizes[0]:g}: a missing or extra constant factor, or {text}."
                        )
                    return f"your result is {factor} × the right one on every test input: {text}."
    return None


# A scalar test input gives one ratio, and two ratios agree by chance (two cases at 1.02 are not
# "a constant factor"): a scalar answer is called c × the right one, or off by a constant, only
# when at least _SCALAR_CASES wrong results agree on it and c is more than _FACTOR_GAP from 1.
_SCALAR_CASES = 3
_FACTOR_GAP = 0.05


_NAMED_FACTORS = {2.0: "2", 0.5: "½", 4.0: "4", 0.25: "¼", -1.0: "−1"}


def _named_factor(ratios: list[float]) -> str | None:
    """The name of the slip's factor (½, 2, −1, ...) when every ratio is that same factor: two
    inputs suffice for one of these exact values, which no chance agreement gives."""
    if len(ratios) < 2 or not all(math.isfinite(r) for r in ratios):
        return None
    return next(
        (
            name
            for c, name in _NAMED_FACTORS.items()
            if all(math.isclose(r, c, rel_tol=1e-4) for r in ratios)
        ),
        None,
    )


def _shared_factor(ratios: list[float]) -> bool:
    """The same factor on enough scalar inputs, far enough from 1 to be a slip, not rounding."""
    return (
        len(ratios) >= _SCALAR_CASES
        and all(math.isfinite(r) for r in ratios)
        and _same_number(ratios)
        and abs(ratios[0] - 1.0) > _FACTOR_GAP
    )


def _scalar_problem(
    pairs: list[tuple[int, torch.Tensor, torch.Tensor]], cases: Sequence[Case] | None
) -> str:
    ratios = [float(g) / float(w) if float(w) != 0 else math.nan for _, g, w in pairs]
    finite = all(math.isfinite(r) for r in ratios)
    by_size = _size_ratio(pairs, ratios, cases) if finite and cases is not None else None
    if by_size:
        return by_size
    found = _named_factor(ratios)
    if found or _shared_factor(ratios):
        return (
            f"your result is {found or f'{ratios[0]:.4g}'} × the right one on every test input: a "
            "missing or extra constant factor (a ½, a 2, a sign, a square)."
        )
    offsets = [float(g) - float(w) for _, g, w in pairs]
    i, g, w = pairs[0]
    if (
        len(pairs) >= _SCALAR_CASES
        and all(math.isfinite(d) for d in offsets)
        and _same_number(offsets)
    ):
        return (
            f"your result is off by a constant {offsets[0]:+.4g} on every test input (on test "
            f"input {i + 1}: {float(g):.6g}, expected {float(w):.6g}): a constant term is missing "
            "or extra."
        )
    why = (
        " (no constant factor or offset explains the difference on every input)"
        if len(pairs) >= _SCALAR_CASES
        else ""
    )
    return (
        f"your result differs from the reference on test input {i + 1}: {float(g):.6g}, expected "
        f"{float(w):.6g}{why}."
    )


def constant_factor(
    values: Sequence[Any],
    refs: Sequence[Any],
    rtol: float,
    atol: float,
    cases: Sequence[Case] | None = None,
) -> str | None:
    """The message of :func:`value_problem` when the answer is the same multiple ``c ≠ 1`` of the
    reference on every input (the most telling diagnosis there is), else ``None``."""
    pairs = [(i, g, w) for i, g, w in _pairs(values, refs) if g.shape == w.shape]
    if not pairs or len(pairs) != len(_pairs(values, refs)):
        return None
    cs = []
    for _, g, w in pairs:
        ww = float((w * w).sum())
        if ww == 0:
            return None
        c = float((g * w).sum()) / ww
        if not (math.isfinite(c) and torch.allclose(g, c * w, rtol=rtol, atol=atol)):
            return None
        cs.append(c)
    if not _same_number(cs) or math.isclose(cs[0], 1.0, rel_tol=1e-4):
        return None
    return value_problem(values, refs, rtol, atol, cases=cases)


def value_problem(
    values: Sequence[Any],
    refs: Sequence[Any],
    rtol: float,
    atol: float,
    *,
    cases: Sequence[Case] | None = None,
    t_arg: int | None = None,
) -> str:
    """Describe a wrong value: a constant factor, a constant offset, a transpose, or where."""
    pairs = [
        (i, g, w)
        for i, g, w in _pairs(values, refs)
        if not torch.allclose(g, w, rtol=rtol, atol=atol)
    ]
    if not pairs:  # pragma: no cover - only called when some value differs
        return "the result differs from the reference; re-read the formula and the shapes."
    if all(g.numel() == 1 and w.numel() == 1 for _, g, w in pairs):
        return _scalar_problem(pairs, cases)
    return (
        _reversed_outputs(values, refs, rtol, atol)
        or _factor_or_offset(pairs, rtol, atol, cases)
        or _rearranged(pairs[0], rtol, atol)
        or _largest_difference(pairs[0], cases, t_arg)
    )


def _reversed_outputs(
    values: Sequence[Any], refs: Sequence[Any], rtol: float, atol: float
) -> str | None:
    """Several return values, right but in reverse order."""
    for i, (v, r) in enumerate(zip(values, refs, strict=False)):
        vs, rs = as_tuple(v), as_tuple(r)
        if len(rs) > 1 and len(vs) == len(rs) and close(tuple(reversed(vs)), rs, rtol, atol):
            return (
                f"your return values are right but in reverse order (on test input {i + 1}): "
                "return them in the order the exercise asks for."
            )
    return None


def _factor_or_offset(
    pairs: list[tuple[int, Tensor, Tensor]],
    rtol: float,
    atol: float,
    cases: Sequence[Case] | None = None,
) -> str | None:
    """Every wrong value is ``c ×`` the right one (c the same or not), or right ``+ d``."""
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
        return _factor_message(factors, cases)
    if all(math.isfinite(d) for d in offsets) and _same_number(offsets):
        return (
            f"your result differs from the reference by a constant offset of {offsets[0]:+.4g} on "
            "every test input: a constant term is missing or extra."
        )
    return None


def _dimension_sizes(cases: Sequence[Case] | None) -> set[int]:
    """The sizes (at least 3) of the dimensions of the first tensor argument of every case: a
    factor 1/k or k with k among them is a mean where a sum belongs, or the reverse (a factor ½
    or 2 is left to the generic message, it is more often a missing ½)."""
    sizes: set[int] | None = None
    for args, _kw in cases or ():
        x = next((a for a in args if isinstance(a, Tensor) and a.dim() >= 1), None)
        if x is None:
            return set()
        here = {k for k in x.shape if k >= 3}
        sizes = here if sizes is None else sizes & here
    return sizes or set()


def _mean_for_sum(c: float, cases: Sequence[Case] | None) -> str | None:
    for k in sorted(_dimension_sizes(cases)):
        if math.isclose(c, 1 / k, rel_tol=1e-4):
            return (
                f"your result is 1/{k} × the right one on every test input, and {k} is the size "
                "of a dimension of the input: you averaged over it where the terms add up (a "
                "mean where a sum belongs). Sum over it."
            )
        if math.isclose(c, k, rel_tol=1e-4):
            return (
                f"your result is {k} × the right one on every test input, and {k} is the size of "
                "a dimension of the input: you summed over it where a mean belongs."
            )
    return None


def _factor_message(factors: list[float], cases: Sequence[Case] | None = None) -> str:
    if not _same_number(factors):
        shown = ", ".join(f"{c:.4g}" for c in factors)
        return (
            "your result differs from the reference by a factor that changes from input to input "
            f"({shown}): a sum where a mean belongs (or the reverse), or a factor that depends on "
            "the shape or on t?"
        )
    c = factors[0]
    named = _mean_for_sum(c, cases)
    if named:
        return named
    if math.isclose(c, -1.0, rel_tol=1e-3):
        return (
            "your result differs from the reference in sign only: it is −1 × the right "
            "answer. Check the sign of each term."
        )
    return (
        f"your result differs from the reference by a constant factor: it is {c:.4g} × the "
        "right answer on every test input. Look for a missing or extra factor (½, 2, a "
        "square root, a sum where a mean belongs)."
    )


def _rearranged(pair: tuple[int, Tensor, Tensor], rtol: float, atol: float) -> str | None:
    """The right values in reverse order along the first axis, or transposed."""
    i, g, w = pair
    if g.dim() >= 1 and g.shape == w.shape and g.shape[0] > 1:
        if torch.allclose(g, w.flip(0), rtol=rtol, atol=atol):
            return (
                "your values are right but in reverse order along the first axis (on test input "
                f"{i + 1}): element k belongs to the k-th input, as given."
            )
    if (
        g.dim() >= 2
        and g.shape[-1] == g.shape[-2]
        and torch.allclose(g.transpose(-1, -2), w, rtol=rtol, atol=atol)
    ):
        return (
            f"the result differs from the reference on test input {i + 1}: it is the transpose of "
            "the right answer."
        )
    return None


def _largest_difference(
    pair: tuple[int, Tensor, Tensor], cases: Sequence[Case] | None, t_arg: int | None
) -> str:
    """Where the first wrong value differs most (and that row's ``t``), yours and expected."""
    i, g, w = pair
    k = int((g - w).abs().reshape(-1).argmax())
    idx = tuple(int(j) for j in torch.unravel_index(torch.tensor(k), g.shape)) if g.dim() else ()
    where = f" at index {idx}" if idx else ""
    t = _t_of(cases[i], t_arg) if cases is not None else None
    if idx and t is not None and t.shape[0] == g.shape[0]:
        tv = float(t[idx[0]])
        where += (
            f", a row with t = {tv:.4g}" if t.is_floating_point() else f", a row with t = {tv:.0f}"
        )
    return (
        f"the result differs from the reference on test input {i + 1} (largest difference{where}: "
        f"yours {float(g.reshape(-1)[k]):.5g}, expected {float(w.reshape(-1)[k]):.5g}); re-read "
        "the formula and the shapes."
    )
