"""Fixtures shared by the unit tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Helpers shared by tests in several folders (``_bad_inputs``) live in tests/ itself.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _lenient_checkers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests inspect failed CheckResults, so checkers must not raise here.

    ``make test`` sets ``MINIDIFF_STRICT_CHECKS=1`` so that, in the notebook kernels nbval starts,
    a checker that rejects a solution fails the run; tests that need strict mode set it themselves.
    """
    monkeypatch.delenv("MINIDIFF_STRICT_CHECKS", raising=False)
