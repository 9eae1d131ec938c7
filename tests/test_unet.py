"""The U-Net: shapes, the DDPM CIFAR-10 parameter count, time conditioning, bad input."""

from __future__ import annotations

import pytest
import torch

from minidiff.nn.unet import (
    UNET_CONFIGS,
    AttentionBlock,
    Downsample,
    ResBlock,
    UNet,
    UNetConfig,
    Upsample,
    count_parameters,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_ddpm_cifar10_has_35_7_million_parameters() -> None:
    n = count_parameters(UNet("ddpm_cifar10"))
    assert abs(n - 35.7e6) / 35.7e6 < 0.01, n
    # The table of parts adds up to the whole.
    model = UNet("ddpm_cifar10")
    assert sum(v for _, v in model.parameter_table()) == n


def test_ddpm_cifar10_forward_shape_one_image() -> None:
    model = UNet("ddpm_cifar10").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([500]))
    assert out.shape == x.shape


@pytest.mark.parametrize("name", [n for n in UNET_CONFIGS if n != "ddpm_cifar10"])
@pytest.mark.parametrize("injection", ["add", "adagn"])
def test_small_configs_output_has_input_shape(name: str, injection: str) -> None:
    model = UNet(name, time_injection=injection)
    c = model.config
    x = torch.randn(3, c.in_channels, c.image_size, c.image_size)
    out = model(x, torch.tensor([1, 10, 999]))
    assert out.shape == x.shape
    # channels_last input gives the same numbers
    out_cl = model.to(memory_format=torch.channels_last)(
        x.contiguous(memory_format=torch.channels_last), torch.tensor([1, 10, 999])
    )
    torch.testing.assert_close(out_cl, out, atol=1e-5, rtol=1e-4)


def _perturbed(model: UNet) -> UNet:
    # zero-initialised output layers make an untrained U-Net predict 0 everywhere
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("injection", ["add", "adagn"])
def test_output_depends_on_time_and_on_every_pixel(injection: str) -> None:
    model = _perturbed(UNet("tiny", time_injection=injection)).eval()
    x = torch.randn(2, 1, 8, 8, requires_grad=True)
    a = model(x, torch.tensor([1, 1]))
    b = model(x, torch.tensor([900, 900]))
    assert (a - b).abs().max() > 1e-3
    # the output at the centre depends on the far corner (attention + down path)
    a[0, 0, 4, 4].backward()
    assert x.grad is not None and x.grad[0, 0, 0, 0].abs() > 0
    assert x.grad[1].abs().max() == 0  # and not on another image: GroupNorm, not BatchNorm


def test_untrained_output_is_zero_and_blocks_start_as_identity() -> None:
    model = UNet("tiny")
    assert model(torch.randn(2, 1, 8, 8), torch.tensor([3, 4])).abs().max() == 0
    block = ResBlock(16, 16, emb_dim=8, groups=4)
    x = torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(block(x, torch.randn(2, 8)), x)
    attn = AttentionBlock(16, groups=4)
    torch.testing.assert_close(attn(x), x)


def test_blocks_shapes() -> None:
    x = torch.randn(2, 8, 8, 8)
    assert ResBlock(8, 16, emb_dim=4, groups=4)(x, torch.randn(2, 4)).shape == (2, 16, 8, 8)
    assert Downsample(8)(x).shape == (2, 8, 4, 4)
    assert Upsample(8)(x).shape == (2, 8, 16, 16)


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = UNet("tiny")
    x = torch.randn(4, 1, 8, 8)
    t = torch.tensor([5, 50, 200, 700])
    target = torch.randn(4, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = (model(x, t) - target).square().mean()
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 3, 8, 8), "in_channels=1"),
        ((2, 1, 16, 16), "image_size=8"),
        ((2, 1, 8), "shape"),
    ],
)
def test_bad_input_names_the_problem(shape: tuple[int, ...], match: str) -> None:
    model = UNet("tiny")
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape), torch.tensor([1, 2]))


def test_bad_t_and_types() -> None:
    model = UNet("tiny")
    with pytest.raises(ValueError, match="t must have shape"):
        model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        model([[0.0]], torch.tensor([1]))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 30}, "divisible"),
        ({"attn_resolutions": (5,)}, "attn_resolutions"),
        ({"base_channels": 48}, "multiple of groups"),
        ({"channel_mult": ()}, "channel_mult"),
        ({"dropout": 1.0}, "dropout"),
        ({"time_injection": "concat"}, "time_injection"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_bad_config(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kwargs)  # type: ignore[arg-type]


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="one of"):
        UNet("cifar100")


def test_config_round_trip() -> None:
    cfg = UNET_CONFIGS["digits"]
    assert UNetConfig(**cfg.to_dict()) == cfg
