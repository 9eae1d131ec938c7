"""Import another checkout's ``minidiff`` beside this one, for the benches' ``--against`` runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_checkout(repo: str, alias: str) -> ModuleType:
    """Import ``repo/minidiff`` under another package name (its imports are relative)."""
    root = Path(repo).resolve() / "minidiff"
    spec = importlib.util.spec_from_file_location(
        alias, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module
