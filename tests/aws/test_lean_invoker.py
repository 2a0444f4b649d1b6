"""LeanLambdaInvoker: the same requests on the wire as boto3's, and the same Outcomes.

A recording loopback server captures what each path sends for the same batches and answers
both with the same scripted reply (ok, function error, throttle, not found, too large, 5xx,
a dropped connection, a reply too slow for the read timeout); lambdakit local's SigV4
verifier (`lambdakit.local.sigv4.verify`) checks every captured signature. Then both paths
run against a `lambdakit local` that verifies SigV4 itself (access_key set).
"""

from __future__ import annotations

import datetime as dt
import http.server
import io
import json
import logging
import threading
import time
import zipfile
from typing import Any

import boto3
import botocore.session
import orjson
import pytest
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import CredentialRetrievalError

import lambdakit
from lambdakit.aws.connection import make_client
from lambdakit.aws.lambda_invoker import LambdaInvoker
from lambdakit.aws.lean_invoker import LeanLambdaInvoker, lean_blockers
from lambdakit.errors import InvalidInput
from lambdakit.invocation import (
    CLIENT_ERROR,
    CONNECTION_ERROR,
    FUNCTION_ERROR,
    OK,
    PAYLOAD_TOO_LARGE,
    SERVICE_ERROR,
    THROTTLE,
    TIMEOUT,
    Batch,
    Invoker,
    Target,
)
from lambdakit.local import LocalLambda
from lambdakit.local.sigv4 import Credential, key_lookup, verify

ACCESS_KEY = ("AKIALEANTEST0001", "lean-secret-key")
ARN = "arn:aws:lambda:us-east-1:123456789012:function:fn"
# What boto3 sends that changes from one request to the next by design.
PER_REQUEST = {"x-amz-date", "authorization", "amz-sdk-invocation-id", "x-amz-security-token"}


def target(name: str = "fn", arn: str = ARN, qualifier: str | None = None) -> Target:
    return Target(name, arn, qualifier, {"$LATEST": 1.0}, {"$LATEST": "t"}, 3, 128)


def batch_of(items: list[Any], index: int = 0) -> Batch:
    body = orjson.dumps({"Items": items})
    return Batch(index, tuple(range(len(items))), items, body)


class Recorder:
    """A loopback Lambda endpoint: records each request, answers with `reply` (scripted)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: Any = (200, {}, b"[]")
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path, _, query = self.path.partition("?")
                recorder.requests.append(
                    {"method": "POST", "path": path, "query": query, "body": body,
                     "headers": list(self.headers.items())}
                )  # fmt: skip
                reply = recorder.reply
                if reply == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply == "slow":
                    time.sleep(1.5)
                    reply = (200, {}, b"[1]")
                status, headers, data = reply
                self.send_response(status)
                self.send_header("x-amzn-RequestId", "rec-0001")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


def clients(url: str, **options: Any) -> tuple[Any, Any]:
    """Two clients signing with ACCESS_KEY: one per path, as run() makes them."""
    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY[0], aws_secret_access_key=ACCESS_KEY[1],
        region_name="us-east-1",
    )  # fmt: skip
    return tuple(
        make_client(endpoint_url=url, session=session, parameter_validation=False, **options)
        for _ in range(2)
    )


def both(url: str, tgt: Target | None = None, **kwargs: Any) -> tuple[Any, Any]:
    timeouts = {"read_timeout": kwargs.pop("read_timeout", 30)}
    if "connect_timeout" in kwargs:
        timeouts["connect_timeout"] = kwargs.pop("connect_timeout")
    boto_client, lean_client = clients(url, **timeouts)
    tgt = tgt or target()
    return (
        LambdaInvoker(boto_client, tgt, **kwargs),
        LeanLambdaInvoker(lean_client, tgt, **kwargs),
    )


def names(request: dict[str, Any]) -> list[str]:
    """The request's header names in the order they were sent."""
    return [name.lower() for name, _ in request["headers"]]


