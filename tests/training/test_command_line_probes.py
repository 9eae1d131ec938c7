"""The command line's refusals found by trying it as a student would: each mistake ends with one
line naming the flag, status 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

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
