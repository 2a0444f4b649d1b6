"""The batch contract, REPORT parsing, and LambdaInvoker against `lambdakit local`."""

from __future__ import annotations

import http.server
import json
import threading

import orjson
import pytest

from lambdakit.aws.connection import make_client
from lambdakit.aws.discovery import resolve_target
from lambdakit.aws.lambda_invoker import LambdaInvoker
from lambdakit.aws.reply import parse_report, read_item_errors, read_response
from lambdakit.invocation import (
    CLIENT_ERROR,
    CONNECTION_ERROR,
    FUNCTION_ERROR,
    OK,
    PAYLOAD_TOO_LARGE,
    REPORTED_FAILURE,
    SERVICE_ERROR,
    THROTTLE,
    TIMEOUT,
    Batch,
    Invoker,
    Report,
    Target,
)

COLD = (
    "START RequestId: 8f5 Version: $LATEST\n"
    "hello from the handler\n"
    "END RequestId: 8f5\n"
    "REPORT RequestId: 8f5\tDuration: 19.07 ms\tBilled Duration: 20 ms\tMemory Size: 128 MB\t"
    "Max Memory Used: 56 MB\tInit Duration: 108.39 ms\t\n"
)


def j(value) -> bytes:
    return json.dumps(value).encode()


def test_report_of_a_cold_start():
    report = parse_report(COLD)
    assert report == Report(19.07, 20.0, 128, 56, 108.39)
    assert report.cold_start


def test_report_of_a_warm_failed_call():
    line = (
        "REPORT RequestId: a\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 256 MB"
        "\tMax Memory Used: 70 MB\tStatus: timeout\n"
    )
    report = parse_report("START RequestId: a Version: 3\n" + line)
    assert report.duration_ms == 3000.0
    assert report.memory_size_mb == 256
    assert report.init_duration_ms is None
    assert not report.cold_start


def test_report_tolerates_missing_fields_and_space_separators():
    report = parse_report("REPORT RequestId: b Duration: 1.5 ms Billed Duration: 2 ms")
    assert report == Report(duration_ms=1.5, billed_duration_ms=2.0)


@pytest.mark.parametrize("text", [None, "", "START RequestId: a\nEND RequestId: a\n"])
def test_no_report_line_gives_none(text):
    assert parse_report(text) is None


def test_the_last_report_line_wins():
    text = COLD + "REPORT RequestId: c\tDuration: 5.00 ms\tBilled Duration: 5 ms\n"
    assert parse_report(text).duration_ms == 5.0


def test_report_printed_inside_a_line_is_not_the_report_line():
    text = COLD + "order 7: REPORT Duration: 99 ms (a handler's own print)\n"
    assert parse_report(text).duration_ms == parse_report(COLD).duration_ms
    assert parse_report("note: REPORT Duration: 99 ms\n") is None


def test_function_error_takes_type_and_message_from_the_payload():
    payload = j({"errorType": "ValueError", "errorMessage": "bad row", "stackTrace": []})
    assert read_response(payload, "Unhandled", 3) == (
        FUNCTION_ERROR,
        None,
        (),
        "ValueError",
        "bad row",
    )


