"""The command line's refusals found by trying it as a student would: each mistake ends with one
line naming the flag, status 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minidiff.training.cli import main

TINY = ["--model", "tiny", "--steps", "2", "--batch-size", "4", "--T", "10", "--sample-every",
        "2", "--n-samples", "2", "--sample-steps", "2", "--no-progress",
        "--device", "cpu"]  # fmt: skip


def _refused(capsys: pytest.CaptureFixture[str], out: Path, args: list[str], *words: str) -> str:
    assert main(["train", "--out", str(out), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert not out.exists()  # refused before any file was written
    return err


@pytest.mark.parametrize("flag", [["--data-root", "somewhere"], ["--download"]])
def test_a_cifar10_option_with_other_data_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    # --data defaults to digits: a --data-root without --data cifar10 trained on the digits
    _refused(capsys, tmp_path / "run", flag, flag[0], "--data cifar10", "'digits'")
    _refused(capsys, tmp_path / "run", ["--data", "patches", *flag], flag[0], "'patches'")


def test_a_seed_too_large_for_torch_is_refused_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # was "Overflow when unpacking long long" at the first step, after config.json was written
    _refused(capsys, tmp_path / "run", ["--seed", str(2**63)], "--seed must be <= ")


def test_every_allowed_seed_orders_the_data() -> None:
    from minidiff.training.image_data import EpochSampler

    images = torch.zeros(5, 1, 2, 2)
    for seed in (0, 2**50, 2**63 - 1):  # 2**50 * 1_000_003 overflowed torch's seed
        perm = EpochSampler(images, T=10, global_batch=5, seed=seed).indices(0, 10)
        assert sorted(perm[:5].tolist()) == sorted(perm[5:].tolist()) == list(range(5))
    # the seeds that fitted before draw the same order as before
    g = torch.Generator().manual_seed(3 * 1_000_003 + 1)
    assert torch.equal(
        EpochSampler(images, T=10, global_batch=5, seed=3).indices(5, 5),
        torch.randperm(5, generator=g),
    )


def test_a_sample_grid_larger_than_memory_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from minidiff._memory import machine_memory

    n = str(machine_memory() // 1000)  # 4 kB of the tiny U-Net's first layer per image
    # was a RuntimeError traceback of the allocator at the first grid, after the training
    _refused(capsys, tmp_path / "run", ["--n-samples", n], f"--n-samples={n} asks for")


def test_sample_refuses_a_grid_larger_than_memory_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from minidiff._memory import machine_memory

    assert main(["train", "--out", str(tmp_path), *TINY]) == 0
    capsys.readouterr()
    n = str(machine_memory() // 1000)
    assert main(["sample", "--out", str(tmp_path), "--n-samples", n]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--n-samples={n} asks for" in err, err
    assert not list(tmp_path.glob("ema_step*.png"))


def test_an_empty_out_is_refused_not_the_working_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--out", "", *TINY]) == 2  # trained into the working folder
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out must name a folder" in err, err
    assert not list(tmp_path.iterdir())


def test_a_tilde_in_out_and_grid_means_the_home_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)  # a literal folder "~" was made here, as --data-root never did
    assert main(["train", "--out", "~/run", *TINY]) == 0
    assert main(["sample", "--out", "~/run", "--grid", "~/g.png", "--n-samples", "1"]) == 0
    assert (home / "run" / "checkpoint.pt").is_file() and (home / "g.png").is_file()
    assert not list(work.iterdir())


def test_continuing_with_another_dropout_names_the_flag_in_one_short_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--out", str(tmp_path), *TINY, "--dropout", "0.1"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", "--out", str(tmp_path), *TINY, "--dropout", "0.2"]) == 2
    err = capsys.readouterr().err
    # was "overrides={'dropout': 0.1} there vs {'dropout': 0.2} now, unet={...}" (500+ characters)
    assert err.count("\n") == 1 and "--dropout=0.1 there vs 0.2 now" in err, err
    assert "overrides" not in err and "unet" not in err and len(err) < 300, err
    assert main(["train", "--out", str(tmp_path), *TINY, "--model", "digits"]) == 2
    err = capsys.readouterr().err
    assert "--model='tiny' there vs 'digits' now" in err and "unet" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_full_disk_at_a_sample_grid_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import minidiff.viz.grid as grid

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(grid, "save_image_grid", full)
    assert main(["train", "--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err
    # was "[Errno 28] No space left on device", naming no file
    path = tmp_path / "samples_0000002.png"
    assert err.count("\n") == 1 and f"could not write {str(path)!r}: No space left" in err, err
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp.png")]
