"""Faults, each in a subprocess: SIGKILL during ``train`` and during an image run, torn and emptied
files of a run folder, and what the command line says about mistakes (one line, exit status 2).

Every test says how many faults or inputs it tries.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from minidiff.training import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
ENV.pop("MINIDIFF_STRICT_CHECKS", None)
TINY = ["--model", "tiny", "--data", "digits", "--batch-size", "8", "--T", "20", "--n-samples",
        "4", "--sample-steps", "2", "--device", "cpu", "--lr", "1e-3"]  # fmt: skip


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "minidiff.training", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` is true (polled every 5 ms)."""
    child = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + timeout
        while not ready():
            assert child.poll() is None, "the child ended before it could be killed"
            assert time.time() < deadline, "never got ready"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()


def _step_of(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["step"])
    except (FileNotFoundError, ValueError):
        return 0


# -------------------------------------------------------------------- SIGKILL during train()

_TRAIN = r"""
import sys, time, torch
from torch import nn
from minidiff.training import train
torch.set_num_threads(1)
x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
data = torch.cat([x, x.sum(1, keepdim=True)], 1)
def loss_fn(m, b, g):
    if sys.argv[2] == "slow":
        time.sleep(0.02)
    return ((m(b[:, :3] + 0.01 * torch.randn(b[:, :3].shape, generator=g)) - b[:, 3:]) ** 2).mean()
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))
r = train(model, loss_fn, data, steps=60, batch_size=8, lr=1e-2, lr_schedule="cosine",
          warmup_steps=5, checkpoint_path=sys.argv[1], checkpoint_every=3, progress=False)
"""


@pytest.mark.slow
def test_train_killed_after_a_checkpoint_resumes_bitwise(tmp_path: Path) -> None:
    """2 faults: SIGKILL once a checkpoint of step >= 9 exists, then again at >= 30; the run
    resumed after both ends with bitwise the weights, EMA and losses of a straight run."""
    straight, killed = tmp_path / "straight.pt", tmp_path / "killed.pt"
    subprocess.run([sys.executable, "-c", _TRAIN, str(straight), "fast"], env=ENV, check=True)
    for at in (9, 30):
        cmd = [sys.executable, "-c", _TRAIN, str(killed), "slow"]
        _kill_when(cmd, lambda at=at: _step_of(killed) >= at)
        assert at <= _step_of(killed) < 60
    subprocess.run([sys.executable, "-c", _TRAIN, str(killed), "fast"], env=ENV, check=True)
    a, b = load_checkpoint(straight), load_checkpoint(killed)
    assert a["step"] == b["step"] == 60 and a["losses"] == b["losses"]
    _assert_same_weights(a, b)


def _assert_same_weights(a: dict[str, Any], b: dict[str, Any]) -> None:
    for weights_a, weights_b in ((a["model"], b["model"]), (a["ema"]["model"], b["ema"]["model"])):
        assert weights_a.keys() == weights_b.keys()
        for name in weights_a:
            assert torch.equal(weights_a[name], weights_b[name]), name


# ------------------------------------------------------------------- faults of an image run


@pytest.mark.slow
def test_image_run_killed_after_a_checkpoint_keeps_its_log_line_and_grid(tmp_path: Path) -> None:
    """3 faults: the command is SIGKILLed as soon as the checkpoint of step 2, 6 and 10 is on disk
    (sample_every 2); each time every sample step up to the checkpoint has its log line and its
    grid. Resumed to the end, the log has one line per sample step and the weights equal a
    straight run's."""
    straight, out = tmp_path / "straight", tmp_path / "killed"
    common = ["train", *TINY, "--steps", "14", "--sample-every", "2", "--no-progress"]
    assert cli(*common, "--out", str(straight)).returncode == 0
    cmd = [sys.executable, "-m", "minidiff.training", *common, "--out", str(out)]
    for at in (2, 6, 10):
        _kill_when(cmd, lambda at=at: _step_of(out / "checkpoint.pt") >= at)
        step = _step_of(out / "checkpoint.pt")
        steps = [json.loads(line)["step"] for line in (out / "run.jsonl").read_text().splitlines()]
        assert set(range(2, step + 1, 2)) <= set(steps), (step, steps)
        assert all((out / f"samples_{s:07d}.png").is_file() for s in range(2, step + 1, 2))
    done = cli(*common, "--out", str(out))
    assert done.returncode == 0, done.stderr
    log = [json.loads(line)["step"] for line in (out / "run.jsonl").read_text().splitlines()]
    assert log == list(range(2, 15, 2))
    _assert_same_weights(
        load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    )


@pytest.mark.slow
def test_torn_log_and_emptied_config_do_not_block_the_run(tmp_path: Path) -> None:
    """2 faults: a torn last line of run.jsonl (half a JSON object) and an emptied config.json.
    Each time the same command continues the run, says what it repaired, and the files are whole
    again."""
    common = ["train", *TINY, "--sample-every", "2", "--no-progress", "--out", str(tmp_path)]
    assert cli(*common, "--steps", "2").returncode == 0
    with (tmp_path / "run.jsonl").open("a") as f:
        f.write('{"step": 4, "loss": 0.9')  # a crash in the middle of a write
    torn = cli(*common, "--steps", "4")
    assert torn.returncode == 0, torn.stderr
    assert "last line is torn" in torn.stderr
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [2, 4]

    (tmp_path / "config.json").write_text("")
    empty = cli(*common, "--steps", "6")
    assert empty.returncode == 0, empty.stderr
    assert "cannot be read" in empty.stderr and "written again" in empty.stderr
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 6
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6


