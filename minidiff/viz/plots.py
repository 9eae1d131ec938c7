"""Plotting helpers.

Every helper is a pure function of its inputs that draws on a matplotlib ``Axes`` (made with
``plt.subplots`` when none is given) and returns it, so notebooks compose them and tests inspect the
artists. The explorer is a thin ipywidgets layer over the pure :func:`schedule_curves` and
:meth:`ScheduleExplorer.update`; it draws on a ``matplotlib.figure.Figure`` that is not registered
with pyplot and shows it as a PNG ``Image`` widget, so it works (and is tested) without a display.

Shapes: toy data ``x: (N, 2)``; a trajectory is a list of ``(N, 2)`` tensors ordered in time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._validation import check_number, check_positive_int, describe
from ..schedules import NoiseSchedule

__all__ = [
    "plot_samples",
    "plot_sample_grid",
    "plot_trajectories",
    "plot_schedules",
    "plot_loss",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _points(x: object, name: str = "x") -> np.ndarray:
    """``x`` as a float numpy array of shape ``(N, 2)`` of finite numbers (matplotlib would leave
    NaN and inf points out of the picture without a word); raise naming ``name`` otherwise."""
    if isinstance(x, torch.Tensor):
        arr = x.detach().cpu().double().numpy()
    elif isinstance(x, np.ndarray):
        arr = x.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array of shape (N, 2), got {type(x).__name__}"
        )
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise ValueError(
            f"{name} contains non-finite values (NaN or inf) in {bad} of its {arr.shape[0]} "
            "points; expected finite numbers (a plot would leave them out silently)"
        )
    return arr


def _stack_items(seq: object, name: str, what: str) -> list[Any]:
    """The items of ``seq``, read once: a sequence or iterator of ``(N, 2)`` ``what``, or one
    stacked tensor or array ``(K, N, 2)`` (its first axis). A string, a non-iterable, or a tensor
    or array of another number of dimensions raise a ``TypeError`` naming ``name``."""
    if isinstance(seq, (torch.Tensor, np.ndarray)) and seq.ndim == 3:
        return list(seq)
    if isinstance(seq, (torch.Tensor, np.ndarray, str)) or not hasattr(seq, "__iter__"):
        hint = " (for one cloud pass [x])" if name == "xs" else ""
        raise TypeError(
            f"{name} must be a sequence of (N, 2) {what}{hint} or one stacked (K, N, 2) tensor "
            f"or array, got {describe(seq)}"
        )
    return list(seq)


def _set_lim(ax: Axes, lim: float | tuple[float, float] | None) -> None:
    if lim is None:
        return
    if isinstance(lim, (tuple, list)) and len(lim) == 2:
        lo, hi = check_number(lim[0], "lim[0]"), check_number(lim[1], "lim[1]")
    elif isinstance(lim, (tuple, list, str)):
        raise TypeError(f"lim must be a number L (view [-L, L]²) or a pair (lo, hi), got {lim!r}")
    else:
        L = check_number(lim, "lim", low=0.0)
        lo, hi = -L, L
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


def _new_ax(ax: Axes | None, figsize: tuple[float, float] = (4.0, 4.0)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_samples(
    x: torch.Tensor | np.ndarray,
    ax: Axes | None = None,
    title: str | None = None,
    s: float = 2,
    alpha: float = 0.5,
    lim: float | tuple[float, float] | None = None,
    **scatter_kw: Any,
) -> Axes:
    """Scatter a 2D point cloud ``x: (N, 2)`` with equal axis scales.

    ``lim=L`` fixes the view to ``[-L, L]²`` (or ``lim=(lo, hi)``).
    """
    pts = _points(x)
    ax = _new_ax(ax)
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, linewidths=0, **scatter_kw)
    _set_lim(ax, lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_sample_grid(
    xs: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    lim: float | tuple[float, float] | None = None,
    panel_size: float = 2.6,
    suptitle: str | None = None,
    **kw: Any,
) -> Figure:
    """A row of :func:`plot_samples` panels, one per ``(N, 2)`` cloud in ``xs`` (a list of clouds,
    or one stacked ``(K, N, 2)`` tensor or array; for one cloud pass ``[x]``), each
    ``panel_size > 0`` inches wide."""
    items = _stack_items(xs, "xs", "point clouds")
    clouds = [_points(x, f"xs[{i}]") for i, x in enumerate(items)]
    if len(clouds) == 0:
        raise ValueError("xs must hold at least one (N, 2) point cloud")
    if titles is not None and len(titles) != len(clouds):
        raise ValueError(f"titles must have one entry per panel ({len(clouds)}), got {len(titles)}")
    panel_size = check_number(panel_size, "panel_size", low=0.0)
    fig, axes = plt.subplots(
        1, len(clouds), figsize=(panel_size * len(clouds), panel_size + 0.4), squeeze=False
    )
    for i, (x, ax) in enumerate(zip(clouds, axes[0], strict=True)):
        plot_samples(x, ax=ax, title=None if titles is None else titles[i], lim=lim, **kw)
        if i > 0:
            ax.set_ylabel("")
    if suptitle is not None:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_trajectories(
    traj: Sequence[torch.Tensor | np.ndarray],
    n_paths: int = 50,
    ax: Axes | None = None,
    title: str | None = "Trajectories",
    lim: float | tuple[float, float] | None = None,
) -> Axes:
    """Draw the paths of the first ``n_paths`` points through a trajectory ``[x_first, …, x_last]``.

    ``traj`` is a list of ``(N, 2)`` states ordered in time (e.g. ``minidiff.trajectory(ddpm_sample,
    ...)`` gives ``[x_T, …, x_0]``), or the states stacked in one ``(S, N, 2)`` tensor or array.
    Starts are grey, ends are coloured.
    """
    traj = _stack_items(traj, "traj", "states")  # an iterator (of states) is read once
    if len(traj) < 2:
        raise ValueError(f"traj must hold at least 2 states, got {len(traj)}")
    n_paths = check_positive_int(n_paths, "n_paths")
    states = [_points(x, f"traj[{i}]") for i, x in enumerate(traj)]
    odd = next((i for i, p in enumerate(states) if p.shape != states[0].shape), None)
    if odd is not None:
        raise ValueError(
            f"every state in traj must have the same shape (N, 2): traj[0] is "
            f"{states[0].shape}, traj[{odd}] is {states[odd].shape}"
        )
    steps = np.stack(states)  # (S, N, 2)
    ax = _new_ax(ax)
    k = min(n_paths, steps.shape[1])
    for j in range(k):
        ax.plot(steps[:, j, 0], steps[:, j, 1], color="tab:blue", lw=0.6, alpha=0.5)
    ax.scatter(steps[0, :k, 0], steps[0, :k, 1], s=8, color="0.5", label="start", zorder=3)
    ax.scatter(steps[-1, :k, 0], steps[-1, :k, 1], s=8, color="tab:red", label="end", zorder=3)
    _set_lim(ax, lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.legend(loc="upper right", fontsize="small")
    if title is not None:
        ax.set_title(f"{title} ({k} paths, {len(traj)} states)")
    return ax


def _finite_log_snr(schedule: NoiseSchedule) -> np.ndarray:
    ls = schedule.log_snr.numpy().copy()
    ls[0] = np.nan  # log-SNR is +inf at t = 0 (clean data); leave it out of plots
    return ls


def plot_schedules(
    schedules: Mapping[str, NoiseSchedule] | NoiseSchedule, axes: Sequence[Axes] | None = None
) -> Sequence[Axes]:
    """Plot ``alpha_bar_t``, ``beta_t`` and ``log SNR(t)`` against ``t/T`` for each named schedule
    (or for one schedule).

    Time is shown as ``t / T`` so schedules with different ``T`` share an axis. Returns the 3 axes.
    """
    if isinstance(schedules, NoiseSchedule):
        schedules = {f"T={schedules.T}": schedules}
    if not isinstance(schedules, Mapping):
        raise TypeError(
            "schedules must be a NoiseSchedule or a mapping {name: NoiseSchedule}, got "
            f"{type(schedules).__name__}"
        )
    if not schedules:
        raise ValueError("schedules must name at least one NoiseSchedule")
    for name, sch in schedules.items():
        if not isinstance(sch, NoiseSchedule):
            raise TypeError(
                f"schedules[{name!r}] must be a NoiseSchedule, got {type(sch).__name__}"
            )
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes = list(np.ravel(np.asarray(axes, dtype=object)))  # one Axes, a list, a (1, 3) array
    if len(axes) != 3:
        raise ValueError(f"axes must hold 3 Axes (alpha_bar, beta, log-SNR), got {len(axes)}")
    odd = next((i for i, ax in enumerate(axes) if not isinstance(ax, Axes)), None)
    if odd is not None:
        raise TypeError(f"axes[{odd}] must be a matplotlib Axes, got {describe(axes[odd])}")
    for name, sch in schedules.items():
        u = np.arange(sch.T + 1) / sch.T
        axes[0].plot(u, sch.alpha_bar.numpy(), label=name)
        axes[1].plot(u[1:], sch.betas.numpy()[1:], label=name)
        axes[2].plot(u, _finite_log_snr(sch), label=name)
    titles = (
        r"$\bar\alpha_t$ (signal kept)",
        r"$\beta_t$ (noise added per step)",
        r"$\log \mathrm{SNR}(t)$",
    )
    ylabels = (
        r"$\bar\alpha_t$",
        r"$\beta_t$ (log scale)",
        r"$\log(\bar\alpha_t / (1-\bar\alpha_t))$",
    )
    for ax, title, ylabel in zip(axes, titles, ylabels, strict=True):
        ax.set_title(title)
        ax.set_xlabel("$t / T$")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[1].set_yscale("log")
    fig = axes[0].get_figure()
    if isinstance(fig, Figure):
        fig.tight_layout()
    return axes


def _loss_value(v: object) -> object:
    """One entry of a loss history: a one-number tensor as a float (detached), anything else as
    it is (for ``np.asarray`` to read or refuse)."""
    if isinstance(v, torch.Tensor):
        return v.detach().reshape(()).item() if v.numel() == 1 else v.detach().cpu()
    return v


def plot_loss(
    losses: ArrayLike, ax: Axes | None = None, smooth: int = 50, title: str | None = "Training loss"
) -> Axes:
    """Plot a loss curve (faint) and its trailing moving average over ``smooth`` steps (solid).

    ``losses``: a 1-D tensor or array, or a sequence of numbers or of one-number tensors (a
    history of ``loss`` tensors, even ones that require grad, is read detached)."""
    if isinstance(losses, torch.Tensor):
        values: Any = losses.detach().cpu()
    elif isinstance(losses, (list, tuple)):
        values = [_loss_value(v) for v in losses]
    else:
        values = losses
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"losses must be a 1-D sequence of numbers, got {describe(losses)} {losses!r:.60}"
        ) from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D sequence, got shape {arr.shape}")
    smooth = check_positive_int(smooth, "smooth")
    ax = _new_ax(ax, (6.0, 3.5))
    steps = np.arange(1, arr.size + 1)
    ax.plot(steps, arr, color="tab:blue", alpha=0.3, lw=0.8, label="per step")
    if smooth > 1 and arr.size >= smooth:
        c = np.cumsum(np.insert(arr, 0, 0.0))
        avg = (c[smooth:] - c[:-smooth]) / smooth
        ax.plot(
            steps[smooth - 1 :], avg, color="tab:blue", lw=1.8, label=f"moving average ({smooth})"
        )
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title is not None:
        ax.set_title(title)
    return ax
