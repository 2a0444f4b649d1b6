"""LeanLambdaInvoker: Invoke without boto3's per-call machinery, wire-identical to boto3's.

boto3 spends most of an Invoke's client CPU building the request from the service model,
running its handler chain, signing from scratch and parsing the reply. Invoke is one REST
call whose request differs from one batch to the next only by its body, date and signature,
so this path asks boto3 once, at construction, what the request looks like and then sends
every batch itself:

- The template (URL, headers, signed header names, credential scope) is what the boto3
  client itself prepares for this function: a dry Invoke whose `before-send` handler returns
  a stub reply, so nothing is sent. The URL is botocore's endpoint resolution (region, FIPS,
  dual-stack, `AWS_ENDPOINT_URL_LAMBDA`, `endpoint_url`); the canonical path, query and host
  come from botocore's own `SigV4Auth`, computed once.
- Each request is signed with the client's own credentials (botocore's provider chain;
  refreshable credentials are asked for their frozen form per request, so they refresh when
  botocore says they expire) and a signing key kept per day, region and secret. At
  construction the lean signature of the dry request must equal botocore's, byte for byte.
- It is sent over connections that the client's own botocore HTTP session makes (its urllib3
  pool, sized by `max_pool_connections`, with the session's CA bundle, client certificate,
  proxies and timeouts), by `lean_transport`: the request in one send, the reply parsed from
  its bytes. Transport failures are the same botocore exceptions boto3 raises.
- Error replies are parsed by the client's botocore parser (`connection.client_error_from_reply`)
  and answered ones read by `lambda_invoker.reply_outcome`: both paths give the same Outcome.

`lean_blockers(client)` names what this path cannot honour (a non-SigV4 signer, botocore
retries, a custom HTTP session, custom event handlers on Invoke's events); the constructor
raises InvalidInput naming it, and run() then falls back to LambdaInvoker with a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

from lambdakit.aws.connection import botocore_transport_error, client_error_from_reply
from lambdakit.aws.lambda_invoker import (
    LambdaInvoker,
    api_error_outcome,
    botocore_error_outcome,
    reply_outcome,
    transport_error_outcome,
)
from lambdakit.aws.lean_transport import Answer, BrokenBody, transport_for
from lambdakit.aws.reply import PER_RECORD
from lambdakit.errors import InvalidInput
from lambdakit.invocation import Batch, Outcome, Target

__all__ = ["LeanLambdaInvoker", "lean_blockers"]

_ALGORITHM = "AWS4-HMAC-SHA256"
# Headers that change per request: sent fresh each time, never copied from the template.
_PER_REQUEST = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "amz-sdk-invocation-id",
     "content-length"}
)  # fmt: skip
# Invoke's events; a handler on them from outside botocore/boto3 changes what boto3 sends.
_INVOKE_EVENTS = (
    "provide-client-params.lambda.Invoke",
    "before-parameter-build.lambda.Invoke",
    "before-call.lambda.Invoke",
    "request-created.lambda.Invoke",
    "before-sign.lambda.Invoke",
    "before-send.lambda.Invoke",
    "needs-retry.lambda.Invoke",
    "after-call.lambda.Invoke",
)


def lean_blockers(client: Any) -> str | None:
    """Why the lean path cannot stand in for this boto3 Lambda client, or None if it can."""
    from botocore.httpsession import URLLib3Session

    meta = getattr(client, "meta", None)
    if getattr(getattr(meta, "service_model", None), "service_name", None) != "lambda":
        return "not a botocore Lambda client"
    config = meta.config
    if config.signature_version not in (None, "v4"):
        return f"a non-standard signer (signature_version={config.signature_version!r})"
    retries = config.retries or {}
    attempts = retries.get("total_max_attempts")
    if retries.get("mode") == "adaptive":
        # Adaptive mode's client-side rate limiter runs in botocore's send; the lean path
        # would skip it.
        return "botocore's adaptive retry mode (its client-side rate limiter)"
    if attempts != 1:
        # The lean path makes one attempt; lambdakit's Retry policy does the rest.
        return f"botocore retries are on (total_max_attempts={attempts!r})"
    # Private attributes of the client: the very session and credentials boto3 uses.
    http = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if type(http) is not URLLib3Session:
        return f"a custom HTTP session ({type(http).__name__})"
    if getattr(getattr(client, "_request_signer", None), "_credentials", None) is None:
        return "no credentials to sign with"
    for event in _INVOKE_EVENTS:
        for handler in _handlers(meta.events, event):
            if _idle_moto(handler):
                continue
            module = getattr(handler, "__module__", None) or type(handler).__module__ or ""
            if not module.startswith(("botocore.", "boto3.")):
                name = getattr(handler, "__qualname__", type(handler).__name__)
                return f"a custom botocore event handler ({module}.{name} on {event})"
    return None


def _idle_moto(handler: Any) -> bool:
    """moto's stubber, passing requests through: no mock of moto's is active.

    Importing moto adds its stubber to every botocore client's before-send (a test suite, or a
    notebook that mocks S3 with it, may have imported it); it answers nothing until a mock
    starts, so it is no reason to leave the lean path. An active one is: it answers instead
    of AWS. (A mock started after the run began is not seen: the lean path sends directly.)
    """
    kind = type(handler)
    return (
        kind.__module__ == "moto.core.botocore_stubber"
        and kind.__name__ == "BotocoreStubber"
        and getattr(handler, "enabled", True) is False
    )


def _handlers(events: Any, event: str) -> list[Any]:
    emitter = getattr(events, "_emitter", events)  # boto3's EventAliaser wraps the emitter
    trie = getattr(emitter, "_handlers", None)
    return list(trie.prefix_search(event)) if trie is not None else []


class LeanLambdaInvoker:
    """Invoke a Lambda function without boto3's per-call work (RequestResponse, LogType=Tail).

    Built from a boto3 Lambda client made as `connection.make_client` makes them (one
    attempt, SigV4): the same requests on the wire, the same Outcomes, a fraction of the
    client CPU per invocation. Arguments as for LambdaInvoker. Raises InvalidInput naming
    what it cannot honour (see `lean_blockers`); never raises from `invoke`.

    >>> LeanLambdaInvoker(make_client(endpoint_url=url), target)  # doctest: +SKIP
    """

    def __init__(
        self,
        client: Any,
        target: Target,
        *,
        id_field: str | None = None,
        qualifier: str | None = None,
        function_name: str | None = None,
        probe_client: Any = None,
        outputs: str = PER_RECORD,
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        reason = lean_blockers(client)
        if reason is not None:
            raise InvalidInput(f"the lean Invoke path cannot serve this client: {reason}")
        # The boto3 path for the same function: what to send, and the probe, come from it, so
        # that both paths name the function and read the arguments alike.
        self._boto3 = LambdaInvoker(
            client, target, id_field=id_field, qualifier=qualifier,
            function_name=function_name, probe_client=probe_client, outputs=outputs,
        )  # fmt: skip
        self.client = client
        self.probe_client = self._boto3.probe_client
        self.target = target
        self.function_name = self._boto3.function_name
        self.id_field = id_field
        self.outputs = self._boto3.outputs
        self.qualifier = self._boto3.qualifier
        request = self._boto3.request
        first = _dry_request(client, request, b"{}")
        second = _dry_request(client, request, b'{"Items": []}')
        self._signer = _Signer(client._request_signer._credentials, first)
        self.url = first.url
        changing = sorted(
            name
            for name, value in first.headers.items()
            if name.lower() not in _PER_REQUEST and second.headers.get(name) != value
        )
        if changing or first.url != second.url:
            raise InvalidInput(
                "the lean Invoke path cannot serve this client: its request changes from one "
                f"call to the next beyond date and signature ({changing or 'the URL'})"
            )
        if "X-Amzn-Trace-Id" in first.headers:
            # Inside Lambda, boto3 sends each invocation's own X-Ray trace id.
            raise InvalidInput(
                "the lean Invoke path cannot serve this client: boto3 adds an X-Amzn-Trace-Id "
                "that changes with each of this process's own invocations"
            )
        # The fixed headers in boto3's order: those before the date and signature, and
        # those after them (amz-sdk-request follows amz-sdk-invocation-id).
        self._headers: dict[str, str] = {}
        self._tail: dict[str, str] = {}
        signed_yet = False
        for name, value in first.headers.items():
            if name.lower() in _PER_REQUEST:
                signed_yet = signed_yet or name.lower() != "content-length"
                continue
            (self._tail if signed_yet else self._headers)[name] = _text(value)
        self._signer.check(first)
        self._transport = transport_for(client._endpoint.http_session, self.url)
        self._ids = _InvocationIds()
        self._errors = (ClientError, BotoCoreError)  # looked up once, not per request

    def __repr__(self) -> str:
        return f"LeanLambdaInvoker({self.function_name!r})"

    def invoke(self, batch: Batch) -> Outcome:
        """Send `batch.body` once and read the reply by the batch contract."""
        body = batch.body
        headers = dict(self._headers)
        try:
            # A refresh that fails (an expired SSO session, an unreachable STS) fails this
            # batch as boto3's invoke would, not the run.
            self._signer.sign(headers, body)
        except self._errors as exc:
            return botocore_error_outcome(exc)
        headers["amz-sdk-invocation-id"] = self._ids.next()
        headers.update(self._tail)
        transport = self._transport
        try:
            answer = transport.send(headers, body)
        except BrokenBody as exc:  # the head came, the body broke: botocore's stream error
            from botocore.exceptions import ResponseStreamingError

            return transport_error_outcome(ResponseStreamingError(error=exc.error))
        except Exception as exc:  # what botocore's send catches, turned as it turns it
            error = botocore_transport_error(exc, self.url, transport.proxy_url)
            return transport_error_outcome(error)
        status = answer.status
        if status >= 300:
            reply = _Reply(self.url, answer)
            return api_error_outcome(client_error_from_reply(self.client, "Invoke", reply))
        reply_headers = answer.headers
        return reply_outcome(
            batch,
            answer.data,
            function_error=reply_headers.get("x-amz-function-error"),
            status=status,
            executed_version=reply_headers.get("x-amz-executed-version"),
            # botocore's REST parser falls back to x-amz-request-id, so the lean path does.
            request_id=reply_headers.get("x-amzn-requestid")
            or reply_headers.get("x-amz-request-id"),
            log_result=reply_headers.get("x-amz-log-result"),
            outputs=self.outputs,
            id_field=self.id_field,
        )

    def probe(self) -> bool:
        """Whether the Lambda endpoint answers at all: LambdaInvoker's probe, through boto3."""
        return self._boto3.probe()

    def close(self) -> None:
        """Close the idle connections (the run's end); a later invoke opens new ones."""
        self._transport.close()


