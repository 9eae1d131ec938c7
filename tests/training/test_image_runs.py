"""The image training entry point: data order, outputs, exact resume, DDP == one process."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidiff.nn.unet import UNet
from minidiff.training import load_checkpoint
from minidiff.training.distributed import DistInfo, rank_seed, shard_size
from minidiff.training.images import EpochSampler, ImageRunConfig, load_images, run

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import tiny_config, tiny_images  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _params(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path / "checkpoint.pt")["model"]


def test_epoch_sampler_visits_every_image_once_per_epoch() -> None:
    images = torch.arange(10, dtype=torch.float32).reshape(10, 1, 1, 1)
    s = EpochSampler(images, T=5, global_batch=4, seed=3)
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([s(4, g)[0].flatten() for _ in range(5)])  # 20 images = 2 epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))
    assert seen[:10].tolist() != seen[10:].tolist()  # a new order each epoch
    # the position alone fixes the data: a fresh sampler at position 8 gives batch 3
    s2 = EpochSampler(images, T=5, global_batch=4, seed=3)
    s2.position = 8
    assert s2(4, g)[0].flatten().tolist() == seen[8:12].tolist()


def test_epoch_sampler_shards_make_up_the_global_batch() -> None:
    images = torch.randn(12, 1, 2, 2)
    whole = EpochSampler(images, T=9, global_batch=6)(6, torch.Generator().manual_seed(1))
    parts = [
        EpochSampler(images, T=9, global_batch=6, info=DistInfo(rank=r, world_size=3))(
            6, torch.Generator().manual_seed(1)
        )
        for r in range(3)
    ]
    for i in range(3):
        torch.testing.assert_close(torch.cat([p[i] for p in parts]), whole[i], rtol=0, atol=0)


def test_batch_not_divisible_by_processes_is_refused() -> None:
    with pytest.raises(ValueError, match="divisible by the number of processes world_size=2"):
        shard_size(5, 2)
    with pytest.raises(ValueError, match="batch_size=6"):
        EpochSampler(torch.randn(8, 1, 2, 2), T=5, global_batch=7, info=DistInfo(0, 3))


def test_world_size_is_a_positive_int() -> None:
    # 0 raised ZeroDivisionError, -2 gave a shard of -4 images, 2.0 a shard of 4.0
    for bad, error in ((0, ValueError), (-2, ValueError), (2.0, TypeError)):
        with pytest.raises(error, match="world_size"):
            shard_size(8, bad)  # type: ignore[arg-type]
    assert shard_size(8, 2) == 4


def test_rank_seed_is_distinct_in_the_ranges_its_docstring_states() -> None:
    # the values are those resumed runs were seeded with: they must never change
    assert rank_seed(3, 7, 2) == (3 * 1_000_003 + 7) * 65_537 + 2
    # beyond the stated ranges seeds collide, as the docstring now says
    assert rank_seed(0, 1_000_003, 0) == rank_seed(1, 0, 0)
    assert rank_seed(0, 1, 0) == rank_seed(0, 0, 65_537)
    doc = rank_seed.__doc__ or ""
    assert "0 <= rank < 65_537" in doc and "0 <= step < 1_000_003" in doc
    assert "0 <= seed < 10**8" in doc
    # inside them: the corners and their neighbours are all different
    triples = {
        (s, t, r)
        for s in (0, 1, 10**8 - 2, 10**8 - 1)
        for t in (0, 1, 1_000_001, 1_000_002)
        for r in (0, 1, 65_535, 65_536)
    }
    assert len({rank_seed(*abc) for abc in triples}) == len(triples)
    assert max(rank_seed(*abc) for abc in triples) < 2**63  # no wrap-around


def test_run_writes_log_grids_checkpoint_and_curve(tmp_path: Path) -> None:
    result = run(tiny_config(4, 6, sample_every=2), tmp_path, images=tiny_images(), progress=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"checkpoint.pt", "config.json", "run.jsonl", "loss.png", "samples.png"} <= names
    assert {"samples_0000002.png", "samples_0000004.png"} <= names
    log = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    assert all(r["images_per_s"] > 0 and r["loss"] > 0 for r in log)
    assert len(result.losses) == 4


def test_chunks_and_resume_give_bitwise_the_same_weights(tmp_path: Path) -> None:
    images = tiny_images()
    run(tiny_config(6, 6, sample_every=6), tmp_path / "a", images=images, progress=False)
    run(tiny_config(6, 6, sample_every=2), tmp_path / "b", images=images, progress=False)
    # stopped after 2 steps, started again with more steps
    run(tiny_config(2, 6, sample_every=2), tmp_path / "c", images=images, progress=False)
    run(tiny_config(6, 6, sample_every=2), tmp_path / "c", images=images, progress=False)
    a, b, c = (_params(tmp_path / n) for n in "abc")
    for name in a:
        assert torch.equal(a[name], b[name]), name
        assert torch.equal(a[name], c[name]), name
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pt")["step"] == 6


def test_run_from_another_configuration_is_refused(tmp_path: Path) -> None:
    run(tiny_config(1, 6), tmp_path, images=tiny_images(), progress=False)
    other = tiny_config(2, 6)
    other.lr = 5e-4
    with pytest.raises(ValueError, match="another configuration.*lr"):
        run(other, tmp_path, images=tiny_images(), progress=False)


def test_images_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expects \(N, 1, 8, 8\)"):
        run(tiny_config(1, 6), tmp_path, images=torch.zeros(8, 3, 8, 8), progress=False)
    with pytest.raises(ValueError, match="model must be one of"):
        ImageRunConfig(model="huge")


def _torchrun(out: Path, nproc: int, steps: int, batch: int, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", str(ROOT / "tests" / "training" / "ddp_worker.py"),
        str(out), str(steps), str(batch), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    """gloo, 2 CPU processes with 3 images each == 1 process with 6, after 2 AdamW steps."""
    _torchrun(tmp_path / "ddp", nproc=2, steps=2, batch=6)
    run(tiny_config(2, 6), tmp_path / "one", images=tiny_images(), progress=False)
    ddp, one = _params(tmp_path / "ddp"), _params(tmp_path / "one")
    for name in one:
        # all-reduce sums in another order than one big batch: equal up to float round-off
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-5, atol=1e-6)
    ddp_ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    one_ckpt = load_checkpoint(tmp_path / "one" / "checkpoint.pt")
    # the recorded loss is the mean over both shards: the loss of the global batch
    assert ddp_ckpt["losses"] == pytest.approx(one_ckpt["losses"], rel=1e-5)
    ddp_ema, one_ema = ddp_ckpt["ema"]["model"], one_ckpt["ema"]["model"]
    for name in one_ema:
        torch.testing.assert_close(ddp_ema[name], one_ema[name], rtol=1e-5, atol=1e-6)
    # the comparison is not vacuous: the steps moved the weights well beyond the tolerance
    torch.manual_seed(0)
    fresh = UNet("tiny").state_dict()
    assert max(float((one[n] - fresh[n]).abs().max()) for n in one) > 1e-3


@pytest.mark.slow
def test_ddp_with_dropout_per_rank_masks_one_writer_and_the_mean_loss(tmp_path: Path) -> None:
    """gloo, 2 processes, dropout 0.3, 3 steps: the ranks draw different dropout masks (and new
    ones each step), only rank 0 writes the checkpoint, and the recorded loss of each step is the
    mean of the two shards' losses."""
    record = tmp_path / "record"
    record.mkdir()
    _torchrun(tmp_path / "ddp", 2, 3, 6, "0.3", str(record))
    r0, r1 = (torch.load(record / f"rank{r}.pt") for r in (0, 1))
    per_step = len(r0["masks"]) // 3
    assert per_step > 0 and len(r0["masks"]) == len(r1["masks"]) == 3 * per_step
    for i, (a, b) in enumerate(zip(r0["masks"], r1["masks"], strict=True)):
        assert 0.1 < float(a.float().mean()) < 0.5, i  # dropout 0.3 acted
        assert not torch.equal(a, b), f"dropout call {i}: both ranks drew the same mask"
    assert not torch.equal(r0["masks"][0], r0["masks"][per_step])  # step 2 draws new masks
    assert r0["saves"] >= 1 and r1["saves"] == 0, (r0["saves"], r1["saves"])
    assert len(r0["losses"]) == len(r1["losses"]) == 3 and r0["losses"] != r1["losses"]
    mean = [(a + b) / 2 for a, b in zip(r0["losses"], r1["losses"], strict=True)]
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["losses"] == pytest.approx(
        mean, rel=1e-6
    )


