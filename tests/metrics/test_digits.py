"""Scoring generated digits on a laptop: the classifiers read real digits well and noise badly,
the FID stand-in is near its floor for real digits and far from it for wrong ones; the
class-conditional judge and the within-class spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minidiff.data import load_digits
from minidiff.metrics.digits import (
    DigitCNN,
    DigitJudge,
    confident_rate,
    digit_fid,
    out_of_range_fraction,
    train_digit_cnn,
    within_class_spread,
)


@pytest.fixture(scope="module")
def split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.set_num_threads(1)
    x, y = load_digits(8)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    a, b = perm[: len(x) // 2], perm[len(x) // 2 :]
    return x[a], y[a], x[b], y[b]


@pytest.fixture(scope="module")
def cnn(split: tuple[torch.Tensor, ...]) -> DigitCNN:
    xa, ya, _, _ = split
    return train_digit_cnn(xa, ya, steps=250, generator=torch.Generator().manual_seed(0))


def test_the_cnn_reads_held_out_digits_and_refuses_non_digits(
    split: tuple[torch.Tensor, ...], cnn: DigitCNN
) -> None:
    _, _, xb, yb = split
    with torch.no_grad():
        acc = float((cnn(xb).argmax(1) == yb).double().mean())
    assert acc > 0.95, acc
    noise = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    blank = -torch.ones(20, 1, 8, 8)
    assert confident_rate(cnn, xb) > 0.8
    assert confident_rate(cnn, noise) < 0.4 and confident_rate(cnn, blank) < 0.1


def test_the_fid_stand_in_separates_real_from_wrong(
    split: tuple[torch.Tensor, ...], cnn: DigitCNN
) -> None:
    xa, _, xb, yb = split
    n = 400
    floor = digit_fid(cnn, xa[:n], xb[:n])  # two samples of real digits
    blurred = torch.nn.functional.avg_pool2d(xb[:n], 3, 1, 1)
    only_ones = xb[yb == 1]
    assert digit_fid(cnn, blurred, xa[:n]) > 3 * floor
    assert digit_fid(cnn, only_ones, xa[:n]) > 3 * floor  # mode collapse is seen too
    assert digit_fid(cnn, xa[:n], xa[:n]) < 1e-6


def test_out_of_range_fraction() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 1.5, float("nan")])
    assert out_of_range_fraction(x) == pytest.approx(3 / 6)
    assert out_of_range_fraction(x, limit=2.0) == pytest.approx(1 / 6)


def test_bad_inputs_are_named(split: tuple[torch.Tensor, ...], cnn: DigitCNN) -> None:
    # 9 bad inputs
    xa, ya, _, _ = split
    with pytest.raises(ValueError, match="images must have shape"):
        train_digit_cnn(torch.zeros(4, 1, 16, 16), ya[:4])
    with pytest.raises(TypeError, match="labels"):
        train_digit_cnn(xa[:10], ya[:10].float())
    with pytest.raises(ValueError, match="labels"):
        train_digit_cnn(xa[:10], ya[:9])
    with pytest.raises(ValueError, match="images contains non-finite"):
        confident_rate(cnn, torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="cnn must be a DigitCNN"):
        digit_fid(torch.nn.Linear(64, 10), xa, xa)  # type: ignore[arg-type]
    # one image has no covariance: named as passed, before the network runs (it named features_a)
    with pytest.raises(ValueError, match=r"^samples must have shape \(N, 1, 8, 8\) with N >= 2"):
        digit_fid(cnn, xa[:1], xa)
    with pytest.raises(ValueError, match=r"^reference must have shape \(N, 1, 8, 8\) with N >= 2"):
        digit_fid(cnn, xa, xa[:1])
    with pytest.raises(ValueError, match="threshold"):
        confident_rate(cnn, xa, threshold=1.5)
    with pytest.raises(ValueError, match="x must hold"):
        out_of_range_fraction(torch.zeros(0))


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


def test_labels_are_checked_alike_everywhere(judge: DigitJudge) -> None:
    # labels 3..9 with num_classes=3 were silently left out; float labels were a ValueError here
    # and a TypeError in train_digit_cnn; a negative label picked the judge's last class
    x, y = load_digits(8)
    with pytest.raises(ValueError, match=r"^labels must be a class index in 0\.\.2, got 9"):
        within_class_spread(x[:50], y[:50], num_classes=3)
    for fn in (
        lambda: within_class_spread(x[:50], y[:50].float()),
        lambda: train_digit_cnn(x[:50], y[:50].float()),
        lambda: judge.rate(x[:50], y[:50].float()),
        lambda: DigitJudge(x[:50], y[:50].double()),
    ):
        with pytest.raises(TypeError, match="^labels must be an integer"):
            fn()
    with pytest.raises(ValueError, match=r"^labels must be a class index in 0\.\.9, got -1"):
        judge.rate(x[:3], torch.tensor([0, -1, 2]))
    # a classifier's labels have no null label: 10 is out of range like 11, with no talk of ∅
    for fn in (
        lambda: judge.hits(x[:5], torch.full((5,), 10)),
        lambda: train_digit_cnn(x[:5], torch.full((5,), 10)),
        lambda: within_class_spread(x[:5], torch.full((5,), 10)),
    ):
        with pytest.raises(ValueError, match=r"^labels must be a class index in 0\.\.9, got 10$"):
            fn()
    with pytest.raises(ValueError, match=r"^labels must have shape \(3,\)"):
        judge.hits(x[:3], torch.tensor(1))


def test_a_judge_fitted_on_some_digits_speaks_in_their_labels() -> None:
    # fitted on the digits 3 and 5, sklearn's columns 0 and 1 were read as the classes 0 and 1:
    # predict gave 0/1, proba had 2 columns for num_classes = 6, hits raised an IndexError
    x, y = load_digits(classes=(3, 5))
    j = DigitJudge(x[:200], y[:200])
    p = j.proba(x[200:260])
    assert j.num_classes == 6 and p.shape == (60, 6)
    assert np.allclose(p.sum(1), 1.0) and (p[:, [0, 1, 2, 4]] == 0).all()
    assert set(j.predict(x[200:260]).tolist()) == {3, 5}
    assert (j.predict(x[200:260]) == y[200:260]).double().mean() > 0.9
    assert j.rate(x[200:260], y[200:260], 0.5) > 0.9 and j.rate(x[200:260], 8 - y[200:260]) < 0.1
    pc = j.per_class(x[200:260], y[200:260], 0.5)
    assert pc.shape == (6,) and pc[[3, 5]].min() > 0.8 and torch.isnan(pc[[0, 1, 2, 4]]).all()
