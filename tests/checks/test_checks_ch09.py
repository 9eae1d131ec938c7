"""Exercise 9 checkers: behaviour beyond what test_checkers.py checks for every chapter."""

from __future__ import annotations

import torch

from minidiff.checks import ch09


def _cfg_right(model, x_t, t, y, w, null_label):  # type: ignore[no-untyped-def]
    e_y, e_n = model(x_t, t, y), model(x_t, t, torch.full_like(y, null_label))
    return (1 + w) * e_y - w * e_n


def test_checkers_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert ch09.check_cfg_eps(_cfg_right, display=False).passed
    torch.testing.assert_close(torch.rand(3), expected)


def test_any_dropout_at_sampling_time_is_rejected() -> None:
    def with_dropout(model, x_t, t, y, w, null_label):  # type: ignore[no-untyped-def]
        y_drop = torch.where(torch.rand(y.shape[0]) < 0.1, torch.full_like(y, null_label), y)
        return _cfg_right(model, x_t, t, y_drop, w, null_label)

    assert not ch09.check_cfg_eps(with_dropout, display=False).passed


def test_cfg_with_a_batched_call_is_accepted() -> None:
    def batched(model, x_t, t, y, w, null_label):  # type: ignore[no-untyped-def]
        both = model(
            torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null_label)])
        )
        e_y, e_n = both.chunk(2)
        return e_y + w * (e_y - e_n)

    assert ch09.check_cfg_eps(batched, display=False).passed


def test_classifier_guidance_with_its_own_log_softmax_is_accepted() -> None:
    def manual(eps_model, classifier, x_t, t, y, alpha_bar, w):  # type: ignore[no-untyped-def]
        with torch.enable_grad():  # the sampler calls it under torch.no_grad()
            x = x_t.clone().requires_grad_(True)
            logits = classifier(x, t)
            log_p = logits.gather(1, y[:, None]) - torch.logsumexp(logits, 1, keepdim=True)
            (g,) = torch.autograd.grad(log_p.sum(), x)
        scale = (1 - alpha_bar[t])[:, None].sqrt().to(x_t.dtype)
        return eps_model(x_t, t) - scale * w * g

    assert ch09.check_classifier_guided_eps(manual, display=False).passed


def test_classifier_guidance_without_enable_grad_is_told_why_the_sampler_would_crash() -> None:
    def no_enable(eps_model, classifier, x_t, t, y, alpha_bar, w):  # type: ignore[no-untyped-def]
        x = x_t.clone().requires_grad_(True)
        log_p = torch.log_softmax(classifier(x, t), 1).gather(1, y[:, None])
        (g,) = torch.autograd.grad(log_p.sum(), x)
        return eps_model(x_t, t) - (1 - alpha_bar[t])[:, None].sqrt().to(x_t.dtype) * w * g

    res = ch09.check_classifier_guided_eps(no_enable, display=False)
    assert not res.passed and "torch.enable_grad()" in res.message and "no_grad" in res.message


def test_an_int_null_label_is_right_and_a_float_label_is_refused_as_the_networks_do() -> None:
    from minidiff.checks import ch09

    def cfg_eps(model, x_t, t, y, w, null_label):  # type: ignore[no-untyped-def]
        return (1 + w) * model(x_t, t, y) - w * model(x_t, t, null_label)

    assert ch09.check_cfg_eps(cfg_eps, display=False).passed

    def float_null(model, x_t, t, y, w, null_label):  # type: ignore[no-untyped-def]
        null = torch.full(y.shape, float(null_label))
        return (1 + w) * model(x_t, t, y) - w * model(x_t, t, null)

    res = ch09.check_cfg_eps(float_null, display=False)
    assert not res.passed and "integer (long) tensor" in res.message
    assert "model(x_t, t, null)" in res.message, res.message  # the student's line, quoted


def test_a_missing_requires_grad_is_told_apart_from_a_missing_enable_grad() -> None:
    from minidiff.checks import ch09

    def without_requires_grad(eps_model, classifier, x_t, t, y, alpha_bar, w):  # type: ignore[no-untyped-def]
        with torch.enable_grad():
            lp = torch.log_softmax(classifier(x_t, t), 1).gather(1, y[:, None]).sum()
            (g,) = torch.autograd.grad(lp, x_t)
        return eps_model(x_t, t) - w * (1 - alpha_bar[t]).sqrt()[:, None].to(x_t.dtype) * g

    res = ch09.check_classifier_guided_eps(without_requires_grad, display=False)
    assert not res.passed and "requires_grad_(True)" in res.message
    assert "enable_grad" not in res.message
