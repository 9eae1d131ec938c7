"""The digit judge and the within-class spread."""

from __future__ import annotations

import pytest
import torch

from minidiff.data import load_digits
from minidiff.metrics.digits import DigitJudge, within_class_spread


@pytest.fixture(scope="module")
def judge() -> DigitJudge:
    x, y = load_digits(8)
    return DigitJudge(x[:900], y[:900])


def test_judge_is_confident_on_real_digits_and_not_on_noise(judge: DigitJudge) -> None:
    x, y = load_digits(8)
    real = judge.rate(x[900:], y[900:])
    noise = judge.rate(torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                       torch.arange(200) % 10)  # fmt: skip
    assert real > 0.6 and noise < 0.2
    # per class rates average to the overall rate when every class has the same count
    xb = torch.cat([x[900:][y[900:] == k][:20] for k in range(10)])
    yb = torch.arange(10).repeat_interleave(20)
    assert abs(judge.per_class(xb, yb).mean().item() - judge.rate(xb, yb)) < 1e-12
    # a wrong label is never "correct"
    assert judge.rate(xb, (yb + 1) % 10) < 0.05


def test_hits_follow_the_threshold(judge: DigitJudge) -> None:
    x, y = load_digits(8)
    p = judge.proba(x[900:1000])
    expected = torch.as_tensor(p[range(100), y[900:1000].numpy()] >= 0.5)
    assert torch.equal(judge.hits(x[900:1000], y[900:1000], 0.5), expected)
    assert judge.rate(x[900:1000], y[900:1000], 1e-9) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        judge.rate(x[:5], y[:5], 1.5)


def test_pooled_judge_reads_upsampled_digits() -> None:
    x32, y = load_digits(32)
    j = DigitJudge(x32[:900], y[:900], pool=4)
    assert j.rate(x32[900:], y[900:]) > 0.6
    with pytest.raises(ValueError, match=r"\(n, 1, 32, 32\)"):
        j.proba(torch.zeros(3, 1, 8, 8))


def test_spread_is_the_mean_pairwise_distance() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    y = torch.tensor([0, 0, 1, 1, 2])
    s = within_class_spread(x, y, num_classes=4)
    assert s[0].item() == pytest.approx(5.0) and s[1].item() == pytest.approx(1.0)
    assert torch.isnan(s[2]) and torch.isnan(s[3])  # fewer than two images
    with pytest.raises(ValueError, match="labels"):
        within_class_spread(x, torch.tensor([0, 1]))
