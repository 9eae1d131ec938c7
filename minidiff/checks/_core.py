"""The machinery behind every exercise checker.

A checker runs the student's function on fixed inputs, compares the result with the reference
solution and, when it differs, with *known mistakes* (ᾱ instead of √ᾱ, off-by-one in t, β
instead of β̃, …) so the feedback can say which mistake the answer looks like.

A checker displays its verdict and returns a :class:`CheckResult` (truthy when passed). With the
environment variable ``MINIDIFF_STRICT_CHECKS=1`` (set by the test suite) a failed check raises
``AssertionError`` instead, so executing a solution notebook proves that its checkers accept it.

Each chapter module describes its checkers as :class:`Spec` objects (cases, reference, mistakes)
in a ``SPECS`` dict and runs them with :func:`check_spec`; the tests iterate over ``SPECS``.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "ATOL",
    "RTOL",
    "Case",
    "CheckResult",
    "Mistake",
    "Spec",
    "check_spec",
    "run_check",
    "strict_checks",
]

Case = tuple[Sequence[Any], Mapping[str, Any]]
"""One test input of a checker: ``(args, kwargs)`` for the function under test."""
Fn = Callable[..., Any]

RTOL, ATOL = 1e-4, 1e-5  # default tolerances of run_check and Spec


def strict_checks() -> bool:
    """True when ``MINIDIFF_STRICT_CHECKS`` asks failed checks to raise."""
    return os.environ.get("MINIDIFF_STRICT_CHECKS", "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class CheckResult:
    """Outcome of one check: ``passed``, a human ``message`` and, if recognised, the ``mistake`` key."""

    name: str
    passed: bool
    message: str
    mistake: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "✅" if self.passed else "❌"
        return f"{mark} {self.name}: {self.message}"

    def _repr_markdown_(self) -> str:
        return str(self)


@dataclass
class Mistake:
    """A known wrong answer: ``fn`` computes it from the same inputs, ``feedback`` explains it."""

    fn: Callable[..., Any]
    feedback: str


def _identity(fn: Fn) -> Fn:
    return fn


@dataclass(frozen=True)
class Spec:
    """Everything one checker needs: inputs, the right answer, and the known wrong ones.

    ``cases`` builds the test inputs, ``reference`` computes the right answer from them and each
    :class:`Mistake` in ``mistakes`` takes the student's own signature. ``wrap`` turns such a
    function into a function of the cases (the identity, unless the checker runs the student's
    function inside a harness: a fresh model, optimizer and generator per case). ``rtol`` and
    ``atol`` are the tolerances of the comparison.
    """

    cases: Callable[[], list[Case]]
    reference: Fn
    mistakes: Mapping[str, Mistake]
    wrap: Callable[[Fn], Fn] = field(default=_identity)
    rtol: float = RTOL
    atol: float = ATOL

    def wrapped_mistakes(self) -> dict[str, Mistake]:
        """The mistakes as functions of the cases: ``wrap`` applied to each one's ``fn``."""
        return {k: Mistake(self.wrap(m.fn), m.feedback) for k, m in self.mistakes.items()}


