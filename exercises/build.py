"""Generate the student exercise notebooks from the solution notebooks.

The solutions in ``exercises/solutions/`` are the single source. Inside a code cell, everything
between a line ``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` is the answer; the student
copy replaces it with ``raise NotImplementedError(...)`` at the same indentation and drops all
outputs. A Markdown cell tagged ``answer`` holds the model answers to the "think" questions (the
cell tagged ``think`` just before it); the student copy replaces it with an empty answer cell.
Links to the lectures are written from ``exercises/solutions/`` (``../../notebooks/...``) and
rewritten for the student copy one folder up (``../notebooks/...``). Lecturers hand out the
solution notebooks as they are.

    python exercises/build.py          # rewrite exercises/exNN_*.ipynb
    python exercises/build.py --check  # exit 1 if a student notebook is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOLUTIONS = HERE / "solutions"
BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
STUB = 'raise NotImplementedError("Your code here: replace this line with your solution.")'
ANSWER_STUB = "**Your answers.** (Double-click this cell to write them.)\n\n"
ITEM = re.compile(r"^\d+\. ", re.MULTILINE)
SOLUTION_LINK, STUDENT_LINK = "](../../notebooks/", "](../notebooks/"


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


def student_notebook(solution: dict) -> dict:
    """Return the student version of a parsed solution notebook (a new dict)."""
    nb = json.loads(json.dumps(solution))
    for cell in nb["cells"]:
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            if "answer" in cell.get("metadata", {}).get("tags", []):
                src = ANSWER_STUB + "".join(
                    f"{i}. \n" for i in range(1, len(ITEM.findall(src)) + 1)
                )
                cell["metadata"]["tags"] = ["your-answer"]
            cell["source"] = src.replace(SOLUTION_LINK, STUDENT_LINK).splitlines(keepends=True)
            continue
        if cell["cell_type"] != "code":
            continue
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="only report notebooks that are out of date"
    )
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
