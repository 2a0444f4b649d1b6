"""Invoking over plain HTTPS: Lambda function URLs and API Gateway routes (HttpInvoker)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import urllib3

from lambdakit.aws.connection import CONNECT_TIMEOUT_S
from lambdakit.aws.function_urls import parse_function_url, safe_url
from lambdakit.aws.reply import (
    PER_RECORD,
    check_outputs,
    read_item_errors,
    read_response,
    read_retryable_items,
)
from lambdakit.errors import InvalidInput, translate_client_error
from lambdakit.invocation import (
    CLIENT_ERROR,
    CONNECTION_ERROR,
    FUNCTION_ERROR,
    PAYLOAD_TOO_LARGE,
    SERVICE_ERROR,
    THROTTLE,
    TIMEOUT,
    Outcome,
    Target,
)

if TYPE_CHECKING:
    from lambdakit.invocation import Batch

__all__ = ["AuthHook", "HttpInvoker", "HttpRequest"]

_MAX_MESSAGE = 2000  # an HTML error page is not worth keeping whole


@dataclass(frozen=True)
class HttpRequest:
    """One request as an `auth` callable sees it, before it is sent."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


AuthHook = Callable[[HttpRequest], Mapping[str, str]]


class HttpInvoker:
    """POST each batch to a function URL or API Gateway route; never raises for failures.

    The reply body is read by the same batch contract as Invoke's payload. Unless a resolved
    `target` says which code answers (see `function_urls.url_target`), the cache is keyed by
    the URL and `version` (the cache namespace: a release tag, the deployed CodeSha256, ...):
    change it when the code behind the URL changes, or run with cache=False.

    auth: None; "aws_iam" signs requests with SigV4 from the standard credential chain
    (function URLs with AuthType AWS_IAM, IAM-authorised API routes; a lambdakit local URL
    falls back to its dummy credentials); or a callable(HttpRequest) -> headers to add, called
    for every request (a fresh bearer token, a custom signature). `headers` go with every
    request (x-api-key, Authorization); their values are never recorded anywhere.

    `outputs` says how a 2xx body that is not one output per record is read ("per_record",
    the strict default; "per_batch"; "raw" for text): see `reply.read_response`.

    Statuses: 2xx -> the batch contract; 429 and 503 -> throttle (Retry-After honoured);
    502 -> function_error; 504 and read timeouts -> timeout; other 5xx -> service_error;
    413 -> the batch is bisected; other 4xx -> client_error (not retried).

    >>> lambdakit.run(records=orders, invoker=HttpInvoker(url, version="v7"))  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        concurrency: int = 16,
        id_field: str | None = None,
        version: str = "url",
        auth: str | AuthHook | None = None,
        region: str | None = None,
        profile: str | None = None,
        target: Target | None = None,
        executed_version: str | None = None,
        outputs: str = PER_RECORD,
    ) -> None:
        parts = urlsplit(url if isinstance(url, str) else "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"url must be an http(s) URL, got {safe_url(str(url))!r}")
        if not timeout or timeout <= 0:
            raise InvalidInput(f"timeout must be a positive number of seconds, got {timeout!r}")
        if auth not in (None, "aws_iam") and not callable(auth):
            raise InvalidInput(
                f"auth must be None, 'aws_iam' or a callable(request) -> headers, got {auth!r}"
            )
        if headers is not None and not (
            isinstance(headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
        ):
            raise InvalidInput("headers must map header names to string values")
        self.url = url
        self.safe_url = safe_url(url)
        self.id_field = id_field
        self.outputs = check_outputs(outputs)
        self.version = str(version)
        self.headers = {"Content-Type": "application/json", **dict(headers or {})}
        self.target = target or Target(
            function_name=self.safe_url,
            function_arn=self.safe_url,
            qualifier=None,
            versions={self.version: 1.0},
            cache_tokens={self.version: f"url:{self.version}"},
            timeout_s=math.ceil(timeout),
            memory_mb=0,
        )
        self.executed_version = executed_version or next(iter(self.target.versions))
        # Retries off for the same reason as in make_client: lambdakit's policy decides.
        self._pool = urllib3.PoolManager(
            maxsize=max(int(concurrency), 1),
            retries=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=float(timeout)),
        )
        self._hook: AuthHook | None = auth if callable(auth) else None
        self._signer = _Signer(url, region, profile) if auth == "aws_iam" else None

    def __repr__(self) -> str:
        # The URL without its query string: a key passed there must not reach a log.
        return f"HttpInvoker({self.safe_url!r})"

    def invoke(self, batch: Batch) -> Outcome:
        """POST `batch.body` once and read the reply by the batch contract."""
        headers = dict(self.headers)
        if self._hook is not None:
            try:
                added = self._hook(HttpRequest("POST", self.url, dict(headers), batch.body))
                headers.update({str(k): str(v) for k, v in dict(added or {}).items()})
            except Exception as exc:  # the user's hook: its failure is this attempt's failure
                return Outcome(
                    CLIENT_ERROR,
                    error_type="Lambdakit.AuthHookFailed",
                    error_message=f"auth callable raised {type(exc).__name__}: {exc}",
                )
        if self._signer is not None:
            headers = self._signer.sign(self.url, batch.body, headers)
        try:
            response = self._pool.request(
                "POST", self.url, body=batch.body, headers=headers, retries=False
            )
        except urllib3.exceptions.ReadTimeoutError as exc:
            # The function may have run: the retry policy decides whether to send it again.
            return Outcome(
                TIMEOUT, error_type="ReadTimeoutError", error_message=self._scrubbed(exc)
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return Outcome(
                CONNECTION_ERROR, error_type=type(exc).__name__, error_message=self._scrubbed(exc)
            )

        status = response.status
        request_id = response.headers.get("x-amzn-RequestId") or response.headers.get(
            "apigw-requestid"
        )
        if 200 <= status < 300:
            ids = self._ids(batch.items) if self.id_field else None
            n, body = len(batch.items), response.data
            outcome, outputs, failed, error_type, message = read_response(
                body, None, n, ids, self.outputs
            )
            reasons = read_item_errors(body, n, ids) if failed else {}
            retryable = read_retryable_items(body, n, ids) if failed else ()
            return Outcome(
                outcome,
                http_status=status,
                executed_version=self.executed_version,
                request_id=request_id,
                error_type=error_type,
                error_message=message,
                outputs=outputs,
                failed_items=failed,
                item_errors=reasons,
                retryable_items=retryable,
            )
        error_type, message = _error_fields(response)
        retry_after = response.headers.get("Retry-After")
        return Outcome(
            _classify(status),
            http_status=status,
            request_id=request_id,
            error_type=PAYLOAD_TOO_LARGE if status == 413 else error_type,
            error_message=message,
            retry_after_s=_seconds(retry_after),
        )

    def _scrubbed(self, exc: BaseException) -> str:
        """An exception's text with the URL's query string (maybe a key) left out."""
        text = str(exc)
        query = urlsplit(self.url).query
        return text.replace(query, "***") if query else text

    def _ids(self, items: list[Any]) -> list[Any]:
        return [item.get(self.id_field) if isinstance(item, dict) else None for item in items]


def _classify(status: int) -> str:
    """The outcome class of an HTTP error status from a function URL or API Gateway."""
    if status in (429, 503):
        return THROTTLE  # 503: the gateway or the function's concurrency is full; nothing ran
    if status == 502:
        return FUNCTION_ERROR  # both answer 502 when the function raised or replied badly
    if status == 504:
        return TIMEOUT  # the gateway gave up waiting: the function may still have run
    if status >= 500:
        return SERVICE_ERROR
    return CLIENT_ERROR


def _error_fields(response: Any) -> tuple[str, str]:
    code = (response.headers.get("x-amzn-ErrorType") or "").split(":")[0]
    text = response.data.decode("utf-8", "replace")
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        code = code or str(body.get("errorType") or body.get("__type") or "")
        text = str(body.get("Message") or body.get("message") or body.get("errorMessage") or text)
    return code or f"HTTP{response.status}", text[:_MAX_MESSAGE] or f"HTTP {response.status}"


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: rare from AWS, and the backoff covers it


class _Signer:
    """SigV4 signing for IAM-authorised function URLs ("lambda") and API routes."""

    def __init__(self, url: str, region: str | None, profile: str | None) -> None:
        import boto3
        from botocore.credentials import Credentials
        from botocore.exceptions import BotoCoreError, NoCredentialsError

        parts = urlsplit(url)
        labels = parts.netloc.split(".")
        local = parse_function_url(url).kind == "local"
        # <id>.lambda-url.<region>.on.aws or <id>.execute-api.<region>.amazonaws.com
        self.service = "lambda" if "lambda-url" in labels or local else "execute-api"
        for marker in ("lambda-url", "execute-api"):
            if region is None and marker in labels and labels.index(marker) + 1 < len(labels):
                region = labels[labels.index(marker) + 1]
        try:
            session = boto3.Session(profile_name=profile, region_name=region)
            self.credentials = session.get_credentials()
            if self.credentials is None and local:
                # What make_client signs with for the local service, which knows these keys.
                self.credentials = Credentials("lambdakit-local", "local")
            if self.credentials is None:
                raise NoCredentialsError()
        except BotoCoreError as exc:
            raise translate_client_error(exc, operation="HttpInvoker") from exc
        self.region = region or session.region_name or "us-east-1"

    def sign(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """The headers with SigV4 Authorization (and session token) added."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(self.credentials, self.service, self.region).add_auth(request)
        return dict(request.headers.items())
