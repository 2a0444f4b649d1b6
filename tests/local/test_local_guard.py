"""No cross-site requests: Host, Origin and Content-Type checks, and AWS's error spelling.

The browser tests send what a page in the analyst's browser can send without a CORS
preflight: a "simple" POST with `text/plain`, the page's `Origin`, and (after DNS rebinding)
the page's own host name in `Host`.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest

from lambdakit.local.checks import LOWER_CASE_MESSAGE
from lambdakit.local.guard import RequestGuard, allowed_hosts
from tests.conftest import build_zip
from tests.local.test_local_api import ECHO, message_of

MARKER = """
import os, pathlib

def handler(event, context):
    pathlib.Path(os.environ["MARKER"]).write_text("ran")
    return "ran"
"""


def send(local: Any, method: str, path: str, body: bytes | None, headers: dict[str, str]):
    """(status, headers, JSON body) of one request with exactly these headers (Host too)."""
    url = urlsplit(local.endpoint_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            connection.putheader(key, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return response.status, response.headers, json.loads(data) if data else None
    finally:
        connection.close()


def own_host(local: Any) -> str:
    return urlsplit(local.endpoint_url).netloc


def create_body(name: str, marker: Path) -> bytes:
    return json.dumps({
        "FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
        "Role": "arn:aws:iam::123456789012:role/x",
        "Code": {"ZipFile": base64.b64encode(build_zip(MARKER)).decode()},
        "Environment": {"Variables": {"MARKER": str(marker)}},
    }).encode()  # fmt: skip


def test_browser_posts_from_another_origin_are_refused_and_no_code_runs(
    local_lambda, lambda_client, make_function, tmp_path
):
    port = urlsplit(local_lambda.endpoint_url).port
    marker = tmp_path / "marker"
    name = f"guard-{uuid.uuid4().hex[:8]}"
    page = {"Origin": "http://evil.example", "Content-Type": "text/plain;charset=UTF-8"}
    attempts = [
        {"Host": own_host(local_lambda), **page},  # a simple cross-origin POST
        {"Host": f"evil.example:{port}", **page},  # the same after DNS rebinding
        {"Host": f"evil.example:{port}", "Content-Type": "application/json"},  # rebinding
        {"Host": own_host(local_lambda), "Origin": "null", "Content-Type": "application/json"},
        {"Host": own_host(local_lambda), "Content-Type": "text/plain"},  # same origin, text
    ]
    for headers in attempts:
        status, reply_headers, body = send(
            local_lambda, "POST", "/2015-03-31/functions", create_body(name, marker), headers
        )
        assert status in (403, 415), headers
        assert reply_headers["x-amzn-ErrorType"] in (
            "AccessDeniedException",
            "UnsupportedMediaTypeException",
        )
        assert message_of(reply_headers, body)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)

    victim = make_function(MARKER, Environment={"Variables": {"MARKER": str(marker)}})
    invoke = f"/2015-03-31/functions/{victim}/invocations"
    for headers in attempts:
        status, reply_headers, _ = send(local_lambda, "POST", invoke, b"{}", headers)
        assert status in (403, 415), headers
    faults = f"/_lambdakit/faults/{victim}"
    status, _, _ = send(local_lambda, "PUT", faults, b'{"error_rate": 1}', attempts[0])
    assert status == 403
    assert not marker.exists()
    # The service's own clients still work: boto3 (no Content-Type on Invoke) and curl-like
    # same-origin requests.
    assert lambda_client.invoke(FunctionName=victim, Payload=b"{}")["StatusCode"] == 200
    assert marker.read_text() == "ran"
    assert local_lambda.faults(victim) == {}


def test_host_names_of_the_bound_address_are_accepted(local_lambda, make_function):
    name = make_function(ECHO)
    port = urlsplit(local_lambda.endpoint_url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        status, _, body = send(local_lambda, "GET", f"/2015-03-31/functions/{name}", None,
                               {"Host": host})  # fmt: skip
        assert status == 200, host
        # GetFunction's code location names the (checked) host the client used, never
        # another one.
        assert body["Code"]["Location"].startswith(f"http://{host}/_lambdakit/code/")
    own = {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"}
    assert send(local_lambda, "GET", f"/2015-03-31/functions/{name}", None, own)[0] == 200
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2.nip.io", ""):
        status, headers, body = send(local_lambda, "GET", f"/2015-03-31/functions/{name}", None,
                                     {"Host": host})  # fmt: skip
        assert (status, headers["x-amzn-ErrorType"]) == (403, "AccessDeniedException"), host
        assert "evil" not in json.dumps(body.get("Code", {}))


def test_signed_requests_pass_whatever_their_origin(local_lambda, make_function):
    # A page cannot sign (that needs a preflight the service never grants), so a signed
    # request with an Origin comes from a tool that sets one, and is let through.
    name = make_function(ECHO)
    client = local_lambda.client()

    def add_origin(request: Any, **_: Any) -> None:
        request.headers["Origin"] = "http://tool.example"

    client.meta.events.register_first("before-sign.lambda.*", add_origin)
    assert client.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name


def test_guard_rules_as_a_unit():
    guard = RequestGuard(hosts=allowed_hosts("127.0.0.1"), port=9001)
    assert guard._own_origin("http://127.0.0.1:9001")
    assert guard._own_origin("http://localhost:9001")
    assert not guard._own_origin("http://localhost:9002")
    assert not guard._own_origin("http://127.0.0.1.evil.example:9001")
    assert not guard._own_origin("null")
    wildcard = RequestGuard(hosts=allowed_hosts("0.0.0.0"), port=9001, any_address=True)
    assert wildcard._own_origin("http://10.1.2.3:9001")
    assert "localhost" in allowed_hosts("10.0.0.5") and "10.0.0.5" in allowed_hosts("10.0.0.5")


def test_lower_case_message_matches_botocores_model():
    model = botocore.session.get_session().get_service_model("lambda")
    for shape_name in model.shape_names:
        shape = model.shape_for(shape_name)
        if shape.metadata.get("exception"):
            key = "message" if shape_name in LOWER_CASE_MESSAGE else "Message"
            assert key in shape.members, shape_name


def test_error_bodies_spell_message_per_shape(local_lambda, make_function):
    from tests.local.test_local_api import raw

    name = make_function(ECHO)
    status, headers, body = raw(local_lambda, "GET", "/2015-03-31/functions/nobody-here")
    assert (status, headers["x-amzn-ErrorType"]) == (404, "ResourceNotFoundException")
    assert set(body) == {"Type", "Message"}
    status, headers, body = raw(
        local_lambda, "PUT", f"/2015-03-31/functions/{name}/configuration", b'{"Timeout": 0}'
    )
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert set(body) == {"Type", "message"}
    status, headers, body = raw(
        local_lambda, "PUT", f"/2015-03-31/functions/{name}/configuration",
        b'{"Environment": {"Variables": {"AWS_REGION": "x"}}}',
    )  # fmt: skip
    assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidParameterValueException")
    assert set(body) == {"Type", "message"}
    status, headers, body = raw(
        local_lambda, "POST", f"/2015-03-31/functions/{name}/invocations", b"{not json"
    )
    assert headers["x-amzn-ErrorType"] == "InvalidRequestContentException"
    assert set(body) == {"Type", "message"}
    status, headers, body = raw(
        local_lambda, "POST", "/2015-03-31/functions", json.dumps({
            "FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
            "Role": "arn:aws:iam::123456789012:role/x",
            "Code": {"ZipFile": base64.b64encode(build_zip(ECHO)).decode()},
        }).encode(),
    )  # fmt: skip
    assert (status, headers["x-amzn-ErrorType"]) == (409, "ResourceConflictException")
    assert set(body) == {"Type", "message"}
