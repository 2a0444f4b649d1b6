"""Playwright helpers for a notebook open in JupyterLab: open, run all, wait, inspect, shoot.

Waits are deadlines on conditions the page itself reports (the kernel's execution
indicator, the notebook model, widget elements), never fixed sleeps. Times are in seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, Playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "FORM",
    "REPO",
    "VIEWPORT",
    "NotebookPage",
    "launch_chromium",
]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "e2e"  # gitignored
# lambdakit's form as rendered in an output (widgets.py gives it this class).
FORM = ".jp-OutputArea-output .lambdakit-form"

# Debian's Chromium: Playwright cannot download its own browser here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1100}

# True once the notebook's kernel is idle, no cell waits to run, and the run either went
# through every code cell or stopped at an error (JupyterLab then drops the queued cells).
_RUN_ALL_DONE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const indicator = panel.node.querySelector('.jp-Notebook-ExecutionIndicator');
  if (!indicator || indicator.dataset.status !== 'idle') return false;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel || kernel.status !== 'idle') return false;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  if (cells.some(c => c.promptNode && c.promptNode.textContent.includes('*'))) return false;
  const failed = cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  return failed || cells.every(c => c.model.executionCount !== null);
}"""

# Error outputs anywhere in the notebook model, as "ename: evalue" (cell index first).
_ERROR_OUTPUTS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const found = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    for (const output of cell.model.outputs.toJSON()) {
      if (output.output_type === 'error') {
        found.push(`cell ${index}: ${output.ename}: ${output.evalue}`);
      }
    }
  });
  return found;
}"""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from Debian, with the flags that make it work in a container."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: the browser test drives Debian's Chromium "
            "(make chromium installs it as root; else apt-get install chromium)"
        )
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


class NotebookPage:
    """One browser page showing one notebook in JupyterLab."""

    def __init__(self, page: Page, artifacts: Path) -> None:
        self.page = page
        self.artifacts = artifacts
        self.artifacts.mkdir(parents=True, exist_ok=True)

    def open(self, url: str, timeout_s: float = 120.0) -> None:
        """Load JupyterLab at `url` (a lab/tree/<notebook> URL) and wait for a ready kernel."""
        self.page.goto(url, timeout=timeout_s * 1000)
        self.page.wait_for_function(
            """() => {
              const app = window.jupyterapp;
              const panel = app && app.shell.currentWidget;
              return !!(panel && panel.sessionContext && panel.context && panel.context.isReady);
            }""",
            timeout=timeout_s * 1000,
        )
        try:
            self.page.wait_for_function(
                """() => {
                  const session = window.jupyterapp.shell.currentWidget.sessionContext;
                  return session.isReady && !!(session.session && session.session.kernel);
                }""",
                timeout=timeout_s * 1000,
            )
        except PlaywrightTimeoutError:
            # e.g. no usable kernelspec: JupyterLab asks for a kernel and waits for an answer.
            self.fail_on_dialog()
            raise
        self.fail_on_dialog()
        self.page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); }")
        self.wait_idle(timeout_s)

    def fail_on_dialog(self) -> None:
        """Raise (naming the dialog) if JupyterLab shows a modal dialog, which blocks clicks."""
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count():
            text = dialog.first.inner_text()
            raise AssertionError(f"JupyterLab shows a dialog: {text!r}")

    def wait_idle(self, timeout_s: float) -> None:
        """Wait until the notebook's execution indicator says idle."""
        self.page.wait_for_selector(
            '.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]',
            timeout=timeout_s * 1000,
        )

    def run_all(self, timeout_s: float) -> None:
        """Run all cells (as Run > Run All Cells does) and wait until the run is over."""
        self.page.evaluate(
            "() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
        )
        # The indicator leaves idle once the first cell is sent; before that, idle means nothing.
        self.page.wait_for_function(
            """() => {
              const panel = window.jupyterapp.shell.currentWidget;
              return panel.content.widgets.some(c => c.model.type === 'code' &&
                (c.model.executionCount !== null || c.promptNode.textContent.includes('*')));
            }""",
            timeout=timeout_s * 1000,
        )
        self.page.wait_for_function(_RUN_ALL_DONE, timeout=timeout_s * 1000, polling=250)

    def append_cell(self, source: str) -> None:
        """Append a code cell at the end of the notebook (the file on disk is not saved)."""
        self.page.evaluate(
            """(source) => {
              const notebook = window.jupyterapp.shell.currentWidget.content;
              notebook.model.sharedModel.insertCell(notebook.model.cells.length,
                {cell_type: 'code', source: source});
            }""",
            source,
        )

    def run_last_cell(self, timeout_s: float) -> None:
        """Run the notebook's last cell and wait until the kernel is idle again."""
        count = self.page.evaluate(
            """() => {
              const panel = window.jupyterapp.shell.currentWidget;
              panel.content.activeCellIndex = panel.content.widgets.length - 1;
              void window.jupyterapp.commands.execute('notebook:run-cell');
              return panel.content.widgets.length;
            }"""
        )
        self.page.wait_for_function(
            f"""() => {{
              const panel = window.jupyterapp.shell.currentWidget;
              const cell = panel.content.widgets[{count - 1}];
              const kernel = panel.sessionContext.session.kernel;
              return cell.model.executionCount !== null && kernel.status === 'idle' &&
                !cell.promptNode.textContent.includes('*');
            }}""",
            timeout=timeout_s * 1000,
            polling=250,
        )

    def problems(self) -> list[str]:
        """Error outputs and tracebacks printed to stderr anywhere in the notebook."""
        found: list[str] = list(self.page.evaluate(_ERROR_OUTPUTS))
        stderr = self.page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
        )
        for index in range(stderr.count()):
            text = _ANSI.sub("", stderr.nth(index).inner_text())
            if "Traceback" in text:
                found.append(f"stderr: {text[-2_000:]}")
        return found

    def show_first_problem(self) -> None:
        """Scroll the first error output or traceback into view (for a failure screenshot)."""
        self.page.evaluate(
            """() => {
              const outputs = document.querySelectorAll(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
              const first = Array.from(outputs).find(o => o.textContent.includes('Traceback'));
              if (first) first.scrollIntoView({block: 'center'});
            }"""
        )

    def screenshot(self, name: str, target: Locator | None = None) -> Path:
        """Save a PNG of the page to the artefacts folder; return its path.

        With a `target` element, its notebook cell is scrolled to the top and the window
        grows as needed to show the whole cell: JupyterLab around it, nothing cut off.
        """
        path = self.artifacts / f"{name}.png"
        if target is None:
            self.page.screenshot(path=str(path))
            return path
        viewport = self.page.viewport_size or VIEWPORT
        # The notebook's scroll area is the window minus JupyterLab's bars around it.
        needed = target.evaluate(
            """(element) => {
              const cell = element.closest('.jp-Cell') || element;
              const scroller = element.closest('.jp-WindowedPanel-outer') ||
                document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
              const chrome = window.innerHeight - scroller.clientHeight;
              return Math.ceil(cell.getBoundingClientRect().height + chrome + 24);
            }"""
        )
        if needed > viewport["height"]:
            self.page.set_viewport_size({"width": viewport["width"], "height": needed})
        try:
            target.evaluate("e => (e.closest('.jp-Cell') || e).scrollIntoView({block: 'start'})")
            self.page.screenshot(path=str(path), timeout=30_000)
        finally:
            self.page.set_viewport_size(viewport)
        return path
