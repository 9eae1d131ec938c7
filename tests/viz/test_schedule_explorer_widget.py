"""The schedule explorer as a widget: the browser-test contract, bad values shown (not raised), and
the sliders' echo of snapped values, driven headlessly."""

from __future__ import annotations

import math

import pytest

from minidiff.viz import ScheduleExplorer, schedule_explorer


@pytest.fixture
def ex() -> ScheduleExplorer:
    return ScheduleExplorer("moons", n=200, seed=0, T=200, t=50, render=False)


def test_widget_carries_the_contract_classes(ex: ScheduleExplorer) -> None:
    assert "minidiff-widget" in ex.widget._dom_classes
    assert "minidiff-view" in ex.image._dom_classes
    assert "minidiff-message" in ex.message._dom_classes
    assert "minidiff-readout" in ex.readout_widget._dom_classes
    assert all("minidiff-control" in c._dom_classes for c in ex.controls.values())
    assert ex.message.value == ""
    assert "t = 50" in ex.readout_widget.value


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"t": "x"}, "t must be an int"),
        ({"t": None}, "t must be an int"),
        ({"t": 2.5}, "t must be an int"),
        ({"T": 0}, "T must be >= 1"),
        ({"beta_start": float("nan")}, "beta_start"),
        ({"beta_start": 0.05, "beta_end": 0.01}, "beta_end"),
    ],
)
def test_bad_values_show_a_message_instead_of_raising(
    ex: ScheduleExplorer, change: dict[str, object], words: str
) -> None:
    st = ex.update(family="linear", **change)
    assert st["message"] is not None and words in st["message"]
    assert words.split()[0] in ex.message.value
    assert ex.readout_widget.value == ""
    good = ex.update(t=10, T=200, beta_start=1e-4, beta_end=0.02)
    assert good["message"] is None and ex.message.value == ""


def test_unknown_parameter_names_still_raise(ex: ScheduleExplorer) -> None:
    with pytest.raises(ValueError, match="unknown explorer parameter"):
        ex.update(beta=0.1)


def _from_browser(ex: ScheduleExplorer, name: str, value: object) -> None:
    """What the front end does when a slider reports a value: set the trait, callbacks fire."""
    ex.controls[name].value = value


def test_snapped_echo_of_a_log_slider_keeps_the_exact_value(ex: ScheduleExplorer) -> None:
    ex.update(family="linear", beta_end=0.02)
    _from_browser(ex, "beta_end", 10**-1.7)  # 0.01995: the log slider's grid point
    assert ex.params["beta_end"] == 0.02
    _from_browser(ex, "beta_end", 10**-1.6)  # one step up: a real move
    assert math.isclose(ex.params["beta_end"], 10**-1.6)
    assert ex.state["message"] is None


def test_late_echo_cannot_bring_back_an_invalid_range(ex: ScheduleExplorer) -> None:
    """Chapter 1's old defect: the log sliders echoed a snapped beta_start=0.0501 after the range
    had been restored, and the widget stayed on 'beta_end must be >= beta_start'. The notebook no
    longer pushes that range into the live widget; a student who does sees the message, and the
    next move of a beta slider recovers."""
    st = ex.update(family="linear", beta_start=0.05, beta_end=0.01)
    assert st["message"] is not None
    ex.update(beta_start=1e-4, beta_end=0.02)
    assert ex.state["message"] is None
    _from_browser(ex, "beta_end", 10**-1.7)  # the echo of the restored value: ignored
    assert ex.state["message"] is None and ex.params["beta_end"] == 0.02


def test_float_slider_echo_within_half_a_step_is_ignored(ex: ScheduleExplorer) -> None:
    ex.update(family="cosine", s=0.008)
    _from_browser(ex, "s", 0.008 + 1e-12)
    assert ex.params["s"] == 0.008
    _from_browser(ex, "s", 0.010)
    assert ex.params["s"] == 0.010


