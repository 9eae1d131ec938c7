"""ConditionalTimeMLP in eval mode sees the times it is given, fractional ones included.

In eval mode (or without gradients) the network computes one conditioning vector per distinct
``(t, y)`` pair; that bookkeeping must not change the result. It once keyed the pairs by
``t.long()``, so a fractional ``t`` (continuous time with ``time_scale=1000``, a float step)
was truncated to an integer in eval mode only: sampling then ran the network at ``t = 0``.
"""

import pytest
import torch

from minidiff.nn import ConditionalTimeMLP


def _net(**kwargs: object) -> ConditionalTimeMLP:
    torch.manual_seed(0)
    net = ConditionalTimeMLP(num_classes=3, hidden=32, n_layers=2, **kwargs)
    with torch.no_grad():  # the FiLM layer starts at zero: give the time a visible effect
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.mark.parametrize(
    "time_scale, t",
    [
        (1000.0, torch.tensor([0.05, 0.35, 0.35, 0.9, 0.9, 0.999])),  # continuous time
        (1.0, torch.tensor([1.5, 2.25, 2.25, 7.0, 7.0, 10.75])),  # fractional steps
    ],
)
def test_eval_mode_gives_what_training_mode_and_single_rows_give(
    time_scale: float, t: torch.Tensor
) -> None:
    net = _net(time_scale=time_scale)
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 1, 2, 3, 0])  # 3 is the null label
    train = net.train()(x, t, y)  # one conditioning vector per row, no deduplication
    net.eval()
    torch.testing.assert_close(net(x, t, y), train)
    with torch.no_grad():
        rows = torch.cat([net(x[i : i + 1], t[i : i + 1], y[i : i + 1]) for i in range(6)])
        torch.testing.assert_close(net(x, t, None), net.train()(x, t, None).detach())
    torch.testing.assert_close(rows, train.detach())


def test_two_fractional_times_that_share_an_integer_part_give_different_outputs() -> None:
    net = _net(time_scale=1000.0).eval()
    x = torch.zeros(2, 2)
    out = net(x, torch.tensor([0.1, 0.4]), torch.tensor([1, 1]))
    assert not torch.allclose(out[0], out[1])
