"""Checkpoint files: atomic writes, a content hash, the model's fingerprint, stale temporaries.

A checkpoint is written to a temporary file and swapped in with ``os.replace`` (a crash leaves
the old file or the new one), carries a SHA-256 of its content (a flipped bit or a truncated copy
is reported, never loaded), and names the shape of every tensor of its model (a checkpoint of
another network is refused with the names that differ).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch
from torch import nn

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "write_atomically",
    "model_fingerprint",
    "check_model_fingerprint",
    "check_loadable",
    "check_checkpoint_path",
]


def model_fingerprint(model: nn.Module) -> list[list[Any]]:
    """``[[name, [shape...]], ...]`` for every entry of ``model.state_dict()`` (params, buffers)."""
    return [[name, list(value.shape)] for name, value in model.state_dict().items()]


def check_model_fingerprint(
    model: nn.Module, fingerprint: list[list[Any]], where: str = "checkpoint"
) -> None:
    """Raise ``ValueError`` naming each parameter missing, unexpected or of another shape."""
    ours = {name: list(shape) for name, shape in model_fingerprint(model)}
    theirs = {str(name): list(shape) for name, shape in fingerprint}
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    shapes = sorted(
        f"{n}: {theirs[n]} in {where} vs {ours[n]} in model"
        for n in set(ours) & set(theirs)
        if ours[n] != theirs[n]
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from {where}: {', '.join(missing)}")
        if unexpected:
            parts.append(f"not in model: {', '.join(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {'; '.join(shapes)}")
        raise ValueError(f"{where} does not match the model ({' | '.join(parts)})")


_MAGIC = (
    b"MINIDIFF-CKPT-1\n"  # 16 bytes, then the 32-byte SHA-256 of the payload, then torch.save's zip
)
_HEADER = len(_MAGIC) + 32
_CHUNK = 1 << 20


def check_checkpoint_path(path: object, name: str = "checkpoint_path") -> Path:
    """Return ``path`` as a ``Path`` if a checkpoint can be written there, else raise.

    Refused before any work: a directory (a checkpoint is a file), a path below a regular file
    (``model.pt/ckpt.pt``), an existing non-regular file, and a nearest existing directory that is
    not writable. Missing parent directories are fine (``save_checkpoint`` creates them).
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike file path, got {type(path).__name__}")
    p = Path(path)
    if str(path) == "" or p.name in ("", ".", ".."):
        raise ValueError(f"{name} must name a file, got {str(path)!r}")
    for part in p.parts:
        if len(part.encode()) > _NAME_MAX:
            raise ValueError(
                f"{name}: the name {part[:40]!r}... in it is {len(part.encode())} bytes long; "
                f"file systems allow at most {_NAME_MAX}"
            )
    if p.is_dir():
        raise ValueError(
            f"{name} {str(p)!r} is a directory; give the path of a file in it, "
            f"e.g. {str(p / 'ckpt.pt')!r}"
        )
    if p.exists() and not p.is_file():
        raise ValueError(f"{name} {str(p)!r} exists and is not a regular file")
    for parent in p.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise ValueError(
                    f"{name} {str(p)!r} lies below {str(parent)!r}, "
                    "which is a file, not a directory"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(
                    f"{name} {str(p)!r} cannot be written: {str(parent)!r} is not writable"
                )
            break
    return p


class _HashingWriter:
    """A write-only file object that feeds every byte to SHA-256 on its way to ``f``."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.sha = hashlib.sha256()

    def write(self, data: Any) -> int:
        self.sha.update(data)
        return int(self.f.write(data))

    def flush(self) -> None:
        self.f.flush()

    def __getattr__(self, name: str) -> Any:  # anything else (seek, tell, ...) goes to the file
        return getattr(self.f, name)


class _Payload(io.RawIOBase):
    """Read-only view of ``f`` from byte ``offset`` on, so ``torch.load`` reads past the header."""

    def __init__(self, f: Any, offset: int) -> None:
        self.f, self.offset = f, offset
        f.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        self.f.seek(self.offset + pos if whence == 0 else pos, whence)
        return self.tell()

    def tell(self) -> int:
        return int(self.f.tell()) - self.offset

    def readinto(self, buffer: Any) -> int:
        return int(self.f.readinto(buffer))


_NAME_MAX = 255  # bytes in a file name on the usual file systems (ext4, APFS, NTFS)


def _temp_prefix(path: Path) -> str:
    """``.<name>.``, with a long name cut and tagged by its hash so the temporary's own name
    (the prefix, a pid and 8 random characters) stays within ``_NAME_MAX``."""
    name = path.name
    if len(name.encode()) > 180:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]
        name = name.encode()[:160].decode(errors="ignore") + "~" + digest
    return f".{name}."


_TEMP_RE = r"(?:(\d+)\.)?[a-z0-9_]{8}\.tmp"  # [pid.]random.tmp after the prefix


def _pid_running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own saves clean up after themselves; a leftover is stale
    if os.name != "posix":
        return True  # cannot tell cheaply: leave it (removed by age below)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def _remove_stale_temporaries(path: Path, keep: str | None = None) -> list[Path]:
    """Delete temporaries of *this* checkpoint left by saves that were killed mid-write.

    A temporary is ``.<name>.<pid>.<random>.tmp`` next to the checkpoint; it is stale when the
    process that wrote it is gone (or, where that cannot be checked, when it is older than a day).
    Temporaries of other checkpoints and of saves still running are left alone.
    """
    removed: list[Path] = []
    prefix = _temp_prefix(path)
    pattern = re.compile(re.escape(prefix) + _TEMP_RE + r"\Z")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry.name == keep:
            continue
        m = pattern.match(entry.name)
        if m is None:
            continue
        pid = m.group(1)
        try:
            stale = pid is None or not _pid_running(int(pid))
            if not stale and os.name != "posix":
                stale = time.time() - entry.stat().st_mtime > 86_400
            if stale:
                entry.unlink()
                removed.append(entry)
        except OSError:
            pass  # vanished meanwhile, or not ours to delete
    return removed


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, then swap it in.

    The temporary is ``.<name>.<pid>.<random>.tmp`` in the same directory; ``os.replace`` makes
    the swap atomic, so a crash at any moment leaves either the old file or the new one, never a
    half-written file. Temporaries that earlier writes of the same file left behind when they were
    killed are deleted first; a write that fails removes its own.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"path {str(path)!r}: cannot create its directory ({exc})") from exc
    _remove_stale_temporaries(path)
    prefix = f"{_temp_prefix(path)}{os.getpid()}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        interrupt = _raised_while_handling(exc, KeyboardInterrupt)
        if interrupt is not None and interrupt is not exc:
            # Ctrl-C inside torch.save surfaces as the zip writer's own RuntimeError at its
            # close: what happened is the interrupt, and the caller's handler of it should run
            raise interrupt from None
        os_error = _raised_while_handling(exc, OSError)
        if os_error is None:
            raise
        kept = "the previous file was kept" if path.exists() else "nothing was written"
        raise OSError(
            os_error.errno,
            f"could not write {str(path)!r}: {os_error.strerror or os_error}; {kept}",
        ) from exc
    _fsync_directory(directory)


_E = TypeVar("_E", bound=BaseException)


def _raised_while_handling(exc: BaseException, kind: type[_E]) -> _E | None:
    """The exception of type ``kind`` behind a failed write: ``exc`` itself, or the one a
    library's own error was raised while handling (``torch.save``'s ``RuntimeError`` on a full
    disk hides the ``OSError``, and after a Ctrl-C the ``KeyboardInterrupt``)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable; not every platform lets us open a directory."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | os.PathLike[str], **state: Any) -> None:
    """Write ``state`` with ``torch.save`` atomically (:func:`write_atomically`), with a SHA-256.

    The file is a 16-byte tag, the SHA-256 digest of the payload and the payload (``torch.save``'s
    zip), which :func:`load_checkpoint` verifies; read it with ``load_checkpoint``, not
    ``torch.load``.
    """
    path = check_checkpoint_path(path, "path")
    if not state:
        raise ValueError("save_checkpoint needs at least one keyword to save")
    for key, value in state.items():
        check_loadable(value, key)

    def write(f: BinaryIO) -> None:
        f.write(_MAGIC + bytes(32))
        writer = _HashingWriter(f)
        torch.save(state, writer)
        f.seek(len(_MAGIC))
        f.write(writer.sha.digest())

    write_atomically(path, write)