def check_spec(name: str, spec: Spec, fn: Any, *, display: bool) -> CheckResult:
    """Run the checker ``name`` that ``spec`` describes on the student's ``fn``; see :func:`run_check`.

    ``spec.wrap`` is applied to ``fn`` (when it is callable; anything else gets a friendly
    message from :func:`run_check`) and to every mistake, with the spec's tolerances.
    """
    student = spec.wrap(fn) if callable(fn) else fn
    return run_check(
        name,
        student,
        spec.reference,
        spec.cases(),
        spec.wrapped_mistakes(),
        rtol=spec.rtol,
        atol=spec.atol,
        display=display,
    )


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    tb: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _call(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Outcome:
    try:
        return _Outcome(value=fn(*args, **kwargs))
    except BaseException as err:  # noqa: BLE001 - any student error becomes feedback
        return _Outcome(error=err, tb=traceback.format_exc(limit=3))


def _as_tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    ta, tb = _as_tuple(a), _as_tuple(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        x = torch.as_tensor(x, dtype=torch.float64) if not isinstance(x, torch.Tensor) else x.detach().double()
        y = torch.as_tensor(y, dtype=torch.float64) if not isinstance(y, torch.Tensor) else y.detach().double()
        try:
            x, y = torch.broadcast_tensors(x, y)
        except RuntimeError:
            return False
        if not torch.allclose(x, y, rtol=rtol, atol=atol):
            return False
    return True


def _shape_problem(got: Any, want: Any) -> str | None:
    tg, tw = _as_tuple(got), _as_tuple(want)
    if len(tg) != len(tw):
        return f"expected {len(tw)} return value(s), got {len(tg)}"
    for i, (g, w) in enumerate(zip(tg, tw)):
        if isinstance(w, torch.Tensor):
            if not isinstance(g, torch.Tensor):
                return f"return value {i} should be a torch.Tensor, got {type(g).__name__}"
            if g.shape != w.shape and g.numel() != w.numel():
                return f"return value {i} has shape {tuple(g.shape)}, expected {tuple(w.shape)}"
            if not bool(torch.isfinite(g.detach().double()).all()):
                return f"return value {i} contains NaN or inf"
    return None


def run_check(
    name: str,
    student_fn: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    mistakes: Mapping[str, Mistake] | None = None,
    *,
    rtol: float = RTOL,
    atol: float = ATOL,
    display: bool = True,
) -> CheckResult:
    """Compare ``student_fn`` with ``reference`` on every ``(args, kwargs)`` case.

    Returns (and displays) a :class:`CheckResult`. A ``NotImplementedError`` gets a friendly
    "not done yet" message; a wrong answer that matches one of ``mistakes`` on every case gets that
    mistake's feedback; any other wrong answer says on which input it first differs.
    """
    result = _judge(name, student_fn, reference, cases, mistakes or {}, rtol, atol)
    if display:
        _show(result)
    if not result.passed and strict_checks():
        raise AssertionError(str(result))
    return result


def _judge(
    name: str,
    student_fn: Callable[..., Any],
    reference: Callable[..., Any],
    cases: Sequence[Case],
    mistakes: Mapping[str, Mistake],
    rtol: float,
    atol: float,
) -> CheckResult:
    if not callable(student_fn):
        return CheckResult(name, False, f"pass your function itself, not {type(student_fn).__name__}")
    outs = [_call(student_fn, a, k) for a, k in cases]
    for out in outs:
        if isinstance(out.error, NotImplementedError):
            return CheckResult(
                name, False, "not implemented yet — replace `raise NotImplementedError` with your code, then run this cell again."
            )
    for i, out in enumerate(outs):
        if out.error is not None:
            return CheckResult(
                name, False, f"your function raised {type(out.error).__name__}: {out.error} (on test input {i + 1})."
            )
    refs = [reference(*a, **k) for a, k in cases]
    for i, (out, ref) in enumerate(zip(outs, refs)):
        problem = _shape_problem(out.value, ref)
        if problem:
            return CheckResult(name, False, f"{problem} (on test input {i + 1}).")
    if all(_close(o.value, r, rtol, atol) for o, r in zip(outs, refs)):
        return CheckResult(name, True, f"correct on all {len(cases)} test inputs.")
    for key, mistake in mistakes.items():
        wrong = [mistake.fn(*a, **k) for a, k in cases]
        if all(_close(o.value, w, rtol, atol) for o, w in zip(outs, wrong)):
            return CheckResult(name, False, f"not quite — {mistake.feedback}", mistake=key)
    first = next(i for i, (o, r) in enumerate(zip(outs, refs)) if not _close(o.value, r, rtol, atol))
    return CheckResult(
        name, False, f"the result differs from the reference on test input {first + 1}; re-read the formula and the shapes."
    )


def _show(result: CheckResult) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(str(result)))
            return
    except ImportError:  # pragma: no cover - IPython ships with the course extras
        pass
    print(result)
