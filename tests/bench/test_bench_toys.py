"""bench/ddpm_toys.py at toy size: the run sized from a throwaway timed run, and what --out saves
(the numbers themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from minidiff import toy_dataset
from minidiff.nn import TimeMLP

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


def test_budgeted_run_saves_samples_and_weights_that_reload(tmp_path: Path) -> None:
    import ddpm_toys

    out = tmp_path / "toys"
    status = ddpm_toys.main(
        ["--datasets", "moons", "--seconds", "0.5", "--n", "200", "--draws", "2", "--no-exact",
         "--out", str(out)]
    )  # fmt: skip
    (row,) = json.loads((out / "results.json").read_text())
    assert row["dataset"] == "moons" and row["steps"] >= 1 and row["budget_s"] == 0.5
    assert isinstance(row["within_budget"], bool) and isinstance(row["passes"], bool)
    assert status == (0 if row["passes"] else 1)
    for key in ("precision", "recall", "precision_floor", "recall_floor", "outliers",
                "outliers_floor"):  # fmt: skip
        assert 0 <= row[key] <= 1, key
    assert isinstance(row["outliers_exceed_floor"], bool)
    assert math.isfinite(row["mmd"]) and 0 < row["sw"] < float("inf")
    samples = torch.load(out / "moons_samples.pt")
    assert samples.shape == (400, 2) and samples.dtype == torch.float32
    saved = torch.load(out / "moons_ema.pt")
    args = dict(saved["model"])
    model = TimeMLP(
        args.pop("data_dim"), args["hidden"], args["n_layers"], args["time_dim"],
        x_frequencies=args["x_frequencies"],
    )  # fmt: skip
    model.load_state_dict(saved["state_dict"])
    x = toy_dataset("moons", 8, torch.Generator().manual_seed(0))
    assert model.eval()(x, torch.full((8,), 500)).shape == (8, 2)


def test_fixed_step_count_is_kept(tmp_path: Path) -> None:
    import ddpm_toys

    path = tmp_path / "rows.json"
    ddpm_toys.main(
        ["--datasets", "two_spirals", "--steps", "40", "--n", "100", "--draws", "2", "--no-exact",
         "--json", str(path)]
    )  # fmt: skip
    (row,) = json.loads(path.read_text())
    assert row["steps"] == 40 and row["dataset"] == "two_spirals"