@pytest.mark.slow
def test_command_line_resume_sample_and_budget(tmp_path: Path) -> None:
    """The announced resume, a continuation with other sampling options, a refused change of the
    model's configuration, a time budget, and ``sample`` from the EMA weights (5 commands)."""
    out = str(tmp_path)
    common = ["train", *TINY, "--out", out]
    first = cli(*common, "--steps", "2", "--sample-every", "2")
    assert first.returncode == 0 and "new run in" in first.stdout, first.stderr
    resumed = cli(*common, "--steps", "4", "--sample-every", "1", "--n-samples", "9")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the run in" in resumed.stdout and "at step 2 of 4" in resumed.stdout
    other = cli(*common, "--steps", "6", "--lr", "5e-4")
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "another configuration" in other.stderr and "lr=" in other.stderr
    assert "Traceback" not in other.stderr
    budget = cli(*common, "--steps", "400", "--time-budget", "0")
    assert budget.returncode == 0, budget.stderr
    assert "time budget reached at step 5 of 400" in budget.stdout
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 5
    grid = tmp_path / "grid.png"
    sampled = cli("sample", "--out", out, "--n-samples", "6", "--grid", str(grid))
    assert sampled.returncode == 0, sampled.stderr
    assert grid.is_file() and "6 samples of the EMA model at step 5" in sampled.stdout


BAD_OPTIONS = [
    (["--lr", "-1"], "error: --lr must lie in"),
    (["--lr", "abc"], "invalid float value"),
    (["--steps", "0"], "error: --steps must be >= 1"),
    (["--model", "huge"], "invalid choice: 'huge'"),
    (["--data", "mnist"], "invalid choice: 'mnist'"),
    (["--ema-decay", "1"], "--ema-decay must lie in"),
    (["--grad-clip", "0"], "--grad-clip must lie in"),
    (["--time-budget", "-5"], "--time-budget must lie in"),
    (["--dropout", "1.5"], "error: --dropout must"),
    (["--model", "cifar10_cpu"], "expects (N, 3, 32, 32)"),
    (["--data", "cifar10", "--data-root", "/nonexistent"], "CIFAR-10 is not in"),
    (["--device", "cuda:99"], "device"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_OPTIONS)
def test_a_mistake_is_one_line_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    """12 bad inputs (in this process; the subprocess tests above see the same through the real
    entry point): one line on stderr naming the mistake, exit status 2, no traceback, and nothing
    written to the run folder (the configuration is checked before config.json)."""
    from minidiff.training.cli import main

    try:
        status = main(["train", "--out", str(tmp_path / "run"), *TINY, "--steps", "2", *extra])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "config.json").exists()


def test_sample_without_a_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 inputs: a folder with no checkpoint, and a checkpoint of another kind of run."""
    from minidiff.training import save_checkpoint
    from minidiff.training.cli import main

    assert main(["sample", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    save_checkpoint(tmp_path / "checkpoint.pt", step=1, config={"batch_size": 8})
    assert main(["sample", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not the checkpoint of an image run" in err


@pytest.mark.slow
def test_ctrl_c_stops_with_status_130_and_the_run_continues(tmp_path: Path) -> None:
    """1 fault: SIGINT once the checkpoint of step 2 exists; status 130 and a one-line note; the
    same command then finishes the run."""
    cmd = ["train", *TINY, "--steps", "30", "--sample-every", "2", "--out", str(tmp_path)]
    # a shell that starts the test suite in the background (``make test &``) leaves SIGINT
    # ignored, and Python keeps an ignored SIGINT ignored: give the child the default disposition
    child = subprocess.Popen(
        [sys.executable, "-m", "minidiff.training", *cmd, "--no-progress"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 300
    while _step_of(tmp_path / "checkpoint.pt") < 2:
        assert child.poll() is None and time.time() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted; run the same command again" in err and "Traceback" not in err
    assert cli(*cmd, "--no-progress").returncode == 0
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 30


def test_every_option_has_help_a_default_and_its_choices() -> None:
    """Every option of ``train`` and ``sample`` (counted) has a help text; the help shows the
    defaults and lists the choices."""
    from minidiff.training.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    counted = 0
    for name, sub in subs.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, (name, action.dest)
                counted += 1
    assert counted >= 25, counted
    text = " ".join(subs["train"].format_help().split())
    from minidiff.nn.unet import UNET_CONFIGS

    presets = "{" + ",".join(sorted(UNET_CONFIGS)) + "}"
    for shown in ("(default: 0.0002)", "(default: 500)", presets, "{digits,patches,cifar10}",
                  "(default: none)", "--bf16, --no-bf16"):  # fmt: skip
        assert shown in text, shown
    assert "(default: None)" not in text and text.count("(default:") >= 18
