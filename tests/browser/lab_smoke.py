"""Browser check of the course set-up (not part of ``make test``).

Starts JupyterLab from this environment on 127.0.0.1, opens a notebook in headless Chromium
through Playwright, optionally runs all its cells, and saves a screenshot, so a person can see
what a student sees after ``make lab``. It uses the system Chromium (Debian: ``apt-get install
chromium``) and the ``playwright`` Python package (``.venv/bin/pip install playwright``); no
browser is downloaded.

    .venv/bin/python tests/browser/lab_smoke.py [--notebook notebooks/00_tour.ipynb]
        [--run-all] [--out /tmp/minidiff_lab.png]

Exit status 0 when the notebook rendered (and, with --run-all, no cell showed an error).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_server(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def _ensure_kernel(page: Page, wait_ms: float) -> None:
    """Accept the 'Select Kernel' dialog if JupyterLab asks, then wait for an idle kernel."""
    page.wait_for_function(
        """() => document.querySelector('.jp-Dialog')
            || /Idle/.test(document.querySelector('.jp-StatusBar-Widget, #jp-main-statusbar')
                ?.textContent ?? '')""",
        timeout=wait_ms,
    )
    dialog = page.locator(".jp-Dialog:has-text('Select Kernel')")
    if dialog.count():
        dialog.locator("button.jp-mod-accept").click()
    page.wait_for_function(
        "() => /\\| Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent ?? '')",
        timeout=wait_ms,
    )


def _dismiss_news(page: Page) -> None:
    """Answer JupyterLab's first-start question about news, so it does not cover the shot."""
    from playwright.sync_api import Error as PlaywrightError

    button = page.locator(".jp-toast-button:has-text('No'), .Toastify button:has-text('No')")
    try:
        button.first.click(timeout=3000)
    except PlaywrightError:
        pass


def _pick_notebook(requested: str | None) -> Path:
    if requested:
        path = (ROOT / requested).resolve()
        if not path.is_file():
            raise SystemExit(f"--notebook: {requested} does not exist")
        return path
    default = ROOT / "notebooks" / "00_tour.ipynb"
    if default.is_file():
        return default
    found = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("exercises/*.ipynb"))
    if not found:
        raise SystemExit("no notebook found under notebooks/ or exercises/")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", help="path relative to the repository root")
    parser.add_argument("--run-all", action="store_true", help="run all cells before the shot")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "minidiff_lab.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for each wait")
    args = parser.parse_args(argv)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("playwright is missing: .venv/bin/pip install playwright", file=sys.stderr)
        return 2
    if not Path(args.chromium).exists():
        print(f"{args.chromium} not found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2

    notebook = _pick_notebook(args.notebook)
    rel = notebook.relative_to(ROOT).as_posix()
    port, token = _free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    scratch = Path(tempfile.mkdtemp(prefix="minidiff-lab-"))
    # Fresh settings: no autosave (running cells must not write outputs into the repository's
    # notebook) and no news prompt.
    settings = scratch / "settings"
    for plugin, values in {
        "docmanager-extension/plugin": '{"autosave": false}',
        "apputils-extension/notification": '{"fetchNews": "false"}',
    }.items():
        target = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(values)
    env = dict(
        os.environ,
        JUPYTERLAB_WORKSPACES_DIR=str(scratch / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
    )
    server = subprocess.Popen(
        [
            str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--ServerApp.root_dir={ROOT}", f"--IdentityProvider.token={token}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(scratch / "lab.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        try:
            _wait_for_server(f"{base}/api/status?token={token}", args.timeout)
        except TimeoutError:
            print((scratch / "lab.log").read_text()[-3000:], file=sys.stderr)
            raise
        print(f"JupyterLab up in {time.monotonic() - started:.1f} s on port {port}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            t0 = time.monotonic()
            wait_ms = args.timeout * 1000
            page.goto(f"{base}/lab/tree/{rel}?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=wait_ms)
            _ensure_kernel(page, wait_ms)
            _dismiss_news(page)
            n_cells = page.locator(".jp-Notebook .jp-Cell").count()
            print(f"{rel}: {n_cells} cells, kernel idle after {time.monotonic() - t0:.1f} s")
            failed = 0
            if args.run_all:
                t1 = time.monotonic()
                page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
                page.click("li.lm-Menu-item:has-text('Run All Cells')")
                # Every code cell ends with a number in its prompt: none left unrun or at [*].
                page.wait_for_function(
                    """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                        .every(p => /\\[\\d+\\]/.test(p.textContent))""",
                    timeout=wait_ms,
                )
                failed = page.locator(
                    ".jp-OutputArea-output:has-text('Traceback (most recent call last)')"
                ).count()
                images = page.locator(".jp-OutputArea-output img").count()
                print(
                    f"ran all cells in {time.monotonic() - t1:.1f} s: "
                    f"{images} images, {failed} outputs with a traceback"
                )
                page.locator(".jp-Notebook .jp-Cell").first.scroll_into_view_if_needed()
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
            print(f"screenshot: {args.out}")
            browser.close()
        return 1 if failed else 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
