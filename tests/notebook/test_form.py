"""The notebook form, driven without a browser: Button.click() and value changes, real boto3
against `lambdakit local`."""

import json
import logging
import re
import socket
import time

import pytest

import lambdakit
from lambdakit.engine.progress import ProgressEvent
from lambdakit.errors import InvalidInput
from lambdakit.notebook.dashboard import RunLogCapture

ECHO = "def handler(event, context):\n    return [item['n'] * 2 for item in event['Items']]\n"

# Items wait for a gate file before answering, so a test decides when the run may finish
# without any timing assumption. `hold_from` items (by n) are gated; earlier ones are not.
GATED = """
import os, time

def handler(event, context):
    for item in event['Items']:
        if item['n'] >= item['hold_from']:
            open(item['gate'] + '.%d' % item['n'], 'w').close()  # this item is running
            while not os.path.exists(item['gate']):
                time.sleep(0.01)
    return [item['n'] for item in event['Items']]
"""

FAILING = """
def handler(event, context):
    for item in event['Items']:
        if item['n'] % 4 == 3:
            print('about to fail on', item['n'])
            raise ValueError('bad record %d' % item['n'])
    return [item['n'] for item in event['Items']]
"""

DEADLINE_S = 60.0


def poll(condition, what):
    """Wait for `condition()` to be true, failing after a generous deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def counters(form):
    """The dashboard's counters table as {name: value}."""
    html = form.dashboard.counters.value
    names = re.findall(r"<th[^>]*>(\w+)</th>", html)
    values = [int(v.replace(",", "")) for v in re.findall(r"<td[^>]*>([\d,]+)</td>", html)]
    return dict(zip(names, values, strict=True))


@pytest.fixture
def endpoint(local_lambda):
    return local_lambda.endpoint_url


def test_import_exports_form():
    assert lambdakit.form.__module__ == "lambdakit.notebook.form"
    assert issubclass(lambdakit.Form, __import__("ipywidgets").VBox)


def publish_two_versions(lambda_client, zip_code, wait_updated, name):
    lambda_client.publish_version(FunctionName=name)
    lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(ECHO + "# v2\n"))
    wait_updated(name)
    lambda_client.publish_version(FunctionName=name)


def test_dropdowns_list_functions_aliases_and_versions(
    endpoint, lambda_client, make_function, zip_code, wait_updated
):
    plain = make_function(ECHO)
    aliased = make_function(ECHO)
    publish_two_versions(lambda_client, zip_code, wait_updated, aliased)
    lambda_client.create_alias(FunctionName=aliased, Name="live", FunctionVersion="1")

    form = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=aliased, cache=False)

    assert {plain, aliased} <= set(form.function.options)
    assert form.function.value == aliased
    assert list(form.qualifier.options) == [
        ("$LATEST", "$LATEST"),
        ("live → 1", "live"),
        ("version 1", "1"),
        ("version 2", "2"),
    ]
    assert form.qualifier.value == "$LATEST"

    form.qualifier.value = "live"
    form.function.value = plain  # its qualifiers replace the others'
    assert list(form.qualifier.options) == [("$LATEST", "$LATEST")]
    assert form.qualifier.value == "$LATEST"

    later = make_function(ECHO)
    assert later not in form.function.options
    form.refresh_button.click()
    assert later in form.function.options
    assert form.function.value == plain  # the choice survives a refresh
    assert repr(form) == f"Form(function={plain!r}, qualifier='$LATEST', state='idle')"

    lambda_client.delete_function(FunctionName=plain)
    form.refresh_button.click()
    assert plain not in form.function.options
    assert form.function.value == form.function.options[0]
    assert form.validate() == []


