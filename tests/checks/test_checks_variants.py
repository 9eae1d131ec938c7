"""What students really write: correct answers in other forms are accepted, and the wrong answers
that used to pass or got a misleading message now get the right one.

Complements test_checkers.py (solution, stub and every listed mistake of every checker) and
test_checks_core.py (one test per diagnosis on a toy checker).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _nbtools import ROOT, exec_tagged

from minidiff.checks import CheckResult, ch01, ch02, ch03, ch04, ch05, ch06, ch08

SOLUTIONS = ROOT / "exercises" / "solutions"


@pytest.fixture(scope="module")
def sol() -> Callable[[str], dict[str, Any]]:
    cache: dict[str, dict[str, Any]] = {}

    def get(prefix: str) -> dict[str, Any]:
        if prefix not in cache:
            cache[prefix] = exec_tagged(next(SOLUTIONS.glob(f"{prefix}_*.ipynb")))
        return cache[prefix]

    return get


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).reshape(-1, *[1] * (like.dim() - 1))


# --- correct answers written differently ------------------------------------------------------

CORRECT: list[tuple[Callable[..., CheckResult], Callable[..., Any]]] = [
    # ᾱ through logs, in float64
    (
        ch01.check_alpha_bar_from_betas,
        lambda b: torch.exp(torch.cumsum(torch.log1p(-b.double()), 0)),
    ),
    # float64 arithmetic, cast back to the data's dtype at the end
    (
        ch01.check_q_sample,
        lambda x0, t, ab, e: (
            _col(ab[t].double().sqrt(), x0.double()) * x0.double()
            + _col((1 - ab[t].double()).sqrt(), x0.double()) * e.double()
        ).to(x0.dtype),
    ),
    # index_select and unsqueeze instead of [t] and reshape
    (
        ch01.check_q_step,
        lambda x, t, b, e: (
            (1 - _col(b.index_select(0, t), x)).sqrt() * x
            + _col(b.index_select(0, t), x).sqrt() * e
        ),
    ),
    (ch01.check_snr, lambda ab: 1.0 / (1.0 / ab - 1.0)),
    (
        ch01.check_prior_kl,
        lambda x0, ab: 0.5 * ((1 - ab) + ab * x0**2 - 1 - math.log(1 - ab)).sum(-1),
    ),
    # the posterior mean in its ε-free form with gather, float32 coefficients
    (
        ch02.check_mu_tilde_from_eps,
        lambda x_t, t, eps, b, ab: (
            (x_t - _col(b[t] / (1 - ab[t]).sqrt(), x_t) * eps) * _col((1 - b[t]).rsqrt(), x_t)
        ),
    ),
    (
        ch03.check_gaussian_kl,
        lambda m1, v1, m2, v2: 0.5 * (v2.log() - v1.log()) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5,
    ),
    (
        ch03.check_l_simple,
        lambda m, x0, t, ab, e: F.mse_loss(
            m(_col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t], x0)).sqrt() * e, t), e
        ),
    ),
    (
        ch04.check_ddpm_training_loss,
        lambda m, x0, t, ab, e: (
            (m(_col(ab[t], x0).sqrt() * x0 + (1 - _col(ab[t], x0)).sqrt() * e, t) - e).pow(2).mean()
        ),
    ),
    (
        ch05.check_langevin_step,
        lambda x, s, eps, z: torch.addcmul(x + z * eps**0.5, s, torch.tensor(eps / 2)),
    ),
    (ch05.check_annealed_step_sizes, lambda s, e: e * (s / s[-1]) ** 2),
    # DSM as the ε-loss it is: σ² · ½‖s − target‖² = ½‖σ s + z‖²
    (
        ch06.check_dsm_loss,
        lambda m, x0, s, z: (
            0.5 * ((s[:, None] * m(x0 + s[:, None] * z, s) + z) ** 2).sum(1)
        ).mean(),
    ),
    (ch06.check_score_from_eps, lambda e, t, ab: -e * _col((1 - ab[t]).rsqrt(), e)),
]


@pytest.mark.parametrize(("checker", "answer"), CORRECT, ids=[c.__name__ for c, _ in CORRECT])
def test_correct_answers_written_differently_pass(
    checker: Callable[..., CheckResult], answer: Any
) -> None:
    res = checker(answer, display=False)
    assert res.passed, res.message


def test_ism_with_an_explicit_grad_outputs_and_a_list_of_diagonals_passes() -> None:
    def ism(model, x):  # type: ignore[no-untyped-def]
        x = x.clone().requires_grad_()
        s = model(x)
        ones = torch.ones(x.shape[0], dtype=s.dtype)
        diag = [
            torch.autograd.grad(s[:, i], x, grad_outputs=ones, create_graph=True)[0][:, i]
            for i in range(x.shape[1])
        ]
        return (torch.stack(diag, 1).sum(1) + 0.5 * s.pow(2).sum(1)).mean()

    assert ch06.check_ism_loss(ism, display=False).passed


def test_train_step_variants_that_are_right(sol: Callable[[str], dict[str, Any]]) -> None:
    loss = sol("ex04")["ddpm_training_loss"]

    def zero_grad_last(model, optimizer, x0, alpha_bar, generator):  # type: ignore[no-untyped-def]
        T = alpha_bar.shape[0] - 1
        t = torch.randint(1, T + 1, (x0.shape[0],), generator=generator)
        value = loss(model, x0, t, alpha_bar, torch.randn(x0.shape, generator=generator))
        value.backward()
        optimizer.step()
        optimizer.zero_grad()  # after the step: the next step starts from zero gradients too
        return value.detach()  # a tensor, not a float: still one number

    assert ch04.check_train_step(zero_grad_last, display=False).passed


def test_float32_arithmetic_in_a_float64_checker_is_accepted(
    sol: Callable[[str], dict[str, Any]],
) -> None:
    right = sol("ex08")["ddim_step_deterministic"]

    def in_float32(x_t, t, t_prev, eps, alpha_bar):  # type: ignore[no-untyped-def]
        return right(x_t.float(), t, t_prev, eps.float(), alpha_bar.float()).to(x_t.dtype)

    res = ch08.check_ddim_step_deterministic(in_float32, display=False)
    assert res.passed and "float32 round-off" in res.message


# --- wrong answers that passed before -----------------------------------------------------------


def test_a_loss_under_no_grad_is_rejected(sol: Callable[[str], dict[str, Any]]) -> None:
    for prefix, name, check in [
        ("ex03", "l_simple", ch03.check_l_simple),
        ("ex03", "vlb_term", ch03.check_vlb_term),
        ("ex04", "ddpm_training_loss", ch04.check_ddpm_training_loss),
        ("ex06", "dsm_loss", ch06.check_dsm_loss),
    ]:
        right = sol(prefix)[name]

        def no_grad(*args: Any, _f: Any = right) -> Any:
            with torch.no_grad():
                return _f(*args)

        res = check(no_grad, display=False)
        assert not res.passed and "no gradient" in res.message, (name, res.message)


def test_ism_without_create_graph_is_rejected_with_the_reason() -> None:
    def ism(model, x):  # type: ignore[no-untyped-def]
        x = x.detach().requires_grad_(True)
        s = model(x)
        tr = sum(
            torch.autograd.grad(s[:, i].sum(), x, retain_graph=True)[0][:, i]
            for i in range(x.shape[1])
        )
        return (tr + 0.5 * (s**2).sum(1)).mean()

    res = ch06.check_ism_loss(ism, display=False)
    assert not res.passed and "create_graph=True" in res.message and "gradient" in res.message


def test_an_extra_leading_axis_is_rejected(sol: Callable[[str], dict[str, Any]]) -> None:
    right = sol("ex07")["reverse_sde_drift"]
    from minidiff.checks import ch07

    res = ch07.check_reverse_sde_drift(lambda *a: right(*a)[None], display=False)
    assert not res.passed and "(1, 5, 2)" in res.message and "only the shape" in res.message


def test_a_float64_sample_step_is_told_to_stay_float32(
    sol: Callable[[str], dict[str, Any]],
) -> None:
    def step64(x_t, t, eps, betas, alpha_bar, variance, z):  # type: ignore[no-untyped-def]
        beta, ab = betas[t][:, None], alpha_bar[t][:, None]  # float64, never cast
        ab_prev = alpha_bar[t - 1][:, None]
        var = beta if variance == "beta" else (1 - ab_prev) / (1 - ab) * beta
        return (x_t - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt() + (t > 1)[
            :, None
        ] * var.sqrt() * z

    res = ch04.check_ancestral_step(step64, display=False)
    assert not res.passed and "should stay torch.float32" in res.message


# --- inputs changed in place --------------------------------------------------------------------


def test_inputs_changed_in_place_are_named(sol: Callable[[str], dict[str, Any]]) -> None:
    def sigmas_squared(sigmas, step_lr):  # type: ignore[no-untyped-def]
        sigmas **= 2
        return step_lr * sigmas / sigmas[-1]

    res = ch05.check_annealed_step_sizes(sigmas_squared, display=False)
    assert (
        "changed its input `sigmas` in place" in res.message and "values are right" in res.message
    )

    def alphas_in_place(betas):  # type: ignore[no-untyped-def]
        alphas = betas.neg_().add_(1.0)
        return torch.cumprod(alphas, 0)

    res = ch01.check_alpha_bar_from_betas(alphas_in_place, display=False)
    assert "changed its input `betas` in place" in res.message and res.mistake is None

    def x_plus_equals(x, score, step_size, noise):  # type: ignore[no-untyped-def]
        x += 0.5 * step_size * score + step_size**0.5 * noise
        return x

    res = ch05.check_langevin_step(x_plus_equals, display=False)
    assert "changed its input `x` in place" in res.message


# --- procedures in a harness --------------------------------------------------------------------


def test_train_step_without_return_or_with_a_list(sol: Callable[[str], dict[str, Any]]) -> None:
    right = sol("ex04")["train_step"]

    def no_return(*args: Any) -> None:
        right(*args)

    res = ch04.check_train_step(no_return, display=False)
    assert "returned None" in res.message and "forget `return`" in res.message
    assert "float() argument" not in res.message
    res = ch04.check_train_step(lambda *a: [right(*a)], display=False)
    assert "returned a list" in res.message


def test_sampling_without_the_generator_is_named(sol: Callable[[str], dict[str, Any]]) -> None:
    step = sol("ex04")["ancestral_step"]

    def sample(eps_model, betas, alpha_bar, shape, variance, generator):  # type: ignore[no-untyped-def]
        x = torch.randn(shape)  # the global generator
        for s in range(betas.shape[0] - 1, 0, -1):
            t = torch.full((shape[0],), s, dtype=torch.long)
            x = step(
                x,
                t,
                eps_model(x, t),
                betas,
                alpha_bar,
                variance,
                torch.randn(shape, generator=generator),
            )
        return x

    res = ch04.check_sample(sample, display=False)
    assert not res.passed and "same seed" in res.message and "generator" in res.message


def test_train_step_with_its_own_generator_is_named(sol: Callable[[str], dict[str, Any]]) -> None:
    right = sol("ex04")["train_step"]

    def own(model, optimizer, x0, alpha_bar, generator):  # type: ignore[no-untyped-def]
        return right(model, optimizer, x0, alpha_bar, torch.Generator().manual_seed(0))

    res = ch04.check_train_step(own, display=False)
    assert "differently seeded generators drew the same" in res.message


def test_t_that_never_reaches_T_is_named(sol: Callable[[str], dict[str, Any]]) -> None:
    loss = sol("ex04")["ddpm_training_loss"]

    def randint_1_T(model, optimizer, x0, alpha_bar, generator):  # type: ignore[no-untyped-def]
        T = alpha_bar.shape[0] - 1
        t = torch.randint(1, T, (x0.shape[0],), generator=generator)
        value = loss(model, x0, t, alpha_bar, torch.randn(x0.shape, generator=generator))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        return value.item()

    res = ch04.check_train_step(randint_1_T, display=False)
    assert res.mistake == "t_excludes_T" and "randint(1, T + 1" in res.message


def test_a_broadcasting_error_names_the_line_and_the_fix() -> None:
    def q_sample(x0, t, alpha_bar, noise):  # type: ignore[no-untyped-def]
        ab = alpha_bar[t].to(x0.dtype)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    res = ch01.check_q_sample(q_sample, display=False)
    assert "`return ab.sqrt() * x0 + (1 - ab).sqrt() * noise`" in res.message
    assert "(B, 1, …, 1)" in res.message


def test_train_step_with_t_from_randint_0_T_plus_1_passes(
    sol: Callable[[str], dict[str, Any]],
) -> None:
    loss = sol("ex04")["ddpm_training_loss"]

    def shifted(model, optimizer, x0, alpha_bar, generator):  # type: ignore[no-untyped-def]
        T = alpha_bar.shape[0] - 1
        t = torch.randint(0, T, (x0.shape[0],), generator=generator) + 1  # the same numbers
        value = loss(model, x0, t, alpha_bar, torch.randn(x0.shape, generator=generator))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        return value.item()

    assert ch04.check_train_step(shifted, display=False).passed


def test_other_random_draws_are_told_how_the_checker_replays_them(
    sol: Callable[[str], dict[str, Any]],
) -> None:
    loss = sol("ex04")["ddpm_training_loss"]

    def via_rand(model, optimizer, x0, alpha_bar, generator):  # type: ignore[no-untyped-def]
        T = alpha_bar.shape[0] - 1
        t = (torch.rand(x0.shape[0], generator=generator) * T).long() + 1  # right law, other draws
        value = loss(model, x0, t, alpha_bar, torch.randn(x0.shape, generator=generator))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        return value.item()

    res = ch04.check_train_step(via_rand, display=False)
    assert not res.passed and "the checker replays" in res.message
