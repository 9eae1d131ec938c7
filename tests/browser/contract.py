"""Pure rules of the browser test: what a notebook promises and what counts as a defect.

Nothing here needs a browser; ``tests/browser/test_contract.py`` tests these rules directly and
``tests/browser/labrun.py`` applies them to what it reads from the JupyterLab page. The widget
contract itself is written down in ``tests/browser/README.md``.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: The only error a student copy of an exercise may show after Run All: its first untouched stub.
STUB_ERROR = "NotImplementedError"
#: What ipywidgets' renderer shows when a widget model cannot be displayed.
WIDGET_DISPLAY_ERROR = "Error displaying widget"


def notebook_kind(rel_path: str) -> str:
    """``"lecture"``, ``"solution"`` or ``"exercise"`` (a student copy) for a repo-relative path."""
    parts = Path(rel_path).parts
    if len(parts) >= 2 and parts[0] == "exercises":
        return "solution" if parts[1] == "solutions" else "exercise"
    return "lecture"


def course_notebooks(root: Path) -> list[str]:
    """Every notebook the browser test opens: lectures, student exercises, then solutions."""
    found: list[str] = []
    for pattern in ("notebooks/*.ipynb", "exercises/*.ipynb", "exercises/solutions/*.ipynb"):
        found += sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))
    return found


def expected_widgets(notebook: Mapping[str, Any]) -> int:
    """How many explorer widgets a notebook promises: metadata ``{"minidiff": {"widgets": N}}``."""
    value = notebook.get("metadata", {}).get("minidiff", {}).get("widgets", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(
            f"notebook metadata minidiff.widgets must be a non-negative int, got {value!r}"
        )
    return value


def read_expected_widgets(path: Path) -> int:
    """:func:`expected_widgets` of the notebook file at ``path``."""
    return expected_widgets(json.loads(path.read_text()))


def error_problems(errors: Sequence[Mapping[str, str]], kind: str) -> list[str]:
    """Problems with the error outputs ``[{"ename", "evalue", "cell"}]`` found after Run All.

    A lecture or a solution must show none. A student copy stops at its first untouched stub, so it
    may show exactly one error and that error must be a ``NotImplementedError``.
    """
    problems = []
    allowed = 1 if kind == "exercise" else 0
    for i, err in enumerate(errors):
        where = f"cell {err.get('cell', '?')}"
        if i < allowed and err.get("ename") == STUB_ERROR:
            continue
        problems.append(f"{where}: {err.get('ename')}: {str(err.get('evalue', ''))[:300]}")
    return problems


@dataclass
class Link:
    """A link as JupyterLab rendered it: the ``href`` written in the Markdown and its text."""

    href: str
    text: str = ""
    cell: int | None = None


def resolve_link(notebook_rel: str, href: str) -> str | None:
    """Repository-relative path a relative Markdown link points to, or ``None`` when it is not a
    file link (an external URL, a ``mailto:``, or an anchor in the same notebook).

    ``../exercises/ex01.ipynb`` from ``notebooks/01.ipynb`` gives ``exercises/ex01.ipynb``; a link
    that climbs above the repository root gives a path starting with ``../`` (a broken link).
    """
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith("//"):
        return None
    if not parts.path:
        return None  # '#anchor' in the same notebook
    path = unquote(parts.path)
    if path.startswith("/"):
        return path.lstrip("/")
    return posixpath.normpath(posixpath.join(posixpath.dirname(notebook_rel), path))


_COURSE_NOTEBOOK = re.compile(
    r"^(?:notebooks/(?P<lecture>\d\d)_|exercises/(?:solutions/)?ex(?P<exercise>\d\d)_)[^/]*\.ipynb$"
)


def planned_chapter(target: str, lectures: Iterable[str]) -> str | None:
    """The chapter number ``NN`` when ``target`` is a course notebook of a chapter that has no
    lecture in ``lectures`` yet (a chapter being written), else ``None``.

    The course map links every chapter; until chapter ``NN``'s lecture lands, its links are
    reported as planned instead of broken. Once it lands, every link of that chapter must open.
    """
    m = _COURSE_NOTEBOOK.match(target)
    if not m:
        return None
    chapter = m.group("lecture") or m.group("exercise")
    landed = {Path(p).name[:2] for p in lectures if p.startswith("notebooks/")}
    return None if chapter in landed else chapter


def link_problems(
    notebook_rel: str,
    links: Iterable[Link],
    exists: Any,
    anchors: Iterable[str] = (),
    planned: Any = None,
) -> list[str]:
    """Broken relative links: targets outside the repository or for which ``exists(path)`` is
    false, and same-notebook anchors (``#id``) that match no element id in ``anchors``. A missing
    target for which ``planned(path)`` is true (see :func:`planned_chapter`) is not a problem."""
    ids = set(anchors)
    problems = []
    for link in links:
        target = resolve_link(notebook_rel, link.href)
        if target is None:
            frag = urlsplit(link.href).fragment
            if link.href.startswith("#") and unquote(frag) not in ids:
                problems.append(f"link {link.href!r} ({link.text!r}): no such anchor")
            continue
        if target.startswith("..") or not exists(target):
            if planned is not None and not target.startswith("..") and planned(target):
                continue
            problems.append(f"link {link.href!r} ({link.text!r}) -> {target}: does not open")
    return problems


_RAW_MATH = re.compile(r"\$\$|(?<![\\$])\$[^$\s][^$]*\$")


def math_problems(markdown_cells: Sequence[Mapping[str, Any]]) -> list[str]:
    """LaTeX that MathJax left as text: ``[{"cell", "has_math", "typeset", "text"}]`` per rendered
    Markdown cell, where ``text`` is the cell's visible text with typeset math removed."""
    problems = []
    for cell in markdown_cells:
        where = f"markdown cell {cell.get('cell', '?')}"
        if cell.get("has_math") and not cell.get("typeset"):
            problems.append(f"{where}: LaTeX in the source but no MathJax output")
        text = str(cell.get("text", ""))
        if "$$" in text:
            problems.append(f"{where}: raw '$$' left in the rendered text")
        elif (m := _RAW_MATH.search(text)) and "\\" in m.group(0):
            problems.append(f"{where}: raw LaTeX left in the rendered text: {m.group(0)[:60]!r}")
    return problems


@dataclass
class WidgetSnapshot:
    """What the page shows of one explorer (``.minidiff-widget``) at a moment."""

    view: list[str] = field(default_factory=list)  # src of each .minidiff-view image
    readout: list[str] = field(default_factory=list)  # text of each .minidiff-readout
    message: str = ""  # text of its .minidiff-message (empty when all is well)

    def shown(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(self.view), tuple(self.readout)


def widget_problems(snapshot: WidgetSnapshot, index: int) -> list[str]:
    """Problems of one explorer at rest: it must show a picture and no error message."""
    problems = []
    if not snapshot.view or not all(snapshot.view):
        problems.append(f"widget {index}: no .minidiff-view image with a picture")
    if snapshot.message.strip():
        problems.append(f"widget {index}: shows the message {snapshot.message.strip()[:300]!r}")
    return problems


def move_problems(
    before: WidgetSnapshot, after: WidgetSnapshot, index: int, control: str
) -> list[str]:
    """Problems after moving ``control`` of widget ``index``: the view or readout must change and
    no error message may appear."""
    problems = []
    if after.shown() == before.shown():
        problems.append(
            f"widget {index}: moving {control} changed neither the view image nor the readout"
        )
    if after.message.strip():
        problems.append(
            f"widget {index}: moving {control} shows the message {after.message.strip()[:300]!r}"
        )
    return problems


def count_problems(expected: int, found: int, display_errors: int) -> list[str]:
    """The notebook promises ``expected`` widgets; the page shows ``found`` roots."""
    problems = []
    if display_errors:
        problems.append(f"{display_errors} output(s) show {WIDGET_DISPLAY_ERROR!r}")
    if found != expected:
        problems.append(
            f"metadata minidiff.widgets promises {expected} widget(s); the page shows {found} "
            "element(s) with class minidiff-widget"
        )
    return problems


@dataclass
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height


def layout_problems(
    view: Box | None, controls: Sequence[tuple[str, Box]], index: int, tol: float = 2.0
) -> list[str]:
    """Controls must sit above or beside the picture they drive, never below or on top of it."""
    if view is None:
        return []
    problems = []
    for name, box in controls:
        above = box.bottom <= view.y + tol
        beside = box.x >= view.right - tol or box.right <= view.x + tol
        if not (above or beside):
            problems.append(f"widget {index}: control {name} is below or over its picture")
    return problems
