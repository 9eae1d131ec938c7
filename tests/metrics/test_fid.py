"""FID/KID mathematics against scipy / scikit-learn references on synthetic features."""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.metrics.pairwise import polynomial_kernel

from minidiff.metrics import fid
from minidiff.metrics.fid import (
    INCEPTION_WEIGHTS_ENV,
    fid_from_features,
    find_inception_weights,
    frechet_distance,
    gaussian_statistics,
    inception_features,
    kid_from_features,
    to_uint8,
)


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The formula as pytorch-fid / the TTUR code compute it, with scipy.linalg.sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _features(seed: int, n: int = 400, d: int = 16, shift: float = 0.0) -> torch.Tensor:
    mix = torch.randn(d, d, generator=torch.Generator().manual_seed(123)) / d**0.5
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix.double() + shift


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
def test_fid_matches_scipy_reference(shift: float) -> None:
    a, b = _features(0), _features(1, shift=shift)
    ours = fid_from_features(a, b)
    ref = _reference_fid(a.numpy(), b.numpy())
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-8)


def test_frechet_distance_closed_form_for_gaussians() -> None:
    # Commuting covariances: d^2 = |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    mu_a, mu_b = torch.zeros(3, dtype=torch.float64), torch.tensor([1.0, 0, 2], dtype=torch.float64)
    va, vb = (
        torch.tensor([1.0, 4, 9], dtype=torch.float64),
        torch.tensor([4.0, 4, 1], dtype=torch.float64),
    )
    d2 = frechet_distance(mu_a, torch.diag(va), mu_b, torch.diag(vb))
    assert d2 == pytest.approx(5 + float(((va.sqrt() - vb.sqrt()) ** 2).sum()), rel=1e-12)
    assert frechet_distance(mu_a, torch.diag(va), mu_a, torch.diag(va)) == pytest.approx(
        0, abs=1e-10
    )


def test_gaussian_statistics_match_numpy() -> None:
    a = _features(3)
    mu, sigma = gaussian_statistics(a)
    np.testing.assert_allclose(mu.numpy(), a.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(a.numpy(), rowvar=False), rtol=1e-10)


def _reference_kid(a: np.ndarray, b: np.ndarray) -> float:
    d = a.shape[1]
    kxx = polynomial_kernel(a, a, degree=3, gamma=1.0 / d, coef0=1)
    kyy = polynomial_kernel(b, b, degree=3, gamma=1.0 / d, coef0=1)
    kxy = polynomial_kernel(a, b, degree=3, gamma=1.0 / d, coef0=1)
    m = a.shape[0]
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * kxy.mean()
    )


def test_kid_matches_sklearn_kernel_reference() -> None:
    a, b = _features(0, n=300), _features(1, n=300, shift=0.5)
    # one subset that is the whole set: the estimate is the full unbiased MMD^2
    kid = kid_from_features(a, b, subsets=1, subset_size=300)
    assert kid.mean == pytest.approx(_reference_kid(a.numpy(), b.numpy()), rel=1e-9)
    assert kid.std == 0.0


def test_kid_std_is_torch_fidelitys_population_std(monkeypatch: pytest.MonkeyPatch) -> None:
    values = iter([1.0, 2.0, 3.0, 4.0])
    monkeypatch.setattr(fid, "_mmd2_unbiased", lambda *a: torch.tensor(next(values)))
    kid = kid_from_features(_features(0, n=20), _features(1, n=20), subsets=4, subset_size=10)
    assert kid.mean == 2.5 and kid.std == pytest.approx(float(np.std([1.0, 2.0, 3.0, 4.0])))


def test_to_uint8_refuses_what_is_not_a_tensor() -> None:
    with pytest.raises(TypeError, match="images must be a torch.Tensor, got ndarray"):
        to_uint8(np.zeros((1, 3, 4, 4)))  # type: ignore[arg-type]


def test_kid_is_unbiased_near_zero_for_same_distribution_and_grows_with_shift() -> None:
    g = torch.Generator().manual_seed(0)
    same = kid_from_features(_features(0), _features(1), subsets=50, subset_size=200, generator=g)
    far = kid_from_features(
        _features(0), _features(1, shift=1.0), subsets=50, subset_size=200, generator=g
    )
    # unbiased: for equal distributions the estimate scatters around 0 (subsets overlap, so the
    # spread over subsets, not its standard error, is the yardstick)
    assert abs(same.mean) < same.std
    assert far.mean > 10 * max(abs(same.mean), same.std)


def test_fid_decreases_with_sample_size_for_same_distribution() -> None:
    # FID is biased upwards for small N: a fact the notebook states
    small = fid_from_features(_features(0, n=50), _features(1, n=50))
    large = fid_from_features(_features(0, n=2000), _features(1, n=2000))
    assert large < small


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (torch.randn(10), torch.randn(10, 3), "features_a must have shape"),
        (torch.randn(10, 3), torch.randn(10, 4), "same width"),
        (torch.randn(1, 3), torch.randn(10, 3), "N >= 2"),
        (torch.full((4, 3), float("nan")), torch.randn(10, 3), "finite"),
    ],
)
def test_bad_features(a: torch.Tensor, b: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fid_from_features(a, b)
    with pytest.raises(ValueError, match=match):
        kid_from_features(a, b)


def test_frechet_distance_bad_shapes() -> None:
    with pytest.raises(ValueError, match="sigma_b must have shape"):
        frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(2))
    with pytest.raises(ValueError, match=r"^mu_a must have shape \(D,\) with D >= 1, got \(0,\)"):
        frechet_distance(torch.zeros(0), torch.zeros(0, 0), torch.zeros(0), torch.zeros(0, 0))


