"""Drive the course in real JupyterLab, in headless Chromium, as a student would.

One JupyterLab, started by ``make lab`` (same root and settings, plus a free loopback port, a
random token, no browser and ``expose_app_in_browser`` so the page can be told to open
notebooks), and Chromium pages at 1280x800 (``check_all``: one per worker, each running one
notebook at a time). For each notebook: open it, Run All in fast mode,
wait until every cell has run, then read the page and apply the rules of ``contract.py``: error
outputs, "Error displaying widget", the promised widgets (rendered, no message, every control
moves the picture or the readout, controls above or beside the picture), MathJax output, every
relative link, horizontal overflow. Then a screenshot, and the kernel is shut down.

Uses Debian's ``/usr/bin/chromium`` through Playwright's ``executable_path``; never downloads a
browser. ``tests/browser/test_lab.py`` runs this under pytest; ``lab_smoke.py`` from a shell.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import contract

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MINIDIFF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 800}
#: Longest wait for one step; Run All of a whole notebook is one step (nbval: 900 s per cell).
TIMEOUT = float(os.environ.get("MINIDIFF_BROWSER_TIMEOUT", "1800"))
#: Seconds per notebook checked in this process (the pytest summary prints them).
SECONDS: dict[str, float] = {}


def unavailable() -> str | None:
    """Why the browser test cannot run here, or ``None`` when it can."""
    if not Path(CHROMIUM).exists():
        return (
            f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium; "
            "or set MINIDIFF_CHROMIUM to its path)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"the playwright package is missing from {sys.prefix} (pip install playwright)"
    if shutil.which("make") is None:
        return "make is not installed (JupyterLab is started through `make lab`)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Report:
    """The outcome of one notebook."""

    path: str
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


class LabServer:
    """JupyterLab started with ``make lab`` from the environment this Python runs in."""

    def __init__(self, root: Path = ROOT, timeout: float = 120.0) -> None:
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.scratch = Path(tempfile.mkdtemp(prefix="minidiff-lab-"))
        self.base = f"http://127.0.0.1:{self.port}"
        settings = self.scratch / "settings"
        # Only what keeps the run clean: no autosave (running cells must not write outputs into
        # the repository's notebooks) and no question about news covering the page.
        for plugin, values in {
            "docmanager-extension/plugin": {"autosave": False},
            "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        }.items():
            target = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        venv = Path(sys.prefix)
        env = dict(os.environ)
        env.pop("MINIDIFF_STRICT_CHECKS", None)  # a student's lab: checkers print their verdict
        # pytest's conftest sets MPLBACKEND=Agg; kernels must draw inline as they do for a student
        env.pop("MPLBACKEND", None)
        # Notebooks run side by side, one kernel each: with torch's default of one thread per core,
        # two kernels on a 2-core machine oversubscribe it and spin (chapter 4 ran 6x slower than
        # under nbval). One thread per kernel unless the caller chose otherwise.
        env.setdefault("OMP_NUM_THREADS", "1")
        env.update(
            MINIDIFF_FAST=env.get("MINIDIFF_FAST", "1"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(self.scratch / "workspaces"),
            PYTHONPATH=os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p),
        )
        lab_args = (
            f"--no-browser --ip=127.0.0.1 --port={self.port} "
            f"--IdentityProvider.token={self.token} --LabApp.expose_app_in_browser=True "
            "--LabApp.news_url=None"
        )
        stamp = venv / ".minidiff-installed"
        self.log = open(self.scratch / "lab.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(root),
                "lab",
                f"VENV={venv}",
                f"LAB_ARGS={lab_args}",
                # the environment is already built: never reinstall from here
                "-o",
                str(stamp),
                "-o",
                f"{venv}/bin/python",
            ],
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.base}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"JupyterLab did not start within {timeout:.0f} s; its log ends:\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.scratch / "lab.log").read_text()[-n:]
        except OSError:
            return ""

    def exists(self, path: str) -> bool:
        """Whether the server serves ``path`` (repository-relative) through its contents API."""
        quoted = urllib.parse.quote(path)
        url = f"{self.base}/api/contents/{quoted}?content=0&token={self.token}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
                self.process.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, 9)
                except ProcessLookupError:
                    pass
        self.log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


# JavaScript run in the page. `window.jupyterapp` exists because of expose_app_in_browser.
_OPEN = """async (path) => {
  const app = window.jupyterapp;
  for (const w of [...app.shell.widgets('main')]) { w.dispose(); }
  const panel = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await panel.context.ready;
  await panel.sessionContext.ready;
  window.__nb = panel;
  return panel.sessionContext.session?.kernel?.id ?? null;
}"""

# Run All without waiting here (evaluate has no timeout): _SETTLED waits, with one.
_RUN_ALL = """() => {
  const app = window.jupyterapp, panel = window.__nb;
  app.shell.activateById(panel.id);
  window.__ran = false;
  app.commands.execute('notebook:run-all-cells')
    .finally(() => { window.__ran = true; });
}"""

_SETTLED = """() => {
  const panel = window.__nb;
  if (!window.__ran) return false;
  const kernel = panel.sessionContext.session?.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const prompts = [...panel.node.querySelectorAll('.jp-InputPrompt')];
  return !prompts.some(p => p.textContent.includes('*'));
}"""

_ERRORS = """() => {
  const out = [];
  window.__nb.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    const outputs = cell.model.outputs;
    for (let k = 0; k < outputs.length; k++) {
      const o = outputs.get(k).toJSON();
      if (o.output_type === 'error') out.push({cell: String(i), ename: o.ename, evalue: o.evalue});
    }
  });
  return out;
}"""

_UNRUN = """() => window.__nb.content.widgets.filter(
  c => c.model.type === 'code' && c.model.sharedModel.source.trim() && !c.model.executionCount
).length"""

_MARKDOWN = """async () => {
  const panel = window.__nb, out = [];
  for (const [i, cell] of panel.content.widgets.entries()) {
    if (cell.model.type !== 'markdown') continue;
    const src = cell.model.sharedModel.source;
    cell.rendered = true;
    const node = cell.node.querySelector('.jp-RenderedMarkdown');
    if (!node) continue;
    const clone = node.cloneNode(true);
    clone.querySelectorAll('mjx-container, .MathJax, script, code, pre').forEach(e => e.remove());
    // JupyterLab rewrites a relative link to its /files/ URL (and opens it in the Lab on click).
    const files = location.origin + '/files/';
    const links = [...node.querySelectorAll('a[href]')].map(a => {
      const href = a.getAttribute('href');
      const local = href.startsWith(files)
        ? '/' + decodeURIComponent(href.slice(files.length).split('?')[0]) : null;
      return {href: local || href, text: a.textContent, cell: i};
    });
    out.push({cell: String(i), has_math: /\\$[^$]+\\$/.test(src.replace(/`[^`]*`/g, '')),
              typeset: !!node.querySelector('mjx-container, .MathJax'),
              text: clone.textContent, links});
  }
  const anchors = [...panel.node.querySelectorAll('[id], [data-jupyter-id]')]
    .map(e => e.getAttribute('data-jupyter-id') || e.id);
  return {cells: out, anchors};
}"""

_OVERFLOW = """() => {
  const bad = [];
  window.__nb.content.widgets.forEach((cell, i) => {
    cell.node.querySelectorAll('.jp-OutputArea-output').forEach(o => {
      if (o.scrollWidth > o.clientWidth + 2) {
        bad.push(`cell ${i}: output is ${o.scrollWidth}px wide in a ${o.clientWidth}px area`);
      }
    });
  });
  return bad;
}"""

_WIDGET_STATE = """(index) => {
  const root = window.__nb.node.querySelectorAll('.minidiff-widget')[index];
  if (!root) return null;
  const box = e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
  const views = [...root.querySelectorAll('.minidiff-view')];
  const imgs = views.map(v => v.tagName === 'IMG' ? v : v.querySelector('img'));
  return {
    view: imgs.map(img => img ? (img.getAttribute('src') || '') : ''),
    readout: [...root.querySelectorAll('.minidiff-readout')].map(e => e.textContent),
    message: [...root.querySelectorAll('.minidiff-message')].map(e => e.textContent).join(' '),
    view_box: views.length ? box(views[0]) : null,
    controls: [...root.querySelectorAll('.minidiff-control')].map((c, k) => {
      const disabled = !!c.querySelector(':disabled, [disabled]') || c.matches(':disabled')
        || !!c.querySelector('.noUi-target[disabled]');
      const label = (c.querySelector('.widget-label')?.textContent || '').trim();
      let kind = 'other';
      if (c.querySelector('.noUi-handle')) kind = 'slider';
      else if (c.querySelector('select')) kind = 'select';
      else if (c.querySelector('input[type=checkbox]')) kind = 'checkbox';
      else if (c.querySelector('button')) kind = 'buttons';
      return {k, label: label || `control ${k}`, kind, disabled, box: box(c)};
    }),
  };
}"""


class LabBrowser:
    """One Chromium page with JupyterLab loaded; :meth:`check` runs one notebook through it."""

    def __init__(self, server: LabServer, out_dir: Path | None, timeout: float = TIMEOUT) -> None:
        from playwright.sync_api import sync_playwright

        self.server = server
        self.out_dir = out_dir
        self.timeout_ms = timeout * 1000
        self._pw = sync_playwright().start()
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=server.scratch))
        self.context = self._pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=VIEWPORT,
        )
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.set_default_timeout(self.timeout_ms)
        self.page.goto(f"{server.base}/lab?token={server.token}")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started")
        self.page.evaluate("() => window.jupyterapp.started")
        self.page.wait_for_selector("#jp-main-dock-panel")

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            self._pw.stop()

    # -- one notebook ----------------------------------------------------------------------------
    def check(self, rel: str, widgets: int | None = None) -> Report:
        """Open ``rel``, Run All, apply every rule; ``widgets`` overrides the metadata count."""
        report = Report(rel)
        kind = contract.notebook_kind(rel)
        expected = (
            contract.read_expected_widgets(self.server.root / rel) if widgets is None else widgets
        )
        page = self.page
        t0 = time.monotonic()
        try:
            kernel_id = page.evaluate(_OPEN, rel)
            page.evaluate(_RUN_ALL)
            page.wait_for_function(_SETTLED, polling=250)
            run_s = time.monotonic() - t0
            errors = page.evaluate(_ERRORS)
            report.problems += contract.error_problems(errors, kind)
            unrun = page.evaluate(_UNRUN)
            if unrun and not errors:
                report.problems.append(f"{unrun} code cell(s) did not run")
            report.notes.append(f"ran in {run_s:.1f} s")
            if kind == "exercise" and unrun:
                report.notes.append(f"stopped at the first stub ({unrun} cells not run)")
            self._check_markdown(rel, report)
            self._check_widgets(expected, report)
            report.problems += page.evaluate(_OVERFLOW)
            self._screenshot(rel, report)
            cpu = _kernel_cpu_seconds(kernel_id)
            if cpu is not None:
                report.notes.append(f"kernel CPU {cpu:.1f} s")
        except Exception as err:  # noqa: BLE001 - any failure of the page is this notebook's problem
            report.problems.append(f"{type(err).__name__}: {str(err)[:800]}")
            self._screenshot(rel, report)
        finally:
            self._shutdown()
            report.seconds = time.monotonic() - t0
        return report

    def _check_markdown(self, rel: str, report: Report) -> None:
        info = self.page.evaluate(_MARKDOWN)
        report.problems += contract.math_problems(info["cells"])
        links = []
        for cell in info["cells"]:
            links += [contract.Link(a["href"], a["text"], a["cell"]) for a in cell["links"]]
        lectures = contract.course_notebooks(self.server.root)
        planned = sorted(
            {
                c
                for link in links
                if (t := contract.resolve_link(rel, link.href))
                and not self.server.exists(t)
                and (c := contract.planned_chapter(t, lectures))
            }
        )
        report.problems += contract.link_problems(
            rel,
            links,
            self.server.exists,
            info["anchors"],
            lambda t: contract.planned_chapter(t, lectures) is not None,
        )
        if planned:
            report.notes.append(f"links to chapters not written yet: {', '.join(planned)}")
        n_local = sum(contract.resolve_link(rel, link.href) is not None for link in links)
        n_math = sum(bool(c["has_math"] and c["typeset"]) for c in info["cells"])
        report.notes.append(f"{n_local} relative links; math typeset in {n_math} cells")

    def _snapshot(self, index: int) -> tuple[contract.WidgetSnapshot, dict[str, Any]]:
        raw = self.page.evaluate(_WIDGET_STATE, index)
        snap = contract.WidgetSnapshot(raw["view"], raw["readout"], raw["message"])
        return snap, raw

    def _wait_change(self, index: int, before: contract.WidgetSnapshot) -> contract.WidgetSnapshot:
        deadline = time.monotonic() + 20.0
        snap = before
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(200)
            snap, _ = self._snapshot(index)
            if snap.shown() != before.shown() or snap.message.strip():
                # let a second message (e.g. the readout after the picture) arrive
                self.page.wait_for_function(_SETTLED, polling=100)
                return self._snapshot(index)[0]
        return snap

    def _move(self, index: int, control: dict[str, Any]) -> None:
        root = self.page.locator(f"{_PANEL} .minidiff-widget").nth(index)
        ctrl = root.locator(".minidiff-control").nth(control["k"])
        kind = control["kind"]
        if kind == "slider":
            handle = ctrl.locator(".noUi-handle").first
            now = float(handle.get_attribute("aria-valuenow") or 0)
            low = float(handle.get_attribute("aria-valuemin") or 0)
            handle.focus()
            # Home/End jump to an end of the range; the far one always changes the value.
            handle.press("End" if now <= low else "Home")
        elif kind == "select":
            select = ctrl.locator("select").first
            options = select.locator("option").all_inner_texts()
            current = select.evaluate("s => s.selectedIndex")
            select.select_option(index=(current + 1) % len(options))
        elif kind == "checkbox":
            ctrl.locator("input[type=checkbox]").first.click()
        elif kind == "buttons":
            buttons = ctrl.locator("button:not(.mod-active)")
            buttons.first.click()
        else:
            raise RuntimeError(f"widget {index}: cannot move control {control['label']}")

    def _check_widgets(self, expected: int, report: Report) -> None:
        page = self.page
        display_errors = page.locator(
            f"{_PANEL} .jp-OutputArea-output:has-text('{contract.WIDGET_DISPLAY_ERROR}')"
        ).count()
        found = page.locator(f"{_PANEL} .minidiff-widget").count()
        report.problems += contract.count_problems(expected, found, display_errors)
        for index in range(found):
            root = page.locator(f"{_PANEL} .minidiff-widget").nth(index)
            root.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            snap, raw = self._snapshot(index)
            report.problems += contract.widget_problems(snap, index)
            view = contract.Box(*raw["view_box"]) if raw["view_box"] else None
            report.problems += contract.layout_problems(
                view, [(c["label"], contract.Box(*c["box"])) for c in raw["controls"]], index
            )
            if not raw["controls"]:
                report.problems.append(f"widget {index}: no .minidiff-control to move")
            if index == 0:
                self._screenshot(report.path, report)  # what Run All left, before any move
            self._move_all(index, report)

    def _move_all(self, index: int, report: Report) -> None:
        """Move every control once, reading the page afresh before each move. A dropdown (a
        schedule family, say) may enable other controls, so dropdowns step to their next option
        on every pass until every control has been moved or a pass brings nothing new."""
        moved: set[str] = set()
        labels: set[str] = set()
        for _ in range(6):
            progress = False
            count = len(self._snapshot(index)[1]["controls"])
            for k in range(count):
                _, raw = self._snapshot(index)
                control = raw["controls"][k]
                labels.add(control["label"])
                again = control["kind"] == "select" and moved != labels
                if control["disabled"] or (control["label"] in moved and not again):
                    continue
                before, _ = self._snapshot(index)
                self._move(index, control)
                after = self._wait_change(index, before)
                report.problems += contract.move_problems(before, after, index, control["label"])
                progress |= control["label"] not in moved
                moved.add(control["label"])
            if (
                moved == labels
                or not progress
                and not any(c["kind"] == "select" for c in self._snapshot(index)[1]["controls"])
            ):
                break
        left = sorted(labels - moved)
        report.notes.append(
            f"widget {index}: moved {len(moved)} control(s)"
            + (f", never enabled: {left}" if left else "")
        )
        if left:
            report.problems.append(f"widget {index}: controls {left} could never be moved")

    def _screenshot(self, rel: str, report: Report) -> None:
        if self.out_dir is None:
            return
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            target = self.out_dir / (rel.replace("/", "__").removesuffix(".ipynb") + ".png")
            if report.screenshot is not None:
                return
            # The first widget, else a checker's verdict or an error, else the first figure,
            # else the top of the notebook.
            self.page.evaluate(
                """(exercise) => {
                  const nb = window.__nb; if (!nb) return;
                  const outputs = [...nb.node.querySelectorAll('.jp-OutputArea-output')];
                  const mark = /^\\s*(Correct|Not yet)\\b|[\u2705\u274c]/;
                  const isVerdict = o => mark.test(o.textContent)
                    || o.matches('[data-mime-type="application/vnd.jupyter.stderr"]');
                  const verdict = exercise ? outputs.find(isVerdict) : null;
                  const figure = nb.node.querySelector('.jp-OutputArea-output img');
                  const target = nb.node.querySelector('.minidiff-widget')
                    || verdict?.closest('.jp-Cell');
                  if (target) target.scrollIntoView({block: 'start'});
                  else if (figure) figure.scrollIntoView({block: 'center'});
                  else nb.node.querySelectorAll('.jp-WindowedPanel-outer')
                    .forEach(e => e.scrollTo(0, 0));
                }""",
                contract.notebook_kind(rel) != "lecture",
            )
            self.page.wait_for_timeout(300)
            self.page.screenshot(path=str(target))
            report.screenshot = target
        except Exception as err:  # noqa: BLE001 - a missing screenshot is a note, not a failure
            report.notes.append(f"no screenshot: {err}")

    def _shutdown(self) -> None:
        try:
            self.page.evaluate(
                """async () => {
                  const panel = window.__nb; if (!panel) return;
                  await panel.sessionContext.shutdown();
                  panel.context.model.dirty = false;
                  panel.dispose(); window.__nb = null;
                }"""
            )
        except Exception:  # noqa: BLE001 - the next open disposes what is left
            pass


_PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def _kernel_cpu_seconds(kernel_id: str | None) -> float | None:
    """CPU time (user + system, with children) of the kernel process, for honest timings on a
    loaded machine; ``None`` when it cannot be found."""
    if not kernel_id:
        return None
    try:
        import psutil
    except ImportError:
        return None
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(f"kernel-{kernel_id}.json" in part for part in cmdline):
            try:
                t = proc.cpu_times()
            except psutil.Error:
                return None
            return float(t.user + t.system + t.children_user + t.children_system)
    return None


def check_all(
    notebooks: list[str],
    out_dir: Path | None = None,
    workers: int = 1,
    timeout: float = TIMEOUT,
    on_report: Callable[[Report], None] | None = None,
) -> dict[str, Report]:
    """Check ``notebooks`` on one JupyterLab with ``workers`` browser pages side by side (each
    worker runs one notebook at a time, so at most ``workers`` kernels run at once)."""
    results: dict[str, Report] = {}
    pending = list(notebooks)
    lock = threading.Lock()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            browser = LabBrowser(server, out_dir, timeout)
        except BaseException as err:  # noqa: BLE001 - reported below for every notebook left
            failures.append(err)
            return
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    rel = pending.pop(0)
                report = browser.check(rel)
                with lock:
                    results[rel] = report
                    SECONDS[rel] = report.seconds
                    if on_report is not None:
                        on_report(report)
        finally:
            browser.close()

    server = LabServer()
    try:
        threads = [
            threading.Thread(target=work) for _ in range(max(1, min(workers, len(notebooks))))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    for rel in notebooks:
        if rel not in results:
            why = "; ".join(f"{type(e).__name__}: {e}" for e in failures) or "not run"
            results[rel] = Report(rel, problems=[f"the browser could not start: {why}"])
    return results
