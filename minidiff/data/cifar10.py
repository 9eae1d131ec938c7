"""CIFAR-10 (Krizhevsky 2009) from the official python-format archive, without torchvision.

Where the data lives: the ``root`` argument, else the environment variable ``MINIDIFF_DATA``,
else ``~/.cache/minidiff``. Inside it:

    cifar-10-python.tar.gz      the archive (170 MB, MD5 c58f30108f718f92721af3b95e74349a)
    cifar-10-batches-py/        the extracted folder: data_batch_1..5, test_batch, batches.meta

:func:`load_cifar10` reads the extracted folder when it is there; otherwise it verifies (or
downloads, then verifies) the archive and extracts it. A good archive is never downloaded again;
a corrupt or partial one is removed and reported, never left behind as if good. Offline, the
error says what to download and where to put it. The URL and the function that opens it are
arguments, so the tests exercise all of this with a small archive in the official format.

Only what is the data's own fault is ever deleted, and every error says what was kept:

- a file that fails its checksum or cannot be parsed is removed (it can never become good);
- a failure of the machine, not of the data (a full disk, no permission, a file of ours in the
  way), keeps the verified archive and every intact batch, and names them;
- a damaged batch in the extracted folder is removed alone: the intact batches stay, and only the
  missing ones are extracted again from the archive.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "load_cifar10",
    "load_cifar10_or_fallback",
    "download_cifar10",
    "cifar10_root",
    "md5sum",
    "CorruptDatasetError",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "CIFAR10_ARCHIVE",
    "CIFAR10_FOLDER",
    "CIFAR10_CLASSES",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILES = ("test_batch",)
_CHUNK = 1 << 20

Opener = Callable[[str], Any]
"""Opens a URL and returns a binary file-like context manager (``urllib.request.urlopen``)."""


class CorruptDatasetError(ValueError):
    """A dataset file failed its checksum or could not be read; it has been removed."""


def cifar10_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``root``, else ``$MINIDIFF_DATA``, else ``~/.cache/minidiff``."""
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(
            f"root must be a path (str or os.PathLike) or None, got {type(root).__name__}"
        )
    name = "root"
    if root is None:
        name = "the MINIDIFF_DATA directory" if os.environ.get("MINIDIFF_DATA") else "root"
        root = os.environ.get("MINIDIFF_DATA") or Path.home() / ".cache" / "minidiff"
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{name} must be a directory for the data cache, got the file {str(path)!r}"
        )
    return path


def md5sum(path: str | os.PathLike[str]) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _where_message(root: Path, url: str, md5: str) -> str:
    return (
        f"Download {url} (MD5 {md5}) by hand and put it at {root / CIFAR10_ARCHIVE}, or put its "
        f"extracted folder at {root / CIFAR10_FOLDER}; choose another directory with the root "
        "argument or the MINIDIFF_DATA environment variable."
    )


def _default_opener(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 - the URL is the dataset's


def download_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    opener: Opener | None = None,
    progress: bool = True,
) -> Path:
    """Make sure ``root/cifar-10-python.tar.gz`` is present and has the right MD5; return its path.

    A file that already passes the check is kept (no download). Otherwise the archive is
    downloaded to a temporary ``<name>.*.part`` file of its own, checked, and only then renamed
    into place (so an interrupted download never looks complete, and processes that download at
    the same time, e.g. the ranks of one ``torchrun``, do not write into each other's file).
    A failed checksum removes the file and raises
    :class:`CorruptDatasetError`; a network failure raises ``FileNotFoundError`` saying what to
    download and where to put it.
    """
    dest = cifar10_root(root)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / CIFAR10_ARCHIVE
    if archive.is_file():
        if md5sum(archive) == md5:
            return archive
        archive.unlink()  # corrupt or partial: never keep it; download a fresh copy below
    fd, part_name = tempfile.mkstemp(prefix=CIFAR10_ARCHIVE + ".", suffix=".part", dir=dest)
    os.close(fd)
    part = Path(part_name)
    open_url = opener or _default_opener
    try:
        with open_url(url) as response, open(part, "wb") as out:
            _copy(response, out, _content_length(response), progress)
    except _DiskError as err:  # the machine's fault: say so, not "could not be downloaded"
        part.unlink(missing_ok=True)
        cause = err.err
        raise OSError(
            cause.errno,
            f"could not write the CIFAR-10 download to {dest} ({cause.strerror or cause}); the "
            "partial file was removed. Free about 350 MB there (archive and extracted folder) or "
            "choose another directory with root= or MINIDIFF_DATA, then call again",
        ) from cause
    except (OSError, ValueError) as err:  # URLError and socket timeouts are OSErrors
        part.unlink(missing_ok=True)
        raise FileNotFoundError(
            f"CIFAR-10 is not in {dest} and could not be downloaded ({err}). "
            + _where_message(dest, url, md5)
        ) from err
    except BaseException:  # e.g. KeyboardInterrupt: leave no partial file behind
        part.unlink(missing_ok=True)
        raise
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise CorruptDatasetError(
            f"the CIFAR-10 archive downloaded from {url} has MD5 {got}, expected {md5} (a partial "
            "or corrupt download); it was removed. Try again, or " + _where_message(dest, url, md5)
        )
    os.replace(part, archive)
    return archive


