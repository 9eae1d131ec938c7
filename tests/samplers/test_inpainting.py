"""Chapter 14: inpainting with an unconditional model (replacement and RePaint)."""

from __future__ import annotations

import pytest
import torch

from minidiff import cosine_schedule, linear_schedule, q_sample, q_step
from minidiff.samplers import (
    ddpm_step,
    get_sampler,
    inpaint_sample,
    noised_known,
    paste_known,
    renoise,
    repaint_sample,
    repaint_times,
    replacement_step,
)

SCHED = linear_schedule(40, 1e-3, 0.2)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, 6, 6, generator=_g(seed)) * 2 - 1


def _half_mask() -> torch.Tensor:
    m = torch.ones(1, 1, 6, 6)
    m[..., 3:, :] = 0
    return m


def _point_mass_eps(c: float):  # the exact ε-model of data that is the constant image c
    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = SCHED.sqrt_alpha_bar[t].float().view(-1, 1, 1, 1)
        s = SCHED.sqrt_one_minus_alpha_bar[t].float().view(-1, 1, 1, 1)
        return (x - a * c) / s

    return eps


def test_replacement_step_is_the_ancestral_step_plus_the_noised_known_pixels():
    x_t, x_known, mask = torch.randn(4, 1, 6, 6), _images(), _half_mask()
    eps, z, e = torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    t = torch.tensor([2, 5, 17, 40])
    out = replacement_step(x_t, t, eps, x_known, mask, SCHED, noise=z, known_noise=e)
    unknown = ddpm_step(x_t, t, eps, SCHED, noise=z)
    known = q_sample(x_known, t - 1, SCHED, noise=e)
    assert torch.allclose(out, torch.where(mask.bool(), known, unknown), atol=1e-6)
    assert torch.equal(torch.where(mask.bool(), 0.0, out), torch.where(mask.bool(), 0.0, unknown))
    last = replacement_step(x_t, 1, eps, x_known, mask, SCHED, noise=z, known_noise=e)
    assert torch.equal(last[..., :3, :], x_known[..., :3, :])  # level 0: the pixels themselves


def test_renoise_is_the_forward_process_from_s_to_t():
    x = _images(2)
    z = torch.randn(2, 1, 6, 6)
    assert torch.allclose(renoise(x, 9, 10, SCHED, noise=z), q_step(x, 10, SCHED, noise=z))
    assert torch.allclose(renoise(x, 0, 10, SCHED, noise=z), q_sample(x, 10, SCHED, noise=z))
    # q(x_t | x_s) composed with q(x_s | x_0) is q(x_t | x_0): check its variance on many draws
    x0 = torch.zeros(20000, 1, 1, 1)
    xt = renoise(q_sample(x0, 7, SCHED, generator=_g(1)), 7, 30, SCHED, generator=_g(2))
    assert abs(xt.var().item() - (1 - SCHED.alpha_bar[30].item())) < 0.03
    with pytest.raises(ValueError, match="s < t"):
        renoise(x, 10, 10, SCHED)


