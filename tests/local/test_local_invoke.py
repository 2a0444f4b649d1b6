"""Invoke against the local service through the real boto3 client: types, logs, errors, limits."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.local.test_local_api import ARN_PREFIX, ECHO, error_of, message_of, raw

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"  # AWS checks the pattern

SLEEPER = (
    "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 'slept'\n"
)
FAILING = "def handler(event, context):\n    raise ValueError('bad record ' + str(event))\n"
APPENDER = (
    "def handler(event, context):\n"
    "    with open(event['path'], 'a') as f:\n"
    "        f.write(context.aws_request_id + '\\n')\n"
    "    if event.get('fail'):\n"
    "        raise RuntimeError('failing on purpose')\n"
    "    return 'written'\n"
)


def wait_for(condition, timeout_s: float = 60.0, what: str = "condition"):
    """Poll until condition() is truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.02)


def test_request_response_with_log_tail(lambda_client, make_function):
    source = "def handler(event, context):\n    print('processing', event['n'])\n    return event\n"
    name = make_function(source)
    response = lambda_client.invoke(FunctionName=name, Payload=b'{"n": 41}', LogType="Tail")
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == {"n": 41}
    tail = base64.b64decode(response["LogResult"]).decode()
    lines = tail.splitlines()
    request_id = response["ResponseMetadata"]["RequestId"]
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert "processing 41" in tail
    assert f"END RequestId: {request_id}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert "\tMemory Size: 128 MB\t" in lines[-1]


def test_log_tail_is_the_last_4_kb(lambda_client, make_function):
    source = (
        "def handler(event, context):\n"
        "    for i in range(2000):\n"
        "        print('line', i)\n"
        "    return 'done'\n"
    )
    name = make_function(source)
    response = lambda_client.invoke(FunctionName=name, LogType="Tail")
    tail = base64.b64decode(response["LogResult"])
    assert 3_500 < len(tail) <= 4_096
    text = tail.decode()
    assert "line 1999" in text and "line 0\n" not in text
    assert text.rstrip().splitlines()[-1].startswith("REPORT RequestId:")
    assert "LogResult" not in lambda_client.invoke(FunctionName=name)


def test_function_error_is_200_unhandled(lambda_client, make_function):
    name = make_function(FAILING)
    response = lambda_client.invoke(FunctionName=name, Payload=b'{"id": 7}')
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    body = json.loads(response["Payload"].read())
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad record {'id': 7}"


def test_empty_payload_and_client_context(lambda_client, make_function):
    source = (
        "def handler(event, context):\n"
        "    custom = context.client_context.custom if context.client_context else None\n"
        "    return {'event': event, 'custom': custom}\n"
    )
    name = make_function(source)
    context = base64.b64encode(json.dumps({"custom": {"run": "r1"}}).encode()).decode()
    response = lambda_client.invoke(FunctionName=name, ClientContext=context)
    assert json.loads(response["Payload"].read()) == {"event": {}, "custom": {"run": "r1"}}


def test_dry_run_is_204_with_the_executed_version(lambda_client, make_function):
    name = make_function(ECHO)
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    response = lambda_client.invoke(FunctionName=name, InvocationType="DryRun", Qualifier="live")
    assert response["StatusCode"] == 204
    assert response["ExecutedVersion"] == "1"
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name + "-missing", InvocationType="DryRun")
    assert error_of(exc_info)[:2] == ("ResourceNotFoundException", 404)


def test_event_invoke_runs(lambda_client, make_function, tmp_path):
    name = make_function(APPENDER)
    target = tmp_path / "ran.txt"
    payload = json.dumps({"path": str(target)}).encode()
    response = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
    assert response["StatusCode"] == 202
    assert response["ExecutedVersion"] == "$LATEST"
    assert response["Payload"].read() == b""
    lines = wait_for(lambda: target.exists() and target.read_text().splitlines(), what="event run")
    # The event's first attempt runs with the Invoke's request id, as on AWS.
    assert lines == [response["ResponseMetadata"]["RequestId"]]


