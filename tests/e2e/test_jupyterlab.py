"""The quickstart's form in JupyterLab, in headless Chromium: run to the end, and cancel.

The notebook (a copy of notebooks/01_quickstart.ipynb) starts its own `lambdakit local`,
deploys the examples and shows the form; the `quickstart` fixture runs all its cells.
Assertions look only at the form's widgets (CSS classes lambdakit-*), never at text that
also appears in a code cell. Screenshots of the key steps land in artifacts/e2e/; with
LAMBDAKIT_UPDATE_SCREENSHOTS=1 the finished form also becomes docs/img/quickstart.png.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from lab_page import FORM, REPO, NotebookPage
from playwright.sync_api import Locator, expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Deadlines (s): generous, because other test suites share the 2 cores.
RUN_S = 180.0
WIDGET_S = 60.0
RECORDS = 200  # the quickstart's dataset
# Assertions that need no deadline of their own still get a generous one (Playwright: 5 s).
expect.set_options(timeout=WIDGET_S * 1000)
BATCH_SIZE = 5
# A function slow enough that a run is still going when Cancel is clicked, deployed from an
# extra cell (not saved to disk) with the notebook's own endpoint.
SLOW_FUNCTION = "e2e-slow"
SLOW_CELL = f"""\
lambdakit.deploy(
    lambdakit.make_client(endpoint_url=endpoint_url),
    "{SLOW_FUNCTION}",
    "functions/slow_flaky",
    environment={{"SLEEP_MS": 1500}},
).function_name"""
README_IMAGE = REPO / "docs" / "img" / "quickstart.png"


def form(notebook: NotebookPage) -> Locator:
    """The live form: the only widget with the lambdakit-form class in an output."""
    located = notebook.page.locator(FORM)
    expect(located).to_have_count(1, timeout=WIDGET_S * 1000)
    return located


def part(notebook: NotebookPage, name: str) -> Locator:
    """One part of the form by its CSS class, e.g. part(nb, "run-button")."""
    return form(notebook).locator(f".lambdakit-{name}")


def set_batch_size(notebook: NotebookPage, value: int) -> None:
    """Type a batch size into the form's input, as a user does, and leave the field."""
    box = part(notebook, "batch-size").locator("input")
    box.click()
    box.press("Control+A")
    box.press_sequentially(str(value))
    # The value reaches the kernel on "change", i.e. when the field loses the focus.
    box.press("Tab")
    expect(box).to_have_value(str(value))


def wait_idle_form(notebook: NotebookPage) -> None:
    """Wait until no run is going on in the form (Run enabled, Cancel disabled)."""
    expect(part(notebook, "run-button")).to_be_enabled(timeout=RUN_S * 1000)
    expect(part(notebook, "cancel-button")).to_be_disabled(timeout=WIDGET_S * 1000)


def records_done(notebook: NotebookPage) -> int:
    """The number of records done, as the dashboard's "<done> / <total> (<share>)" says."""
    text = part(notebook, "records-text").inner_text()
    match = re.match(r"\s*([\d,]+) / ([\d,]+)", text)
    assert match, f"unexpected records counter {text!r}"
    assert int(match.group(2).replace(",", "")) == RECORDS, text
    return int(match.group(1).replace(",", ""))


def assert_clean(notebook: NotebookPage) -> None:
    """No error output and no traceback anywhere in the notebook."""
    problems = notebook.problems()
    assert not problems, "errors in the notebook:\n" + "\n".join(problems)


