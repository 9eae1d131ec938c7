"""The browser tests print the time each notebook took in JupyterLab, slowest first.

The times travel in each test report's ``user_properties`` (set by ``record_property`` in
``test_lab.py``), so the table is also complete when pytest-xdist runs the tests in a worker.
"""

from __future__ import annotations

import pytest

_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call":
        return
    for name, value in report.user_properties:
        if name == "browser_seconds" and "[" in report.nodeid:
            _SECONDS[report.nodeid.rsplit("[", 1)[1].rstrip("]")] = float(value)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SECONDS:
        return
    rows = sorted(_SECONDS.items(), key=lambda kv: kv[1], reverse=True)
    width = max(len("notebook"), *(len(name) for name, _ in rows))
    tr = terminalreporter
    tr.write_sep("=", "notebook wall time in JupyterLab (browser test)")
    tr.write_line(f"{'notebook':<{width}} | {'seconds':>8}")
    tr.write_line(f"{'-' * width}-+-{'-' * 8}")
    for name, seconds in rows:
        tr.write_line(f"{name:<{width}} | {seconds:8.1f}")
    tr.write_line(f"{'-' * width}-+-{'-' * 8}")
    total = sum(_SECONDS.values())
    tr.write_line(f"{'total (' + str(len(rows)) + ' notebooks)':<{width}} | {total:8.1f}")