def test_failing_event_is_tried_three_times(lambda_client, make_function, local_lambda, tmp_path):
    name = make_function(APPENDER)
    target = tmp_path / "attempts.txt"
    payload = json.dumps({"path": str(target), "fail": True}).encode()
    accepted = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
    request_id = accepted["ResponseMetadata"]["RequestId"]
    # The queued event is on disk until its last attempt is over.
    queued = local_lambda.state_dir / "events" / f"{request_id}.json"

    def finished() -> bool:
        attempts = target.read_text().splitlines() if target.exists() else []
        return len(attempts) >= 3 and not queued.exists()

    wait_for(finished, what="three attempts")
    assert target.read_text().splitlines() == [request_id] * 3  # retries keep the request id


def test_payload_limits(lambda_client, make_function):
    name = make_function(ECHO)
    big = b'"' + b"x" * 6_291_456 + b'"'
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name, Payload=big)
    code, status, message = error_of(exc_info)
    assert (code, status) == ("RequestEntityTooLargeException", 413)
    assert "6291456" in message
    medium = b'"' + b"x" * 1_048_576 + b'"'
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name, Payload=medium, InvocationType="Event")
    assert error_of(exc_info)[:2] == ("RequestEntityTooLargeException", 413)
    # Just under the synchronous limit still goes through.
    response = lambda_client.invoke(FunctionName=name, Payload=b'"' + b"y" * 6_000_000 + b'"')
    assert len(response["Payload"].read()) > 6_000_000


def test_payload_that_is_not_json(lambda_client, make_function):
    name = make_function(ECHO)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name, Payload=b"{not json")
    code, status, message = error_of(exc_info)
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert "Could not parse request body into json" in message


def test_missing_function_and_version(lambda_client, make_function):
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName="no-such-function-anywhere")
    code, status, message = error_of(exc_info)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert message == f"Function not found: {ARN_PREFIX}no-such-function-anywhere"
    name = make_function(ECHO)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name, Qualifier="5")
    assert error_of(exc_info)[2].endswith(f":{name}:5")


def test_error_replies_carry_the_full_code_header(local_lambda):
    status, headers, body = raw(
        local_lambda, "POST", "/2015-03-31/functions/nothing-here/invocations", b"{}"
    )
    assert status == 404
    assert headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert body["Type"] == "User" and body["Message"].startswith("Function not found: ")
    assert headers["x-amzn-RequestId"]


def test_bad_invoke_headers(local_lambda, make_function):
    name = make_function(ECHO)
    path = f"/2015-03-31/functions/{name}/invocations"
    for header, code, wording in (
        ({"X-Amz-Invocation-Type": "Sometimes"}, "ValidationException",
         "1 validation error detected: Value 'Sometimes' at 'invocationType' failed to satisfy "
         "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"),
        ({"X-Amz-Log-Type": "Everything"}, "ValidationException",
         "1 validation error detected: Value 'Everything' at 'logType' failed to satisfy "
         "constraint: Member must satisfy enum value set: [None, Tail]"),
        ({"X-Amz-Client-Context": "not base64 json"}, "InvalidParameterValueException",
         "Client context must be a base64-encoded JSON object."),
    ):  # fmt: skip
        status, headers, body = raw(local_lambda, "POST", path, b"{}", header)
        assert (status, headers["x-amzn-ErrorType"]) == (400, code)
        assert message_of(headers, body) == wording


