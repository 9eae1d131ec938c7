"""Student answers to exercises 9-16 written differently from the solution: a right one passes, a
wrong one is told what it got wrong (each test pins a verdict the checkers once got wrong)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from minidiff.checks import ch11, ch13, ch14, ch15, ch16


def _attention_sdpa(
    h: torch.Tensor,
    w_qkv: torch.Tensor,
    b_qkv: torch.Tensor,
    w_proj: torch.Tensor,
    b_proj: torch.Tensor,
) -> torch.Tensor:
    B, C, H, W = h.shape
    seq = h.flatten(2).transpose(1, 2)  # (B, HW, C)
    q, k, v = F.linear(seq, w_qkv, b_qkv).chunk(3, dim=-1)
    out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
    return F.linear(out, w_proj, b_proj).transpose(1, 2).reshape(B, C, H, W)


def test_attention_through_scaled_dot_product_attention_is_accepted() -> None:
    # the key bias's true gradient is zero; float32 rounding there (about 1e-6) once failed this
    # right answer with "a wrong gradient reaches `b_qkv`"
    result = ch11.check_attention(_attention_sdpa, display=False)
    assert result.passed, result.message


def test_attention_with_a_detached_bias_is_still_refused() -> None:
    def detached(h, w_qkv, b_qkv, w_proj, b_proj):  # type: ignore[no-untyped-def]
        return _attention_sdpa(h, w_qkv, b_qkv.detach(), w_proj, b_proj)

    result = ch11.check_attention(detached, display=False)
    assert not result.passed
    assert "`b_qkv`" in result.message


def test_attention_that_changes_its_input_bias_is_refused() -> None:
    def in_place(x, wqkv, bqkv, wo, bo):  # type: ignore[no-untyped-def]
        out = _attention_sdpa(x, wqkv, bqkv, wo, bo)
        with torch.no_grad():
            bqkv.mul_(2.0)
        return out

    result = ch11.check_attention(in_place, display=False)
    assert not result.passed
    assert "in place" in result.message and "`bqkv`" in result.message  # the student's own name


def test_latent_scale_with_the_population_std_is_accepted() -> None:
    # np.std's default (ddof=0) is "the std of all entries" as much as torch's unbiased one; on
    # the old cases of 128 to 1024 entries the two differed by 1/(2n) > rtol and it was refused
    for fn in (
        lambda z: 1.0 / z.std(correction=0).item(),
        lambda z: float(1.0 / np.std(z.numpy())),
        lambda z: 1.0 / float(((z - z.mean()) ** 2).mean().sqrt()),
    ):
        result = ch13.check_latent_scale_factor(fn, display=False)
        assert result.passed, result.message


def test_latent_scale_from_the_uncentred_root_mean_square_is_named() -> None:
    result = ch13.check_latent_scale_factor(
        lambda z: 1.0 / float(z.pow(2).mean().sqrt()), display=False
    )
    assert not result.passed
    assert result.mistake == "root_mean_square"


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).view(-1, 1, 1, 1)


def test_replacement_step_with_the_posterior_variance_is_named() -> None:
    # σ_t² = β̃_t written out by hand where the exercise asks for β_t: once "re-read the formula"
    def beta_tilde(x_t, t, eps, x_known, mask, schedule, known_noise, z):  # type: ignore[no-untyped-def]
        beta, ab = _col(schedule.betas[t], x_t), _col(schedule.alpha_bar[t], x_t)
        ab_prev = _col(schedule.alpha_bar[t - 1], x_t)
        mean = (x_t - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
        unknown = mean + (beta * (1 - ab_prev) / (1 - ab)).sqrt() * z
        known = ab_prev.sqrt() * x_known + (1 - ab_prev).sqrt() * known_noise
        return mask * known + (1 - mask) * unknown

    result = ch14.check_replacement_step(beta_tilde, display=False)
    assert not result.passed
    assert result.mistake == "beta_tilde_variance", result.message


def test_repaint_jump_with_the_product_one_index_early_is_named() -> None:
    def early(x_s, s, t, schedule, noise):  # type: ignore[no-untyped-def]
        ratio = float(torch.prod(1 - schedule.betas[s:t]))
        return ratio**0.5 * x_s + (1 - ratio) ** 0.5 * noise

    def right(x_s, s, t, schedule, noise):  # type: ignore[no-untyped-def]
        ratio = float(torch.prod(1 - schedule.betas[s + 1 : t + 1]))
        return ratio**0.5 * x_s + (1 - ratio) ** 0.5 * noise

    result = ch14.check_repaint_jump(early, display=False)
    assert not result.passed
    assert result.mistake == "product_off_by_one", result.message
    assert ch14.check_repaint_jump(right, display=False).passed


def test_augmented_eps_told_the_sampling_step_is_named() -> None:
    def told_t(model, x_t, t, x_cond, s, schedule, noise):  # type: ignore[no-untyped-def]
        ab = _col(schedule.alpha_bar[s], x_cond)
        cond = ab.sqrt() * x_cond + (1 - ab).sqrt() * noise
        return model(x_t, t, x_cond=cond, aug_level=t.to(x_t.dtype))

    result = ch14.check_augmented_eps(told_t, display=False)
    assert not result.passed
    assert result.mistake == "told_t", result.message


def test_dpm_solver_step_that_never_uses_x0_last_is_named() -> None:
    def ddim_only(x_t, t, t_next, x0, x0_last, t_last, alpha_bar):  # type: ignore[no-untyped-def]
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        col = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
        return col(s[t_next] / s[t]) * x_t + col(a[t_next] - s[t_next] * a[t] / s[t]) * x0

    result = ch15.check_dpm_solver_2m_step(ddim_only, display=False)
    assert not result.passed
    assert result.mistake == "first_order", result.message


def test_cfm_loss_with_the_model_called_on_clean_data_is_named() -> None:
    def at_x0(velocity_model, x0, eps, t):  # type: ignore[no-untyped-def]
        return F.mse_loss(velocity_model(x0, t), eps - x0)

    result = ch16.check_cfm_loss(at_x0, display=False)
    assert not result.passed
    assert result.mistake == "model_at_x0", result.message


def test_ddim_as_euler_stepping_in_sigma_is_named() -> None:
    def in_sigma(x_t, eps, alpha_t, sigma_t, alpha_s, sigma_s):  # type: ignore[no-untyped-def]
        a_t, s_t, a_s, s_s = (c.unsqueeze(1) for c in (alpha_t, sigma_t, alpha_s, sigma_s))
        return a_s * (x_t / a_t + (s_s - s_t) * eps)

    result = ch16.check_ddim_as_euler(in_sigma, display=False)
    assert not result.passed
    assert result.mistake == "step_in_sigma_rescaled", result.message


def test_dpm_solver_step_that_branches_on_the_first_row_is_told_to_decide_per_row() -> None:
    # t_next is (B,) and the checker's rows mix t_next = 0 with t_next > 0: a Python `if` on
    # t_next[0] takes the 2M correction on rows that end at 0; once told only "needs its special
    # case", which the answer has
    def first_row(x_t, t, t_next, x0, x0_last, t_last, alpha_bar):  # type: ignore[no-untyped-def]
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        col = lambda v: v.to(x_t.dtype)[:, None]  # noqa: E731
        d = x0
        if x0_last is not None and int(t_next[0]) > 0:
            lam = (a / s).log()
            h, h_last = lam[t_next] - lam[t], lam[t] - lam[t_last]
            d = x0 + col(h / (2 * h_last)) * (x0 - x0_last)
        e = s[t_next] * a[t] / (a[t_next] * s[t])
        return col(s[t_next] / s[t]) * x_t + col(a[t_next] * (1 - e)) * d

    result = ch15.check_dpm_solver_2m_step(first_row, display=False)
    assert not result.passed
    assert "row by row" in result.message


def test_eps_from_velocity_without_the_division_is_named() -> None:
    def undivided(x_t, u, alpha, sigma, d_alpha, d_sigma):  # type: ignore[no-untyped-def]
        return alpha[:, None] * u - d_alpha[:, None] * x_t

    result = ch16.check_eps_from_velocity(undivided, display=False)
    assert not result.passed
    assert result.mistake == "no_denominator", result.message
