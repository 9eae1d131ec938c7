"""The machinery behind every exercise checker.

A checker runs the student's function on fixed inputs, compares the result with the reference
solution and, when it differs, with *known mistakes* (ᾱ instead of √ᾱ, off-by-one in t, β
instead of β̃, …) so the feedback can say which mistake the answer looks like. When no known
mistake fits, :mod:`._diagnose` looks for the shape of the error (a constant factor, an offset,
a transpose, an ignored ``generator``) before saying only where the result differs.

Every call gets its own copy of the input tensors, so an answer that changes an input in place
(``x += …``) cannot change the reference, and is told so. Where the reference keeps a gradient
(a loss of a model with parameters), the answer must too, and its gradient must match.

A checker displays its verdict once and returns a :class:`CheckResult` (truthy when passed). With
the environment variable ``MINIDIFF_STRICT_CHECKS=1`` (set by the test suite) a failed check raises
``AssertionError`` instead, so executing a solution notebook proves that its checkers accept it.

Each chapter module describes each checker as a :class:`Spec` (cases, reference, the table of
mistakes, the exercise's signature in ``doc``) and makes it a :class:`Checker`
(``check_q_sample = Checker("q_sample", _Q_SAMPLE)``, which runs :func:`check_spec`); the module
ends with ``SPECS = specs_of(globals())``, which the tests iterate over.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._validation import Flag, checked
from . import _calls
from . import _diagnose as dg
from ._calls import Fn, ReturnError, returned_number, returned_tensor
from ._probe import Terms, terms_diagnosis
from ._spy import ModelCalls, model_calls_diagnosis

__all__ = [
    "ATOL",
    "RTOL",
    "Case",
    "CheckResult",
    "Diagnosis",
    "Mistake",
    "ModelCalls",
    "ReturnError",
    "Spec",
    "check_spec",
    "Checker",
    "finish_first",
    "returned_number",
    "returned_tensor",
    "run_check",
    "specs_of",
    "strict_checks",
    "Terms",
    "with_dtype",
]

Case = tuple[Sequence[Any], Mapping[str, Any]]
"""One test input of a checker: ``(args, kwargs)`` for the function under test."""
Diagnosis = Callable[[Fn, Fn, Sequence[Case], float, float], str | None]
"""An extra diagnosis ``(student, reference, cases, rtol, atol) -> message or None``: run when the
answer is wrong and no listed mistake matches, before the generic description of the difference."""

RTOL, ATOL = (
    1e-4,
    1e-5,
)  # default tolerances, and the loosest any checker accepts (float32 round-off)


def strict_checks() -> bool:
    """True when ``MINIDIFF_STRICT_CHECKS`` asks failed checks to raise."""
    return os.environ.get("MINIDIFF_STRICT_CHECKS", "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }


@dataclass
class CheckResult:
    """Outcome of one check: ``passed``, a human ``message`` and the ``mistake`` key, if recognised.

    In a notebook the verdict is shown once: by the checker when it runs, and not again as the
    cell's output value.
    """

    name: str
    passed: bool
    message: str
    mistake: str | None = None
    shown: bool = field(default=False, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def verdict(self) -> str:
        """``"Correct"`` or ``"Not yet"``: words, which every font can show."""
        return "Correct" if self.passed else "Not yet"

    def __str__(self) -> str:
        return f"{self.verdict} — {self.name}: {self.message}"

    def _repr_markdown_(self) -> str:
        return f"**{self.verdict}** — `{self.name}`: {self.message}"

    def _ipython_display_(self) -> None:
        # IPython calls this for a cell's value; a verdict that the checker showed stays single.
        if not self.shown:
            _show(self)


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
    ``atol`` are the tolerances of the comparison (answers within float32 round-off, ``RTOL`` and
    ``ATOL``, are accepted too).

    Optional: ``keep_dtype`` asks each result to have the reference's floating dtype (say so in
    the exercise); ``reseed(case, k)`` returns ``case`` with its generator seeded differently, so
    that an answer which ignores the ``generator`` is told so. ``grad`` says whether a result must
    keep the reference's gradient with respect to the parameters of the models (``nn.Module``) in
    the cases: ``None`` (the default) checks it for scalar results, losses; ``grad_hint`` is added
    when the value is right but the gradient is not. ``hint`` ends the message for a wrong value
    that no diagnosis explains (say, how the harness replays the random numbers).

    Diagnoses of a wrong value, tried in order after the listed mistakes: ``calls`` compares how
    the answer calls the model in the cases (:class:`ModelCalls`), ``diagnoses`` are the
    chapter's own, ``terms`` probes a formula one input at a time (:class:`Terms`).
    ``grad_args`` names inputs (name -> position) through which the result must pass gradients
    (a layer of a network); ``t_arg`` is the position of ``t``, so that a message can name a
    failing row's ``t``. ``outputs`` names the return values of a function that returns several
    (``("mean", "variance")``), so that a message can say which one is wrong. ``doc`` states the
    exercise function's signature and result: it is the docstring of the chapter's
    ``check_<name>`` (:class:`Checker`).
    """

    cases: Callable[[], list[Case]]
    reference: Fn
    mistakes: Mapping[str, Mistake]
    wrap: Callable[[Fn], Fn] = field(default=_identity)
    rtol: float = RTOL
    atol: float = ATOL
    keep_dtype: bool = False
    reseed: Callable[[Case, int], Case] | None = None
    grad_hint: str = ""
    grad: bool | None = None
    hint: str = ""
    calls: ModelCalls | None = None
    terms: Terms | None = None
    diagnoses: Sequence[Diagnosis] = ()
    grad_args: Mapping[str, int] = field(default_factory=dict)
    t_arg: int | None = None
    doc: str = ""
    outputs: Sequence[str] = ()

    def all_diagnoses(self) -> list[Diagnosis]:
        """``calls``, ``terms`` and ``diagnoses`` as one list, in the order they are tried."""
        out: list[Diagnosis] = []
        if self.calls is not None:
            spec = self.calls
            out.append(lambda s, r, c, rt, at: model_calls_diagnosis(spec, s, r, c, rt, at))
        out.extend(self.diagnoses)
        if self.terms is not None:
            terms = self.terms
            out.append(lambda s, r, c, rt, at: terms_diagnosis(s, r, c, terms, rt, at))
        return out

    def wrapped_mistakes(self) -> dict[str, Mistake]:
        """The mistakes as functions of the cases: ``wrap`` applied to each one's ``fn``."""
        return {k: Mistake(self.wrap(m.fn), m.feedback) for k, m in self.mistakes.items()}