def test_command_line_trains_on_the_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from minidiff.training.cli import main

    args = ["train", "--out", str(tmp_path), "--model", "tiny", "--data", "digits", "--steps",
            "2", "--batch-size", "8", "--T", "20", "--sample-every", "2", "--n-samples", "4",
            "--sample-steps", "2", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert (tmp_path / "samples.png").is_file()
    assert "step 2: loss" in capsys.readouterr().out


def test_command_line_refuses_a_model_that_does_not_fit_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from minidiff.training.cli import main

    args = ["train", "--out", str(tmp_path), "--model", "cifar10_cpu", "--data", "digits"]
    assert main([*args, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expects (N, 3, 32, 32)" in err, err
    assert not (tmp_path / "config.json").exists()  # refused before anything was written


def test_images_outside_the_unit_range_are_refused_before_training(tmp_path: Path) -> None:
    pixels = (tiny_images() + 1) * 127.5  # 8-bit values, not yet mapped to [-1, 1]
    with pytest.raises(
        ValueError, match=r"images must lie in \[-1, 1\].*got values in \[0"
    ) as info:
        run(tiny_config(2, 4), tmp_path / "run", images=pixels, progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    # the function the message points to exists where it says
    import importlib

    module, name = re.search(r"(minidiff[\w.]*)\.(\w+)", str(info.value)).groups()  # type: ignore[union-attr]
    assert callable(getattr(importlib.import_module(module), name))


def test_command_line_refuses_a_bad_grid_path_before_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from minidiff.training.cli import main

    for grid, words in [(tmp_path, "--grid must be the path of a .png file"),
                        (tmp_path / "g.jpg", "--grid must be the path of a .png file"),
                        (tmp_path / "nowhere" / "g.png", "its folder does not exist")]:  # fmt: skip
        assert main(["sample", "--out", str(tmp_path / "no-run"), "--grid", str(grid)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_missing_cifar10_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="CIFAR-10 is not in"):
        load_images("cifar10", root=str(tmp_path / "nowhere"), download=False)


def test_sample_grids_clip_x0_by_default() -> None:
    """The grids of an image run clip the predicted clean image to [-1, 1] unless told not to: an
    untrained U-Net's DDIM samples leave the range without clipping and stay in it with it."""
    from minidiff.training.images import sample_grid

    torch.manual_seed(0)
    model = UNet("tiny").eval()
    with torch.no_grad():  # an untrained output layer starts at zero: give it something to say
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    config = tiny_config(1, 6)
    assert config.clip_x0 == "static"
    clipped = sample_grid(model, config, torch.device("cpu"))
    config.clip_x0 = "none"
    free = sample_grid(model, config, torch.device("cpu"))
    assert float(clipped.abs().max()) <= 1.0 + 1e-5
    assert float(free.abs().max()) > 1.5


def test_a_run_reads_its_checkpoint_once_not_at_every_sample_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop hands control back after each step, so sampling and saving need no restart: a
    fresh run with 3 sample points writes 3 checkpoints and reads none; its continuation reads
    the last one once."""
    import minidiff.training.state as state_module

    loads, saves = [], []
    real_load, real_save = state_module.load_checkpoint, state_module.save_checkpoint
    monkeypatch.setattr(state_module, "load_checkpoint", lambda p: loads.append(p) or real_load(p))
    monkeypatch.setattr(
        state_module, "save_checkpoint", lambda p, **s: saves.append(p) or real_save(p, **s)
    )
    run(tiny_config(6, 6, sample_every=2), tmp_path, images=tiny_images(), progress=False)
    assert (len(loads), len(saves)) == (0, 3)
    run(tiny_config(8, 6, sample_every=2), tmp_path, images=tiny_images(), progress=False)
    assert (len(loads), len(saves)) == (1, 4)


def test_a_run_on_given_images_continues_only_on_the_same_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run records the images it trains on (shape and content hash), not the name of a data
    set it never loaded; continuing it without them, or with others, is refused (in run() and on
    the command line), never trained on the default data set instead."""
    from minidiff.training.cli import main

    images = tiny_images()  # the shape of the digits: the old run went on with them silently
    run(tiny_config(2, 6), tmp_path, images=images, progress=False)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["images_from"] == "the images argument"
    assert saved["images"]["shape"] == [24, 1, 8, 8] and len(saved["images"]["sha256"]) == 64
    for other in (None, tiny_images(25), images.flip(0)):
        with pytest.raises(ValueError, match="images: .*trained on other images.*pass the same"):
            run(tiny_config(4, 6), tmp_path, images=other, progress=False)
    args = ["train", "--out", str(tmp_path), "--model", "tiny", "--steps", "4", "--batch-size",
            "6", "--lr", "1e-3", "--warmup-steps", "0", "--ema-decay", "0.9", "--T", "20",
            "--sample-every", "2", "--n-samples", "4", "--sample-steps", "2", "--no-progress",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 2
    assert "trained on other images" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2  # nothing was trained
    assert run(tiny_config(4, 6), tmp_path, images=images.clone(), progress=False).steps_done == 4


def test_a_run_recorded_before_images_and_schedules_were_continues_with_a_warning(
    tmp_path: Path,
) -> None:
    """A run folder from before runs recorded their images and schedule still continues (it
    says it cannot check them), and stays in its form, so that it continues again later."""
    from minidiff.training import save_checkpoint

    images = tiny_images()
    run(tiny_config(2, 6), tmp_path, images=images, progress=False)
    new_keys = ("images", "schedule", "images_from")
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({k: v for k, v in saved.items() if k not in new_keys})
    )
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    ckpt["config"]["data"] = {k: v for k, v in ckpt["config"]["data"].items() if k not in new_keys}
    save_checkpoint(tmp_path / "checkpoint.pt", **ckpt)
    for steps in (3, 4):
        with pytest.warns(UserWarning, match="recorded without its images and schedule"):
            result = run(tiny_config(steps, 6), tmp_path, images=images, progress=False)
        assert result.steps_done == steps
    assert "images" not in json.loads((tmp_path / "config.json").read_text())


def test_a_run_with_tuples_in_its_overrides_resumes(tmp_path: Path) -> None:
    """config.json reads tuples back as lists: the record compares equal all the same."""
    images = tiny_images()
    config = tiny_config(2, 6)
    config.overrides = {"attn_resolutions": (4,), "channel_mult": (1, 2)}
    run(config, tmp_path, images=images, progress=False)
    config.steps = 4
    assert run(config, tmp_path, images=images, progress=False).resumed_from == 2


def test_a_run_records_its_schedule_and_is_continued_and_sampled_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schedule with another T is refused before anything is written; the schedule of a run is
    in its record, a continuation with another one is refused, and the command line continues
    and samples the run with it."""
    import minidiff.training.cli as cli
    from minidiff.schedules import cosine_schedule, linear_schedule

    images = tiny_images()
    with pytest.raises(ValueError, match=r"schedule has T=10 steps but config.T=20"):
        run(
            dataclasses.replace(tiny_config(2, 6), data="cifar10"),
            tmp_path,
            images=images,
            schedule=linear_schedule(10),
        )
    assert not (tmp_path / "config.json").exists()
    cosine = cosine_schedule(20)
    run(
        dataclasses.replace(tiny_config(2, 6), data="cifar10"),
        tmp_path,
        images=images,
        schedule=cosine,
        progress=False,
    )
    with pytest.raises(ValueError, match=r"schedule: .*trained with the schedule of betas"):
        run(
            dataclasses.replace(tiny_config(4, 6), data="cifar10"),
            tmp_path,
            images=images,
            progress=False,
        )
    used: list[object] = []
    real = cli.sample_grid
    monkeypatch.setattr(cli, "sample_grid", lambda *a, **kw: used.append(kw) or real(*a, **kw))
    assert cli.main(["sample", "--out", str(tmp_path), "--n-samples", "4", "--device", "cpu"]) == 0
    schedule = used[0]["schedule"]  # type: ignore[index]
    assert torch.equal(schedule.betas, cosine.betas)
    # the command line continues the run with its schedule, and names its own flags in errors
    assert cli.main(["sample", "--out", str(tmp_path), "--n-samples", "0"]) == 2
    assert "error: --n-samples must be >= 1" in capsys.readouterr().err
    monkeypatch.setattr(cli, "load_images", lambda *a, **kw: images)
    args = ["train", "--out", str(tmp_path), "--model", "tiny", "--steps", "3", "--batch-size",
            "6", "--lr", "1e-3", "--warmup-steps", "0", "--ema-decay", "0.9", "--T", "20",
            "--sample-every", "2", "--n-samples", "4", "--sample-steps", "2", "--no-progress",
            "--device", "cpu", "--data", "cifar10", "--data-root", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 0, capsys.readouterr().err
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 3


def test_command_line_errors_name_the_flags_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from minidiff.training.cli import main

    assert main(["train", "--out", str(tmp_path / "a"), "--batch-size", "0"]) == 2
    assert "error: --batch-size must be >= 1, got 0" in capsys.readouterr().err
    args = ["train", "--out", str(tmp_path / "b"), "--data", "cifar10"]
    assert main([*args, "--data-root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "with --data-root or the MINIDIFF_DATA" in err and "(without --download)" in err, err
    assert "root argument" not in err


def test_images_that_are_not_float32_are_refused_naming_their_dtype(tmp_path: Path) -> None:
    pixels = ((tiny_images() + 1) * 127.5).to(torch.uint8)
    for images, words in [
        (tiny_images().double(), r"torch.float64; images.float\(\)"),
        (pixels, r"torch.uint8; minidiff.data.to_unit_range\(images, 255.0\)"),
    ]:
        with pytest.raises(TypeError, match=rf"images must be a float32 tensor .*dtype {words}"):
            run(tiny_config(2, 4), tmp_path / "run", images=images, progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_sample_grid_takes_a_device_string_or_none() -> None:
    from minidiff.training.images import sample_grid

    config = tiny_config(1, 6)
    model = UNet(config.unet_config()).eval()
    want = sample_grid(model, config, torch.device("cpu"))
    assert torch.equal(sample_grid(model, config, "cpu"), want)
    assert torch.equal(sample_grid(model, config, None), want)  # the default device: here the CPU
    with pytest.raises(ValueError, match="device 'cpux'"):
        sample_grid(model, config, "cpux")


def test_an_unknown_override_is_a_type_error_like_unet_s() -> None:
    with pytest.raises(TypeError, match=r"overrides has unknown UNetConfig field\(s\) \['bogus'\]"):
        ImageRunConfig(model="tiny", overrides={"bogus": 3})
    with pytest.raises(TypeError, match=r"unknown UNetConfig field\(s\) \['bogus'\]"):
        UNet("tiny", bogus=3)


def test_a_damaged_config_json_is_repaired_from_the_checkpoint_or_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With config.json emptied, a run of another configuration is refused by the checkpoint,
    naming the entry that differs and a remedy that exists, and no file changes; the command
    line takes the run's schedule from the checkpoint, continues the run and repairs the file."""
    import minidiff.training.cli as cli
    from minidiff.schedules import cosine_schedule

    images, cosine = tiny_images(), cosine_schedule(20)
    run(
        dataclasses.replace(tiny_config(2, 6), data="cifar10"),
        tmp_path,
        images=images,
        schedule=cosine,
        progress=False,
    )
    (tmp_path / "config.json").write_text("")
    other = dataclasses.replace(tiny_config(4, 6), data="cifar10")
    other.lr = 5e-4
    with pytest.warns(UserWarning, match="cannot be read"):
        with pytest.raises(ValueError) as refused:
            run(other, tmp_path, images=images, schedule=cosine, progress=False)
    message = str(refused.value)
    assert "(lr=0.001 in checkpoint vs 0.0005); use another out_dir" in message, message
    assert "data={" not in message and "data.lr" not in message
    assert (tmp_path / "config.json").read_text() == ""  # not rewritten with the refused config
    monkeypatch.setattr(cli, "load_images", lambda *a, **kw: images)
    args = ["train", "--out", str(tmp_path), "--model", "tiny", "--batch-size", "6", "--lr",
            "1e-3", "--warmup-steps", "0", "--ema-decay", "0.9", "--T", "20", "--sample-every",
            "2", "--n-samples", "4", "--sample-steps", "2", "--no-progress", "--device", "cpu",
            "--data", "cifar10", "--data-root", str(tmp_path)]  # fmt: skip
    with pytest.warns(UserWarning, match="cannot be read"):
        assert cli.main([*args, "--steps", "4", "--lr", "5e-4"]) == 2
    err = capsys.readouterr().err
    assert "(--lr=0.001 in checkpoint vs 0.0005); use another --out" in err, err
    assert err.count("\n") == 1 and "data" not in err.replace("--data-root", ""), err
    assert (tmp_path / "config.json").read_text() == ""
    with pytest.warns(UserWarning, match="cannot be read") as said:
        assert cli.main([*args, "--steps", "4"]) == 0, capsys.readouterr().err
    assert len([w for w in said if "cannot be read" in str(w.message)]) == 1  # once a command
    repaired = json.loads((tmp_path / "config.json").read_text())
    assert repaired["schedule"] == {"betas": cosine.betas[1:].tolist()}
    # images loaded with --data-root are recorded as coming from that folder
    assert repaired["images_from"] == f"load_images('cifar10', root={str(tmp_path)!r})"
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4


def test_a_checkpoint_whose_record_holds_tuples_resumes(tmp_path: Path) -> None:
    """An older version saved the record with the tuples of the overrides (torch.load reads
    them back as tuples); it compares equal to this version's record, which holds lists."""
    from minidiff.training import save_checkpoint

    images = tiny_images()
    config = tiny_config(2, 6)
    config.overrides = {"channel_mult": (1, 2)}
    run(config, tmp_path, images=images, progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    ckpt["config"]["data"]["unet"]["channel_mult"] = (1, 2)
    ckpt["config"]["data"]["overrides"] = {"channel_mult": (1, 2)}
    save_checkpoint(tmp_path / "checkpoint.pt", **ckpt)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["data"]["unet"][
        "channel_mult"
    ] == (
        1,
        2,
    )
    config.steps = 4
    assert run(config, tmp_path, images=images, progress=False).resumed_from == 2


def test_float64_copies_of_the_run_s_images_are_refused_naming_the_dtype(tmp_path: Path) -> None:
    images = tiny_images()
    run(tiny_config(2, 6), tmp_path, images=images, progress=False)
    with pytest.raises(TypeError, match=r"images must be a float32 .*float64; images.float\(\)"):
        run(tiny_config(4, 6), tmp_path, images=images.double(), progress=False)


def test_command_line_errors_of_a_run_name_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out that is a file, a changed --batch-size, images that do not fit --model, and another
    --T for a run with its own schedule: each message names the flag, not run()'s argument."""
    import minidiff.training.cli as cli
    from minidiff.schedules import cosine_schedule

    a_file = tmp_path / "p1.py"
    a_file.write_text("")
    assert cli.main(["train", "--out", str(a_file)]) == 2
    assert f"error: --out '{a_file}' is a file" in capsys.readouterr().err
    images = tiny_images()
    config = dataclasses.replace(tiny_config(2, 6), data="cifar10")  # --data-root's data set
    run(config, tmp_path / "r", images=images, schedule=cosine_schedule(20))
    monkeypatch.setattr(cli, "load_images", lambda *a, **kw: images)
    args = ["train", "--out", str(tmp_path / "r"), "--model", "tiny", "--data", "cifar10",
            "--lr", "1e-3",
            "--warmup-steps", "0", "--ema-decay", "0.9", "--sample-every", "2", "--n-samples",
            "4", "--sample-steps", "2", "--no-progress", "--device", "cpu", "--data-root",
            str(tmp_path), "--steps", "4"]  # fmt: skip
    assert cli.main([*args, "--T", "20", "--batch-size", "8"]) == 2
    assert "(--batch-size=6 there vs 8 now)" in capsys.readouterr().err
    assert cli.main([*args, "--T", "30", "--batch-size", "6"]) == 2
    err = capsys.readouterr().err
    assert "keep the run's --T" in err and "run(" not in err, err
    import minidiff.training.images as image_runs

    monkeypatch.setattr(image_runs, "load_images", lambda *a, **kw: torch.zeros(4, 3, 8, 8))
    assert (
        cli.main(["train", "--out", str(tmp_path / "s"), "--model", "tiny", "--device", "cpu"]) == 2
    )
    err = capsys.readouterr().err
    assert "images of --data (load_images('digits')) have shape" in err, err
    assert "but --model 'tiny' expects" in err
    # images the command line loads itself (--data-root) are the images of --data too
    monkeypatch.setattr(cli, "load_images", lambda *a, **kw: torch.zeros(4, 3, 8, 8))
    where = ["--out", str(tmp_path / "u"), "--data-root", str(tmp_path), "--device", "cpu"]
    assert cli.main(["train", *where, "--model", "tiny", "--data", "cifar10"]) == 2
    err = capsys.readouterr().err
    assert f"the images of --data (load_images('cifar10', root={str(tmp_path)!r})) have shape" in (
        err
    ), err
    assert "images argument" not in err, err


def test_command_line_continuing_a_run_on_other_images_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last phrase of the command line's translations without a test through main(): other
    images than the run's are said as --data, with where both came from, and no run() call."""
    import minidiff.training.cli as cli

    images = tiny_images()
    run(
        dataclasses.replace(tiny_config(2, 6), data="cifar10"),
        tmp_path,
        images=images,
        progress=False,
    )
    monkeypatch.setattr(cli, "load_images", lambda *a, **kw: -images)
    args = ["train", "--out", str(tmp_path), "--model", "tiny", "--batch-size", "6", "--lr",
            "1e-3", "--warmup-steps", "0", "--ema-decay", "0.9", "--T", "20", "--sample-every",
            "2", "--n-samples", "4", "--sample-steps", "2", "--no-progress", "--device", "cpu",
            "--steps", "4", "--data", "cifar10", "--data-root", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained on other images (the images argument," in err, err
    assert f"than these (load_images('cifar10', root={str(tmp_path)!r})," in err, err
    assert err.rstrip().endswith("pass the same --data, or use another --out"), err
    assert "run(" not in err and "out_dir" not in err, err


def test_a_difference_inside_an_empty_record_entry_is_named_once() -> None:
    from minidiff.training.config import check_resume_record

    with pytest.raises(ValueError) as info:
        check_resume_record(
            {"data": {"overrides": {}}}, {"data": {"overrides": {"dropout": 0.2}}}, "ckpt"
        )
    assert "(data.overrides.dropout=None in checkpoint vs 0.2)" in str(info.value)


def test_a_schedule_of_one_or_a_few_steps_is_described_in_full() -> None:
    from minidiff.training.images import _said

    assert _said({"betas": [0.5]}, 1) == "the schedule of betas (0.5)"
    assert _said({"betas": [0.1, 0.2, 0.3, 0.4]}, 4) == "the schedule of betas (0.1, 0.2, ..., 0.4)"
