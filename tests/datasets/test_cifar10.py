"""CIFAR-10 loader, exercised offline with a small archive in the official python format."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _cifar10_archive import N_PER_BATCH, make_archive

from minidiff.data import CorruptDatasetError, download_cifar10, load_cifar10
from minidiff.data.cifar10 import CIFAR10_ARCHIVE, CIFAR10_FOLDER, cifar10_root, md5sum


@pytest.fixture()
def archive(tmp_path: Path) -> tuple[Path, str, dict[str, dict[bytes, Any]]]:
    src = tmp_path / "server" / CIFAR10_ARCHIVE
    src.parent.mkdir()
    batches = make_archive(src)
    return src, hashlib.md5(src.read_bytes()).hexdigest(), batches


class CountingOpener:
    """Serves a local file like urlopen and counts the calls."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.calls = payload, 0

    def __call__(self, url: str) -> io.BytesIO:
        self.calls += 1
        return io.BytesIO(self.payload)


def _expected(
    batches: dict[str, dict[bytes, Any]], train: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    data = np.concatenate([batches[n][b"data"] for n in names]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([batches[n][b"labels"] for n in names])
    return torch.from_numpy(data).float() / 127.5 - 1.0, torch.from_numpy(labels).long()


def test_download_verify_extract_and_read_via_file_url(tmp_path: Path, archive: Any) -> None:
    src, md5, batches = archive
    root = tmp_path / "cache"
    x, y = load_cifar10(root, url=src.as_uri(), md5=md5, progress=False)
    ex, ey = _expected(batches, train=True)
    assert x.shape == (5 * N_PER_BATCH, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.long
    torch.testing.assert_close(x, ex)
    torch.testing.assert_close(y, ey)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert (root / CIFAR10_ARCHIVE).is_file() and (root / CIFAR10_FOLDER).is_dir()
    assert not list(root.glob("*.part")) and not list(root.glob(".extract-*"))
    xt, yt = load_cifar10(root, train=False, url=src.as_uri(), md5=md5, progress=False)
    torch.testing.assert_close(xt, _expected(batches, train=False)[0])
    assert yt.shape == (N_PER_BATCH,)


def test_a_good_copy_is_never_downloaded_again(tmp_path: Path, archive: Any) -> None:
    src, md5, _ = archive
    opener = CountingOpener(src.read_bytes())
    download_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    download_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    assert opener.calls == 1
    load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)  # extracts the kept archive
    load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)  # reads the folder
    assert opener.calls == 1


def test_extracted_folder_alone_is_enough(tmp_path: Path, archive: Any) -> None:
    src, _, batches = archive
    with tarfile.open(src) as tar:
        tar.extractall(tmp_path)  # our own archive

    def offline(url: str) -> io.BytesIO:
        raise AssertionError("must not download when the extracted folder is present")

    x, _ = load_cifar10(tmp_path, download=False, opener=offline)
    torch.testing.assert_close(x, _expected(batches, train=True)[0])


def test_checksum_failure_removes_the_download(tmp_path: Path, archive: Any) -> None:
    src, md5, _ = archive
    truncated = src.read_bytes()[:-100]  # a partial download
    root = tmp_path / "cache"
    with pytest.raises(CorruptDatasetError, match=f"expected {md5}.*removed"):
        load_cifar10(root, md5=md5, opener=CountingOpener(truncated), progress=False)
    assert list(root.iterdir()) == []


def test_corrupt_archive_on_disk_is_removed_and_replaced(tmp_path: Path, archive: Any) -> None:
    src, md5, batches = archive
    (tmp_path / CIFAR10_ARCHIVE).write_bytes(b"not a tarball")
    with pytest.raises(CorruptDatasetError, match="removed"):
        load_cifar10(tmp_path, download=False, md5=md5)
    assert not (tmp_path / CIFAR10_ARCHIVE).exists()
    # with download allowed, the bad file is replaced by a verified one
    (tmp_path / CIFAR10_ARCHIVE).write_bytes(b"not a tarball")
    opener = CountingOpener(src.read_bytes())
    x, _ = load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    assert opener.calls == 1 and md5sum(tmp_path / CIFAR10_ARCHIVE) == md5
    torch.testing.assert_close(x, _expected(batches, train=True)[0])


def test_damaged_extracted_batch_is_removed_and_reextracted(tmp_path: Path, archive: Any) -> None:
    src, md5, batches = archive
    opener = CountingOpener(src.read_bytes())
    load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    (tmp_path / CIFAR10_FOLDER / "data_batch_3").write_bytes(b"\x80\x02garbage")
    x, _ = load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    torch.testing.assert_close(x, _expected(batches, train=True)[0])
    assert opener.calls == 1  # the good archive was reused
    # without an archive and without download: a clear error; only the damaged batch is gone
    (tmp_path / CIFAR10_ARCHIVE).unlink()
    (tmp_path / CIFAR10_FOLDER / "test_batch").write_bytes(b"")
    with pytest.raises(CorruptDatasetError, match="test_batch"):
        load_cifar10(tmp_path, train=False, download=False)
    assert not (tmp_path / CIFAR10_FOLDER / "test_batch").exists()
    assert (tmp_path / CIFAR10_FOLDER / "data_batch_1").is_file()


def test_a_batch_with_code_in_it_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    with pytest.raises(CorruptDatasetError, match="unexpected object"):
        load_cifar10(tmp_path, train=False, download=False)


def test_wrong_shapes_in_a_batch_are_reported(tmp_path: Path) -> None:
    folder = tmp_path / CIFAR10_FOLDER
    folder.mkdir()
    bad = {b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(CorruptDatasetError, match=r"\(N, 3072\)"):
        load_cifar10(tmp_path, train=False, download=False)


def test_offline_message_says_what_to_download_and_where(tmp_path: Path) -> None:
    def offline(url: str) -> io.BytesIO:
        raise urllib.error.URLError("Temporary failure in name resolution")

    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path, opener=offline, progress=False)
    msg = str(info.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path / CIFAR10_ARCHIVE) in msg
    assert "c58f30108f718f92721af3b95e74349a" in msg and "MINIDIFF_DATA" in msg
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_cifar10(tmp_path, download=False)


def test_root_from_argument_environment_or_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MINIDIFF_DATA", raising=False)
    assert cifar10_root() == Path.home() / ".cache" / "minidiff"
    monkeypatch.setenv("MINIDIFF_DATA", str(tmp_path))
    assert cifar10_root() == tmp_path
    assert cifar10_root(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(TypeError, match="root"):
        cifar10_root(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train"):
        load_cifar10(tmp_path, train="yes")  # type: ignore[arg-type]


def test_interrupted_download_leaves_nothing(tmp_path: Path, archive: Any) -> None:
    src, md5, _ = archive

    class Interrupted(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_cifar10(tmp_path / "c", md5=md5, opener=lambda url: Interrupted(), progress=False)
    assert list((tmp_path / "c").iterdir()) == []


def test_a_folder_extracted_meanwhile_by_another_process_is_used(
    tmp_path: Path, archive: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two ranks of one job: the other one renames its extracted folder into place first.
    src, md5, batches = archive
    root = tmp_path / "cache"
    opener = CountingOpener(src.read_bytes())
    download_cifar10(root, md5=md5, opener=opener, progress=False)
    import minidiff.data.cifar10 as mod

    real_open = tarfile.open

    def open_and_race(*args: Any, **kwargs: Any) -> Any:
        with real_open(src) as tar:
            tar.extractall(root)  # the other rank finishes while we extract
        return real_open(*args, **kwargs)

    monkeypatch.setattr(mod.tarfile, "open", open_and_race)
    x, _ = load_cifar10(root, md5=md5, opener=opener, progress=False)
    torch.testing.assert_close(x, _expected(batches, train=True)[0])
    assert not list(root.glob(".extract-*"))


def test_root_that_is_a_file_is_named(tmp_path) -> None:
    from minidiff.data import load_cifar10

    f = tmp_path / "not_a_dir"
    f.write_text("x")
    with pytest.raises(ValueError, match="root"):
        load_cifar10(root=f, download=False)


# ------------------------------------------------------------------- faults that are not the data's
# Six faults of the machine or the user, none of which may delete good data: a full disk, a quota
# and a permission error during extraction (3), a full disk while writing the download (1), a
# regular file where the extracted folder belongs (1), and a truncated batch with no archive to
# restore it from (1). Each test checks what was kept, that the error says so, and that the next
# call, once the cause is gone, recovers without downloading again.


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES])
def test_a_failure_of_the_machine_during_extraction_keeps_the_verified_archive(
    tmp_path: Path, archive: Any, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    src, md5, batches = archive
    opener = CountingOpener(src.read_bytes())
    real_extractall = tarfile.TarFile.extractall

    def fill_the_disk(self: tarfile.TarFile, path: Any = ".", *args: Any, **kwargs: Any) -> None:
        (Path(path) / CIFAR10_FOLDER).mkdir()
        (Path(path) / CIFAR10_FOLDER / "data_batch_1").write_bytes(b"\x80\x02half")  # part written
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tarfile.TarFile, "extractall", fill_the_disk)
    with pytest.raises(OSError) as info:
        load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    assert not isinstance(info.value, CorruptDatasetError) and info.value.errno == code
    msg = str(info.value)
    assert "archive was kept" in msg and str(tmp_path / CIFAR10_ARCHIVE) in msg, msg
    assert md5sum(tmp_path / CIFAR10_ARCHIVE) == md5  # the verified archive is still there
    assert not (tmp_path / CIFAR10_FOLDER).exists() and not list(tmp_path.glob(".extract-*"))

    monkeypatch.setattr(tarfile.TarFile, "extractall", real_extractall)  # space was freed
    x, _ = load_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    torch.testing.assert_close(x, _expected(batches, train=True)[0])
    assert opener.calls == 1  # never downloaded again


def test_a_full_disk_while_downloading_is_named_and_leaves_no_partial_file(
    tmp_path: Path, archive: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, md5, _ = archive
    root = tmp_path / "cache"
    import minidiff.data.cifar10 as mod

    class FullDisk(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = open

    def open_full(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode:
            real_open(path, mode).close()  # the file exists, as on a full disk
            return FullDisk()
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(mod, "open", open_full, raising=False)
    with pytest.raises(OSError) as info:
        download_cifar10(root, md5=md5, opener=CountingOpener(src.read_bytes()), progress=False)
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, FileNotFoundError)
    assert "could not write" in str(info.value) and "removed" in str(info.value)
    assert list(root.iterdir()) == []


def test_a_file_where_the_folder_belongs_deletes_nothing(tmp_path: Path, archive: Any) -> None:
    src, md5, batches = archive
    opener = CountingOpener(src.read_bytes())
    download_cifar10(tmp_path, md5=md5, opener=opener, progress=False)
    (tmp_path / CIFAR10_FOLDER).write_text("my notes")  # not ours: never deleted
    for download in (False, True):
        with pytest.raises(FileExistsError, match="not a directory") as info:
            load_cifar10(tmp_path, download=download, md5=md5, opener=opener, progress=False)
        assert "archive " in str(info.value) and "was kept" in str(info.value)
        assert md5sum(tmp_path / CIFAR10_ARCHIVE) == md5
        assert (tmp_path / CIFAR10_FOLDER).read_text() == "my notes"
    assert opener.calls == 1
    (tmp_path / CIFAR10_FOLDER).unlink()
    x, _ = load_cifar10(tmp_path, download=False, md5=md5)
    torch.testing.assert_close(x, _expected(batches, train=True)[0])


def test_a_truncated_batch_without_archive_keeps_the_intact_batches(
    tmp_path: Path, archive: Any
) -> None:
    src, md5, batches = archive
    with tarfile.open(src) as tar:
        tar.extractall(tmp_path)  # the extracted folder only, no archive
    folder = tmp_path / CIFAR10_FOLDER
    good = {
        n: (folder / n).read_bytes()
        for n in (
            "data_batch_1",
            "data_batch_3",
            "data_batch_4",
            "data_batch_5",
            "test_batch",
            "batches.meta",
        )
    }
    (folder / "data_batch_2").write_bytes((folder / "data_batch_2").read_bytes()[:-50])
    with pytest.raises(CorruptDatasetError) as info:
        load_cifar10(tmp_path, download=False)
    msg = str(info.value)
    assert "data_batch_2" in msg and "kept the intact" in msg and "data_batch_5" in msg, msg
    assert not (folder / "data_batch_2").exists()
    assert {n: (folder / n).read_bytes() for n in good} == good  # all five intact, untouched
    xt, _ = load_cifar10(tmp_path, train=False, download=False)  # the test split still loads
    torch.testing.assert_close(xt, _expected(batches, train=False)[0])

    # with the archive back, only the missing batch is extracted; the others stay as they were
    inode = {n: (folder / n).stat().st_ino for n in good}
    (tmp_path / CIFAR10_ARCHIVE).write_bytes(src.read_bytes())
    x, _ = load_cifar10(tmp_path, download=False, md5=md5)
    torch.testing.assert_close(x, _expected(batches, train=True)[0])
    assert {n: (folder / n).stat().st_ino for n in good} == inode
    assert not list(tmp_path.glob(".extract-*"))
