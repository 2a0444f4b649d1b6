"""Settings the environment honours: EphemeralStorage's /tmp, LoggingConfig's JSON logs."""

from __future__ import annotations

import base64
import json

import pytest

import lambdakit
from lambdakit.aws.reply import parse_report
from lambdakit.local.ephemeral import unshare_prefix

FILL_TMP = """
import os

def handler(event, context):
    stat = os.statvfs("/tmp")
    size_mb = stat.f_blocks * stat.f_frsize // 2**20
    chunk = b"x" * 2**20
    with open("/tmp/fill", "wb") as out:
        for _ in range(event["mb"]):
            out.write(chunk)
    os.remove("/tmp/fill")
    return {"tmp_mb": size_mb, "mine": os.path.exists("/tmp/" + event["marker"])}
"""

needs_namespaces = pytest.mark.skipif(
    unshare_prefix() is None, reason="this host lets no process make a mount namespace"
)


@needs_namespaces
def test_writing_past_ephemeral_storage_fails_as_on_aws(make_function, invoke_json, tmp_path):
    name = make_function(FILL_TMP, EphemeralStorage={"Size": 512}, Timeout=60)
    marker = "lambdakit-host-marker"
    host_file = tmp_path.parent / marker  # on the host's /tmp, where pytest keeps tmp_path
    host_file.write_text("host")
    try:
        response, body = invoke_json(name, {"mb": 100, "marker": marker})
        assert "FunctionError" not in response, body
        # Its own /tmp, of the configured size: the host's files are not in it.
        assert body == {"tmp_mb": 512, "mine": False}
        response, body = invoke_json(name, {"mb": 600, "marker": marker})
        assert response["FunctionError"] == "Unhandled"
        assert body["errorType"] == "OSError"
        assert body["errorMessage"] == "[Errno 28] No space left on device"
    finally:
        host_file.unlink()


@needs_namespaces
def test_a_larger_ephemeral_storage_takes_the_write(lambda_client, make_function, invoke_json,
                                                    wait_updated):  # fmt: skip
    name = make_function(FILL_TMP, EphemeralStorage={"Size": 512}, Timeout=60)
    lambda_client.update_function_configuration(FunctionName=name, EphemeralStorage={"Size": 1024})
    wait_updated(name)
    response, body = invoke_json(name, {"mb": 600, "marker": "none"})
    assert "FunctionError" not in response, body
    assert body["tmp_mb"] == 1024


JSON_LOGGER = """
import logging

logger = logging.getLogger()

def handler(event, context):
    logger.debug("debug detail")
    logger.info("working on %s", event.get("item"))
    return {"ok": True}
"""


def tail_of(response) -> list[str]:
    return base64.b64decode(response["LogResult"]).decode().splitlines()


def test_a_json_function_logs_json_and_its_report_is_still_read(
    local_lambda, lambda_client, make_function, invoke_json, wait_updated
):
    name = make_function(JSON_LOGGER, LoggingConfig={"LogFormat": "JSON"})
    response, body = invoke_json(name, {"item": "a"}, LogType="Tail")
    assert body == {"ok": True}
    events = [json.loads(line) for line in tail_of(response)]
    kinds = [event.get("type") or event.get("level") for event in events]
    assert kinds == ["platform.start", "INFO", "platform.runtimeDone", "platform.report"]
    request_id = response["ResponseMetadata"]["RequestId"]
    assert events[0]["record"] == {"requestId": request_id, "version": "$LATEST"}
    assert events[1]["message"] == "working on a" and events[1]["requestId"] == request_id
    report = events[3]["record"]
    assert report["status"] == "success" and report["requestId"] == request_id
    assert report["metrics"]["memorySizeMB"] == 128
    assert "initDurationMs" in report["metrics"]  # a cold start
    figures = parse_report(base64.b64decode(response["LogResult"]).decode())
    assert figures.memory_size_mb == 128
    assert figures.duration_ms == report["metrics"]["durationMs"]
    assert figures.billed_duration_ms == report["metrics"]["billedDurationMs"]
    # The stored log group holds the same JSON lines.
    stored = local_lambda.logs(name)
    assert any('"type":"platform.report"' in line for line in stored)

    # ApplicationLogLevel DEBUG lets the debug line through.
    lambda_client.update_function_configuration(
        FunctionName=name, LoggingConfig={"ApplicationLogLevel": "DEBUG"}
    )
    wait_updated(name)
    response, _ = invoke_json(name, {"item": "b"}, LogType="Tail")
    levels = [json.loads(line).get("level") for line in tail_of(response)]
    assert levels.count("DEBUG") == 1

    # lambdakit's own runs read the JSON REPORT figures too.
    result = lambdakit.run(name, [1, 2], batch_size=1, endpoint_url=local_lambda.endpoint_url,
                           cache=False, progress=False, outputs="per_batch")  # fmt: skip
    attempts = result.attempts
    assert list(attempts["outcome"]) == ["ok", "ok"]
    assert attempts["memory_size_mb"].tolist() == [128, 128]
    assert attempts["billed_duration_ms"].notna().all()


def test_a_text_function_keeps_text_lines(make_function, invoke_json):
    name = make_function(JSON_LOGGER)
    response, _ = invoke_json(name, {"item": "a"}, LogType="Tail")
    lines = tail_of(response)
    assert lines[0].startswith("START RequestId: ") and lines[-1].startswith("REPORT RequestId: ")


PRINTS = """
def handler(event, context):
    print("hello")
    return event
"""


def test_where_no_namespace_can_be_made_the_log_says_so(tmp_path, monkeypatch):
    from lambdakit.local import ephemeral
    from lambdakit.local.logs import read_logs
    from tests.local.test_local_environments import Harness, make_spec

    monkeypatch.setattr(ephemeral, "unshare_prefix", lambda: None)
    harness = Harness(tmp_path / "state")
    try:
        spec = make_spec(tmp_path, PRINTS, tmp_mb=1024)
        result = harness.invoke(spec, {"a": 1})
        assert result.function_error is None and json.loads(result.payload) == {"a": 1}
        logged = [event.message for event in read_logs(tmp_path / "state", spec.function_name)]
        assert ephemeral.NOT_ENFORCED in logged
    finally:
        harness.close()


def test_system_log_level_warn_leaves_the_platform_lines_out(tmp_path):
    from tests.local.test_local_environments import Harness, make_spec

    harness = Harness(tmp_path / "state")
    try:
        quiet = make_spec(tmp_path, PRINTS, log_format="JSON", system_log_level="WARN")
        assert harness.invoke(quiet).log.splitlines() == ["hello"]
        spec = make_spec(tmp_path, PRINTS, log_format="JSON", system_log_level="INFO")
        kinds = [json.loads(line)["type"] for line in harness.invoke(spec).log.splitlines()
                 if line.startswith("{")]  # fmt: skip
        assert kinds == ["platform.start", "platform.runtimeDone", "platform.report"]
    finally:
        harness.close()
