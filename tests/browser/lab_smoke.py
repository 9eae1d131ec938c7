"""Run course notebooks in real JupyterLab in headless Chromium, from a shell.

The same check as ``tests/browser/test_lab.py`` (which ``make test`` runs), for a few notebooks at
a time, with a screenshot of each at 1280x800::

    .venv/bin/python tests/browser/lab_smoke.py [NOTEBOOK ...] [--out build/browser] [--workers 2]

Without NOTEBOOK arguments it runs every lecture, exercise and solution. Prints one line per
notebook (time, problems) and exits 1 if any notebook has a problem, 2 if the browser test cannot
run here (the reason is printed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contract  # noqa: E402
import labrun  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="paths relative to the repository root")
    parser.add_argument("--out", default=str(labrun.ROOT / "build" / "browser"))
    parser.add_argument(
        "--timeout", type=float, default=labrun.TIMEOUT, help="seconds for each wait"
    )
    parser.add_argument("--workers", type=int, default=2, help="notebooks run side by side")
    args = parser.parse_args(argv)
    why = labrun.unavailable()
    if why:
        print(f"browser test cannot run: {why}", file=sys.stderr)
        return 2
    notebooks = args.notebooks or contract.course_notebooks(labrun.ROOT)
    start = time.monotonic()

    def show(report: labrun.Report) -> None:
        status = "ok  " if report.ok else "FAIL"
        notes = "; ".join(report.notes)
        print(f"{status} {report.seconds:6.1f} s  {report.path}  ({notes})", flush=True)
        for problem in report.problems:
            print(f"       - {problem}", flush=True)

    reports = labrun.check_all(notebooks, Path(args.out), args.workers, args.timeout, show)
    failed = sum(not r.ok for r in reports.values())
    print(f"{len(notebooks)} notebooks, {failed} with problems, {time.monotonic() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