def signed_headers(request: dict[str, Any]) -> str:
    auth = dict(request["headers"])["Authorization"]
    return auth.split("SignedHeaders=")[1].split(",")[0]


def check_signature(request: dict[str, Any], keys: Any = None) -> None:
    verdict = verify(
        method=request["method"], raw_path=request["path"], query_string=request["query"],
        headers=request["headers"], body=request["body"], service="lambda",
        keys=keys or key_lookup({ACCESS_KEY[0]: ACCESS_KEY[1]}), region="us-east-1",
    )  # fmt: skip
    assert verdict.ok, verdict


def test_it_is_an_invoker(recorder):
    _, lean = both(recorder.url)
    assert isinstance(lean, Invoker)
    assert repr(lean) == f"LeanLambdaInvoker('{ARN}')"


@pytest.mark.parametrize(
    ("name", "arn", "qualifier"),
    [
        ("fn", ARN, None),
        ("fn", ARN, "live"),
        (None, ARN, "7"),  # FunctionName sent as the ARN: a percent-encoded path
        ("fn", "arn:aws:lambda:us-east-1:123456789012:function:fn", "$LATEST"),
    ],
)
def test_both_paths_send_the_same_request(recorder, name, arn, qualifier):
    boto, lean = both(recorder.url, target(arn=arn, qualifier=qualifier), function_name=name)
    batches = [batch_of([{"i": 1}]), batch_of([{"i": 2, "s": "é"}, None], 1)]
    for batch in batches:
        recorder.reply = (200, {}, b"[1, 2]"[: 3 if len(batch) == 1 else 6])
        boto.invoke(batch)
        lean.invoke(batch)
    assert len(recorder.requests) == 4
    for i in range(0, 4, 2):
        theirs, ours = recorder.requests[i], recorder.requests[i + 1]
        for part in ("method", "path", "query", "body"):
            assert ours[part] == theirs[part], part
        assert names(ours) == names(theirs)
        assert signed_headers(ours) == signed_headers(theirs)
        # Every header but the per-request ones carries the same value.
        same = {k.lower(): v for k, v in theirs["headers"] if k.lower() not in PER_REQUEST}
        assert {k.lower(): v for k, v in ours["headers"] if k.lower() not in PER_REQUEST} == same
        check_signature(theirs)
        check_signature(ours)
    assert recorder.requests[1]["body"] == batches[0].body


def test_a_session_token_is_sent_and_signed(recorder):
    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY[0], aws_secret_access_key=ACCESS_KEY[1],
        aws_session_token="token-of-the-session", region_name="us-east-1",
    )  # fmt: skip
    client = make_client(endpoint_url=recorder.url, session=session, parameter_validation=False)
    lean = LeanLambdaInvoker(client, target())
    boto = LambdaInvoker(client, target())
    recorder.reply = (200, {}, b"[1]")
    assert lean.invoke(batch_of([1])).outcome == OK
    assert boto.invoke(batch_of([1])).outcome == OK
    ours, theirs = recorder.requests
    assert dict(ours["headers"])["X-Amz-Security-Token"] == "token-of-the-session"
    assert signed_headers(ours) == signed_headers(theirs)
    assert "x-amz-security-token" in signed_headers(ours)
    keys = key_lookup({ACCESS_KEY[0]: Credential(ACCESS_KEY[1], "token-of-the-session")})
    check_signature(ours, keys)


class _Provider:
    """A credential provider in botocore's chain, giving credentials that expire in an hour."""

    METHOD = "lean-test"
    CANONICAL_NAME = "lean-test"

    def __init__(self, tokens: list[str | None] | None = None) -> None:
        self.issued = 0
        self.hours = 1
        self.skew = dt.timedelta(0)  # moves botocore's clock for these credentials
        self.tokens = tokens or [None, None]  # the session token of each issue
        self.broken = False  # a refresh fails, as an expired SSO session's does

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.skew

    def _fresh(self) -> dict[str, Any]:
        if self.broken:
            raise CredentialRetrievalError(provider="lean-test", error_msg="the session expired")
        self.issued += 1
        expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=self.hours)
        return {
            "access_key": f"AKIAREFRESH{self.issued:05d}",
            "secret_key": f"secret-{self.issued}",
            "token": self.tokens[self.issued - 1],
            "expiry_time": expiry.isoformat(),
        }

    def load(self) -> Any:
        first = self._fresh()
        return RefreshableCredentials(
            first["access_key"], first["secret_key"], first["token"],
            dt.datetime.fromisoformat(first["expiry_time"]), self._fresh, self.METHOD,
            time_fetcher=self.now,
        )  # fmt: skip


