"""Exercise 16 checkers, what is particular to this chapter (the checks every checker gets are
in tests/checks/test_checkers.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from _nbtools import ROOT, exec_tagged

from minidiff import linear_schedule
from minidiff.checks import ch16
from minidiff.paths import DiscreteVPPath
from minidiff.samplers import ddim_step

SOLUTION = ROOT / "exercises" / "solutions" / "ex16_flow_matching.ipynb"


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    return exec_tagged(SOLUTION)


def test_the_issue_s_mistakes_are_named() -> None:
    """Velocity sign / time direction, swapped derivatives, x0 and eps swapped, t = 0 as noise."""
    names = {k for spec in ch16.SPECS.values() for k in spec.mistakes}
    assert {
        "velocity_sign",
        "derivatives_swapped",
        "x0_eps_swapped_in_path",
        "t0_is_noise",
    } <= names


def test_every_checker_sees_float32_and_float64() -> None:
    for name, spec in ch16.SPECS.items():
        dtypes = {a.dtype for args, _ in spec.cases() for a in args if isinstance(a, torch.Tensor)}
        assert {torch.float32, torch.float64} <= dtypes, name


def test_ddim_reference_is_minidiff_s_ddim_step() -> None:
    """The checker's reference, written in (alpha, sigma), equals ddim_step on a real schedule."""
    schedule = linear_schedule(100)
    path = DiscreteVPPath(schedule)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g)
    t, s = torch.tensor([100, 80, 50, 7, 3]), torch.tensor([60, 0, 49, 2, 0])
    ct, cs = path.coefficients(t.double() / 100), path.coefficients(s.double() / 100)
    ref = ch16.SPECS["ddim_as_euler"].reference(
        x, eps.double(), ct.alpha, ct.sigma, cs.alpha, cs.sigma
    )
    assert torch.allclose(ref, ddim_step(x, t, s, eps.double(), schedule), atol=1e-12)


def test_converters_are_called_without_gradients(solution: dict[str, Any]) -> None:
    seen = []

    def spy(*args: Any) -> Any:
        seen.append(torch.is_grad_enabled())
        return solution["velocity_from_eps"](*args)

    assert ch16.check_velocity_from_eps(spy, display=False).passed
    assert seen and not any(seen)


def test_loss_that_detaches_is_told_about_the_gradient(solution: dict[str, Any]) -> None:
    def detached(*args: Any) -> Any:
        return solution["cfm_loss"](*args).detach()

    res = ch16.check_cfm_loss(detached, display=False)
    assert not res.passed and "gradient" in res.message


def test_unrecognised_wrong_answer_gets_generic_message(solution: dict[str, Any]) -> None:
    def off(*args: Any) -> Any:
        return solution["eps_from_velocity"](*args) + 0.01

    res = ch16.check_eps_from_velocity(off, display=False)
    assert not res.passed and res.mistake is None


def test_an_in_place_change_names_the_students_argument() -> None:
    """The checkers run the student's function through a no_grad wrapper; the message names the
    student's own parameter, not "argument 1"."""
    from minidiff.checks import ch16

    def velocity_from_eps(x_t, eps, alpha, sigma, d_alpha, d_sigma):  # type: ignore[no-untyped-def]
        x_t -= sigma[:, None] * eps
        return d_alpha[:, None] * x_t + d_sigma[:, None] * eps

    res = ch16.check_velocity_from_eps(velocity_from_eps, display=False)
    assert not res.passed and "changed its input `x_t` in place" in res.message


def test_rectified_flow_derivatives_in_a_converter_are_named() -> None:
    """The natural rectified-flow answer: the path's alpha, sigma, but alpha' = -1, sigma' = 1."""

    def velocity_from_eps(x_t, eps, alpha, sigma, d_alpha, d_sigma):  # type: ignore[no-untyped-def]
        x0 = (x_t - sigma[:, None] * eps) / alpha[:, None]
        return -x0 + eps

    def eps_from_velocity(x_t, u, alpha, sigma, d_alpha, d_sigma):  # type: ignore[no-untyped-def]
        a, s = alpha[:, None], sigma[:, None]
        return (a * u + x_t) / (a + s)  # u = eps - x0 solved with x_t = a x0 + s eps

    for check, fn in ((ch16.check_velocity_from_eps, velocity_from_eps),
                      (ch16.check_eps_from_velocity, eps_from_velocity)):  # fmt: skip
        res = check(fn, display=False)
        assert not res.passed and res.mistake == "rectified_flow_derivatives", res.message


def test_the_module_doc_states_the_cfm_loss_the_checker_accepts(solution: dict[str, Any]) -> None:
    """The mean over batch and dimensions, not a squared norm per sample then a mean."""
    doc = " ".join((ch16.__doc__ or "").split())
    assert "the mean over batch and dimensions of ``(u_theta(x_t, t) - (eps - x0))²``" in doc
    assert "||" not in doc

    def per_sample_norm(model, x0, eps, t):  # type: ignore[no-untyped-def]
        x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
        return ((model(x_t, t) - (eps - x0)) ** 2).sum(dim=1).mean()

    assert ch16.check_cfm_loss(per_sample_norm, display=False).mistake == "sum_over_dims"
    assert ch16.check_cfm_loss(solution["cfm_loss"], display=False).passed
