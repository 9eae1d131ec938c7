"""Exercise 15 checkers: behaviour beyond what tests/test_checkers.py checks for every chapter."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from _nbtools import ROOT, exec_tagged

from minidiff.checks import ch15

SOLUTION = exec_tagged(Path(ROOT / "exercises" / "solutions" / "ex15_few_step.ipynb"))


def _distillation_loss(slip: str):  # type: ignore[no-untyped-def]
    """The solution's loss with one slip, written as a student writes it."""

    def loss(student, teacher, z_t, t, t_mid, t_next, alpha_bar):  # type: ignore[no-untyped-def]
        ab = alpha_bar.to(z_t.dtype)
        a = lambda u: ab[u][:, None].sqrt()  # noqa: E731
        s = lambda u: (1 - ab[u][:, None]).sqrt()  # noqa: E731

        def ddim(z, u, w):  # type: ignore[no-untyped-def]
            eps = teacher(z, u)
            return a(w) * (z - s(u) * eps) / a(u) + s(w) * eps

        with contextlib.nullcontext() if slip == "target_with_grad" else torch.no_grad():
            z_two = ddim(ddim(z_t, t, t_mid), t_mid, t_next)
            ratio = s(t_next) / s(t)
            target = (z_two - ratio * z_t) / (a(t_next) - ratio * a(t))
        v = student(z_t, t)
        x_hat = {
            "student_as_eps": (z_t - s(t) * v) / a(t),
            "v_sign": a(t) * z_t + s(t) * v,
        }.get(slip, a(t) * z_t - s(t) * v)
        snr = (a(t) ** 2 / s(t) ** 2)[:, 0]
        weight = snr.clamp(max=1.0) if slip == "weight_clamped_above" else snr.clamp(min=1.0)
        return (weight * ((target - x_hat) ** 2).mean(dim=1)).mean()

    return loss


def test_a_step_that_forgets_the_first_step_case_is_told_so() -> None:
    def no_first_case(x_t, t, t_next, x0, x0_last, t_last, alpha_bar):  # type: ignore[no-untyped-def]
        lam = (alpha_bar.sqrt() / (1 - alpha_bar).sqrt()).log()
        r = (lam[t] - lam[t_last]) / (lam[t_next] - lam[t])  # fails: t_last is None
        return x0 + r

    res = ch15.check_dpm_solver_2m_step(no_first_case, display=False)
    assert not res.passed and "first step" in res.message and "x0_last is None" in res.message


def test_a_loss_that_lets_gradients_reach_the_teacher_is_told_so() -> None:
    right = SOLUTION["distillation_loss"]

    def leaky(student, teacher, z_t, t, t_mid, t_next, alpha_bar):  # type: ignore[no-untyped-def]
        # the right value, but the target keeps the teacher's graph
        loss = right(student, teacher, z_t, t, t_mid, t_next, alpha_bar)
        return loss + 0.0 * sum(p.sum() for p in teacher.parameters()) * teacher(z_t, t).sum()

    res = ch15.check_distillation_loss(leaky, display=False)
    assert res.passed  # a zero gradient is still zero: only real leaks are refused

    leaking = _distillation_loss("target_with_grad")  # the target keeps the teacher's graph
    res = ch15.check_distillation_loss(leaking, display=False)
    assert not res.passed and "torch.no_grad()" in res.message and "teacher" in res.message


def test_the_step_keeps_float32_and_runs_without_gradients() -> None:
    seen = {}

    def spy(*args):  # type: ignore[no-untyped-def]
        seen["grad"] = torch.is_grad_enabled()
        return SOLUTION["dpm_solver_2m_step"](*args)

    assert ch15.check_dpm_solver_2m_step(spy, display=False).passed
    assert seen["grad"] is False

    def to_double(*args):  # type: ignore[no-untyped-def]
        return SOLUTION["dpm_solver_2m_step"](*args).double()

    res = ch15.check_dpm_solver_2m_step(to_double, display=False)
    assert not res.passed and "dtype" in res.message


def test_the_boundary_mistakes_really_break_the_boundary() -> None:
    """Each listed skip-scaling mistake gives f(x, eps) != x on the boundary rows."""
    spec = ch15.SPECS["consistency_fn"]
    for (net, x, t, ab, sigma_min, sigma_data), _ in spec.cases():
        at_min = t == t[0]
        x_bar = x / ab[t].sqrt().to(x.dtype)[:, None]
        right = spec.reference(net, x, t, ab, sigma_min, sigma_data)
        torch.testing.assert_close(right[at_min], x_bar[at_min])
        for key in ("edm_skip", "edm_out", "edm_both", "out_no_sigma", "swapped"):
            wrong = spec.mistakes[key].fn(net, x, t, ab, sigma_min, sigma_data)
            assert not torch.allclose(wrong[at_min], x_bar[at_min], atol=1e-6), key


