"""FID and KID: distances between two sets of image features.

FID: Heusel et al. (2017); KID: Binkowski et al. (2018).

The mathematics is here and is tested against scipy/scikit-learn; the features come from the
Inception-v3 network of ``torch-fidelity`` (a maintained package that reproduces the TensorFlow
graph the published numbers use), with its weights read from a *local* file:

    FID = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})   (Gaussians fitted)
    KID = unbiased MMD^2 with the kernel k(x, y) = (x . y / d + 1)^3, averaged over random subsets

FID is biased for small sample sizes (it decreases as N grows), so compare FIDs only at equal N
(50 000 samples in the papers); KID is unbiased and usable with a few thousand.

``torch-fidelity`` needs torchvision, which the course does not install by default: it is the
optional extra ``pip install 'minidiff[fid]'``, imported only when Inception features are asked for.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .._validation import Device, FloatTensor, Int, Number, Rng, checked

__all__ = [
    "gaussian_statistics",
    "frechet_distance",
    "fid_from_features",
    "KID",
    "kid_from_features",
    "inception_features",
    "to_uint8",
    "find_inception_weights",
    "default_inception_weights",
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_URL",
]

INCEPTION_WEIGHTS_ENV = "MINIDIFF_INCEPTION_WEIGHTS"
_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _check_features(name: str, features: Tensor, min_rows: int = 2) -> Tensor:
    if not isinstance(features, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, D), got {type(features).__name__}"
        )
    if features.ndim != 2 or features.shape[0] < min_rows or features.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (N, D) with N >= {min_rows}, got {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {features.dtype}")
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{name} must be finite")
    return features.detach().to("cpu", torch.float64)


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``features: (N, D)``."""
    f = _check_features("features", features)
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrtm_psd(a: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def _check_covariance(sigma: Tensor, name: str) -> None:
    """A covariance matrix: symmetric and positive semi-definite (up to round-off)."""
    scale = float(sigma.abs().max()) if sigma.numel() else 0.0
    tol = 1e-6 * max(scale, 1e-300)
    if float((sigma - sigma.T).abs().max()) > tol:
        raise ValueError(f"{name} must be a symmetric covariance matrix, got an asymmetric one")
    low = float(torch.linalg.eigvalsh(sigma).min())
    if low < -1e-6 * max(scale, 1e-300):
        raise ValueError(
            f"{name} must be a covariance matrix (positive semi-definite), but its smallest "
            f"eigenvalue is {low:.3g}"
        )


@checked(
    mu_a=FloatTensor(dim=1, finite=True),
    sigma_a=FloatTensor(dim=2, finite=True),
    mu_b=FloatTensor(dim=1, finite=True),
    sigma_b=FloatTensor(dim=2, finite=True),
)
def frechet_distance(mu_a: Tensor, sigma_a: Tensor, mu_b: Tensor, sigma_b: Tensor) -> float:
    """Squared 2-Wasserstein (Frechet) distance of ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)``.

        d^2 = ||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^{1/2})

    ``Tr((S_a S_b)^{1/2}) = Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})``, and the matrix inside is
    symmetric positive semi-definite, so two symmetric eigendecompositions replace scipy's general
    ``sqrtm`` (no complex round-off to discard). Shapes: ``mu: (D,)``, ``sigma: (D, D)`` with
    ``D >= 1``; the sigmas must be covariance matrices (symmetric, positive semi-definite), else
    ``ValueError``.
    """
    d = mu_a.shape[0]
    if d == 0:
        raise ValueError(f"mu_a must have shape (D,) with D >= 1, got {tuple(mu_a.shape)}")
    if mu_b.shape != (d,):
        raise ValueError(
            f"mu_a and mu_b must both have shape (D,), got {tuple(mu_a.shape)} and "
            f"{tuple(mu_b.shape)}"
        )
    for name, sigma in (("sigma_a", sigma_a), ("sigma_b", sigma_b)):
        if sigma.shape != (d, d):
            raise ValueError(
                f"{name} must have shape (D, D) = ({d}, {d}), got {tuple(sigma.shape)}"
            )
    ma, sa, mb, sb = (v.detach().to("cpu", torch.float64) for v in (mu_a, sigma_a, mu_b, sigma_b))
    _check_covariance(sa, "sigma_a")
    _check_covariance(sb, "sigma_b")
    root_a = _sqrtm_psd(sa)
    inner = root_a @ sb @ root_a
    tr_cross = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    value = (ma - mb).square().sum() + torch.trace(sa) + torch.trace(sb) - 2 * tr_cross
    return float(value.clamp_min(0))


def _check_pair(features_a: Tensor, features_b: Tensor) -> tuple[Tensor, Tensor]:
    fa = _check_features("features_a", features_a)
    fb = _check_features("features_b", features_b)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(
            "features_a and features_b must have the same width D, "
            f"got {fa.shape[1]} and {fb.shape[1]}"
        )
    return fa, fb


def fid_from_features(features_a: Tensor, features_b: Tensor) -> float:
    """FID between two feature sets ``(N_a, D)`` and ``(N_b, D)`` (Heusel et al. 2017, eq. 6)."""
    fa, fb = _check_pair(features_a, features_b)
    return frechet_distance(*gaussian_statistics(fa), *gaussian_statistics(fb))


class KID(NamedTuple):
    """Kernel Inception Distance over random subsets: their mean, and their standard deviation
    as torch-fidelity reports it (``ddof=0``, so 0 for one subset; :class:`Spread` uses ``ddof=1``).
    """

    mean: float
    std: float


def _mmd2_unbiased(x: Tensor, y: Tensor, degree: int, coef0: float) -> Tensor:
    d = x.shape[1]
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    m, n = x.shape[0], y.shape[0]
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2 * kxy.mean()
    )


