"""unet_from_diffusers keeps the source's dtype through the copy (no float32 detour).

A float64 ``UNet2DModel`` was copied into a float32 minidiff U-Net and converted to float64
afterwards: every weight came back rounded to float32 (relative error ~1e-8), and the float64
network disagreed with its source at 1e-7 instead of 1e-15.
"""

from __future__ import annotations

import pytest
import torch

from minidiff.interop import unet_from_diffusers

diffusers = pytest.importorskip("diffusers")

CONFIG = {
    "sample_size": 8, "in_channels": 3, "out_channels": 3, "block_out_channels": (16, 48),
    "layers_per_block": 1, "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 8, "norm_eps": 1e-6,
    "flip_sin_to_cos": False, "freq_shift": 1, "downsample_padding": 0,
    "attention_head_dim": None,
}  # fmt: skip


def test_a_float64_model_is_copied_in_float64() -> None:
    torch.manual_seed(0)
    source = diffusers.UNet2DModel(**CONFIG).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    unet = unet_from_diffusers(source).eval()
    assert unet.conv_in.weight.dtype == torch.float64
    assert torch.equal(unet.conv_in.weight, source.conv_in.weight)
    assert torch.equal(unet.time_embed.mlp[0].weight, source.time_embedding.linear_1.weight)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=g)
    t = torch.tensor([1, 731])
    with torch.no_grad():
        ours, theirs = unet(x, t), source(x, t - 1).sample
    assert ours.dtype == torch.float64
    assert float((ours - theirs).abs().max()) < 1e-12
