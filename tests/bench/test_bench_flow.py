"""bench/flow_toys.py at toy size, so that it cannot rot (its numbers are the benchmark's
business, not a test's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


def test_quick_run_writes_both_tables(tmp_path: Path) -> None:
    import flow_toys

    torch.set_num_threads(1)
    path = tmp_path / "flow.json"
    status = flow_toys.main(
        ["--quick", "--steps", "15", "--n", "60", "--reflow-pairs", "100", "--json", str(path)]
    )
    rows = json.loads(path.read_text())
    assert [r["model"] for r in rows["a"]] == ["DDPM", "FM uniform", "FM logit-normal", "FM u²"]
    assert set(rows["wins"]) == {"FM uniform", "FM logit-normal", "FM u²"}
    assert all(r["steps"] == 15 and r["cpu_s"] > 0 for r in rows["a"])
    assert {r["model"] for r in rows["b"]} == {"exact velocity", "FM uniform", "FM + OT", "reflow"}
    fm = next(r for r in rows["b"] if r["model"] == "FM uniform")  # part A's model, with its cost
    assert fm["steps"] == 15 and fm["cpu_s"] > 0
    exact = next(r for r in rows["b"] if r["model"] == "exact velocity")
    # the exact velocity is its own reference, and one Euler step sends every sample to the mean
    assert exact["model_err"] < 1e-5 and exact["pr1"][0] < 0.2
    for r in rows["b"]:
        assert r["straightness"] >= 0 and all(0 <= v <= 1.5 for v in r["pr4"])
    assert status in (0, 1)


def test_digits_quick_run(tmp_path: Path) -> None:
    import flow_digits

    path = tmp_path / "digits.json"
    assert flow_digits.main(["--quick", "--steps", "2", "--n", "32", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [r["model"] for r in rows] == ["eps", "flow"]
    assert all(r["steps"] == 2 and 0 <= r["precision"] <= 1 for r in rows)
