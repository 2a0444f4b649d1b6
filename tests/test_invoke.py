"""The batch contract, REPORT parsing, and LambdaInvoker against `lambdakit local`."""

from __future__ import annotations

import json

import pytest

from lambdakit.invoke import Report, parse_report, read_response
from lambdakit.retry import (
    CLIENT_ERROR,
    FUNCTION_ERROR,
    OK,
    REPORTED_FAILURE,
    TIMEOUT,
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
    # A body that is not JSON is the output itself, shared by the whole batch.
    assert read_response(j({"statusCode": 200, "body": "done"}), None, 2)[1] == ["done", "done"]


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
    payload = j({"batchItemFailures": [{"itemIdentifier": identifier}]})
    outcome, outputs, failed, error_type, _ = read_response(payload, None, 3)
    assert (outcome, outputs, failed) == (REPORTED_FAILURE, None, (0, 1, 2))
    assert error_type == "InvalidItemIdentifier"


def test_list_as_long_as_items_is_one_output_per_item():
    assert read_response(j([1, 2, 3]), None, 3) == (OK, [1, 2, 3], (), None, None)


def test_anything_else_is_one_output_for_the_whole_batch():
    assert read_response(j([1, 2]), None, 3)[1] == [[1, 2]] * 3
    assert read_response(j({"total": 6}), None, 2)[1] == [{"total": 6}] * 2
    assert read_response(b"null", None, 2)[1] == [None, None]


def test_status_code_that_is_not_a_number_is_plain_output():
    payload = j({"statusCode": "teapot", "x": 1})
    assert read_response(payload, None, 1) == (
        OK,
        [{"statusCode": "teapot", "x": 1}],
        (),
        None,
        None,
    )
