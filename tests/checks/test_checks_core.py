"""The checker machinery: verdicts, mistake recognition, diagnoses, friendly messages, strict mode.

One test per diagnosis of ``minidiff.checks._core`` / ``_diagnose``; each feeds a wrong answer
that no listed mistake covers and asserts the message names what is wrong.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from minidiff.checks import CheckResult, Mistake, Spec, _core, check_spec, finish_first, run_check


def _reference(x: torch.Tensor, a: float) -> torch.Tensor:
    return a**0.5 * x


def _cases() -> list:
    g = torch.Generator().manual_seed(0)
    return [
        ((torch.randn(4, 2, generator=g), 0.3), {}),
        ((torch.randn(3, 2, generator=g), 0.8), {}),
    ]


MISTAKES = {"no_sqrt": Mistake(lambda x, a: a * x, "you used a instead of sqrt(a).")}


def check(fn: Any, **kw: Any) -> CheckResult:
    return run_check("scale", fn, _reference, _cases(), MISTAKES, display=False, **kw)


# --- verdicts ---------------------------------------------------------------------------------


def test_accepts_the_reference_and_equivalent_forms() -> None:
    res = check(_reference)
    assert isinstance(res, CheckResult) and res.passed and bool(res)
    assert "correct" in res.message
    assert check(lambda x, a: x * torch.sqrt(torch.tensor(a))).passed
    assert check(
        lambda x, a: torch.exp(0.5 * torch.log(torch.tensor(a, dtype=torch.float64))) * x
    ).passed


def test_float32_round_off_is_accepted_under_a_tight_tolerance() -> None:
    def ref(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x).cumsum(0)

    cases = [((torch.linspace(-3, 3, 50, dtype=torch.float64),), {})]
    res = run_check(
        "f",
        lambda x: torch.exp(x.float()).cumsum(0).double(),
        ref,
        cases,
        rtol=1e-9,
        atol=1e-12,
        display=False,
    )
    assert res.passed and "float32 round-off" in res.message
    res = run_check("f", lambda x: 1.001 * ref(x), ref, cases, rtol=1e-9, atol=1e-12, display=False)
    assert not res.passed


def test_recognises_a_known_mistake() -> None:
    res = check(lambda x, a: a * x)
    assert not res.passed and res.mistake == "no_sqrt"
    assert "sqrt(a)" in res.message


def test_a_known_mistake_computed_in_float32_is_named_under_a_tight_tolerance() -> None:
    # the mistake is written in float64; the answer makes it with float32 round-off
    def ref(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x).cumsum(0)

    mistakes = {"no_exp": Mistake(lambda x: x.cumsum(0), "the exponential is missing.")}
    cases = [((torch.linspace(-3, 3, 50, dtype=torch.float64),), {})]
    res = run_check(
        "f",
        lambda x: x.float().cumsum(0).double() * (1 + 3e-7),
        ref,
        cases,
        mistakes,
        rtol=1e-9,
        atol=1e-12,
        display=False,
    )
    assert not res.passed and res.mistake == "no_exp"


def test_stub_gets_a_friendly_message() -> None:
    def stub(x, a):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    res = check(stub)
    assert not res.passed and "not implemented yet" in res.message


def test_marks_are_words_every_font_has() -> None:
    good, bad = check(_reference), check(lambda x, a: a * x)
    assert str(good).startswith("Correct — scale") and str(bad).startswith("Not yet — scale")
    assert "**Correct**" in good._repr_markdown_()
    assert all(ord(ch) < 0x2100 for ch in str(good)[:20] + str(bad)[:20])


# --- wrong values without a listed mistake -----------------------------------------------------


def test_constant_factor_is_named() -> None:
    res = check(lambda x, a: 2 * a**0.5 * x)
    assert not res.passed and res.mistake is None
    assert "constant factor" in res.message and "2 ×" in res.message


def test_wrong_sign_is_named() -> None:
    res = check(lambda x, a: -(a**0.5) * x)
    assert "sign only" in res.message


def test_factor_that_changes_with_the_input_is_named() -> None:
    res = check(lambda x, a: (a**0.5 * x) * x.shape[0])
    assert "changes from input to input" in res.message and "4, 3" in res.message


def test_constant_offset_is_named() -> None:
    res = check(lambda x, a: a**0.5 * x + 1.0)
    assert not res.passed and res.mistake is None
    assert "constant offset of +1" in res.message


def _scalar_cases(n: int) -> list:
    g = torch.Generator().manual_seed(1)
    return [((torch.randn(5, generator=g),), {}) for _ in range(n)]


def _sq_mean(x: torch.Tensor) -> torch.Tensor:
    return (x * x).mean() + 1.0


def test_a_scalar_factor_needs_enough_inputs_and_a_real_gap_from_one() -> None:
    """One ratio per scalar input: a ratio of 1.02 does not make a constant factor, nor does a
    factor shared by only two inputs, unless it is exactly one of the slips' factors (½, 2, −1)."""
    twice = lambda x: 2 * _sq_mean(x)  # noqa: E731
    for n in (2, 3):
        res = run_check("loss", twice, _sq_mean, _scalar_cases(n), display=False)
        assert "2 × the right one on every test input" in res.message
    near = lambda x: 1.02 * _sq_mean(x)  # noqa: E731
    for n in (2, 3):
        res = run_check("loss", near, _sq_mean, _scalar_cases(n), display=False)
        assert not res.passed and "× the right one" not in res.message
        # the claim that nothing explains it is made only where enough inputs were compared
        assert ("no constant factor or offset explains" in res.message) == (n == 3)
    shifted = lambda x: _sq_mean(x) + 0.5  # noqa: E731
    res = run_check("loss", shifted, _sq_mean, _scalar_cases(3), display=False)
    assert "off by a constant +0.5" in res.message
    res = run_check("loss", shifted, _sq_mean, _scalar_cases(2), display=False)
    assert "off by a constant" not in res.message


