"""Chapter 14's cascade: a base model's samples handed to a super-resolution model."""

from __future__ import annotations

import copy

import pytest
import torch

from minidiff import cosine_schedule, linear_schedule
from minidiff.image_conditioning import condition_on, upsample
from minidiff.nn.unet import UNet
from minidiff.samplers import ddim_sample
from minidiff.superres import (
    ResidualSR,
    cascade_sample,
    conditional_sample,
    small_unet_config,
    sr_sample,
    train_sr,
)

SCHED = cosine_schedule(20)


def _models(aug: bool = True) -> tuple[UNet, ResidualSR]:
    torch.manual_seed(0)
    base = UNet(small_unet_config(4)).eval()
    sr = ResidualSR(small_unet_config(8, cond_channels=1, aug_embedding=aug), SCHED).eval()
    with torch.no_grad():  # a skip that is not the identity, so that the condition matters
        for p in sr.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return base, sr


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(3)


@torch.no_grad()
def test_cascade_is_the_base_sampler_then_the_sr_sampler() -> None:
    base, sr = _models()
    low, high = cascade_sample(base, sr, SCHED, 5, steps=4, aug_level=3, generator=_g())
    g = _g()  # the same random numbers in the documented order
    want_low = ddim_sample(
        base, SCHED, (5, 1, 4, 4), steps=4, eta=1.0, generator=g, clip_x0="static"
    )
    want_high = sr_sample(sr, want_low, SCHED, steps=4, aug_level=3, generator=g)
    assert torch.equal(low, want_low) and torch.equal(high, want_high)
    assert high.shape == (5, 1, 8, 8)


@torch.no_grad()
def test_truncated_cascade_hands_over_the_base_state_at_s() -> None:
    """CDM's truncated conditioning augmentation: the base stops at x_s, which the SR model reads
    as its condition at level s, without a second corruption."""
    base, sr = _models()
    s = 6
    low, high = cascade_sample(
        base, sr, SCHED, 5, steps=4, aug_level=s, truncate=True, generator=_g()
    )
    g = _g()
    states: dict[int, torch.Tensor] = {}
    grid = torch.linspace(SCHED.T, s, 4).round().long()  # 4 calls: 3 steps to s, 1 discarded
    ddim_sample(base, SCHED, (5, 1, 4, 4), timesteps=grid, eta=1.0, generator=g, clip_x0="static",
                on_step=lambda st: states.update({int(st.t): st.x}))  # fmt: skip
    assert torch.equal(low, states[s])
    want = sr_sample(sr, states[s], SCHED, steps=4, aug_level=s, noised=True, generator=g)
    assert torch.equal(high, want)
    # the handed-over state is noisy: it is not the base model's finished sample
    assert not torch.equal(low, states[0])
    # and the SR model reads it as given: x_s upsampled, not corrupted a second time
    x, t = torch.randn(5, 1, 8, 8, generator=_g()), torch.full((5,), 7)
    eps = condition_on(sr, low, SCHED, aug_level=s, noised=True)
    want_eps = sr(x, t, x_cond=upsample(low, 8), aug_level=torch.full((5,), float(s)))
    assert torch.equal(eps(x, t), want_eps)


def test_cascade_bad_inputs() -> None:
    base, sr = _models(aug=False)
    calls = []
    spy = lambda x, t: calls.append(1) or base(x, t)  # noqa: E731
    spy.config = base.config  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="aug_level=3 needs a model trained with noise"):
        cascade_sample(spy, sr, SCHED, 2, steps=2, aug_level=3, truncate=True)
    assert not calls  # refused before the base model is run
    with pytest.raises(ValueError, match="aug_level must be in 0..T=20"):
        cascade_sample(base, _models()[1], SCHED, 2, steps=2, aug_level=30)
    with pytest.raises(TypeError, match="truncate must be True or False"):
        cascade_sample(spy, _models()[1], SCHED, 2, steps=2, aug_level=3, truncate="no")
    with pytest.raises(TypeError, match="sr_model must be a UNet built with"):
        cascade_sample(spy, base, SCHED, 2, steps=2)
    with pytest.raises(TypeError, match="base must be an unconditional"):
        cascade_sample(lambda x, t: x, sr, SCHED, 2, steps=2)
    with pytest.raises(ValueError, match="sr_model cannot read"):
        two = ResidualSR(small_unet_config(8, cond_channels=2), SCHED)
        cascade_sample(spy, two, SCHED, 2, steps=2)
    with pytest.raises(ValueError, match="steps must be in 2..T=20"):
        cascade_sample(spy, sr, SCHED, 2, steps=30)
    assert not calls  # every refusal came before the base model ran
    with pytest.raises(ValueError, match="n"):
        cascade_sample(base, sr, SCHED, 0, steps=2)
    with pytest.raises(TypeError, match="aug_level"):
        cascade_sample(base, sr, SCHED, 2, steps=2, aug_level=1.5)