def test_sandbox_timeout_is_a_timeout():
    payload = j(
        {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 3.00 seconds"}
    )
    outcome, outputs, _, error_type, message = read_response(payload, "Unhandled", 1)
    assert (outcome, outputs, error_type) == (TIMEOUT, None, "Sandbox.Timedout")
    assert "3.00 seconds" in message


def test_function_error_without_a_json_body_keeps_the_text():
    outcome, _, _, error_type, message = read_response(b"boom", "Unhandled", 1)
    assert (outcome, error_type, message) == (FUNCTION_ERROR, "Unhandled", "boom")


def test_status_code_400_is_a_client_error_with_the_body_as_error():
    body = json.dumps({"error": "record 2 has no price"})
    outcome, outputs, failed, error_type, message = read_response(
        j({"statusCode": 400, "body": body}), None, 3
    )
    assert (outcome, outputs, failed) == (CLIENT_ERROR, None, ())
    assert error_type == "StatusCode400"
    assert message == "record 2 has no price"


def test_status_code_500_is_a_retryable_reported_failure():
    payload = j({"statusCode": 503, "body": {"errorType": "Upstream", "message": "db down"}})
    assert read_response(payload, None, 2) == (REPORTED_FAILURE, None, (), "Upstream", "db down")


def test_status_code_with_plain_text_body():
    outcome, _, _, error_type, message = read_response(
        j({"statusCode": 502, "body": "gateway"}), None, 1
    )
    assert (outcome, error_type, message) == (REPORTED_FAILURE, "StatusCode502", "gateway")


def test_status_code_200_body_is_read_on_as_the_result():
    body = json.dumps([{"y": 1}, {"y": 2}])
    assert read_response(j({"statusCode": 200, "body": body}), None, 2) == (
        OK,
        [{"y": 1}, {"y": 2}],
        (),
        None,
        None,
    )
    # A body that is not JSON is one value: one output for the batch only with per_batch.
    done = j({"statusCode": 200, "body": "done"})
    assert read_response(done, None, 2)[3] == "Lambdakit.OutputNotPerRecord"
    assert read_response(done, None, 2, outputs="per_batch")[1] == ["done", "done"]


def test_batch_item_failures_by_position():
    payload = j(
        {
            "batchItemFailures": [{"itemIdentifier": "1"}, {"itemIdentifier": 3}],
            "outputs": [10, None, 30, None],
        }
    )
    outcome, outputs, failed, error_type, message = read_response(payload, None, 4)
    assert (outcome, failed, error_type) == (REPORTED_FAILURE, (1, 3), "BatchItemFailures")
    assert outputs == [10, None, 30, None]
    assert message.startswith("2 of 4 items")


def test_batch_item_failures_carry_a_reason_when_given():
    payload = j({"batchItemFailures": [{"itemIdentifier": 0, "errorMessage": "price < 0"}]})
    _, outputs, failed, _, message = read_response(payload, None, 2)
    assert failed == (0,)
    assert outputs == [None, None]  # no `outputs` list: nothing to report for the others
    assert "price < 0" in message


def test_each_failed_item_keeps_its_own_reason():
    # read_response's message names only the first reason; every record needs its own.
    payload = {
        "batchItemFailures": [
            {"itemIdentifier": "0", "errorMessage": "unknown currency XXX"},
            {"itemIdentifier": "2", "errorMessage": "quantity is 0"},
            {"itemIdentifier": "3"},
        ]
    }
    assert read_item_errors(j(payload), 4) == {0: "unknown currency XXX", 2: "quantity is 0"}
    wrapped = {"statusCode": 200, "body": json.dumps(payload)}
    assert read_item_errors(j(wrapped), 4)[2] == "quantity is 0"
    by_id = {"batchItemFailures": [{"itemIdentifier": "b", "message": "no price"}]}
    assert read_item_errors(j(by_id), 2, ids=["a", "b"]) == {1: "no price"}
    assert read_item_errors(j([1, 2]), 2) == {}
    assert read_item_errors(b"not json", 2) == {}


def test_batch_item_failures_by_record_id():
    payload = j({"batchItemFailures": [{"itemIdentifier": "b"}]})
    _, _, failed, _, _ = read_response(payload, None, 3, ids=["a", "b", "c"])
    assert failed == (1,)
    # Ids are compared as text: handlers often stringify numeric ids.
    _, _, failed, _, _ = read_response(
        j({"batchItemFailures": [{"itemIdentifier": "7"}]}), None, 2, ids=[7, 8]
    )
    assert failed == (0,)


def test_empty_batch_item_failures_is_a_success():
    assert read_response(j({"batchItemFailures": []}), None, 2)[:3] == (OK, [None, None], ())


@pytest.mark.parametrize("identifier", ["9", "x", None])
def test_unknown_item_identifier_fails_the_whole_batch(identifier):
    # A whole-attempt failure: no item is singled out, so it is retried as the batch.
    payload = j({"batchItemFailures": [{"itemIdentifier": identifier}]})
    outcome, outputs, failed, error_type, _ = read_response(payload, None, 3)
    assert (outcome, outputs, failed) == (REPORTED_FAILURE, None, ())
    assert error_type == "InvalidItemIdentifier"


def test_record_ids_reported_without_id_field_suggest_it():
    # The message said only "names items not in the batch (positions 0..n-1)".
    payload = j({"batchItemFailures": [{"itemIdentifier": "order-7"}]})
    message = read_response(payload, None, 3)[4]
    assert "pass id_field=" in message
    numeric = read_response(j({"batchItemFailures": [{"itemIdentifier": "9"}]}), None, 3)[4]
    assert "id_field" not in numeric


def test_list_as_long_as_items_is_one_output_per_item():
    assert read_response(j([1, 2, 3]), None, 3) == (OK, [1, 2, 3], (), None, None)


def test_an_outputs_list_of_the_wrong_length_fails_the_attempt():
    payload = {"batchItemFailures": [{"itemIdentifier": "0"}], "outputs": [None, 2]}
    outcome, outputs, failed, error_type, message = read_response(j(payload), None, 3)
    assert (outcome, outputs, failed) == (FUNCTION_ERROR, None, ())
    assert error_type == "Lambdakit.OutputCountMismatch"
    assert "for 3 items" in message


def test_status_code_that_is_not_a_number_is_plain_output():
    payload = j({"statusCode": "teapot", "x": 1})
    assert read_response(payload, None, 1)[3] == "Lambdakit.OutputNotPerRecord"
    assert read_response(payload, None, 1, outputs="per_batch") == (
        OK,
        [{"statusCode": "teapot", "x": 1}],
        (),
        None,
        None,
    )


# -- LambdaInvoker with real boto3 against `lambdakit local` -------------------------------------

PER_RECORD = (
    "def handler(event, context):\n    return [{'double': x * 2} for x in event['Items']]\n"
)


def batch_of(items, index=0):
    body = orjson.dumps({"Items": items})
    return Batch(index=index, record_indices=tuple(range(len(items))), items=items, body=body)


def invoker_for(client, name, **kwargs):
    return LambdaInvoker(client, resolve_target(client, name), **kwargs)


def test_invoker_returns_per_record_outputs_and_the_report(lambda_client, make_function):
    invoker = invoker_for(lambda_client, make_function(PER_RECORD))
    assert isinstance(invoker, Invoker)
    cold = invoker.invoke(batch_of([1, 2, 3]))
    assert (cold.outcome, cold.http_status, cold.outputs) == (
        OK,
        200,
        [{"double": 2}, {"double": 4}, {"double": 6}],
    )
    assert cold.executed_version == "$LATEST"
    assert cold.request_id and cold.request_id in cold.log_tail
    assert cold.report.cold_start and cold.report.memory_size_mb == 128
    warm = invoker.invoke(batch_of([5]))
    assert warm.outputs == [{"double": 10}]
    assert warm.report.duration_ms is not None and not warm.report.cold_start


def test_invoker_reports_a_function_error_with_its_log(lambda_client, make_function):
    source = (
        "def handler(event, context):\n"
        "    print('about to fail')\n"
        "    raise ValueError('bad row 7')\n"
    )
    outcome = invoker_for(lambda_client, make_function(source)).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type, outcome.error_message) == (
        FUNCTION_ERROR,
        "ValueError",
        "bad row 7",
    )
    assert outcome.outputs is None
    assert "about to fail" in outcome.log_tail


