"""Watching how an answer calls the model: what it feeds in, which t, which random draws.

A loss is one number, so its value alone says little about what went wrong. :class:`Spy` wraps
the checker's model and records every call, so a diagnosis can compare the answer's calls with the
reference's: ``x_0`` fed where ``x_t`` belongs, ``t − 1`` or ``t / T`` for the timestep, a ``t``
drawn outside ``1..T``, one draw for the whole batch, draws that ignore the ``generator``. The
recorded model outputs let a diagnosis name how the output was used (the target, the reduction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._calls import Case, Outcome, call
from ._probe import Terms, terms_diagnosis

Tensor = torch.Tensor
Fn = Callable[..., Any]


class Spy(nn.Module):
    """Wraps ``model``; records the positional inputs and the output of every call."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model
        self.calls: list[tuple[Any, ...]] = []
        self.outputs: list[Any] = []

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(tuple(a.detach().clone() if isinstance(a, Tensor) else a for a in args))
        out = self.inner(*args, **kwargs)
        self.outputs.append(out.detach().clone() if isinstance(out, Tensor) else out)
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


def record(fn: Fn, case: Case, model_arg: int) -> tuple[Outcome, Spy]:
    """Call ``fn`` on ``case`` with its model (at ``model_arg``) wrapped in a :class:`Spy`."""
    args, kwargs = case
    spy = Spy(args[model_arg])
    spied = (*args[:model_arg], spy, *args[model_arg + 1 :])
    return call(fn, (spied, kwargs)), spy


def t_problem(got: Any, want: Tensor, T: int | None = None) -> str | None:
    """What is wrong with the timesteps ``got`` that the model received, ``want`` expected."""
    if not isinstance(got, Tensor):
        return f"the model was called with t of type {type(got).__name__}; pass the (B,) tensor t"
    if got.shape != want.shape:
        return (
            f"the model was called with t of shape {tuple(got.shape)}, expected "
            f"{tuple(want.shape)}: one timestep per sample"
        )
    if got.is_floating_point():
        if T and torch.allclose(got.double(), want.double() / T, rtol=1e-5):
            return (
                "you passed t / T (a float) to the model; the model takes the integer timestep t "
                "itself (a long tensor) and scales it inside"
            )
        return (
            f"the model was called with a float t ({got.dtype}); pass the integer timesteps t (a "
            "long tensor) as they are"
        )
    if torch.equal(got, want):
        return None
    if torch.equal(got, want - 1):
        return "the model was called at t − 1; it must see the timestep t of the x_t it gets"
    if torch.equal(got, want + 1):
        return "the model was called at t + 1; it must see the timestep t of the x_t it gets"
    if bool((got == got[0]).all()) and not bool((want == want[0]).all()):
        return (
            f"the model was called with one timestep (t = {int(got[0])}) for the whole batch; each "
            "sample has its own t"
        )
    return (
        f"the model was called with t = {got[:5].tolist()}…, expected {want[:5].tolist()}…: pass "
        "the timesteps t unchanged"
    )


def level_problem(got: Any, want: Tensor) -> str | None:
    """What is wrong with the noise levels ``got`` that the model received (``want``: σ)."""
    if not isinstance(got, Tensor) or got.shape != want.shape:
        return "the model must get the noise levels σ, a (B,) tensor, as its second input"
    g, w = got.double(), want.double()
    if torch.allclose(g, w, rtol=1e-5):
        return None
    if torch.allclose(g, w**2, rtol=1e-5):
        return "you passed σ² (the variance) to the model; it takes the noise level σ itself"
    if torch.allclose(g, w.sqrt(), rtol=1e-5):
        return "you passed √σ to the model; it takes the noise level σ itself"
    return f"the model was called with σ = {g[:4].tolist()}…, expected {w[:4].tolist()}…"


def draw_problem(
    what: str,
    got: Tensor,
    again: Tensor,
    want: Tensor,
    how: str,
    other: Tensor | None = None,
) -> str | None:
    """A random draw ``got`` (``again``: the same call, same seed) against the replayed ``want``.

    Tells a draw that ignores the generator (differs between two calls with the same seed, or
    ``other``, the draw under a differently seeded generator, is the same) from one draw for the
    whole batch (every row the same) from another source or order (``how`` says how to draw it).
    """
    if got.shape == want.shape and torch.allclose(got.double(), want.double(), atol=1e-6):
        return None
    if got.shape == again.shape and not torch.equal(got, again):
        return (
            f"two calls with the same seed drew different {what}: draw them from the `generator` "
            f"you were given ({how})"
        )
    if other is not None and other.shape == got.shape and torch.equal(other, got):
        return (
            f"calls with differently seeded generators drew the same {what}: you do not draw them "
            "from the `generator` you were given (your own generator, or torch.manual_seed?) "
            f"({how})"
        )
    flat = got.reshape(got.shape[0], -1) if got.dim() else got.reshape(1, 1)
    if got.shape[0] > 1 and bool((flat == flat[:1]).all()):
        return (
            f"all samples got one and the same value of the {what}: that is one draw for the whole "
            f"batch; draw one per sample ({how})"
        )
    return (
        f"your {what} are not the numbers the checker replays from the `generator`: draw them from "
        f"it, in the order the exercise gives ({how})"
    )


def t_range_problem(t: Tensor, T: int) -> str | None:
    """A drawn ``t`` outside ``1..T`` (or never reaching ``T`` in a large batch), if any."""
    lo, hi = int(t.min()), int(t.max())
    if lo < 1:
        return (
            f"t = {lo} was drawn: timesteps run from 1 to T, so t ~ U{{1..T}} is torch.randint(1, "
            "T + 1, (B,), generator=generator)"
        )
    if hi > T:
        return f"t = {hi} was drawn, beyond T = {T}: torch.randint(1, T + 1, ...) stops at T"
    return None