def test_a_nan_number_is_called_nan_not_randomness() -> None:
    """NaN equals nothing, not even itself: a NaN answer must not read as one that changes
    between two calls with the same inputs."""
    res = run_check(
        "loss",
        lambda x: float("nan"),
        lambda x: float(_sq_mean(x)),
        _scalar_cases(3),
        display=False,
    )
    assert not res.passed and "is NaN" in res.message and "random" not in res.message


def test_half_with_two_data_dimensions_names_both_slips() -> None:
    """On 2-D data a loss at ½ × the right value is a missing ½ or a mean over D = 2 where the sum
    belongs: the message gives both, not only the reduction."""
    g = torch.Generator().manual_seed(2)
    cases = [((torch.randn(6, 2, generator=g),), {}) for _ in range(2)]

    def sq_sum(x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum(1).mean()

    res = run_check("loss", lambda x: 0.5 * sq_sum(x), sq_sum, cases, display=False)
    assert "½ × the right one" in res.message and "D = 2" in res.message
    assert "constant factor" in res.message and "sum over the data dimensions" in res.message
    cases3 = [((torch.randn(6, 3, generator=g),), {}) for _ in range(2)]
    res = run_check("loss", lambda x: sq_sum(x) / 3, sq_sum, cases3, display=False)
    assert "1/D × the right one" in res.message


def test_unknown_wrong_answer_points_at_the_input_and_the_numbers() -> None:
    res = check(lambda x, a: a**0.5 * x + 0.1 * x**2)
    assert not res.passed and res.mistake is None
    assert "test input 1" in res.message and "largest difference at index" in res.message
    assert "yours" in res.message and "expected" in res.message


def test_transpose_of_a_square_result_is_named() -> None:
    A = torch.tensor([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0], [3.0, 0.2, 1.0]])
    cases = [((torch.randn(3, 3, generator=torch.Generator().manual_seed(1)),), {})]
    res = run_check("mm", lambda x: (x @ A).T, lambda x: x @ A, cases, display=False)
    assert "transpose" in res.message


