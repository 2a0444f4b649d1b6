"""SigV4 verification against requests signed by botocore's own SigV4Auth.

Each case signs with botocore, then changes one thing (or nothing) and checks the verdict,
both through the pure verify() and through an aiohttp server reached over a real socket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lambdakit.local.sigv4 import Credential, Verdict, key_lookup, verify, verify_request

KEYS = key_lookup(
    {
        "AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "ASIATEMP": Credential("temp-secret", session_token="the-session-token"),
    }
)


def sign(
    method: str = "POST",
    url: str = "http://127.0.0.1:9001/2015-03-31/functions/fn/invocations",
    body: bytes = b'{"Items": [1, 2]}',
    headers: dict[str, str] | None = None,
    *,
    access_key: str = "AKIDEXAMPLE",
    secret: str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    token: str | None = None,
    service: str = "lambda",
    region: str = "us-east-1",
) -> Any:
    """A prepared request as botocore sends it, signed by SigV4Auth."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(access_key, secret, token), service, region).add_auth(request)
    return request.prepare()


def check(prepared: Any, *, body: bytes | None = None, **kwargs: Any) -> Verdict:
    parts = urlsplit(prepared.url)
    headers = list(prepared.headers.items())
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", parts.netloc))
    sent = prepared.body if body is None else body
    if isinstance(sent, str):
        sent = sent.encode()
    return verify(
        method=prepared.method,
        raw_path=parts.path,
        query_string=parts.query,
        headers=headers,
        body=sent or b"",
        service=kwargs.pop("service", "lambda"),
        keys=kwargs.pop("keys", KEYS),
        **kwargs,
    )


def test_a_request_signed_by_botocore_passes() -> None:
    verdict = check(sign())
    assert verdict.ok, verdict
    assert verdict.access_key == "AKIDEXAMPLE"
    assert verdict.code is None


def test_query_strings_paths_and_empty_bodies_pass() -> None:
    url = "http://127.0.0.1:9001/2015-03-31/functions/fn%3Aprod/url?Qualifier=prod&b=x%20y&a=1"
    assert check(sign("GET", url, b"")).ok
    # A hand-typed query botocore signs as is ('+', unencoded ':').
    assert check(sign("GET", "http://localhost:9001/x/?q=a+b&t=1:2", b"")).ok


def test_session_tokens_must_match() -> None:
    assert check(sign(access_key="ASIATEMP", secret="temp-secret", token="the-session-token")).ok
    wrong = check(sign(access_key="ASIATEMP", secret="temp-secret", token="another-token"))
    assert (wrong.kind, wrong.code) == ("unknown_key", "UnrecognizedClientException")
    missing = check(sign(access_key="ASIATEMP", secret="temp-secret"))
    assert missing.kind == "unknown_key"


def test_an_unsigned_request_is_refused() -> None:
    prepared = AWSRequest(method="POST", url="http://h/x", data=b"{}").prepare()
    verdict = check(prepared)
    assert (verdict.kind, verdict.code) == ("unsigned", "MissingAuthenticationTokenException")
    error = verdict.error()
    assert (error.status, error.code) == (403, "MissingAuthenticationTokenException")


def test_an_unknown_access_key_is_unrecognized() -> None:
    verdict = check(sign(access_key="AKIDNOBODY"))
    assert (verdict.kind, verdict.code) == ("unknown_key", "UnrecognizedClientException")
    assert verdict.message == "The security token included in the request is invalid."
    assert verdict.access_key == "AKIDNOBODY"


def test_a_wrong_secret_is_a_bad_signature() -> None:
    verdict = check(sign(secret="not-the-secret"))
    assert (verdict.kind, verdict.code) == ("bad_signature", "InvalidSignatureException")
    assert "does not match the signature you provided" in verdict.message


def test_a_tampered_body_is_a_bad_signature() -> None:
    verdict = check(sign(), body=b'{"Items": [1, 3]}')
    assert (verdict.kind, verdict.code) == ("bad_signature", "InvalidSignatureException")


