"""The form's URL mode, driven with Button.click(): a job through a lambdakit local function URL."""

from __future__ import annotations

import json
from typing import Any

import lambdakit
from lambdakit.aws.function_urls import create_function_url

URL_ECHO = """
import json

def handler(event, context):
    items = json.loads(event["body"])["Items"]
    return [{"n": item["n"] * 2, "key": event["headers"].get("x-api-key")} for item in items]
"""


def test_url_mode_runs_a_job_with_a_click(
    local_lambda: Any, lambda_client: Any, make_function: Any
) -> None:
    name = make_function(URL_ECHO)
    url = create_function_url(lambda_client, name, "NONE")
    records = [{"n": n} for n in range(7)]
    form = lambdakit.form(
        records, endpoint_url=local_lambda.endpoint_url, cache=False, batch_size=3
    )
    assert form.mode.value == "function"
    form.mode.value = "URL"
    assert form.targets.widget.layout.display == "none" and form.urls.widget.layout.display == ""
    form.url.value = url + "?token=QUERY-SECRET"
    _, value_box = form.urls.add_header("x-api-key", "HEADER-SECRET")
    assert type(value_box).__name__ == "Password"  # shown masked in the browser

    form.run_button.click()
    result = form.wait(timeout=120)

    assert form.state == "finished", form.message.value
    assert [o["n"] for o in result.outputs()] == [n * 2 for n in range(7)]
    assert {o["key"] for o in result.outputs()} == {"HEADER-SECRET"}
    assert result.meta["params"]["url"] == url and result.meta["params"]["headers"] == ["x-api-key"]
    assert "SECRET" not in repr(form) and "SECRET" not in json.dumps(result.meta, default=str)
    assert repr(form) == f"Form(url={url!r}, state='finished')"


def test_url_mode_refuses_a_missing_url_and_a_nameless_header(local_lambda: Any) -> None:
    form = lambdakit.form([{"n": 1}], url="not a url", endpoint_url=local_lambda.endpoint_url)
    assert form.mode.value == "URL"
    form.urls.add_header("", "value")
    form.run_button.click()
    assert form.state == "idle" and form.handle is None
    assert "Enter the URL" in form.message.value and "no name" in form.message.value
