"""Helpers for tests that use notebook code: run the cells that carry a given tag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def tagged_sources(path: Path, tags: set[str]) -> list[str]:
    """Sources of the code cells of ``path`` that carry any of ``tags``, in order."""
    nb = json.loads(Path(path).read_text())
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and tags & set(cell.get("metadata", {}).get("tags", [])):
            src = cell["source"]
            out.append("".join(src) if isinstance(src, list) else src)
    return out


def exec_tagged(path: Path, tags: set[str] = frozenset({"setup", "solution"})) -> dict[str, Any]:  # type: ignore[assignment]
    """Execute the tagged cells of a notebook in a fresh namespace and return it."""
    ns: dict[str, Any] = {"__name__": "__exercise__"}
    for src in tagged_sources(path, set(tags)):
        exec(compile(src, str(path), "exec"), ns)  # noqa: S102 - our own notebooks
    return ns
