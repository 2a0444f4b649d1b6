"""AWS-style answers to protocol-level bad requests, read timeouts, deep JSON, foreign ARNs."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from lambdakit.local import LocalLambda
from tests.local.test_local_api import ECHO, raw


def exchange(local: Any, data: bytes, *, wait_s: float = 30.0) -> bytes:
    """Everything the service sends back on one connection until it closes it."""
    url = urlsplit(local.endpoint_url)
    with socket.create_connection((url.hostname, url.port), timeout=wait_s) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def replies(data: bytes) -> list[tuple[int, dict[str, str], Any]]:
    """(status, headers, JSON body) of every HTTP response in a byte stream."""
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        body, data = data[:length], data[length:]
        out.append((status, headers, json.loads(body) if body else None))
    return out


def host(local: Any) -> str:
    return f"Host: {urlsplit(local.endpoint_url).netloc}\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /2015-03-31/functions/ HTTP/1.1\r\nHOST" + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
         431, "RequestHeaderFieldsTooLargeException"),
        (b"POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nHOSTContent-Length: -5\r\n\r\n{}",
         400, "InvalidRequestContentException"),
        (b"POST /2015-03-31/functions/x/invocations HTTP/1.1\r\nHOSTContent-Length: ab\r\n\r\n{}",
         400, "InvalidRequestContentException"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400,
         "InvalidRequestContentException"),
    ],
)  # fmt: skip
def test_unparseable_requests_get_aws_errors_and_a_clean_close(
    local_lambda, request_bytes, status, code
):
    data = request_bytes.replace(b"HOST", host(local_lambda).encode())
    [(got_status, headers, body)] = replies(exchange(local_lambda, data))
    assert (got_status, headers["x-amzn-errortype"]) == (status, code)
    assert body["message"]
    assert headers["content-type"].startswith("application/json")


def test_a_body_longer_than_its_content_length_keeps_the_first_reply(local_lambda, make_function):
    name = make_function(ECHO)
    first = (
        f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\n{host(local_lambda)}"
        'Content-Length: 8\r\n\r\n{"a": 1}'
    ).encode()
    answers = replies(exchange(local_lambda, first + b'{"extra": "bytes past the length"}\r\n\r\n'))
    assert [status for status, _, _ in answers] == [200, 400]
    assert answers[0][2] == {"event": {"a": 1}}
    assert answers[1][1]["x-amzn-errortype"] == "InvalidRequestContentException"
    # The service is fine afterwards.
    assert raw(local_lambda, "GET", f"/2015-03-31/functions/{name}")[0] == 200


def test_pipelined_requests_are_all_answered(local_lambda):
    one = f"GET /2015-03-31/functions/?MaxItems=1 HTTP/1.1\r\n{host(local_lambda)}\r\n".encode()
    answers = replies(exchange(local_lambda, one * 3 + b"NOT HTTP\r\n\r\n"))
    assert [status for status, _, _ in answers] == [200, 200, 200, 400]


def test_deeply_nested_json_is_invalid_request_content(local_lambda, make_function):
    name = make_function(ECHO)
    deep = b"[" * 50_000 + b"]" * 50_000
    for method, path in [
        ("PUT", f"/2015-03-31/functions/{name}/configuration"),
        ("POST", f"/2015-03-31/functions/{name}/invocations"),
        ("PUT", f"/_lambdakit/faults/{name}"),
        ("POST", "/2015-03-31/functions"),
    ]:
        status, headers, body = raw(local_lambda, method, path, deep)
        assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestContentException")
        assert body["message"]


def test_arns_of_another_region_or_account_name_no_function(lambda_client, make_function):
    name = make_function(ECHO)
    here = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert lambda_client.get_function(FunctionName=here)["Configuration"]["FunctionName"] == name
    for arn in [
        f"arn:aws:lambda:eu-west-1:123456789012:function:{name}",
        f"arn:aws:lambda:us-east-1:999999999999:function:{name}",
        f"999999999999:function:{name}",
    ]:
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.get_function(FunctionName=arn)
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.invoke(FunctionName=arn, Payload=b"{}")


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A service that waits 1 s for headers, and for any pause in a body."""
    with LocalLambda(state_dir=tmp_path_factory.mktemp("impatient"), read_timeout_s=1.0) as local:
        yield local


def test_slow_headers_are_cut_off_with_a_408(impatient):
    started = time.monotonic()
    data = f"GET /2015-03-31/functions/ HTTP/1.1\r\n{host(impatient)}X-Slow: ".encode()
    [(status, headers, body)] = replies(exchange(impatient, data))
    assert (status, headers["x-amzn-errortype"]) == (408, "RequestTimeoutException")
    assert "headers" in body["message"]
    assert time.monotonic() - started < 20


def test_a_body_that_stops_short_is_cut_off_with_a_408(impatient):
    data = (
        f"POST /2015-03-31/functions HTTP/1.1\r\n{host(impatient)}"
        'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"FunctionName": '
    ).encode()
    [(status, headers, body)] = replies(exchange(impatient, data))
    assert (status, headers["x-amzn-errortype"]) == (408, "RequestTimeoutException")
    assert "body" in body["message"]


def test_an_idle_keep_alive_connection_is_not_cut_by_the_header_timer(impatient):
    # Two requests 1.5 s apart on one connection: the pause is between requests, not inside.
    url = urlsplit(impatient.endpoint_url)
    request = f"GET /2015-03-31/functions/ HTTP/1.1\r\n{host(impatient)}\r\n".encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        first = sock.recv(65536)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # idle on purpose: longer than read_timeout_s
            time.sleep(0.1)
        sock.sendall(request)
        second = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