def test_inception_without_weights_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    images = torch.zeros(2, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="no Inception weights given"):
        inception_features(images)
    with pytest.raises(FileNotFoundError, match="not a file"):
        inception_features(images, weights_path="/nonexistent/inception.pth")
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, "/nonexistent/x.pth")
    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS_ENV):
        inception_features(images)
    with pytest.raises(ValueError, match="RGB"):
        inception_features(torch.zeros(2, 1, 32, 32))


def test_inception_without_torch_fidelity_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    real_import = builtins.__import__

    def no_fidelity(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("torch_fidelity"):
            raise ImportError("No module named 'torch_fidelity'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fidelity)
    with pytest.raises(ImportError, match=r"minidiff\[fid\]"):
        inception_features(torch.zeros(2, 3, 32, 32), weights_path=weights)


def test_frechet_distance_refuses_what_is_not_a_covariance_and_accepts_round_off() -> None:
    # -I would give "0.0" (its square root is clamped to 0); a covariance of fewer samples than
    # dimensions is singular, and round-off makes its smallest eigenvalues slightly negative.
    with pytest.raises(ValueError, match="sigma_a must be a covariance matrix"):
        frechet_distance(torch.zeros(2), -torch.eye(2), torch.zeros(2), -torch.eye(2))
    with pytest.raises(ValueError, match="mu_a contains non-finite"):
        frechet_distance(
            torch.tensor([float("nan"), 0.0]), torch.eye(2), torch.zeros(2), torch.eye(2)
        )
    few = torch.randn(5, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mu, sigma = gaussian_statistics(few)
    assert float(torch.linalg.eigvalsh(sigma).min()) < 1e-12  # singular: 5 samples in 10-d
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_inception_sees_uint8_pixels_unchanged_and_floats_quantised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # uint8 images used to be clamped to [-1, 1] as if they were floats: the network saw only 128
    # and 255. A stand-in extractor records what it is given.
    import minidiff.metrics.fid as fid_mod

    seen: list[torch.Tensor] = []

    def fake_extractor(path: Any, device: Any, source: str = "weights_path") -> Any:
        def features(u8: torch.Tensor) -> torch.Tensor:
            seen.append(u8.clone())
            return u8.float().mean(dim=(2, 3))

        return features

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    monkeypatch.setattr(fid_mod, "_load_extractor", fake_extractor)
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16)
    inception_features(pixels.contiguous(), weights_path=weights)
    assert seen[-1].dtype == torch.uint8 and torch.equal(seen[-1], pixels)
    assert len(torch.unique(seen[-1])) == 256
    floats = pixels.float() / 127.5 - 1  # the same pictures in [-1, 1]
    inception_features(floats, weights_path=weights)
    assert torch.equal(seen[-1], pixels)
    with pytest.raises(TypeError, match="images must be floating in \\[-1, 1\\] or uint8"):
        inception_features(pixels.long(), weights_path=weights)


def _stub_torch_fidelity(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch-fidelity's extractor reduced to what it does with the weights file: ``torch.load``
    and ``load_state_dict`` (the package itself is an optional extra, not installed in CI)."""

    class FeatureExtractorInceptionV3(torch.nn.Module):
        def __init__(self, name: str, features: list, feature_extractor_weights_path: str) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)
            self.load_state_dict(torch.load(feature_extractor_weights_path))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (self.fc(x.float().mean(dim=(2, 3))),)

    package = types.ModuleType("torch_fidelity")
    module = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    module.FeatureExtractorInceptionV3 = FeatureExtractorInceptionV3  # type: ignore[attr-defined]
    package.feature_extractor_inceptionv3 = module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_fidelity", package)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", module)


def test_a_corrupt_weights_file_is_named_not_a_torch_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # torch's own errors suggested weights_only=False, a zip archive or missing keys
    _stub_torch_fidelity(monkeypatch)
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    images = torch.zeros(2, 3, 8, 8)
    good = tmp_path / "good.pth"
    torch.save({f"fc.{k}": v for k, v in torch.nn.Linear(3, 2).state_dict().items()}, good)
    assert inception_features(images, weights_path=good).shape == (2, 2)
    whole = good.read_bytes()
    files = {
        "truncated": whole[: len(whole) // 2],
        "empty": b"",
        "text": b"<html>404 Not Found</html>",
        "pickle": b"\x80\x02garbage",
    }
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)  # another network's: no fc.weight
    paths = [other]
    for name, content in files.items():
        (tmp_path / f"{name}.pth").write_bytes(content)
        paths.append(tmp_path / f"{name}.pth")
    for path in paths:
        with pytest.raises(
            ValueError, match="^weights_path=.* is not a readable Inception"
        ) as info:
            inception_features(images, weights_path=path)
        assert "6726825d.pth" in str(info.value) and "100 MB" in str(info.value)
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(other))
    with pytest.raises(ValueError, match=f"^{INCEPTION_WEIGHTS_ENV}=.* is not a readable"):
        inception_features(images)


def test_a_weights_path_with_a_tilde_is_the_home_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "w.pth").write_bytes(b"")
    assert find_inception_weights("~/w.pth") == tmp_path / "w.pth"
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, "~/w.pth")
    assert find_inception_weights() == tmp_path / "w.pth"