@pytest.mark.parametrize("schedule", [None, "S"])
def test_a_schedule_of_the_wrong_type_is_named_before_the_other_arguments(schedule: object) -> None:
    """schedule's type is checked where it stands (right after the models), before n, truncate,
    generator and base; a schedule other than the model's own is refused before any sampling."""
    base, sr = _models()
    x_low = torch.rand(2, 1, 4, 4, generator=_g()) * 2 - 1
    bad = [
        lambda: cascade_sample(base, sr, schedule, 0),  # type: ignore[arg-type]
        lambda: cascade_sample(base, sr, schedule, 2, truncate="yes"),  # type: ignore[arg-type]
        lambda: cascade_sample(base, sr, schedule, 2, generator=5),  # type: ignore[arg-type]
        lambda: cascade_sample(None, sr, schedule, 2),  # type: ignore[arg-type]
        lambda: sr_sample(sr, x_low, schedule, steps=0),  # type: ignore[arg-type]
        lambda: conditional_sample(sr, x_low, schedule, aug_level=-1),  # type: ignore[arg-type]
    ]
    for call in bad:
        with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
            call()


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.zeros(2, 1, 3, 3), r"x_low must have shape \(B, 1, 8, 8\)"),
        (torch.zeros(2, 2, 4, 4), r"x_low must have shape"),
        (torch.full((2, 1, 4, 4), 2.0), r"x_low must lie in \[-1, 1\]"),
        (torch.full((2, 1, 4, 4), float("nan")), "x_low contains non-finite"),
    ],
)
def test_sr_sample_names_x_low_for_a_condition_the_model_cannot_take(
    x: torch.Tensor, match: str
) -> None:
    """sr_sample's condition is x_low: its shape and range errors say so (they named x_cond,
    the argument of the function it calls), before any sampling."""
    _, sr = _models()
    with pytest.raises(ValueError, match=match):
        sr_sample(sr, x, SCHED, steps=2)
    with pytest.raises(ValueError, match=match.replace("x_low", "x_cond")):
        conditional_sample(sr, x, SCHED, steps=2)
    for sampler in (sr_sample, conditional_sample):  # a model that takes no condition is named
        with pytest.raises(TypeError, match="^model must be a UNet built with"):
            sampler(torch.nn.Linear(2, 2), x, SCHED, steps=2)