def test_weighted_alias_label(endpoint, lambda_client, make_function, zip_code, wait_updated):
    name = make_function(ECHO)
    publish_two_versions(lambda_client, zip_code, wait_updated, name)
    lambda_client.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}},
    )
    form = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=name, qualifier="canary")
    assert form.qualifier.value == "canary"
    assert form.qualifier.label == "canary → 1 (75%), 2 (25%)"

    # "name:qualifier" and ARNs select the listed function, as lambdakit.run accepts them.
    arn = lambda_client.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    for ref in (f"{name}:canary", f"{arn}:canary"):
        form = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=ref)
        assert (form.function.value, form.qualifier.value) == (name, "canary")
        assert form.validate() == []


def test_run_click_returns_while_the_run_goes_on(endpoint, make_function, tmp_path):
    name = make_function(GATED, Timeout=120)
    gate = tmp_path / "gate"
    records = [{"n": n, "hold_from": 0, "gate": str(gate)} for n in range(6)]
    form = lambdakit.form(
        records, endpoint_url=endpoint, function=name, batch_size=2, concurrency=2, cache=False
    )

    form.run_button.click()

    # Every batch waits for the gate, so the click cannot have waited for the run.
    assert form.state == "running"
    assert form.handle is not None and not form.handle.done
    assert form.run_button.disabled and form.batch_size.disabled and form.function.disabled
    assert not form.cancel_button.disabled
    assert form.dashboard.widget.layout.display == ""
    gate.touch()
    result = form.wait(timeout=DEADLINE_S)

    assert result is form.result
    assert list(result.outputs()) == list(range(6))
    assert result.summary()["records"] == 6
    assert form.state == "finished"
    assert not form.run_button.disabled and not form.batch_size.disabled
    assert form.cancel_button.disabled
    # The end of the run shows the summary card, the dashboard figure and final counters.
    assert form.summary.value == result._repr_html_()
    assert bytes(form.figure.value).startswith(b"\x89PNG")
    assert form.dashboard.records_bar.value == 6
    assert form.dashboard.records_bar.bar_style == "success"
    assert "failed records 0 of 6 (0%)" in form.dashboard.headline.value
    assert "#b00020" not in form.dashboard.headline.value + form.status.value
    assert counters(form) == {
        "ok": 6, "failed": 0, "retried": 0, "throttled": 0, "cached": 0, "rejected": 0
    }  # fmt: skip
    assert form.output.outputs == ()


def test_cancel_stops_shows_the_partial_result_and_a_rerun_resumes(
    endpoint, make_function, tmp_path
):
    name = make_function(GATED, Timeout=120)
    gate = tmp_path / "gate"
    records = [{"n": n, "hold_from": 3, "gate": str(gate)} for n in range(20)]
    form = lambdakit.form(
        records,
        endpoint_url=endpoint,
        function=name,
        batch_size=1,
        concurrency=1,
        cache=str(tmp_path / "cache"),
    )
    form.run_button.click()
    poll(lambda: form.handle.progress.batches_done >= 3, "three batches done")

    form.cancel_button.click()
    assert form.state == "cancelling" and form.cancel_button.disabled
    gate.touch()  # lets the in-flight batch end within the grace period
    partial = form.wait(timeout=DEADLINE_S)

    assert form.state == "cancelled"
    assert partial.meta["cancelled"]
    done = int((partial.batches["status"] == "ok").sum())
    assert 3 <= done < 20
    outputs = list(partial.outputs())
    assert outputs[:3] == [0, 1, 2] and outputs[-1] is None
    assert form.summary.value == partial._repr_html_()
    assert form.dashboard.records_bar.bar_style == "warning"
    assert not form.run_button.disabled

    # Run again: the completed batches come from the cache, only the rest is invoked.
    form.run_button.click()
    full = form.wait(timeout=DEADLINE_S)
    assert form.state == "finished"
    assert full.summary()["cached_batches"] == done
    assert full.summary()["invocations"] == 20 - done
    assert list(full.outputs()) == list(range(20))


