"""bench/few_step.py at toy size: every part runs and writes its results (the numbers are the
benchmark's business; at this size the bars are expected to fail)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


def test_quick_run_writes_every_part(tmp_path: Path) -> None:
    import few_step

    path = tmp_path / "few_step.json"
    status = few_step.main(["--quick", "--json", str(path)])
    out = json.loads(path.read_text())
    assert set(out) == {"solvers", "variances", "distillation", "summary"}
    assert status == (
        0 if all(out[k]["passes"] for k in ("solvers", "variances", "distillation")) else 1
    )
    table = out["solvers"]["table"]
    assert set(table) == {"moons", "8gaussians"} and len(table["moons"]) == 4
    for p, r, s in (v for row in table.values() for v in row.values()):
        assert 0 <= p <= 1.5 and 0 <= r <= 1.5 and s >= 0
    assert set(out["variances"]["gains"]) == {"1000", "50", "10", "10, tuned"}
    rows = out["distillation"]["rows"]
    assert [r["teacher"] for r in rows] == ["exact", "trained"]
    assert all(isinstance(r["pd_ok"], bool) and isinstance(r["cd_ok"], bool) for r in rows)
    assert sorted(int(k) for k in out["summary"]) == [1, 2, 4, 8, 16, 32]