class _Reply:
    """An error reply in the shape botocore's parser reads (an AWSResponse's fields)."""

    def __init__(self, url: str, answer: Answer) -> None:
        from botocore.awsrequest import HeadersDict

        self.url = url
        self.status_code = answer.status
        self.headers = HeadersDict(answer.pairs)
        self.content = answer.data
        self.raw = None


class _InvocationIds:
    """amz-sdk-invocation-id values: uuid4-shaped, unique, without a urandom call each.

    boto3 sends a fresh uuid4 per request, which servers use to tell retries (same id) from
    new requests. A random 128-bit base drawn once, plus a counter, gives the same
    uniqueness and shape (version 4, RFC variant) for a few hundred nanoseconds.
    """

    def __init__(self) -> None:
        import itertools

        self._base = uuid.uuid4().int
        self._count = itertools.count(1)  # next() on a count is atomic under the GIL

    def next(self) -> str:
        """The next id."""
        # Add the counter to the 48-bit node field, leaving the version and variant bits.
        base = self._base
        node = (base + next(self._count)) & 0xFFFFFFFFFFFF
        h = f"{(base & ~0xFFFFFFFFFFFF) | node:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _dry_request(client: Any, request: dict[str, Any], body: bytes) -> Any:
    """The request boto3 prepares for this Invoke (signed), captured before it is sent."""
    from botocore.awsrequest import AWSResponse

    captured: list[Any] = []

    class _Empty:
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            yield b""

    def capture(request: Any, **kwargs: Any) -> Any:
        captured.append(request)
        # A reply returned from before-send is used instead of sending anything.
        return AWSResponse(request.url, 200, {}, _Empty())

    handler_id = f"lambdakit-lean-capture-{uuid.uuid4().hex}"
    client.meta.events.register_first("before-send.lambda.Invoke", capture, handler_id)
    try:
        client.invoke(**request, Payload=body)
    finally:
        client.meta.events.unregister("before-send.lambda.Invoke", unique_id=handler_id)
    return captured[0]


