"""What every explorer widget of the course shares: parameters -> state -> figure -> widgets.

A subclass sets :attr:`Explorer.PARAMS` and implements the pure part, ``compute(params) -> state``
(a dict whose ``"message"`` is ``None`` unless the parameters are invalid), and ``_draw()``, which
draws ``self.state`` on ``self.figure`` (starting with :meth:`_draw_message`). Its
``_build_widgets()`` creates one control per name in ``PARAMS`` (on valid starting values: the
state is computed first, and the controls are then set to ``params``, a slider's range stretched to
a valid value outside it, a value a control cannot show left to the message) and hands them, with
the rows they stand in, to :meth:`_attach`, which adds the message, the readout (the text of
:meth:`readout`) and the picture following the browser-test contract in
``tests/browser/README.md``. Everything else, the callback that tests drive headlessly and the way
the widgets follow the state, lives here once.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def _real(value: Any) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        v = float(value)
    except OverflowError:  # an int beyond the floats
        return None
    return v if math.isfinite(v) else None


def _show(ctrl: Any, value: Any, *, widen: bool) -> None:
    """Set control ``ctrl`` to ``value`` if it can show it exactly; ``widen``: first stretch a
    slider's range to take a number outside it (a slider would clamp it silently otherwise).

    A value the control cannot show (an invalid name for a dropdown, a fraction for an integer
    slider, a number out of range of an invalid setting) leaves the control as it was: the
    message says what is wrong.
    """
    if not (hasattr(ctrl, "min") and hasattr(ctrl, "max")):  # a dropdown
        try:
            ctrl.value = value
        except Exception:  # noqa: BLE001 - a traitlets error: the control keeps a valid value
            pass
        return
    v = _real(value)
    integer = isinstance(ctrl.value, int)
    if v is None or (integer and not isinstance(value, (int, np.integer))):
        return
    log = ctrl.__class__.__name__ == "FloatLogSlider"
    if log and v <= 0:
        return
    pos = math.log(v, float(ctrl.base)) if log else v  # a log slider's range is in exponents
    if not ctrl.min <= pos <= ctrl.max:
        if not widen:
            return
        if pos > ctrl.max:
            ctrl.max = math.ceil(pos) if log else value
        else:
            ctrl.min = math.floor(pos) if log else value
    ctrl.value = int(value) if integer else v


def _int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def starting_step(t: Any, T: Any, default: int) -> Any:
    """``t`` as an explorer starts from it: ``None`` (not given) is ``default``, or ``T`` when a
    valid ``T`` is smaller; a given value stays as it is (and is checked by ``compute``)."""
    if t is None:
        return min(default, int(T)) if _int(T) and T >= 1 else default
    return t


def following_step(t: Any, T: Any) -> Any | None:
    """The ``t`` that follows a move of ``T`` to a smaller valid value (``T`` itself), or ``None``
    when ``t`` stays (``T`` not below it, or either is not an int)."""
    if _int(t) and _int(T) and 1 <= T < t:
        return int(T)
    return None


def step_out_of_range(t: Any, T: int) -> bool:
    """Whether ``t`` is not an int in ``1..T`` (a bool, a float or a string is not an int)."""
    return not _int(t) or not 1 <= int(t) <= T


def message_html(message: str | None) -> str:
    """The error line an explorer shows: empty when all is well, else the escaped message in red."""
    return "" if message is None else f"<b style='color:#c00'>{html.escape(message)}</b>"


class Explorer:
    """Base class of the course's explorers (see the module docstring for what a subclass adds)."""

    PARAMS: tuple[str, ...] = ()

    params: dict[str, Any]
    state: dict[str, Any]
    figure: Figure
    render: bool
    _syncing: bool
    controls: dict[str, Any]
    message: Any
    readout_widget: Any
    image: Any
    widget: Any

    def _start(self, params: dict[str, Any], figsize: tuple[float, float], render: bool) -> None:
        """End of a subclass's ``__init__``: adopt ``params``, build the widgets, draw once.

        ``render=False`` leaves the Image widget as it is (scripts and tests that read the
        figure's data skip the PNG encoding of every update).
        """
        self.params = params
        self.state = {}
        self.render = render
        self.figure = Figure(figsize=figsize)
        self._syncing = False
        # The state first: a bad keyword becomes the message, as in update(), instead of failing
        # inside a control that cannot take it. The controls start on values they can show and
        # then follow params (_sync_widgets).
        self._recompute()
        self._build_widgets()
        self._draw()
        self._sync_widgets()

    def compute(self, params: Mapping[str, Any]) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _build_widgets(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, **changes: Any) -> dict[str, Any]:
        """Apply parameter ``changes`` (any of :attr:`PARAMS`), redraw, and return the new state.

        Invalid values do not raise: the state's ``message`` says what is wrong and the widget
        shows it. Only an unknown parameter name raises ``ValueError``.
        """
        unknown = set(changes) - set(self.PARAMS)
        if unknown:
            raise ValueError(
                f"unknown explorer parameter(s) {sorted(unknown)}; "
                f"expected some of {list(self.PARAMS)}"
            )
        self.params.update(changes)
        self._recompute()
        self._draw()
        self._sync_widgets()
        return self.state

    def _recompute(self) -> None:
        """``self.state = compute(params)``; an error becomes the state's message."""
        try:
            self.state = self.compute(self.params)
        except (ValueError, TypeError, ArithmeticError) as err:
            # A value the subclass's own checks did not foresee (int(inf) is an OverflowError,
            # a list where a name belongs a TypeError): shown like any invalid setting.
            self.state = {"params": dict(self.params), "message": f"Invalid setting: {err}"}
        self._after_compute()

    def _after_compute(self) -> None:
        """Adopt the values a valid computation corrected (a clamped ``t``, say) into ``params``;
        ``compute`` returns them as ``state["params"]``."""
        if self.state.get("message") is None:
            self.params.update(self.state["params"])

    def readout(self) -> str:
        """The text under the picture: the state's ``"readout"`` ('' when there is none)."""
        return str(self.state.get("readout", ""))

    def png(self) -> bytes:
        """The current figure as PNG bytes."""
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=72)
        return buf.getvalue()

    # -- widgets -----------------------------------------------------------------------------------
    def _attach(self, controls: dict[str, Any], rows: list[list[str]]) -> None:
        """Adopt ``controls`` (one per name in :attr:`PARAMS`), observe each, and lay the widget
        out: the controls in ``rows`` (names), then ``self.message``, ``self.readout_widget`` and
        ``self.image``, with the classes of the browser-test contract."""
        import ipywidgets as wd

        self.controls = controls
        for name, ctrl in controls.items():
            ctrl.add_class("minidiff-control")
            ctrl.observe(self._on_change(name), names="value")
        self.message = wd.HTML("").add_class("minidiff-message")
        self.readout_widget = wd.HTML("").add_class("minidiff-readout")
        self.image = wd.Image(format="png").add_class("minidiff-view")
        boxes = [wd.HBox([controls[name] for name in row]) for row in rows]
        self.widget = wd.VBox([*boxes, self.message, self.readout_widget, self.image])
        self.widget.add_class("minidiff-widget")

    def _on_change(self, name: str) -> Callable[[Mapping[str, Any]], None]:
        """The observer of control ``name``: a student's move becomes :meth:`update`."""

        def callback(change: Mapping[str, Any]) -> None:
            if not self._syncing and not self._is_echo(name, change["new"]):
                self.update(**{name: change["new"]})

        return callback

    def _is_echo(self, name: str, value: Any) -> bool:
        """Hook: whether ``value`` is only the control repeating ``params[name]`` back."""
        return False

    def _before_sync(self) -> None:
        """Hook: adjust the controls (ranges) before they are set to ``params``."""

    def _after_sync(self) -> None:
        """Hook: update what else the widget shows (disabled controls, say)."""

    def _sync_widgets(self) -> None:
        """Make the controls, the message and the picture show ``params`` and ``state``."""
        if not hasattr(self, "controls"):
            return
        self._syncing = True
        try:
            self._before_sync()
            valid = self.state.get("message") is None
            for name in self.PARAMS:
                _show(self.controls[name], self.params[name], widen=valid)
            self._after_sync()
            self.message.value = message_html(self.state.get("message"))
            self.readout_widget.value = html.escape(self.readout())
            if self.render:
                self.image.value = self.png()
        finally:
            self._syncing = False

    # -- drawing -----------------------------------------------------------------------------------
    def _draw_message(self, axes: Any) -> bool:
        """Start of a subclass's ``_draw``: when the state is invalid, write its message in place of
        the plots on ``axes`` and return True (the subclass then draws nothing else)."""
        message = self.state.get("message")
        if message is None:
            return False
        for ax in axes:
            ax.set_axis_off()
        axes[0].text(
            0.0, 0.5, message, color="tab:red", fontsize=11, transform=axes[0].transAxes, wrap=True
        )
        return True
