"""HttpInvoker: through a function-URL-like gateway in front of `lambdakit local`, and canned
replies for the statuses a gateway sends."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import lambdakit
from lambdakit.aws.deploy import deploy
from lambdakit.aws.http_invoker import HttpInvoker
from lambdakit.errors import CredentialsError, InvalidInput
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
)

BATCH_PROCESSOR = Path(__file__).resolve().parents[2] / "notebooks/functions/batch_processor"
Reply = tuple[int, dict[str, str], bytes]


def batch_of(items: list[Any]) -> Batch:
    body = orjson.dumps({"Items": items})
    return Batch(index=0, record_indices=tuple(range(len(items))), items=items, body=body)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[bytes, dict[str, str]], Reply]], str]]:
    """serve(answer) -> URL of an HTTP server calling answer(body, headers) for each POST."""
    servers = []

    def start(answer: Callable[[bytes, dict[str, str]], Reply]) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers, data = answer(body, dict(self.headers.items()))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/batch"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def function_url(client: Any, name: str) -> Callable[[bytes, dict[str, str]], Reply]:
    """What a Lambda function URL does: invoke, and turn the result into an HTTP reply."""

    def answer(body: bytes, headers: dict[str, str]) -> Reply:
        response = client.invoke(FunctionName=name, Payload=body)
        payload = response["Payload"].read()
        request_id = {"x-amzn-RequestId": response["ResponseMetadata"]["RequestId"]}
        if "FunctionError" in response:
            return 502, request_id, b'{"Message":"Internal Server Error"}'
        result = json.loads(payload)
        if isinstance(result, dict) and "statusCode" in result:
            return result["statusCode"], request_id, str(result.get("body", "")).encode()
        return 200, {**request_id, "Content-Type": "application/json"}, payload

    return answer


@pytest.fixture
def batch_processor(lambda_client: Any) -> Iterator[Callable[..., str]]:
    names = []

    def make(**kwargs: Any) -> str:
        name = f"http-batch-processor-{len(names)}-{time.monotonic_ns() % 10**9}"
        deploy(lambda_client, name, BATCH_PROCESSOR, **kwargs)
        names.append(name)
        return name

    yield make
    for name in names:
        lambda_client.delete_function(FunctionName=name)


def test_through_a_function_url(serve, lambda_client, batch_processor):
    url = serve(function_url(lambda_client, batch_processor()))
    invoker = HttpInvoker(url, version="v1")
    good = invoker.invoke(batch_of([{"id": 1, "value": 2}, {"id": 2, "value": 4}]))
    assert (good.outcome, good.http_status, good.executed_version) == (OK, 200, "v1")
    assert [o["score"] for o in good.outputs] == [2.0, 4.0]
    assert good.request_id

    partial = invoker.invoke(batch_of([{"id": 1, "value": 2}, {"id": 2}]))
    assert (partial.outcome, partial.failed_items) == (REPORTED_FAILURE, (1,))
    assert "value must be a finite number" in partial.item_errors[1]

    crashed = invoker.invoke(Batch(index=0, record_indices=(0,), items=[1], body=b'{"x": 1}'))
    assert (crashed.outcome, crashed.http_status) == (FUNCTION_ERROR, 502)


def test_status_400_from_the_function_is_a_client_error(serve, lambda_client, batch_processor):
    name = batch_processor(environment={"ON_INVALID": "status400"})
    invoker = HttpInvoker(serve(function_url(lambda_client, name)))
    refused = invoker.invoke(batch_of([{"id": 1}]))
    assert (refused.outcome, refused.http_status, refused.error_type) == (
        CLIENT_ERROR,
        400,
        "HTTP400",
    )
    assert "1 invalid record" in refused.error_message


def test_run_accepts_an_http_invoker(serve, lambda_client, batch_processor):
    url = serve(function_url(lambda_client, batch_processor()))
    records = [{"id": n, "value": n} for n in range(25)] + [{"id": "bad"}]
    result = lambdakit.run(
        records=records,
        invoker=HttpInvoker(url),
        batch_size=10,
        retry=1,  # one attempt: the invalid record fails the same way every time
        cache=False,
        progress=False,
    )
    outputs = list(result.outputs())
    assert [o["score"] for o in outputs[:25]] == [float(n) for n in range(25)]
    assert outputs[25] is None
    assert result.summary()["failed_records"] == 1


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected", "error_type"),
    [
        (429, {"Retry-After": "3"}, b'{"message":"Too Many Requests"}', THROTTLE, "HTTP429"),
        (413, {}, b'{"message":"Request Too Long"}', CLIENT_ERROR, PAYLOAD_TOO_LARGE),
        (504, {}, b'{"message":"Endpoint request timed out"}', TIMEOUT, "HTTP504"),
        (
            500,
            {"x-amzn-ErrorType": "InternalServerErrorException"},
            b"{}",
            SERVICE_ERROR,
            "InternalServerErrorException",
        ),
        (
            403,
            {"x-amzn-ErrorType": "AccessDeniedException:http://x"},
            b'{"Message":"Forbidden"}',
            CLIENT_ERROR,
            "AccessDeniedException",
        ),
    ],
)
def test_gateway_statuses_are_classified(serve, status, headers, body, expected, error_type):
    outcome = HttpInvoker(serve(lambda _b, _h: (status, headers, body))).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.http_status, outcome.error_type) == (
        expected,
        status,
        error_type,
    )
    assert outcome.retry_after_s == (3.0 if status == 429 else None)
    assert outcome.error_message


def test_read_timeout_and_refused_connection(serve):
    slow = serve(lambda _b, _h: (time.sleep(2), (200, {}, b"[1]"))[1])
    outcome = HttpInvoker(slow, timeout=0.3).invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (TIMEOUT, "ReadTimeoutError")
    refused = HttpInvoker("http://127.0.0.1:9/x").invoke(batch_of([1]))
    assert refused.outcome == CONNECTION_ERROR


def test_aws_iam_requests_are_signed(serve, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    seen = []
    url = serve(lambda _b, headers: (seen.append(headers), (200, {}, b"[true]"))[1])
    invoker = HttpInvoker(url, auth="aws_iam", region="eu-west-1", headers={"x-api-key": "k"})
    assert invoker.invoke(batch_of([1])).outputs == [True]
    headers = {k.lower(): v for k, v in seen[0].items()}
    assert (
        headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        and "/eu-west-1/execute-api/aws4_request" in headers["authorization"]
    )
    assert headers["x-amz-security-token"] == "token"
    assert headers["x-api-key"] == "k"


def test_function_url_hosts_give_service_and_region(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    invoker = HttpInvoker("https://abc123.lambda-url.ap-south-1.on.aws/", auth="aws_iam")
    assert (invoker._signer.service, invoker._signer.region) == ("lambda", "ap-south-1")


def test_aws_iam_without_credentials_says_what_to_set(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        HttpInvoker("https://abc.lambda-url.us-east-1.on.aws/", auth="aws_iam")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x"}, "http"),
        ({"url": "https://x", "timeout": 0}, "timeout"),
        ({"url": "https://x", "auth": "basic"}, "auth"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        HttpInvoker(**kwargs)
