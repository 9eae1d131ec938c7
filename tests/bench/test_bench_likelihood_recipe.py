"""bench/likelihood_recipe.py at toy size, so that it cannot rot (its numbers are the benchmark's
business, not a test's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_quick_run_prints_a_row_per_encoding(capsys: pytest.CaptureFixture[str]) -> None:
    import likelihood_recipe

    torch.set_num_threads(1)
    likelihood_recipe.main(["--octaves", "0,2", "--ipe", "--steps", "5", "--n", "20",
                            "--ode-steps", "4", "--samples", "40"])  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == ["x_frequencies=0", "x_frequencies=2", "noise-damped x_frequencies=2"]
    for row in rows[1:]:
        cells = [c.strip() for c in row.split("|")[2:-1]]
        assert len(cells) == 8 and all(c and c.lower() != "nan" for c in cells), row
