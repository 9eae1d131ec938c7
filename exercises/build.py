"""Generate the student exercise notebooks from the solution notebooks.

The solutions in ``exercises/solutions/`` are the single source. Inside a code cell, everything
between a line ``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` is the answer; the student
copy replaces it with ``raise NotImplementedError(...)`` at the same indentation and drops all
outputs. Lecturers hand out the solution notebooks as they are.

    python exercises/build.py          # rewrite exercises/exNN_*.ipynb
    python exercises/build.py --check  # exit 1 if a student notebook is out of date
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOLUTIONS = HERE / "solutions"
BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
STUB = 'raise NotImplementedError("Your code here: replace this line with your solution.")'


def strip_solution(source: str) -> str:
    """Replace every solution block in ``source`` by a ``raise NotImplementedError`` stub."""
    out: list[str] = []
    inside = False
    for line in source.splitlines():
        if not inside and (m := BEGIN.match(line)):
            out.append(f"{m.group('indent')}{STUB}")
            inside = True
        elif inside and END.match(line):
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("a '### BEGIN SOLUTION' has no matching '### END SOLUTION'")
    return "\n".join(out)


MD_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def relink(markdown: str) -> str:
    """Rewrite relative Markdown links written for ``exercises/solutions/`` so that they reach
    the same files from ``exercises/``: ``../../notebooks/x.ipynb`` -> ``../notebooks/x.ipynb``."""

    def fix(m: re.Match[str]) -> str:
        href = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", href, re.IGNORECASE):
            return m.group(0)
        path, sep, frag = href.partition("#")
        target = posixpath.normpath(posixpath.join("exercises/solutions", path))
        return f"{m.group(1)}{posixpath.relpath(target, 'exercises')}{sep}{frag}{m.group(3)}"

    return MD_LINK.sub(fix, markdown)


def student_notebook(solution: dict) -> dict:
    """Return the student version of a parsed solution notebook (a new dict)."""
    nb = json.loads(json.dumps(solution))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            fixed = relink(src)
            if fixed != src:
                cell["source"] = fixed.splitlines(keepends=True)
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = strip_solution(src)
        cell["outputs"] = []
        cell["execution_count"] = None
    nb.setdefault("metadata", {})["minidiff"] = {}
    return nb


def student_path(solution_path: Path) -> Path:
    return HERE / solution_path.name


def render(solution_path: Path) -> str:
    nb = student_notebook(json.loads(solution_path.read_text()))
    nb["metadata"]["minidiff"]["generated_from"] = f"solutions/{solution_path.name}"
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report notebooks that are out of date")
    args = parser.parse_args(argv)
    stale = []
    for sol in sorted(SOLUTIONS.glob("ex*.ipynb")):
        text, dest = render(sol), student_path(sol)
        if args.check:
            if not dest.exists() or dest.read_text() != text:
                stale.append(dest.name)
        else:
            dest.write_text(text)
            print(f"wrote {dest.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python exercises/build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
