"""A time embedding of width 1 is the documented ``(B, 1)`` zero column.

``sinusoidal_embedding(t, 1)`` returned ``(B, 0)``: the odd dimension's zero column was cut from
the empty cos/sin block. Every network that accepts a width of 1 then failed on its first call
with a raw matrix-shape error (``TimeMLP(time_dim=1)``, ``TimeEmbedding(1)``, a U-Net with
``base_channels=1``).
"""

import torch

from minidiff.nn import TimeEmbedding, TimeMLP, UNet, UNetConfig, sinusoidal_embedding


def test_width_one_is_one_zero_column() -> None:
    for t in (torch.tensor([1, 7, 999]), torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)):
        emb = sinusoidal_embedding(t, 1)
        assert emb.shape == (3, 1) and emb.dtype == (
            t.dtype if t.is_floating_point() else torch.get_default_dtype()
        )
        assert torch.equal(emb, torch.zeros_like(emb))


def test_networks_built_with_width_one_run() -> None:
    t = torch.tensor([3, 5])
    assert TimeMLP(time_dim=1, hidden=8, n_layers=1)(torch.randn(2, 2), t).shape == (2, 2)
    assert TimeEmbedding(1)(t).shape == (2, 4)
    cfg = UNetConfig(
        image_size=8, in_channels=1, base_channels=1, channel_mult=(1,), attn_resolutions=(),
        groups=1, dropout=0.0,
    )  # fmt: skip
    assert UNet(cfg)(torch.randn(2, 1, 8, 8), t).shape == (2, 1, 8, 8)
