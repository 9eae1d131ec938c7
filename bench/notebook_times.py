"""How long each lecture notebook takes to run top to bottom, in fast and in default mode.

    python bench/notebook_times.py                    # fast mode, every lecture notebook
    python bench/notebook_times.py --mode default 03  # default mode, notebooks named 03*
    python bench/notebook_times.py --mode both --record 00 01 02 03
                                                      # both modes, update bench/notebook_times.json

Each notebook is executed in a fresh kernel by ``jupyter nbconvert --execute`` (in a child process
of this script, so the kernel's CPU time is counted in ``resource.getrusage(RUSAGE_CHILDREN)``).
Both the wall time and the CPU time (user + system, kernel included) are reported: on a shared
machine the wall time is inflated by other work, the CPU time much less so. ``--record`` merges
the results into ``bench/notebook_times.json``, which the course tour (``notebooks/00_tour.ipynb``)
reads to state how long the notebooks take. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "bench" / "notebook_times.json"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_notebook(
    path: Path, fast: bool, timeout: int, keep: Path | None = None
) -> tuple[float, float]:
    """Execute ``path`` in a fresh kernel; return (wall seconds, CPU seconds of the run).

    ``keep``: a folder where the executed notebook is written (as ``<name>.<mode>.ipynb``).
    """
    env = dict(
        os.environ,
        MINIDIFF_FAST="1" if fast else "0",
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            f"--ExecutePreprocessor.timeout={timeout}",
            "--output-dir",
            str(out),
            "--output",
            f"{path.stem}.{'fast' if fast else 'default'}",
            str(path),
        ]
        cpu0, t0 = _children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=path.parent, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if proc.returncode != 0:
            raise SystemExit(
                f"{path.name} failed ({'fast' if fast else 'default'} mode):\n{proc.stderr[-3000:]}"
            )
        return wall, cpu


def record(name: str, mode: str, values: dict[str, float]) -> None:
    """Merge one measurement into ``bench/notebook_times.json`` (written after every run)."""
    data = json.loads(RECORD.read_text()) if RECORD.exists() else {"notebooks": {}}
    data["machine"] = f"{os.cpu_count()} CPU cores, torch {torch.__version__} (CPU)"
    data["note"] = (
        "wall and CPU seconds of `jupyter nbconvert --execute` (kernel start included), "
        "measured with bench/notebook_times.py; wall time grows with the machine's load "
        "(load_avg: the 1-minute load average when the run started)"
    )
    data["notebooks"].setdefault(name, {})[mode] = dict(values, date=dt.date.today().isoformat())
    data["notebooks"] = dict(sorted(data["notebooks"].items()))
    RECORD.write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "prefixes", nargs="*", help="only notebooks whose file name starts with one of these"
    )
    p.add_argument("--mode", choices=("fast", "default", "both"), default="fast")
    p.add_argument(
        "--record", action="store_true", help=f"merge the results into {RECORD.relative_to(ROOT)}"
    )
    p.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    p.add_argument(
        "--keep", type=Path, default=None, help="write the executed notebooks to this folder"
    )
    args = p.parse_args()

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        notebooks = [nb for nb in notebooks if nb.name.startswith(tuple(args.prefixes))]
    if not notebooks:
        raise SystemExit("no notebook matches")
    modes = ("fast", "default") if args.mode == "both" else (args.mode,)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load:.1f} at start, "
        f"python {platform.python_version()}"
    )
    print("| notebook | mode | wall s | CPU s |")
    print("|---|---|---|---|")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for nb in notebooks:
        for mode in modes:
            load_now = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            wall, cpu = run_notebook(nb, mode == "fast", args.timeout, args.keep)
            results.setdefault(nb.name, {})[mode] = {
                "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1),
                "load_avg": round(load_now, 1),
            }
            print(f"| {nb.name} | {mode} | {wall:.1f} | {cpu:.1f} |", flush=True)
            if args.record:
                record(nb.name, mode, results[nb.name][mode])


if __name__ == "__main__":
    main()
