"""The strict reply contract of aws/reply.py: what a reply may be, and how `outputs=` reads it."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from lambdakit.aws.reply import (
    COUNT_MISMATCH,
    NOT_JSON,
    NOT_PER_RECORD,
    OUTPUT_MODES,
    check_outputs,
    read_item_errors,
    read_response,
    read_retryable_items,
)
from lambdakit.errors import InvalidInput
from lambdakit.invocation import FUNCTION_ERROR, OK, REPORTED_FAILURE, TIMEOUT


def j(value):
    return orjson.dumps(value)


def test_a_list_as_long_as_items_is_one_output_per_item_in_every_mode():
    for mode in ("per_record", "per_batch"):
        assert read_response(j([1, 2, 3]), None, 3, outputs=mode) == (OK, [1, 2, 3], (), None, None)


@pytest.mark.parametrize("outputs", ["per_record", "per_batch"])
@pytest.mark.parametrize("length", [0, 2, 4])
def test_a_list_of_another_length_fails_the_attempt_naming_both_lengths(outputs, length):
    reply = j(list(range(length)))
    outcome, values, failed, error_type, message = read_response(reply, None, 3, outputs=outputs)
    assert (outcome, values, failed, error_type) == (FUNCTION_ERROR, None, (), COUNT_MISMATCH)
    assert f"a list of {length} outputs for 3 items" in message


@pytest.mark.parametrize(
    "reply, named",
    [
        (b"this is <not> json", "'this is <not> json'"),
        (b"", "''"),
        (b'{"total": ', "'{\"total\": '"),
        (b"\xff\xfe binary", "binary"),
    ],
)
def test_a_reply_that_is_not_json_fails_with_its_first_bytes(reply, named):
    outcome, values, failed, error_type, message = read_response(reply, None, 2)
    assert (outcome, values, failed, error_type) == (FUNCTION_ERROR, None, (), NOT_JSON)
    assert named in message and f"({len(reply)} bytes)" in message
    assert 'outputs="raw"' in message
    # Not even per_batch takes text that is not JSON.
    assert read_response(reply, None, 2, outputs="per_batch")[3] == NOT_JSON


def test_the_not_json_message_quotes_only_the_start_of_a_long_reply():
    reply = b"<html>" + b"x" * 10_000
    message = read_response(reply, None, 1)[4]
    assert message.startswith("the reply is not JSON (10006 bytes): '<html>xxx")
    assert len(message) < 400


@pytest.mark.parametrize("value", [{"total": 6}, {}, 6, "done", None, True])
def test_a_dict_or_scalar_is_one_output_for_the_batch_only_with_per_batch(value):
    outcome, values, failed, error_type, message = read_response(j(value), None, 3)
    assert (outcome, values, failed, error_type) == (FUNCTION_ERROR, None, (), NOT_PER_RECORD)
    assert 'outputs="per_batch"' in message and "a list of 3 outputs" in message
    assert read_response(j(value), None, 3, outputs="per_batch") == (
        OK,
        [value] * 3,
        (),
        None,
        None,
    )


def test_the_not_per_record_message_names_what_came_back():
    assert "a dict (keys 'total', 'n')" in read_response(j({"total": 6, "n": 3}), None, 2)[4]
    assert "null" in read_response(b"null", None, 2)[4]
    assert "a number (42)" in read_response(b"42", None, 2)[4]
    assert "a number (1)" in read_response(b"1", None, 2)[4]
    assert 'a string ("done")' in read_response(b'"done"', None, 2)[4]
    assert "a boolean (true)" in read_response(b"true", None, 2)[4]


def test_a_status_code_200_body_is_read_by_the_same_rules():
    one_each = j({"statusCode": 200, "body": orjson.dumps([1, 2]).decode()})
    assert read_response(one_each, None, 2)[:2] == (OK, [1, 2])
    short = j({"statusCode": 200, "body": orjson.dumps([1]).decode()})
    assert read_response(short, None, 2)[3] == COUNT_MISMATCH
    summary = j({"statusCode": 200, "body": {"total": 3}})
    assert read_response(summary, None, 2)[3] == NOT_PER_RECORD
    assert read_response(summary, None, 2, outputs="per_batch")[1] == [{"total": 3}] * 2


def test_raw_takes_any_bytes_as_every_records_text():
    for reply in (b"this is <not> json", b"[1]", b'{"statusCode": 500}', b""):
        assert read_response(reply, None, 2, outputs="raw") == (
            OK,
            [reply.decode()] * 2,
            (),
            None,
            None,
        )
    # Bytes that are not UTF-8 are replaced, not refused.
    assert read_response(b"caf\xe9", None, 1, outputs="raw")[1] == ["caf\ufffd"]


def test_raw_still_fails_on_a_function_error_or_timeout():
    error = j({"errorType": "Bash.Failure", "errorMessage": "asked to fail"})
    assert read_response(error, "Unhandled", 2, outputs="raw")[:4] == (
        FUNCTION_ERROR,
        None,
        (),
        "Bash.Failure",
    )
    timed_out = j({"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"})
    assert read_response(timed_out, "Unhandled", 2, outputs="raw")[0] == TIMEOUT


def test_outputs_beside_batch_item_failures_must_be_a_list_as_long_as_items():
    failures = [{"itemIdentifier": "0"}]
    for outputs in ({"0": None}, "none", 3):
        reply = j({"batchItemFailures": failures, "outputs": outputs})
        outcome, _, _, error_type, message = read_response(reply, None, 2)
        assert (outcome, error_type) == (FUNCTION_ERROR, COUNT_MISMATCH)
        assert "return a list of 2 outputs" in message
    null = j({"batchItemFailures": failures, "outputs": None})
    assert read_response(null, None, 2)[:3] == (REPORTED_FAILURE, [None, None], (0,))


def test_retryable_items_are_read_beside_the_identifier():
    reply = j(
        {
            "batchItemFailures": [
                {"itemIdentifier": "0", "retryable": True, "errorMessage": "db timeout"},
                {"itemIdentifier": "1", "errorMessage": "no price"},
                {"itemIdentifier": "2", "retryable": "yes"},  # only JSON true counts
                {"itemIdentifier": "3", "retryable": True},
            ]
        }
    )
    assert read_retryable_items(reply, 4) == (0, 3)
    by_id = j({"batchItemFailures": [{"itemIdentifier": "b", "retryable": True}]})
    assert read_retryable_items(by_id, 3, ids=["a", "b", "b"]) == (1, 2)
    assert read_retryable_items(j([1, 2]), 2) == ()


def test_the_retryable_flag_is_not_taken_for_a_reason():
    reply = j(
        {
            "batchItemFailures": [
                {"itemIdentifier": "0", "retryable": True},
                {"itemIdentifier": "1", "retryable": True, "errorMessage": "db timeout"},
            ]
        }
    )
    assert read_item_errors(reply, 2) == {1: "db timeout"}
    message = read_response(reply, None, 2)[4]
    assert message == "2 of 2 items reported failed: db timeout"


def test_check_outputs_names_the_allowed_values():
    assert [check_outputs(mode) for mode in OUTPUT_MODES] == list(OUTPUT_MODES)
    for wrong in ("batch", "PER_RECORD", None, 1):
        with pytest.raises(InvalidInput, match="'per_record', 'per_batch', 'raw'"):
            check_outputs(wrong)


# orjson reads an integer beyond 64 bits as a float and a number with more digits than a
# float holds as the nearest float: 123456789012345678901234567890 came back as
# 1.2345678901234568e+29, with no word.
WIDE_REPLY = (
    b'[{"id": 123456789012345678901234567890, "amount": 0.1234567890123456789, '
    b'"price": 1.10, "n": 7, "max": 18446744073709551615, "low": -9223372036854775809}]'
)


def test_numbers_wider_than_a_float_or_64_bits_keep_their_digits():
    outcome, (output,), *_ = read_response(WIDE_REPLY, None, 1)
    assert outcome == OK
    assert output["id"] == 123456789012345678901234567890 and type(output["id"]) is int
    assert output["low"] == -9223372036854775809 and type(output["low"]) is int
    assert output["max"] == 18446744073709551615
    # A fraction a float cannot hold is a Decimal with the reply's digits (a JsonNumber, as
    # a JSONL file's number is); one a float holds exactly stays a float.
    assert isinstance(output["amount"], Decimal)
    assert str(output["amount"]) == "0.1234567890123456789"
    assert type(output["price"]) is float and output["price"] == 1.1
    assert type(output["n"]) is int


def test_a_wide_item_identifier_names_its_record():
    ids = [123456789012345678901234567890, 123456789012345678901234567891]
    reply = b'{"batchItemFailures": [{"itemIdentifier": 123456789012345678901234567891}]}'
    outcome, _, failed, error_type, _ = read_response(reply, None, 2, ids=ids)
    assert (outcome, failed, error_type) == (REPORTED_FAILURE, (1,), "BatchItemFailures")


def test_a_wide_number_in_an_error_body_or_a_scalar_reply_is_quoted_with_its_digits():
    reply = b'{"statusCode": 400, "body": {"code": 123456789012345678901234567890}}'
    _, _, _, _, message = read_response(reply, None, 1)
    assert "123456789012345678901234567890" in message
    _, _, _, _, message = read_response(b"123456789012345678901234567890", None, 2)
    assert "a number (123456789012345678901234567890)" in message