def test_a_function_whose_code_cannot_unpack_is_failed_and_refuses_invokes(
    lambda_client, local_lambda
):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("app.py", ECHO)
    data = bytearray(buffer.getvalue())
    data[data.index(b"def handler")] ^= 0xFF  # the member's CRC no longer matches
    name = "corrupt-member"
    lambda_client.create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": bytes(data)},
    )  # fmt: skip
    try:
        wait_for(
            lambda: (
                lambda_client.get_function(FunctionName=name)["Configuration"]["State"] == "Failed"
            ),
            what="State Failed",
        )
        with pytest.raises(ClientError) as exc_info:
            lambda_client.invoke(FunctionName=name)
        code, status, message = error_of(exc_info)
        assert (code, status) == ("ResourceConflictException", 409)
        assert message.endswith("in the following state: Failed")
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_reserved_concurrency_one_throttles_parallel_calls(lambda_client, make_function):
    name = make_function(SLEEPER, Timeout=30)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lambda_client.invoke(FunctionName=name, Payload=b'{"s": 0}')  # warm the one environment
    start = threading.Barrier(8)

    def call(_: int):
        start.wait()
        try:
            response = lambda_client.invoke(FunctionName=name, Payload=b'{"s": 1.5}')
            return ("ok", response["Payload"].read())
        except ClientError as exc:
            return ("throttled", exc.response)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    ok = [r for kind, r in results if kind == "ok"]
    throttled = [r for kind, r in results if kind == "throttled"]
    assert ok and throttled, results
    assert all(body == b'"slept"' for body in ok)
    for response in throttled:
        assert response["Error"]["Code"] == "TooManyRequestsException"
        assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]


def test_reserved_concurrency_zero_always_throttles(lambda_client, make_function):
    name = make_function(ECHO)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.invoke(FunctionName=name)
    assert error_of(exc_info)[:2] == ("TooManyRequestsException", 429)
    assert exc_info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def test_logs_reach_the_log_group_on_disk(lambda_client, make_function, local_lambda: object):
    from lambdakit.local.logs import read_logs

    source = "def handler(event, context):\n    print('stored line', event['k'])\n    return 1\n"
    name = make_function(source)
    lambda_client.invoke(FunctionName=name, Payload=b'{"k": "v"}')
    state_dir = Path(local_lambda.state_dir)  # type: ignore[attr-defined]
    events = wait_for(
        lambda: (
            [e for e in read_logs(state_dir, name) if e.message.startswith("REPORT")]
            and read_logs(state_dir, name)
        ),
        what="log group written",
    )
    assert any("stored line v" in e.message for e in events)


def test_log_tail_starts_on_a_whole_character():
    from lambdakit.local.invocations import log_tail

    text = "é" * 3_000  # two bytes each: a 4096-byte cut may land mid-character
    assert log_tail(text).decode() == "é" * 2_048
    assert log_tail("x" + text, limit=4_095).decode() == "é" * 2_047
    assert log_tail("short") == b"short"


def test_local_lambda_logs_helper(lambda_client, make_function, local_lambda):
    source = "def handler(event, context):\n    print('helper line')\n    return 1\n"
    name = make_function(source)
    lambda_client.invoke(FunctionName=name)
    lines = wait_for(
        lambda: (found := local_lambda.logs(name)) and found[-1].startswith("REPORT") and found,
        what="log lines",
    )
    assert "helper line" in lines
    assert local_lambda.logs(name, tail=1)[0].startswith("REPORT RequestId:")


def test_one_functions_event_backlog_does_not_hold_up_another(
    lambda_client, make_function, tmp_path
):
    slow = make_function(SLEEPER, Timeout=30)
    lambda_client.put_function_concurrency(FunctionName=slow, ReservedConcurrentExecutions=1)
    for _ in range(40):  # 120 s of work for its one environment, more than the queue's workers
        lambda_client.invoke(FunctionName=slow, InvocationType="Event", Payload=b'{"s": 3}')
    quick = make_function(APPENDER)
    target = tmp_path / "quick.txt"
    lambda_client.invoke(
        FunctionName=quick, InvocationType="Event",
        Payload=json.dumps({"path": str(target)}).encode(),
    )  # fmt: skip
    wait_for(target.exists, timeout_s=30, what="the other function's event")
    lambda_client.delete_function(FunctionName=slow)  # its queued events are dropped