@dataclass(frozen=True)
class ModelCalls:
    """How a checker's cases must call the model: a spec for :func:`model_calls_diagnosis`.

    ``model_arg`` is the model's position in a case. ``x_terms`` describes the model's ``x`` input
    (position ``x_pos`` of its call) as a linear function of the case's inputs, to name a wrong
    ``x_t``; ``t_arg`` is the position of the given ``t`` (``None`` when it is drawn inside);
    ``uses`` names ways of turning the recorded model outputs into the result, for when the
    calls are right but the result is not. ``level``: the second input is a float noise level σ
    rather than an integer timestep.
    """

    model_arg: int
    x_terms: Terms | None = None
    x_pos: int = 0
    t_arg: int | None = None
    t_pos: int = 1
    T: Callable[[Case], int] | None = None
    uses: Mapping[str, Callable[[Spy, Case], Any]] = field(default_factory=dict)
    level: bool = False


def _x_of(fn: Fn, model_arg: int, pos: int) -> Fn:
    def run(*args: Any, **kwargs: Any) -> Any:
        out, spy = record(fn, (args, kwargs), model_arg)
        return spy.calls[0][pos] if spy.calls else None

    return run


def model_calls_diagnosis(
    spec: ModelCalls,
    student: Fn,
    reference: Fn,
    cases: Sequence[Case],
    rtol: float,
    atol: float,
) -> str | None:
    """Compare how ``student`` and ``reference`` call the model on each case; name the first
    difference (no call, the ``x`` input, the timestep, then how the output is used)."""
    from ._diagnose import close

    for case in cases:
        out_s, spy_s = record(student, case, spec.model_arg)
        if out_s.error is not None:
            return None
        _, spy_r = record(reference, case, spec.model_arg)
        if not spy_s.calls:
            return "your function never calls the model: its output is what the loss compares"
        cs, cr = spy_s.calls[0], spy_r.calls[0]
        if spec.t_arg is not None and len(cs) > spec.t_pos:
            T = spec.T(case) if spec.T else None
            want = case[0][spec.t_arg]
            got = cs[spec.t_pos]
            problem = level_problem(got, want) if spec.level else t_problem(got, want, T)
            if problem:
                return problem + "."
        if len(cs) > spec.x_pos and not close(cs[spec.x_pos], cr[spec.x_pos], rtol, atol):
            x, args = cs[spec.x_pos], case[0]
            noisy = "x̃ = x0 + σ z" if spec.level else "x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε"
            if spec.x_terms is not None:
                for name, j in spec.x_terms.args.items():
                    if isinstance(args[j], Tensor) and close(x, args[j], rtol, atol):
                        return f"you fed {name} to the model; it must see the noisy {noisy}."
                inner = terms_diagnosis(
                    _x_of(student, spec.model_arg, spec.x_pos),
                    _x_of(reference, spec.model_arg, spec.x_pos),
                    [case],
                    spec.x_terms,
                    rtol,
                    atol,
                )
                if inner:
                    return f"the input you gave the model is not {noisy}: {inner}"
            return f"the input you gave the model is not {noisy}."
        value = out_s.value
        for name, use in spec.uses.items():
            try:
                alt = use(spy_s, case)
            except Exception:  # a use that does not apply to this answer's calls
                continue
            if close(value, alt, rtol, atol):
                return name
    return None


def _eps_uses(x0_arg: int, noise_arg: int) -> dict[str, Callable[[Spy, Case], Any]]:
    def out(spy: Spy) -> Tensor:
        return spy.outputs[0]

    return {
        "you summed the squared error over every element; L_simple is its mean over the batch and "
        "the data dimensions (.mean()), so its scale does not depend on the batch or the "
        "data size.": lambda spy, c: ((c[0][noise_arg] - out(spy)) ** 2).sum(),
        "your target has the wrong sign: the loss compares ε_θ with the noise ε itself, "
        "(ε − ε_θ)², not (ε + ε_θ)².": lambda spy, c: ((c[0][noise_arg] + out(spy)) ** 2).mean(),
        "you took the absolute error |ε − ε_θ|; L_simple is the mean *squared* error "
        "(ε − ε_θ)².": lambda spy, c: (c[0][noise_arg] - out(spy)).abs().mean(),
        "you took the root of the mean squared error; L_simple is the mean squared error itself, "
        "no square root.": lambda spy, c: ((c[0][noise_arg] - out(spy)) ** 2).mean().sqrt(),
    }


def eps_loss_calls(
    candidates: Callable[[Case], Mapping[str, Tensor]],
    *,
    model_arg: int = 0,
    x0_arg: int = 1,
    t_arg: int = 2,
    ab_arg: int = 3,
    noise_arg: int = 4,
    uses: Mapping[str, Callable[[Spy, Case], Any]] | None = None,
) -> ModelCalls:
    """:class:`ModelCalls` of an ε-prediction loss ``(eps_model, x0, t, ..., noise)``: the model
    must get ``x_t`` built from ``x0`` and ``noise``, and the given ``t``."""
    return ModelCalls(
        model_arg,
        x_terms=Terms({"x0": x0_arg, "the noise": noise_arg}, candidates, t_arg=t_arg),
        t_arg=t_arg,
        T=lambda case: int(case[0][ab_arg].shape[0]) - 1,
        uses=_eps_uses(x0_arg, noise_arg) if uses is None else uses,
    )