@checked(
    subsets=Int(),
    subset_size=Int(minimum=2),
    degree=Int(),
    coef0=Number(low=0.0, low_open=False),
    generator=Rng,
)
def kid_from_features(
    features_a: Tensor,
    features_b: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    coef0: float = 1.0,
    generator: torch.Generator | None = None,
) -> KID:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the polynomial kernel
    ``k(x, y) = (x . y / D + coef0) ** degree``, on ``subsets`` random subsets of
    ``min(subset_size, N_a, N_b)`` rows of each set (drawn without replacement), as in
    torch-fidelity. Returns ``KID(mean, std)`` over the subsets.
    """
    fa, fb = _check_pair(features_a, features_b)
    size = min(subset_size, fa.shape[0], fb.shape[0])
    values = []
    for _ in range(subsets):
        ia = torch.randperm(fa.shape[0], generator=generator)[:size]
        ib = torch.randperm(fb.shape[0], generator=generator)[:size]
        values.append(_mmd2_unbiased(fa[ia], fb[ib], degree, coef0))
    v = torch.stack(values)
    return KID(float(v.mean()), float(v.std(correction=0)))


# ------------------------------------------------------------------------------ Inception features


INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + _WEIGHTS_FILE
)
"""Where torch-fidelity publishes the weights (about 100 MB); minidiff never downloads them."""


def default_inception_weights() -> Path:
    """Where the weights are looked for when neither an argument nor the environment variable
    names them: the data cache (``$MINIDIFF_DATA``, else ``~/.cache/minidiff``), by CIFAR-10."""
    root = os.environ.get("MINIDIFF_DATA") or Path.home() / ".cache" / "minidiff"
    return Path(root).expanduser() / _WEIGHTS_FILE


def find_inception_weights(weights_path: str | os.PathLike[str] | None = None) -> Path | None:
    """The Inception weights file to use, or ``None`` where there is none: ``weights_path``, else
    ``$MINIDIFF_INCEPTION_WEIGHTS``, else :func:`default_inception_weights` if that file exists
    (``~`` is expanded in each). A path that is named but missing raises ``FileNotFoundError`` (a
    typo should not fall back). Only the file's existence is checked here (reading 100 MB is the
    network's work): a corrupt or truncated file is refused with a ``ValueError`` naming it when
    :func:`inception_features` builds the network."""
    try:
        return _resolve_weights(weights_path)
    except FileNotFoundError:
        if weights_path is None and not os.environ.get(INCEPTION_WEIGHTS_ENV):
            return None
        raise


def _where_to_put() -> str:
    return (
        f"download {INCEPTION_WEIGHTS_URL} (torch-fidelity's Inception-v3, about 100 MB) and put "
        f"it at {default_inception_weights()}, or pass weights_path=... or set "
        f"{INCEPTION_WEIGHTS_ENV} to its path; minidiff never downloads it"
    )


def _resolve_weights(weights_path: str | os.PathLike[str] | None) -> Path:
    source = "weights_path"
    if weights_path is None:
        env = os.environ.get(INCEPTION_WEIGHTS_ENV)
        if not env:
            default = default_inception_weights()
            if default.is_file():
                return default
            raise FileNotFoundError(
                "no Inception weights given: "
                + _where_to_put()
                + ". Without them, compare models with KID/FID on other features (for digits: "
                "minidiff.metrics.digits.digit_fid), or with k-NN precision/recall."
            )
        weights_path, source = env, INCEPTION_WEIGHTS_ENV
    if not isinstance(weights_path, (str, os.PathLike)):
        raise TypeError(
            f"weights_path must be a path (str or os.PathLike), got {type(weights_path).__name__}"
        )
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Inception weights not found: {source}={str(path)!r} is not a file; " + _where_to_put()
        )
    return path


def _weights_source(weights_path: object) -> str:
    """How the user named the weights file: the argument, the environment variable, or neither."""
    if weights_path is not None:
        return "weights_path"
    return INCEPTION_WEIGHTS_ENV if os.environ.get(INCEPTION_WEIGHTS_ENV) else "the default file"


def _load_extractor(
    path: Path, device: torch.device, source: str = "weights_path"
) -> Callable[[Tensor], Tensor]:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as exc:
        raise ImportError(
            "Inception features need the optional package torch-fidelity (which pulls in "
            "torchvision): pip install 'minidiff[fid]'"
        ) from exc
    try:
        extractor = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
        )
    except (RuntimeError, pickle.UnpicklingError, EOFError, IndexError) as exc:
        # what torch.load and load_state_dict raise for a truncated or corrupt file (a text file
        # read as a legacy pickle: IndexError) and for the weights of another network
        said = " ".join(str(exc).split())
        reason = type(exc).__name__ + (f": {said[:200]}" if said else "")
        named = (
            f"{source} {str(path)!r}" if source.startswith("the ") else f"{source}={str(path)!r}"
        )
        raise ValueError(
            f"{named} is not a readable Inception weights file "
            f"({reason}); expected torch-fidelity's {_WEIGHTS_FILE} "
            "(about 100 MB) whole, not a download that stopped early or another network's "
            "weights: " + _where_to_put()
        ) from exc
    extractor = extractor.to(device)

    def features(images_uint8: Tensor) -> Tensor:
        out = extractor(images_uint8)
        return (out[0] if isinstance(out, (tuple, list)) else out).float()

    return features


def to_uint8(images: Tensor, name: str = "images") -> Tensor:
    """Images as the 8-bit pixels a saved PNG holds: ``(N, C, H, W)`` uint8 in ``0..255``.

    Floats are read as the course's ``[-1, 1]`` (values outside are clamped, as saving a picture
    would) and rounded: ``round((x + 1) * 127.5)``; uint8 images are taken as they are. Other
    integer dtypes are refused (their range is ambiguous).
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be floating in [-1, 1] or uint8 in 0..255, got dtype {images.dtype}"
        )
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@checked(batch_size=Int(), device=Device)
def inception_features(
    images: Tensor,
    weights_path: str | os.PathLike[str] | None = None,
    batch_size: int = 200,
    device: torch.device | str | None = None,
) -> Tensor:
    """2048-d pool features of Inception-v3 (FID's network), ``images: (N, 3, H, W)``.

    ``images`` are floats in ``[-1, 1]`` (quantised to 8 bits first, as a saved PNG would be) or
    uint8 pixels in ``0..255`` (:func:`to_uint8`); the network resizes them to 299x299.
    The weights: ``weights_path``, else the environment variable ``MINIDIFF_INCEPTION_WEIGHTS``,
    else ``~/.cache/minidiff/weights-inception-2015-12-05-6726825d.pth`` (see
    :func:`find_inception_weights`; :data:`INCEPTION_WEIGHTS_URL` says where to get the file).
    A file torch cannot read as those weights (truncated, corrupt, another network's) raises a
    ``ValueError`` naming it. Returns ``(N, 2048)`` float32 on the CPU.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor (N, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W) (RGB), got {tuple(images.shape)}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images must hold at least one image, got shape {tuple(images.shape)}")
    to_uint8(images[:1])  # the dtype check, before the weights are looked for
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError("images contains non-finite values (NaN or inf)")
    path = _resolve_weights(weights_path)
    dev = torch.device(device) if device is not None else images.device
    extract = _load_extractor(path, dev, _weights_source(weights_path))
    out = []
    for chunk in images.split(batch_size):
        with torch.no_grad():
            out.append(extract(to_uint8(chunk).to(dev)).cpu())
    return torch.cat(out)