# 14 values of kinds the controls never send (a script's update() can): none may escape update().
ODD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e400, 10**400, -(10**400), None, "x",
              [1], {"a": 1}, (), object(), True, 2.5]  # fmt: skip


def test_update_never_raises_on_odd_values(ex: ScheduleExplorer) -> None:
    good = dict(ex.params)
    for name in ScheduleExplorer.PARAMS:
        for value in ODD_VALUES:
            st = ex.update(**{name: value})  # must not raise
            assert isinstance(st.get("message"), (str, type(None)))
        assert ex.update(**good)["message"] is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"family": "Cosine"}, "family must be one of"),
        ({"beta_start": "a"}, "beta_start must be a real number"),
        ({"t": "a"}, "t must be an int"),
        ({"t": 2.5}, "t must be an int"),
    ],
)
def test_a_bad_keyword_of_the_constructor_shows_the_message_like_update(
    kwargs: dict[str, object], words: str
) -> None:
    ex = ScheduleExplorer("moons", n=50, T=50, render=False, **kwargs)  # type: ignore[arg-type]
    assert words in ex.state["message"] and words in ex.message.value
    assert ex.controls["family"].value in ex.controls["family"].options  # a valid value shown


@pytest.mark.parametrize(("T", "t"), [(50, 0), (50, 500), (50, -1), (50, 51)])
def test_a_t_given_outside_1_to_T_is_the_message_not_clamped(T: int, t: int) -> None:
    ex = ScheduleExplorer(n=50, T=T, t=t, render=False)
    words = f"Invalid t: t must be an int in 1..T={T}, got {t}"
    assert ex.state["message"] == words and ex.state["x_t"] is None
    assert ex.params["t"] == t and "1..T=50" in ex.message.value
    assert ex.update(t=3)["message"] is None
    assert ex.update(t=t)["message"] == words


def test_t_follows_a_shrinking_T_and_its_default_a_small_T() -> None:
    ex = ScheduleExplorer(n=50, T=50, render=False)  # t left at its default 100
    assert ex.state["message"] is None and ex.params["t"] == 50 and type(ex.params["t"]) is int
    ex.update(t=40)
    ex.controls["T"].value = 20  # the T slider moved below t: t follows
    assert ex.state["message"] is None and ex.params["t"] == 20 and ex.controls["t"].value == 20
    ex.update(T=200)  # T grows: t stays
    assert ex.params["t"] == 20
    st = ex.update(T=10, t=15)  # t given with T: checked, not moved
    assert st["message"] == "Invalid t: t must be an int in 1..T=10, got 15"
    assert ScheduleExplorer(n=50, render=False).params["t"] == 100  # the default under T = 1000


@pytest.mark.parametrize("factory", [ScheduleExplorer, schedule_explorer])
def test_a_bad_dataset_is_named_as_dataset(factory: object) -> None:
    with pytest.raises(TypeError, match=r"dataset must be one of \['moons'"):
        factory(3, n=50, T=50, t=5, render=False)  # type: ignore[operator]
    with pytest.raises(ValueError, match="dataset must be one of"):
        factory(dataset="moon", n=50, T=50, t=5, render=False)  # type: ignore[operator]


@pytest.mark.parametrize(("T", "t"), [(5000, 3000), (5, 3), (1, 1)])
def test_a_valid_value_outside_a_slider_is_shown_not_clamped(T: int, t: int) -> None:
    ex = ScheduleExplorer("moons", n=50, T=T, t=t, render=False)
    assert ex.state["message"] is None and ex.state["curves"]["schedule"].T == T
    assert ex.controls["T"].value == T and ex.controls["t"].value == t
    ex.update(beta_start=1e-6)  # below the log slider's range
    assert ex.state["message"] is None and ex.controls["beta_start"].value == pytest.approx(1e-6)
    ex.update(beta_start=0.5)  # invalid (beta_end below it): the slider keeps its value
    assert ex.state["message"] is not None and ex.controls["beta_start"].value == pytest.approx(
        1e-6
    )
