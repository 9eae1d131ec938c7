"""bench/cond_images.py at toy size, so that it cannot rot (its numbers are the benchmark's
business, not a test's)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


def test_quick_run_writes_every_measure(tmp_path: Path) -> None:
    import cond_images

    torch.set_num_threads(1)
    path = tmp_path / "cond.json"
    status = cond_images.main(["--quick", "--seeds", "1", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) == 1
    for key in (
        "hb_bicubic",
        "hb_sr",
        "hb_cascade_plain",
        "hb_cascade_aug",
        "seam_replace",
        "seam_repaint",
        "psnr_regression",
    ):
        assert key in rows[0] and rows[0][key] == rows[0][key]  # present and not NaN
    assert 0 <= rows[0]["agree_repaint"] <= 1
    photo_keys = (
        "photo_hb_sr_proj",
        "photo_psnr_regression",
        "chroma_err_sample",
        "colour_gap_sample",
    )
    for key in photo_keys:  # the photo-patch part: super-resolution 16 -> 32 and colorization
        assert key in rows[0] and rows[0][key] == rows[0][key]
    assert rows[0]["colourful_gray"] == 0.0
    assert status in (0, 1)
