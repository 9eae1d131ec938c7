"""Probing a wrong answer one term at a time, and naming the coefficient it used.

Most exercise formulas are linear in their data inputs: ``x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε`` is linear
in ``x_0`` and ``ε``. :func:`terms_diagnosis` calls the student's function and the reference with
all but one of those inputs set to zero, so it sees each term alone: the term whose coefficient
differs is named, and the coefficient the answer used is compared with a table of schedule
quantities (``√α_t``, ``1 − ᾱ_{t−1}``, ...), so the message can say "you used √α_t where √ᾱ_t
belongs" rather than only "the result differs".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ._calls import Case, Fn, call

Tensor = torch.Tensor
Candidates = Callable[[Case], Mapping[str, Tensor]]

_SLIP_ALPHA = (
    " α_t = 1 − β_t is one step's factor; ᾱ_t = α_1⋯α_t is the product over every step up to t (a "
    "slip the lecture decks make too: see the table of slips in the course tour)."
)


@dataclass(frozen=True)
class Terms:
    """The inputs a formula is linear in, and the coefficients a student might use instead.

    ``args`` maps a display name (``"x_0"``, ``"the noise"``) to the argument's position.
    ``candidates(case)`` returns named per-row values ``(B,)`` (schedule quantities at the case's
    ``t``) to name the coefficient an answer used; ``t_arg`` is the position of ``t`` (to say
    which timestep a failing row has); ``output`` picks one element of a tuple result.
    ``own`` gives a term its own candidates (display name -> ``candidates``), used for that term
    instead of the shared ones and tried before a zero coefficient is called a missing term (a
    coefficient ``d`` that an answer's slip makes 0 on some input is named, not "missing").
    """

    args: Mapping[str, int]
    candidates: Candidates | None = None
    t_arg: int | None = None
    output: int | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    own: Mapping[str, Candidates] = field(default_factory=dict)


def schedule_candidates(
    alpha_bar: Tensor, t: Tensor, extra: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Named per-row schedule quantities at ``t`` (and at ``t − 1``), in float64, ``(B,)`` each.

    ``ᾱ_t``, ``α_t``, ``β_t`` and ``ᾱ_{t−1}`` through the transforms a formula uses (``q``,
    ``√q``, ``1 − q``, ``√(1 − q)``, ``1/q``, ``1/√q``), first the ones a right answer uses.
    """
    ab = alpha_bar.double()
    a_t = ab[t]
    a_p = ab[(t - 1).clamp(min=0)]
    alpha = a_t / a_p
    base = {"ᾱ_t": a_t, "α_t": alpha, "ᾱ_{t−1}": a_p}
    out: dict[str, Tensor] = {}
    for name, q in base.items():
        out[f"√{name}"] = q.sqrt()
        out[f"√(1 − {name})"] = (1 - q).clamp(min=0).sqrt()
        out[name] = q
        out[f"1 − {name}"] = 1 - q
        out[f"1/√{name}"] = q.rsqrt()
        out[f"1/{name}"] = 1 / q
        out[f"1 − √{name}"] = 1 - q.sqrt()
        out[f"1/√(1 − {name})"] = (1 - q).clamp(min=1e-300).rsqrt()
        out[f"1/(1 − {name})"] = 1 / (1 - q).clamp(min=1e-300)
    out["β_t"] = 1 - alpha
    out["√β_t"] = (1 - alpha).clamp(min=0).sqrt()
    out["1 (no factor at all)"] = torch.ones_like(a_t)
    if extra:
        out.update({k: v.double() for k, v in extra.items()})
    return out


def _zeroed(case: Case, keep: int | None, args: Sequence[int]) -> Case:
    a, k = case
    new = [
        torch.zeros_like(v) if i in args and i != keep and isinstance(v, Tensor) else v
        for i, v in enumerate(a)
    ]
    return tuple(new), k


def _pick(value: Any, output: int | None) -> Tensor | None:
    if output is not None:
        if not isinstance(value, (tuple, list)) or len(value) <= output:
            return None
        value = value[output]
    if not isinstance(value, Tensor) or not value.is_floating_point():
        return None
    return value.detach().double()


def _coefficient(out: Tensor, base: Tensor, inp: Tensor) -> tuple[Tensor, bool]:
    """Per-row c with ``out − base ≈ c · inp``; whether that fits every element."""
    d = (out - base).reshape(out.shape[0], -1)
    x = inp.double().reshape(inp.shape[0], -1)
    if d.shape != x.shape:
        return torch.full((out.shape[0],), math.nan, dtype=torch.float64), False
    den = (x * x).sum(1)
    c = torch.where(den > 0, (d * x).sum(1) / den.clamp(min=1e-300), torch.zeros_like(den))
    fit = torch.allclose(c[:, None] * x, d, rtol=1e-3, atol=1e-5 * (1 + float(d.abs().max())))
    return c, fit


def _name(c: Tensor, candidates: Mapping[str, Tensor]) -> str | None:
    for name, v in candidates.items():
        if v.shape == c.shape and torch.allclose(c, v, rtol=2e-3, atol=1e-6):
            return name
    for name, v in candidates.items():
        if v.shape == c.shape and torch.allclose(c, -v, rtol=2e-3, atol=1e-6):
            return f"−{name}"
    return None


def _row_text(case: Case, t_arg: int | None, b: int) -> str:
    if t_arg is None:
        return f"row {b}"
    t = case[0][t_arg]
    if isinstance(t, Tensor) and t.dim() == 1 and t.shape[0] > b:
        v = t[b].item()
        return f"row {b} (t = {v:.4g})" if isinstance(v, float) else f"row {b} (t = {v})"
    return f"row {b}"


def _slip(got: str, want: str | None) -> str:
    """A word on the slip that turns the right coefficient ``want`` into ``got``, if it is a
    known one (α for ᾱ or back, the schedule read at t − 1 or at t)."""
    if not want:
        return ""
    if got.replace("α_t", "ᾱ_t") == want and "ᾱ" not in got:
        return _SLIP_ALPHA
    if got.replace("ᾱ_t", "α_t") == want:
        return (
            " ᾱ_t belongs to the jump from x_0 to x_t; one step from x_{t−1} to x_t scales by "
            "√α_t = √(1 − β_t)."
        )
    if got.replace("_{t−1}", "_t") == want:
        return " You read the schedule at t − 1: alpha_bar[t] is ᾱ_t (index 0 is clean data)."
    if got.replace("_t", "_{t−1}") == want:
        return " You read the schedule at t where t − 1 belongs: alpha_bar[t - 1] is ᾱ_{t−1}."
    return ""


_ONE_T_FIX = (
    ": each sample has its own t, so read the schedule at the whole tensor t (one value per "
    "sample, shape (B,)) and reshape it to broadcast"
)


def _said_once(messages: list[str], phrase: str) -> list[str]:
    """``messages`` with ``phrase`` kept in the first one that has it and cut from the rest."""
    out, said = [], False
    for m in messages:
        if phrase in m and said:
            m = m.replace(phrase, "")
        said = said or phrase in m
        out.append(m)
    return out


def _term_message(
    term: str,
    c_s: Tensor,
    c_r: Tensor,
    fit: bool,
    cands: Mapping[str, Tensor],
    where: Callable[[int], str],
    note: str,
    own: bool = False,
) -> str:
    """The message for one wrong term; ``own``: ``cands`` are the term's own, named first."""
    if not fit:
        return (
            f"your result depends on {term} in a way that is not a multiple of it (one factor per "
            "sample): check how the coefficient is reshaped to broadcast against it ([:, "
            f"None]).{note}"
        )
    if own and _name(c_s, cands) is not None:
        return _named_coefficient(term, c_s, c_r, cands, note)
    if bool((c_s.abs() < 1e-12).all()):
        return f"the term with {term} is missing: your result does not change with {term}.{note}"
    if torch.allclose(c_s, -c_r, rtol=1e-3, atol=1e-8):
        return f"the term with {term} has the wrong sign.{note}"
    if (
        c_s.shape[0] > 1
        and torch.allclose(c_s, c_s[:1].expand_as(c_s), rtol=1e-6)
        and not torch.allclose(c_r, c_r[:1].expand_as(c_r), rtol=1e-3)
        and any(torch.allclose(c_s[0], c_r[b], rtol=1e-4) for b in range(c_r.shape[0]))
    ):
        return (
            f"the coefficient of {term} is the same number for every sample, the one of a single "
            f"row's t{_ONE_T_FIX}.{note}"
        )
    if _name(c_s, cands) is not None:
        return _named_coefficient(term, c_s, c_r, cands, note)
    ratio = c_s / torch.where(c_r.abs() > 0, c_r, torch.ones_like(c_r))
    if bool((c_r.abs() > 1e-12).all()) and torch.allclose(
        ratio, ratio[:1].expand_as(ratio), rtol=1e-3
    ):
        k = float(ratio[0])
        return (
            f"the coefficient of {term} is {k:.4g} × the right one on every row: a missing or "
            f"extra constant factor in that term.{note}"
        )
    b = int((c_s - c_r).abs().argmax())
    return (
        f"the coefficient of {term} is wrong: on {where(b)} it is {float(c_s[b]):.5g}, expected "
        f"{float(c_r[b]):.5g}.{note}"
    )


def _named_coefficient(
    term: str, c_s: Tensor, c_r: Tensor, cands: Mapping[str, Tensor], note: str
) -> str:
    """The coefficient of ``term`` is one of ``cands`` (and which one the formula has)."""
    want, got = _name(c_r, cands), _name(c_s, cands)
    expected = f" where the formula has {want}" if want else ""
    return f"the coefficient of {term} is {got}{expected}.{_slip(str(got), want)}{note}"


def sigma_candidates(sigma: Tensor) -> dict[str, Tensor]:
    """Named functions of per-row noise levels ``σ`` ``(B,)``."""
    s = sigma.double()
    return {
        "−1/σ²": -1 / s**2,
        "1/σ²": 1 / s**2,
        "−1/σ": -1 / s,
        "1/σ": 1 / s,
        "−σ²": -(s**2),
        "σ": s,
        "σ²": s**2,
        "−1": -torch.ones_like(s),
        "1 (no factor at all)": torch.ones_like(s),
        "√σ": s.sqrt(),
    }


def scalar_candidates(value: float, sym: str, B: int) -> dict[str, Tensor]:
    """Named functions of one number (a step size ``ε``), repeated for ``B`` rows."""
    v = float(value)
    forms = {
        f"{sym}/2": v / 2,
        sym: v,
        f"√{sym}": v**0.5,
        f"√({sym}/2)": (v / 2) ** 0.5,
        f"√(2{sym})": (2 * v) ** 0.5,
        f"2{sym}": 2 * v,
        f"{sym}²": v**2,
        f"{sym}²/2": v**2 / 2,
        "1 (no factor at all)": 1.0,
    }
    return {k: torch.full((B,), x, dtype=torch.float64) for k, x in forms.items()}


def _rest_message(s0: Tensor, r0: Tensor, names: str, where: Callable[[int], str]) -> str:
    """The result with every probed term set to zero is wrong: a term outside them is."""
    b = int((s0 - r0).reshape(s0.shape[0], -1).abs().amax(1).argmax())
    return (
        f"with {names} all set to zero your result should be "
        f"{float(r0[b].reshape(-1)[0]):.5g} on {where(b)}, but it is "
        f"{float(s0[b].reshape(-1)[0]):.5g}: a term that involves none of them is wrong"
    )


def _wrong_terms(
    student: Fn,
    reference: Fn,
    case: Case,
    base: tuple[Tensor, Tensor],
    terms: Terms,
    rtol: float,
    atol: float,
) -> list[tuple[str, Tensor, Tensor, bool]] | None:
    """Each term switched on alone (the others zero): ``(term, coefficient of the answer, of the
    reference, whether the answer's is one factor per sample)`` where they differ; ``None`` when
    a probe gives nothing to compare."""
    s0, r0 = base
    idx = list(terms.args.values())
    out = []
    for term, j in terms.args.items():
        one = _zeroed(case, j, idx)
        s, r = (_pick(call(f, one).value, terms.output) for f in (student, reference))
        if s is None or r is None or s.shape != r.shape or not bool(torch.isfinite(s).all()):
            return None
        if torch.allclose(s - s0, r - r0, rtol=rtol, atol=atol):
            continue
        c_s, fit = _coefficient(s, s0, case[0][j])
        c_r, _ = _coefficient(r, r0, case[0][j])
        out.append((term, c_s, c_r, fit))
    return out


def terms_diagnosis(
    student: Fn, reference: Fn, cases: Sequence[Case], terms: Terms, rtol: float, atol: float
) -> str | None:
    """Name the term (and its coefficient) in which ``student`` differs from ``reference``."""
    idx = list(terms.args.values())
    for i, case in enumerate(cases):
        zero = _zeroed(case, None, idx)
        s0, r0 = (_pick(call(f, zero).value, terms.output) for f in (student, reference))
        if s0 is None or r0 is None or s0.shape != r0.shape:
            return None
        if not bool(torch.isfinite(s0).all()):  # the NaN message says more than a coefficient
            return None
        shared = terms.candidates(case) if terms.candidates else {}
        own = {term: fn(case) for term, fn in terms.own.items()}

        def where(b: int, case: Case = case, i: int = i) -> str:
            return f"test input {i + 1}, {_row_text(case, terms.t_arg, b)}"

        found = _wrong_terms(student, reference, case, (s0, r0), terms, rtol, atol)
        if found is None:
            return None
        wrong = [
            _term_message(
                term,
                c_s,
                c_r,
                fit,
                own.get(term, shared),
                where,
                terms.notes.get(term, ""),
                own=term in own,
            )
            for term, c_s, c_r, fit in found
        ]
        bad = [term for term, *_ in found]
        if not torch.allclose(s0, r0, rtol=rtol, atol=atol):
            wrong.append(_rest_message(s0, r0, ", ".join(terms.args), where))
        if wrong:
            wrong = _said_once(wrong, _ONE_T_FIX)
            right = [t for t in terms.args if t not in bad]
            tail = f" (the term with {' and with '.join(right)} is right)" if right else ""
            return "; ".join(w.rstrip(".") for w in wrong[:2]) + tail + "."
    return None


def elementwise_candidates(q: Tensor, sym: str) -> dict[str, Tensor]:
    """Named functions of a quantity ``q`` (``sym`` its symbol, say ``"ᾱ"``): the vocabulary an
    answer that is itself a function of one schedule quantity is named with."""
    q = q.double()
    return {
        sym: q,
        f"√{sym}": q.sqrt(),
        f"1 − {sym}": 1 - q,
        f"√(1 − {sym})": (1 - q).sqrt(),
        f"1/{sym}": 1 / q,
        f"{sym}/(1 − {sym})": q / (1 - q),
        f"(1 − {sym})/{sym}": (1 - q) / q,
        f"log({sym}/(1 − {sym}))": torch.log(q / (1 - q)),
        f"{sym}/√(1 − {sym})": q / (1 - q).sqrt(),
        f"√({sym}/(1 − {sym}))": (q / (1 - q)).sqrt(),
        f"√{sym}/(1 − {sym})": q.sqrt() / (1 - q),
    }


def _equal(x: Tensor, y: Tensor, rtol: float, atol: float) -> bool:
    """Same shape and close (NaN where the other has NaN counts as equal)."""
    return x.shape == y.shape and torch.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True)