# --- what came back ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wrong", "words"),
    [
        (lambda x, a: (a**0.5 * x)[None], "only the shape"),  # (1, B, D) instead of (B, D)
        (lambda x, a: (a**0.5 * x).T, "transpose"),
        (lambda x, a: (a**0.5 * x)[None].expand(5, -1, -1), "repeated along extra axes"),
        (lambda x, a: (a**0.5 * x)[:, :1], "shape"),
        (lambda x, a: torch.stack([a**0.5 * x, 0 * x], -1), "shape"),
    ],
)
def test_shapes_are_compared_exactly_and_explained(wrong: Any, words: str) -> None:
    res = check(wrong)
    assert not res.passed and "shape" in res.message and words in res.message


def test_a_result_that_needs_a_reduction_is_told_which() -> None:
    ref = lambda x: x.sum(1)  # noqa: E731
    cases = [((torch.randn(4, 3, generator=torch.Generator().manual_seed(2)),), {})]
    res = run_check("s", lambda x: x, ref, cases, display=False)
    assert "sum over the last 1 dimension" in res.message
    res = run_check("m", lambda x: x.unsqueeze(-1), lambda x: x.mean(), cases, display=False)
    assert not res.passed and "shape" in res.message
    res = run_check(
        "v",
        lambda x: x.sum(1, keepdim=True),
        lambda x: x.sum(1, keepdim=True).expand(-1, 3),
        cases,
        display=False,
    )
    assert "return the full shape" in res.message


def test_none_list_number_and_tuple_returns_are_described() -> None:
    def no_return(x, a):  # type: ignore[no-untyped-def]
        a**0.5 * x

    assert "forget the `return`" in check(no_return).message
    assert (
        "returned a list of 4 values; expected one torch.Tensor"
        in check(lambda x, a: (a**0.5 * x).tolist()).message
    )
    assert "tuple of 2 values" in check(lambda x, a: (a**0.5 * x, x)).message
    two = [((torch.ones(2),), {})]
    res = run_check("pair", lambda x: x, lambda x: (x, 2 * x), two, display=False)
    assert "expected a tuple of 2 values" in res.message
    res = run_check("pair", lambda x: (x, 2 * x, x), lambda x: (x, 2 * x), two, display=False)
    assert "expected 2 return value(s), got 3" in res.message
    assert "torch.Tensor" in check(lambda x, a: 3.0).message
    assert "function itself" in run_check("scale", 3, _reference, _cases(), display=False).message
    scalar = [((torch.ones(3),), {})]
    res = run_check("loss", lambda x: float(x.sum()), lambda x: x.sum(), scalar, display=False)
    assert "no `.item()`" in res.message


def test_dtype_problems_are_named() -> None:
    assert "floating-point" in check(lambda x, a: (a**0.5 * x).round().long()).message
    as64 = lambda x, a: a**0.5 * x.double()  # noqa: E731
    assert check(as64).passed  # without keep_dtype a more precise result is fine
    res = check(as64, keep_dtype=True)
    assert not res.passed and "should stay torch.float32" in res.message
    assert "NaN" in check(lambda x, a: x * float("nan")).message


def test_an_input_changed_in_place_is_named_and_not_blamed_as_a_mistake() -> None:
    def in_place(x, a):  # type: ignore[no-untyped-def]
        x *= a**0.5
        return x

    res = check(in_place)
    assert not res.passed and res.mistake is None
    assert "changed its input `x` in place" in res.message and "values are right" in res.message

    def in_place_wrong(x, a):  # type: ignore[no-untyped-def]
        x *= a  # the no_sqrt mistake, written in place
        return x

    res = check(in_place_wrong)
    assert "changed its input `x` in place" in res.message and "values are right" not in res.message

    cases = [((), {"x": torch.ones(2), "a": 0.5})]

    def kw_in_place(*, x, a):  # type: ignore[no-untyped-def]
        return x.mul_(a**0.5)

    res = run_check("scale", kw_in_place, lambda *, x, a: a**0.5 * x, cases, display=False)
    assert "changed its input `x` in place" in res.message


def test_the_students_line_and_a_hint_come_with_an_error() -> None:
    def unshaped(x, a):  # type: ignore[no-untyped-def]
        coef = torch.full((x.shape[0],), a**0.5)
        return coef * x

    res = check(unshaped)
    assert "raised RuntimeError" in res.message and "`return coef * x`" in res.message
    assert "(B, 1, …, 1)" in res.message


