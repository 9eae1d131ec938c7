"""The GPU scripts of bench/, run on the CPU with tiny settings (they are written for a GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))


# google/ddpm-cifar10-32's config.json (Ho et al.'s CIFAR-10 model converted to diffusers);
# dropout is not in it (an inference config): 0.1 is the paper's training value.
DDPM_CIFAR10_32_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256],
    "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "in_channels": 3,
    "layers_per_block": 2,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 32,
    "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
}


def _block_diffusers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import diffusers`` fail as it does where diffusers is not installed."""
    for name in [m for m in sys.modules if m == "diffusers" or m.startswith("diffusers.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "diffusers", None)


def test_gpu_throughput_smoke_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without diffusers the benchmark runs without its peer and says why, as on a machine with
    no network where no wheel was carried."""
    import gpu_throughput

    _block_diffusers(monkeypatch)
    out = tmp_path / "t.json"
    args = ["--tiny", "--device", "cpu", "--no-compile", "--cpu-bf16", "--json", str(out)]
    res = gpu_throughput.main(args)  # bf16 autocast as on a GPU
    rows = json.loads(out.read_text())["train"]
    assert res["device"] == "cpu" and res["bf16"] and len(rows) == 1
    assert rows[0]["train_images_per_s"] > 0 and rows[0]["train_gflops_per_image"] > 0
    assert rows[0]["mfu"] is None  # no known peak for a CPU
    assert rows[0]["vs_peer"] is None and "error" not in rows[0]
    assert set(res["sampling_images_per_s"]) == {"ddpm_10", "ddim_50"}
    assert res["peer"].startswith("not measured: diffusers cannot be imported")
    err = capsys.readouterr().err
    assert "diffusers cannot be imported" in err and "pip download --no-deps" in err


def test_peer_config_is_google_ddpm_cifar10_32() -> None:
    import gpu_throughput

    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in gpu_throughput.PEER_CONFIG.items()}
    assert cfg.pop("dropout") == 0.1
    assert cfg == DDPM_CIFAR10_32_CONFIG


def test_forward_flops_counts_fused_attention() -> None:
    """A contiguous single-head attention (diffusers' layout) counts its two matmuls,
    4 L^2 d FLOPs; on the CPU's fused kernel the flop counter would see none."""
    import gpu_throughput

    class Attn(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            q = x.reshape(1, 1, 256, 64)
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    flops = gpu_throughput.forward_flops(Attn(), (256, 64), torch.device("cpu"))
    assert flops == 4 * 256 * 256 * 64


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
    args = ["--out", str(tmp_path), "--tiny", "--device", "cpu", "--no-peer", "--no-compile"]
    summary = gpu_cifar10_run.main([*args, "--cpu-bf16"])  # bf16 autocast as on a GPU
    run_dir = tmp_path / "run"
    for name in ("loss.png", "samples.png", "run.jsonl", "checkpoint.pt"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "config.json").read_text())["bf16"] is True
    assert (tmp_path / "throughput.json").is_file() and (tmp_path / "summary.json").is_file()
    assert "digits" in summary["data"]  # type: ignore[operator]
    fid = json.loads((tmp_path / "fid.json").read_text())
    assert fid["fid"] is None and fid["why"]
    assert summary["steps"] == 4


def test_peer_path_on_cpu(tmp_path: Path) -> None:
    """The diffusers peer, tiny, through the whole benchmark; then the full-size peer has the
    parameter count and forward FLOPs of UNet("ddpm_cifar10") (both 35.7 M)."""
    pytest.importorskip("diffusers", reason="diffusers is not installed (CI does not install it)")
    import gpu_throughput

    from minidiff.nn import UNet, count_parameters

    res = gpu_throughput.main(["--tiny", "--device", "cpu", "--no-compile"])
    assert res["peer"] == "measured"
    ours, peer = res["train"]
    assert peer["model"] == "diffusers UNet2DModel" and "error" not in peer
    assert peer["train_images_per_s"] > 0 and peer["train_gflops_per_image"] > 0
    assert ours["vs_peer"] == pytest.approx(ours["train_images_per_s"] / peer["train_images_per_s"])

    torch.manual_seed(0)
    big_peer, big_ours = gpu_throughput.DiffusersPeer(), UNet("ddpm_cifar10")
    assert count_parameters(big_peer) == count_parameters(big_ours)
    assert abs(count_parameters(big_ours) / 35.7e6 - 1) < 0.01
    cpu = torch.device("cpu")
    f_peer = gpu_throughput.forward_flops(big_peer, (3, 32, 32), cpu)
    f_ours = gpu_throughput.forward_flops(big_ours, (3, 32, 32), cpu)
    assert f_peer == pytest.approx(f_ours, rel=0.01)
    assert 12e9 < f_ours < 13e9  # 12.4 GFLOP: convolutions 12.1, attention matmuls 0.34


def test_gpu_run_trains_on_patches_without_cifar10(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CIFAR-10 cached, no download: the full-size run trains on photo patches, saying so."""
    import gpu_cifar10_run

    real_load = gpu_cifar10_run.load_images
    asked: list[str] = []

    def load_images(name: str, root: str | None = None, download: bool = False) -> torch.Tensor:
        asked.append(name)  # fewer patches than the real run's 20 000, to keep the test short
        return real_load(name, root=root, download=download, n_patches=64)

    monkeypatch.setattr(gpu_cifar10_run, "load_images", load_images)
    monkeypatch.setenv("MINIDIFF_DATA", str(tmp_path))
    images, model, data, batch, note = gpu_cifar10_run.training_data(False, None, False)
    assert (model, data, batch) == ("ddpm_cifar10", "patches", 128)
    assert images.ndim == 4 and tuple(images.shape[1:]) == (3, 32, 32)
    assert note.startswith("NOT CIFAR-10 (FileNotFoundError") and "patches" in note
    assert asked == ["patches"] and "NOT CIFAR-10" in capsys.readouterr().err


def test_gpu_throughput_survives_a_failing_compile(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torch.compile that fails is recorded in its row; eager rows and sampling still run."""
    import gpu_throughput

    def broken_compile(*args: object, **kwargs: object) -> None:
        raise RuntimeError("inductor is broken here")

    _block_diffusers(monkeypatch)
    monkeypatch.setattr(gpu_throughput.torch, "compile", broken_compile)
    res = gpu_throughput.main(["--tiny", "--device", "cpu"])
    eager, compiled = res["train"]
    assert eager["train_images_per_s"] > 0 and "error" not in eager
    assert compiled["compile"] and compiled["train_images_per_s"] is None
    assert "inductor is broken here" in compiled["error"]
    assert res["sampling_compiled"] == {"ddpm_10": False, "ddim_50": False}
    assert min(res["sampling_images_per_s"].values()) > 0
    assert "with torch.compile failed" in capsys.readouterr().err
