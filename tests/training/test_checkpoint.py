"""Faults around checkpoints: damaged files, saves killed mid-write, paths that cannot work.

A checkpoint stores a SHA-256 of its content (a flipped bit is reported, not loaded), a save that
is killed leaves a temporary that the next save of the same checkpoint removes, and ``train``
refuses a ``checkpoint_path`` that could never be written *before* its first step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from minidiff.training import check_checkpoint_path, load_checkpoint, save_checkpoint, train
from minidiff.training.checkpoint import _MAGIC

REPO = Path(__file__).resolve().parents[2]


def _state() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    return {"model": {"w": torch.randn(64, 64, generator=g)}, "step": 7, "losses": [1.0, 0.5]}


def test_roundtrip_stores_a_digest_and_loads_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, **_state())
    assert path.read_bytes().startswith(_MAGIC)
    out = load_checkpoint(path)
    assert out["step"] == 7 and out["losses"] == [1.0, 0.5]
    assert torch.equal(out["model"]["w"], _state()["model"]["w"])  # type: ignore[index]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left


@pytest.mark.parametrize("where", [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999])
@pytest.mark.parametrize("bit", [0, 5])
def test_a_flipped_bit_anywhere_is_reported(tmp_path: Path, where: float, bit: int) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, **_state())
    data = bytearray(path.read_bytes())
    pos = min(len(data) - 1, int(where * len(data)))
    data[pos] ^= 1 << bit
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_flipped_bit_inside_a_tensor_is_caught_by_the_digest(tmp_path: Path) -> None:
    """Flip a bit in the raw float data: the zip structure stays valid, only the digest sees it."""
    path = tmp_path / "ckpt.pt"
    w = torch.full((256,), 1.2345, dtype=torch.float32)
    save_checkpoint(path, w=w)
    data = bytearray(path.read_bytes())
    needle = w[:4].numpy().tobytes()
    pos = bytes(data).index(needle)
    data[pos + 1] ^= 0x10
    path.write_bytes(bytes(data))
    # without the digest, torch itself would load different numbers silently
    payload = bytes(data[len(_MAGIC) + 32 :])
    (tmp_path / "plain.pt").write_bytes(payload)
    try:
        silently = torch.load(tmp_path / "plain.pt", weights_only=True)["w"]
        assert not torch.equal(silently, w)
    except Exception:  # some torch versions check the zip's CRC of records themselves
        pass
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(path)


def test_truncated_and_empty_files_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, **_state())
    data = path.read_bytes()
    for cut in (0, 10, len(_MAGIC) + 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="corrupt"):
            load_checkpoint(path)


def test_a_plain_torch_save_file_loads_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save(_state(), path)
    with pytest.warns(UserWarning, match="no content hash") as record:
        out = load_checkpoint(path)
    assert out["step"] == 7
    # not blamed on an older minidiff: torch.save(m.state_dict(), p) never went through it
    message = str(record[0].message)
    assert "not written by save_checkpoint (or was written by an older minidiff)" in message


def test_load_checkpoint_names_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(TypeError, match="path"):
        load_checkpoint(None)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- stale temporaries

_CHILD = r"""
import sys, time, pathlib
import torch
from minidiff.training import checkpoint, save_checkpoint

flag = pathlib.Path(sys.argv[2])
write = checkpoint._HashingWriter.write

def stall(self, data):
    n = write(self, data)
    flag.write_text("writing")  # the temporary exists and holds the header and some payload
    time.sleep(120)
    return n

