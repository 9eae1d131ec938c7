"""Plot helpers (smoke tests on Agg) and the schedule explorer driven headlessly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minidiff import cosine_schedule, linear_schedule, make_schedule  # noqa: E402
from minidiff.viz import (  # noqa: E402
    ScheduleExplorer,
    plot_loss,
    plot_sample_grid,
    plot_samples,
    plot_schedules,
    plot_trajectories,
    schedule_curves,
    schedule_explorer,
)


@pytest.fixture(autouse=True)
def _close_figures():  # type: ignore[no-untyped-def]
    yield
    plt.close("all")


def _cloud(n: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def test_plot_samples_draws_the_points() -> None:
    x = _cloud()
    ax = plot_samples(x, title="noise", lim=3)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(offsets), x.numpy(), rtol=1e-6)
    assert ax.get_title() == "noise" and ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_xlim() == (-3, 3)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_samples(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="x"):
        plot_samples([[0.0, 1.0]])  # type: ignore[arg-type]


def test_plot_sample_grid_one_panel_per_cloud() -> None:
    fig = plot_sample_grid([_cloud(seed=i) for i in range(3)], ["a", "b", "c"], lim=2)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="titles"):
        plot_sample_grid([_cloud()], ["a", "b"])


def test_plot_trajectories() -> None:
    traj = [_cloud(20, seed=i) * (1 - i / 5) for i in range(6)]
    ax = plot_trajectories(traj, n_paths=7)
    assert len(ax.lines) == 7
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [float(x[0, 0]) for x in traj], rtol=1e-6)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"start", "end"}
    with pytest.raises(ValueError, match="traj"):
        plot_trajectories(traj[:1])
    with pytest.raises(ValueError, match="n_paths"):
        plot_trajectories(traj, n_paths=0)


def test_plot_schedules_curves_and_labels() -> None:
    scheds = {"linear": linear_schedule(100), "cosine": cosine_schedule(50)}
    axes = plot_schedules(scheds)
    assert len(axes) == 3
    for ax in axes:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["linear", "cosine"]
        assert ax.get_title() and ax.get_xlabel() == "$t / T$"
    np.testing.assert_allclose(axes[0].lines[1].get_ydata(), scheds["cosine"].alpha_bar.numpy())
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), scheds["linear"].betas.numpy()[1:])
    assert np.isnan(axes[2].lines[0].get_ydata()[0])  # log-SNR(0) = +inf is not drawn
    with pytest.raises(TypeError, match="schedules"):
        plot_schedules({"bad": np.ones(3)})  # type: ignore[dict-item]


def test_plot_loss_with_moving_average() -> None:
    losses = np.linspace(2.0, 1.0, 200) + 0.1 * np.sin(np.arange(200))
    ax = plot_loss(losses, smooth=20)
    raw, avg = ax.lines
    assert len(raw.get_ydata()) == 200 and len(avg.get_ydata()) == 181
    assert avg.get_ydata()[0] == pytest.approx(losses[:20].mean())
    assert np.std(np.diff(avg.get_ydata())) < np.std(np.diff(losses))  # smoother
    with pytest.raises(ValueError, match="smooth"):
        plot_loss(losses, smooth=0)
    with pytest.raises(ValueError, match="losses"):
        plot_loss([])


def test_schedule_curves_match_make_schedule() -> None:
    c = schedule_curves("cosine", 300, s=0.02)
    ref = make_schedule("cosine", 300, s=0.02)
    np.testing.assert_allclose(c["alpha_bar"], ref.alpha_bar.numpy())
    np.testing.assert_allclose(c["beta"], ref.betas.numpy())
    assert c["t"].tolist() == list(range(301)) and np.isinf(c["log_snr"][0])
    lin = schedule_curves("linear", 10, beta_start=1e-3, beta_end=0.1)
    assert lin["beta"][1] == pytest.approx(1e-3) and lin["beta"][-1] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="family"):
        schedule_curves("exponential", 10)


@pytest.mark.parametrize(
    ("kwargs", "exc", "start"),
    [
        ({"family": ["linear"]}, TypeError, "family must be one of"),
        ({"family": 3}, TypeError, "family must be one of"),
        ({"beta_start": "x"}, TypeError, "beta_start must be a real number"),
        ({"beta_end": None}, TypeError, "beta_end must be a real number"),
        ({"s": float("nan")}, ValueError, "s must be a finite number"),
        ({"T": "50"}, TypeError, "T must be an int"),
        ({"T": 0}, ValueError, "T must be >= 1"),
    ],
)
def test_schedule_curves_names_a_bad_argument(
    kwargs: dict[str, object], exc: type, start: str
) -> None:
    args: dict[str, object] = {"family": "linear", "T": 50, **kwargs}
    with pytest.raises(exc) as info:
        schedule_curves(**args)  # type: ignore[arg-type]
    assert str(info.value).startswith(start), info.value


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [({"seed": 1.5}, TypeError), ({"seed": None}, TypeError), ({"seed": -1}, ValueError),
     ({"n": 0}, ValueError), ({"render": "no"}, TypeError)],
)  # fmt: skip
def test_schedule_explorer_constructor_names_a_bad_argument(
    kwargs: dict[str, object], exc: type
) -> None:
    with pytest.raises(exc) as info:
        ScheduleExplorer("moons", T=50, **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(next(iter(kwargs))), info.value


@pytest.fixture(scope="module")
def explorer() -> ScheduleExplorer:
    return ScheduleExplorer("moons", n=400, seed=0, T=200, t=1, render=False)


def test_explorer_noised_points_move_away_from_data(explorer: ScheduleExplorer) -> None:
    x0 = explorer.x0
    dist, corr = [], []
    for t in (1, 50, 200):
        st = explorer.update(family="linear", t=t)
        x_t = st["x_t"]
        assert x_t.shape == x0.shape and st["message"] is None
        # the state is exactly q_sample with the explorer's fixed noise
        ab = explorer.state["curves"]["alpha_bar"][t]
        torch.testing.assert_close(x_t, ab**0.5 * x0 + (1 - ab) ** 0.5 * explorer.noise)
        dist.append(float((x_t - x0).norm(dim=1).mean()))
        corr.append(float(torch.corrcoef(torch.stack([x_t[:, 0], x0[:, 0]]))[0, 1]))
        scatter = explorer.figure.axes[3].collections[0].get_offsets()
        np.testing.assert_allclose(np.asarray(scatter), x_t.numpy(), rtol=1e-6)
    assert dist[0] < dist[1] < dist[2]
    assert corr[0] > 0.95 and corr[2] < 0.3
    assert explorer.controls["t"].value == 200


def test_explorer_curves_follow_the_schedule(explorer: ScheduleExplorer) -> None:
    png_before = explorer.image.value
    explorer.render = True
    try:
        st = explorer.update(family="cosine", T=120, t=60, s=0.02)
    finally:
        explorer.render = False
    ref = make_schedule("cosine", 120, s=0.02)
    ab_line = explorer.figure.axes[0].lines[0]
    np.testing.assert_allclose(ab_line.get_ydata(), ref.alpha_bar.numpy())
    marker = explorer.figure.axes[0].lines[1]
    assert marker.get_xdata()[0] == 60 and marker.get_ydata()[0] == pytest.approx(
        float(ref.alpha_bar[60])
    )
    assert st["params"]["family"] == "cosine" and explorer.controls["family"].value == "cosine"
    assert explorer.controls["t"].max == 120
    assert explorer.image.value != png_before and explorer.image.value[:4] == b"\x89PNG"
    # t is clamped when T shrinks below it
    st = explorer.update(T=40)
    assert st["params"]["t"] == 40 and explorer.controls["t"].value == 40


def test_explorer_invalid_range_shows_message(explorer: ScheduleExplorer) -> None:
    st = explorer.update(family="linear", T=100, beta_start=0.05, beta_end=0.01)
    assert st["x_t"] is None and "beta_end" in st["message"]
    assert "beta_end" in explorer.message.value
    assert "beta_end" in explorer.figure.axes[0].texts[0].get_text()
    st = explorer.update(beta_start=1e-4, beta_end=0.02)  # back to a valid range
    assert st["message"] is None and explorer.message.value == ""
    with pytest.raises(ValueError, match="unknown"):
        explorer.update(gamma=1.0)


def test_explorer_widget_controls_drive_the_callback(explorer: ScheduleExplorer) -> None:
    import ipywidgets as w

    explorer.update(family="linear", T=100, t=10)
    x_early = explorer.state["x_t"].clone()
    explorer.controls["t"].value = 90  # what a slider move does
    assert explorer.params["t"] == 90
    assert float((explorer.state["x_t"] - explorer.x0).norm(dim=1).mean()) > float(
        (x_early - explorer.x0).norm(dim=1).mean()
    )
    explorer.controls["family"].value = "cosine"
    assert explorer.state["params"]["family"] == "cosine"
    assert explorer.controls["beta_start"].disabled and not explorer.controls["s"].disabled
    assert isinstance(explorer.widget, w.Widget)
    assert isinstance(schedule_explorer("circles", n=100, T=50, t=5, render=False), w.Widget)
