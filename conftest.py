"""Repository-wide pytest set-up.

* Matplotlib draws off-screen in the test process (``MPLBACKEND=Agg`` unless already set).
  Notebook kernels started by nbval instead get the inline backend JupyterLab uses, so
  figures are really rendered and an error that only shows when a figure is drawn (a bad
  mathtext label, say) fails CI as it would fail for a student.
* Fast mode (``MINIDIFF_FAST``) is read from the environment and passed on unchanged: nbval
  kernels inherit this process's environment, and nothing here overrides the variable.
* Under pytest-xdist (``make test`` runs one worker per core) each worker, and every notebook
  kernel it starts, gets its share of the cores (``OMP_NUM_THREADS``), so that the workers do
  not fight over them; a value already set in the environment is kept.
* The terminal summary ends with the wall time spent in each notebook run under nbval
  (kernel start-up and shut-down included), then in the browser test, and their totals.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator

import pytest

_MPL_SET_HERE = "MPLBACKEND" not in os.environ
if _MPL_SET_HERE:
    os.environ["MPLBACKEND"] = "Agg"

_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if _WORKERS and "OMP_NUM_THREADS" not in os.environ:
    # Set before torch is imported (conftest.py loads first), and inherited by nbval's kernels.
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(_WORKERS)))

_INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_notebook_seconds: dict[str, float] = defaultdict(float)
_browser_seconds: dict[str, float] = {}


def _is_notebook(path: str) -> bool:
    return path.endswith(".ipynb")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Start nbval kernels with the inline backend (the kernel starts in the first cell's setup)."""
    swap = _MPL_SET_HERE and _is_notebook(str(item.path))
    if swap:
        os.environ["MPLBACKEND"] = _INLINE_BACKEND
    try:
        yield
    finally:
        if swap:
            os.environ["MPLBACKEND"] = "Agg"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up setup + call + teardown time of every nbval cell, per notebook file, and collect the
    browser test's time per notebook (``record_property("browser_seconds", ...)`` in
    ``tests/browser/test_lab.py``). Reports reach this hook in the main process also under
    pytest-xdist, which is why both tables are kept here and not in a sub-folder's conftest.py."""
    path = report.nodeid.split("::", 1)[0]
    if _is_notebook(path):
        _notebook_seconds[path] += report.duration
    if report.when == "call" and "[" in report.nodeid:
        for name, value in report.user_properties:
            if name == "browser_seconds":
                _browser_seconds[report.nodeid.rsplit("[", 1)[1].rstrip("]")] = float(value)


def _table(tr: pytest.TerminalReporter, title: str, seconds: dict[str, float]) -> None:
    rows = sorted(seconds.items(), key=lambda kv: kv[1], reverse=True)
    total_label = f"total ({len(rows)} notebooks)"
    width = max(len(total_label), *(len(name) for name, _ in rows))
    tr.write_sep("=", title)
    tr.write_line(f"{'notebook':<{width}} | {'seconds':>8}")
    tr.write_line(f"{'-' * width}-+-{'-' * 8}")
    for name, value in rows:
        tr.write_line(f"{name:<{width}} | {value:8.1f}")
    tr.write_line(f"{'-' * width}-+-{'-' * 8}")
    total = sum(seconds.values())
    tr.write_line(f"{total_label:<{width}} | {total:8.1f}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print 'notebook | seconds' tables (nbval, then the browser test), slowest first."""
    if _notebook_seconds:
        _table(terminalreporter, "notebook wall time (nbval)", _notebook_seconds)
    if _browser_seconds:
        title = "notebook wall time in JupyterLab (browser test)"
        _table(terminalreporter, title, _browser_seconds)