def test_library_warnings_during_a_run_go_to_the_form(endpoint, make_function, tmp_path):
    name = make_function(GATED, Timeout=120)
    gate = tmp_path / "gate"
    records = [{"n": n, "hold_from": 0, "gate": str(gate)} for n in range(4)]
    form = lambdakit.form(
        records,
        endpoint_url=endpoint,
        function=name,
        batch_size=1,
        concurrency=1,
        grace_s=0,  # cancelling leaves the gated invocation running: the runner warns
        cache=False,
    )
    form.run_button.click()
    # Running in the function, not just handed to a worker: cancelling before it is sent
    # leaves nothing running past the grace, and nothing to warn about.
    poll(lambda: (tmp_path / "gate.0").exists(), "the first invocation running")
    form.cancel_button.click()

    def warned():
        texts = [o["text"] for o in form.output.outputs if o["name"] == "stderr"]
        return any("still running after the grace period" in t for t in texts)

    poll(warned, "the runner's warning in the form")
    gate.touch()  # the run then ends once the invocation returns
    form.wait(timeout=DEADLINE_S)
    # Captured only while the run goes on.
    assert not any(isinstance(h, RunLogCapture) for h in logging.getLogger("lambdakit").handlers)


def test_extra_keywords_reach_the_run_and_a_failed_run_is_shown(endpoint, make_function):
    name = make_function(FAILING)
    form = lambdakit.form(
        [{"n": n} for n in range(40)],
        endpoint_url=endpoint,
        function=name,
        batch_size=1,
        concurrency=1,
        max_attempts=1,
        tolerated_failure=0,
        cache=False,
    )
    assert form.run_kwargs()["tolerated_failure"] == 0
    form.run_button.click()
    with pytest.raises(lambdakit.ToleranceExceeded) as raised:
        form.wait(timeout=DEADLINE_S)

    assert form.state == "failed"
    assert form.result is raised.value.result  # the partial result is kept and shown
    assert form.summary.value == form.result._repr_html_()
    assert "tolerated_failure" in form.message.value
    assert "ToleranceExceeded" in form.output.outputs[-1]["text"]
    assert form.dashboard.records_bar.bar_style == "danger"
    assert not form.run_button.disabled


def test_failures_appear_in_the_error_panel_and_live_figure(endpoint, make_function):
    name = make_function(FAILING)
    records = [{"n": n} for n in range(8)]
    form = lambdakit.form(
        records, endpoint_url=endpoint, function=name, batch_size=1, max_attempts=1, cache=False
    )
    form.run_button.click()
    result = form.wait(timeout=DEADLINE_S)

    assert result.summary()["failed_records"] == 2
    # Records failed: the form says so in the error colour, never all green.
    assert form.state == "finished with failures"
    assert "finished with failures" in form.status.value and "#b00020" in form.status.value
    board = form.dashboard
    assert board.records_bar.bar_style == board.batches_bar.bar_style == "danger"
    assert repr(form).endswith("state='finished with failures')")
    # The headline is the run's own once it ended: failed records / records.
    assert "failed records 2 of 8 (25.0%)" in board.headline.value
    assert "#b00020" in board.headline.value
    assert "failed records</th><td><span" in form.summary.value
    panel = form.dashboard.errors.value
    assert "Recent failed batches" in panel
    assert panel.count("<tr>") == 1 + 2  # header + the two failed batches
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in panel.split("<tr>")[2:]]
    rows.sort(key=lambda row: int(row[0]))  # newest first; batches finish in any order
    assert [row[:3] for row in rows] == [
        ["3", "failed", "ValueError"],
        ["7", "failed", "ValueError"],
    ]
    assert rows[1][3].startswith("bad record 7")
    assert "about to fail on 7" in rows[1][3]  # the log tail
    assert counters(form)["ok"] == 6 and counters(form)["failed"] == 2
    live = form.dashboard.live
    assert len(live.attempts) == len(result.attempts) == 8
    assert sorted(a["batch"] for a in live.attempts) == list(range(8))
    form.dashboard.show_figure(live)
    assert bytes(form.dashboard.live_figure.value).startswith(b"\x89PNG")


