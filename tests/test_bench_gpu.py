"""The GPU scripts of bench/, run on the CPU with tiny settings (they are written for a GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_gpu_throughput_smoke_on_cpu(tmp_path: Path) -> None:
    import gpu_throughput

    out = tmp_path / "t.json"
    res = gpu_throughput.main(
        ["--tiny", "--device", "cpu", "--no-peer", "--no-compile", "--json", str(out)]
    )
    rows = json.loads(out.read_text())["train"]
    assert res["device"] == "cpu" and len(rows) == 1
    assert rows[0]["train_images_per_s"] > 0 and rows[0]["train_gflops_per_image"] > 0
    assert rows[0]["mfu"] is None  # no known peak for a CPU
    assert set(res["sampling_images_per_s"]) == {"ddpm_10", "ddim_50"}


def test_gpu_throughput_refuses_missing_gpu() -> None:
    import gpu_throughput

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_throughput.main(["--device", "cuda"])


@pytest.mark.slow
def test_gpu_cifar10_run_smoke_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gpu_cifar10_run

    monkeypatch.delenv("MINIDIFF_INCEPTION_WEIGHTS", raising=False)
    summary = gpu_cifar10_run.main(
        ["--out", str(tmp_path), "--tiny", "--device", "cpu", "--no-peer", "--no-compile"]
    )
    run_dir = tmp_path / "run"
    for name in ("loss.png", "samples.png", "run.jsonl", "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    assert (tmp_path / "throughput.json").is_file()
    fid = json.loads((tmp_path / "fid.json").read_text())
    assert fid["fid"] is None and fid["why"]
    assert summary["steps"] == 4
