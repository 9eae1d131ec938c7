"""The U-Net: shapes, the DDPM CIFAR-10 parameter count, time conditioning, bad input."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch

from minidiff.nn.attention import CrossAttentionBlock
from minidiff.nn.unet import (
    UNET_CONFIGS,
    AttentionBlock,
    Downsample,
    ResBlock,
    TimeEmbedding,
    UNet,
    UNetConfig,
    Upsample,
    count_parameters,
    ddpm_time_features,
    parameter_count,
)


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


@pytest.mark.parametrize("name", [n for n in UNET_CONFIGS if not n.startswith("ddpm_cifar10")])
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


# ------------------------------------------------------------------------ conventions and bad input


def test_asymmetric_downsampling_pads_after_the_last_row_and_column() -> None:
    # A single bright pixel at (0, 0): with "same" (asymmetric) padding the first output's 3x3
    # window starts at (0, 0), so the pixel meets the kernel's centre-minus-one tap [0, 0]; with
    # symmetric padding the window starts at (-1, -1) and the pixel meets tap [1, 1].
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0
    for padding, tap in (("asymmetric", (0, 0)), ("symmetric", (1, 1))):
        down = Downsample(1, padding)
        with torch.no_grad():
            down.conv.bias.zero_()
            down.conv.weight.copy_(torch.arange(9.0).reshape(1, 1, 3, 3))
            out = down(x)
        assert out.shape == (1, 1, 2, 2)
        assert out[0, 0, 0, 0].item() == 3 * tap[0] + tap[1], padding


def test_ddpm_time_features_follow_the_ddpm_code() -> None:
    # DDPM's get_timestep_embedding: emb = log(10000) / (half - 1); exp(-emb * k); t counted from 0
    t, dim = torch.tensor([1, 2, 1000]), 8
    half = dim // 2
    rows = []
    for step in (t - 1).tolist():
        w = [math.exp(-math.log(10000) / (half - 1) * k) for k in range(half)]
        rows.append([math.sin(step * f) for f in w] + [math.cos(step * f) for f in w])
    torch.testing.assert_close(ddpm_time_features(t, dim), torch.tensor(rows), atol=2e-4, rtol=0)
    assert ddpm_time_features(t, 9).shape == (3, 9)


# UNetConfig: 16 bad values, each named, with TypeError for a wrong type and ValueError for a
# wrong value; lists are accepted as tuples.
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"channel_mult": 2}, TypeError, "channel_mult must be a tuple of ints"),
        ({"channel_mult": "122"}, TypeError, "channel_mult must be a tuple of ints"),
        ({"channel_mult": (1, 2.0)}, TypeError, "channel_mult must hold ints"),
        ({"channel_mult": (1, 0)}, ValueError, "channel_mult must hold ints >= 1"),
        ({"attn_resolutions": 16}, TypeError, "attn_resolutions must be a tuple"),
        ({"image_size": "32"}, TypeError, "image_size"),
        ({"image_size": 32.0}, TypeError, "image_size"),
        ({"groups": True}, TypeError, "groups"),
        ({"dropout": "0.1"}, TypeError, "dropout"),
        ({"dropout": float("nan")}, ValueError, "dropout"),
        ({"norm_eps": 0.0}, ValueError, "norm_eps"),
        ({"norm_eps": "1e-6"}, TypeError, "norm_eps"),
        ({"downsample_padding": "same"}, ValueError, "downsample_padding"),
        ({"time_features": "sin"}, ValueError, "time_features"),
        ({"time_features": "ddpm", "base_channels": 2, "groups": 1}, ValueError, "base_channels"),
        ({"time_injection": None}, TypeError, "time_injection"),
    ],
)
def test_bad_config_types_and_values(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        UNetConfig(**kwargs)  # type: ignore[arg-type]


def test_lists_are_accepted_as_tuples() -> None:
    cfg = UNetConfig(channel_mult=[1, 2], attn_resolutions=[16], image_size=32)  # type: ignore[arg-type]
    assert cfg.channel_mult == (1, 2) and cfg.attn_resolutions == (16,)
    assert UNetConfig(**cfg.to_dict()) == cfg


@pytest.mark.parametrize("name", sorted(UNET_CONFIGS))
@pytest.mark.parametrize("injection", ["add", "adagn"])
def test_the_closed_form_parameter_count_is_exact(name: str, injection: str) -> None:
    cfg = dataclasses.replace(UNET_CONFIGS[name], time_injection=injection)
    with torch.device("meta"):  # counts without allocating
        assert parameter_count(cfg) == count_parameters(UNet(cfg))
    odd = UNetConfig(
        image_size=16, in_channels=2, base_channels=8, channel_mult=(3, 1, 2), num_res_blocks=3,
        attn_resolutions=(16, 4), groups=4, time_injection=injection,
    )  # fmt: skip
    with torch.device("meta"):
        assert parameter_count(odd) == count_parameters(UNet(odd))


def test_absurd_sizes_are_refused_before_any_allocation() -> None:
    # 3 sizes of terabytes of weights: refused in well under a second, naming the fields.
    for kwargs in (
        {"base_channels": 40_000, "groups": 8},
        {"channel_mult": (1, 2, 2000)},
        {"num_res_blocks": 10**9},
    ):
        c0 = time.process_time()
        with pytest.raises(ValueError, match="base_channels=.*parameters.*limit"):
            UNet("digits", **kwargs)
        assert time.process_time() - c0 < 0.5


def test_unknown_override_and_config_type() -> None:
    with pytest.raises(TypeError, match=r"unknown UNetConfig field\(s\) \['dropuot'\]"):
        UNet("tiny", dropuot=0.1)
    with pytest.raises(TypeError, match="config must be a UNetConfig or a str"):
        UNet(3)  # type: ignore[arg-type]


# The public blocks: each bad constructor argument named, TypeError for a wrong type, ValueError
# for a wrong value (the specs of the UNetConfig fields of the same meaning).
def _res(**kw: object) -> ResBlock:
    return ResBlock(**{"in_channels": 16, "out_channels": 32, "emb_dim": 8, "groups": 4, **kw})  # type: ignore[arg-type]


def _attn(**kw: object) -> AttentionBlock:
    return AttentionBlock(**{"channels": 16, "groups": 4, **kw})  # type: ignore[arg-type]


def _cross(**kw: object) -> CrossAttentionBlock:
    return CrossAttentionBlock(**{"channels": 16, "context_dim": 8, "groups": 4, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "arg", "value", "error", "match"),
    [
        (_res, "groups", 0, ValueError, "groups must be >= 1"),
        (_res, "groups", -1, ValueError, "groups must be >= 1"),
        (_res, "groups", None, TypeError, "groups must be an int"),
        (_res, "groups", 2.0, TypeError, "groups must be an int"),
        (_res, "groups", 3, ValueError, r"groups must divide .*in_channels=16, out_channels=32"),
        (_res, "groups", 32, ValueError, r"groups must divide .*in_channels=16"),
        (_res, "in_channels", 2.5, TypeError, "in_channels must be an int"),
        (_res, "out_channels", 0, ValueError, "out_channels must be >= 1"),
        (_res, "emb_dim", "8", TypeError, "emb_dim must be an int"),
        (_res, "dropout", float("nan"), ValueError, "dropout"),
        (_res, "dropout", 1.0, ValueError, "dropout"),
        (_res, "dropout", -0.1, ValueError, "dropout"),
        (_res, "dropout", "0.1", TypeError, "dropout"),
        (_res, "eps", "1e-6", TypeError, "eps must be a real number"),
        (_res, "eps", 0.0, ValueError, "eps must lie in"),
        (_res, "time_injection", "concat", ValueError, "time_injection"),
        (_attn, "groups", 0, ValueError, "groups must be >= 1"),
        (_attn, "groups", -1, ValueError, "groups must be >= 1"),
        (_attn, "groups", 5, ValueError, r"groups must divide .*channels=16"),
        (_attn, "channels", 16.0, TypeError, "channels must be an int"),
        (_attn, "eps", float("inf"), ValueError, "eps"),
        (_cross, "groups", 0, ValueError, "groups must be >= 1"),
        (_cross, "groups", 5, ValueError, r"groups must divide .*channels=16"),
        (_cross, "groups", "4", TypeError, "groups must be an int"),
        (_cross, "eps", 0.0, ValueError, "eps must lie in"),
        (Downsample, "channels", 2.5, TypeError, "channels must be an int"),
        (Downsample, "channels", 0, ValueError, "channels must be >= 1"),
        (Downsample, "padding", "same", ValueError, "padding"),
        (Upsample, "channels", -1, ValueError, "channels must be >= 1"),
        (Upsample, "channels", "8", TypeError, "channels must be an int"),
        (TimeEmbedding, "base_channels", "64", TypeError, "base_channels must be an int"),
        (TimeEmbedding, "base_channels", 0, ValueError, "base_channels must be >= 1"),
        (TimeEmbedding, "features", "sin", ValueError, "features"),
    ],
)
def test_bad_block_arguments_are_named(
    build: object, arg: str, value: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        build(**{arg: value})  # type: ignore[operator]


def test_block_groups_default_is_checked_against_the_channels() -> None:
    # groups left at its default 32 must divide the channel counts too
    with pytest.raises(ValueError, match=r"groups must divide .*channels=16.*groups=32"):
        AttentionBlock(16)
    with pytest.raises(ValueError, match=r"groups must divide .*in_channels=16.*groups=32"):
        ResBlock(16, 64, 8)
    assert AttentionBlock(64).norm.num_groups == 32


def test_ddpm_time_embedding_needs_four_channels() -> None:
    # half - 1 = 0 would make every frequency NaN (0 / 0): refused instead of a NaN embedding
    with pytest.raises(ValueError, match='base_channels must be >= 4 with features="ddpm"'):
        TimeEmbedding(2, "ddpm")
    emb = TimeEmbedding(4, "ddpm")(torch.tensor([1, 500]))
    assert emb.shape == (2, 16) and bool(torch.isfinite(emb).all())


# forward: 8 bad inputs, each named before any work is done.
@pytest.mark.parametrize(
    ("x", "t", "error", "match"),
    [
        (
            torch.full((2, 1, 8, 8), float("nan")),
            torch.tensor([1, 2]),
            ValueError,
            "x contains non-finite",
        ),
        (
            torch.full((2, 1, 8, 8), float("inf")),
            torch.tensor([1, 2]),
            ValueError,
            "x contains non-finite",
        ),
        (
            torch.zeros(2, 1, 8, 8, dtype=torch.float64),
            torch.tensor([1, 2]),
            TypeError,
            "x has dtype torch.float64",
        ),
        (
            torch.zeros(2, 1, 8, 8, dtype=torch.bfloat16),
            torch.tensor([1, 2]),
            TypeError,
            "x has dtype torch.bfloat16",
        ),
        (
            torch.zeros(2, 1, 8, 8),
            torch.tensor([True, False]),
            TypeError,
            "t must be an integer or floating",
        ),
        (
            torch.zeros(2, 1, 8, 8),
            torch.tensor([1.0, float("nan")]),
            ValueError,
            "t (must be finite|contains non-finite)",
        ),
        (torch.zeros(2, 1, 8, 8), [1, 2], TypeError, "t must be a torch.Tensor"),
        (torch.zeros(2, 1, 8, 8), torch.tensor([[1, 2]]), ValueError, "t must have shape"),
    ],
)
def test_bad_forward_inputs(x: torch.Tensor, t: object, error: type, match: str) -> None:
    for features in ("minidiff", "ddpm"):
        model = UNet("tiny", time_features=features)
        with pytest.raises(error, match=match):
            model(x, t)  # type: ignore[arg-type]


def test_other_dtypes_work_when_model_and_input_agree() -> None:
    model = UNet("tiny").double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    assert model(x, torch.tensor([1, 2])).dtype == torch.float64
    model = UNet("tiny")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes on purpose
        out = model(x.float().bfloat16(), torch.tensor([1, 2]))
    assert out.shape == (2, 1, 8, 8)


def test_float64_input_under_autocast_is_named_for_every_network() -> None:
    """Autocast casts half and single precision inputs itself but leaves float64 alone, which the
    layers then refuse with a raw error: the U-Net, the autoencoder and cross-attention name the
    input first, with one message, and let a float32 input through."""
    from minidiff.nn.attention import CrossAttention
    from minidiff.nn.autoencoder import AutoencoderKL

    unet = UNet("tiny")
    size = unet.config.image_size
    ae = AutoencoderKL(in_channels=1, channels=(8, 8), groups=4, image_size=8)
    attn = CrossAttention(8, 6, heads=2)
    calls = {
        "U-Net": (
            lambda x: unet(x, torch.tensor([1, 2])),
            (2, unet.config.in_channels, size, size),
        ),
        "autoencoder": (lambda x: ae.encode(x), (2, 1, 8, 8)),
        "CrossAttention": (lambda x: attn(x, torch.randn(2, 3, 6)), (2, 5, 8)),
    }
    with torch.autocast("cpu", torch.bfloat16):
        for owner, (call, shape) in calls.items():
            with pytest.raises(TypeError, match=f"x has dtype torch.float64 but this {owner}'s"):
                call(torch.rand(shape, dtype=torch.float64) * 2 - 1)
            call(torch.rand(shape) * 2 - 1)  # float32: autocast's own business