def _names_everywhere(
    values: Iterable[tuple[Tensor, Mapping[str, Tensor]]], rtol: float, atol: float
) -> set[str]:
    """The candidate names equal to the value in every ``(value, candidates)`` pair."""
    common: set[str] | None = None
    for x, cands in values:
        names = {n for n, v in cands.items() if _equal(x, v, rtol, atol)}
        common = names if common is None else common & names
    return common or set()


def named_result(
    candidates: Callable[[Case], Mapping[str, Tensor]],
    what: str = "your result",
    output: int | None = None,
) -> Callable[..., str | None]:
    """A diagnosis: name the answer when it equals one of ``candidates(case)`` on every case."""

    def diagnose(
        student: Fn, reference: Fn, cases: Sequence[Case], rtol: float, atol: float
    ) -> str | None:
        seen = []
        for case in cases:
            got = _pick(call(student, case).value, output)
            ref = _pick(call(reference, case).value, output)
            if got is None or ref is None:
                return None
            cands = {
                k: (v.reshape(got.shape) if v.numel() == got.numel() else v).double()
                for k, v in candidates(case).items()
            }
            seen.append((got, ref, cands))
        if all(_equal(got, ref, rtol, atol) for got, ref, _ in seen):
            return None
        found = _names_everywhere(((got, c) for got, _, c in seen), rtol, atol)
        want = _names_everywhere(((ref, c) for _, ref, c in seen), rtol, atol)
        order = list(seen[0][2])
        name = next((n for n in order if n in found), None)
        if name is None:
            return None
        right_name = next((n for n in order if n in want), None)
        tail = f"; it should be {right_name}" if right_name else ""
        return f"{what} is {name}{tail}."

    return diagnose
