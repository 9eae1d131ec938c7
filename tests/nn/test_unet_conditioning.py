"""The U-Net's conditioning interface: labels, context tokens, concatenated channels, a scalar.

Every kind is off by default, and switching one on leaves the unconditional network alone: the
same parameter names, the same initial weights, and (with the new parts at their zero init) the
same outputs, bitwise.
"""

from __future__ import annotations

import pytest
import torch

from minidiff import classifier_free_guidance, linear_schedule
from minidiff.losses import conditional_eps_loss
from minidiff.nn import UNet, UNetConfig, count_parameters
from minidiff.nn.unet import parameter_count


def _x(b: int = 3, c: int = 1, s: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, s, s, generator=torch.Generator().manual_seed(seed))


T3 = torch.tensor([1, 40, 900])


def _perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_unconditional_unet_has_no_conditioning_parts() -> None:
    model = UNet("tiny")
    names = list(model.state_dict())
    assert not [n for n in names if "cross" in n or "label" in n or "aug" in n]
    assert model.conv_in.weight.shape == (16, 1, 3, 3)
    assert not model.config.conditional and model.num_classes == 0
    # the config's plain form has no conditioning keys, so run logs and checkpoints keep theirs
    conditioning = {"num_classes", "context_dim", "heads", "cond_channels", "aug_embedding"}
    assert not conditioning & set(model.config.to_dict())


@pytest.mark.parametrize(
    ("overrides", "new_part"),
    [({"num_classes": 10}, "label_embed"), ({"aug_embedding": True}, "aug_embed")],
)
def test_labels_and_scalar_share_the_unconditional_weights_and_outputs(
    overrides: dict[str, object], new_part: str
) -> None:
    torch.manual_seed(0)
    plain = _perturb(UNet("tiny"))
    torch.manual_seed(0)
    cond = UNet("tiny", **overrides)
    # same initial weights for every shared parameter (the new part is built last)
    torch.manual_seed(0)
    plain_init = UNet("tiny").state_dict()
    for name, value in cond.state_dict().items():
        if not name.startswith(new_part):
            assert torch.equal(value, plain_init[name]), name
    cond.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():  # the new part adds exactly 0 to the time embedding
        for p in getattr(cond, new_part).parameters():
            p.zero_()
        x = _x()
        extra = (
            {"y": torch.tensor([0, 3, 10])}
            if new_part == "label_embed"
            else {"aug_level": torch.tensor([0, 5, 90])}
        )
        assert torch.equal(cond(x, T3, **extra), plain(x, T3))


def test_cross_attention_starts_as_the_identity() -> None:
    torch.manual_seed(0)
    plain = _perturb(UNet("tiny"))
    cond = UNet("tiny", context_dim=12, heads=2)
    missing, unexpected = cond.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("cross" in n for n in missing)
    x = _x()
    with torch.no_grad():
        assert torch.equal(cond(x, T3, context=torch.randn(3, 5, 12)), plain(x, T3))


def test_labels_change_the_output_and_none_is_the_null_label() -> None:
    model = _perturb(UNet("tiny", num_classes=4)).eval()
    x = _x()
    with torch.no_grad():
        a = model(x, T3, torch.tensor([0, 0, 0]))
        b = model(x, T3, torch.tensor([1, 1, 1]))
        assert (a - b).abs().max() > 1e-3
        assert torch.equal(model(x, T3), model(x, T3, torch.full((3,), model.null_label)))
        assert torch.equal(model(x, T3, 2), model(x, T3, torch.tensor([2, 2, 2])))