def test_a_harness_reports_what_came_back_not_its_own_error() -> None:
    def harness(fn: Any) -> Any:
        return lambda n: torch.tensor(_core.returned_number(fn(n)))

    spec = Spec(lambda: [((3,), {})], harness(lambda n: float(n)), {}, wrap=harness)

    def forgot_return(n):  # type: ignore[no-untyped-def]
        float(n)

    res = check_spec("h", spec, forgot_return, display=False)
    assert "returned None" in res.message and "forget `return`" in res.message
    assert "float() argument" not in res.message
    assert "returned a list" in check_spec("h", spec, lambda n: [n], display=False).message
    assert "shape (2,)" in check_spec("h", spec, lambda n: torch.ones(2), display=False).message
    assert check_spec("h", spec, lambda n: torch.tensor(float(n)), display=False).passed


# --- gradients --------------------------------------------------------------------------------


class _Lin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ((model(x) - 1.0) ** 2).mean()


def _loss_cases() -> list:
    return [((_Lin(), torch.randn(5, 2, generator=torch.Generator().manual_seed(3))), {})]


def _check_loss(fn: Any, hint: str = "") -> CheckResult:
    return run_check("loss", fn, _loss, _loss_cases(), display=False, grad_hint=hint)


def test_a_loss_must_keep_its_gradient() -> None:
    assert _check_loss(_loss).passed
    assert _check_loss(lambda m, x: torch.nn.functional.mse_loss(m(x), torch.ones_like(x))).passed

    def under_no_grad(m, x):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return _loss(m, x)

    res = _check_loss(under_no_grad)
    assert not res.passed and "no gradient" in res.message and "torch.no_grad()" in res.message
    assert "no gradient" in _check_loss(lambda m, x: torch.tensor(_loss(m, x).item())).message


def test_a_loss_whose_gradient_is_partly_cut_off_is_named() -> None:
    def half_detached(m, x):  # type: ignore[no-untyped-def]
        out = m(x)
        return ((out.detach() - 1.0) ** 2).mean() + 0 * out.sum()

    res = _check_loss(half_detached)
    assert not res.passed and "gradient with respect to the model's parameters" in res.message
    assert "create_graph=True" in _check_loss(half_detached, hint="Use create_graph=True.").message


def test_a_loss_that_calls_backward_itself_is_named() -> None:
    def backward_inside(m, x):  # type: ignore[no-untyped-def]
        loss = _loss(m, x)
        loss.backward()
        return loss

    res = _check_loss(backward_inside)
    assert not res.passed and "cannot be differentiated" in res.message


# --- generators -------------------------------------------------------------------------------


def _noisy(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + torch.randn(x.shape, generator=generator)


def _gen_harness(fn: Any) -> Any:
    def run(seed: int) -> torch.Tensor:
        return fn(torch.zeros(4), torch.Generator().manual_seed(seed))

    return run


_GEN_SPEC = Spec(
    lambda: [((7,), {})],
    _gen_harness(_noisy),
    {},
    wrap=_gen_harness,
    reseed=lambda c, k: ((100 + k,), {}),
)


def test_an_ignored_generator_is_named() -> None:
    assert check_spec("noisy", _GEN_SPEC, _noisy, display=False).passed
    res = check_spec(
        "noisy", _GEN_SPEC, lambda x, generator: x + torch.randn_like(x), display=False
    )
    assert "same seed gave different results" in res.message

    def own_seed(x, generator):  # type: ignore[no-untyped-def]
        return x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0))

    res = check_spec("noisy", _GEN_SPEC, own_seed, display=False)
    assert "differently seeded generators gave the same result" in res.message


# --- display, strict mode, unfinished cells ---------------------------------------------------


def test_strict_mode_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIDIFF_STRICT_CHECKS", "1")
    with pytest.raises(AssertionError, match="scale"):
        check(lambda x, a: a * x)
    assert check(_reference).passed


def test_display_prints_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    run_check("scale", _reference, _reference, _cases())
    assert "Correct — scale" in capsys.readouterr().out