def test_refreshable_credentials_refresh_on_the_lean_path(recorder):
    core = botocore.session.get_session()
    provider = _Provider()
    core.get_component("credential_provider").insert_before("env", provider)
    session = boto3.Session(botocore_session=core, region_name="us-east-1")
    client = make_client(endpoint_url=recorder.url, session=session, parameter_validation=False)
    lean = LeanLambdaInvoker(client, target())
    recorder.reply = (200, {}, b"[1]")
    assert lean.invoke(batch_of([1])).outcome == OK
    assert provider.issued == 1
    # Two hours on, as botocore's clock sees it: the first credentials have expired.
    provider.skew, provider.hours = dt.timedelta(hours=2), 3
    assert lean.invoke(batch_of([2])).outcome == OK
    assert provider.issued == 2  # botocore refreshed them, asked by the lean path
    keys = key_lookup({"AKIAREFRESH00001": "secret-1", "AKIAREFRESH00002": "secret-2"})
    used = []
    for request in recorder.requests[-2:]:
        check_signature(request, keys)
        used.append(dict(request["headers"])["Authorization"].split("Credential=")[1][:16])
    assert used == ["AKIAREFRESH00001", "AKIAREFRESH00002"]


def _refreshing_client(url: str, provider: _Provider) -> Any:
    core = botocore.session.get_session()
    core.get_component("credential_provider").insert_before("env", provider)
    session = boto3.Session(botocore_session=core, region_name="us-east-1")
    return make_client(endpoint_url=url, session=session, parameter_validation=False)


@pytest.mark.parametrize("tokens", [[None, "token-2"], ["token-1", None]])
def test_a_token_that_comes_or_goes_on_refresh_is_signed_as_boto3_signs_it(recorder, tokens):
    # Static keys refreshed into a role's (a token now), or back: SignedHeaders must follow.
    recorder.reply = (200, {}, b"[1]")
    sent = []
    for kind in (LambdaInvoker, LeanLambdaInvoker):
        provider = _Provider(list(tokens))
        invoker = kind(_refreshing_client(recorder.url, provider), target())
        assert invoker.invoke(batch_of([1])).outcome == OK
        provider.skew, provider.hours = dt.timedelta(hours=2), 3
        assert invoker.invoke(batch_of([2])).outcome == OK
        assert provider.issued == 2
        sent.append(recorder.requests[-1])
    theirs, ours = sent
    assert names(ours) == names(theirs)
    assert signed_headers(ours) == signed_headers(theirs)
    assert ("x-amz-security-token" in signed_headers(ours)) is (tokens[1] is not None)
    secret = Credential("secret-2", tokens[1]) if tokens[1] else "secret-2"
    check_signature(ours, key_lookup({"AKIAREFRESH00002": secret}))


def test_a_refresh_that_fails_fails_the_batch_not_the_run(recorder):
    recorder.reply = (200, {}, b"[1]")
    outcomes = []
    for kind in (LambdaInvoker, LeanLambdaInvoker):
        provider = _Provider()
        invoker = kind(_refreshing_client(recorder.url, provider), target())
        assert invoker.invoke(batch_of([1])).outcome == OK
        provider.skew, provider.broken = dt.timedelta(hours=2), True
        outcomes.append(invoker.invoke(batch_of([2])))  # never raises: an Outcome
    theirs, ours = outcomes
    assert (ours.outcome, ours.error_type) == (CLIENT_ERROR, "CredentialRetrievalError")
    assert ours == theirs
    assert len(recorder.requests) == 2  # the failed batches sent nothing


