"""Every course notebook in real JupyterLab, in headless Chromium (see ``tests/browser/README.md``).

One JupyterLab started by ``make lab`` serves all notebooks; ``MINIDIFF_BROWSER_WORKERS`` (default
2) browser pages open them side by side, one notebook (and one kernel) per page at a time. Each
notebook runs all its cells in fast mode and is checked with the rules of ``contract.py``; the
first test to need the results runs them all, and each test then asserts on its own. Screenshots
go to ``build/browser/`` (or ``$MINIDIFF_BROWSER_OUT``). Where Chromium or Playwright is missing,
these tests are skipped with the reason; with ``MINIDIFF_BROWSER=require`` (set by ``.ci/run``
once it has installed Chromium) they fail instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import contract
import labrun
import pytest

pytestmark = pytest.mark.browser

ROOT = labrun.ROOT
OUT = Path(os.environ.get("MINIDIFF_BROWSER_OUT", ROOT / "build" / "browser"))
MODE = os.environ.get("MINIDIFF_BROWSER", "auto").strip().lower()


WORKERS = int(os.environ.get("MINIDIFF_BROWSER_WORKERS", "2"))
BROKEN = "build/browser-fixtures/broken_widgets.ipynb"


@pytest.fixture(scope="module")
def reports(request: pytest.FixtureRequest) -> dict[str, labrun.Report]:
    """Run every notebook that the selected tests ask for, once, on one JupyterLab."""
    if MODE in {"0", "off", "skip"}:
        pytest.skip("browser test switched off by MINIDIFF_BROWSER=" + MODE)
    why = labrun.unavailable()
    if why:
        if MODE == "require":
            pytest.fail(f"MINIDIFF_BROWSER=require, but the browser test cannot run: {why}")
        pytest.skip(f"browser test not run: {why}")
    wanted: list[str] = []
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "notebook" in callspec.params:
            wanted.append(callspec.params["notebook"])
        elif item.name == "test_a_broken_widget_fails_the_check":
            _broken_notebook(ROOT / BROKEN, promised=5)
            wanted.append(BROKEN)
    # Student copies last: they stop at their first stub within seconds and fill the gaps.
    wanted.sort(key=lambda rel: contract.notebook_kind(rel) == "exercise")
    return labrun.check_all(wanted, OUT, workers=WORKERS, on_report=_print_report)


def _print_report(report: labrun.Report) -> None:
    status = "ok" if report.ok else "FAIL"
    notes = "; ".join(report.notes)
    print(f"\n[browser] {status} {report.seconds:6.1f} s {report.path}: {notes}", flush=True)


@pytest.mark.parametrize("notebook", contract.course_notebooks(ROOT))
def test_notebook_in_jupyterlab(
    reports: dict[str, labrun.Report], notebook: str, record_property: Callable[[str, object], None]
) -> None:
    report = reports[notebook]
    # The summary table reads this from the test report, which pytest-xdist's workers send back.
    record_property("browser_seconds", report.seconds)
    assert report.ok, f"{notebook} in JupyterLab:\n  - " + "\n  - ".join(report.problems)


# A notebook that breaks the widget contract on purpose. Widget 0 is a correct explorer; the others
# each break one rule, and the check must name exactly those.
_BROKEN_SOURCE = r"""
import io
import ipywidgets as w
from IPython.display import display
from matplotlib.figure import Figure

def png(value):
    fig = Figure(figsize=(2.5, 1.2))
    fig.subplots().plot([0, 1], [0, value])
    fig.suptitle(f"value = {value}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    return buf.getvalue()

def explorer(kind):
    slider = w.IntSlider(value=1, min=0, max=5, description="k").add_class("minidiff-control")
    image = w.Image(value=png(1), format="png").add_class("minidiff-view")
    message = w.HTML("").add_class("minidiff-message")
    def on_change(change):
        if kind == "raises":
            raise RuntimeError("a callback broken on purpose")
        if kind == "inert":
            return  # a control whose change alters nothing
        image.value = png(change["new"])
    slider.observe(on_change, names="value")
    if kind == "message":
        message.value = "Invalid setting: shown after Run All"
    return w.VBox([slider, message, image]).add_class("minidiff-widget")

for kind in ("good", "raises", "inert", "message"):
    display(explorer(kind))
"""


def _broken_notebook(path: Path, promised: int) -> None:
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "m0", "metadata": {}, "source": "# Broken on purpose"},
            {
                "cell_type": "code",
                "id": "c0",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": _BROKEN_SOURCE,
            },
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "minidiff": {"widgets": promised},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))


def test_a_broken_widget_fails_the_check(reports: dict[str, labrun.Report]) -> None:
    """Callbacks that raise or change nothing, a message after Run All and a missing widget each
    produce a problem; the correct widget beside them produces none."""
    problems = reports[BROKEN].problems
    assert not [p for p in problems if p.startswith("widget 0:")], problems
    assert any(p.startswith("widget 1: moving k changed neither") for p in problems), problems
    assert any(p.startswith("widget 2: moving k changed neither") for p in problems), problems
    assert any(p.startswith("widget 3: shows the message 'Invalid") for p in problems), problems
    assert any("promises 5 widget(s); the page shows 4" in p for p in problems), problems
    # nothing else: widget 3 may also report its message again after its move
    others = [
        p
        for p in problems
        if not p.startswith(("widget 1: moving k", "widget 2: moving k", "widget 3:"))
        and "promises 5 widget(s)" not in p
    ]
    assert not others, others
