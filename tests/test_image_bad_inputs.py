"""Bad input on the image half: frequency analysis, FID/KID, image data sets and image grids.

Every entry calls one public function with one argument replaced by a bad value. The contract: a
``TypeError`` for the wrong kind of object (a string, a list or ``None`` where a tensor belongs,
an integer dtype, a generator given as a string), a ``ValueError`` for a wrong value of the right
kind (NaN, an empty batch, a covariance that is not one, a size that would need more memory than
the machine has), and the message names the argument. The unmodified call runs first, so a case
fails because of its bad value and nothing else. ``test_the_table_size`` states how many cases
the table holds.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from minidiff import frequency as fq
from minidiff.data import images as im
from minidiff.metrics import fid
from minidiff.schedules import linear_schedule
from minidiff.viz import frequency_view, grid

NAN, INF = float("nan"), float("inf")
GRID_PNG = str(Path(tempfile.mkdtemp(prefix="minidiff-grid-")) / "grid.png")
atexit.register(shutil.rmtree, str(Path(GRID_PNG).parent), True)
V, T = ValueError, TypeError


def _img(*shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0)) * 2 - 1


IMG = _img(2, 1, 8, 8)
PSD = torch.linspace(5.0, 0.1, 5)
FREQS = torch.linspace(0.0, 0.5, 5)
LAM = torch.linspace(-5.0, 5.0, 7)
FEAT = torch.randn(20, 3, generator=torch.Generator().manual_seed(1))


def _with(good: torch.Tensor, value: float) -> torch.Tensor:
    out = good.clone()
    out.reshape(-1)[0] = value
    return out


def tensor_cases(good: torch.Tensor, *, nan: bool = True, inf: bool = True) -> list[tuple]:
    """A floating tensor argument: 4 wrong kinds, then NaN and inf where they are not allowed."""
    cases: list[tuple] = [
        ("str", "x", T),
        ("list", good.tolist(), T),
        ("None", None, T),
        ("int-dtype", good.round().long(), T),
    ]
    cases += [("nan", _with(good, NAN), V)] if nan else []
    cases += [("inf", _with(good, INF), V)] if inf else []
    return cases


def int_cases(minimum: int = 1, *, optional: bool = False) -> list[tuple]:
    cases: list[tuple] = [
        ("below", minimum - 1, V),
        ("float", 2.5, T),
        ("str", "5", T),
        ("bool", True, T),
    ]
    return cases + ([] if optional else [("None", None, T)])


def number_cases(*, positive: bool = True) -> list[tuple]:
    cases: list[tuple] = [("nan", NAN, V), ("inf", INF, V), ("str", "0.1", T), ("None", None, T)]
    return cases + ([("negative", -1.0, V)] if positive else [])


GENERATOR = [("str", "0", T), ("int", 0, T)]


@dataclass
class Fn:
    name: str
    fn: Callable[..., Any]
    good: dict[str, Any]
    bad: dict[str, list[tuple]]
    runs: bool = True  # False: the good call needs what this machine lacks (Inception weights)


FNS: list[Fn] = [
    # -- frequency.py
    Fn("radial_frequencies", fq.radial_frequencies, {"size": 8},
       {"size": [*int_cases(2), ("terabytes", 10**7, V)]}),
    Fn("radial_counts", fq.radial_counts, {"size": 8},
       {"size": [*int_cases(2), ("terabytes", 10**7, V)]}),
    Fn("power_spectrum", fq.power_spectrum, {"x": IMG},
       {"x": [*tensor_cases(IMG), ("empty-batch", torch.empty(0, 1, 8, 8), V),
              ("no-channel", torch.empty(2, 0, 8, 8), V), ("3d", IMG[0], V)]}),
    Fn("radial_psd", fq.radial_psd, {"x": IMG},
       {"x": [*tensor_cases(IMG), ("empty-batch", torch.empty(0, 1, 8, 8), V),
              ("not-square", _img(2, 1, 8, 6), V)]}),
    Fn("noised_psd", fq.noised_psd, {"psd0": PSD, "alpha_bar": 0.5, "n_pixels": 64},
       {"psd0": [*tensor_cases(PSD), ("empty", torch.ones(0), V), ("negative", -PSD, V)],
        "alpha_bar": [("str", "0.5", T), ("None", None, T), ("list", [[0.5]], T),
                      ("nan", NAN, V), ("above", 1.5, V), ("2d", torch.full((1, 1), 0.5), V),
                      ("int-tensor", torch.ones(2, dtype=torch.long), T)],
        "n_pixels": int_cases()}),
    Fn("frequency_snr", fq.frequency_snr, {"psd0": PSD, "alpha_bar": 0.5, "n_pixels": 64},
       {"psd0": [("empty", torch.ones(0), V), ("nan", _with(PSD, NAN), V)],
        "alpha_bar": [("str", "0.5", T), ("nan", NAN, V)], "n_pixels": int_cases()}),
    Fn("wiener_gain", fq.wiener_gain, {"psd0": PSD, "alpha_bar": 0.5, "n_pixels": 64},
       {"psd0": [("empty", torch.ones(0), V)], "alpha_bar": [("str", "0.5", T)],
        "n_pixels": [("zero", 0, V)]}),
    Fn("crossover_frequency", fq.crossover_frequency,
       {"psd0": PSD, "alpha_bar": 0.5, "n_pixels": 64, "freqs": FREQS},
       {"psd0": [("empty", torch.ones(0), V), ("2d", PSD[None], V)],
        "freqs": [*tensor_cases(FREQS, inf=False), ("shape", FREQS[:3], V),
                  ("decreasing", FREQS.flip(0), V)]}),
    Fn("power_law_fit", fq.power_law_fit, {"freqs": FREQS, "psd": PSD},
       {"freqs": tensor_cases(FREQS), "psd": [*tensor_cases(PSD), ("shape", PSD[:3], V)]}),
    Fn("log_snr_density", fq.log_snr_density, {"schedule": linear_schedule(10)},
       {"schedule": [("str", "linear", T), ("None", None, T), ("short", linear_schedule(2), V)]}),
    # the weightings: λ may be ±inf (t = 0, ᾱ = 0) but never NaN
    *[
        Fn(name, f, {"lam": LAM}, {"lam": tensor_cases(LAM, inf=False)})
        for name, f in (("elbo_weighting", fq.elbo_weighting),
                        ("cosine_weighting", fq.cosine_weighting))
    ],
    Fn("sigmoid_weighting", fq.sigmoid_weighting, {"lam": LAM, "bias": 0.0},
       {"lam": tensor_cases(LAM, inf=False), "bias": number_cases(positive=False)}),
    Fn("edm_density", fq.edm_density, {"lam": LAM, "p_mean": -1.2, "p_std": 1.2},
       {"lam": tensor_cases(LAM, inf=False), "p_mean": number_cases(positive=False),
        "p_std": [*number_cases(), ("zero", 0.0, V)]}),
    Fn("edm_weighting", fq.edm_weighting, {"lam": LAM, "sigma_data": 0.5},
       {"lam": tensor_cases(LAM, inf=False), "sigma_data": [*number_cases(), ("zero", 0.0, V)]}),
    # -- metrics/fid.py
    Fn("frechet_distance", fid.frechet_distance,
       {"mu_a": torch.zeros(2), "sigma_a": torch.eye(2), "mu_b": torch.ones(2),
        "sigma_b": 2 * torch.eye(2)},
       {"mu_a": [*tensor_cases(torch.zeros(2)), ("shape", torch.zeros(3), V)],
        "sigma_a": [*tensor_cases(torch.eye(2)), ("minus-identity", -torch.eye(2), V),
                    ("asymmetric", torch.tensor([[1.0, 0.5], [0.0, 1.0]]), V),
                    ("indefinite", torch.tensor([[1.0, 2.0], [2.0, 1.0]]), V),
                    ("shape", torch.eye(3), V)],
        "sigma_b": [("minus-identity", -torch.eye(2), V), ("nan", _with(torch.eye(2), NAN), V)],
        "mu_b": [("nan", torch.tensor([NAN, 0.0]), V)]}),
    Fn("gaussian_statistics", fid.gaussian_statistics, {"features": FEAT},
       {"features": [*tensor_cases(FEAT), ("one-row", FEAT[:1], V), ("1d", FEAT[0], V)]}),
    Fn("fid_from_features", fid.fid_from_features, {"features_a": FEAT, "features_b": FEAT + 1},
       {"features_a": tensor_cases(FEAT), "features_b": [("width", FEAT[:, :2], V)]}),
    Fn("kid_from_features", fid.kid_from_features,
       {"features_a": FEAT, "features_b": FEAT + 1, "subsets": 3, "subset_size": 10,
        "degree": 3, "coef0": 1.0, "generator": torch.Generator().manual_seed(0)},
       {"subsets": int_cases(), "subset_size": int_cases(2), "degree": int_cases(),
        "coef0": number_cases(), "generator": GENERATOR}),
    Fn("inception_features", fid.inception_features,
       {"images": _img(2, 3, 8, 8), "batch_size": 4, "device": "cpu"},
       {"images": [("str", "img", T), ("None", None, T),
                   ("int64", torch.zeros(2, 3, 8, 8, dtype=torch.long), T),
                   ("nan", _with(_img(2, 3, 8, 8), NAN), V),
                   ("empty", torch.empty(0, 3, 8, 8), V), ("grey", _img(2, 1, 8, 8), V)],
        "batch_size": int_cases(), "device": [("typo", "cpux", V), ("int", 3, T)]},
       runs=False),
    Fn("to_uint8", fid.to_uint8, {"images": IMG},
       {"images": [("int32", torch.zeros(2, 1, 8, 8, dtype=torch.int32), T)]}),
    # -- data/images.py
    Fn("load_digits", im.load_digits, {"size": 8, "classes": (0, 1)},
       {"size": [("three", 3, V), ("str", "8", T), ("float", 8.0, T), ("None", None, T)],
        "classes": [("int", 3, T), ("str", "3", T), ("ten", (10,), V), ("empty", (), V)]}),
    Fn("sample_photos", im.sample_photos, {"downscale": 4},
       {"downscale": [*int_cases(), ("too-large", 65, V)]}),
    Fn("image_patches", im.image_patches,
       {"size": 16, "n": 4, "downscale": 4, "grayscale": True,
        "generator": torch.Generator().manual_seed(0)},
       {"size": [*int_cases(2), ("larger-than-photo", 10**6, V)],
        "n": [*int_cases(), ("terabytes", 10**12, V)],
        "downscale": int_cases(), "grayscale": [("str", "no", T), ("int", 1, T)],
        "generator": GENERATOR}),
    Fn("to_unit_range", im.to_unit_range, {"images": IMG.numpy(), "max_value": 255},
       {"images": [("str", "abc", T), ("None", None, T)],
        "max_value": [*number_cases(), ("zero", 0, V)]}),
    # -- viz/frequency_explorer.py
    Fn("frequency_view", frequency_view,
       {"image": IMG[0], "schedule": linear_schedule(10), "t": 3, "noise": torch.zeros(1, 8, 8)},
       {"image": [*tensor_cases(IMG[0]), ("numpy", IMG[0].numpy(), T),
                  ("uint8", torch.zeros(1, 8, 8, dtype=torch.uint8), T),
                  ("two-channels", _img(2, 8, 8), V), ("batched", IMG, V),
                  ("above-one", torch.full((1, 8, 8), 1.0001), V)],
        "noise": [*tensor_cases(torch.zeros(1, 8, 8)), ("shape", torch.zeros(1, 6, 6), V),
                  ("batched", torch.zeros(2, 1, 8, 8), V)],
        "t": [*int_cases(), ("beyond-T", 11, V)],
        "schedule": [("str", "linear", T), ("None", None, T)]}),
    # -- viz/grid.py
    Fn("image_grid", grid.image_grid, {"images": IMG, "nrow": 2, "pad": 1},
       {"images": [*tensor_cases(IMG), ("two-channels", _img(2, 2, 8, 8), V),
                   ("empty", torch.empty(0, 1, 8, 8), V)],
        "nrow": int_cases(optional=True), "pad": [*int_cases(0), ("terabytes", 10**7, V)]}),
    Fn("save_image_grid", lambda **kw: grid.save_image_grid(path=GRID_PNG, **kw),
       {"images": IMG, "scale": 2},
       {"scale": [*int_cases(), ("terabytes", 10**7, V)]}),
]  # fmt: skip

CASES = [
    pytest.param(spec, arg, label, value, exc, id=f"{spec.name}-{arg}-{label}")
    for spec in FNS
    for arg, cases in spec.bad.items()
    for label, value, exc in cases
]


def test_the_table_size() -> None:
    assert len(FNS) == 28 and len(CASES) == 296, (len(FNS), len(CASES))


@pytest.mark.parametrize("spec", [s for s in FNS if s.runs], ids=lambda s: s.name)
def test_good_call_of_each_table_entry_runs(spec: Fn) -> None:
    out = spec.fn(**spec.good)
    if isinstance(out, torch.Tensor) and out.is_floating_point():
        assert not bool(torch.isnan(out).any())


@pytest.mark.parametrize(("spec", "arg", "label", "value", "exc"), CASES)
def test_bad_argument_raises_a_clear_error(
    spec: Fn, arg: str, label: str, value: Any, exc: type
) -> None:
    c0 = time.process_time()
    with pytest.raises((ValueError, TypeError)) as info:
        spec.fn(**{**spec.good, arg: value})
    assert time.process_time() - c0 < 5.0  # refused before the work, not after
    assert arg in str(info.value), f"the message does not name {arg!r}: {info.value}"
    assert isinstance(info.value, exc), (
        f"{spec.name}({arg}=<{label}>) raised {type(info.value).__name__}: {info.value}; "
        f"expected {exc.__name__} (wrong kind: TypeError, wrong value: ValueError)"
    )