TOO_SLOW = "slow"
REPLIES = {
    "ok": (200, {"X-Amz-Executed-Version": "3"}, b"[10]"),
    "function_error": (
        200,
        {"X-Amz-Function-Error": "Unhandled"},
        b'{"errorType": "ValueError", "errorMessage": "bad record"}',
    ),
    "throttle": (
        429,
        {
            "x-amzn-ErrorType": "TooManyRequestsException",
            "Retry-After": "2",
            "Content-Type": "application/json",
        },
        b'{"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded", "Type": "User", '
        b'"message": "Rate Exceeded."}',
    ),
    "not_found": (
        404,
        {"x-amzn-ErrorType": "ResourceNotFoundException", "Content-Type": "application/json"},
        b'{"Type": "User", "Message": "Function not found: ' + ARN.encode() + b'"}',
    ),
    "too_large": (
        413,
        {"x-amzn-ErrorType": "RequestEntityTooLargeException"},
        b'{"Type": "User", "message": "Request must be smaller than 6291456 bytes"}',
    ),
    "service_error": (
        500,
        {"x-amzn-ErrorType": "ServiceException"},
        b'{"Type": "Service", "Message": "a service fault"}',
    ),
    "unmodeled_5xx": (502, {}, b"<html>Bad Gateway</html>"),
    "reset": "reset",
    "timeout": TOO_SLOW,
}
EXPECTED = {
    "ok": (OK, None),
    "function_error": (FUNCTION_ERROR, "ValueError"),
    "throttle": (THROTTLE, "TooManyRequestsException"),
    "not_found": (CLIENT_ERROR, "ResourceNotFoundException"),
    "too_large": (CLIENT_ERROR, PAYLOAD_TOO_LARGE),
    "service_error": (SERVICE_ERROR, "ServiceException"),
    "unmodeled_5xx": (SERVICE_ERROR, "502"),
    "reset": (CONNECTION_ERROR, "ConnectionClosedError"),
    "timeout": (TIMEOUT, "ReadTimeoutError"),
}


@pytest.mark.parametrize("kind", list(REPLIES))
def test_both_paths_give_the_same_outcome(recorder, kind):
    boto, lean = both(recorder.url, read_timeout=0.5)
    recorder.reply = REPLIES[kind]
    theirs = boto.invoke(batch_of([{"i": 1}]))
    ours = lean.invoke(batch_of([{"i": 1}]))
    assert ours == theirs  # every field: class, status, type, message, Retry-After, outputs
    assert (ours.outcome, ours.error_type) == EXPECTED[kind]
    if kind == "throttle":
        assert ours.retry_after_s == 2.0
        assert "ReservedFunctionConcurrentInvocationLimitExceeded" in ours.error_message
    assert len(recorder.requests) == 2  # one attempt each: no retry behind the policy's back


def test_a_refused_connection_is_the_same_outcome():
    boto, lean = both("http://127.0.0.1:9")
    theirs, ours = boto.invoke(batch_of([1])), lean.invoke(batch_of([1]))
    assert ours == theirs
    assert (ours.outcome, ours.error_type) == (CONNECTION_ERROR, "EndpointConnectionError")


