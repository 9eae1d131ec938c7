"""The browser tests print the time each notebook took in JupyterLab, slowest first."""

from __future__ import annotations

import labrun
import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not labrun.SECONDS:
        return
    rows = sorted(labrun.SECONDS.items(), key=lambda kv: kv[1], reverse=True)
    width = max(len("notebook"), *(len(name) for name, _ in rows))
    tr = terminalreporter
    tr.write_sep("=", "notebook wall time in JupyterLab (browser test)")
    tr.write_line(f"{'notebook':<{width}} | {'seconds':>8}")
    tr.write_line(f"{'-' * width}-+-{'-' * 8}")
    for name, seconds in rows:
        tr.write_line(f"{name:<{width}} | {seconds:8.1f}")
    tr.write_line(f"{'-' * width}-+-{'-' * 8}")
    total = sum(labrun.SECONDS.values())
    tr.write_line(f"{'total (' + str(len(rows)) + ' notebooks)':<{width}} | {total:8.1f}")
