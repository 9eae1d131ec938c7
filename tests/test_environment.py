"""Consistency of the project's set-up files.

pyproject.toml is the single source of dependencies; environment.yml (conda), constraints.txt,
the README and .ci/run must agree with it. Each test names the file to fix when it fails.
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PIP_TO_CONDA = {"torch": "pytorch"}
CONDA_ONLY = {"python", "pip"}


def _lower_bound(specifiers: str) -> str | None:
    """The version after '>=' in a specifier set such as '>=2.2,<3', or None when unbounded."""
    bounds = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
    if len(bounds) > 1:
        raise ValueError(f"more than one lower bound in {specifiers!r}")
    return bounds[0] if bounds else None


def pyproject_requirements() -> dict[str, str | None]:
    """{conda name: lower bound} for runtime, course and dev dependencies of pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    lines = [*project["dependencies"], *extras.get("course", []), *extras.get("dev", [])]
    found: dict[str, str | None] = {}
    for line in lines:
        req = Requirement(line)
        pip_name = canonicalize_name(req.name)
        if pip_name == "minidiff":  # a self-referencing extra such as minidiff[course]
            continue
        name = PIP_TO_CONDA.get(pip_name, str(pip_name))
        bound = _lower_bound(str(req.specifier))
        if name in found and found[name] != bound:
            raise AssertionError(
                f"pyproject.toml gives {name} two lower bounds: {found[name]} and {bound}"
            )
        found[name] = bound
    return found


_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$")


