"""Chapter 14: conditioning on an image (SR, cascades' augmentation, masks) and its measures."""

from __future__ import annotations

import pytest
import torch

from minidiff import linear_schedule, q_sample
from minidiff.image_conditioning import (
    aug_levels,
    augment_condition,
    condition_on,
    downsample,
    lift_condition,
    masked_condition,
    to_grayscale,
    upsample,
)
from minidiff.losses import sample_timesteps
from minidiff.losses.image_conditional import image_conditional_loss, regression_loss
from minidiff.metrics.restoration import highband_spectrum_distance, psnr, seam_jump
from minidiff.nn.unet import UNet, UNetConfig
from minidiff.tensors import noise_like

SCHED = linear_schedule(50, 1e-3, 0.2)


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unet(aug: bool = False, cond: int = 1) -> UNet:
    """A small U-Net with every weight perturbed: a fresh one's last layer is zero, so it would
    answer 0 whatever condition it read, and no test of the condition could fail."""
    torch.manual_seed(0)
    net = UNet(
        UNetConfig(
            image_size=8,
            in_channels=1,
            base_channels=8,
            channel_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            dropout=0.0,
            groups=4,
            cond_channels=cond,
            aug_embedding=aug,
        )
    )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return net


def _imgs(b: int = 4, s: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, s, s, generator=_g(seed)) * 2 - 1


def test_down_and_upsampling():
    x = _imgs(2, 4)
    assert torch.equal(downsample(upsample(x, 8, "nearest"), 2), x)
    up = upsample(x, 16)
    assert up.shape == (2, 1, 16, 16) and up.abs().max() <= 1
    with pytest.raises(ValueError, match="multiple of x_low's size 4"):
        upsample(x, 6)
    with pytest.raises(ValueError, match="factor=3 must divide"):
        downsample(x, 3)
    with pytest.raises(ValueError, match="mode"):
        upsample(x, 8, "lanczos")


def test_augment_condition_is_the_forward_process_on_the_condition():
    x, e = _imgs(), torch.randn(4, 1, 8, 8)
    s = torch.tensor([0, 1, 10, 50])
    out = augment_condition(x, s, SCHED, noise=e)
    assert torch.equal(out[0], x[0])  # level 0: untouched
    assert torch.allclose(out[1:], q_sample(x[1:], s[1:], SCHED, noise=e[1:]), atol=1e-6)
    levels = aug_levels(4000, 7, SCHED, _g())
    assert levels.min() == 0 and levels.max() == 7
    assert abs(levels.float().mean().item() - 3.5) < 0.15  # uniform on 0..7
    with pytest.raises(ValueError, match="0..T=50"):
        augment_condition(x, 51, SCHED)
    with pytest.raises(TypeError, match="integer tensor"):
        augment_condition(x, torch.zeros(4), SCHED)


def test_image_conditional_loss_matches_its_formula():
    model = _unet(aug=True)
    x0, cond = _imgs(), _imgs(seed=1)
    loss = image_conditional_loss(model, x0, cond, SCHED, max_aug_level=10, generator=_g(4))
    g = _g(4)  # the same draws in the documented order: t, eps, s, the augmentation noise
    t = sample_timesteps(4, SCHED.T, g)
    e = noise_like(x0, g)
    s = aug_levels(4, 10, SCHED, g)
    c = augment_condition(cond, s, SCHED, noise=noise_like(cond, g))
    want = (e - model(q_sample(x0, t, SCHED, noise=e), t, x_cond=c, aug_level=s.float())) ** 2
    assert torch.allclose(loss, want.mean())
    loss.backward()
    assert model.conv_in.weight.grad is not None


def test_loss_and_condition_errors():
    plain, x0 = _unet(), _imgs()
    with pytest.raises(ValueError, match="aug_embedding=True"):
        image_conditional_loss(plain, x0, x0, SCHED, max_aug_level=3)
    with pytest.raises(ValueError, match="h dividing 8"):
        image_conditional_loss(plain, x0, _imgs(4, 3), SCHED)  # 3 does not divide 8
    with pytest.raises(ValueError, match="batch B=4"):
        image_conditional_loss(plain, x0, _imgs(3, 4), SCHED)
    with pytest.raises(TypeError, match="cond_channels"):
        image_conditional_loss(_unet(cond=0), x0, x0, SCHED)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        condition_on(plain, x0 * 3)
    with pytest.raises(ValueError, match="h dividing 8"):
        condition_on(plain, torch.zeros(4, 1, 16, 16))
    with pytest.raises(ValueError, match="noised=True needs a model trained with augmentation"):
        condition_on(plain, x0, SCHED, noised=True)
    with pytest.raises(ValueError, match="aug_level >= 1"):
        condition_on(_unet(aug=True), x0, SCHED, aug_level=0, noised=True)
    with pytest.raises(TypeError, match="noised must be True or False"):
        condition_on(_unet(aug=True), x0, SCHED, aug_level=3, noised="no")
    with pytest.raises(ValueError, match="needs a model trained with noise-conditioning"):
        condition_on(plain, x0, SCHED, aug_level=5)
    with pytest.raises(ValueError, match="aug_level must be in 0..T=50"):
        condition_on(_unet(aug=True), x0, SCHED, aug_level=80)
    with pytest.raises(ValueError, match="x0's shape"):
        regression_loss(lambda c: c[:, :, :4], x0, x0)


