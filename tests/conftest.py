"""Fixtures shared by the unit tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Helpers shared by tests in several folders (``_bad_inputs``) live in tests/ itself.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """One intra-op thread for every test, whichever test runs first.

    The tests' tensors are small, where threads cost more than they give on a shared CI machine,
    and a seeded result must not depend on the order the tests ran in. A test that needs more
    threads sets them itself.
    """
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _lenient_checkers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests inspect failed CheckResults, so checkers must not raise here.

    ``make test`` sets ``MINIDIFF_STRICT_CHECKS=1`` so that, in the notebook kernels nbval starts,
    a checker that rejects a solution fails the run; tests that need strict mode set it themselves.
    """
    monkeypatch.delenv("MINIDIFF_STRICT_CHECKS", raising=False)