_LEAVES = (torch.Tensor, int, float, str, bytes, type(None), torch.dtype, torch.device, torch.Size)


def check_loadable(value: object, where: str) -> None:
    """What ``torch.load(weights_only=True)`` reads back: tensors, numbers, strings and the dicts,
    lists and tuples of them. Anything else would be saved, then refused as unreadable."""
    if isinstance(value, _LEAVES):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            check_loadable(v, f"{where}[{k!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_loadable(v, f"{where}[{i}]")
        return
    hint = (
        "save its state_dict()"
        if hasattr(value, "state_dict")
        else "convert it to a tensor or plain numbers"
    )
    raise TypeError(
        f"{where} is a {type(value).__name__}, which a checkpoint cannot hold (it keeps tensors, "
        f"numbers, strings and dicts, lists and tuples of them): {hint}"
    )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` (``torch.load(weights_only=True)``, on CPU).

    The SHA-256 stored in the file is checked first, so a flipped bit or a truncated copy is
    reported as corrupt instead of loading wrong weights. Raises ``FileNotFoundError`` if the file
    does not exist and ``ValueError`` naming the path if it is a directory, corrupt or truncated.
    A plain ``torch.save`` file (no digest: not written by ``save_checkpoint``, or written before
    digests were added) still loads, with a warning that its integrity cannot be checked.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike file path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    where = f"checkpoint {str(path)!r}"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC))
            if head == _MAGIC:
                digest = f.read(32)
                sha = hashlib.sha256()
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    sha.update(chunk)
                if len(digest) != 32 or sha.digest() != digest:
                    raise ValueError(
                        f"{where} is corrupt: its content does not match the SHA-256 stored in it "
                        "(a damaged or truncated copy); it was not loaded"
                    )
                state = torch.load(_Payload(f, _HEADER), map_location="cpu", weights_only=True)  # type: ignore[arg-type]
            elif head.startswith(b"PK"):
                warnings.warn(
                    f"{where} has no content hash: it was not written by save_checkpoint (or "
                    "was written by an older minidiff), so its integrity cannot be checked. "
                    "Save it with save_checkpoint to add one.",
                    stacklevel=2,
                )
                f.seek(0)
                state = torch.load(f, map_location="cpu", weights_only=True)
            else:
                raise ValueError(
                    f"{where} is corrupt: it does not start like a minidiff checkpoint"
                )
    except ValueError:
        raise
    except Exception as exc:  # zip, pickle and EOF errors all mean the same thing here
        raise ValueError(f"{where} is corrupt or truncated and cannot be loaded: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{where} is corrupt: expected a dict, got {type(state).__name__}")
    return state