def test_condition_on_gives_an_eps_model():
    model, cond, x = _unet(aug=True), _imgs(seed=2), _imgs(seed=3)
    t = torch.full((4,), 7)
    eps = condition_on(model, cond, SCHED, aug_level=5, generator=_g(9))
    c = augment_condition(cond, 5, SCHED, generator=_g(9))
    assert torch.allclose(eps(x, t), model(x, t, x_cond=c, aug_level=torch.full((4,), 5.0)))
    plain = _unet()
    assert torch.equal(condition_on(plain, cond)(x, t), plain(x, t, x_cond=cond))


def test_a_low_resolution_condition_is_augmented_before_it_is_upsampled():
    """CDM corrupts the low-resolution image, then upsamples: the noise has the low grain."""
    model, x0, y = _unet(aug=True), _imgs(), _imgs(b=4, s=4, seed=5)
    loss = image_conditional_loss(model, x0, y, SCHED, max_aug_level=10, generator=_g(4))
    g = _g(4)  # t, eps, s, then the augmentation noise drawn at 4x4
    t = sample_timesteps(4, SCHED.T, g)
    e = noise_like(x0, g)
    s = aug_levels(4, 10, SCHED, g)
    c = upsample(augment_condition(y, s, SCHED, noise=noise_like(y, g)), 8)
    want = (e - model(q_sample(x0, t, SCHED, noise=e), t, x_cond=c, aug_level=s.float())) ** 2
    assert torch.allclose(loss, want.mean())
    # at sampling time the same order: corrupt at 4x4 with the generator, then upsample
    x, tt = _imgs(seed=3), torch.full((4,), 7)
    eps = condition_on(model, y, SCHED, aug_level=6, generator=_g(9))
    c6 = upsample(augment_condition(y, 6, SCHED, generator=_g(9)), 8)
    assert torch.allclose(eps(x, tt), model(x, tt, x_cond=c6, aug_level=torch.full((4,), 6.0)))
    # noise drawn at 8x8 would vary pixel by pixel; at 4x4 then bicubic it is smooth
    assert not torch.allclose(c6, augment_condition(upsample(y, 8), 6, SCHED, generator=_g(9)))
    # a model without augmentation: a low-resolution condition is just upsampled
    plain = _unet()
    assert torch.equal(condition_on(plain, y)(x, tt), plain(x, tt, x_cond=upsample(y, 8)))


def test_lift_condition_corrupts_then_upsamples_and_checks_its_arguments():
    y, e = _imgs(b=4, s=4, seed=5), torch.randn(4, 1, 4, 4, generator=_g(2))
    want = upsample(augment_condition(y, 6, SCHED, noise=e), 8)
    assert torch.equal(lift_condition(y, 8, 6, SCHED, e), want)
    assert torch.equal(lift_condition(y, 8), upsample(y, 8))  # no level: upsampled only
    assert torch.equal(lift_condition(y, 4, 6, SCHED, e), augment_condition(y, 6, SCHED, noise=e))
    with pytest.raises(TypeError, match="schedule is required with level"):
        lift_condition(y, 8, 6)
    with pytest.raises(ValueError, match="size must be a multiple of x_cond's size 4"):
        lift_condition(y, 6)
    with pytest.raises(ValueError, match="noise"):
        lift_condition(y, 8, 6, SCHED, torch.randn(4, 1, 8, 8))
    with pytest.raises(ValueError, match="level must lie in 0..T=50"):
        lift_condition(y, 8, 60, SCHED, e)


def test_noised_condition_is_used_as_given():
    """``noised=True``: a base model's state x_s stands for the corrupted condition (truncated
    conditioning augmentation); it is not corrupted again, and a state outside [-1, 1] is accepted
    (the network reads it upsampled and clamped, as in training)."""
    model, x, tt = _unet(aug=True), _imgs(seed=3), torch.full((4,), 7)
    y_s = 1.3 * _imgs(b=4, s=4, seed=6)  # a noisy state may leave [-1, 1]
    eps = condition_on(model, y_s, SCHED, aug_level=6, generator=_g(9), noised=True)
    want = model(x, tt, x_cond=upsample(y_s, 8), aug_level=torch.full((4,), 6.0))
    assert torch.equal(eps(x, tt), want)