def test_classifier_free_guidance_and_the_conditional_loss_take_the_unet() -> None:
    model = _perturb(UNet("tiny", num_classes=3))
    sched = linear_schedule(1000)
    x0, y = _x(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss = conditional_eps_loss(model, x0, y, sched, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert model.label_embed.weight.grad is not None
    assert model.label_embed.weight.grad.abs().sum() > 0
    with torch.no_grad():
        eps = classifier_free_guidance(model, 1, 3.0, num_classes=3)(x0, torch.full((8,), 500))
        cond, uncond = model(x0, torch.full((8,), 500), 1), model(x0, torch.full((8,), 500))
    torch.testing.assert_close(eps, 4.0 * cond - 3.0 * uncond)


def _context_model() -> UNet:
    return _perturb(UNet("tiny", context_dim=12, heads=2)).eval()


def test_context_tokens_change_the_output_but_not_their_order() -> None:
    model = _context_model()
    x, ctx = _x(), torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = model(x, T3, context=ctx)
        b = model(x, T3, context=ctx + 0.5)
        # attention treats the tokens as a set: order must come from the token embeddings
        c = model(x, T3, context=ctx[:, [4, 2, 0, 1, 3]])
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_a_masked_token_is_ignored_and_different_lengths_work() -> None:
    model = _context_model()
    x, ctx = _x(), torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[True] * 4 + [False]] * 3)
    other = ctx.clone()
    other[:, 4] = 100.0
    with torch.no_grad():
        a = model(x, T3, context=ctx, context_mask=mask)
        b = model(x, T3, context=other, context_mask=mask)
        c = model(x, T3, context=ctx[:, :4])
        assert model(x, T3, context=ctx[:, :1]).shape == x.shape
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_concatenated_channels_and_the_scalar_change_the_output() -> None:
    model = _perturb(UNet("tiny", cond_channels=2, aug_embedding=True)).eval()
    assert model.conv_in.weight.shape == (16, 3, 3, 3)
    x, xc = _x(), _x(3, 2, seed=1)
    lvl = torch.tensor([0.0, 10.0, 200.0])
    with torch.no_grad():
        out = model(x, T3, x_cond=xc, aug_level=lvl)
        assert out.shape == x.shape
        assert (out - model(x, T3, x_cond=xc + 1, aug_level=lvl)).abs().max() > 1e-3
        assert (out - model(x, T3, x_cond=xc, aug_level=lvl + 300)).abs().max() > 1e-3


def test_all_four_kinds_together_and_the_parameter_table() -> None:
    model = UNet(
        "tiny", num_classes=10, context_dim=12, heads=4, cond_channels=2, aug_embedding=True
    )
    table = dict(model.parameter_table())
    assert sum(table.values()) == count_parameters(model)
    assert table["label_embed"] == 11 * 64 and "aug_embed" in table
    out = model(_x(), T3, torch.tensor([1, 2, 10]), context=torch.randn(3, 7, 12),
                x_cond=_x(3, 2), aug_level=torch.tensor([1, 2, 3]))  # fmt: skip
    assert out.shape == (3, 1, 8, 8)
    cfg = model.config
    assert UNetConfig(**cfg.to_dict()) == cfg and cfg.conditional


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"context": torch.randn(3, 5, 11)}, ValueError, "context_dim=12"),
        ({"context": torch.randn(3, 5)}, ValueError, "(B, L, 12)"),
        ({"context": torch.randn(2, 5, 12)}, ValueError, "(3, L, 12)"),
        ({"context": torch.randint(0, 5, (3, 5, 12))}, TypeError, "token embeddings"),
        ({"context": None}, ValueError, "context is required"),
        ({"context": torch.randn(3, 5, 12), "context_mask": torch.ones(3, 5)}, TypeError, "bool"),
        ({"context": torch.randn(3, 5, 12), "context_mask": torch.ones(3, 4, dtype=torch.bool)},
         ValueError, "(B, L) = (3, 5)"),
        ({"context": torch.randn(3, 5, 12), "context_mask": torch.zeros(3, 5, dtype=torch.bool)},
         ValueError, "at least one token"),
        ({"context": torch.randn(3, 5, 12), "y": torch.tensor([0, 1, 11])}, ValueError, "y"),
        ({"context": torch.randn(3, 5, 12), "y": torch.tensor([0.0, 1.0, 2.0])}, TypeError, "y"),
    ],
)  # fmt: skip
def test_bad_conditions_are_named(kwargs: dict[str, object], error: type, words: str) -> None:
    model = UNet("tiny", num_classes=10, context_dim=12)
    with pytest.raises(error, match=None) as info:
        model(_x(), T3, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("build", "kwargs", "error", "words"),
    [
        ({}, {"y": torch.tensor([0, 1, 2])}, ValueError, "num_classes=0"),
        ({}, {"context": torch.randn(3, 5, 12)}, ValueError, "context_dim=0"),
        ({}, {"x_cond": _x(3, 2)}, ValueError, "cond_channels=0"),
        ({}, {"aug_level": torch.ones(3)}, ValueError, "aug_embedding=False"),
        ({"cond_channels": 2}, {}, TypeError, "x_cond must be a floating tensor (3, 2, 8, 8)"),
        ({"cond_channels": 2}, {"x_cond": _x(3, 3)}, ValueError, "cond_channels=2"),
        ({"cond_channels": 2}, {"x_cond": _x(3, 2, s=4)}, ValueError, "(3, 2, 8, 8)"),
        ({"aug_embedding": True}, {}, TypeError, "aug_level"),
        ({"aug_embedding": True}, {"aug_level": torch.ones(2)}, ValueError, "(B,) = (3,)"),
    ],
)
def test_conditions_the_unet_was_not_built_for(
    build: dict[str, object], kwargs: dict[str, object], error: type, words: str
) -> None:
    with pytest.raises(error) as info:
        UNet("tiny", **build)(_x(), T3, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_classes", 1), ("num_classes", -1), ("context_dim", 2.5), ("heads", 0),
     ("cond_channels", True), ("aug_embedding", 1)],
)  # fmt: skip
def test_bad_conditioning_config_is_named(field: str, value: object) -> None:
    with pytest.raises((TypeError, ValueError), match=field):
        UNetConfig(**{field: value})  # type: ignore[arg-type]


