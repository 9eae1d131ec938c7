"""The frequency explorer (chapter 10), driven headlessly through its pure callback."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from minidiff import q_sample
from minidiff._validation import FloatTensor
from minidiff.frequency import crossover_frequency, radial_frequencies, radial_psd
from minidiff.viz import FrequencyExplorer, frequency_explorer, frequency_view
from minidiff.viz.frequency_explorer import default_images, frequency_schedules


@pytest.fixture(scope="module")
def explorer() -> FrequencyExplorer:
    return FrequencyExplorer()


def test_widget_contract_classes_and_initial_state(explorer: FrequencyExplorer) -> None:
    w = explorer.widget
    assert "minidiff-widget" in w._dom_classes
    assert "minidiff-view" in explorer.image._dom_classes and explorer.image.value[:4] == b"\x89PNG"
    assert "minidiff-readout" in explorer.readout_widget._dom_classes
    assert "minidiff-message" in explorer.message._dom_classes and explorer.message.value == ""
    assert all("minidiff-control" in c._dom_classes for c in explorer.controls.values())
    assert explorer.state["message"] is None and "t = 200" in explorer.readout_widget.value


def test_every_control_changes_the_view_or_readout(explorer: FrequencyExplorer) -> None:
    for name, new in (
        ("t", 600),
        ("schedule", "linear"),
        ("image", "digit 3 (32x32)"),
    ):
        before = (explorer.image.value, explorer.readout_widget.value)
        explorer.controls[name].value = new  # as if the student moved it
        after = (explorer.image.value, explorer.readout_widget.value)
        assert after[0] != before[0] or after[1] != before[1], name
        assert explorer.params[name] == new and explorer.message.value == ""


def test_state_matches_the_frequency_module() -> None:
    ex = FrequencyExplorer(render=False)
    st = ex.update(schedule="cosine", t=300, image="photo: china (64x64)")
    v = st["view"]
    sch = ex.schedules["cosine"]
    img = ex.images["photo: china (64x64)"].double()
    x_t = q_sample(img[None], 300, sch, noise=ex.noise["photo: china (64x64)"][None])
    torch.testing.assert_close(v["x_t"], x_t[0])
    np.testing.assert_allclose(v["psd_t"], radial_psd(x_t)[0].numpy())
    fc = crossover_frequency(  # over the rings the plot shows: all but the zero frequency
        radial_psd(img[None])[0][1:], float(sch.alpha_bar[300]), 64 * 64, radial_frequencies(64)[1:]
    )
    assert math.isclose(v["crossover"], float(fc)) and f"{float(fc):.3f}" in st["readout"]
    assert math.isclose(v["noise_floor"], (1 - float(sch.alpha_bar[300])) * 4096)
    # later t, lower crossover: high frequencies drown first
    later = ex.update(t=700)["view"]["crossover"]
    assert later < v["crossover"]


def test_the_crossover_ignores_the_zero_frequency_of_a_zero_mean_image() -> None:
    # ring 0 is the image mean: ~0 here, below the floor, while every plotted ring is far above it
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    img = (img - img.mean(dim=(1, 2), keepdim=True)).clamp(-1, 1)
    ex = FrequencyExplorer({"zero-mean": img}, T=50, t=10, render=False)
    v = ex.state["view"]
    assert v["signal"][0] < v["noise_floor"] < v["signal"][1:].min()
    assert v["crossover"] == float(v["freqs"][-1])
    assert "no frequency is drowned yet" in ex.readout()


def test_bad_values_give_a_message_not_an_exception() -> None:
    ex = FrequencyExplorer(render=False)
    st = ex.update(image="no such picture")
    assert st["message"] and "unknown image" in ex.message.value
    st = ex.update(image="digit 3 (32x32)", schedule="nope")
    assert "unknown schedule" in st["message"]
    st = ex.update(schedule="linear", t=5000)  # out of range: said, never moved to T
    assert st["message"] == "t must be an int in 1..T=1000, got 5000" and ex.params["t"] == 5000
    assert "1..T=1000" in ex.message.value
    st = ex.update(t=1000)
    assert st["message"] is None and ex.params["t"] == 1000 and ex.message.value == ""
    with pytest.raises(ValueError, match="unknown explorer parameter"):
        ex.update(sigma=1.0)
    with pytest.raises(ValueError, match="image must have shape"):
        frequency_view(torch.zeros(8, 8), frequency_schedules(10)["linear"], 1, torch.zeros(8, 8))


def test_defaults_and_factory() -> None:
    imgs = default_images()
    assert len(imgs) == 3
    for im in imgs.values():
        assert im.dim() == 3 and im.shape[1] == im.shape[2] and float(im.abs().max()) <= 1.0
    scheds = frequency_schedules(100)
    assert list(scheds)[:2] == ["linear", "cosine"] and len(scheds) == 3
    w = frequency_explorer(render=False, schedule="shifted cosine")
    assert "minidiff-widget" in w._dom_classes


def test_user_images_are_validated() -> None:
    good = {"noise": torch.rand(1, 16, 16) * 2 - 1}
    ex = FrequencyExplorer(good, render=False, t=10)
    assert ex.state["message"] is None and ex.state["view"]["freqs"].shape == (9,)
    with pytest.raises(ValueError, match=r"images\['a'\].*\[-1, 1\]"):
        FrequencyExplorer({"a": torch.full((3, 8, 8), 2.0)}, render=False)
    with pytest.raises(ValueError, match="square"):
        FrequencyExplorer({"a": torch.zeros(3, 8, 6)}, render=False)
    with pytest.raises(TypeError, match="floating"):
        FrequencyExplorer({"a": torch.zeros(3, 8, 8, dtype=torch.uint8)}, render=False)
    # an empty mapping is a wrong value, not a wrong kind of object
    with pytest.raises(ValueError, match=r"^images must be a non-empty mapping"):
        FrequencyExplorer({}, T=50, render=False)
    with pytest.raises(TypeError, match=r"^images must be a non-empty mapping .*got list"):
        FrequencyExplorer([torch.zeros(1, 8, 8)], T=50, render=False)  # type: ignore[arg-type]
    # a value just above 1 is printed with the digits that show it
    with pytest.raises(ValueError, match=r"got values in \[1\.0001\d*, 1\.0001\d*\]"):
        FrequencyExplorer({"a": torch.full((1, 8, 8), 1.0001)}, render=False)
    # a picture that requires grad (a generated one) is drawn, not refused by numpy()
    ex = FrequencyExplorer({"a": (torch.rand(1, 8, 8) - 0.5).requires_grad_()}, t=5, render=False)
    assert ex.state["message"] is None and ex.png()[:4] == b"\x89PNG"


# 14 values of kinds the controls never send (a script's update() can): none may escape update().
ODD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e400, 10**400, -(10**400), None, "x",
              [1], {"a": 1}, (), object(), True, 2.5]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"t": 2.5}, "t must be an int in 1..T=50"),
        ({"schedule": "nope"}, "unknown schedule"),
        ({"image": "zz"}, "unknown image"),
    ],
)
def test_a_bad_keyword_of_the_constructor_shows_the_message_like_update(
    kwargs: dict[str, object], words: str
) -> None:
    ex = FrequencyExplorer(T=50, render=False, **kwargs)  # type: ignore[arg-type]
    assert words in ex.state["message"] and ex.message.value != ""
    assert ex.controls["schedule"].value in ex.controls["schedule"].options


_IMAGE = {"a": torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1}


@pytest.mark.parametrize("t", [0, -3, 51, np.int64(0)])
def test_a_t_given_outside_1_to_T_is_the_message_not_clamped(t: int) -> None:
    ex = FrequencyExplorer(_IMAGE, T=50, t=t, render=False)
    assert ex.state["message"] == f"t must be an int in 1..T=50, got {t!r}"
    assert ex.state["view"] is None and "1..T=50" in ex.message.value
    assert ex.update(t=7)["message"] is None and ex.params["t"] == 7
    assert ex.update(t=t)["message"] == f"t must be an int in 1..T=50, got {t!r}"


def test_t_left_at_its_default_starts_at_a_smaller_T() -> None:
    ex = FrequencyExplorer(_IMAGE, T=50, render=False)
    assert ex.state["message"] is None and ex.params["t"] == 50 and type(ex.params["t"]) is int
    assert ex.controls["t"].value == 50
    assert FrequencyExplorer(render=False).params["t"] == 200  # the default under T = 1000


def test_t_and_the_short_schedule_name_are_read_as_by_the_constructor() -> None:
    ex = FrequencyExplorer(T=50, t=10, render=False)
    for bad in (10.7, "7", None, True):
        st = ex.update(t=bad)
        assert st["message"] == f"t must be an int in 1..T=50, got {bad!r}", st["message"]
    st = ex.update(t=np.int64(12))
    assert st["message"] is None and ex.params["t"] == 12
    st = ex.update(schedule="shifted cosine")
    shifted = next(k for k in ex.schedules if k.startswith("shifted"))
    assert st["message"] is None and ex.params["schedule"] == shifted
    assert ex.controls["schedule"].value == shifted


@pytest.mark.parametrize(
    ("call", "exc", "start"),
    [
        (lambda: frequency_schedules(50, "1"), TypeError, "shift must be a real number"),
        (lambda: frequency_schedules(50, float("nan")), ValueError, "shift must be a finite"),
        (lambda: frequency_schedules(2.5), TypeError, "T must be an int"),
        (lambda: FrequencyExplorer(seed=None, T=50, render=False), TypeError, "seed must be"),
        (lambda: FrequencyExplorer(seed=1.5, T=50, render=False), TypeError, "seed must be"),
        (lambda: FrequencyExplorer(seed=-1, T=50, render=False), ValueError, "seed must be"),
        (lambda: FrequencyExplorer(T="50", render=False), TypeError, "T must be an int"),
    ],
)
def test_schedules_and_constructor_name_a_bad_argument(call: Any, exc: type, start: str) -> None:
    with pytest.raises(exc) as info:
        call()
    assert str(info.value).startswith(start), info.value


def test_update_never_raises_on_odd_values() -> None:
    ex = FrequencyExplorer(render=False)
    good = dict(ex.params)
    for name in FrequencyExplorer.PARAMS:
        for value in ODD_VALUES:
            st = ex.update(**{name: value})  # must not raise
            assert isinstance(st.get("message"), (str, type(None)))
        assert ex.update(**good)["message"] is None


def test_an_image_a_float32_hair_outside_the_range_is_drawn_like_within_accepts_it() -> None:
    # a replicate-padded blur of a digit lands at -1.0000001: psnr and every within=(-1, 1) check
    # accept it (their slack is FloatTensor.WITHIN_TOL), frequency_view refused it
    img = torch.full((1, 8, 8), -1.0)
    img[0, 2:6, 2:6] = 1.0
    img[0, 0, 0] = -1.0000001192
    assert float(img.min()) < -1 and -1 - float(img.min()) < FloatTensor.WITHIN_TOL
    v = frequency_view(img, frequency_schedules(10)["linear"], 3, torch.zeros(1, 8, 8))
    assert np.isfinite(v["psd0"]).all()
    ex = FrequencyExplorer({"blurred": img}, T=10, t=3, render=False)
    assert ex.state["message"] is None
    # beyond the slack it is still refused
    img[0, 0, 0] = -1 - 10 * FloatTensor.WITHIN_TOL
    with pytest.raises(ValueError, match=r"^image must hold finite values in \[-1, 1\]"):
        frequency_view(img, frequency_schedules(10)["linear"], 3, torch.zeros(1, 8, 8))