class _DiskError(Exception):
    """Writing to the local disk failed; ``err`` is the ``OSError`` (ENOSPC, EDQUOT, ...)."""

    def __init__(self, err: OSError) -> None:
        super().__init__(str(err))
        self.err = err


def _copy(response: Any, out: Any, total: int | None, progress: bool) -> None:
    """Copy ``response`` to ``out`` in 1 MiB blocks with a progress bar; a failed *write* (a full
    disk, say) raises :class:`_DiskError` so that it is not mistaken for a network failure."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10", disable=not progress) as bar:
        for block in iter(lambda: response.read(_CHUNK), b""):
            try:
                out.write(block)
            except OSError as err:
                raise _DiskError(err) from err
            bar.update(len(block))


def _content_length(response: Any) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _InTheWayError(FileExistsError):
    """A file (not the data's, so never deleted) stands where the extracted folder belongs."""


def _folder_in_the_way(folder: Path, archive: Path) -> OSError:
    kept = f"; the archive {archive} was kept" if archive.is_file() else ""
    return _InTheWayError(
        errno.EEXIST,
        f"{folder} exists but is not a directory: the extracted CIFAR-10 folder belongs there. "
        f"Move or remove that file and call again (nothing was deleted{kept})",
    )


def _extract(archive: Path, dest: Path) -> Path:
    """Extract the (verified) ``archive`` into ``dest / CIFAR10_FOLDER``; return that folder.

    The archive is unpacked into a temporary folder next to the target and then renamed into
    place, so a half-extracted folder never looks complete. Where the target folder exists (a
    damaged batch was removed from it, or another process finished first) only the files it
    lacks are moved in; its intact files are kept.

    Whose fault a failure is decides what is deleted: an archive that is not a valid tar file
    of the expected layout is removed (:class:`CorruptDatasetError`); a failure of the machine
    (a full disk, no permission, a file in the way) keeps the archive and says so (``OSError``).
    """
    target = dest / CIFAR10_FOLDER
    if target.exists() and not target.is_dir():
        raise _folder_in_the_way(target, archive)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                _check_members(tar, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.12 and recent 3.10/3.11 patches
                    tar.extractall(tmp, filter="data")
                else:  # the members were checked above
                    tar.extractall(tmp)
        except (tarfile.TarError, EOFError, zlib.error) as err:  # the archive's fault
            archive.unlink(missing_ok=True)
            raise CorruptDatasetError(
                f"{archive} could not be extracted ({type(err).__name__}: {err}); it was removed"
            ) from err
        except CorruptDatasetError:
            archive.unlink(missing_ok=True)
            raise
        inner = tmp / CIFAR10_FOLDER
        if not inner.is_dir():
            archive.unlink(missing_ok=True)
            raise CorruptDatasetError(
                f"{archive} has no folder {CIFAR10_FOLDER}/ inside; it was removed"
            )
        _move_into_place(inner, target, archive)
        return target
    except OSError as err:  # the machine's fault (ENOSPC, EACCES, ...): keep the archive
        if isinstance(err, _InTheWayError):
            raise
        raise OSError(
            err.errno,
            f"could not extract {archive} into {dest} ({err.strerror or err}); the verified "
            f"archive was kept"
            + (f" and so were the intact files in {target}" if target.is_dir() else "")
            + ". Free about 180 MB there (or fix the permissions) and call again: nothing "
            "will be downloaded",
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_members(tar: tarfile.TarFile, archive: Path) -> None:
    for member in tar.getmembers():
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
            raise CorruptDatasetError(
                f"{archive} holds an unexpected entry {member.name!r}; it was removed"
            )


def _move_into_place(inner: Path, target: Path, archive: Path) -> None:
    """Rename the freshly extracted ``inner`` to ``target``, or, where ``target`` is already a
    folder, move in only the files it lacks (its intact files stay as they are)."""
    try:
        os.rename(inner, target)
        return
    except OSError:
        if target.exists() and not target.is_dir():
            raise _folder_in_the_way(target, archive) from None
        if not target.is_dir():  # not "the folder is already there"
            raise
    for src in inner.iterdir():
        dst = target / src.name
        if not dst.exists():
            os.replace(src, dst)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch: dicts, lists, bytes and numpy arrays only (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR-10 batch")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError as err:
        raise CorruptDatasetError(f"{path} is missing") from err
    except Exception as err:  # noqa: BLE001 - any failure to parse means a damaged file
        raise CorruptDatasetError(
            f"{path} is not a CIFAR-10 batch ({type(err).__name__}: {err})"
        ) from err
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CorruptDatasetError(
            f"{path}: data must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise CorruptDatasetError(f"{path}: labels must be {data.shape[0]} integers in 0..9")
    return data, labels


def _batch_names(train: bool) -> tuple[str, ...]:
    return _TRAIN_FILES if train else _TEST_FILES


def _read_folder(
    folder: Path, train: bool
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, dict[str, str]]:
    """Read the batches of one split: ``(images, labels)`` and ``{}``, or ``None`` and
    ``{batch name: what is wrong with it}`` for every batch that is missing or damaged."""
    batches, bad = [], {}
    for name in _batch_names(train):
        try:
            batches.append(_read_batch(folder / name))
        except CorruptDatasetError as err:
            bad[name] = str(err)
    if bad:
        return None, bad
    n = sum(d.shape[0] for d, _ in batches)
    images = torch.empty(n, 3, 32, 32, dtype=torch.float32)
    i = 0
    for data, _ in batches:  # one batch at a time keeps the peak memory near the float result
        chunk = torch.from_numpy(data.reshape(-1, 3, 32, 32)).float()
        images[i : i + chunk.shape[0]] = chunk.mul_(2.0 / 255.0).sub_(1.0)
        i += chunk.shape[0]
    labels = torch.from_numpy(np.concatenate([lab for _, lab in batches]))
    return (images, labels), {}


def _remove_damaged(folder: Path, bad: dict[str, str]) -> str:
    """Delete the damaged batches (the data's fault; missing ones are simply absent) and return
    a sentence saying what was removed and which files of the folder were kept."""
    removed = []
    for name in bad:
        path = folder / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    kept = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return (
        "; ".join(bad.values())
        + (f". Removed the damaged {', '.join(removed)}" if removed else "")
        + (f"; kept the intact {', '.join(kept)} in {folder}" if kept else "")
    )


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    download: bool = True,
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    opener: Opener | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10: ``images`` float32 ``(N, 3, 32, 32)`` in ``[-1, 1]``, ``labels`` long ``(N,)``.

    ``N`` is 50,000 for ``train=True`` and 10,000 for the test set; :data:`CIFAR10_CLASSES`
    names the labels. See the module docstring for where the files live. With
    ``download=False`` nothing is fetched: a missing dataset raises ``FileNotFoundError`` with
    instructions. A damaged batch of the extracted folder is removed alone and extracted again
    from a good archive; the intact batches are kept (and the error says so when there is no
    archive to restore it from).
    ``url``, ``md5`` and ``opener`` exist for mirrors and for tests.
    """
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {type(download).__name__}")
    dest = cifar10_root(root)
    folder = dest / CIFAR10_FOLDER
    archive = dest / CIFAR10_ARCHIVE
    if folder.exists() and not folder.is_dir():
        raise _folder_in_the_way(folder, archive)
    damage = ""
    if folder.is_dir():
        result, bad = _read_folder(folder, train)
        if result is not None:
            return result
        damage = _remove_damaged(folder, bad)
        if not (download or archive.is_file()):
            raise CorruptDatasetError(
                f"{damage}. To restore the missing batches (nothing else is touched): "
                + _where_message(dest, url, md5)
            )
    if download:
        archive = download_cifar10(dest, url=url, md5=md5, opener=opener, progress=progress)
    elif not archive.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 is not in {dest} (download=False). " + _where_message(dest, url, md5)
        )
    else:
        got = md5sum(archive)
        if got != md5:
            archive.unlink()
            raise CorruptDatasetError(
                f"{archive} has MD5 {got}, expected {md5} (partial or corrupt); it was removed"
                + (f". Earlier: {damage}" if damage else "")
                + ". "
                + _where_message(dest, url, md5)
            )
    result, bad = _read_folder(_extract(archive, dest), train)
    if result is None:  # the verified archive itself holds a damaged batch
        raise CorruptDatasetError(
            f"{_remove_damaged(folder, bad)}, although it came from {archive} whose checksum "
            f"matched {md5}: the archive is not the expected one. Delete it by hand if you agree"
        )
    return result


def load_cifar10_or_fallback(
    fallback: Callable[[], torch.Tensor],
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    opener: Opener | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, str | None]:
    """CIFAR-10's training images and ``None``, or ``fallback()`` and why CIFAR-10 could not be had.

    Downloads (and verifies) the archive when ``download`` is true and the network allows it
    (:func:`load_cifar10`). Where that fails (offline, a checksum that does not match, a full disk)
    the reason is returned, in one sentence that says what to do, so that the caller can say
    clearly that it trains on other data, and never call the result CIFAR-10.
    """
    if not callable(fallback):
        raise TypeError(f"fallback must be a function () -> images, got {type(fallback).__name__}")
    try:
        images, _ = load_cifar10(
            root, train=True, download=download, url=url, md5=md5, opener=opener,
            progress=progress,
        )  # fmt: skip
        return images, None
    except (OSError, CorruptDatasetError) as err:  # FileNotFoundError, a full disk, a bad file
        return fallback(), f"{type(err).__name__}: {err}"
