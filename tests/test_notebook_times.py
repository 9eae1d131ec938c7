"""The run-time record that the course tour prints (bench/notebook_times.json)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_notebook_times_record_is_well_formed() -> None:
    record = json.loads((ROOT / "bench" / "notebook_times.json").read_text())
    assert {"notebooks", "machine", "note"} <= set(record)
    present = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert record["notebooks"], "no notebook measured"
    for name, per_mode in record["notebooks"].items():
        assert name in present, f"{name} is recorded but not in notebooks/"
        assert set(per_mode) <= {"fast", "default"} and per_mode, name
        for mode, m in per_mode.items():
            assert m["wall_s"] > 0 and m["cpu_s"] > 0, (name, mode)
            assert len(m["date"]) == 10, (name, mode)  # ISO date
    # the tour reads the record: it must be measured there too
    assert "00_tour.ipynb" in record["notebooks"]
