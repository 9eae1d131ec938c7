"""The KL autoencoder, the latent scale and the latent wrapper (encode -> diffuse -> decode)."""

from __future__ import annotations

import math

import pytest
import torch

from minidiff import ddim_sample, linear_schedule, simple_loss, train
from minidiff.latent import LatentSpace, latent_scale
from minidiff.nn import UNet
from minidiff.nn.autoencoder import AutoencoderKL, DiagonalGaussian, kl_autoencoder_loss


def _ae(**kw: object) -> AutoencoderKL:
    torch.manual_seed(0)
    args: dict[str, object] = {"channels": (8, 16), "groups": 4, "image_size": 8, **kw}
    return AutoencoderKL(**args)  # type: ignore[arg-type]


def _images(n: int = 6, s: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_shapes_and_the_downsampling_factor() -> None:
    ae = AutoencoderKL(channels=(8, 16, 16), groups=4, image_size=32, latent_channels=4)
    assert ae.factor == 4 and ae.latent_shape == (4, 8, 8)
    q = ae.encode(_images(2, 32))
    assert q.mean.shape == q.logvar.shape == (2, 4, 8, 8)
    assert ae.decode(q.sample()).shape == (2, 1, 32, 32)


def test_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    q = DiagonalGaussian(mean, logvar)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    )
    torch.testing.assert_close(q.kl(), ref.flatten(1).sum(1))
    # and the reparameterised samples have the posterior's moments
    big = DiagonalGaussian(torch.full((20000, 1), 1.5), torch.full((20000, 1), math.log(0.25)))
    z = big.sample(torch.Generator().manual_seed(1))
    assert abs(z.mean().item() - 1.5) < 0.02 and abs(z.std().item() - 0.5) < 0.02


def test_loss_is_reconstruction_plus_weighted_kl() -> None:
    ae, x = _ae(), _images()
    loss = kl_autoencoder_loss(ae, x, kl_weight=0.1, generator=torch.Generator().manual_seed(3))
    x_hat, q = ae(x, torch.Generator().manual_seed(3))
    expected = (((x - x_hat) ** 2).flatten(1).sum(1) + 0.1 * q.kl()).mean() / 64
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in ae.parameters())


def test_training_reduces_the_reconstruction_error() -> None:
    ae, x = _ae(), _images(32)
    before = ((ae.decode(ae.encode(x).mean) - x) ** 2).mean().item()
    res = train(
        ae,
        lambda m, b, g: kl_autoencoder_loss(m, b, kl_weight=1e-4, generator=g),
        x,
        steps=60,
        batch_size=16,
        lr=3e-3,
        progress=False,
    )
    model = res.model.eval()
    with torch.no_grad():
        after = ((model.decode(model.encode(x).mean) - x) ** 2).mean().item()
    assert after < 0.5 * before


def test_latent_scale_is_one_over_the_std() -> None:
    z = 3.0 * torch.randn(4000, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    s = latent_scale(z)
    assert abs(s - 1 / z.double().std().item()) < 1e-12
    assert abs((s * z).std().item() - 1.0) < 1e-6
    with pytest.raises(ValueError, match="constant"):
        latent_scale(torch.ones(4, 4))
    with pytest.raises(ValueError, match="non-finite"):
        latent_scale(torch.tensor([[1.0, float("nan")]]))


def test_space_scales_on_the_way_in_and_unscales_on_the_way_out() -> None:
    ae = _ae()
    x = _images(40)
    space = LatentSpace.fit(ae, x, generator=torch.Generator().manual_seed(0))
    z0 = space.encode(x, generator=torch.Generator().manual_seed(0))
    assert abs(z0.std().item() - 1.0) < 1e-5  # the same draw as fit: unit std
    mean_latent = space.encode(x, sample=False)
    with torch.no_grad():
        torch.testing.assert_close(mean_latent, space.scale * ae.encode(x).mean)
        torch.testing.assert_close(space.decode(mean_latent), ae.decode(ae.encode(x).mean))


def test_batches_feed_the_training_loop_and_sample_decodes() -> None:
    ae = _ae(latent_channels=2)
    x, y = _images(20), torch.arange(20) % 3
    space = LatentSpace.fit(ae, x)
    draw = space.batches(x, y)
    z0, yy = draw(5, torch.Generator().manual_seed(0))
    assert z0.shape == (5, 2, 4, 4) and yy.shape == (5,)
    sched = linear_schedule(50)
    unet = UNet("tiny", image_size=4, in_channels=2, channel_mult=(1,), attn_resolutions=())
    res = train(
        unet,
        lambda m, b, g: simple_loss(m, b, sched, generator=g),
        space.batches(x),
        steps=3,
        batch_size=8,
        progress=False,
    )
    with torch.no_grad():
        imgs = space.sample(ddim_sample, res.ema.model, sched, 3, steps=5)
    assert imgs.shape == (3, 1, 8, 8)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda ae: ae.encode(torch.zeros(2, 3, 8, 8)), ValueError, "(B, 1, 8, 8)"),
        (lambda ae: ae.encode(torch.zeros(2, 1, 16, 16)), ValueError, "(B, 1, 8, 8)"),
        (
            lambda ae: ae.decode(torch.zeros(2, 4, 8, 8)),
            ValueError,
            "z must have shape (B, 4, 4, 4)",
        ),
        (lambda ae: ae.decode(torch.zeros(2, 3, 4, 4)), ValueError, "(B, 4, 4, 4)"),
        (lambda ae: ae.encode(torch.zeros(2, 1, 8, 8, dtype=torch.long)), TypeError, "floating"),
        (lambda ae: LatentSpace(ae, 0.0), ValueError, "scale"),
        (lambda ae: LatentSpace(ae, 1.0).decode(torch.zeros(2, 4, 8, 8)), ValueError, "z0"),
        (lambda ae: kl_autoencoder_loss(ae, _images(), kl_weight=-1.0), ValueError, "kl_weight"),
        (lambda ae: LatentSpace(torch.nn.Linear(2, 2), 1.0), TypeError, "AutoencoderKL"),  # type: ignore[arg-type]
        (
            lambda ae: LatentSpace(ae, 1.0).encode([1, 2]),
            TypeError,
            "images must be a torch.Tensor",
        ),  # type: ignore[arg-type]
        (
            lambda ae: LatentSpace(ae, 1.0).encode(torch.zeros(2, 3, 8, 8)),
            ValueError,
            "images must have shape (B, 1, 8, 8)",
        ),
        (
            lambda ae: LatentSpace(ae, 1.0).encode(_images(), sample=1),
            TypeError,
            "sample must be True or False",
        ),  # type: ignore[arg-type]
        (
            lambda ae: LatentSpace(ae, 1.0).encode(_images(), generator=0),
            TypeError,
            "generator must be a torch.Generator",
        ),  # type: ignore[arg-type]
        (lambda ae: ae(_images(), generator=0), TypeError, "generator must be a torch.Generator"),  # type: ignore[arg-type]
        (lambda ae: LatentSpace(ae, 1.0).encode(_images(), batch_size=0), ValueError, "batch_size"),
        (
            lambda ae: LatentSpace(ae, 1.0).encode(_images(), batch_size="2"),
            TypeError,
            "batch_size",
        ),  # type: ignore[arg-type]
        (
            lambda ae: LatentSpace(ae, 1.0).batches(_images(), [0] * 6),
            TypeError,
            "labels must be a tensor with one row per image (6), got list",
        ),  # type: ignore[arg-type]
        (
            lambda ae: LatentSpace(ae, 1.0).batches(_images(), torch.zeros(5, dtype=torch.long)),
            ValueError,
            "labels must have one row per image (6), got shape (5,)",
        ),
    ],
)
def test_bad_latent_inputs_are_named(call: object, error: type, words: str) -> None:
    with pytest.raises(error) as info:
        call(_ae())  # type: ignore[operator]
    assert words in str(info.value)