def test_invoker_reports_a_function_timeout(lambda_client, make_function):
    source = "import time\ndef handler(event, context):\n    time.sleep(30)\n"
    outcome = invoker_for(lambda_client, make_function(source, Timeout=1)).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (TIMEOUT, "Sandbox.Timedout")
    assert "1.00 seconds" in outcome.error_message


def test_invoker_maps_item_failures_by_id_field(lambda_client, make_function):
    source = (
        "def handler(event, context):\n"
        "    bad = [{'itemIdentifier': r['key']} for r in event['Items'] if r['v'] < 0]\n"
        "    return {'batchItemFailures': bad}\n"
    )
    invoker = invoker_for(lambda_client, make_function(source), id_field="key")
    items = [{"key": "a", "v": 1}, {"key": "b", "v": -1}, {"key": "c", "v": -2}]
    outcome = invoker.invoke(batch_of(items))
    assert (outcome.outcome, outcome.failed_items) == (REPORTED_FAILURE, (1, 2))


def test_invoker_keeps_each_failed_items_reason(lambda_client, make_function):
    source = (
        "def handler(event, context):\n"
        "    return {'batchItemFailures': [\n"
        "        {'itemIdentifier': str(i), 'errorMessage': f'v={r} is negative'}\n"
        "        for i, r in enumerate(event['Items']) if r < 0]}\n"
    )
    outcome = invoker_for(lambda_client, make_function(source)).invoke(batch_of([1, -1, -2]))
    assert outcome.failed_items == (1, 2)
    assert outcome.item_errors == {1: "v=-1 is negative", 2: "v=-2 is negative"}


def test_invoker_uses_the_alias_and_records_the_executed_version(lambda_client, make_function):
    name = make_function(PER_RECORD)
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    outcome = invoker_for(lambda_client, f"{name}:live").invoke(batch_of([1]))
    assert (outcome.outcome, outcome.executed_version) == (OK, version)
    pinned = LambdaInvoker(
        lambda_client, resolve_target(lambda_client, name, "live"), qualifier="$LATEST"
    )
    assert pinned.invoke(batch_of([1])).executed_version == "$LATEST"