def test_repaint_times_counts_and_plain_replacement():
    T, j, r = 40, 5, 3
    pairs = repaint_times(T, j, r)
    down = [p for p in pairs if p[1] < p[0]]
    up = [p for p in pairs if p[1] > p[0]]
    assert len(down) == T + (r - 1) * j * ((T - j) // j)
    assert len(up) == (r - 1) * ((T - j) // j) and all(b - a == j for a, b in up)
    assert pairs[0] == (T, T - 1) and pairs[-1] == (1, 0)
    assert all(b == a - 1 for a, b in down)
    assert repaint_times(T, j, 1) == [(t, t - 1) for t in range(T, 0, -1)]
    for a, b in zip(pairs, pairs[1:], strict=False):
        assert a[1] == b[0]  # a chain


@pytest.mark.parametrize("method", ["replace", "repaint"])
def test_inpaint_keeps_known_pixels_exactly_and_fills_with_the_data(method):
    x_known, mask = torch.full((3, 1, 6, 6), 0.5), _half_mask()
    x_known[..., 3:, :] = -0.9  # whatever the hidden pixels held is ignored
    out = inpaint_sample(
        _point_mass_eps(0.5),
        SCHED,
        x_known,
        mask,
        method=method,
        jump_length=5,
        resamplings=2,
        generator=_g(3),
    )
    assert torch.equal(out[..., :3, :], x_known[..., :3, :])
    assert torch.allclose(out[..., 3:, :], torch.full_like(out[..., 3:, :], 0.5), atol=1e-3)


def test_inpaint_is_reproducible_registered_and_float64():
    x, m = _images(2).double(), _half_mask()
    eps = _point_mass_eps(0.0)
    a = get_sampler("repaint")(eps, SCHED, x, m, jump_length=4, resamplings=2, generator=_g(5))
    b = repaint_sample(eps, SCHED, x, m, jump_length=4, resamplings=2, generator=_g(5))
    assert a.dtype == torch.float64 and torch.equal(a, b)
    assert get_sampler("inpaint") is inpaint_sample
    full = inpaint_sample(eps, SCHED, x, torch.ones(1, 1, 6, 6), generator=_g(0))
    assert torch.equal(full, x)
    assert torch.equal(paste_known(torch.zeros_like(x), x, m)[..., :3, :], x[..., :3, :])
    assert torch.equal(noised_known(x, None, SCHED), x)


def test_inpaint_with_clipping_stays_in_range():
    sched = cosine_schedule(30)

    def wild(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -3 * x

    out = inpaint_sample(wild, sched, _images(2), _half_mask(), clip_x0="static", generator=_g())
    assert out.abs().max() <= 1 + 1e-5


@pytest.mark.parametrize(
    ("mask", "error", "match"),
    [
        (torch.ones(1, 6, 6), ValueError, "4 dimensions"),
        (torch.ones(1, 1, 5, 6), ValueError, "broadcast"),
        (torch.full((1, 1, 6, 6), 0.5), ValueError, "only 0"),
        ([[1.0]], TypeError, "tensor of 0s and 1s"),
    ],
)
def test_bad_masks(mask, error, match):
    with pytest.raises(error, match=match):
        inpaint_sample(_point_mass_eps(0.0), SCHED, _images(2), mask)


def test_bad_inputs():
    eps, x, m = _point_mass_eps(0.0), _images(2), _half_mask()
    with pytest.raises(ValueError, match="method"):
        inpaint_sample(eps, SCHED, x, m, method="harmonise")
    with pytest.raises(ValueError, match="x_known"):
        inpaint_sample(eps, SCHED, x[0], m)
    with pytest.raises(ValueError, match="jump_length"):
        repaint_times(10, 0, 2)
    with pytest.raises(TypeError, match="eps_model"):
        inpaint_sample("model", SCHED, x, m)


@pytest.mark.parametrize("name", ["inpaint", "repaint", "dps"])
def test_a_given_x_T_in_another_dtype_than_x_known_is_refused(name):
    """inpaint and repaint returned float64 for a float32 x_T and a float64 x_known, dps float32:
    all three now refuse the pair, naming both, before the model runs; a matching x_T runs."""
    x, m = _images(1).double(), _half_mask()
    calls = []

    def spy(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.zeros_like(x_)

    sample = get_sampler(name)
    with pytest.raises(TypeError, match=r"^x_T must have x_known's dtype torch\.float64, got"):
        sample(spy, SCHED, x, m, x_T=torch.randn(1, 1, 6, 6, generator=_g()))
    assert not calls
    out = sample(spy, SCHED, x, m, x_T=torch.randn(1, 1, 6, 6, generator=_g()).double())
    assert out.dtype == torch.float64 and calls


def test_repaint_sample_refuses_a_method_of_its_own():
    """repaint_sample is inpaint_sample with method="repaint": a method keyword is a TypeError
    that says so (not Python's "got multiple values"), raised before the model runs."""
    x, m = _images(2), _half_mask()
    calls = []

    def spy(x_: torch.Tensor, t_: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.zeros_like(x_)

    for method in ("replace", "repaint"):
        with pytest.raises(TypeError, match="repaint_sample always uses method='repaint'.*inpaint"):
            repaint_sample(spy, SCHED, x, m, method=method)
    assert not calls


def test_noised_known_is_q_sample_bitwise() -> None:
    """The known pixels at level t are the forward process, the same computation as q_sample."""
    x_known, e = _images(), torch.randn(4, 1, 6, 6)
    t = torch.tensor([1, 5, 17, 40])
    assert torch.equal(
        noised_known(x_known, t, SCHED, noise=e), q_sample(x_known, t, SCHED, noise=e)
    )
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    drawn = noised_known(x_known, t, SCHED, generator=g1)
    assert torch.equal(drawn, q_sample(x_known, t, SCHED, generator=g2))
