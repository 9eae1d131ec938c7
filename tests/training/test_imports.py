"""``import minidiff`` reaches every submodule, loads the heavy ones lazily, and no submodule is
hidden behind a function of the same name."""

from __future__ import annotations

import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import minidiff
import minidiff.training

REPO = Path(__file__).resolve().parents[2]


def test_submodules_are_reachable_after_import_minidiff_alone() -> None:
    code = (
        "import sys, minidiff\n"
        "assert 'matplotlib' not in sys.modules and 'minidiff.viz' not in sys.modules\n"
        "print(minidiff.viz.plot_samples.__module__, minidiff.training.images.run.__module__,\n"
        "      minidiff.training.distributed.all_reduce_mean.__module__,\n"
        "      minidiff.training.learning_rate.__module__, minidiff.train.__module__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "minidiff.viz.plots",
        "minidiff.training.images",
        "minidiff.training.distributed",
        "minidiff.training.optim",
        "minidiff.training.loop",
    ]


def test_no_submodule_is_shadowed_by_a_function() -> None:
    """For minidiff and minidiff.training: each submodule's name is the submodule itself."""
    checked = 0
    for package in (minidiff, minidiff.training):
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            assert inspect.ismodule(getattr(package, info.name)), f"{package.__name__}.{info.name}"
            checked += 1
    assert checked >= 25, checked
    assert callable(minidiff.train) and minidiff.train is minidiff.training.train