def test_invoker_sends_the_plain_name_when_given_one(lambda_client, make_function):
    name = make_function(PER_RECORD)
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    target = resolve_target(lambda_client, name, "live")
    assert LambdaInvoker(lambda_client, target).function_name == target.function_arn
    by_name = LambdaInvoker(lambda_client, target, function_name=name)
    assert by_name.function_name == name
    outcome = by_name.invoke(batch_of([4]))
    assert (outcome.outcome, outcome.outputs, outcome.executed_version) == (
        OK,
        [{"double": 8}],
        version,
    )


def test_invoker_reports_throttles(lambda_client, make_function):
    name = make_function(PER_RECORD)
    invoker = invoker_for(lambda_client, name)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    outcome = invoker.invoke(batch_of([1]))
    assert (outcome.outcome, outcome.http_status) == (THROTTLE, 429)
    assert outcome.error_type == "TooManyRequestsException"
    assert outcome.outputs is None


def test_invoker_flags_an_oversized_payload_for_bisection(lambda_client, make_function):
    invoker = invoker_for(lambda_client, make_function(PER_RECORD))
    outcome = invoker.invoke(batch_of(["x" * 1_000_000] * 7))
    assert (outcome.outcome, outcome.http_status) == (CLIENT_ERROR, 413)
    assert outcome.error_type == PAYLOAD_TOO_LARGE


def test_invoker_reports_bad_requests_and_missing_functions(lambda_client, make_function):
    name = make_function(PER_RECORD)
    invoker = invoker_for(lambda_client, name)
    not_json = Batch(index=0, record_indices=(0,), items=[1], body=b"{not json")
    outcome = invoker.invoke(not_json)
    assert (outcome.outcome, outcome.http_status, outcome.error_type) == (
        CLIENT_ERROR,
        400,
        "InvalidRequestContentException",
    )
    lambda_client.delete_function(FunctionName=name)
    gone = invoker.invoke(batch_of([1]))
    assert (gone.outcome, gone.http_status, gone.error_type) == (
        CLIENT_ERROR,
        404,
        "ResourceNotFoundException",
    )
    assert name in gone.error_message


def test_invoker_reports_a_client_read_timeout(local_lambda, lambda_client, make_function):
    source = "import time\ndef handler(event, context):\n    time.sleep(3)\n    return 1\n"
    name = make_function(source, Timeout=10)
    impatient = make_client(endpoint_url=local_lambda.endpoint_url, read_timeout=0.5)
    outcome = invoker_for(impatient, name).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (TIMEOUT, "ReadTimeoutError")
    assert outcome.http_status is None


def test_invoker_reports_a_refused_connection():
    client = make_client(endpoint_url="http://127.0.0.1:9", read_timeout=5)
    target = Target(
        "fn",
        "arn:aws:lambda:us-east-1:123456789012:function:fn",
        None,
        {"$LATEST": 1.0},
        {},
        3,
        128,
    )
    outcome = LambdaInvoker(client, target).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (CONNECTION_ERROR, "EndpointConnectionError")


@pytest.fixture
def canned_endpoint():
    """An HTTP endpoint answering every request with one canned Lambda API error reply."""
    replies = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers, body = replies[0]
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield replies, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "expected", "retry_after"),
    [
        (500, "ServiceException", SERVICE_ERROR, None),
        (503, "EC2ThrottledException", SERVICE_ERROR, None),
        (429, "TooManyRequestsException", THROTTLE, 2.5),
        (413, "RequestTooLargeException", CLIENT_ERROR, None),
    ],
)
def test_invoker_classifies_error_replies(canned_endpoint, status, code, expected, retry_after):
    replies, url = canned_endpoint
    headers = {"x-amzn-ErrorType": code, "Content-Type": "application/json"}
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    body = json.dumps(
        {"Type": "Service", "Message": "canned", "Reason": "ConcurrentInvocationLimitExceeded"}
    )
    replies.append((status, headers, body.encode()))
    client = make_client(endpoint_url=url, read_timeout=5)
    target = Target(
        "fn",
        "arn:aws:lambda:us-east-1:123456789012:function:fn",
        None,
        {"$LATEST": 1.0},
        {},
        3,
        128,
    )
    outcome = LambdaInvoker(client, target).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.http_status, outcome.retry_after_s) == (
        expected,
        status,
        retry_after,
    )
    assert outcome.error_type == (PAYLOAD_TOO_LARGE if status == 413 else code)
    assert "canned" in outcome.error_message