def test_what_the_lean_path_cannot_honour_is_named(recorder):
    session = boto3.Session(
        aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1"
    )
    retrying = session.client("lambda", endpoint_url=recorder.url)
    assert "botocore retries are on" in lean_blockers(retrying)
    from botocore import UNSIGNED

    unsigned = session.client(
        "lambda", endpoint_url=recorder.url,
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}),
    )  # fmt: skip
    assert "non-standard signer" in lean_blockers(unsigned)
    adaptive = session.client(
        "lambda", endpoint_url=recorder.url,
        config=Config(retries={"mode": "adaptive", "total_max_attempts": 1}),
    )  # fmt: skip
    assert "adaptive retry mode" in lean_blockers(adaptive)  # its rate limiter sits in send
    client = make_client(endpoint_url=recorder.url, session=session)
    assert lean_blockers(client) is None
    client.meta.events.register("before-sign.lambda.Invoke", lambda **kwargs: None)
    reason = lean_blockers(client)
    assert "custom botocore event handler" in reason and "before-sign.lambda.Invoke" in reason
    with pytest.raises(InvalidInput, match="custom botocore event handler"):
        LeanLambdaInvoker(client, target())
    assert "not a botocore Lambda client" in lean_blockers(object())
    scheduler = session.client("scheduler", endpoint_url=recorder.url)
    assert "not a botocore Lambda client" in lean_blockers(scheduler)


def test_an_idle_moto_stubber_is_no_reason_to_leave_the_lean_path(recorder):
    import moto  # importing it puts its stubber on every botocore client's before-send

    session = boto3.Session(
        aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1"
    )
    idle = make_client(endpoint_url=recorder.url, session=session)
    assert any(
        type(h).__name__ == "BotocoreStubber"
        for h in idle.meta.events._emitter._handlers.prefix_search("before-send.lambda.Invoke")
    )
    assert lean_blockers(idle) is None
    with moto.mock_aws():  # now moto answers instead of the endpoint: boto3 must send
        mocked = make_client(endpoint_url=recorder.url, session=session)
        assert "moto.core.botocore_stubber.BotocoreStubber" in lean_blockers(mocked)


# --- against lambdakit local, which verifies every signature (access_key set) ---------------


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def signed_local(tmp_path_factory):
    with LocalLambda(state_dir=tmp_path_factory.mktemp("lean-local"), access_key=ACCESS_KEY) as s:
        yield s


def _function(local: LocalLambda, name: str, source: str, **config: Any) -> str:
    client = local.client()
    client.create_function(
        FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::123456789012:role/x",
        Handler="app.handler", Code={"ZipFile": _zip(source)}, **config,
    )  # fmt: skip
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def _local_target(local: LocalLambda, name: str) -> Target:
    from lambdakit.aws.discovery import resolve_target

    return resolve_target(local.client(), name)


def _comparable(outcome: Any) -> tuple:
    # What an invocation decides; request ids, logs and durations differ per invocation.
    return (outcome.outcome, outcome.http_status, outcome.executed_version, outcome.error_type,
            outcome.outputs, outcome.failed_items, outcome.retry_after_s)  # fmt: skip


def test_local_service_accepts_the_lean_signature_and_outcomes_match(signed_local):
    echo = "def handler(event, context):\n    return [r * 2 for r in event['Items']]\n"
    name = _function(signed_local, "lean-echo", echo)
    tgt = _local_target(signed_local, name)
    boto, lean = both(signed_local.endpoint_url, tgt, function_name=name)
    ours, theirs = lean.invoke(batch_of([1, 2])), boto.invoke(batch_of([1, 2]))
    assert ours.outcome == OK, ours
    assert ours.outputs == [2, 4]
    assert ours.report is not None and ours.request_id
    assert _comparable(ours) == _comparable(theirs)

    # Throttled, then gone: the same outcomes, Retry-After and Reason included.
    signed_local.set_faults(name, throttle_rate=1.0)
    ours, theirs = lean.invoke(batch_of([1])), boto.invoke(batch_of([1]))
    assert ours.outcome == THROTTLE and ours.retry_after_s is not None
    assert _comparable(ours) == _comparable(theirs)
    assert ours.error_message == theirs.error_message
    signed_local.clear_faults(name)
    signed_local.client().delete_function(FunctionName=name)
    ours, theirs = lean.invoke(batch_of([1])), boto.invoke(batch_of([1]))
    assert (ours.outcome, ours.error_type) == (CLIENT_ERROR, "ResourceNotFoundException")
    assert _comparable(ours) == _comparable(theirs)
    assert ours.error_message == theirs.error_message