def test_live_run_keeps_failed_batches_with_their_log_tail():
    from lambdakit.engine.progress import Progress
    from lambdakit.notebook.dashboard import LiveRun

    live = LiveRun()
    snapshot = Progress()
    live.add(
        ProgressEvent(
            "attempt", 1.5, snapshot, batch=4, attempt=1, records=10, outcome="function_error",
            latency_s=0.5, error_type="ValueError", error_message="boom", log_tail="trace",
        )
    )  # fmt: skip
    live.add(
        ProgressEvent(
            "batch", 1.5, snapshot, batch=4, records=10, outcome="failed",
            error_type="ValueError", error_message="boom", log_tail="trace",
        )
    )  # fmt: skip
    assert live.attempts[0]["start_s"] == pytest.approx(1.0)
    assert list(live.failed_batches) == [
        {
            "batch": 4,
            "status": "failed",
            "error_type": "ValueError",
            "error_message": "boom",
            "log_tail": "trace",
        }
    ]
    assert list(live.batches) == [{"batch": 4, "records": 10, "failed_records": 0}]
    for elapsed, done in ((0.0, 0), (1.0, 50), (2.0, 150)):
        live.note_progress(Progress(records_done=done, elapsed_s=elapsed))
    assert live.records_per_s() == pytest.approx(75.0)


def test_once_a_run_ends_the_dashboard_shows_its_overall_rates():
    from factories import make_run

    from lambdakit.engine.progress import Progress
    from lambdakit.notebook.dashboard import Dashboard, LiveRun

    board = Dashboard(report_error=lambda exc, where="": None)
    live = LiveRun()
    # The last few seconds of a run that slowed down at its end: 10 records/s lately.
    for elapsed, done in ((10.0, 160), (11.0, 170), (12.0, 180)):
        live.note_progress(Progress(records_done=done, elapsed_s=elapsed))
    running = Progress(records_done=180, failed_records=3, elapsed_s=12.0)
    board.show(running, live)
    assert "throughput 10.0 records/s" in board.rates.value
    assert "failed records 3 of 180 (1.7%) so far" in board.headline.value

    result = make_run(records=200, scripts={0: ["function_error"]}, meta={"elapsed_s": 16.0})
    live.result = result
    board.show(Progress(state="finished", records_done=200, failed_records=10, elapsed_s=16.0),
               live)  # fmt: skip
    s = result.summary()
    assert s["records_per_s"] == pytest.approx(12.5)
    assert "throughput 12.5 records/s" in board.rates.value  # the run's, not the last 5 s
    assert "failed records 10 of 200 (5.0%)" in board.headline.value
    assert "so far" not in board.headline.value


def test_invalid_inputs_are_refused_with_a_message(endpoint, make_function, tmp_path):
    name = make_function(ECHO)
    form = lambdakit.form(endpoint_url=endpoint, function=name)

    form.run_button.click()
    assert "Enter the path of the dataset" in form.message.value
    assert form.state == "idle" and form.handle is None

    form.path.value = str(tmp_path / "missing.jsonl")
    assert "File not found" in form.preview.value
    form.run_button.click()
    assert "File not found" in form.message.value

    (tmp_path / "data.txt").write_text("x")
    form.path.value = str(tmp_path / "data.txt")
    form.run_button.click()
    assert "Unsupported file type" in form.message.value
    assert form.handle is None
    with pytest.raises(InvalidInput, match="No run was started"):
        form.wait()

    ghost = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function="no-such-function")
    ghost.run_button.click()
    assert "was not found at this endpoint" in ghost.message.value
    assert ghost.handle is None

    wrong = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=name, qualifier="beta")
    assert wrong.qualifier.label == "beta (not found)"
    wrong.run_button.click()
    assert "has no alias or version 'beta'" in wrong.message.value


def test_bad_presets_raise_at_once(endpoint):
    with pytest.raises(InvalidInput, match="batch_size must be between 1 and 100000"):
        lambdakit.form([1], endpoint_url=endpoint, batch_size=0)
    with pytest.raises(InvalidInput, match="concurrency must be a whole number"):
        lambdakit.form([1], endpoint_url=endpoint, concurrency=2.5)
    with pytest.raises(InvalidInput, match="does not accept colour"):
        lambdakit.form([1], endpoint_url=endpoint, colour="red")
    with pytest.raises(InvalidInput, match="outputs must be one of 'per_record', 'per_batch'"):
        lambdakit.form([1], endpoint_url=endpoint, outputs="batch")