class _Signer:
    """SigV4 for one request template: canonical pieces computed once, the key once a day."""

    def __init__(self, credentials: Any, template: Any) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        authorization = _text(template.headers.get("Authorization") or "")
        fields = _authorization_fields(authorization)
        if fields is None:
            raise InvalidInput(
                "the lean Invoke path cannot serve this client: boto3 does not sign its "
                f"Invoke with {_ALGORITHM} ({authorization.split(' ')[0] or 'unsigned'})"
            )
        scope, signed = fields
        _, self.region, self.service, _ = scope.split("/", 3)
        self.credentials = credentials
        # The names signed with a session token and without: a refresh can bring one or take
        # it away (static keys after an assumed role, say), and SignedHeaders must follow.
        bare = tuple(name for name in signed if name != "x-amz-security-token")
        tokened = tuple(sorted((*bare, "x-amz-security-token")))
        self._names = {False: (bare, ";".join(bare)), True: (tokened, ";".join(tokened))}
        # botocore's own signer gives the canonical path, query and the headers it signs.
        frozen = credentials.get_frozen_credentials()
        auth = SigV4Auth(frozen, self.service, self.region)
        headers = {name: _text(value) for name, value in template.headers.items()}
        request = AWSRequest(method="POST", url=template.url, headers=headers)
        to_sign = auth.headers_to_sign(request)
        self.static = {
            name: " ".join(str(to_sign[name]).split())
            for name in signed
            if name not in ("x-amz-date", "x-amz-security-token")
        }
        unknown = [name for name in signed if name not in to_sign and name != "host"]
        if unknown:
            raise InvalidInput(
                f"the lean Invoke path cannot serve this client: it signs {unknown} unseen"
            )
        self.prefix = "\n".join(
            ["POST", auth._normalize_url_path(_path(template.url)),
             auth.canonical_query_string(request)]
        )  # fmt: skip
        self._key: tuple[str, str, bytes] = ("", "", b"")
        self._second = -1
        self._amz_date = ""

    def _signing_key(self, secret: str, date: str) -> bytes:
        # The derived key depends only on secret, day, region and service: four HMACs saved.
        held_secret, held_date, key = self._key
        if held_secret == secret and held_date == date:
            return key
        key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
        for part in (self.region, self.service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        self._key = (secret, date, key)  # one tuple: threads see the old or the new
        return key

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:
            # One strftime a second instead of one per request; a stale pair is harmless.
            self._amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._second = second
        return self._amz_date

    def sign(self, headers: dict[str, str], body: bytes, amz_date: str | None = None) -> None:
        """Add X-Amz-Date, the session token (if any) and Authorization to `headers`."""
        frozen = self.credentials.get_frozen_credentials()  # refreshes when botocore says
        amz_date = amz_date or self._now()
        headers["X-Amz-Date"] = amz_date
        if frozen.token:
            headers["X-Amz-Security-Token"] = frozen.token
        values = self.static
        signed, signed_text = self._names[bool(frozen.token)]
        lines = []
        for name in signed:
            if name == "x-amz-date":
                lines.append(f"x-amz-date:{amz_date}")
            elif name == "x-amz-security-token":
                lines.append(f"x-amz-security-token:{frozen.token}")
            else:
                lines.append(f"{name}:{values[name]}")
        canonical = (
            f"{self.prefix}\n" + "\n".join(lines) + f"\n\n{signed_text}\n"
            f"{hashlib.sha256(body).hexdigest()}"
        )
        date = amz_date[:8]
        scope = f"{date}/{self.region}/{self.service}/aws4_request"
        string_to_sign = (
            f"{_ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        key = self._signing_key(frozen.secret_key, date)
        signature = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
        headers["Authorization"] = (
            f"{_ALGORITHM} Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_text}, Signature={signature}"
        )

    def check(self, template: Any) -> None:
        """Refuse to go on unless signing the dry request gives botocore's signature."""
        headers: dict[str, str] = {}
        body = template.body if isinstance(template.body, bytes) else b""
        self.sign(headers, body, amz_date=_text(template.headers["X-Amz-Date"]))
        theirs = _text(template.headers["Authorization"])
        if headers["Authorization"] != theirs:
            raise InvalidInput(
                "the lean Invoke path cannot serve this client: its SigV4 signature of a dry "
                "request differs from botocore's"
            )


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def _authorization_fields(authorization: str) -> tuple[str, tuple[str, ...]] | None:
    """(credential scope after the key id, signed header names) of a SigV4 Authorization."""
    if not authorization.startswith(_ALGORITHM + " "):
        return None
    parts = dict(
        item.strip().split("=", 1)
        for item in authorization[len(_ALGORITHM) + 1 :].split(",")
        if "=" in item
    )
    credential, signed = parts.get("Credential", ""), parts.get("SignedHeaders", "")
    scope = credential.split("/", 1)[1] if "/" in credential else ""
    if scope.count("/") != 3 or not signed:
        return None
    return scope, tuple(signed.split(";"))