def test_a_tampered_body_with_a_content_hash_header_is_a_bad_signature() -> None:
    import hashlib

    body = b'{"a": 1}'
    prepared = sign(body=body, headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    assert check(prepared).ok
    verdict = check(prepared, body=b'{"a": 2}')
    assert verdict.kind == "bad_signature"
    assert "x-amz-content-sha256" in verdict.message


def test_unsigned_payloads_are_refused_unless_allowed() -> None:
    prepared = sign(body=b"{}", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert check(prepared).kind == "bad_signature"
    assert check(prepared, allow_unsigned_payload=True).ok


@pytest.mark.parametrize(
    ("change", "value"),
    [("method", "PUT"), ("path", "/2015-03-31/functions/other/invocations"), ("query", "a=2")],
)
def test_a_tampered_request_line_is_a_bad_signature(change: str, value: str) -> None:
    prepared = sign(url="http://127.0.0.1:9001/2015-03-31/functions/fn/invocations?a=1")
    parts = urlsplit(prepared.url)
    request = {"method": prepared.method, "path": parts.path, "query": parts.query}
    request[change] = value
    verdict = verify(
        method=request["method"],
        raw_path=request["path"],
        query_string=request["query"],
        headers=[*prepared.headers.items(), ("Host", parts.netloc)],
        body=prepared.body,
        service="lambda",
        keys=KEYS,
    )
    assert verdict.kind == "bad_signature"


def test_a_tampered_signed_header_is_a_bad_signature() -> None:
    prepared = sign(headers={"X-Amz-Invocation-Type": "RequestResponse"})
    headers = [
        (k, "Event" if k == "X-Amz-Invocation-Type" else v) for k, v in prepared.headers.items()
    ]
    parts = urlsplit(prepared.url)
    verdict = verify(
        method="POST", raw_path=parts.path, query_string="", body=prepared.body,
        headers=[*headers, ("Host", parts.netloc)], service="lambda", keys=KEYS,
    )  # fmt: skip
    assert verdict.kind == "bad_signature"


def test_the_service_and_region_of_the_scope_are_checked() -> None:
    verdict = check(sign(service="scheduler"))
    assert (verdict.kind, verdict.code) == ("wrong_scope", "InvalidSignatureException")
    assert "'lambda'" in verdict.message
    assert check(sign(service="scheduler"), service="scheduler").ok
    assert check(sign(region="eu-west-1"), region="us-east-1").kind == "wrong_scope"
    assert check(sign(region="eu-west-1"), region="eu-west-1").ok


def test_dates_outside_five_minutes_are_expired_or_not_yet_current() -> None:
    prepared = sign()
    signed_at = dt.datetime.now(dt.UTC)
    late = check(prepared, now=signed_at + dt.timedelta(minutes=6))
    assert (late.kind, late.code) == ("expired", "InvalidSignatureException")
    assert late.message.startswith("Signature expired: ")
    early = check(prepared, now=signed_at - dt.timedelta(minutes=6))
    assert (early.kind, early.code) == ("not_yet_current", "InvalidSignatureException")
    assert check(prepared, now=signed_at + dt.timedelta(minutes=4)).ok


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 garbage",
        "Bearer abc",
    ],
)
def test_malformed_authorization_headers_are_incomplete(authorization: str) -> None:
    verdict = verify(
        method="GET", raw_path="/", query_string="", body=b"", service="lambda", keys=KEYS,
        headers=[
            ("Authorization", authorization), ("Host", "h"), ("X-Amz-Date", "20260101T000000Z"),
        ],
    )  # fmt: skip
    assert (verdict.kind, verdict.code) == ("malformed", "IncompleteSignatureException")
    assert verdict.message


def test_the_host_header_must_be_signed() -> None:
    prepared = sign()
    auth = prepared.headers["Authorization"].replace("SignedHeaders=host;", "SignedHeaders=")
    headers = [(k, auth if k == "Authorization" else v) for k, v in prepared.headers.items()]
    verdict = verify(
        method="POST", raw_path=urlsplit(prepared.url).path, query_string="", body=prepared.body,
        headers=headers, service="lambda", keys=KEYS,
    )  # fmt: skip
    assert verdict.kind == "malformed"
    assert "Host" in verdict.message


def test_an_ok_verdict_has_no_error() -> None:
    with pytest.raises(ValueError, match="no error"):
        Verdict("ok").error()


@pytest.fixture
def verifying_server() -> Iterator[str]:
    """An aiohttp server on a real socket that answers each request with its verdict."""

    async def handle(request: web.Request) -> web.Response:
        verdict = await verify_request(request, service="lambda", keys=KEYS)
        if not verdict.ok:
            error = verdict.error()
            return web.json_response(
                error.body(), status=error.status, headers={"x-amzn-ErrorType": error.code}
            )
        return web.json_response({"ok": True, "body": (await request.read()).decode()})

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()))
    thread.start()
    assert ready.wait(30)
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def test_verify_request_over_a_real_socket(verifying_server: str) -> None:
    http = urllib3.PoolManager()
    url = f"{verifying_server}/2021-10-31/functions/fn%3Aprod/url?Qualifier=prod"
    prepared = sign("PUT", url, b'{"AuthType": "AWS_IAM"}')
    reply = http.request("PUT", prepared.url, body=prepared.body, headers=dict(prepared.headers))
    assert reply.status == 200, reply.data
    assert reply.json()["body"] == '{"AuthType": "AWS_IAM"}'

    unsigned = http.request("PUT", url, body=b"{}")
    assert unsigned.status == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"

    # Same length as the signed body, so the server reads it whole.
    tampered = http.request(
        "PUT", prepared.url, body=b'{"AuthType": "NONE!!!"}', headers=dict(prepared.headers)
    )
    assert tampered.status == 403
    assert tampered.headers["x-amzn-ErrorType"] == "InvalidSignatureException"

    stranger = sign("PUT", url, b"{}", access_key="AKIDNOBODY")
    reply = http.request("PUT", stranger.url, body=stranger.body, headers=dict(stranger.headers))
    assert reply.status == 403
    assert reply.headers["x-amzn-ErrorType"] == "UnrecognizedClientException"


def test_curl_aws_sigv4_is_verified(verifying_server: str) -> None:
    """curl's own signer agrees (one query parameter: curl 7.88 does not sort them)."""
    import subprocess

    def curl(user: str) -> str:
        done = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
             "--aws-sigv4", "aws:amz:us-east-1:lambda", "--user", user,
             "-X", "POST", "-H", "Content-Type: application/json", "--data", '{"a": 1}',
             f"{verifying_server}/2021-10-31/x?a=1"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return done.stdout

    assert curl("AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY") == "200"
    assert curl("AKIDEXAMPLE:wrong") == "403"
