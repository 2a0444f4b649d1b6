"""The form's "advanced" part: the Invoke path and worker processes reach the run as run() takes
them (invoke_path=None | "lean" | "boto3", processes=N), driven with Button.click() against
`lambdakit local`."""

from __future__ import annotations

import re
from typing import Any

import pytest

import lambdakit
from lambdakit.errors import InvalidInput

ECHO = "def handler(event, context):\n    return [item['n'] * 2 for item in event['Items']]\n"
DEADLINE_S = 120.0


def run_params(form: Any) -> dict[str, Any]:
    """Click Run, wait for the run, and give what it recorded of its Invoke path."""
    form.run_button.click()
    result = form.wait(timeout=DEADLINE_S)
    assert form.state == "finished", form.message.value
    assert list(result.outputs()) == [n * 2 for n in range(6)]
    params = result.meta["params"]
    return {"invoke_path": params["invoke_path"], "processes": params["processes"]}


def test_the_advanced_part_chooses_the_invoke_path_and_processes(
    local_lambda: Any, make_function: Any
) -> None:
    name = make_function(ECHO)
    records = [{"n": n} for n in range(6)]
    form = lambdakit.form(
        records, endpoint_url=local_lambda.endpoint_url, function=name, batch_size=1, cache=False
    )
    # Tucked away, closed until opened; the defaults are run()'s own.
    assert form.advanced.selected_index is None
    assert form.advanced.titles == ("advanced",)
    assert form.invoke_path.label == "default (lean)"
    assert (form.run_kwargs()["invoke_path"], form.run_kwargs()["processes"]) == (None, 1)
    assert run_params(form) == {"invoke_path": "lean", "processes": 1}

    form.invoke_path.value = "boto3"
    assert form.run_kwargs()["invoke_path"] == "boto3"
    assert run_params(form) == {"invoke_path": "boto3", "processes": 1}

    form.invoke_path.value = "lean"
    form.processes.value = 2
    assert (form.run_kwargs()["invoke_path"], form.run_kwargs()["processes"]) == ("lean", 2)
    assert run_params(form) == {"invoke_path": "lean", "processes": 2}


def test_presets_and_a_combination_the_run_refuses(local_lambda: Any, make_function: Any) -> None:
    name = make_function(ECHO)
    endpoint = local_lambda.endpoint_url
    preset = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=name,
                            invoke_path="boto3", processes=1)  # fmt: skip
    assert preset.invoke_path.value == "boto3" and preset.processes.value == 1
    assert preset.run_kwargs()["invoke_path"] == "boto3"

    # Chosen in the widgets: start() refuses it, and the form shows the run's own words.
    form = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=name, cache=False)
    form.invoke_path.value = "boto3"
    form.processes.value = 2
    form.run_button.click()
    assert form.state == "failed"
    assert "processes= needs the lean path" in form.message.value
    assert not form.run_button.disabled and not form.processes.disabled

    # A running form's advanced inputs are locked like the others.
    form.processes.value = 1
    form._set_running(True)
    assert form.invoke_path.disabled and form.processes.disabled
    form._set_running(False)

    # A URL is not Invoke: the advanced part is hidden and nothing of it reaches the run.
    form.mode.value = "URL"
    assert form.advanced.layout.display == "none"
    form.url.value = "http://127.0.0.1:9/u"
    assert "invoke_path" not in form.run_kwargs() and "processes" not in form.run_kwargs()
    form.mode.value = "function"
    assert form.advanced.layout.display == ""


@pytest.mark.parametrize(
    ("presets", "message"),
    [
        ({"invoke_path": "fast"}, "invoke_path must be 'lean', 'boto3' or None, got 'fast'"),
        ({"processes": 0}, "processes must be between 1 and 64, got 0"),
        ({"processes": 1.5}, "processes must be a whole number"),
        ({"processes": 2, "invoke_path": "boto3"}, "processes= needs the lean path"),
        ({"processes": 2, "client": object()}, "processes= needs the lean path"),
        ({"url": "http://127.0.0.1:9/u", "invoke_path": "lean"}, "does not go with url="),
    ],
)
def test_bad_advanced_presets_raise_at_once(presets: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        lambdakit.form([1], endpoint_url="http://127.0.0.1:9", **presets)


def test_with_a_client_the_default_path_says_boto3(local_lambda: Any, lambda_client: Any) -> None:
    form = lambdakit.form([1], client=lambda_client)
    assert form.invoke_path.label == "default (boto3: client=)"
    assert form.run_kwargs()["invoke_path"] is None