def test_the_verdict_is_shown_once(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[str] = []
    monkeypatch.setattr(_core, "_show", lambda r: (shown.append(r.name), setattr(r, "shown", True)))
    res = run_check("scale", _reference, _reference, _cases())
    res._ipython_display_()  # what IPython does with the cell's value
    assert shown == ["scale"]
    quiet = run_check("scale", _reference, _reference, _cases(), display=False)
    quiet._ipython_display_()
    assert shown == ["scale", "scale"]


def test_the_verdict_is_shown_once_in_an_ipython_cell(capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        published: list[dict[str, Any]] = []
        shell.display_pub.publish = lambda data, *a, **k: published.append(data)  # type: ignore[method-assign]
        shell.user_ns.update(run_check=run_check, ref=_reference, cases=_cases())
        capsys.readouterr()
        result = shell.run_cell("run_check('scale', ref, ref, cases)", store_history=True)
        echoed = capsys.readouterr().out  # the cell's value goes through the display hook
        assert result.success and isinstance(result.result, CheckResult)
        assert len(published) == 1 and "Correct" in published[0]["text/markdown"]
        assert "Correct" not in echoed and "CheckResult" not in echoed
    finally:
        InteractiveShell.clear_instance()  # later tests run outside IPython again


def test_finish_first_turns_a_stub_into_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    with finish_first("sections 1 and 2"):
        raise NotImplementedError
    assert "Finish sections 1 and 2 first" in capsys.readouterr().out
    with pytest.raises(ValueError), finish_first("section 1"):
        raise ValueError("a real error still shows")


def test_gradients_are_checked_for_losses_by_default_and_on_request() -> None:
    def per_sample(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return ((m(x) - 1.0) ** 2).mean(1)

    def no_grad(m, x):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return per_sample(m, x)

    # a (B,) result computed without gradients, say for sampling, is fine unless asked for
    assert run_check("p", no_grad, per_sample, _loss_cases(), display=False).passed
    res = run_check("p", no_grad, per_sample, _loss_cases(), display=False, grad=True)
    assert not res.passed and "no gradient" in res.message
    res = run_check(
        "l", lambda m, x: no_grad(m, x).mean(), _loss, _loss_cases(), display=False, grad=False
    )
    assert res.passed


def test_an_interrupt_stops_the_check_instead_of_becoming_feedback() -> None:
    def interrupted(x, a):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check(interrupted)


def _checker_of_f() -> _core.Checker:
    spec = Spec(lambda: [((torch.ones(2),), {})], lambda x: x, {}, doc="Check ``f(x) -> x``.")
    return _core.Checker("f", spec)


def test_a_checker_called_with_wrong_arguments_names_itself_and_its_signature() -> None:
    checker = _checker_of_f()
    for args, kwargs in (((lambda x: x, True, 3), {}), ((), {}), ((lambda x: x,), {"dispaly": 0})):
        with pytest.raises(TypeError, match=r"^check_f\(fn, display=True\): "):
            checker(*args, **kwargs)


@pytest.mark.parametrize("how", ["keyword", "position"])
def test_display_must_be_a_bool_before_anything_runs(how: str) -> None:
    checker, calls = _checker_of_f(), []

    def spy(x: torch.Tensor) -> torch.Tensor:
        calls.append(x)
        return x

    with pytest.raises(TypeError, match="display must be True or False"):
        checker(spy, display="no") if how == "keyword" else checker(spy, "no")
    assert calls == []
    assert checker(spy, display=False).passed and len(calls) == 1


def test_help_shows_a_checker_like_a_function_of_its_chapter() -> None:
    import inspect
    import pydoc

    from minidiff.checks import ch15

    checker = ch15.check_dpm_solver_2m_step
    assert checker.__module__ == "minidiff.checks.ch15"
    assert str(inspect.signature(checker)).startswith("(fn, display=True)")
    text = pydoc.render_doc(checker, renderer=pydoc.plaintext)
    assert "in module minidiff.checks.ch15" in text
    assert "check_dpm_solver_2m_step(fn, display=True)" in text
    assert ch15.check_dpm_solver_2m_step.__doc__ in text
