"""The code is lint-clean: ``ruff check`` and ``ruff format --check`` pass on the package, the
tests and the benchmarks (the same paths ``make lint`` checks), with the settings of pyproject.toml.

A fresh clone must pass ``make lint``; this test keeps that true in ``make test`` and CI. To fix a
failure, run ``ruff check --fix minidiff tests bench`` and ``ruff format minidiff tests bench`` and
wrap long docstrings and comments by hand.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["minidiff", "tests", "bench"]


def _pinned_ruff() -> str | None:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip().startswith("ruff=="):
            return line.strip().removeprefix("ruff==")
    return None


def _installed_ruff() -> str | None:
    if importlib.util.find_spec("ruff") is None:
        return None
    try:
        return importlib.metadata.version("ruff")
    except importlib.metadata.PackageNotFoundError:
        return None


PINNED, INSTALLED = _pinned_ruff(), _installed_ruff()
# Rules and formatting change between ruff releases: judge the code with the version it is kept
# clean with (constraints.txt, which `make` and CI install), not with whatever else is installed.
pytestmark = [
    pytest.mark.skipif(
        INSTALLED is None,
        reason="ruff is not installed in this environment (it comes with the 'dev' extra: "
        "pip install -e '.[dev]' -c constraints.txt)",
    ),
    pytest.mark.skipif(
        INSTALLED is not None and PINNED is not None and INSTALLED != PINNED,
        reason=f"ruff {INSTALLED} is installed but the code is kept clean with ruff {PINNED} "
        "(constraints.txt); install that version to run the lint",
    ),
]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_check_is_clean() -> None:
    res = _ruff("check", "--no-cache", "--output-format", "concise")
    assert res.returncode == 0, (
        f"`ruff check {' '.join(PATHS)}` failed (exit {res.returncode}):\n{res.stdout}{res.stderr}"
    )


def test_ruff_format_is_clean() -> None:
    res = _ruff("format", "--check", "--no-cache")
    assert res.returncode == 0, (
        f"`ruff format --check {' '.join(PATHS)}` failed (exit {res.returncode}); run "
        f"`ruff format {' '.join(PATHS)}` to fix:\n{res.stdout}{res.stderr}"
    )


# imports of another module's private names that are left, each with the module that imports it
_PRIVATE_IMPORTS_LEFT: set[tuple[str, str]] = set()


def _private_imports() -> set[tuple[str, str]]:
    """``(file, module.name)`` for every ``from M import _name`` in the package where ``M`` is
    another module of the package (a module's private names are its own; its private modules,
    ``_validation`` and the like, are shared), and every import of a private name of torch at
    import time (one that a torch version may lack must be guarded where it is used)."""
    import ast

    found = set()
    for path in sorted((ROOT / "minidiff").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue  # ``from . import _module``: a module, not a name
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level else node.module
            ours = module.startswith("minidiff.")
            if not ours and not (module.startswith("torch") and node in tree.body):
                continue
            names = [a.name for a in node.names]
            found |= {
                (rel, f"{module}.{n}")
                for n in names
                if n.startswith("_") and not n.startswith("__") or "._" in f".{module}" and not ours
            }
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = _private_imports() - _PRIVATE_IMPORTS_LEFT
    assert not offenders, sorted(offenders)


def test_no_private_name_is_defined_and_never_used() -> None:
    """A module-level private function, class or constant that no module of the package names
    (besides its definition) is dead code."""
    import ast
    import re
    from collections import Counter

    texts = {p: p.read_text(encoding="utf-8") for p in sorted((ROOT / "minidiff").rglob("*.py"))}
    uses = Counter(re.findall(r"\b_\w+", "\n".join(texts.values())))
    dead = []
    for path, text in texts.items():
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                continue
            dead += [
                f"{path.relative_to(ROOT)}:{n}"
                for n in names
                if n.startswith("_") and not n.startswith("__") and uses[n] <= 1
            ]
    assert not dead, dead


def test_the_samplers_reshape_per_sample_values_with_pad_like() -> None:
    """``(B,) -> (B, 1, ..., 1)`` has one home, ``tensors.pad_like``; the samplers do not re-code
    it (the exercise checkers under ``minidiff/checks`` keep their self-contained solutions)."""
    import re

    idiom = re.compile(r"(reshape|view)\(-1, \*\(?\[1\] \*")
    recoded = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in sorted((ROOT / "minidiff" / "samplers").glob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if idiom.search(line)
    ]
    assert not recoded, recoded


# helpers of more than 7 positional parameters that are left
_LONG_POSITIONAL_LEFT: set[str] = set()


def test_the_samplers_private_helpers_take_their_tail_by_keyword() -> None:
    """A helper of more than 7 positional parameters is called with a row of bare values that
    reads badly and swaps silently; its tail is keyword-only."""
    import ast

    long = []
    for path in sorted((ROOT / "minidiff" / "samplers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.FunctionDef)
                and len(node.args.posonlyargs + node.args.args) > 7
            ):
                long.append(f"{path.relative_to(ROOT).as_posix()}:{node.name}")
    assert not set(long) - _LONG_POSITIONAL_LEFT, long
