"""Student notebooks are generated from the solutions and kept in sync."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("exercise_build", ROOT / "exercises" / "build.py")
assert spec and spec.loader
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)

SOLUTIONS = sorted((ROOT / "exercises" / "solutions").glob("ex*.ipynb"))


def test_strip_solution_keeps_indentation_and_code_around() -> None:
    src = (
        "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n"
        "    ### END SOLUTION\n\nprint('after')"
    )
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
    assert student.read_text() == build.render(solution), (
        f"{student.name} is stale: run python exercises/build.py"
    )


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_solution_notebook_is_well_formed(solution: Path) -> None:
    nb = json.loads(solution.read_text())
    cells = nb["cells"]
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
    assert any("setup" in t for t in tags), "an exercise needs a cell tagged 'setup' (imports)"
    sol_cells = [c for c, t in zip(cells, tags, strict=False) if "solution" in t]
    assert sol_cells, "an exercise needs cells tagged 'solution'"
    for c in sol_cells:
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        assert "### BEGIN SOLUTION" in src and "### END SOLUTION" in src
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "minidiff.checks" in text or "from minidiff import checks" in text, (
        "an exercise must call its checkers"
    )


# --- think questions, links, and the student copy as a student first runs it --------------------

ITEM = re.compile(r"^\d+\. \S", re.MULTILINE)
# The chapters whose exercises have think questions with model answers and a friendly final cell.
# Explicit on purpose: a new exercise joins this set once its notebook follows the conventions.
CONVENTION_CHAPTERS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
FOLLOW_CONVENTIONS = [p for p in SOLUTIONS if int(p.name[2:4]) in CONVENTION_CHAPTERS]
LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tagged(cells: list[dict], tag: str) -> list[dict]:
    return [c for c in cells if tag in c.get("metadata", {}).get("tags", [])]


def test_every_chapter_that_follows_the_conventions_has_its_exercise() -> None:
    present = {int(p.name[2:4]) for p in SOLUTIONS}
    assert CONVENTION_CHAPTERS <= present, sorted(CONVENTION_CHAPTERS - present)


def test_answer_cells_are_replaced_by_an_empty_answer_cell() -> None:
    sol = {
        "cells": [
            {
                "cell_type": "markdown",
                "metadata": {"tags": ["think"]},
                "source": ["1. Why?\n", "2. How?"],
            },
            {
                "cell_type": "markdown",
                "metadata": {"tags": ["answer"]},
                "source": ["1. Because.\n", "2. Like so."],
            },
            {
                "cell_type": "markdown",
                "metadata": {},
                "source": ["See [ch. 1](../../notebooks/01_forward_process.ipynb)."],
            },
        ],
        "metadata": {},
    }
    cells = build.student_notebook(sol)["cells"]
    text = "".join(_src(c) for c in cells)
    assert "Because" not in text and "Like so" not in text and "1. Why?" in text
    assert _tagged(cells, "your-answer") and not _tagged(cells, "answer")
    assert len(ITEM.findall(text)) == 2 and "1. \n2. \n" in _src(cells[1])
    assert "](../notebooks/01_forward_process.ipynb)" in _src(cells[2])


@pytest.mark.parametrize("solution", FOLLOW_CONVENTIONS, ids=lambda p: p.name)
def test_two_or_three_think_questions_with_answers_in_the_solution_only(solution: Path) -> None:
    cells = _cells(solution)
    think, answer = _tagged(cells, "think"), _tagged(cells, "answer")
    assert len(think) == 1 and len(answer) == 1
    assert cells.index(answer[0]) == cells.index(think[0]) + 1
    n = len(ITEM.findall(_src(think[0])))
    assert 2 <= n <= 3 and len(ITEM.findall(_src(answer[0]))) == n
    student = _cells(build.student_path(solution))
    assert not _tagged(student, "answer") and len(_tagged(student, "your-answer")) == 1
    body = _src(answer[0]).split("\n", 2)[2]  # the answers, without the heading
    assert body.strip() and body not in "".join(_src(c) for c in student)


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_relative_links_resolve_in_both_copies(solution: Path) -> None:
    for path in (solution, build.student_path(solution)):
        links = [
            m for c in _cells(path) if c["cell_type"] == "markdown" for m in LINK.findall(_src(c))
        ]
        assert links, f"{path.name} links to no lecture notebook"
        for link in links:
            assert (path.parent / link.split("#")[0]).resolve().exists(), (
                f"{path.name}: {link} does not resolve"
            )


@pytest.mark.parametrize("solution", FOLLOW_CONVENTIONS, ids=lambda p: p.name)
def test_a_fresh_student_copy_runs_top_to_bottom_without_a_traceback(
    solution: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    student = build.student_path(solution)
    ns: dict = {"__name__": "__exercise__"}
    finals = 0
    for cell in _cells(student):
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(
            line for line in _src(cell).splitlines() if not line.lstrip().startswith("%")
        )
        capsys.readouterr()
        exec(compile(src, str(student), "exec"), ns)  # noqa: S102 - our own notebooks
        out = capsys.readouterr().out
        if "finish_first(" in src:
            finals += 1
            assert "first: this cell runs your own functions" in out, out
        elif "check_" in src:
            assert "Not yet" in out and "not implemented yet" in out, out
    plt.close("all")
    assert finals >= 1, "the 'put it together' cell should use checks.finish_first"


def test_in_a_kernel_each_verdict_is_shown_once_and_in_words() -> None:
    """Run a solution notebook in a real kernel: every checker cell shows one Markdown verdict."""
    import os

    import nbformat
    from nbclient import NotebookClient

    solution = next(p for p in SOLUTIONS if p.name.startswith("ex02"))
    nb = nbformat.read(solution, as_version=4)
    env = {"PYTHONPATH": str(ROOT), "MINIDIFF_FAST": "1", "OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
        ).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    checker_cells = [c for c in nb.cells if c.cell_type == "code" and ".check_" in c.source]
    assert checker_cells
    for cell in checker_cells:
        kinds = [o.output_type for o in cell.outputs]
        assert kinds == ["display_data"], kinds  # no execute_result echoing the verdict again
        text = cell.outputs[0].data["text/markdown"]
        assert text.startswith("**Correct**") and "✅" not in text
