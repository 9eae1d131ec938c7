"""Student notebooks are generated from the solutions and kept in sync."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("exercise_build", ROOT / "exercises" / "build.py")
assert spec and spec.loader
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)

SOLUTIONS = sorted((ROOT / "exercises" / "solutions").glob("ex*.ipynb"))


def test_strip_solution_keeps_indentation_and_code_around() -> None:
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n\nprint('after')"
    out = build.strip_solution(src)
    assert "return x + y" not in out
    assert "    raise NotImplementedError(" in out
    assert out.startswith("def f(x):\n    y = 1\n") and out.endswith("print('after')")
    ns: dict = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)


def test_unterminated_solution_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="END SOLUTION"):
        build.strip_solution("### BEGIN SOLUTION\nx = 1\n")


def test_there_are_exercises() -> None:
    assert SOLUTIONS, "exercises/solutions/ holds no exercise notebooks"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_student_notebook_is_in_sync(solution: Path) -> None:
    student = build.student_path(solution)
    assert student.exists(), f"{student.name} is missing: run python exercises/build.py"
    assert student.read_text() == build.render(solution), f"{student.name} is stale: run python exercises/build.py"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_solution_notebook_is_well_formed(solution: Path) -> None:
    nb = json.loads(solution.read_text())
    cells = nb["cells"]
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
    assert any("setup" in t for t in tags), "an exercise needs a cell tagged 'setup' (imports)"
    sol_cells = [c for c, t in zip(cells, tags) if "solution" in t]
    assert sol_cells, "an exercise needs cells tagged 'solution'"
    for c in sol_cells:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        assert "### BEGIN SOLUTION" in src and "### END SOLUTION" in src
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "minidiff.checks" in text or "from minidiff import checks" in text, "an exercise must call its checkers"