def test_heads_must_divide_every_cross_attention_width_before_any_layer_is_built() -> None:
    # base 48 at image 16: levels 48 (16 px) and 96 (8 px, attended, and the middle); 48 % 5 != 0
    kw = {"image_size": 16, "base_channels": 48, "groups": 8, "channel_mult": (1, 2)}
    with pytest.raises(ValueError, match=r"heads \(5\) must divide .* \[96\].* got \[96\]"):
        UNetConfig(**kw, attn_resolutions=(8,), context_dim=8, heads=5)
    with pytest.raises(ValueError, match=r"heads \(5\) .* \[48, 96\].* got \[48, 96\]"):
        UNetConfig(**kw, attn_resolutions=(16,), context_dim=8, heads=5)
    assert UNetConfig(**kw, attn_resolutions=(16,), context_dim=8, heads=3).heads == 3
    assert UNetConfig(**kw, attn_resolutions=(16,), heads=5).heads == 5  # no tokens, no attention


def test_null_label_needs_labels() -> None:
    with pytest.raises(ValueError, match="num_classes=0"):
        _ = UNet("tiny").null_label


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_classes": 10},
        {"context_dim": 12, "heads": 2},
        {"cond_channels": 3},
        {"aug_embedding": True},
        {"num_classes": 5, "context_dim": 7, "cond_channels": 1, "aug_embedding": True},
    ],
)
@pytest.mark.parametrize("preset", ["tiny", "digits"])
def test_closed_form_parameter_count_includes_the_conditioning(
    preset: str, overrides: dict[str, object]
) -> None:
    model = UNet(preset, **overrides)
    assert parameter_count(model.config) == count_parameters(model)


def test_conditions_are_checked_like_x_finite_in_its_dtype_aug_level_by_name() -> None:
    from minidiff.nn.unet import UNet as _UNet

    x, t, nan = torch.randn(2, 1, 8, 8), torch.tensor([3, 4]), float("nan")
    with pytest.raises(ValueError, match="context contains non-finite"):
        _UNet("tiny", context_dim=8)(x, t, context=torch.full((2, 3, 8), nan))
    with pytest.raises(ValueError, match="x_cond contains non-finite"):
        _UNet("tiny", cond_channels=2)(x, t, x_cond=torch.full((2, 2, 8, 8), nan))
    with pytest.raises(TypeError, match="context has dtype torch.float64 but x has torch.float32"):
        _UNet("tiny", context_dim=8)(x, t, context=torch.randn(2, 3, 8, dtype=torch.float64))
    aug = _UNet("tiny", aug_embedding=True)
    with pytest.raises(ValueError, match="aug_level contains non-finite"):
        aug(x, t, aug_level=torch.tensor([nan, 5.0]))
    with pytest.raises(TypeError, match="aug_level must be an integer or floating tensor"):
        aug(x, t, aug_level=torch.tensor([True, False]))
    torch.testing.assert_close(aug(x, t, aug_level=3), aug(x, t, aug_level=torch.tensor([3, 3])))
