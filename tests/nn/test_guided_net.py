"""GuidedTimeMLP: a network conditioned on the class and on the guidance weight (Meng et al.)."""

from __future__ import annotations

import pytest
import torch

from minidiff.nn.guided import GuidedTimeMLP


def test_output_depends_on_w_and_y_and_accepts_a_float_w() -> None:
    torch.manual_seed(0)
    net = GuidedTimeMLP(3, hidden=16, n_layers=1)
    for w in (net.output.weight, net.film.weight):  # both start at zero
        torch.nn.init.normal_(w, std=1.0)
    x, t = torch.randn(4, 2), torch.tensor([1, 5, 9, 50])
    y = torch.tensor([0, 1, 2, 3])  # 3 is the null label
    a = net(x, t, y, torch.zeros(4))
    assert a.shape == (4, 2)
    assert not torch.allclose(a, net(x, t, y, torch.full((4,), 2.0)))
    assert not torch.allclose(a, net(x, t, torch.zeros(4, dtype=torch.long), torch.zeros(4)))
    torch.testing.assert_close(net(x, t, y, 2.0), net(x, t, y, torch.full((4,), 2.0)))
    torch.testing.assert_close(net(x, t, y), a)  # w defaults to 0


def test_bad_inputs() -> None:
    net = GuidedTimeMLP(3, hidden=8, n_layers=1)
    x, t = torch.randn(2, 2), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="w must"):
        net(x, t, torch.tensor([0, 1]), torch.zeros(3))
    with pytest.raises(ValueError, match="y"):
        net(x, t, torch.tensor([0, 7]), torch.zeros(2))
    with pytest.raises(ValueError, match="w_frequencies"):
        GuidedTimeMLP(3, w_frequencies=0)