def test_batches_checks_the_labels_before_encoding_any_image() -> None:
    space = LatentSpace(_ae(), 1.0)
    encoded = []
    encode = space.autoencoder.encode
    space.autoencoder.encode = lambda x: encoded.append(1) or encode(x)  # type: ignore[method-assign]
    for labels in ([0] * 6, torch.zeros(7, dtype=torch.long)):
        with pytest.raises((TypeError, ValueError), match="^labels must"):
            space.batches(_images(), labels)  # type: ignore[arg-type]
    assert not encoded
    space.batches(_images(), torch.zeros(6, dtype=torch.long))
    assert encoded  # the same call with good labels encodes


def test_bad_autoencoder_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        AutoencoderKL(channels=(8, 16, 16), groups=4, image_size=10)
    with pytest.raises(ValueError, match="groups"):
        AutoencoderKL(channels=(6, 16), groups=4)


def test_the_autoencoder_names_bad_input_and_the_space_leaves_it_trainable() -> None:
    ae = AutoencoderKL(in_channels=1, image_size=8, channels=(8, 8), groups=4)
    with pytest.raises(TypeError, match="in_channels must be an int"):
        AutoencoderKL(in_channels=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="channels must be a tuple of ints"):
        AutoencoderKL(channels=32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x contains non-finite"):
        ae.encode(torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="x has dtype torch.float64"):
        ae.encode(torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    ae.train()
    LatentSpace.fit(ae, torch.rand(16, 1, 8, 8) * 2 - 1)
    assert ae.training and all(p.requires_grad for p in ae.parameters())
    kl_autoencoder_loss(ae, torch.rand(4, 1, 8, 8) * 2 - 1).backward()


def test_encode_takes_a_batch_size_like_posterior_and_decode() -> None:
    space = LatentSpace(_ae(), 0.5)
    x = _images(5)
    # the same latents, up to the rounding of another batching of the convolutions
    torch.testing.assert_close(
        space.encode(x, sample=False, batch_size=2), space.encode(x, sample=False)
    )
    a = space.encode(x, batch_size=2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, space.encode(x, generator=torch.Generator().manual_seed(3)))


def test_a_float64_autoencoder_samples_in_float64() -> None:
    """The sampler draws in the autoencoder's dtype (it drew float32 latents and decode then
    refused a z0 the caller never passed); a dtype of another kind is refused before sampling."""
    ae = _ae(latent_channels=2).double()
    space = LatentSpace.fit(ae, _images().double(), generator=torch.Generator().manual_seed(0))
    sched = linear_schedule(20)
    calls: list[int] = []

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return 0.1 * x

    imgs = space.sample(ddim_sample, eps, sched, 2, steps=5, generator=torch.Generator())
    z0 = ddim_sample(
        eps, sched, (2, 2, 4, 4), steps=5, generator=torch.Generator(), dtype=torch.float64
    )
    assert imgs.dtype == torch.float64 and torch.equal(imgs, space.decode(z0))
    calls.clear()
    with pytest.raises(TypeError, match="^dtype is torch.float32 .* weights are torch.float64"):
        space.sample(ddim_sample, eps, sched, 2, steps=5, dtype=torch.float32)
    assert not calls