def test_run_from_the_form(quickstart: NotebookPage) -> None:
    """Choose the function, type a batch size, click Run: 100%, summary card, figure."""
    notebook = quickstart
    wait_idle_form(notebook)
    expect(part(notebook, "status code")).to_have_text("idle")
    part(notebook, "function").locator("select").select_option("batch-processor")
    expect(part(notebook, "qualifier").locator("select")).to_have_value("$LATEST")
    set_batch_size(notebook, BATCH_SIZE)
    notebook.screenshot("03-form-ready", form(notebook))

    part(notebook, "run-button").click()
    expect(part(notebook, "status code")).not_to_have_text("idle", timeout=WIDGET_S * 1000)
    expect(part(notebook, "dashboard")).to_be_visible(timeout=WIDGET_S * 1000)
    notebook.screenshot("04-running", form(notebook))

    # Every 50th record of the dataset is invalid: the run finished, but not all green.
    expect(part(notebook, "status code")).to_have_text(
        "finished with failures", timeout=RUN_S * 1000
    )
    bar = part(notebook, "records-bar").locator(".progress-bar")
    expect(bar).to_have_attribute("style", re.compile(r"width:\s*100%"))
    expect(part(notebook, "records-text")).to_have_text(f"{RECORDS} / {RECORDS} (100%)")
    # The batch size typed in the browser is the one the run used.
    batches = RECORDS // BATCH_SIZE
    # The source's length is known, so batches measure against their exact total.
    expect(part(notebook, "batches-text")).to_have_text(f"{batches} / {batches} (100%)")
    card = part(notebook, "summary").locator(".lambdakit-run")
    expect(card).to_be_visible(timeout=WIDGET_S * 1000)
    # Every 50th record of the dataset is invalid: 4 fail, and the card says so.
    expect(card).to_contain_text(re.compile(rf"{RECORDS}\s*·\s*failed 4\b"))
    expect(card).to_contain_text(re.compile(rf"{batches}\s*·\s*ok"))
    figure = part(notebook, "figure")
    expect(figure).to_be_visible(timeout=WIDGET_S * 1000)
    # A decoded PNG, not a broken-image icon.
    notebook.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 200",
        arg=figure.element_handle(),
        timeout=WIDGET_S * 1000,
    )
    expect(part(notebook, "run-button")).to_be_enabled()
    expect(part(notebook, "cancel-button")).to_be_disabled()
    assert_clean(notebook)

    shot = notebook.screenshot("05-finished", form(notebook))
    if os.environ.get("LAMBDAKIT_UPDATE_SCREENSHOTS") == "1":
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_IMAGE)


def test_cancel_during_a_long_run(quickstart: NotebookPage) -> None:
    """Cancel stops a long run part way; the form shows the partial summary."""
    notebook = quickstart
    notebook.append_cell(SLOW_CELL)
    notebook.run_last_cell(timeout_s=RUN_S)
    assert_clean(notebook)
    wait_idle_form(notebook)
    # The form listed the functions when it was built: Refresh finds the new one.
    part(notebook, "refresh-button").click()
    select = part(notebook, "function").locator("select")
    expect(select.locator(f'option[value="{SLOW_FUNCTION}"]')).to_have_count(
        1, timeout=WIDGET_S * 1000
    )
    select.select_option(SLOW_FUNCTION)
    set_batch_size(notebook, 1)

    part(notebook, "run-button").click()
    expect(part(notebook, "status code")).to_have_text("running", timeout=WIDGET_S * 1000)
    # Cancel once some batches are done, so that there is a partial result to show.
    expect(part(notebook, "records-text")).to_have_text(
        re.compile(r"^\s*[1-9][\d,]* / "), timeout=RUN_S * 1000
    )
    expect(part(notebook, "cancel-button")).to_be_enabled()
    part(notebook, "cancel-button").click()
    notebook.screenshot("06-cancel-clicked", form(notebook))

    expect(part(notebook, "status code")).to_have_text("cancelled", timeout=RUN_S * 1000)
    wait_idle_form(notebook)
    done = records_done(notebook)
    assert 0 < done < RECORDS, f"{done} records done: the run was not stopped part way"
    # Batch size 1, as typed: as many batches done as records.
    expect(part(notebook, "batches-text")).to_have_text(
        re.compile(rf"^{done} / {RECORDS} \(\d+%\)$")
    )
    card = part(notebook, "summary").locator(".lambdakit-run")
    expect(card).to_be_visible(timeout=WIDGET_S * 1000)
    expect(card).to_contain_text(SLOW_FUNCTION)
    ok_batches = re.search(r"·\s*ok ([\d,]+)", card.inner_text())
    assert ok_batches, card.inner_text()
    assert 0 < int(ok_batches.group(1).replace(",", "")) < RECORDS, card.inner_text()
    expect(part(notebook, "figure")).to_be_visible(timeout=WIDGET_S * 1000)
    # The bars turn to the "warning" colour when a run was cancelled.
    bar = part(notebook, "records-bar").locator(".progress-bar")
    expect(bar).to_have_class(re.compile(r"\bprogress-bar-warning\b"))
    assert_clean(notebook)
    notebook.screenshot("07-cancelled", form(notebook))