def check_spec(name: str, spec: Spec, fn: Any, *, display: bool) -> CheckResult:
    """Run the checker ``name`` that ``spec`` describes on the student's ``fn`` ; :func:`run_check`.

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
        keep_dtype=spec.keep_dtype,
        reseed=spec.reseed,
        grad_hint=spec.grad_hint,
        grad=spec.grad,
        hint=spec.hint,
        diagnoses=spec.all_diagnoses(),
        grad_args=spec.grad_args,
        t_arg=spec.t_arg,
        outputs=spec.outputs,
    )


class Checker:
    """A chapter's ``check_<name>(fn, display=True) -> CheckResult``: runs its :class:`Spec`.

    The spec's ``doc`` (the exercise function's signature and result) is the checker's docstring,
    and the checker carries the name, module and signature of a function of its chapter, so
    ``ch01.check_q_sample?`` in a notebook and ``help(ch01.check_q_sample)`` say what the exercise
    asks for. ``display`` must be ``True`` or ``False``; a call with other arguments raises a
    ``TypeError`` that names the checker and its signature, before anything runs.
    """

    def __init__(self, name: str, spec: Spec) -> None:
        self.name, self.spec = name, spec
        self.__name__ = self.__qualname__ = f"check_{name}"
        self.__doc__ = spec.doc
        self.__signature__ = _CHECKER_SIGNATURE
        # the chapter module that defines it (as for a function), not this one
        self.__module__ = sys._getframe(1).f_globals.get("__name__", __name__)

    def __call__(self, *args: Any, **kwargs: Any) -> CheckResult:
        try:
            _CHECKER_SIGNATURE.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{self.__name__}(fn, display=True): {err}") from None
        return _run_checker(self, *args, **kwargs)

    def __get__(self, obj: object, objtype: type | None = None) -> Checker:
        # a descriptor that binds to nothing (as a staticmethod): help() and pydoc then show the
        # checker like a function, with its signature, under its chapter's FUNCTIONS
        return self

    def __repr__(self) -> str:
        return f"<checker {self.__name__}>"


_CHECKER_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter("fn", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("display", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=True),
    ],
    return_annotation=CheckResult,
)


@checked(display=Flag)
def _run_checker(checker: Checker, fn: Any, display: bool = True) -> CheckResult:
    return check_spec(checker.name, checker.spec, fn, display=display)


def specs_of(namespace: Mapping[str, Any]) -> dict[str, Spec]:
    """A chapter's ``SPECS``: ``name -> Spec`` of every :class:`Checker` in ``namespace``.

    A chapter module ends with ``SPECS = specs_of(globals())``, so that a new checker is listed
    (and tested) as soon as it is defined; the order is the order of definition.
    """
    return {c.name: c.spec for c in namespace.values() if isinstance(c, Checker)}


def _arg_names(fn: Any) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


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
    keep_dtype: bool = False,
    reseed: Callable[[Case, int], Case] | None = None,
    grad_hint: str = "",
    grad: bool | None = None,
    hint: str = "",
    arg_names: Sequence[str] | None = None,
    diagnoses: Sequence[Diagnosis] = (),
    grad_args: Mapping[str, int] | None = None,
    t_arg: int | None = None,
    outputs: Sequence[str] = (),
) -> CheckResult:
    """Compare ``student_fn`` with ``reference`` on every ``(args, kwargs)`` case.

    Returns (and displays) a :class:`CheckResult`. A ``NotImplementedError`` gets a friendly
    "not done yet" message; a wrong answer that matches one of ``mistakes`` on every case gets that
    mistake's feedback; any other wrong answer is diagnosed (shape, dtype, gradient, input changed
    in place, constant factor or offset, ignored generator) or told on which input it first differs.
    The keyword arguments after ``display`` are those of :class:`Spec`.
    """
    names = list(arg_names) if arg_names is not None else _arg_names(student_fn)
    judge = _Judge(
        rtol,
        atol,
        keep_dtype,
        reseed,
        grad_hint,
        grad,
        hint,
        names,
        list(diagnoses),
        dict(grad_args or {}),
        t_arg,
        tuple(outputs),
    )
    result = judge(name, student_fn, reference, cases, mistakes or {})
    if display:
        _show(result)
    if not result.passed and strict_checks():
        raise AssertionError(str(result))
    return result


@dataclass
class _Run:
    """One check in progress: the functions, the cases, and the answer's and reference's results."""

    student: Fn
    reference: Fn
    cases: Sequence[Case]
    mistakes: Mapping[str, Mistake]
    calls: list[_calls.Outcome] = field(default_factory=list)
    refs: list[Any] = field(default_factory=list)

    def right(self, rtol: float, atol: float) -> bool:
        """Every case's value is close to the reference's."""
        return all(
            dg.close(c.value, r, rtol, atol) for c, r in zip(self.calls, self.refs, strict=False)
        )


@dataclass
class _Judge:
    rtol: float
    atol: float
    keep_dtype: bool
    reseed: Callable[[Case, int], Case] | None
    grad_hint: str
    grad: bool | None
    hint: str
    names: list[str]
    diagnoses: list[Diagnosis]
    grad_args: dict[str, int]
    t_arg: int | None
    outputs: tuple[str, ...] = ()

    def __call__(
        self,
        name: str,
        student_fn: Fn,
        reference: Fn,
        cases: Sequence[Case],
        mistakes: Mapping[str, Mistake],
    ) -> CheckResult:
        """The verdict, from the first step that has one to give (each returns a message or None).

        Did the answer run; is what it returned usable (type, shape, dtype, finite); did it change
        an input in place; if its values are right, are its gradients; if not, which listed
        mistake, own random numbers, diagnosis or ignored generator explains it; else where it
        differs.
        """
        if not callable(student_fn):
            return CheckResult(
                name, False, f"pass your function itself, not {type(student_fn).__name__}"
            )
        run = _Run(student_fn, reference, cases, mistakes)
        run.calls = [_calls.call(student_fn, case) for case in cases]
        failure: str | tuple[str, str] | None = self._call_error(run)
        if failure is None:
            run.refs = [_calls.call(reference, case).unwrap() for case in cases]
            failure = self._return_problem(run) or self._changed_input(run)
        if failure is not None:
            message, mistake = failure if isinstance(failure, tuple) else (failure, None)
            return CheckResult(name, False, message, mistake)
        if run.right(*self.loose):
            problem = self._gradient_problem(run)
            if problem:
                return CheckResult(name, False, problem)
            tight = run.right(self.rtol, self.atol)
            note = "" if tight else " (within float32 round-off)"
            return CheckResult(name, True, f"correct on all {len(cases)} test inputs{note}.")
        message, mistake = self._explain_wrong_value(run)
        return CheckResult(name, False, message, mistake)

    @property
    def loose(self) -> tuple[float, float]:
        """The tolerances, widened to float32 round-off (``RTOL``, ``ATOL``) where tighter."""
        return max(self.rtol, RTOL), max(self.atol, ATOL)

    def _call_error(self, run: _Run) -> str | None:
        """A stub that is not done yet, or the first exception the answer raised."""
        stub = next((c.error for c in run.calls if isinstance(c.error, NotImplementedError)), None)
        if stub is not None:
            helper = _calls.unfinished_helper(stub)
            if helper is not None:
                return (
                    f"`{helper}`, which your function calls, is not implemented yet — write it "
                    "(and check it) first, then run this cell again."
                )
            return (
                "not implemented yet — replace `raise NotImplementedError` with your code, then "
                "run this cell again."
            )
        for i, c in enumerate(run.calls):
            if c.error is not None:
                return f"{_calls.describe_error(c.error)} (on test input {i + 1})."
        return None

    def _return_problem(self, run: _Run) -> str | tuple[str, str] | None:
        """What is wrong with a returned value as a value (type, shape, dtype, NaN), if anything.

        A NaN may have a diagnosis that knows where it comes from; a wrong shape may be a listed
        mistake of another length or shape.
        """
        for i, (c, ref) in enumerate(zip(run.calls, run.refs, strict=False)):
            problem = dg.return_problem(c.value, ref, self.keep_dtype, self.rtol, self.atol)
            if not problem:
                continue
            named = self._diagnose(run, self.loose) if "NaN" in problem else None
            if named:
                return named
            listed = self._listed_mistake(run, shaped=True) if "shape" in problem else None
            if listed:
                return listed
            rows = dg.nonfinite_rows(c.value, ref, run.cases[i], self.t_arg)
            return f"{problem} (on test input {i + 1}{rows})."
        return None

    def _changed_input(self, run: _Run) -> str | None:
        """The answer changed one of its inputs in place (the caller still needs it)."""
        changed = next(
            ((i, c.changed) for i, c in enumerate(run.calls) if c.changed is not None), None
        )
        if changed is None:
            return None
        i, arg = changed
        what = "your values are right, but your" if run.right(*self.loose) else "your"
        return (
            f"{what} function changed its input `{self._name(arg)}` in place (on test input "
            f"{i + 1}). The caller still needs it: write `y = x + …` rather than `x += …`, or "
            "work on a copy (`x = x.clone()`)."
        )

    def _gradient_problem(self, run: _Run) -> str | None:
        """Right values: the gradients to the models' parameters and through ``grad_args``."""
        values = [c.value for c in run.calls]
        return dg.gradient_problem(
            values, run.refs, run.cases, self.grad_hint, self.grad
        ) or dg.input_gradient_problem(run.student, run.reference, run.cases, self.grad_args)

    def _listed_mistake(self, run: _Run, shaped: bool = False) -> tuple[str, str] | None:
        """The first listed mistake that gives the answer's values on every case.

        ``shaped``: the answer's shape differs from the reference's; the mistake must then give
        the answer's shape too.
        """
        for key, mistake in run.mistakes.items():
            wrong = [_calls.call(mistake.fn, case) for case in run.cases]
            if shaped and any(w.error is not None for w in wrong):
                continue
            pairs = zip(run.calls, wrong, strict=False)
            if all(
                (not shaped or dg.same_shape(c.value, w.unwrap()))
                and dg.close(c.value, w.unwrap(), *self.loose)
                for c, w in pairs
            ):
                return f"not quite — {mistake.feedback}", key
        return None

    def _explain_wrong_value(self, run: _Run) -> tuple[str, str | None]:
        """A wrong value: a listed mistake, own random numbers, a diagnosis, an ignored generator,
        or else where it differs from the reference."""
        listed = self._listed_mistake(run)
        if listed:
            return listed
        values = [c.value for c in run.calls]
        loose = self.loose
        if self.reseed is None:
            again = _calls.call(run.student, run.cases[0])
            if again.error is None and not dg.close(again.value, values[0], *loose):
                return (
                    "two calls with the same inputs gave different results: your function draws "
                    "random numbers of its own. Use the noise it is given (the argument), not "
                    "torch.randn / torch.randn_like."
                ), None
        problem = dg.constant_factor(values, run.refs, *loose, run.cases) or self._diagnose(
            run, loose
        )
        if problem is None and self.reseed is not None:
            problem = dg.generator_problem(
                run.student, run.cases[0], values[0], self.reseed, *loose
            )
        if problem:
            return problem, None
        message = self._wrong_output(run) or dg.value_problem(
            values, run.refs, *loose, cases=run.cases, t_arg=self.t_arg
        )
        return (f"{message} {self.hint}" if self.hint else message), None

    def _wrong_output(self, run: _Run) -> str | None:
        """Several named return values, some right: name the wrong one, and where it differs."""
        n = len(self.outputs)
        values = [dg.as_tuple(c.value) for c in run.calls]
        refs = [dg.as_tuple(r) for r in run.refs]
        if n < 2 or any(len(v) != n or len(r) != n for v, r in zip(values, refs, strict=False)):
            return None
        pairs = list(zip(values, refs, strict=False))
        wrong = [
            k for k in range(n) if not all(dg.close(v[k], r[k], *self.loose) for v, r in pairs)
        ]
        if len(wrong) in (0, n):
            return None
        right = [name for k, name in enumerate(self.outputs) if k not in wrong]
        k = wrong[0]
        where = dg.value_problem(
            [v[k] for v in values],
            [r[k] for r in refs],
            *self.loose,
            cases=run.cases,
            t_arg=self.t_arg,
        )
        verb = "is" if len(right) == 1 else "are"
        return f"your {' and '.join(right)} {verb} right, your {self.outputs[k]} is not: {where}"

    def _diagnose(self, run: _Run, loose: tuple[float, float]) -> str | None:
        """The first of the spec's diagnoses that names the answer's mistake."""
        for diagnose in self.diagnoses:
            try:
                problem = diagnose(run.student, run.reference, run.cases, *loose)
            except Exception:  # a diagnosis that does not fit this answer says nothing
                problem = None
            if problem:
                return problem
        return None

    def _name(self, index: int | str) -> str:
        if isinstance(index, str):
            return index
        return self.names[index] if index < len(self.names) else f"argument {index + 1}"


def with_dtype(cases: Sequence[Case], args: Sequence[int], dtype: torch.dtype) -> list[Case]:
    """The cases again with their floating tensors at ``args`` cast to ``dtype``.

    A checker that asks for the input's dtype runs float32 and float64 data, so that an answer
    which lets a float64 schedule value promote float32 data is told so.
    """
    out: list[Case] = []
    for a, k in cases:
        new = [
            v.to(dtype)
            if i in args and isinstance(v, torch.Tensor) and v.is_floating_point()
            else v
            for i, v in enumerate(a)
        ]
        out.append((tuple(new), dict(k)))
    return out


@contextlib.contextmanager
def finish_first(what: str) -> Iterator[None]:
    """Run a "put it together" cell; while a function it uses is a stub, print a friendly note.

    ``with finish_first("sections 1 to 4"): ...`` turns the ``NotImplementedError`` of an
    unfinished exercise into one line instead of a traceback; any other error propagates.
    """
    try:
        yield
    except NotImplementedError:
        print(f"Finish {what} first: this cell runs your own functions.")


def _show(result: CheckResult) -> None:
    result.shown = True
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(result._repr_markdown_()))
            return
    except ImportError:  # pragma: no cover - IPython ships with the course extras
        pass
    print(result)
