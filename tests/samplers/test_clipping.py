"""x̂₀ clipping and dynamic thresholding: exact values, the derivation (clipping = the ε that the
clipped x̂₀ implies), the samplers' use of it, agreement with diffusers, and bad input."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

import minidiff as md
from minidiff._validation import count_host_reads
from minidiff.samplers import (
    clip_eps_model,
    clip_score_fn,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    dynamic_threshold,
    heun_log_snr_sample,
    resolve_clip,
    static_clip,
)

SCHED = md.linear_schedule(50, beta_end=0.2)


def wild_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A model whose x̂₀ overshoots [-1, 1] by far at large t (like an undertrained network)."""
    tf = t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1))) / 50.0
    return torch.tanh(x) * (0.3 + tf) - 0.4 * tf


def _x0_hat(x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return md.predict_x0_from_eps(x_t, t, eps, SCHED)


# ------------------------------------------------------------------ the two maps


def test_static_clip_values() -> None:
    x0 = torch.tensor([[-3.0, -1.0, 0.25, 1.0, 7.5]])
    torch.testing.assert_close(static_clip(x0), torch.tensor([[-1.0, -1.0, 0.25, 1.0, 1.0]]))
    torch.testing.assert_close(static_clip(x0, 2.0), torch.tensor([[-2.0, -1.0, 0.25, 1.0, 2.0]]))


def test_dynamic_threshold_values_by_hand() -> None:
    # row 0: |x| = 0..4 (5 values); the 0.75-quantile by linear interpolation is 3, so s = 3
    # row 1: every |x| <= 0.5, so s = max(q, 1) = 1: plain clipping at ±1 (nothing changes)
    x0 = torch.tensor(
        [[0.0, -1.0, 2.0, -3.0, 4.0], [0.5, -0.5, 0.1, 0.2, -0.3]], dtype=torch.float64
    )
    got = dynamic_threshold(x0, percentile=0.75)
    want0 = torch.tensor([0.0, -1.0, 2.0, -3.0, 3.0], dtype=torch.float64) / 3.0
    torch.testing.assert_close(got[0], want0, rtol=0, atol=1e-15)
    torch.testing.assert_close(got[1], x0[1], rtol=0, atol=0)
    # max_value caps s: s = min(3, 2) = 2
    capped = dynamic_threshold(x0, percentile=0.75, max_value=2.0)
    want_c = torch.tensor([0.0, -1.0, 2.0, -2.0, 2.0], dtype=torch.float64) / 2.0
    torch.testing.assert_close(capped[0], want_c, rtol=0, atol=1e-15)
    # the result always lies in [-1, 1]; with max_value = 1 it is static clipping
    y = 5 * torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert float(dynamic_threshold(y).abs().max()) <= 1.0
    torch.testing.assert_close(dynamic_threshold(y, max_value=1.0), static_clip(y))


def test_dynamic_threshold_is_per_sample_and_keeps_half_precision() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = 4 * torch.randn(1, 3, 8, 8, generator=g), 0.5 * torch.randn(1, 3, 8, 8, generator=g)
    both = dynamic_threshold(torch.cat([a, b]))
    torch.testing.assert_close(both[:1], dynamic_threshold(a))
    torch.testing.assert_close(both[1:], dynamic_threshold(b))
    h = dynamic_threshold(torch.cat([a, b]).to(torch.bfloat16))
    assert h.dtype == torch.bfloat16
    torch.testing.assert_close(h.float(), both, rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------ the derivation


def test_clipped_eps_implies_the_clipped_x0() -> None:
    g = torch.Generator().manual_seed(2)
    x_t = 3 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    t = torch.randint(1, SCHED.T + 1, (64,), generator=g)
    eps = wild_eps(x_t, t)
    assert float(_x0_hat(x_t, t, eps).abs().max()) > 2  # the test needs x̂₀ out of range
    for mode, fn in (("static", static_clip), ("dynamic", dynamic_threshold)):
        eps_c = clip_eps_model(wild_eps, SCHED, mode)(x_t, t)
        torch.testing.assert_close(_x0_hat(x_t, t, eps_c), fn(_x0_hat(x_t, t, eps)))
    assert clip_eps_model(wild_eps, SCHED, None) is wild_eps


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_clipped_ddpm_step_is_the_posterior_mean_of_the_clipped_x0(
    variance: str, mode: str
) -> None:
    """μ_θ(x_t, ε̃) = μ̃_t(x_t, clip(x̂₀)) = c₁ clip(x̂₀) + c₂ x_t, then + σ_t z."""
    g = torch.Generator().manual_seed(3)
    x_t, z = (3 * torch.randn(32, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.randint(1, SCHED.T + 1, (32,), generator=g)
    t[0], t[1] = 1, SCHED.T
    eps = wild_eps(x_t, t)
    x0c = resolve_clip(mode)(_x0_hat(x_t, t, eps))  # type: ignore[misc]
    c1 = SCHED.posterior_mean_coef_x0[t, None]
    c2 = SCHED.posterior_mean_coef_xt[t, None]
    var = (SCHED.betas if variance == "beta" else SCHED.posterior_variance)[t, None]
    want = c1 * x0c + c2 * x_t + (t > 1).double()[:, None] * var.sqrt() * z
    got = ddpm_step(x_t, t, eps, SCHED, variance=variance, noise=z, clip_x0=mode)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    unclipped = ddpm_step(x_t, t, eps, SCHED, variance=variance, noise=z)
    assert float((got - unclipped).abs().max()) > 0.1  # clipping did change the step


@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_clipped_ddim_step_uses_the_clipped_x0_and_the_rederived_eps(eta: float) -> None:
    g = torch.Generator().manual_seed(4)
    x_t, z = (3 * torch.randn(16, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t, tp = torch.full((16,), 40), torch.full((16,), 30)
    eps = wild_eps(x_t, t)
    ab, ab_p = SCHED.alpha_bar[40], SCHED.alpha_bar[30]
    x0c = static_clip(_x0_hat(x_t, t, eps))
    eps_c = (x_t - ab.sqrt() * x0c) / (1 - ab).sqrt()
    sigma = eta * ((1 - ab_p) / (1 - ab)).sqrt() * (1 - ab / ab_p).sqrt()
    want = ab_p.sqrt() * x0c + (1 - ab_p - sigma**2).sqrt() * eps_c + sigma * z
    got = ddim_step(x_t, t, tp, eps, SCHED, eta=eta, noise=z, clip_x0="static")
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the last step (t_prev = 0) returns the clipped x̂₀ itself
    last = ddim_step(x_t, t, 0, eps, SCHED, clip_x0="static")
    torch.testing.assert_close(last, x0c, rtol=1e-10, atol=1e-10)


def test_clipped_score_has_the_clipped_x0() -> None:
    """Tweedie in continuous time: x̂₀ = (x + σ² score) / α of the clipped score is clip(x̂₀)."""
    sde = md.VPSDE()
    gmm = md.GaussianMixture.eight_gaussians()
    score = md.score_fn_from_mixture(gmm, sde)
    g = torch.Generator().manual_seed(5)
    x = 2 * torch.randn(64, 2, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.9 + 0.05
    a, s = sde.marginal_coefficients(t)
    x0 = (x + s[:, None] ** 2 * score(x, t)) / a[:, None]
    assert float(x0.abs().max()) > 1.5  # the mixture's modes sit at radius 2: clipping bites
    c = clip_score_fn(score, sde.marginal_coefficients, "static")(x, t)
    torch.testing.assert_close((x + s[:, None] ** 2 * c) / a[:, None], static_clip(x0))
    assert clip_score_fn(score, sde.marginal_coefficients, None) is score


# ------------------------------------------------------------------ the samplers


def test_samplers_end_in_range_with_clipping_and_not_without() -> None:
    g = lambda: torch.Generator().manual_seed(6)  # noqa: E731
    for sample in (
        lambda **k: md.ddim_sample(wild_eps, SCHED, (256, 2), steps=10, generator=g(), **k),
        lambda **k: md.ddpm_sample(wild_eps, SCHED, (256, 2), generator=g(), **k),
    ):
        free, clipped = sample(), sample(clip_x0="static")
        assert float(free.abs().max()) > 1.5
        # DDPM's last step returns the mean μ̃_1(x_1, clip(x̂₀)) = clip(x̂₀) (c₂ = 0 at t = 1)
        assert float(clipped.abs().max()) <= 1.0 + 1e-5
        assert float(sample(clip_x0="dynamic").abs().max()) <= 1.0 + 1e-5
        # an identity map is no clipping (up to rounding of x̂₀ -> ε -> x̂₀)
        torch.testing.assert_close(sample(clip_x0=lambda x0: x0), free, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("steps", [1, 10])
def test_static_clipping_keeps_every_float32_sample_in_range_on_a_cosine_schedule(
    steps: int,
) -> None:
    """The last step returns the clipped x̂₀ itself: no float32 rounding of ε̃ multiplied by
    1/sqrt(ᾱ_T) (about 3·10⁴ on a cosine schedule's T) may push it out of [-1, 1]."""
    sched = md.cosine_schedule(1000)

    def noisy_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(int(t[0])))

    kw = dict(steps=steps, clip_x0="static", generator=torch.Generator().manual_seed(0))
    for sample in (
        partial(md.ddim_sample, eta=0.0),
        partial(md.ddim_sample, eta=1.0),
        md.dpm_solver_sample,
        heun_log_snr_sample,
    ):
        out = sample(noisy_eps, sched, (4, 3, 8, 8), **kw)  # type: ignore[operator]
        assert float(out.abs().max()) <= 1.0, (sample, float(out.abs().max()))


def test_the_solvers_clip_their_data_prediction() -> None:
    g = lambda: torch.Generator().manual_seed(6)  # noqa: E731
    for solver in (md.dpm_solver_sample, heun_log_snr_sample):
        free = solver(wild_eps, SCHED, (256, 2), steps=8, generator=g())
        clipped = solver(wild_eps, SCHED, (256, 2), steps=8, generator=g(), clip_x0="static")
        assert float(free.abs().max()) > 1.5 and float(clipped.abs().max()) <= 1.0


def test_a_clip_map_that_changes_the_shape_or_returns_no_tensor_is_named() -> None:
    for sample in (
        partial(md.ddim_sample, steps=4),
        md.ddpm_sample,
        partial(md.dpm_solver_sample, steps=4),
    ):
        with pytest.raises(ValueError, match=r"clip_x0 must return a tensor of shape \(3, 2\)"):
            sample(wild_eps, SCHED, (3, 2), clip_x0=lambda x0: x0[:, :1])
        with pytest.raises(TypeError, match="clip_x0 must return a torch.Tensor, got list"):
            sample(wild_eps, SCHED, (3, 2), clip_x0=lambda x0: x0.tolist())
    with pytest.raises(ValueError, match="clip_x0 must return a tensor of shape"):
        md.pf_ode_sample(lambda x, t: -x, md.VPSDE(), (4, 2), steps=3, clip_x0=lambda x0: x0[:1])


def test_pf_ode_with_clipping_keeps_the_toy_inside_the_square() -> None:
    sde = md.VPSDE()
    score = md.score_fn_from_mixture(md.GaussianMixture.eight_gaussians(), sde)
    kw = dict(steps=40, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    free = md.pf_ode_sample(score, sde, (256, 2), **kw)  # type: ignore[arg-type]
    kw["generator"] = torch.Generator().manual_seed(7)
    clipped = md.pf_ode_sample(score, sde, (256, 2), clip_x0="static", **kw)  # type: ignore[arg-type]
    # the eight modes sit at radius 2: the exact flow goes there, the clipped one cannot
    assert float(free.abs().max()) > 1.8
    assert float(clipped.abs().max()) < 1.1


def test_clipping_adds_no_host_reads_per_step() -> None:
    def run(clip: object) -> int:
        with count_host_reads() as reads:
            md.ddim_sample(
                wild_eps, SCHED, (8, 2), steps=20, generator=torch.Generator(), clip_x0=clip
            )
            md.ddpm_sample(wild_eps, SCHED, (8, 2), generator=torch.Generator(), clip_x0=clip)
        return reads[0]

    assert run("dynamic") == run(None) == run("static")


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("value", "exc"), [("sttic", ValueError), (3, TypeError), (True, TypeError), ("", ValueError)]
)
def test_bad_clip_x0_is_named(value: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="clip_x0"):
        md.ddpm_sample(wild_eps, SCHED, (4, 2), clip_x0=value)
    with pytest.raises(exc, match="clip_x0"):
        md.ddim_sample(wild_eps, SCHED, (4, 2), steps=3, clip_x0=value)
    with pytest.raises(exc, match="clip_x0"):
        md.pf_ode_sample(lambda x, t: -x, md.VPSDE(), (4, 2), steps=3, clip_x0=value)


def test_bad_threshold_parameters_are_named() -> None:
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="percentile"):
        dynamic_threshold(x, percentile=1.5)
    with pytest.raises(TypeError, match="percentile"):
        dynamic_threshold(x, percentile="0.9")  # type: ignore[arg-type]
    for bad in (0.5, math.nan):
        with pytest.raises(ValueError, match="max_value"):
            dynamic_threshold(x, max_value=bad)
    with pytest.raises(TypeError, match="x0"):
        static_clip([1.0, 2.0])  # type: ignore[arg-type]
    # a partial with other parameters is accepted as is
    assert resolve_clip(partial(dynamic_threshold, percentile=0.9)) is not None


# ------------------------------------------------------------------ diffusers


def _diffusers_scheduler(cls_name: str, **kw: object):  # type: ignore[no-untyped-def]
    diffusers = pytest.importorskip("diffusers")
    betas = SCHED.betas[1:].float().numpy()
    return getattr(diffusers, cls_name)(
        num_train_timesteps=SCHED.T, trained_betas=betas, prediction_type="epsilon", **kw
    )


CLIPS = [
    ("static", dict(clip_sample=True)),
    ("dynamic", dict(thresholding=True, dynamic_thresholding_ratio=0.995, sample_max_value=1e6)),
    (
        partial(dynamic_threshold, percentile=0.9, max_value=2.5),
        dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=2.5),
    ),
]


@pytest.mark.parametrize(("clip", "cfg"), CLIPS, ids=["clip_sample", "thresholding", "capped"])
@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_ddpm_step_equals_diffusers(clip: object, cfg: dict, variance: str) -> None:
    vt = {"beta": "fixed_large", "beta_tilde": "fixed_small"}[variance]
    sch = _diffusers_scheduler("DDPMScheduler", variance_type=vt, **cfg)
    sch.set_timesteps(SCHED.T)
    g = torch.Generator().manual_seed(8)
    x = 2 * torch.randn(6, 3, 4, 4, generator=g)
    for t in (SCHED.T, 31, 2, 1):
        eps = wild_eps(x, torch.full((6,), t))
        # diffusers draws its noise with the generator it is given: draw the same z here
        theirs = sch.step(eps, t - 1, x, generator=torch.Generator().manual_seed(t)).prev_sample
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        ours = ddpm_step(x, t, eps, SCHED, variance=variance, noise=z, clip_x0=clip)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize(("clip", "cfg"), CLIPS, ids=["clip_sample", "thresholding", "capped"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_step_equals_diffusers_with_the_clipped_model_output(
    clip: object, cfg: dict, eta: float
) -> None:
    """diffusers re-derives ε from the clipped x̂₀ when ``use_clipped_model_output=True``."""
    sch = _diffusers_scheduler(
        "DDIMScheduler", set_alpha_to_one=True, timestep_spacing="trailing", **cfg
    )
    steps = 10
    sch.set_timesteps(steps)
    ts = ddim_timesteps(SCHED, steps).tolist()
    assert [int(v) + 1 for v in sch.timesteps] == ts  # their index is our t - 1
    g = torch.Generator().manual_seed(9)
    x = 2 * torch.randn(6, 3, 4, 4, generator=g)
    for t, tp in zip(ts, [*ts[1:], 0], strict=True):
        eps = wild_eps(x, torch.full((6,), t))
        z = torch.randn(x.shape, generator=g)
        theirs = sch.step(
            eps, t - 1, x, eta=eta, use_clipped_model_output=True, variance_noise=z
        ).prev_sample
        ours = ddim_step(x, t, tp, eps, SCHED, eta=eta, noise=z, clip_x0=clip)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=2e-5)
        x = ours
