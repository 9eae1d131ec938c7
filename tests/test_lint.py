"""The code is lint-clean: ``ruff check`` and ``ruff format --check`` pass on the package, the
tests and the benchmarks (the same paths ``make lint`` checks), with the settings of pyproject.toml.

A fresh clone must pass ``make lint``; this test keeps that true in ``make test`` and CI. To fix a
failure, run ``ruff check --fix minidiff tests bench`` and ``ruff format minidiff tests bench`` and
wrap long docstrings and comments by hand.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["minidiff", "tests", "bench"]


def _pinned_ruff() -> str | None:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip().startswith("ruff=="):
            return line.strip().removeprefix("ruff==")
    return None


def _installed_ruff() -> str | None:
    if importlib.util.find_spec("ruff") is None:
        return None
    try:
        return importlib.metadata.version("ruff")
    except importlib.metadata.PackageNotFoundError:
        return None


PINNED, INSTALLED = _pinned_ruff(), _installed_ruff()
# Rules and formatting change between ruff releases: judge the code with the version it is kept
# clean with (constraints.txt, which `make` and CI install), not with whatever else is installed.
pytestmark = [
    pytest.mark.skipif(
        INSTALLED is None,
        reason="ruff is not installed in this environment (it comes with the 'dev' extra: "
        "pip install -e '.[dev]' -c constraints.txt)",
    ),
    pytest.mark.skipif(
        INSTALLED is not None and PINNED is not None and INSTALLED != PINNED,
        reason=f"ruff {INSTALLED} is installed but the code is kept clean with ruff {PINNED} "
        "(constraints.txt); install that version to run the lint",
    ),
]


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
