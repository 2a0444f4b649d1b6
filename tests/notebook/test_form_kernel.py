"""The form in a real kernel (nbclient): a run's output never lands in other cells.

ipykernel >= 7.1 sends output from threads to the most recently executed cell, so anything
the run or the dashboard printed, logged or displayed outside the form's own widgets would
show up in the cells that run meanwhile.
"""

import json

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

# Items from `hold_from` on wait for a gate file, so cells 2 and 3 run while the run is
# demonstrably in progress; item 5 fails, to exercise the error panel too.
HANDLER = """
import os, time

def handler(event, context):
    for item in event['Items']:
        if item['n'] == 5:
            print('failing on purpose')
            raise ValueError('record 5 is bad')
        if item['n'] >= item['hold_from']:
            while not os.path.exists(item['gate']):
                time.sleep(0.01)
    return [item['n'] for item in event['Items']]
"""


def _cells(endpoint: str, function: str, gate: str) -> list[str]:
    setup = f"""
import lambdakit
records = [{{"n": n, "hold_from": 4, "gate": {gate!r}}} for n in range(10)]
f = lambdakit.form(records, endpoint_url={endpoint!r}, function={function!r},
                   batch_size=1, concurrency=2, max_attempts=1, cache=False)
f.run_button.click()
f
"""
    # Each of cells 2 and 3 waits for the dashboard thread to refresh while it runs: the
    # bars in cell 2, the live figure (rendered every ~2 s) in cell 3.
    during = """
import time
deadline = time.monotonic() + 60
while f.dashboard.records_bar.value < 4 and time.monotonic() < deadline:
    time.sleep(0.01)
assert f.state == "running", f.state
print("cell two")
"""
    release = f"""
while f.dashboard.live_figure.layout.display == "none" and time.monotonic() < deadline:
    time.sleep(0.01)
assert f.state == "running", f.state
print("cell three")
open({gate!r}, "w").close()
"""
    wait = """
result = f.wait(timeout=60)
print(result.summary()["records"], result.summary()["failed_records"], f.state)
print(len(f.output.outputs))
"""
    return [setup, during, release, wait]


def test_run_output_stays_out_of_other_cells(local_lambda, make_function, tmp_path):
    function = make_function(HANDLER, Timeout=120)
    gate = str(tmp_path / "gate")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source)
        for source in _cells(local_lambda.endpoint_url, function, gate)
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    outputs = [cell.outputs for cell in notebook.cells]
    form_outputs = outputs[0]
    assert len(form_outputs) == 1, form_outputs
    data = form_outputs[0]["data"]
    assert form_outputs[0]["output_type"] == "execute_result"
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"] == (
        f"Form(function={function!r}, qualifier='$LATEST', state='running')"
    )
    assert _texts(outputs[1]) == ["cell two\n"]
    assert _texts(outputs[2]) == ["cell three\n"]
    # 10 records, 1 failed, the form shows the end of the run; nothing went to its Output.
    assert _texts(outputs[3]) == ["10 1 finished with failures\n0\n"]


def _texts(cell_outputs: list) -> list[str]:
    """Every output of a cell as text; anything other than stdout fails the comparison."""
    texts = []
    for output in cell_outputs:
        if output["output_type"] == "stream" and output["name"] == "stdout":
            texts.append(output["text"])
        else:
            texts.append(json.dumps(output, default=str))
    return ["".join(texts)] if texts else []
