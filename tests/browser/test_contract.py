"""The browser test's rules, checked without a browser (fast; always run)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import contract
import pytest
from contract import Box, Link, WidgetSnapshot

ROOT = Path(__file__).resolve().parents[2]


def test_notebook_kinds() -> None:
    assert contract.notebook_kind("notebooks/01_forward_process.ipynb") == "lecture"
    assert contract.notebook_kind("exercises/ex01_forward_process.ipynb") == "exercise"
    assert contract.notebook_kind("exercises/solutions/ex01_forward_process.ipynb") == "solution"


def test_course_notebooks_lists_lectures_exercises_and_solutions() -> None:
    found = contract.course_notebooks(ROOT)
    assert "notebooks/00_tour.ipynb" in found and "notebooks/01_forward_process.ipynb" in found
    kinds = {contract.notebook_kind(p) for p in found}
    assert kinds == {"lecture", "exercise", "solution"}
    assert len(found) == len(set(found))
    assert all((ROOT / p).is_file() for p in found)


def test_expected_widgets_reads_metadata_and_rejects_nonsense() -> None:
    assert contract.expected_widgets({"metadata": {}}) == 0
    assert contract.expected_widgets({"metadata": {"minidiff": {"widgets": 2}}}) == 2
    for bad in (-1, "1", 1.0, True):
        with pytest.raises(ValueError, match="minidiff.widgets"):
            contract.expected_widgets({"metadata": {"minidiff": {"widgets": bad}}})


def test_every_notebook_that_displays_a_widget_declares_it() -> None:
    """A notebook whose code displays an explorer's widget must promise it in its metadata, or the
    browser test would not look for it; a notebook that promises one must build an explorer."""
    for rel in contract.course_notebooks(ROOT):
        nb = json.loads((ROOT / rel).read_text())
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        displayed = re.findall(r"display\([^)]*\.widget\)|display\(\w*_explorer\(", code)
        built = re.findall(r"\w*Explorer\(|\w*_explorer\(", code)
        promised = contract.expected_widgets(nb)
        assert promised or not displayed, (
            f"{rel}: code displays {len(displayed)} widget(s) but its metadata does not promise"
            ' them: add "minidiff": {"widgets": N} to the notebook metadata'
        )
        assert not promised or built, (
            f"{rel}: metadata promises {promised} widget(s) but the code builds no explorer"
        )


def test_chapter_1_promises_its_schedule_explorer() -> None:
    path = ROOT / "notebooks" / "01_forward_process.ipynb"
    assert contract.read_expected_widgets(path) == 1


def test_error_rules() -> None:
    stub = {"cell": "4", "ename": "NotImplementedError", "evalue": "Your code here"}
    other = {"cell": "7", "ename": "AssertionError", "evalue": "wrong"}
    assert contract.error_problems([], "lecture") == []
    assert contract.error_problems([stub], "exercise") == []
    assert contract.error_problems([stub], "lecture") == [
        "cell 4: NotImplementedError: Your code here"
    ]
    assert contract.error_problems([stub], "solution") != []
    assert contract.error_problems([other], "exercise") == ["cell 7: AssertionError: wrong"]
    assert len(contract.error_problems([stub, stub], "exercise")) == 1


@pytest.mark.parametrize(
    ("notebook", "href", "target"),
    [
        ("notebooks/01.ipynb", "../exercises/ex01.ipynb", "exercises/ex01.ipynb"),
        ("notebooks/01.ipynb", "02_posterior.ipynb", "notebooks/02_posterior.ipynb"),
        ("notebooks/01.ipynb", "02_posterior.ipynb#Section", "notebooks/02_posterior.ipynb"),
        ("exercises/solutions/ex01.ipynb", "../notebooks/01.ipynb", "exercises/notebooks/01.ipynb"),
        ("exercises/solutions/ex01.ipynb", "../../notebooks/01.ipynb", "notebooks/01.ipynb"),
        ("notebooks/00_tour.ipynb", "/exercises/ex01.ipynb", "exercises/ex01.ipynb"),
        ("notebooks/a.ipynb", "my%20file.ipynb", "notebooks/my file.ipynb"),
        ("notebooks/a.ipynb", "https://github.com/x/y", None),
        ("notebooks/a.ipynb", "mailto:a@b.c", None),
        ("notebooks/a.ipynb", "#Learning-goals", None),
    ],
)
def test_resolve_link(notebook: str, href: str, target: str | None) -> None:
    assert contract.resolve_link(notebook, href) == target


def test_link_problems_name_each_broken_link() -> None:
    files = {"notebooks/02.ipynb", "exercises/ex01.ipynb"}
    links = [
        Link("02.ipynb", "next"),
        Link("../exercises/ex01.ipynb", "exercise"),
        Link("../exercises/ex09.ipynb", "missing"),
        Link("../../outside.ipynb", "outside"),
        Link("#Goals", "anchor"),
        Link("#Nowhere", "bad anchor"),
        Link("https://example.org", "external"),
    ]
    problems = contract.link_problems("notebooks/01.ipynb", links, files.__contains__, ["Goals"])
    assert len(problems) == 3, problems
    assert "missing" in problems[0] and "exercises/ex09.ipynb" in problems[0]
    assert "outside" in problems[1]
    assert "#Nowhere" in problems[2]


def test_math_problems() -> None:
    ok = {"cell": "1", "has_math": True, "typeset": True, "text": "where  is the noise"}
    plain = {"cell": "2", "has_math": False, "typeset": False, "text": "costs $5 and $6"}
    assert contract.math_problems([ok, plain]) == []
    untypeset = {"cell": "3", "has_math": True, "typeset": False, "text": "x"}
    raw_block = {"cell": "4", "has_math": True, "typeset": True, "text": "$$ x $$"}
    raw_inline = {
        "cell": "5",
        "has_math": True,
        "typeset": True,
        "text": r"the $\bar\alpha_t$ here",
    }
    problems = contract.math_problems([untypeset, raw_block, raw_inline])
    assert len(problems) == 3, problems
    assert "no MathJax" in problems[0] and "$$" in problems[1] and "bar" in problems[2]


def test_widget_rules() -> None:
    fine = WidgetSnapshot(["blob:1"], ["t = 3"], "")
    assert contract.widget_problems(fine, 0) == []
    assert contract.widget_problems(WidgetSnapshot([], [], ""), 0) != []
    assert "Invalid" in contract.widget_problems(WidgetSnapshot(["b"], [], "Invalid x"), 1)[0]
    moved_picture = WidgetSnapshot(["blob:2"], ["t = 3"], "")
    moved_readout = WidgetSnapshot(["blob:1"], ["t = 4"], "")
    assert contract.move_problems(fine, moved_picture, 0, "t") == []
    assert contract.move_problems(fine, moved_readout, 0, "t") == []
    stuck = contract.move_problems(fine, WidgetSnapshot(["blob:1"], ["t = 3"], ""), 0, "t")
    assert stuck == ["widget 0: moving t changed neither the view image nor the readout"]
    broke = contract.move_problems(fine, WidgetSnapshot(["blob:2"], [], "Invalid"), 0, "T")
    assert len(broke) == 1 and "message" in broke[0]


def test_count_and_layout_rules() -> None:
    assert contract.count_problems(1, 1, 0) == []
    assert len(contract.count_problems(1, 0, 0)) == 1
    assert len(contract.count_problems(1, 1, 2)) == 1
    view = Box(100, 200, 800, 300)
    above = ("t", Box(100, 100, 300, 30))
    beside = ("T", Box(920, 250, 200, 30))
    below = ("s", Box(100, 520, 300, 30))
    assert contract.layout_problems(view, [above, beside], 0) == []
    assert contract.layout_problems(view, [below], 0) == [
        "widget 0: control s is below or over its picture"
    ]
    assert contract.layout_problems(None, [below], 0) == []


def test_make_lab_serves_the_repository_root_and_opens_the_tour() -> None:
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "lab", "-o", ".venv/.minidiff-installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(s for s in out.splitlines() if "jupyter lab" in s)
    assert f'--ServerApp.root_dir="{ROOT}"' in line or f"--ServerApp.root_dir={ROOT}" in line, line
    assert "--LabApp.default_url=/lab/tree/notebooks/00_tour.ipynb" in line, line
    files = [w for w in shlex.split(line) if w.endswith(".ipynb") and not w.startswith("--")]
    assert not files, f"a notebook given as a file argument ({files}) becomes JupyterLab's root"


_MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("notebook", contract.course_notebooks(ROOT))
def test_relative_links_in_the_sources_reach_a_file(notebook: str) -> None:
    """The same link rule as in the browser, on the Markdown sources (so it runs everywhere)."""
    nb = json.loads((ROOT / notebook).read_text())
    links = [
        contract.Link(href, cell=i)
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "markdown"
        for href in _MD_LINK.findall("".join(cell["source"]))
        if not href.startswith("#")
    ]
    lectures = contract.course_notebooks(ROOT)
    problems = contract.link_problems(
        notebook,
        links,
        lambda p: (ROOT / p).exists(),
        planned=lambda t: contract.planned_chapter(t, lectures) is not None,
    )
    assert not problems, problems


def test_links_to_a_chapter_not_written_yet_are_planned_not_broken() -> None:
    lectures = ["notebooks/01_forward_process.ipynb", "exercises/ex09_guidance.ipynb"]
    assert contract.planned_chapter("notebooks/09_guidance.ipynb", lectures) == "09"
    assert contract.planned_chapter("exercises/ex09_guidance.ipynb", lectures) == "09"
    assert contract.planned_chapter("exercises/solutions/ex11_unet.ipynb", lectures) == "11"
    # chapter 1 has landed: a wrong name in it is broken, not planned
    assert contract.planned_chapter("notebooks/01_forward.ipynb", lectures) is None
    assert contract.planned_chapter("exercises/ex01_typo.ipynb", lectures) is None
    assert contract.planned_chapter("minidiff/x.py", lectures) is None
    links = [Link("09_guidance.ipynb"), Link("01_forward.ipynb"), Link("../../up.ipynb")]
    problems = contract.link_problems(
        "notebooks/00_tour.ipynb",
        links,
        lambda p: False,
        planned=lambda t: contract.planned_chapter(t, lectures) is not None,
    )
    assert len(problems) == 2 and "01_forward" in problems[0] and "up.ipynb" in problems[1]