checkpoint._HashingWriter.write = stall
save_checkpoint(sys.argv[1], w=torch.zeros(1000))
"""


def _killed_save(path: Path, tmp_path: Path) -> list[Path]:
    """Run a save in a child process and SIGKILL it mid-write; return the temporaries it left."""
    flag = tmp_path / "flag"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(flag)], env=env)
    try:
        deadline = time.time() + 120
        while not flag.exists():
            assert child.poll() is None, "the child save ended before it could be killed"
            assert time.time() < deadline, "the child save never started"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid liveness checks are POSIX")
def test_next_save_removes_temporaries_of_a_killed_save(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, step=1)
    left = _killed_save(path, tmp_path)
    assert len(left) == 1  # the killed save left its temporary behind
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint is intact

    # temporaries that are not stale or not ours stay: a save in progress, another checkpoint
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".ckpt.pt.{sleeper.pid}.abcd1234.tmp"
        live.write_bytes(b"in progress")
        other = tmp_path / ".ckpt.pt.old.12345.abcd1234.tmp"  # temporary of "ckpt.pt.old"
        other.write_bytes(b"someone else's")
        save_checkpoint(path, step=2)
        assert not left[0].exists()
        assert live.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert load_checkpoint(path)["step"] == 2
    save_checkpoint(path, step=3)  # the writer of `live` is gone now: its temporary is stale
    assert not live.exists() and other.exists()


# ------------------------------------------------------------------------ paths, before any work


def test_train_refuses_a_checkpoint_path_below_a_file_before_the_first_step(tmp_path: Path) -> None:
    blocker = tmp_path / "model.pt"
    blocker.write_text("a file, not a directory")
    calls: list[int] = []

    def loss_fn(m: nn.Module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return ((m(batch) - batch) ** 2).mean()

    for bad in (blocker / "ckpt.pt", blocker / "sub" / "ckpt.pt"):
        with pytest.raises(ValueError, match="checkpoint_path.*is a file, not a directory"):
            train(
                nn.Linear(2, 2),
                loss_fn,
                torch.randn(16, 2),
                steps=50,
                batch_size=4,
                progress=False,
                checkpoint_path=bad,
            )
    assert calls == []  # not a single step was spent


def test_train_refuses_a_directory_as_checkpoint_path(tmp_path: Path) -> None:
    calls: list[int] = []

    def loss_fn(m: nn.Module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return ((m(batch) - batch) ** 2).mean()

    with pytest.raises(ValueError, match="checkpoint_path.*is a directory") as info:
        train(
            nn.Linear(2, 2),
            loss_fn,
            torch.randn(16, 2),
            steps=5,
            batch_size=4,
            progress=False,
            checkpoint_path=tmp_path,
        )
    assert "does not exist" not in str(info.value)
    assert calls == []


def test_train_refuses_bad_device_data_and_path_types_before_any_step(tmp_path: Path) -> None:
    calls: list[int] = []

    def loss_fn(m: nn.Module, batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return ((m(batch) - batch) ** 2).mean()

    bad_data = torch.randn(16, 2)
    bad_data[3, 1] = float("nan")
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"device": "cpux"}, ValueError, "device"),
        ({"device": "cuda:typo"}, ValueError, "device"),
        ({"device": 3}, TypeError, "device"),
        ({"data": bad_data}, ValueError, "data"),
        ({"checkpoint_path": 123}, TypeError, "checkpoint_path"),
        ({"checkpoint_path": ""}, ValueError, "checkpoint_path"),
    ]
    if not torch.cuda.is_available():
        cases.append(({"device": "cuda"}, ValueError, "device"))
    for kw, exc, name in cases:
        args: dict[str, object] = {"steps": 5, "batch_size": 4, "progress": False, **kw}
        data = args.pop("data", torch.randn(16, 2))
        with pytest.raises(exc, match=name):
            train(nn.Linear(2, 2), loss_fn, data, **args)  # type: ignore[arg-type]
    assert calls == []


def test_an_unwritable_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    # os.access is what the check asks; pretend the directory is read-only (root may write anywhere)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    with pytest.raises(ValueError, match="checkpoint_path.*not writable"):
        check_checkpoint_path(locked / "ckpt.pt")
    with pytest.raises(ValueError, match="not writable"):
        check_checkpoint_path(locked / "new" / "ckpt.pt")  # the nearest existing directory counts
    assert check_checkpoint_path(tmp_path / "ckpt.pt") == tmp_path / "ckpt.pt"


def test_save_checkpoint_refuses_bad_paths_without_leaving_files(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="path"):
        save_checkpoint(blocker / "ckpt.pt", step=1)
    with pytest.raises(ValueError, match="is a directory"):
        save_checkpoint(tmp_path, step=1)
    with pytest.raises(TypeError, match="path"):
        save_checkpoint(None, step=1)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_missing_parent_directory_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "a" / "ckpt.pt"
    assert check_checkpoint_path(path) == path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_checkpoint(path, step=1)
        assert load_checkpoint(path)["step"] == 1


@pytest.mark.parametrize("after_writes", [0, 2, 5])
def test_a_full_disk_is_an_oserror_that_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_writes: int
) -> None:
    """torch.save turns the OSError of a full disk into its own RuntimeError ("unexpected pos");
    the caller (and the command line, which prints one line for an OSError) gets the OSError."""
    import errno

    from minidiff.training import checkpoint as C

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, w=torch.arange(4.0))
    write, calls = C._HashingWriter.write, [0]

    def full(self: object, data: object) -> int:
        calls[0] += 1
        if calls[0] > after_writes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(C._HashingWriter, "write", full)
    with pytest.raises(OSError, match="No space left on device; the previous file was kept") as e:
        save_checkpoint(path, w=torch.randn(64, 64), v=torch.randn(64, 64))
    assert e.value.errno == errno.ENOSPC and str(path) in str(e.value)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(4.0))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


@pytest.mark.parametrize("after_writes", [0, 2, 5])
def test_ctrl_c_inside_torch_save_is_the_interrupt_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_writes: int
) -> None:
    """A KeyboardInterrupt in the middle of torch.save surfaced as the zip writer's RuntimeError
    ("unexpected pos") raised while closing, so the command line printed a traceback instead of
    its one-line note; the caller gets the KeyboardInterrupt, and the old file stays."""
    from minidiff.training import checkpoint as C

    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, w=torch.arange(4.0))
    write, calls = C._HashingWriter.write, [0]

    def interrupted(self: object, data: object) -> int:
        calls[0] += 1
        if calls[0] > after_writes:
            raise KeyboardInterrupt
        return write(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(C._HashingWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, w=torch.randn(64, 64), v=torch.randn(64, 64))
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.arange(4.0))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt"]


def test_long_file_names_save_and_too_long_ones_are_refused_up_front(tmp_path: Path) -> None:
    long = tmp_path / ("c" * 240 + ".pt")  # legal; its temporary's name must still fit
    save_checkpoint(long, w=torch.zeros(1))
    assert os.listdir(tmp_path) == [long.name]
    for path in (tmp_path / ("c" * 300 + ".pt"), tmp_path / ("d" * 300) / "c.pt"):
        with pytest.raises(ValueError, match=r"checkpoint_path: the name .* is 30\d bytes long"):
            check_checkpoint_path(path)


def test_what_a_checkpoint_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "m.pt"
    with pytest.raises(TypeError, match=r"model is a Linear.*save its state_dict\(\)"):
        save_checkpoint(path, model=nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"extra\['a'\]\[1\] is a ndarray"):
        save_checkpoint(path, extra={"a": [1, np.zeros(2)]})
    assert not list(tmp_path.iterdir())
    save_checkpoint(path, model=nn.Linear(2, 2).state_dict(), meta={"n": (1, 2.0, "x", None)})
    assert load_checkpoint(path)["meta"] == {"n": (1, 2.0, "x", None)}
