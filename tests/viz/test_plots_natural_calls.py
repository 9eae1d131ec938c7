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