def test_masked_condition_and_grayscale():
    x = _imgs(2)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    c = masked_condition(x, m)
    assert c.shape == (2, 2, 8, 8) and torch.equal(c[:, 1:], m.expand(2, 1, 8, 8))
    assert torch.equal(c[:, :1, :, 4:], torch.zeros(2, 1, 8, 4))
    rgb = torch.rand(2, 3, 4, 4) * 2 - 1
    assert torch.allclose(
        to_grayscale(rgb.mean(1, keepdim=True).expand(2, 3, 4, 4)), rgb.mean(1, keepdim=True)
    )
    with pytest.raises(ValueError, match="3 channels"):
        to_grayscale(x)


def test_measures():
    x = _imgs(3) * 0.9  # x + 0.1 stays in [-1, 1]
    assert torch.allclose(
        psnr(x + 0.1, x),
        torch.full((3,), 10 * torch.log10(torch.tensor(400.0)).item(), dtype=torch.float64),
    )
    assert highband_spectrum_distance(x, x) == 0.0
    white = torch.randn(64, 1, 8, 8, generator=_g(5)) * 0.5
    blur = upsample(downsample(white, 2), 8, "bilinear")
    assert highband_spectrum_distance(blur, white) > 3.0  # blur lacks the top octave
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 0.6
    assert torch.allclose(seam_jump(step, m), torch.tensor([0.6], dtype=torch.float64))
    with pytest.raises(ValueError, match="edge"):
        seam_jump(step, torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same image shape"):
        highband_spectrum_distance(x, _imgs(2, 4))


def test_psnr_refuses_images_outside_the_unit_range():
    # 8-bit pixels gave a negative PSNR without a word; the colour measures refuse them too
    x = _imgs(2)
    pixels = (x + 1) * 127.5
    with pytest.raises(ValueError, match=r"^x must lie in \[-1, 1\]"):
        psnr(pixels, pixels + 1)
    with pytest.raises(ValueError, match=r"^x_ref must lie in \[-1, 1\]"):
        psnr(x, pixels)


def test_highband_distance_of_constant_images_is_zero_or_refused():
    # zero power in every high ring: log10(0) gave NaN for two constant sets, inf against data
    flat, x = torch.zeros(3, 1, 8, 8), _imgs(3)
    assert highband_spectrum_distance(flat, flat + 0.5) == 0.0
    with pytest.raises(ValueError, match="^x has zero power at frequencies >= cutoff"):
        highband_spectrum_distance(flat, x)
    with pytest.raises(ValueError, match="^data has zero power"):
        highband_spectrum_distance(x, flat)


def test_residual_sr_is_an_eps_model_whose_x0_skips_to_the_condition():
    from minidiff import predict_x0_from_eps
    from minidiff.superres import Regressor, ResidualSR

    cfg = _unet(aug=True).config
    torch.manual_seed(0)
    model = ResidualSR(cfg, SCHED)
    cond, x, t = _imgs(seed=4), _imgs(seed=5), torch.tensor([1, 7, 30, 50])
    s = torch.full((4,), 3.0)
    x_t = q_sample(cond, t, SCHED, generator=_g(6))
    # conv_out starts at zero: x0 is the condition exactly, eps the noise that explains x_t
    ab = SCHED.alpha_bar.float()[t].view(-1, 1, 1, 1)
    expected = (x_t - ab.sqrt() * cond) / (1 - ab).sqrt()
    assert torch.allclose(model(x_t, t, x_cond=cond, aug_level=s), expected, atol=1e-5)
    # with a non-zero residual, the x0 its eps implies is the condition plus the residual
    torch.nn.init.normal_(model.net.conv_out.weight, std=0.1, generator=_g(7))
    eps = model(x, t, x_cond=cond, aug_level=s)
    resid = model.net(x, t, x_cond=cond, aug_level=s)
    assert resid.abs().max() > 0.01
    assert torch.allclose(predict_x0_from_eps(x, t, eps, SCHED), cond + resid, atol=1e-4)
    # it trains through the same loss and samples through condition_on like any eps-model
    image_conditional_loss(model, x, cond, SCHED, max_aug_level=5, generator=_g(8)).backward()
    assert model.net.conv_in.weight.grad is not None
    assert condition_on(model, cond, SCHED, aug_level=2, generator=_g(9))(x, t).shape == x.shape
    with pytest.raises(ValueError, match="cond_channels must be >= in_channels"):
        ResidualSR(UNetConfig(**{**cfg.__dict__, "in_channels": 2, "cond_channels": 1}), SCHED)
    assert torch.equal(
        Regressor(_unet(cond=0).config, residual=True)(cond), cond
    )  # zero residual at the start
