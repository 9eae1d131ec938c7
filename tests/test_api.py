"""The public API as a student meets it: ``minidiff.__doc__`` lists exactly ``minidiff.__all__``,
every listed name resolves, and no argument-check helper sits in a public ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil
import re

import minidiff


def _documented_names() -> set[str]:
    public_part = (minidiff.__doc__ or "").split("Submodules hold")[0]
    return {n for n in re.findall(r"``(\w+)``", public_part) if not n.startswith("__")}


def test_the_package_docstring_lists_exactly_the_public_names() -> None:
    documented, exported = _documented_names(), set(minidiff.__all__)
    assert not exported - documented, (
        f"in __all__ but not in the docstring: {exported - documented}"
    )
    assert not documented - exported, (
        f"in the docstring but not in __all__: {documented - exported}"
    )
    assert len(minidiff.__all__) == len(exported), "a name is listed twice in __all__"


def test_every_public_name_resolves() -> None:
    for name in minidiff.__all__:
        assert getattr(minidiff, name) is not None, name


def test_no_argument_check_helper_in_a_public_all() -> None:
    """Argument checks are declared with minidiff._validation; its helpers (and the checks that
    modules used to export) are no module's API. The exercise checkers of minidiff.checks are
    that package's API and stay."""
    from minidiff import _validation

    helpers = {n for n in _validation.__all__ if n.startswith("check_")} | {
        "check_guidance_weight",
        "check_sigmas",
        "check_time",
    }
    offenders = []
    for info in pkgutil.walk_packages(minidiff.__path__, "minidiff."):
        if info.name.startswith(("minidiff.checks", "minidiff._")):
            continue
        module = importlib.import_module(info.name)
        offenders += [f"{info.name}.{n}" for n in getattr(module, "__all__", []) if n in helpers]
    assert not offenders, offenders


def test_every_top_level_submodule_is_reachable_as_the_docstring_says() -> None:
    """The docstring promises what holds: each top-level submodule is an attribute after
    ``import minidiff`` alone (a fresh interpreter); it promises no more (not every module of
    every subpackage, ``minidiff.metrics.color`` needs its own import)."""
    import subprocess
    import sys

    doc = " ".join((minidiff.__doc__ or "").split())
    assert "Every top-level submodule" in doc and "Every submodule" not in doc
    names = [m.name for m in pkgutil.iter_modules(minidiff.__path__) if not m.name.startswith("_")]
    code = "import minidiff\n" + "".join(f"minidiff.{n}\n" for n in names)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


def test_each_public_name_has_one_home_module() -> None:
    """A name sits in the ``__all__`` of one module of the package, its home (packages re-export
    it; other modules may import it without listing it), so that one name means one thing: e.g.
    ``sde.ScoreFn`` ``(x, t) -> score`` and ``samplers.langevin.StaticScoreFn`` ``x -> score``.
    The exercise checkers (one ``SPECS`` per chapter) are left out."""
    homes: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(minidiff.__path__, "minidiff."):
        if info.ispkg or info.name.startswith(("minidiff.checks", "minidiff._")):
            continue
        for name in getattr(importlib.import_module(info.name), "__all__", []):
            homes.setdefault(name, []).append(info.name)
    shared = {name: where for name, where in homes.items() if len(where) > 1}
    assert not shared, shared
