"""The guidance explorer driven headlessly: pure state, the widget contract, every control acts."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from minidiff import linear_schedule  # noqa: E402
from minidiff.data import LabelledGaussianMixture  # noqa: E402
from minidiff.guidance import classifier_free_guidance  # noqa: E402
from minidiff.viz import GuidanceExplorer, guided_samples, guided_score_field  # noqa: E402
from minidiff.viz.guidance_explorer import guided_eps_model  # noqa: E402

SCHED = linear_schedule(200, 5e-4, 0.1)
MIX = LabelledGaussianMixture.default_2d()


@pytest.fixture(scope="module")
def explorer() -> GuidanceExplorer:
    return GuidanceExplorer(MIX, SCHED, n=300, steps=20, render=True)


def test_state_is_the_pure_functions(explorer: GuidanceExplorer) -> None:
    st = explorer.update(w=2.0, y=1, form="classifier-free", sampler="ddim", steps=20)
    assert st["message"] is None and explorer.message.value == ""
    eps = classifier_free_guidance(MIX.cond_eps_model(SCHED), 1, 2.0, num_classes=3)
    ref = guided_samples(eps, SCHED, 300, "ddim", 20, torch.Generator().manual_seed(0))
    torch.testing.assert_close(st["samples"], ref)
    pts, score = guided_score_field(eps, SCHED, explorer.field_t)
    torch.testing.assert_close(st["field"][1], score)
    assert pts.shape == (225, 2)
    assert 0.0 <= st["accuracy"] <= 1.0 and abs(sum(st["shares"]) - 1.0) < 0.05


def test_the_shares_are_fractions_of_all_samples(explorer: GuidanceExplorer) -> None:
    st = explorer.update(w=0.0, y=0, form="classifier", sampler="ddim", steps=20)
    x = st["samples"].double()
    owner = MIX.mixture.responsibilities(x, 1.0, 0.0).argmax(1)
    claimed = float((MIX.labels[owner] == 0).double().mean())  # best explained by class 0
    assert claimed < 0.9  # w = 0 of classifier guidance: unconditional, many samples elsewhere
    assert abs(sum(st["shares"]) - claimed) < 1e-12
    assert "share of all samples per component" in explorer.readout()


def test_classifier_guidance_states_its_offset_from_classifier_free(
    explorer: GuidanceExplorer,
) -> None:
    explorer.update(w=2.0, y=0, form="classifier", sampler="ddim", steps=20)
    assert "classifier-free guidance at w − 1 = 1" in explorer.readout()
    assert "w = 0 is the unconditional model" in explorer.readout()
    st = explorer.update(w=-1.0)
    assert "0 = the unconditional model" in st["message"], st["message"]
    st = explorer.update(w=-1.0, form="classifier-free")
    assert "0 = the conditional model" in st["message"], st["message"]
    explorer.update(w=2.0)
    assert "w − 1" not in explorer.readout()


def test_guidance_sharpens_the_class(explorer: GuidanceExplorer) -> None:
    low = explorer.update(w=0.0, y=0, form="classifier-free")
    acc0, shares0 = low["accuracy"], low["shares"]
    high = explorer.update(w=6.0)
    # larger weight: at least as accurate, and the component next to class 1 loses its share
    assert high["accuracy"] >= acc0 - 0.01
    assert high["shares"][1] < shares0[1] - 0.1, (shares0, high["shares"])


def test_widget_contract_and_every_control_changes_the_view(explorer: GuidanceExplorer) -> None:
    w = explorer.widget
    assert "minidiff-widget" in w._dom_classes
    assert "minidiff-view" in explorer.image._dom_classes
    assert "minidiff-message" in explorer.message._dom_classes
    assert "minidiff-readout" in explorer.readout_widget._dom_classes
    assert set(explorer.controls) == set(GuidanceExplorer.PARAMS)
    explorer.update(w=1.0, y=0, form="classifier-free", sampler="ddim", steps=20)
    new_values = {"w": 3.0, "y": 2, "form": "classifier", "sampler": "ddpm", "steps": 30}
    for name, value in new_values.items():
        ctrl = explorer.controls[name]
        assert "minidiff-control" in ctrl._dom_classes
        before = (explorer.image.value, explorer.readout_widget.value)
        ctrl.value = value  # goes through the observer, as a student's click does
        assert explorer.params[name] == value
        after = (explorer.image.value, explorer.readout_widget.value)
        assert after[0] != before[0] or after[1] != before[1], name
        assert explorer.message.value == ""


def test_invalid_settings_show_a_message_not_an_exception(explorer: GuidanceExplorer) -> None:
    st = explorer.update(w=-1.0)
    assert st["message"] and "w must be" in explorer.message.value
    assert explorer.readout_widget.value == ""
    st = explorer.update(w=1.0, y=3)
    assert "null label" in st["message"]
    st = explorer.update(y=0)
    assert st["message"] is None and explorer.message.value == ""
    with pytest.raises(ValueError, match="unknown explorer parameter"):
        explorer.update(weight=1.0)


def test_guided_eps_model_forms() -> None:
    cond, clf = MIX.cond_eps_model(SCHED), MIX.classifier(SCHED)
    x = torch.randn(16, 2, dtype=torch.float64)
    t = torch.full((16,), 50)
    cg = guided_eps_model("classifier", cond, clf, SCHED, 0, 1.0, 3)(x, t)
    torch.testing.assert_close(
        cg, cond(x, t, torch.zeros(16, dtype=torch.long)), rtol=1e-7, atol=1e-9
    )
    with pytest.raises(ValueError, match="form"):
        guided_eps_model("implicit", cond, clf, SCHED, 0, 1.0, 3)
    with pytest.raises(ValueError, match="sampler"):
        guided_samples(lambda x, t: x, SCHED, 10, "heun", 10)


def test_guided_score_field_without_guidance_is_the_exact_conditional_score() -> None:
    eps = classifier_free_guidance(MIX.cond_eps_model(SCHED), 2, 0.0, num_classes=3)
    pts, score = guided_score_field(eps, SCHED, 40, lim=2.5, grid=9)
    assert pts.shape == score.shape == (81, 2)
    a, s = SCHED.sqrt_alpha_bar[40].item(), SCHED.sqrt_one_minus_alpha_bar[40].item()
    exact = MIX.cond_score(pts.double(), 2, a, s)
    torch.testing.assert_close(score.double(), exact, rtol=1e-4, atol=1e-4)


def test_trained_models_are_drawn_too() -> None:
    # nn.Module models return tensors that require grad; the field used to be drawn from one.
    from minidiff.nn.conditional import ConditionalTimeMLP, NoisyClassifier

    torch.manual_seed(0)
    cond, clf = ConditionalTimeMLP(MIX.num_classes), NoisyClassifier(MIX.num_classes)
    with torch.no_grad():
        for p in clf.parameters():  # a classifier that has learnt something: non-zero output layer
            p.add_(0.1 * torch.randn_like(p))
    ex = GuidanceExplorer(MIX, SCHED, cond_model=cond, classifier=clf, n=50, steps=5, render=True)
    for form in ("classifier-free", "classifier"):
        st = ex.update(form=form, w=2.0)
        assert st["message"] is None and not st["field"][1].requires_grad, form
        assert len(ex.image.value) > 0


# 14 values of kinds the controls never send (a script's update() can): none may escape update().
ODD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e400, 10**400, -(10**400), None, "x",
              [1], {"a": 1}, (), object(), True, 2.5]  # fmt: skip


def test_update_never_raises_on_odd_values(explorer: GuidanceExplorer) -> None:
    for name in GuidanceExplorer.PARAMS:
        for value in ODD_VALUES:
            st = explorer.update(**{name: value})  # must not raise
            assert isinstance(st.get("message"), (str, type(None)))
        explorer.update(w=1.0, y=0, form="classifier-free", sampler="ddim", steps=20)
        assert explorer.state["message"] is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"y": 3}, "null label"),
        ({"form": "cfg"}, "form must be one of"),
        ({"sampler": "heun"}, "sampler must be one of"),
        ({"w": "2"}, "w must be"),
        ({"steps": None}, "steps"),
    ],
)
def test_a_bad_keyword_of_the_constructor_shows_the_message_like_update(
    kwargs: dict[str, object], words: str
) -> None:
    ex = GuidanceExplorer(MIX, SCHED, n=20, render=False, **kwargs)  # type: ignore[arg-type]
    assert words in ex.state["message"] and ex.message.value != ""
    for name in ("y", "form", "sampler"):  # the dropdowns start on a valid choice
        assert ex.controls[name].value in [
            o[1] if isinstance(o, tuple) else o for o in ex.controls[name].options
        ]


def test_a_valid_value_outside_a_slider_is_shown_not_clamped() -> None:
    ex = GuidanceExplorer(MIX, SCHED, n=20, w=20.0, steps=3, render=False)
    assert ex.state["message"] is None
    assert ex.controls["w"].value == 20.0 and ex.controls["steps"].value == 3
    ex.update(w=-1.0)  # invalid: the slider is not stretched to show it
    assert ex.state["message"] is not None and ex.controls["w"].min == 0.0


def _eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return x


FIELD = {"eps_model": _eps, "schedule": SCHED, "t": 10}
SAMPLES = {"eps_model": _eps, "schedule": SCHED, "n": 4, "steps": 5}
EXPLORER = {"mixture": MIX, "schedule": SCHED, "n": 4, "render": False}


_BAD = [  # (function, good kwargs, argument, bad value, exception)
    *[
        (guided_score_field, FIELD, arg, value, exc)
        for arg, value, exc in [
            ("t", 2.7, TypeError), ("t", 0, ValueError), ("t", 201, ValueError),
            ("lim", -1.0, ValueError), ("lim", 0, ValueError), ("lim", "3", TypeError),
            ("grid", 0, ValueError), ("grid", 1, ValueError), ("grid", 2.5, TypeError),
            ("grid", -2, ValueError), ("schedule", None, TypeError), ("eps_model", 3, TypeError),
        ]
    ],
    *[
        (guided_samples, SAMPLES, arg, value, exc)
        for arg, value, exc in [
            ("n", 0, ValueError), ("n", 2.7, TypeError), ("steps", 2.0, TypeError),
            ("steps", 0, ValueError), ("steps", 201, ValueError), ("sampler", "heun", ValueError),
            ("sampler", 3, TypeError), ("schedule", None, TypeError), ("generator", 0, TypeError),
        ]
    ],
    *[
        (GuidanceExplorer, EXPLORER, arg, value, exc)
        for arg, value, exc in [
            ("n", 2.7, TypeError), ("n", 0, ValueError), ("seed", None, TypeError),
            ("seed", -1, ValueError), ("field_t", 2.7, TypeError), ("field_t", 0, ValueError),
            ("field_t", 201, ValueError), ("mixture", "x", TypeError), ("schedule", "x", TypeError),
            ("cond_model", 3, TypeError), ("render", "no", TypeError),
        ]
    ],
]  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "good", "arg", "value", "exc"),
    _BAD,
    ids=[f"{c[0].__name__}-{c[2]}-{c[3]!r}" for c in _BAD],
)
def test_bad_arguments_are_refused_naming_them(
    fn: Any, good: dict[str, Any], arg: str, value: Any, exc: type
) -> None:
    fn(**good)  # the good call runs
    with pytest.raises((TypeError, ValueError)) as info:
        fn(**{**good, arg: value})
    assert isinstance(info.value, exc) and str(info.value).startswith(arg), info.value


def test_a_model_with_other_classes_than_the_mixture_is_named() -> None:
    from minidiff.nn.conditional import ConditionalTimeMLP

    with pytest.raises(ValueError, match=r"^cond_model has 5 classes .* the mixture has 3"):
        GuidanceExplorer(MIX, SCHED, cond_model=ConditionalTimeMLP(5), n=4, render=False)
