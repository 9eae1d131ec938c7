"""bench/conditioning.py at toy size: every part runs and reports what the full run reports
(the numbers themselves are the benchmark's business, not a test's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


def test_quick_run_writes_every_part(tmp_path: Path) -> None:
    import conditioning

    status = conditioning.main(["--quick", "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert status == (0 if all(res[p]["bar"] for p in conditioning.PARTS) else 1)
    cfg = res["cfg"]
    assert [r["w"] for r in cfg["rows"]] == [0.0, 1.0, 3.0, 7.0]
    assert all(len(r["per_class_rate"]) == 10 and 0 <= r["rate"] <= 1 for r in cfg["rows"])
    lat = res["latent"]
    assert lat["scale"] > 0 and len(lat["band_error"]) == 17
    assert lat["pixel_steps"] >= 1 and lat["cost_ratio"] > 0
    assert {"cross", "pooled", "real"} <= set(res["prompts"])
    assert 0 <= res["retrieval"]["rate_query_class"] <= 1