def test_the_loss_runs_in_float32_and_float64() -> None:
    """A loss that fixes float32 (as a training script might) fails on the float64 cases."""
    dtypes = {case[0][2].dtype for case in ch15.SPECS["distillation_loss"].cases()}
    assert dtypes == {torch.float32, torch.float64}
    right = SOLUTION["distillation_loss"]

    def float32_only(student, teacher, z_t, t, t_mid, t_next, alpha_bar):  # type: ignore[no-untyped-def]
        return right(student, teacher, z_t.float(), t, t_mid, t_next, alpha_bar.float())

    res = ch15.check_distillation_loss(float32_only, display=False)
    assert not res.passed and "dtype" in res.message


def test_a_consistency_fn_that_cuts_the_network_gradient_is_refused() -> None:
    right = SOLUTION["consistency_fn"]

    def under_no_grad(net, x_t, t, alpha_bar, sigma_min, sigma_data):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return right(net, x_t, t, alpha_bar, sigma_min, sigma_data)

    def detached(*args):  # type: ignore[no-untyped-def]
        return right(*args).detach()

    for answer in (under_no_grad, detached):
        res = ch15.check_consistency_fn(answer, display=False)
        assert not res.passed and "no gradient" in res.message, res.message
    assert ch15.check_consistency_fn(right, display=False).passed


def test_a_step_with_exp_h_for_exp_minus_h_is_named() -> None:
    """The slip as a student writes it: ``torch.exp(h)``, inf on the steps to t = 0."""

    def exp_h(x_t, t, t_next, x0, x0_last, t_last, alpha_bar):  # type: ignore[no-untyped-def]
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        col = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
        lam = (a / s).log()
        h = lam[t_next] - lam[t]
        d = x0
        if x0_last is not None:
            r = (lam[t] - lam[t_last]) / h
            d = torch.where(col(t_next) > 0, x0 + col(1 / (2 * r)) * (x0 - x0_last), x0)
        return col(s[t_next] / s[t]) * x_t + col(a[t_next] * (1 - torch.exp(h))) * d

    res = ch15.check_dpm_solver_2m_step(exp_h, display=False)
    assert not res.passed and res.mistake == "exp_sign", res.message


def test_a_consistency_fn_with_the_vp_noise_level_is_named() -> None:
    """The slip as a student writes it: ``sigma = sqrt(1 - alpha_bar)`` (the VP noise level) in
    the scalings instead of ``sigma_bar = sqrt((1 - alpha_bar) / alpha_bar)``."""

    def vp_sigma(net, x_t, t, alpha_bar, sigma_min, sigma_data):  # type: ignore[no-untyped-def]
        ab = alpha_bar[t].to(x_t.dtype)[:, None]
        sigma = (1 - ab).sqrt()
        c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
        c_out = sigma_data * (sigma - sigma_min) / (sigma_data**2 + sigma**2).sqrt()
        return c_skip * x_t / ab.sqrt() + c_out * net(x_t, t)

    res = ch15.check_consistency_fn(vp_sigma, display=False)
    assert not res.passed and res.mistake == "vp_sigma", res.message
    assert "√(1 − ᾱ_t)" in res.message and "σ̄ = σ_t/α_t" in res.message


def test_distillation_loss_slips_with_v_and_the_weight_are_named() -> None:
    assert ch15.check_distillation_loss(_distillation_loss("none"), display=False).passed
    for slip in ("student_as_eps", "v_sign", "weight_clamped_above"):
        res = ch15.check_distillation_loss(_distillation_loss(slip), display=False)
        assert not res.passed and res.mistake == slip, (slip, res.mistake, res.message)


def test_a_step_without_the_half_of_the_correction_is_named() -> None:
    """The slip as a student writes it: ``x0 + (x0 - x0_last) / r``."""

    def no_half(x_t, t, t_next, x0, x0_last, t_last, alpha_bar):  # type: ignore[no-untyped-def]
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        col = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
        d = x0
        if x0_last is not None:
            lam = (a / s).log()
            r = (lam[t] - lam[t_last]) / (lam[t_next] - lam[t])
            d = torch.where(col(t_next) > 0, x0 + col(1 / r) * (x0 - x0_last), x0)
        exp_neg_h = s[t_next] * a[t] / (a[t_next] * s[t])
        return col(s[t_next] / s[t]) * x_t + col(a[t_next] * (1 - exp_neg_h)) * d

    res = ch15.check_dpm_solver_2m_step(no_half, display=False)
    assert not res.passed and res.mistake == "no_half", res.message
