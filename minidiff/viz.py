"""Plotting helpers and the interactive schedule explorer.

Every helper is a pure function of its inputs that draws on a matplotlib ``Axes`` (made with
``plt.subplots`` when none is given) and returns it, so notebooks compose them and tests inspect the
artists. The explorer is a thin ipywidgets layer over the pure :func:`schedule_curves` and
:meth:`ScheduleExplorer.update`; it draws on a ``matplotlib.figure.Figure`` that is not registered
with pyplot and shows it as a PNG ``Image`` widget, so it works (and is tested) without a display.

Shapes: toy data ``x: (N, 2)``; a trajectory is a list of ``(N, 2)`` tensors ordered in time.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .data import toy_dataset
from .diffusion import q_sample
from .schedules import SCHEDULES, NoiseSchedule, make_schedule

__all__ = [
    "plot_samples",
    "plot_sample_grid",
    "plot_trajectories",
    "plot_schedules",
    "plot_loss",
    "schedule_curves",
    "ScheduleExplorer",
    "schedule_explorer",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


def _points(x: object, name: str = "x") -> np.ndarray:
    """``x`` as a float numpy array of shape ``(N, 2)``; raise naming ``name`` otherwise."""
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
    return arr


def _set_lim(ax: Axes, lim: float | tuple[float, float] | None) -> None:
    if lim is None:
        return
    lo, hi = (
        (-float(lim), float(lim))
        if isinstance(lim, (int, float))
        else (float(lim[0]), float(lim[1]))
    )
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
    """A row of :func:`plot_samples` panels, one per ``(N, 2)`` cloud in ``xs``."""
    if len(xs) == 0:
        raise ValueError("xs must hold at least one (N, 2) point cloud")
    if titles is not None and len(titles) != len(xs):
        raise ValueError(f"titles must have one entry per panel ({len(xs)}), got {len(titles)}")
    fig, axes = plt.subplots(
        1, len(xs), figsize=(panel_size * len(xs), panel_size + 0.4), squeeze=False
    )
    for i, (x, ax) in enumerate(zip(xs, axes[0], strict=True)):
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

    ``traj`` is a list of ``(N, 2)`` states ordered in time (e.g. ``ddpm_sample(...,
    return_trajectory=True)`` gives ``[x_T, …, x_0]``). Starts are grey, ends are coloured.
    """
    if len(traj) < 2:
        raise ValueError(f"traj must hold at least 2 states, got {len(traj)}")
    if isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths < 1:
        raise ValueError(f"n_paths must be a positive int, got {n_paths!r}")
    steps = np.stack([_points(x, f"traj[{i}]") for i, x in enumerate(traj)])  # (S, N, 2)
    if len({p.shape for p in steps}) != 1:
        raise ValueError("every state in traj must have the same shape (N, 2)")
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
    schedules: Mapping[str, NoiseSchedule], axes: Sequence[Axes] | None = None
) -> Sequence[Axes]:
    """Plot ``alpha_bar_t``, ``beta_t`` and ``log SNR(t)`` against ``t/T`` for each named schedule.

    Time is shown as ``t / T`` so schedules with different ``T`` share an axis. Returns the 3 axes.
    """
    if not schedules:
        raise ValueError("schedules must name at least one NoiseSchedule")
    for name, sch in schedules.items():
        if not isinstance(sch, NoiseSchedule):
            raise TypeError(
                f"schedules[{name!r}] must be a NoiseSchedule, got {type(sch).__name__}"
            )
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    if len(axes) != 3:
        raise ValueError(f"axes must hold 3 Axes (alpha_bar, beta, log-SNR), got {len(axes)}")
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


def plot_loss(
    losses: ArrayLike, ax: Axes | None = None, smooth: int = 50, title: str | None = "Training loss"
) -> Axes:
    """Plot a loss curve (faint) and its trailing moving average over ``smooth`` steps (solid)."""
    arr = np.asarray(
        losses.detach().cpu() if isinstance(losses, torch.Tensor) else losses, dtype=np.float64
    )
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D sequence, got shape {arr.shape}")
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be a positive int, got {smooth!r}")
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


# ----------------------------------------------------------------------------------------------
# Schedule explorer
# ----------------------------------------------------------------------------------------------

FAMILIES: tuple[str, ...] = tuple(SCHEDULES)