def test_the_image_half_refuses_bad_input_before_any_work_and_samples_in_float64() -> None:
    from minidiff.superres import Regressor, train_base, train_conditional

    sched = cosine_schedule(50)
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    with pytest.raises(ValueError, match="residual=True adds the condition's first 2 channels"):
        Regressor(small_unet_config(8, 2, cond_channels=1), residual=True)
    with pytest.raises(ValueError, match=r"images must lie in \[-1, 1\]"):
        train_base(x * 10, sched, steps=1, progress=False)
    with pytest.raises(TypeError, match="schedule must be"):
        train_base(x, None, steps=1, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_aug_level must be in 0..T=50"):
        train_conditional(x, x, sched, steps=1, max_aug_level=51, progress=False)
    with pytest.raises(ValueError, match=r"x_cond must lie in \[-1, 1\]"):
        train_conditional(x, x * 10, sched, steps=1, progress=False)
    with pytest.raises(TypeError, match="config must be"):
        ResidualSR("tiny", sched)  # type: ignore[arg-type]
    sr = ResidualSR(small_unet_config(8, 1, cond_channels=1), sched)
    with pytest.raises(ValueError, match="t must lie in 1..50"):
        sr(x[:2], torch.tensor([60, 4]), x[:2])
    model = UNet(small_unet_config(8, 1, cond_channels=1)).double()
    out = sr_sample(model, x[:2].double(), sched, steps=3)
    assert out.dtype == torch.float64


def test_a_residual_sr_model_is_sampled_on_its_own_schedule_only() -> None:
    """ResidualSR computes its ε with the schedule it keeps: another T would index past its
    arrays, another schedule of the same T would mix two; both are refused before any work."""
    base, sr = _models(aug=False)
    x_low = torch.rand(2, 1, 4, 4, generator=_g()) * 2 - 1
    calls = []
    spy = lambda x, t: calls.append(1) or base(x, t)  # noqa: E731
    spy.config = base.config  # type: ignore[attr-defined]
    for other in (cosine_schedule(40), linear_schedule(20)):
        with pytest.raises(ValueError, match=r"schedule must be the schedule the model was"):
            sr_sample(sr, x_low, other, steps=3)
        with pytest.raises(ValueError, match=rf"T=20.*got NoiseSchedule\(T={other.T}"):
            conditional_sample(sr, x_low, other, steps=3)
        with pytest.raises(ValueError, match="schedule must be the schedule the model was"):
            cascade_sample(spy, sr, other, 2, steps=3)
    assert not calls  # refused before the base model ran
    # an equal schedule built again is the model's schedule
    with torch.no_grad():
        same = sr_sample(sr, x_low, cosine_schedule(20), steps=3, generator=_g())
        assert torch.equal(same, sr_sample(sr, x_low, SCHED, steps=3, generator=_g()))


def test_the_trainers_name_the_caller_s_argument_for_images_of_another_dtype() -> None:
    """The models are built in float32 or float64: images of another dtype are refused up front,
    naming the argument as the caller spelled it and the cast to make (not a model the caller
    never sees); so is a condition whose dtype is not the images'."""
    from minidiff.superres import train_base, train_conditional, train_regression, train_regressor

    sched = cosine_schedule(50)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    cases = [
        (lambda: train_sr(x.half(), sched, steps=1, progress=False), "x_high"),
        (lambda: train_sr(x.bfloat16(), sched, steps=1, progress=False), "x_high"),
        (lambda: train_regressor(x.half(), steps=1, progress=False), "x_high"),
        (lambda: train_conditional(x.half(), x, sched, steps=1, progress=False), "x"),
        (lambda: train_regression(x, x.half(), steps=1, progress=False), "x_cond"),
        (lambda: train_base(x.half(), sched, steps=1, progress=False), "images"),
    ]
    for call, name in cases:
        with pytest.raises(
            TypeError, match=rf"^{name} must be a float32 or float64 tensor .*{name}\.float\(\)"
        ):
            call()
    for call in (
        lambda: train_conditional(x, x.double(), sched, steps=1, progress=False),
        lambda: train_regression(x.double(), x, steps=1, progress=False),
    ):
        with pytest.raises(
            TypeError, match=r"^x_cond must have x's dtype .*x_cond\.to\(x\.dtype\)"
        ):
            call()
    with pytest.raises(TypeError, match="^x_high must be a floating-point tensor"):
        train_sr((x * 100).to(torch.uint8), sched, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"^x_high must lie in \[-1, 1\]"):
        train_sr(x * 3, sched, steps=1, progress=False)
    with pytest.raises(TypeError, match="^x_high must be a torch.Tensor"):
        train_regressor([1.0], steps=1, progress=False)  # type: ignore[arg-type]


def test_the_trainers_build_and_train_a_float64_model_from_float64_images() -> None:
    """Float64 images give a float64 model (base, SR, regressor), whose samples are float64."""
    from minidiff.superres import train_base, train_regressor

    x = (torch.rand(8, 1, 8, 8, generator=_g(), dtype=torch.float64) * 2 - 1).clamp(-1, 1)
    low = x[:, :, ::2, ::2]
    sr = train_sr(x, SCHED, steps=2, max_aug_level=3, progress=False)
    base = train_base(low, SCHED, steps=2, progress=False)
    reg = train_regressor(x, steps=2, progress=False)
    for model in (sr, base, reg):
        assert {p.dtype for p in model.parameters()} == {torch.float64}
    with torch.no_grad():
        assert sr_sample(sr, low[:2], SCHED, steps=3, aug_level=2, generator=_g()).dtype == (
            torch.float64
        )
        b_low, b_high = cascade_sample(base, sr, SCHED, 2, steps=3, generator=_g())
        assert b_low.dtype == b_high.dtype == torch.float64
        assert reg(upsample(low[:2], 8)).dtype == torch.float64


@torch.no_grad()
def test_a_condition_of_another_float_dtype_is_read_in_the_model_s_dtype_both_ways() -> None:
    # a float64 x_low for a float32 model failed inside the sampler (naming x, not x_low), while
    # a float32 x_low for a float64 model worked; a cascade of a float64 base and a float32 SR
    # model runs, each stage in its own dtype
    base, sr = _models()
    x_low = torch.rand(2, 1, 4, 4, generator=_g()) * 2 - 1
    for model in (sr, copy.deepcopy(sr).double()):
        dtype = next(model.parameters()).dtype
        want = sr_sample(model, x_low.to(dtype), SCHED, steps=3, aug_level=2, generator=_g())
        for other in (torch.float32, torch.float64):
            got = sr_sample(model, x_low.to(other), SCHED, steps=3, aug_level=2, generator=_g())
            assert got.dtype == dtype and torch.equal(got, want)
            got = conditional_sample(model, x_low.to(other), SCHED, steps=3, generator=_g())
            assert got.dtype == dtype
    for b, m in ((base.double(), sr), (copy.deepcopy(base).float(), copy.deepcopy(sr).double())):
        low, high = cascade_sample(b, m, SCHED, 2, steps=3, aug_level=2, generator=_g())
        assert low.dtype == next(b.parameters()).dtype
        assert high.dtype == next(m.parameters()).dtype and bool(torch.isfinite(high).all())
    # a finite float64 condition beyond the float32 range is named for its range, not as NaN/inf
    with pytest.raises(ValueError, match=r"x_low must lie in \[-1, 1\]"):
        sr_sample(sr, torch.full((2, 1, 4, 4), 1e300, dtype=torch.float64), SCHED, steps=2)
