"""The schedule explorer widget (chapter 1): schedule family and parameters, T and t -> the curves
alpha_bar_t, beta_t, log-SNR and the noised toy data.

A thin ipywidgets layer over the pure :func:`schedule_curves` and :meth:`ScheduleExplorer.update`;
it draws on a ``matplotlib.figure.Figure`` that is not registered with pyplot and shows it as a PNG
``Image`` widget, so it works (and is tested) without a display.

The widget follows the course's browser-test contract (``tests/browser/README.md``): its root has
the CSS class ``minidiff-widget``, the picture ``minidiff-view``, the numbers at ``t``
``minidiff-readout``, every control ``minidiff-control``, and errors appear in ``minidiff-message``
(empty when all is well) instead of being raised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .._validation import Flag, Int, Number, OneOf, checked
from ..data import TOY_DATASETS, toy_dataset
from ..diffusion import q_sample
from ..schedules import SCHEDULES, NoiseSchedule, make_schedule
from ._explorer import Explorer, following_step, starting_step, step_out_of_range
from .plots import plot_samples

__all__ = ["schedule_curves", "ScheduleExplorer", "schedule_explorer", "FAMILIES"]

# ----------------------------------------------------------------------------------------------
# Schedule explorer
# ----------------------------------------------------------------------------------------------

FAMILIES: tuple[str, ...] = tuple(SCHEDULES)


@checked(family=OneOf(FAMILIES), T=Int(), beta_start=Number(), beta_end=Number(), s=Number())
def schedule_curves(
    family: str, T: int, beta_start: float = 1e-4, beta_end: float = 0.02, s: float = 0.008
) -> dict[str, Any]:
    """The curves the explorer shows, built with :func:`minidiff.make_schedule`.

    ``beta_start``/``beta_end`` are used by ``linear`` and ``quadratic``, ``s`` by ``cosine``
    (``sigmoid`` uses its defaults). Returns ``{"t": (T+1,), "alpha_bar", "beta", "log_snr",
    "schedule"}`` as float64 numpy arrays (``log_snr[0] = +inf``) plus the ``NoiseSchedule``.
    A wrong kind of argument (a family that is not a string, a number given as a string) raises
    ``TypeError`` naming it; a wrong value ``ValueError`` (the builder's, for the ranges).
    """
    kwargs: dict[str, float] = {}
    if family in ("linear", "quadratic"):
        kwargs = {"beta_start": beta_start, "beta_end": beta_end}
    elif family == "cosine":
        kwargs = {"s": s}
    sch = make_schedule(family, T, **kwargs)
    return {
        "t": np.arange(sch.T + 1),
        "alpha_bar": sch.alpha_bar.numpy().copy(),
        "beta": sch.betas.numpy().copy(),
        "log_snr": sch.log_snr.numpy().copy(),
        "schedule": sch,
    }


class ScheduleExplorer(Explorer):
    """Widget to explore noise schedules: curves on the left, the noised toy data on the right.

    ``dataset`` is a name of :data:`minidiff.TOY_DATASETS`; ``t`` an int in ``1..T`` (one
    outside is shown as the message, not moved into range; ``None`` (the default) starts at
    100, or at ``T`` when ``T`` is smaller; a move of ``T`` below ``t`` brings ``t`` down to it).

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

    @checked(dataset=OneOf(TOY_DATASETS), n=Int(), seed=Int(minimum=0), render=Flag)  # type: ignore[misc]  # (a decorated __init__)
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
        t: int | None = None,
        render: bool = True,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x0 = toy_dataset(dataset, n, generator=g).double()
        self.noise = torch.randn(self.x0.shape, generator=g, dtype=torch.float64)
        self.dataset = dataset
        self._start(
            {
                "family": family,
                "T": T,
                "beta_start": beta_start,
                "beta_end": beta_end,
                "s": s,
                "t": starting_step(t, T, 100),
            },
            figsize=(13, 3.3),
            render=render,
        )

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
        t_in = params["t"]
        if step_out_of_range(t_in, sch.T):
            return {
                "params": dict(params),
                "curves": None,
                "x_t": None,
                "message": f"Invalid t: t must be an int in 1..T={sch.T}, got {t_in!r}",
            }
        t = int(t_in)
        x_t = q_sample(self.x0, t, sch, noise=self.noise)
        return {"params": {**params, "t": t}, "curves": curves, "x_t": x_t, "message": None}

    def update(self, **changes: Any) -> dict[str, Any]:
        """:meth:`Explorer.update`, where ``t`` follows ``T`` down: a move of ``T`` below the
        current ``t`` (the ``T`` slider, or ``update(T=...)`` without ``t``) sets ``t = T``. A
        ``t`` given outside ``1..T`` is not moved: the message says so."""
        if "T" in changes and "t" not in changes:
            t = following_step(self.params.get("t"), changes["T"])
            if t is not None:
                changes["t"] = t
        return super().update(**changes)

    # -- drawing -----------------------------------------------------------------------------------
    def _draw(self) -> None:
        fig = self.figure
        fig.clear()
        # A fixed layout: tight_layout would triple the cost of every slider move.
        axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1, 1, 1.05]})
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.82, wspace=0.42)
        if self._draw_message(axes):
            return
        st = self.state
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

    def readout(self) -> str:
        """The numbers at the current ``t`` as one line of text ('' when the state is invalid)."""
        st = self.state
        if st.get("message") is not None or not st.get("curves"):
            return ""
        c, t = st["curves"], st["params"]["t"]
        return (
            f"t = {t}:  ᾱ_t = {c['alpha_bar'][t]:.4g},  β_t = {c['beta'][t]:.4g},  "
            f"log SNR(t) = {c['log_snr'][t]:.3f},  √ᾱ_t = {math.sqrt(c['alpha_bar'][t]):.3f}"
        )

    def _before_sync(self) -> None:
        T = self.params["T"]
        if isinstance(T, int) and T >= 1:
            self.controls["t"].max = max(T, 1)

    def _after_sync(self) -> None:
        c, fam = self.controls, self.params["family"]
        c["beta_start"].disabled = c["beta_end"].disabled = fam not in ("linear", "quadratic")
        c["s"].disabled = fam != "cosine"

    # -- widgets -----------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        import ipywidgets as w

        # The controls start on valid values; _sync_widgets then shows params (stretching a
        # slider's range to a valid value outside it).
        style = {"description_width": "80px"}
        controls = {
            "family": w.Dropdown(
                options=list(FAMILIES), value="linear", description="schedule", style=style
            ),
            "T": w.IntSlider(
                value=1000,
                min=10,
                max=2000,
                step=10,
                description="T",
                continuous_update=False,
                style=style,
            ),
            "beta_start": w.FloatLogSlider(
                value=1e-4,
                base=10,
                min=-5,
                max=-1,
                step=0.1,
                description="β_start",
                readout_format=".1e",
                style=style,
            ),
            "beta_end": w.FloatLogSlider(
                value=0.02,
                base=10,
                min=-4,
                max=-0.3,
                step=0.1,
                description="β_end",
                readout_format=".1e",
                style=style,
            ),
            "s": w.FloatSlider(
                value=0.008,
                min=0.0,
                max=0.2,
                step=0.002,
                description="cosine s",
                readout_format=".3f",
                style=style,
            ),
            "t": w.IntSlider(value=100, min=1, max=1000, description="t", style=style),
        }
        self._attach(controls, rows=[["family", "T", "t"], ["beta_start", "beta_end", "s"]])

    def _is_echo(self, name: str, value: Any) -> bool:
        """Whether ``value`` from the browser is only the control showing ``params[name]``.

        A slider snaps a value it is given to its own grid (``beta_end=0.02`` becomes
        ``10**-1.7 = 0.01995`` on the log slider) and sends the snapped value back. Taking that
        echo as a move would replace the exact parameter, and an echo that arrives late (after the
        next ``update``) would bring an old value back. Within half a step it is the same value.
        """
        current: Any = self.params.get(name)
        ctrl = self.controls[name]
        step = float(getattr(ctrl, "step", 0) or 0)
        try:
            if ctrl.__class__.__name__ == "FloatLogSlider":
                if float(value) <= 0 or float(current) <= 0:
                    return False
                base = float(ctrl.base)
                gap = abs(math.log(float(value), base) - math.log(float(current), base))
                return gap <= step / 2 + 1e-9
            if isinstance(value, float) and step:
                return abs(value - float(current)) <= step / 2 + 1e-12
        except (TypeError, ValueError):
            return False
        return bool(value == current)


def schedule_explorer(dataset: str = "moons", n: int = 2000, seed: int = 0, **params: Any) -> Any:
    """The schedule explorer as an ipywidgets container (see :class:`ScheduleExplorer`)."""
    return ScheduleExplorer(dataset, n, seed, **params).widget
