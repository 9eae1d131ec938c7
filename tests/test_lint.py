"""The code is lint-clean: ``ruff check`` and ``ruff format --check`` pass on the package, the
tests and the benchmarks (the same paths ``make lint`` checks), with the settings of pyproject.toml.

A fresh clone must pass ``make lint``; this test keeps that true in ``make test`` and CI. To fix a
failure, run ``ruff check --fix minidiff tests bench`` and ``ruff format minidiff tests bench`` and
wrap long docstrings and comments by hand.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["minidiff", "tests", "bench"]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None,
    reason="ruff is not installed in this environment (it comes with the 'dev' extra: "
    "pip install -e '.[dev]')",
)


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_check_is_clean() -> None:
    res = _ruff("check", "--no-cache", "--output-format", "concise")
    assert res.returncode == 0, (
        f"`ruff check {' '.join(PATHS)}` failed (exit {res.returncode}):\n{res.stdout}{res.stderr}"
    )


def test_ruff_format_is_clean() -> None:
    res = _ruff("format", "--check", "--no-cache")
    assert res.returncode == 0, (
        f"`ruff format --check {' '.join(PATHS)}` failed (exit {res.returncode}); run "
        f"`ruff format {' '.join(PATHS)}` to fix:\n{res.stdout}{res.stderr}"
    )
