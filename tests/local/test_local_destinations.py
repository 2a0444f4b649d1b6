"""Asynchronous invocation settings through real boto3: retries, destinations, dead letters."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdakit.cli.main import main
from lambdakit.local import LocalLambda
from tests.conftest import build_zip

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:"

# Counts its attempts in a file, then fails (or succeeds, with {"ok": true} in the event).
FLAKY = """
import json, os

def handler(event, context):
    with open(os.environ["ATTEMPTS"], "a") as out:
        out.write(context.aws_request_id + "\\n")
    if event.get("ok"):
        return {"done": event["n"]}
    raise ValueError("cannot process order " + str(event["n"]))
"""
# Keeps every event it is given, one JSON line each.
RECORDER = """
import json, os

def handler(event, context):
    with open(os.environ["RECEIVED"], "a") as out:
        out.write(json.dumps(event) + "\\n")
"""


def wait_for(check, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def flaky(make_function, tmp_path):
    def make(**config: Any) -> tuple[str, Path]:
        attempts = tmp_path / f"attempts-{len(list(tmp_path.iterdir()))}.txt"
        name = make_function(FLAKY, Environment={"Variables": {"ATTEMPTS": str(attempts)}},
                             **config)  # fmt: skip
        return name, attempts

    return make


@pytest.fixture
def recorder(make_function, tmp_path):
    received = tmp_path / "received.jsonl"
    name = make_function(RECORDER, Environment={"Variables": {"RECEIVED": str(received)}})
    return name, received


def invoke_event(lambda_client, name: str, event: dict[str, Any], **kwargs: Any) -> str:
    response = lambda_client.invoke(
        FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode(), **kwargs
    )
    assert response["StatusCode"] == 202
    return response["ResponseMetadata"]["RequestId"]


def test_event_invoke_config_api_round_trip(lambda_client, make_function, recorder):
    name = make_function(RECORDER)
    with pytest.raises(ClientError) as error:
        lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "doesn't have an EventInvokeConfig" in error.value.response["Error"]["Message"]

    on_failure = {"OnFailure": {"Destination": f"{ARN}{recorder[0]}"}}
    put = lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=1, DestinationConfig=on_failure
    )
    assert put["FunctionArn"] == f"{ARN}{name}:$LATEST"
    assert put["MaximumRetryAttempts"] == 1 and "MaximumEventAgeInSeconds" not in put
    assert put["DestinationConfig"] == {"OnSuccess": {}, **on_failure}
    assert isinstance(put["LastModified"], dt.datetime)

    updated = lambda_client.update_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=300
    )
    assert (updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]) == (1, 300)
    assert updated["DestinationConfig"] == put["DestinationConfig"]
    got = lambda_client.get_function_event_invoke_config(FunctionName=name)
    assert got["MaximumEventAgeInSeconds"] == 300

    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.put_function_event_invoke_config(
        FunctionName=name, Qualifier="live", MaximumRetryAttempts=0
    )
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name)
    assert sorted(c["FunctionArn"] for c in listed["FunctionEventInvokeConfigs"]) == [
        f"{ARN}{name}:$LATEST", f"{ARN}{name}:live",
    ]  # fmt: skip
    # A Put replaces the whole config.
    replaced = lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumEventAgeInSeconds=60
    )
    assert "MaximumRetryAttempts" not in replaced
    assert replaced["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}

    lambda_client.delete_function_event_invoke_config(FunctionName=name, Qualifier="live")
    with pytest.raises(ClientError) as error:
        lambda_client.delete_function_event_invoke_config(FunctionName=name, Qualifier="live")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"
    lambda_client.delete_alias(FunctionName=name, Name="live")
    with pytest.raises(ClientError) as error:
        lambda_client.put_function_event_invoke_config(FunctionName="nobody-here")
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_bad_event_invoke_configs_are_refused(lambda_client, make_function):
    name = make_function(RECORDER)
    with pytest.raises(ClientError) as error:
        lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=5)
    response = error.value.response
    assert response["Error"]["Code"] == "ValidationException"
    assert response["Error"]["Message"] == (
        "1 validation error detected: Value '5' at 'maximumRetryAttempts' failed to satisfy "
        "constraint: Member must have value less than or equal to 2"
    )
    bus = "arn:aws:events:us-east-1:123456789012:event-bus/default"
    with pytest.raises(ClientError) as error:
        lambda_client.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnFailure": {"Destination": bus}}
        )
    assert error.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "cannot serve" in error.value.response["Error"]["Message"]


def test_an_event_failing_three_times_reaches_its_on_failure_function(
    lambda_client, flaky, recorder
):
    name, attempts = flaky()
    target, received = recorder
    lambda_client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnFailure": {"Destination": f"{ARN}{target}"}}
    )
    request_id = invoke_event(lambda_client, name, {"n": 7})
    record = json.loads(wait_for(lambda: lines(received), "the destination record")[0])
    assert len(lines(attempts)) == 3  # the first attempt and Lambda's two retries
    assert set(lines(attempts)) == {request_id}
    timestamp = record.pop("timestamp")
    assert dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).tzinfo is not None
    response_payload = record.pop("responsePayload")
    assert record == {
        "version": "1.0",
        "requestContext": {
            "requestId": request_id, "functionArn": f"{ARN}{name}:$LATEST",
            "condition": "RetriesExhausted", "approximateInvokeCount": 3,
        },
        "requestPayload": {"n": 7},
        "responseContext": {
            "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled",
        },
    }  # fmt: skip
    assert response_payload["errorType"] == "ValueError"
    assert response_payload["errorMessage"] == "cannot process order 7"


def test_without_a_destination_a_failed_event_becomes_a_dead_letter(
    local_lambda, lambda_client, flaky, capsys
):
    queue = f"{QUEUE}orders-dlq-{time.time_ns()}"
    name, attempts = flaky(DeadLetterConfig={"TargetArn": queue})
    request_id = invoke_event(lambda_client, name, {"n": 3})
    (letter,) = wait_for(lambda: local_lambda.dead_letters(queue), "the dead letter")
    assert len(lines(attempts)) == 3
    assert letter["QueueArn"] == queue
    assert json.loads(letter["Body"]) == {"n": 3}
    assert letter["MessageAttributes"] == {
        "RequestID": request_id, "ErrorCode": "200", "ErrorMessage": "cannot process order 3",
    }  # fmt: skip
    assert letter["Condition"] == "RetriesExhausted"

    # `lambdakit local dead-letters` lists the queue, then shows its record.
    state = ["--state-dir", str(local_lambda.state_dir)]
    assert main(["local", "dead-letters", *state]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if queue in line]
    assert len(listed) == 1 and listed[0].split()[1] == "1"
    assert main(["local", "dead-letters", queue.rsplit(":", 1)[-1], *state]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [letter]


def test_retry_settings_and_on_success(local_lambda, lambda_client, flaky, recorder):
    target, received = recorder
    queue = f"{QUEUE}no-retry-{time.time_ns()}"
    name, attempts = flaky(DeadLetterConfig={"TargetArn": queue})
    lambda_client.put_function_event_invoke_config(
        FunctionName=name, MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": f"{ARN}{target}"}},
    )  # fmt: skip
    invoke_event(lambda_client, name, {"n": 1})
    (letter,) = wait_for(lambda: local_lambda.dead_letters(queue), "the dead letter")
    assert len(lines(attempts)) == 1  # MaximumRetryAttempts 0: no retry
    assert letter["Condition"] == "RetriesExhausted"
    request_id = invoke_event(lambda_client, name, {"n": 2, "ok": True})
    record = json.loads(wait_for(lambda: lines(received), "the success record")[0])
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["approximateInvokeCount"] == 1
    assert record["responsePayload"] == {"done": 2}
    assert "functionError" not in record["responseContext"]


def test_an_event_older_than_its_maximum_age_is_given_up(tmp_path):
    queue = f"{QUEUE}too-old"
    with LocalLambda(state_dir=tmp_path / "state", test_clock=True) as local:
        client = local.client()
        client.create_function(
            FunctionName="slow-lane", Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": build_zip(RECORDER)}, DeadLetterConfig={"TargetArn": queue},
        )  # fmt: skip
        wait_for(lambda: client.get_function(FunctionName="slow-lane")["Configuration"]["State"]
                 == "Active", "the function")  # fmt: skip
        client.put_function_event_invoke_config(
            FunctionName="slow-lane", MaximumEventAgeInSeconds=60
        )
        # No concurrency: the event is throttled, and retried, until it is too old.
        client.put_function_concurrency(FunctionName="slow-lane", ReservedConcurrentExecutions=0)
        invoke_event(client, "slow-lane", {"n": 9})
        assert local.dead_letters(queue) == []
        local.clock.advance(61)
        (letter,) = wait_for(lambda: local.dead_letters(queue), "the dead letter")
        assert letter["Condition"] == "EventAgeExceeded"
        assert json.loads(letter["Body"]) == {"n": 9}