def test_the_replies_dropdown_says_how_the_run_reads_replies(endpoint, make_function):
    name = make_function("def handler(event, context):\n    return {'n': len(event['Items'])}\n")
    form = lambdakit.form([1, 2, 3], endpoint_url=endpoint, function=name, max_attempts=1,
                          cache=False)  # fmt: skip
    assert form.outputs.value == "per_record" and form.run_kwargs()["outputs"] == "per_record"
    form.run_button.click()
    strict = form.wait(timeout=DEADLINE_S)
    assert set(strict.errors()["error_type"]) == {"Lambdakit.OutputNotPerRecord"}
    form.outputs.value = "per_batch"
    form.run_button.click()
    assert list(form.wait(timeout=DEADLINE_S).outputs()) == [{"n": 3}] * 3
    preset = lambdakit.form([1], endpoint_url=endpoint, function=name, outputs="raw")
    assert preset.outputs.value == "raw" and preset.run_kwargs()["outputs"] == "raw"


def test_dataset_chooser_previews_the_first_rows(endpoint, make_function, tmp_path):
    name = make_function(ECHO)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"n": n, "tag": f"row-{n}"}) + "\n" for n in range(9)))
    form = lambdakit.form(endpoint_url=endpoint, function=name, cache=False)

    form.path.value = str(path)
    assert "first 5 rows of data.jsonl" in form.preview.value
    assert "row-4" in form.preview.value and "row-5" not in form.preview.value

    form.run_button.click()
    result = form.wait(timeout=DEADLINE_S)
    assert list(result.outputs()) == [n * 2 for n in range(9)]

    csv = tmp_path / "data.csv"
    csv.write_text("n,tag\n" + "".join(f"{n},csv-{n}\n" for n in range(7)))
    form.path.value = str(csv)
    assert "csv-0" in form.preview.value and "csv-6" not in form.preview.value


def test_callback_errors_are_shown_in_the_form(endpoint, lambda_client, make_function):
    name = make_function(ECHO)
    form = lambdakit.form([{"n": 1}], endpoint_url=endpoint, function=name, cache=False)
    lambda_client.delete_function(FunctionName=name)

    form.run_button.click()  # listed a moment ago, gone now: start() refuses it

    assert "FunctionNotFound" in form.output.outputs[-1]["text"]
    assert form.output.outputs[-1]["name"] == "stderr"
    assert "was not found" in form.message.value
    assert form.state == "failed"
    assert not form.run_button.disabled  # the form is usable again
    with pytest.raises(lambdakit.FunctionNotFound):
        form.wait()


def test_an_unreachable_endpoint_is_reported_not_raised():
    # A port that was just free: ListFunctions fails inside the refresh callback.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    form = lambdakit.form([{"n": 1}], endpoint_url=f"http://127.0.0.1:{port}")
    assert form.function.options == ()
    assert "refresh failed" in form.output.outputs[0]["text"]
    assert f"127.0.0.1:{port}" in form.message.value
    assert form.state == "idle"


def test_errors_from_the_dashboard_thread_reach_the_form(endpoint, make_function, monkeypatch):
    name = make_function(ECHO)
    form = lambdakit.form([{"n": n} for n in range(3)], endpoint_url=endpoint, function=name)

    def broken(progress, live):
        raise RuntimeError("render broke")

    monkeypatch.setattr(form.dashboard, "show", broken)
    form.run_button.click()
    result = form.wait(timeout=DEADLINE_S)

    texts = [o["text"] for o in form.output.outputs]
    assert any("RuntimeError: render broke" in t for t in texts)
    # A broken refresh never loses the run: the result still arrives and is shown.
    assert result.summary()["records"] == 3
    assert form.state == "finished"


