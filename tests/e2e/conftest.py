"""Fixtures for the browser tests: JupyterLab on a copy of the quickstart, and Chromium.

- `lab` (module): a LabServer (lab_server.py) whose root is a temporary folder holding a
  copy of notebooks/01_quickstart.ipynb (outputs and saved widget state removed) and of
  notebooks/functions/, so the repository is never written to.
- `browser` (module): headless Debian Chromium driven by Playwright.
- `quickstart` (module): a NotebookPage (lab_page.py) with the quickstart open and all of
  its cells run; setup fails, with a screenshot, if any cell printed a traceback.
- Screenshots go to artifacts/e2e/ (emptied of old PNGs first). After each failed test
  that used `quickstart`, the page as it was is saved as FAILED-<test>.png, and with the
  form's cell in view as FAILED-<test>-form.png; a failed setup leaves FAILED-setup.png.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from lab_page import ARTIFACTS, FORM, REPO, VIEWPORT, NotebookPage, launch_chromium
from lab_server import LabServer
from playwright.sync_api import Browser, sync_playwright

QUICKSTART = "01_quickstart.ipynb"
# Starting the local service, deploying two functions and two headless runs, on a slow
# shared machine.
RUN_ALL_S = 300.0


def copy_quickstart(root: Path) -> Path:
    """Copy the quickstart (without outputs) and the example functions into `root`."""
    notebook = nbformat.read(REPO / "notebooks" / QUICKSTART, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    # Saved widget state would render the committed form next to the live one.
    notebook.metadata.pop("widgets", None)
    target = root / QUICKSTART
    nbformat.write(notebook, target)
    shutil.copytree(
        REPO / "notebooks" / "functions",
        root / "functions",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"),
    )
    return target


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the item, for the failure screenshot."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab serving a temporary copy of the quickstart."""
    root = tmp_path_factory.mktemp("lab-root")
    copy_quickstart(root)
    server = LabServer(root, tmp_path_factory.mktemp("lab-state"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's), closed after the module whatever happened."""
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def quickstart(lab: LabServer, browser: Browser) -> Iterator[NotebookPage]:
    """The quickstart open in JupyterLab with every cell run."""
    # Screenshots of an earlier run would pass for this one's.
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(60_000)  # clicks and fills on a busy machine
    try:
        notebook = NotebookPage(context.new_page(), ARTIFACTS)
        try:
            notebook.open(lab.url(f"lab/tree/{QUICKSTART}"))
            notebook.screenshot("01-opened")
            notebook.run_all(timeout_s=RUN_ALL_S)
            notebook.screenshot("02-ran-all-cells")
            problems = notebook.problems()
            assert not problems, "the quickstart printed errors:\n" + "\n".join(problems)
        except BaseException:
            with contextlib.suppress(Exception):
                notebook.show_first_problem()
            _screenshot_quietly(notebook, "FAILED-setup")
            print(f"JupyterLab log tail:\n{lab.log_tail()}")
            raise
        yield notebook
    finally:
        context.close()


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test, save what the page showed."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "quickstart" in request.fixturenames:
        notebook = request.getfixturevalue("quickstart")
        _screenshot_quietly(notebook, f"FAILED-{request.node.name}")


def _screenshot_quietly(notebook: NotebookPage, name: str) -> None:
    # A screenshot must not replace the failure that it documents.
    try:
        print(f"screenshot: {notebook.screenshot(name)}")
        form = notebook.page.locator(FORM)
        if form.count():
            print(f"screenshot: {notebook.screenshot(name + '-form', form.last)}")
    except Exception as exc:
        print(f"no screenshot {name}: {exc}")
