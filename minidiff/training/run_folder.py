"""A run folder (``config.json``, ``run.jsonl``, ``checkpoint.pt``, sample grids), written so that
an interruption at any moment loses nothing.

Every file is replaced atomically (written next to its place, then renamed over it), so a reader
sees the old version or the new one. A run writes the sample grid and the log line of a step
*before* its checkpoint: a run killed after the checkpoint has both, and a run killed before it
resumes from the previous checkpoint, drops the log lines past it and writes them again. A torn
last line of ``run.jsonl`` or an empty ``config.json`` (from an editor, a full disk or a tool that
does not write atomically) is reported and repaired, never a reason to refuse the run: the
checkpoint itself records the configuration and is checked on resume.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from .checkpoint import write_atomically

__all__ = ["RunFolder"]


class RunFolder:
    """The files of one run below ``out``."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        if isinstance(out, bytes) or not isinstance(out, (str, os.PathLike)):
            raise TypeError(
                f"out_dir must be a str or os.PathLike folder, got {type(out).__name__}"
            )
        if os.fspath(out) == "":  # Path("") is the working folder: its files would mix in
            raise ValueError("out_dir must name a folder, got ''")
        out = Path(out).expanduser()  # "~/runs/x" is below the home folder, as in a shell
        if out.exists() and not out.is_dir():
            raise ValueError(f"out_dir {str(out)!r} is a file; a run needs a folder")
        self.out = out
        self.config = self.out / "config.json"
        self.log = self.out / "run.jsonl"
        self.checkpoint = self.out / "checkpoint.pt"
        self._warned = False

    def grid(self, step: int) -> Path:
        return self.out / f"samples_{step:07d}.png"

    # -------------------------------------------------------------------------------- config

    def read_config(self, *, warn: bool = True) -> dict[str, Any] | None:
        """The saved configuration; ``None`` if there is none or it cannot be read (then warned,
        once per object; ``warn=False``: silently, for a look-ahead whose caller goes on to the
        reading that warns, so that one command says it once)."""
        if not self.config.exists():
            return None
        try:
            record = json.loads(self.config.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            if self._warned or not warn:  # said once per folder, not at every reading
                return None
            self._warned = True
            warnings.warn(
                f"{str(self.config)!r} cannot be read ({exc}); it is written again from this "
                "run's configuration (the checkpoint still guards against another one)",
                stacklevel=3,
            )
            return None
        return record if isinstance(record, dict) else None

    def check_config(
        self,
        record: dict[str, Any],
        free: tuple[str, ...],
        follows: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        """``ValueError`` naming each entry that differs from the saved configuration, except
        the ``free`` ones (a run may be extended, sampled otherwise, resumed on more processes).
        An entry that is a dict on both sides is said by the keys inside it that differ
        (``overrides.dropout=0.1 there vs 0.2 now``); ``follows`` maps an entry to those it is
        derived from, and is said only where they agree (the U-Net of another model differs
        in everything, and the message says the model)."""
        old = self.read_config()
        if old is None:
            return
        keys = (set(old) | set(record)) - set(free)
        diff = sorted(k for k in keys if old.get(k) != record.get(k))
        for entry, sources in (follows or {}).items():
            if entry in diff and any(k in diff for k in sources):
                diff.remove(entry)
        pairs = []
        for k in diff:
            was, now = old.get(k), record.get(k)
            if isinstance(was, dict) and isinstance(now, dict):
                inner = sorted(i for i in set(was) | set(now) if was.get(i) != now.get(i))
                pairs += [(f"{k}.{i}", was.get(i), now.get(i)) for i in inner]
            else:
                pairs.append((k, was, now))
        if pairs:
            detail = ", ".join(f"{k}={was!r} there vs {now!r} now" for k, was, now in pairs)
            raise ValueError(
                f"{str(self.out)!r} holds a run of another configuration ({detail}); "
                "use another --out directory"
            )

    def write_config(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1) + "\n"
        write_atomically(self.config, lambda f: _write(f, text))

    # ----------------------------------------------------------------------------------- log

    def read_log(self, up_to: int) -> list[dict[str, Any]]:
        """The log lines of steps ``<= up_to`` (those past the checkpoint are written again).

        A last line that does not parse (torn by a crash) is dropped with a warning; a bad line
        before the last is a damaged file, reported as a ``ValueError``.
        """
        if not self.log.exists():
            return []
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        entries = []
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
                    raise ValueError("not a log entry")
            except ValueError as exc:
                if i < len(lines) - 1:
                    raise ValueError(
                        f"{str(self.log)!r} is damaged at line {i + 1} ({exc}); move it away "
                        "to start a new log"
                    ) from None
                warnings.warn(
                    f"{str(self.log)!r}: its last line is torn ({line[:40]!r}...); dropped",
                    stacklevel=2,
                )
                continue
            entries.append(entry)
        return [e for e in entries if e["step"] <= up_to]

    def write_log(self, entries: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(e) + "\n" for e in entries)
        write_atomically(self.log, lambda f: _write(f, text))

    # ------------------------------------------------------------------------- grids, curves

    def save_grid(self, images: Tensor, path: Path) -> Path:
        """``save_image_grid`` to a temporary next to ``path``, then renamed over it."""
        from ..viz.grid import save_image_grid

        _write_png(path, lambda tmp: save_image_grid(images, tmp, scale=2))
        return path

    def save_final(self, losses: list[float], grid: Tensor, title: str) -> None:
        """``loss.png`` (the loss per step, and its running mean) and ``samples.png``."""
        # A Figure without pyplot: no backend is touched (a notebook keeps its inline plots).
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        w = max(1, len(losses) // 50)
        ax.plot(range(1, len(losses) + 1), losses, lw=0.5 if w > 1 else 1.5, label="per step")
        if w > 1:
            smooth = torch.tensor(losses).unfold(0, w, 1).mean(1)
            ax.plot(range(w, len(losses) + 1), smooth.tolist(), lw=1.5, label=f"mean of {w}")
        ax.set(xlabel="optimizer step", ylabel="L_simple (MSE of eps)", yscale="log", title=title)
        ax.legend()
        fig.tight_layout()
        _write_png(self.out / "loss.png", lambda tmp: fig.savefig(tmp, dpi=100))
        self.save_grid(grid, self.out / "samples.png")


def _write(f: BinaryIO, text: str) -> None:
    f.write(text.encode())


def _write_png(path: Path, save: Callable[[Path], object]) -> None:
    """``save(tmp)`` to a temporary next to ``path``, then renamed over it; a failed write (a
    full disk, no permission) is an ``OSError`` naming ``path``, and leaves no temporary."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    try:
        save(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        kept = "the previous file was kept" if path.exists() else "nothing was written"
        raise OSError(
            exc.errno, f"could not write {str(path)!r}: {exc.strerror or exc}; {kept}"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