def environment_requirements() -> tuple[dict[str, str | None], list[str]]:
    """({conda name: lower bound}, pip lines) from environment.yml."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda: dict[str, str | None] = {}
    pip_lines: list[str] = []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip_lines.extend(entry.get("pip", []))
            continue
        match = _CONDA_SPEC.match(str(entry))
        assert match, f"environment.yml: cannot parse dependency {entry!r}"
        name, spec = canonicalize_name(match.group(1)), match.group(2).replace(" ", "")
        conda[name] = _lower_bound(spec)
    return conda, pip_lines


def test_lower_bound_parser() -> None:
    assert _lower_bound(">=2.2") == "2.2"
    assert _lower_bound(">=2.2,<3") == "2.2"
    assert _lower_bound("") is None
    assert _lower_bound("==1.0") is None


def test_pyproject_declares_the_course_dependencies() -> None:
    reqs = pyproject_requirements()
    for name in ("pytorch", "numpy", "matplotlib", "jupyterlab", "pytest", "nbval"):
        assert name in reqs, f"pyproject.toml does not list {name}"
    assert reqs["pytorch"] is not None, "pyproject.toml: torch needs a lower bound"


def test_environment_yml_has_every_pyproject_dependency_with_the_same_lower_bound() -> None:
    wanted = pyproject_requirements()
    conda, _ = environment_requirements()
    missing = sorted(set(wanted) - set(conda))
    assert not missing, f"environment.yml lacks {missing} (listed in pyproject.toml)"
    mismatched = {
        name: {"pyproject.toml": wanted[name], "environment.yml": conda[name]}
        for name in wanted
        if conda[name] != wanted[name]
    }
    assert not mismatched, f"lower bounds differ: {mismatched}"


def test_environment_yml_lists_nothing_pyproject_does_not_know() -> None:
    wanted = pyproject_requirements()
    conda, _ = environment_requirements()
    extra = sorted(set(conda) - set(wanted) - CONDA_ONLY)
    assert not extra, f"environment.yml lists {extra}, which pyproject.toml does not declare"
    assert "python" in conda and conda["python"] == "3.10", (
        "environment.yml should ask for python>=3.10 like requires-python in pyproject.toml"
    )


def test_environment_yml_installs_only_the_package_itself_with_pip() -> None:
    _, pip_lines = environment_requirements()
    assert [line.split() for line in pip_lines] == [["-e", "."]], (
        f"environment.yml's pip section should install only this repository, got {pip_lines}"
    )


def test_requires_python_matches_environment_yml() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _lower_bound(project["requires-python"]) == environment_requirements()[0]["python"]


def test_constraints_pin_torch_within_the_declared_bound() -> None:
    pins: dict[str, str] = {}
    for raw in (ROOT / "constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = str(req.specifier)
    assert "torch" in pins, "constraints.txt must pin torch (a bare torch pulls CUDA packages)"
    spec = pins["torch"]
    assert spec.startswith("==") and "*" not in spec, f"constraints.txt: torch{spec} is not a pin"
    pinned = spec[2:]
    bound = pyproject_requirements()["pytorch"]
    assert Requirement(f"torch>={bound}").specifier.contains(pinned), (
        f"constraints.txt pins torch=={pinned}, outside pyproject.toml's torch>={bound}"
    )


_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


def _commands(path: Path) -> list[list[str]]:
    """Shell words of each command in a bash script (no comments, blanks or heredoc bodies)."""
    commands = []
    heredoc_end: str | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if heredoc_end is not None:
            if line == heredoc_end:
                heredoc_end = None
            continue
        if line and not line.startswith("#"):
            commands.append(shlex.split(line, comments=True))
            match = _HEREDOC.search(line)
            heredoc_end = match.group(1) if match else None
    return commands


def test_ci_runs_the_test_command_the_readme_documents() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test$", readme, re.MULTILINE), (
        "README.md should show `make test` on a line of its own as the way to run the suite"
    )
    script = ROOT / ".ci" / "run"
    commands = _commands(script)
    assert ["set", "-euo", "pipefail"] in commands, (
        ".ci/run must stop at the first failing command (set -euo pipefail)"
    )
    assert commands[-1] == ["make", "test"] or commands[-1] == ["exec", "make", "test"], (
        f".ci/run must end by running `make test` (as the README says), not {commands[-1]}"
    )


def test_makefile_test_target_runs_tests_and_notebooks_in_fast_mode() -> None:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert match, "Makefile has no `test:` target"
    recipe = match.group(1).replace("\\\n", " ")
    for piece in ("MINIDIFF_FAST=$(MINIDIFF_FAST)", "-m pytest", "tests", "$(NBVAL_FLAGS)"):
        assert piece in recipe, f"Makefile's test recipe lacks {piece!r}"
    assert re.search(r"^MINIDIFF_FAST \?= 1$", makefile, re.MULTILINE), "fast mode must default on"
    assert "--nbval-lax" in makefile and "notebooks exercises/solutions" in makefile


@pytest.mark.parametrize("name", ["README.md", "environment.yml", "constraints.txt", ".ci/run"])
def test_setup_files_exist(name: str) -> None:
    assert (ROOT / name).is_file(), f"{name} is missing from the repository root"


def test_make_lab_hides_install_artefacts_from_the_file_browser() -> None:
    """`make lab` passes Jupyter a hide list that includes the editable install's *.egg-info
    (a dry run: `make -n` prints the command without running anything)."""
    dry = subprocess.run(
        ["make", "-n", "lab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"--ContentsManager\.hide_globs=\"(\[.*?\])\"", dry)
    assert match, f"make lab passes no hide_globs:\n{dry}"
    globs = ast.literal_eval(match.group(1))
    assert "*.egg-info" in globs and "__pycache__" in globs, globs


def test_test_modules_have_unique_basenames() -> None:
    """Without ``__init__.py`` files pytest imports each test module under its basename, so two
    ``test_x.py`` in different folders cannot both be collected ("import file mismatch")."""
    seen: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        other = seen.setdefault(path.name, path)
        assert other == path, f"{path.relative_to(ROOT)} and {other.relative_to(ROOT)} share a name"


def test_tests_readme_names_only_files_that_exist() -> None:
    """tests/README.md says where each module's tests live: every file it names is there."""
    import re

    text = (ROOT / "tests" / "README.md").read_text()
    named = set(re.findall(r"`((?:minidiff|tests)/[a-z0-9_/]+\.py)`", text))  # not minidiff/X/Y.py
    assert "minidiff/metrics/color.py" in named and "tests/test_colorization.py" in named
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"tests/README.md names files that do not exist: {missing}"