def test_local_service_refuses_a_wrong_key_on_both_paths(signed_local):
    name = _function(signed_local, "lean-wrong-key", "def handler(e, c):\n    return [1]\n")
    tgt = _local_target(signed_local, name)
    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY[0], aws_secret_access_key="not-the-secret",
        region_name="us-east-1",
    )  # fmt: skip
    client = make_client(endpoint_url=signed_local.endpoint_url, session=session)
    ours = LeanLambdaInvoker(client, tgt, function_name=name).invoke(batch_of([1]))
    theirs = LambdaInvoker(client, tgt, function_name=name).invoke(batch_of([1]))
    assert (ours.outcome, ours.http_status, ours.error_type) == (
        CLIENT_ERROR, 403, "InvalidSignatureException",
    )  # fmt: skip
    assert _comparable(ours) == _comparable(theirs)


def test_too_large_and_function_errors_match_on_local(signed_local):
    name = _function(signed_local, "lean-raise", "def handler(e, c):\n    raise ValueError('no')\n")
    tgt = _local_target(signed_local, name)
    boto, lean = both(signed_local.endpoint_url, tgt, function_name=name)
    ours, theirs = lean.invoke(batch_of([1])), boto.invoke(batch_of([1]))
    assert (ours.outcome, ours.error_type) == (FUNCTION_ERROR, "ValueError")
    assert _comparable(ours) == _comparable(theirs)
    big = batch_of(["x" * 7_000_000])
    ours, theirs = lean.invoke(big), boto.invoke(big)
    assert (ours.outcome, ours.error_type, ours.http_status) == (
        CLIENT_ERROR, PAYLOAD_TOO_LARGE, 413,
    )  # fmt: skip
    assert _comparable(ours) == _comparable(theirs)


def test_a_function_timeout_matches_on_local(signed_local):
    slow = "import time\n\ndef handler(e, c):\n    time.sleep(5)\n    return [1]\n"
    name = _function(signed_local, "lean-sandbox-timeout", slow, Timeout=1)
    tgt = _local_target(signed_local, name)
    boto, lean = both(signed_local.endpoint_url, tgt, function_name=name)
    ours, theirs = lean.invoke(batch_of([1])), boto.invoke(batch_of([1]))
    assert (ours.outcome, ours.error_type, ours.http_status) == (
        TIMEOUT, "Sandbox.Timedout", 200,
    )  # fmt: skip
    assert _comparable(ours) == _comparable(theirs)


# --- which path run() takes --------------------------------------------------------------


def test_run_takes_the_lean_path_by_default_and_boto3_when_asked(signed_local, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ACCESS_KEY[1])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    echo = "def handler(event, context):\n    return [r['i'] for r in event['Items']]\n"
    name = _function(signed_local, "lean-run", echo)
    records = [{"i": i} for i in range(30)]
    common = {"batch_size": 2, "concurrency": 4, "cache": False, "progress": False}
    lean = lambdakit.run(name, records, endpoint_url=signed_local.endpoint_url, **common)
    assert lean.meta["params"]["invoke_path"] == "lean"
    boto = lambdakit.run(
        name, records, endpoint_url=signed_local.endpoint_url, invoke_path="boto3", **common
    )
    assert boto.meta["params"]["invoke_path"] == "boto3"
    assert list(lean.outputs()) == list(boto.outputs()) == list(range(30))
    # A client of the user's own keeps boto3, unless the lean path is asked for.
    mine = signed_local.client()
    given = lambdakit.run(name, records, client=mine, **common)
    assert given.meta["params"]["invoke_path"] == "boto3"
    asked = lambdakit.run(name, records, client=mine, invoke_path="lean", **common)
    assert asked.meta["params"]["invoke_path"] == "lean"
    assert list(asked.outputs()) == list(range(30))


