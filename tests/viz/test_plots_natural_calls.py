"""Plot helpers called as a student calls them: one schedule, states of another size, a number
where a pair belongs, another file type."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from minidiff import linear_schedule  # noqa: E402
from minidiff.viz import plot_samples, plot_schedules, plot_trajectories, save_image_grid  # noqa: E402


def test_plot_schedules_takes_one_schedule_and_names_a_list() -> None:
    assert len(plot_schedules(linear_schedule(50))) == 3
    with pytest.raises(TypeError, match="schedules must be a NoiseSchedule or a mapping"):
        plot_schedules([linear_schedule(50)])  # type: ignore[arg-type]


def test_plot_trajectories_names_the_state_of_another_shape_and_checks_n_paths() -> None:
    with pytest.raises(ValueError, match=r"traj\[1\] is \(4, 2\)"):
        plot_trajectories([torch.randn(5, 2), torch.randn(4, 2)])
    with pytest.raises(TypeError, match="n_paths must be an int"):
        plot_trajectories([torch.randn(5, 2)] * 2, n_paths="10")  # type: ignore[arg-type]


def test_plot_samples_names_a_bad_lim() -> None:
    with pytest.raises(TypeError, match="lim must be a number"):
        plot_samples(torch.randn(5, 2), lim="3")  # type: ignore[arg-type]


def test_save_image_grid_writes_a_png_only(tmp_path: Path) -> None:
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    with pytest.raises(ValueError, match=r"path must end in .png"):
        save_image_grid(images, tmp_path / "out" / "a.jpg")
    assert not (tmp_path / "out").exists()  # refused before any folder was made
    path = save_image_grid(images, tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_schedules_takes_axes_as_plt_subplots_gives_them() -> None:
    import matplotlib.pyplot as plt

    _, grid = plt.subplots(1, 3, squeeze=False)  # a (1, 3) array
    assert len(plot_schedules(linear_schedule(50), axes=grid)) == 3
    _, one = plt.subplots()
    with pytest.raises(ValueError, match=r"axes must hold 3 Axes .* got 1"):
        plot_schedules(linear_schedule(50), axes=one)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"axes\[2\] must be a matplotlib Axes"):
        plot_schedules(linear_schedule(50), axes=[*grid[0, :2], "x"])  # type: ignore[list-item]
    plt.close("all")


def test_plot_sample_grid_names_the_cloud_and_the_panel_size() -> None:
    from minidiff.viz import plot_sample_grid

    x = torch.randn(5, 2)
    with pytest.raises(TypeError, match=r"^xs must be a sequence of \(N, 2\) point clouds"):
        plot_sample_grid(x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^xs\[1\] must have shape \(N, 2\), got \(5, 3\)"):
        plot_sample_grid([x, torch.randn(5, 3)])
    for bad, exc in ((0, ValueError), (-1.0, ValueError), ("2", TypeError)):
        with pytest.raises(exc, match="^panel_size"):
            plot_sample_grid([x], panel_size=bad)  # type: ignore[arg-type]


def test_plot_trajectories_reads_an_iterator_and_plot_loss_names_losses() -> None:
    from minidiff.viz import plot_loss

    ax = plot_trajectories(iter([torch.randn(5, 2), torch.randn(5, 2)]))
    assert len(ax.lines) == 5
    with pytest.raises(TypeError, match="^losses must be a 1-D sequence of numbers"):
        plot_loss(["a", "b"])  # type: ignore[list-item]


def test_non_finite_points_are_refused_not_left_out_of_the_plot() -> None:
    with pytest.raises(ValueError, match=r"^x contains non-finite values .* in 5 of its 5 points"):
        plot_samples(torch.full((5, 2), float("nan")))
    partly = torch.randn(6, 2)
    partly[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"^traj\[1\] contains non-finite values .* 1 of its 6"):
        plot_trajectories([torch.randn(6, 2), partly])


def test_states_and_clouds_stacked_in_one_tensor_or_array_are_plotted() -> None:
    # a stacked (K, N, 2) tensor or array was refused with a TypeError; it used to be plotted
    import numpy as np

    from minidiff.viz import plot_sample_grid

    pts = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    for stacked in (torch.stack([pts, pts + 1, pts + 2]), np.stack([pts.numpy()] * 3)):
        ax = plot_trajectories(stacked, n_paths=4)
        assert len(ax.lines) == 4 and ax.get_title() == "Trajectories (4 paths, 3 states)"
        assert np.allclose(ax.lines[0].get_xydata(), np.asarray(stacked)[:, 0])
        fig = plot_sample_grid(stacked[:2])
        assert len(fig.axes) == 2
    for bad in (pts, pts[None, None], "xy"):
        with pytest.raises(TypeError, match=r"^traj must be a sequence of \(N, 2\) states"):
            plot_trajectories(bad)  # type: ignore[arg-type]
    matplotlib.pyplot.close("all")


def test_plot_loss_plots_a_history_of_loss_tensors_that_require_grad() -> None:
    from minidiff.viz import plot_loss

    w = torch.tensor(1.0, requires_grad=True)
    history = [w * 2, w * 3, (w * 4).reshape(1)]
    ax = plot_loss(history, smooth=1)
    assert ax.lines[0].get_ydata().tolist() == [2.0, 3.0, 4.0]
    matplotlib.pyplot.close("all")
