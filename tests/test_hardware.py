"""Chapter 12's decisions for the machine that trains, tested on the CPU by forcing the GPU's
answers (``torch.cuda.is_available``, the card's name, its bf16 support) with monkeypatch: the
device's name, bf16 or the float32 fallback, the card's peak and MFU, the CIFAR-10 download or a
clearly named fallback, and where the Inception weights are looked for."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from _cifar10_archive import make_archive

from minidiff import hardware, linear_schedule, simple_loss
from minidiff.data import load_cifar10_or_fallback
from minidiff.metrics import fid
from minidiff.nn import UNet


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, name: str, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def test_the_device_is_named_by_what_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hardware.device_label("cpu") == "cpu"  # never a GPU's name on a CPU
    _fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3", True)
    assert hardware.device_label("cuda") == "cuda (NVIDIA H100 80GB HBM3)"
    assert hardware.device_label("cpu") == "cpu"


@pytest.mark.parametrize(
    ("name", "bf16", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", True, True),
        ("Tesla T4", False, False),
        ("Tesla V100", False, False),
    ],
)
def test_bf16_where_the_card_has_it_float32_where_it_does_not(
    monkeypatch: pytest.MonkeyPatch, name: str, bf16: bool, expected: bool
) -> None:
    _fake_gpu(monkeypatch, name, bf16)
    choice = hardware.choose_bf16("cuda")
    assert choice.bf16 is expected and name in choice.reason
    if not expected:
        assert "falls back to float32" in choice.reason
    assert hardware.choose_bf16("cpu").bf16 is False


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.0),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA A100-SXM4-40GB", "bf16", 312.0),  # not the A10's 125
        ("NVIDIA A10", "bf16", 125.0),
        ("NVIDIA A10G", "bf16", None),  # a card whose peak is not published: unknown, not a guess
        ("NVIDIA L40S", "bf16", 362.0),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA GeForce RTX 4090", "bf16", 165.2),
        ("Tesla T4", "bf16", None),
        ("Tesla T4", "fp32", 8.1),
        ("AMD Instinct MI300X", "bf16", None),
        # whole model numbers only: the RTX A1000 is not an A100, the H100 NVL not the SXM
        ("NVIDIA RTX A1000", "bf16", None),
        ("NVIDIA H100 NVL", "bf16", None),
        ("NVIDIA H100 NVL", "fp32", None),
        ("NVIDIA L40", "bf16", 181.0),
        ("Tesla V100-SXM2-16GB", "fp32", 15.7),
        # variants with model names of their own: unknown, not the desktop card's figure
        ("NVIDIA GeForce RTX 4090 Laptop GPU", "bf16", None),
        ("NVIDIA GeForce RTX 4090 D", "bf16", None),
        ("NVIDIA GeForce RTX 3090 Ti", "fp32", None),
        ("NVIDIA GeForce RTX 3090", "fp32", 35.6),
    ],
)
def test_peaks_of_common_cards_and_none_for_the_unknown(
    name: str, precision: str, peak: float | None
) -> None:
    assert hardware.peak_tflops(name, precision) == peak


def test_mfu_from_measured_throughput() -> None:
    # 1000 images/s at 37.3 GFLOP per training image on a 989 TFLOP/s card: 3.8 %
    assert hardware.mfu(1000.0, 37.3e9, 989e12) == pytest.approx(0.0377, abs=1e-4)
    assert hardware.mfu(1000.0, 37.3e9, None) is None
    with pytest.raises(ValueError, match="peak"):
        hardware.mfu(1000.0, 37.3e9, 0.0)
    with pytest.raises(ValueError, match="precision"):
        hardware.peak_tflops("NVIDIA L4", "fp8")
    for wrong_type in (None, 16):
        with pytest.raises(TypeError, match="precision must be one of"):
            hardware.peak_tflops("NVIDIA H100", wrong_type)  # type: ignore[arg-type]


def test_mfu_takes_the_peak_as_peak_tflops_gives_it_and_checks_its_numbers() -> None:
    # peak_tflops gives TFLOP/s: passed on as it is, it used to give an MFU of 9.6e8
    per_flops = hardware.mfu(100.0, 3e9, 312e12)
    assert hardware.mfu(100.0, 3e9, hardware.peak_tflops("NVIDIA A100")) == per_flops
    assert per_flops == pytest.approx(100.0 * 3e9 / 312e12)
    with pytest.raises(TypeError, match="peak"):
        hardware.mfu(100.0, 3e9, "312")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="images_per_s"):
        hardware.mfu(-5.0, 3e9, 1e12)
    with pytest.raises(ValueError, match="train_flops_per_image"):
        hardware.mfu(100.0, float("nan"), 1e12)
    with pytest.raises(ValueError, match="peak"):
        hardware.mfu(100.0, 3e9, float("inf"))


def test_bad_arguments_are_named_before_any_work() -> None:
    model = torch.nn.Linear(2, 2)

    def loss_fn(m: torch.nn.Module, b: torch.Tensor) -> torch.Tensor:
        return m(b).pow(2).mean()

    batch = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="device 'gpu'"):
        hardware.device_label("gpu")
    with pytest.raises(ValueError, match="device 'GPU'"):
        hardware.choose_bf16("GPU")
    with pytest.raises(TypeError, match="device"):
        hardware.choose_bf16(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="batch"):
        hardware.time_train_step(model, loss_fn, [[0.0, 1.0]], steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        hardware.time_train_step("m", loss_fn, batch, steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss_fn"):
        hardware.time_train_step(model, "mse", batch, steps=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bf16"):
        hardware.time_train_step(model, loss_fn, batch, bf16="yes", steps=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch"):
        hardware.time_train_step(model, loss_fn, torch.zeros(0, 2), steps=1)
    with pytest.raises(TypeError, match="shape"):
        hardware.forward_flops(model, 2, "cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        hardware.forward_flops("unet", (2,), "cpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        hardware.forward_flops(model, (2,), "cpux")


def test_the_timing_runs_on_the_device_it_is_given() -> None:
    # The step time comes from the model on the batch's device (chapter 12 used to time the CPU
    # and label it with the GPU's name).
    model = UNet("tiny")
    batch = torch.rand(4, 1, 8, 8) * 2 - 1
    sched = linear_schedule(100)
    t = hardware.time_train_step(
        model, lambda m, b: simple_loss(m, b, sched), batch, steps=2, warmup=1
    )
    assert t.seconds_per_step > 0 and t.images_per_s == pytest.approx(4 / t.seconds_per_step)
    with pytest.raises(ValueError, match="steps"):
        hardware.time_train_step(model, lambda m, b: simple_loss(m, b, sched), batch, steps=0)


def test_forward_flops_of_the_ddpm_network() -> None:
    flops = hardware.forward_flops(UNet("ddpm_cifar10"), (3, 32, 32), "cpu")
    assert abs(flops / 1e9 - 12.44) < 0.05  # 12.44 GFLOP per forward pass, as diffusers' twin


# ------------------------------------------------------------------------ the data of a GPU run


def test_cifar10_when_it_can_be_had_else_the_fallback_and_why(tmp_path: Path) -> None:
    src = tmp_path / "server.tar.gz"
    make_archive(src)
    import hashlib

    md5 = hashlib.md5(src.read_bytes()).hexdigest()

    def fallback() -> torch.Tensor:
        return torch.zeros(3, 3, 32, 32)

    images, why = load_cifar10_or_fallback(
        fallback, tmp_path / "a", md5=md5, opener=lambda url: io.BytesIO(src.read_bytes()),
        progress=False,
    )  # fmt: skip
    assert why is None and images.shape == (20, 3, 32, 32)

    def offline(url: str) -> Any:
        raise OSError("Temporary failure in name resolution")

    images, why = load_cifar10_or_fallback(fallback, tmp_path / "b", opener=offline)
    assert images.shape == (3, 3, 32, 32) and why is not None
    assert "could not be downloaded" in why and "cifar-10-python.tar.gz" in why
    images, why = load_cifar10_or_fallback(fallback, tmp_path / "c", download=False)
    assert why is not None and "download=False" in why
    with pytest.raises(TypeError, match="fallback"):
        load_cifar10_or_fallback(torch.zeros(3))  # type: ignore[arg-type]


def test_inception_weights_are_found_where_the_message_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINIDIFF_DATA", str(tmp_path))
    monkeypatch.delenv(fid.INCEPTION_WEIGHTS_ENV, raising=False)
    assert fid.find_inception_weights() is None
    with pytest.raises(FileNotFoundError) as info:
        fid.inception_features(torch.zeros(2, 3, 8, 8))
    assert fid.INCEPTION_WEIGHTS_URL in str(info.value)
    assert str(tmp_path / "weights-inception-2015-12-05-6726825d.pth") in str(info.value)
    fid.default_inception_weights().write_bytes(b"")
    assert fid.find_inception_weights() == tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    monkeypatch.setenv(fid.INCEPTION_WEIGHTS_ENV, str(tmp_path / "typo.pth"))
    with pytest.raises(FileNotFoundError, match="typo.pth"):
        fid.find_inception_weights()  # a named file that is missing does not fall back