def test_run_falls_back_to_boto3_saying_why(signed_local, caplog):
    name = _function(signed_local, "lean-fallback", "def handler(e, c):\n    return [1]\n")
    mine = signed_local.client()
    seen = []
    mine.meta.events.register("before-send.lambda.Invoke", lambda **kwargs: seen.append(1))
    with caplog.at_level(logging.WARNING, logger="lambdakit.engine.invokers"):
        result = lambdakit.run(
            name, [1, 2], client=mine, invoke_path="lean", batch_size=1, cache=False,
            progress=False,
        )  # fmt: skip
    assert result.meta["params"]["invoke_path"] == "boto3"
    assert result.summary()["failed_records"] == 0
    assert len(seen) >= 2  # the user's handler saw every Invoke: boto3 sent them
    assert any(
        "custom botocore event handler" in r.getMessage() and "boto3 instead" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"invoke_path": "fast"}, "invoke_path must be 'lean', 'boto3' or None"),
        ({"invoke_path": "lean", "url": "http://127.0.0.1:9/x"}, "does not go with url="),
    ],
)
def test_bad_invoke_path_is_refused(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        lambdakit.run("fn", [1], progress=False, cache=False, **kwargs)


def test_json_of_the_recorded_body_is_the_batch(recorder):
    # The body goes out as given, byte for byte: never re-serialised on the lean path.
    _, lean = both(recorder.url)
    recorder.reply = (200, {}, b"[1]")
    batch = Batch(0, (0,), [{"a": 1}], b'{"Items":[{"a":1}],"BatchInput":{"k":"\\u00e9"}}')
    lean.invoke(batch)
    assert recorder.requests[0]["body"] == batch.body
    assert json.loads(recorder.requests[0]["body"])["BatchInput"] == {"k": "é"}


# --- HTTPS: the session's CA bundle ----------------------------------------------------------


def _test_ca(folder):
    """(ca.pem, server.pem, server.key): a throwaway CA and a 127.0.0.1 certificate it signed."""
    import subprocess

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "1", "-subj", "/CN=lambdakit lean test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=lambdakit local")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1",
            "-extfile", "ext.cnf")  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def test_https_uses_the_session_ca_bundle_on_both_paths(tmp_path, monkeypatch):
    ca, cert, key = _test_ca(tmp_path)
    with LocalLambda(
        state_dir=tmp_path / "state", access_key=ACCESS_KEY, tls_cert=cert, tls_key=key,
        ca_bundle=ca,
    ) as local:  # fmt: skip
        assert local.endpoint_url.startswith("https://")
        name = _function(local, "lean-tls", "def handler(e, c):\n    return [7]\n")
        tgt = _local_target(local, name)
        # The session's CA bundle, as a user sets it: AWS_CA_BUNDLE.
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
        boto, lean = both(local.endpoint_url, tgt, function_name=name)
        ours, theirs = lean.invoke(batch_of([1])), boto.invoke(batch_of([1]))
        assert (ours.outcome, ours.outputs) == (OK, [7])
        assert _comparable(ours) == _comparable(theirs)
        # Without it the certificate is not trusted: the same failure on both paths.
        monkeypatch.delenv("AWS_CA_BUNDLE")
        boto, lean = both(local.endpoint_url, tgt, function_name=name)
        ours, theirs = lean.invoke(batch_of([1])), boto.invoke(batch_of([1]))
        assert (ours.outcome, ours.error_type) == (CONNECTION_ERROR, "SSLError")
        assert ours == theirs


def test_a_proxy_from_the_environment_carries_both_paths(recorder, monkeypatch):
    # The endpoint does not resolve: only the proxy (the recorder) can answer.
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    boto, lean = both("http://lambda.example.invalid:8080")
    recorder.reply = (200, {}, b"[3]")
    theirs, ours = boto.invoke(batch_of([1])), lean.invoke(batch_of([1]))
    assert (ours.outcome, ours.outputs) == (OK, [3])
    assert _comparable(ours) == _comparable(theirs)
    via_boto, via_lean = recorder.requests
    assert via_lean["path"] == via_boto["path"]
    assert via_lean["path"] == "http://lambda.example.invalid:8080/2015-03-31/functions/" + (
        "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Afn/invocations"
    )
    assert names(via_lean) == names(via_boto)