def schedule_curves(
    family: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02, s: float = 0.008
) -> dict[str, Any]:
    """The curves the explorer shows, built with :func:`minidiff.make_schedule`.

    ``beta_start``/``beta_end`` are used by ``linear`` and ``quadratic``, ``s`` by ``cosine``
    (``sigmoid`` uses its defaults). Returns ``{"t": (T+1,), "alpha_bar", "beta", "log_snr",
    "schedule"}`` as float64 numpy arrays (``log_snr[0] = +inf``) plus the ``NoiseSchedule``.
    Invalid parameters raise the builder's ``ValueError``.
    """
    if family not in SCHEDULES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    kwargs: dict[str, float] = {}
    if family in ("linear", "quadratic"):
        kwargs = {"beta_start": float(beta_start), "beta_end": float(beta_end)}
    elif family == "cosine":
        kwargs = {"s": float(s)}
    sch = make_schedule(family, T, **kwargs)
    return {
        "t": np.arange(sch.T + 1),
        "alpha_bar": sch.alpha_bar.numpy().copy(),
        "beta": sch.betas.numpy().copy(),
        "log_snr": sch.log_snr.numpy().copy(),
        "schedule": sch,
    }


class ScheduleExplorer:
    """Widget to explore noise schedules: curves on the left, the noised toy data on the right.

    The toy data ``x0`` and one noise draw ``eps`` are fixed at construction, so moving ``t``
    (or changing the schedule) moves every point continuously along
    ``sqrt(ab) x0 + sqrt(1-ab) eps``.
    :meth:`update` is the whole callback; it works without a display (``render=False`` also skips
    encoding the figure as PNG for the widget)::

        ex = ScheduleExplorer("moons")
        state = ex.update(family="cosine", T=500, t=250)   # state["x_t"]: (n, 2)
        ex.widget                                           # the ipywidgets container
    """

    PARAMS = ("family", "T", "beta_start", "beta_end", "s", "t")

    def __init__(
        self,
        dataset: str = "moons",
        n: int = 2000,
        seed: int = 0,
        *,
        family: str = "linear",
        T: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        s: float = 0.008,
        t: int = 100,
        render: bool = True,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x0 = toy_dataset(dataset, n, generator=g).double()
        self.noise = torch.randn(self.x0.shape, generator=g, dtype=torch.float64)
        self.dataset = dataset
        self.params: dict[str, Any] = {
            "family": family,
            "T": T,
            "beta_start": beta_start,
            "beta_end": beta_end,
            "s": s,
            "t": t,
        }
        self.state: dict[str, Any] = {}
        # render=False keeps the Image widget as it is (scripts and tests that read the figure
        # data directly skip the ~0.5 s PNG encoding of every update).
        self.render = render
        self.figure = Figure(figsize=(13, 3.3))
        self._syncing = False
        self._build_widgets()
        self.update()

    # -- pure part -------------------------------------------------------------------------------
    def compute(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """State for ``params``: curves, ``x_t`` and ``message`` (``None`` unless invalid)."""
        try:
            curves = schedule_curves(
                params["family"], params["T"], params["beta_start"], params["beta_end"], params["s"]
            )
        except (ValueError, TypeError) as err:
            return {
                "params": dict(params),
                "curves": None,
                "x_t": None,
                "message": f"Invalid schedule: {err}",
            }
        sch: NoiseSchedule = curves["schedule"]
        t = int(min(max(int(params["t"]), 1), sch.T))
        x_t = q_sample(self.x0, t, sch, noise=self.noise)
        return {"params": {**params, "t": t}, "curves": curves, "x_t": x_t, "message": None}

    def update(self, **changes: Any) -> dict[str, Any]:
        """Apply parameter ``changes`` (any of :attr:`PARAMS`), redraw, and return the new state.

        ``t`` is clamped to ``1..T``. Invalid combinations (e.g. ``beta_end < beta_start``) do not
        raise: the state's ``message`` says what is wrong and the widget shows it.
        """
        unknown = set(changes) - set(self.PARAMS)
        if unknown:
            raise ValueError(
                f"unknown explorer parameter(s) {sorted(unknown)}; "
                f"expected some of {list(self.PARAMS)}"
            )
        self.params.update(changes)
        self.state = self.compute(self.params)
        if self.state["message"] is None:
            self.params["t"] = self.state["params"]["t"]
        self._draw()
        self._sync_widgets()
        return self.state

    # -- drawing -----------------------------------------------------------------------------------
    def _draw(self) -> None:
        fig = self.figure
        fig.clear()
        # A fixed layout: tight_layout would triple the cost of every slider move.
        axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.05]})
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.82, wspace=0.42)
        st = self.state
        if st["message"] is not None:
            for ax in axes:
                ax.set_axis_off()
            axes[0].text(
                0.0,
                0.5,
                st["message"],
                color="tab:red",
                fontsize=11,
                transform=axes[0].transAxes,
                wrap=True,
            )
            return
        c, t = st["curves"], st["params"]["t"]
        ts = c["t"]
        log_snr = c["log_snr"].copy()
        log_snr[0] = np.nan
        series = (
            (c["alpha_bar"], r"$\bar\alpha_t$", "linear"),
            (c["beta"][1:], r"$\beta_t$", "log"),
            (log_snr, r"$\log\,\mathrm{SNR}(t)$", "linear"),
        )
        for ax, (y, label, scale) in zip(axes[:3], series, strict=True):
            xs = ts[1:] if y.shape[0] == ts.shape[0] - 1 else ts
            ax.plot(xs, y, color="tab:blue")
            yt = y[t - 1] if y.shape[0] == ts.shape[0] - 1 else y[t]
            ax.plot([t], [yt], "o", color="tab:red")
            ax.axvline(t, color="tab:red", lw=0.6, alpha=0.5)
            ax.set_yscale(scale)
            ax.set_title(f"{label} = {yt:.3g} at t={t}")
            ax.set_xlabel("t")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        ab = float(c["alpha_bar"][t])
        plot_samples(
            st["x_t"],
            ax=axes[3],
            lim=3.5,
            s=2,
            alpha=0.4,
            title=rf"$x_t$ ({self.dataset}), $\sqrt{{\bar\alpha_t}}$={math.sqrt(ab):.2f}",
        )
        fig.suptitle(
            f"{st['params']['family']} schedule, T={st['curves']['schedule'].T}", fontsize=10
        )

    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=72)
        return buf.getvalue()

    # -- widgets -----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        import ipywidgets as w

        p = self.params
        style = {"description_width": "80px"}
        self.controls = {
            "family": w.Dropdown(
                options=list(FAMILIES), value=p["family"], description="schedule", style=style
            ),
            "T": w.IntSlider(
                value=p["T"],
                min=10,
                max=2000,
                step=10,
                description="T",
                continuous_update=False,
                style=style,
            ),
            "beta_start": w.FloatLogSlider(
                value=p["beta_start"],
                base=10,
                min=-5,
                max=-1,
                step=0.1,
                description="β_start",
                readout_format=".1e",
                style=style,
            ),
            "beta_end": w.FloatLogSlider(
                value=p["beta_end"],
                base=10,
                min=-4,
                max=-0.3,
                step=0.1,
                description="β_end",
                readout_format=".1e",
                style=style,
            ),
            "s": w.FloatSlider(
                value=p["s"],
                min=0.0,
                max=0.2,
                step=0.002,
                description="cosine s",
                readout_format=".3f",
                style=style,
            ),
            "t": w.IntSlider(value=p["t"], min=1, max=p["T"], description="t", style=style),
        }
        self.message = w.HTML("")
        self.image = w.Image(format="png")
        for name, ctrl in self.controls.items():
            ctrl.observe(self._on_change(name), names="value")
        c = self.controls
        self.widget = w.VBox(
            [
                w.HBox([c["family"], c["T"], c["t"]]),
                w.HBox([c["beta_start"], c["beta_end"], c["s"]]),
                self.message,
                self.image,
            ]
        )

    def _on_change(self, name: str) -> Callable[[Mapping[str, Any]], None]:
        def callback(change: Mapping[str, Any]) -> None:
            if not self._syncing:
                self.update(**{name: change["new"]})

        return callback

    def _sync_widgets(self) -> None:
        if not hasattr(self, "controls"):
            return
        self._syncing = True
        try:
            c, p = self.controls, self.params
            if isinstance(p["T"], int) and p["T"] >= 1:
                c["t"].max = max(p["T"], 1)
            for name in self.PARAMS:
                try:
                    c[name].value = p[name]
                except Exception:  # noqa: BLE001 - a value the slider cannot show stays as it was
                    pass
            fam = p["family"]
            c["beta_start"].disabled = c["beta_end"].disabled = fam not in ("linear", "quadratic")
            c["s"].disabled = fam != "cosine"
            msg = self.state.get("message")
            self.message.value = "" if msg is None else f"<b style='color:#c00'>{msg}</b>"
            if self.render:
                self.image.value = self.png()
        finally:
            self._syncing = False


def schedule_explorer(dataset: str = "moons", n: int = 2000, seed: int = 0, **params: Any) -> Any:
    """The schedule explorer as an ipywidgets container (see :class:`ScheduleExplorer`)."""
    return ScheduleExplorer(dataset, n, seed, **params).widget