def test_form_without_records_exposes_no_dataset_widgets_when_given_records(endpoint):
    form = lambdakit.form([1, 2], endpoint_url=endpoint)
    assert form.path is None and form.preview is None


def test_without_an_endpoint_the_form_talks_to_aws(monkeypatch, tmp_path):
    # No credentials anywhere: the AWS path is taken and says what to set, in the form.
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    form = lambdakit.form([{"n": 1}])

    assert "No AWS credentials were found" in form.message.value
    assert "CredentialsError" in form.output.outputs[0]["text"]
    assert form.function.options == ()


def test_dashboard_shows_a_source_of_unknown_length():
    from lambdakit.engine.progress import Progress
    from lambdakit.notebook.dashboard import Dashboard, LiveRun

    errors = []
    board = Dashboard(report_error=lambda exc, where="": errors.append(exc))
    live = LiveRun()
    running = Progress(records_read=40, records_done=25, batches_read=4, batches_done=2)
    board.show(running, live)
    assert (board.records_bar.value, board.records_bar.max) == (25, 40)
    assert board.records_text.value == "25 done, 40 read so far"
    assert (board.batches_bar.value, board.batches_bar.max) == (2, 4)

    ended = Progress(state="finished", records_read=90, records_done=90, batches_read=9,
                     batches_done=9, elapsed_s=3.0)  # fmt: skip
    board.show(ended, live)
    assert board.records_text.value == "90 of 90"
    assert (board.records_bar.value, board.records_bar.max) == (90, 90)
    board.show_end("finished")
    assert board.records_bar.bar_style == board.batches_bar.bar_style == "success"

    known = Progress(records_total=200, records_read=120, records_done=50)
    board.show(known, live)
    assert board.records_text.value == "50 / 200 (25%)"
    assert board.records_bar.max == 200
    # Once it ended, the batches read are all the batches there are.
    board.show(Progress(state="finished", records_total=200, records_read=200, records_done=200,
                        batches_read=20, batches_done=20), live)  # fmt: skip
    assert board.batches_text.value == "20 of 20"
    assert board.records_text.value == "200 / 200 (100%)"
    # With the source's length known, the batches bar measures against all its batches.
    board.show(Progress(records_total=200, batches_total=20, records_read=60, records_done=40,
                        batches_read=6, batches_done=4), live)  # fmt: skip
    assert (board.batches_bar.value, board.batches_bar.max) == (4, 20)
    assert board.batches_text.value == "4 / 20 (20%)"
    assert errors == []


def test_dashboard_shows_the_rate_limit_beside_the_in_flight_limit():
    from lambdakit.engine.progress import Progress
    from lambdakit.notebook.dashboard import LiveRun, _rates_html

    plain = _rates_html(Progress(in_flight=3, in_flight_limit=8), LiveRun())
    assert "in flight 3 / 8" in plain and "rate limit" not in plain
    paced = _rates_html(Progress(in_flight=3, in_flight_limit=8, rate_limit=37.5), LiveRun())
    assert "in flight 3 / 8 · rate limit 37.5 requests/s" in paced


def test_a_run_stopped_by_an_outage_is_not_shown_as_cancelled(endpoint):
    # The card and print(result) say "stopped (outage)"; the form said "cancelled", in the
    # colour of a user's own cancel, though nobody cancelled and records did not run.
    from factories import make_run

    from lambdakit.notebook.form import Form

    form = Form(endpoint_url=endpoint)
    outage = make_run(records=20, meta={"cancelled": True, "stop_reason": "outage"})
    form._on_end(outage, None)
    assert form.state == "stopped (outage)"
    assert "stopped (outage)" in form.status.value and "color" in form.status.value
    assert form.dashboard.records_bar.bar_style == "danger"
    assert "stopped (outage) before every batch ran" in form.summary.value
    cancelled = make_run(records=20, meta={"cancelled": True, "stop_reason": "cancelled"})
    form._on_end(cancelled, None)
    assert form.state == "cancelled" and form.dashboard.records_bar.bar_style == "warning"
