"""The boto3 clients lambdakit uses (Lambda, Scheduler, S3): pools, timeouts, retries set
deliberately; and the one place their botocore errors become lambdakit errors."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

from lambdakit.errors import InvalidInput, translate_client_error

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_FUNCTION_TIMEOUT_S",
    "READ_TIMEOUT_MARGIN_S",
    "botocore_transport_error",
    "call_api",
    "client_error_from_reply",
    "client_read_timeout",
    "make_client",
    "make_s3_client",
    "make_scheduler_client",
    "make_session",
    "s3_endpoint",
    "translating",
]

log = logging.getLogger("lambdakit.aws.connection")

# Lambda's maximum timeout: the read timeout must outlast it when the function's is unknown.
DEFAULT_FUNCTION_TIMEOUT_S = 900
# Added on top of the function timeout: on-demand init may take up to 10 s outside the
# function's timeout, plus the network round trip.
READ_TIMEOUT_MARGIN_S = 20.0
# botocore's default is 60 s; an unreachable endpoint should fail much sooner than that.
CONNECT_TIMEOUT_S = 10.0
# The local service accepts any signature; these only let botocore sign the request.
_LOCAL_CREDENTIALS = {"aws_access_key_id": "lambdakit-local", "aws_secret_access_key": "local"}
_LOCAL_REGION = "us-east-1"


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    concurrency: int = 16,
    read_timeout: float | None = None,
    function_timeout_s: float | None = None,
    client: Any = None,
    session: Any = None,
    parameter_validation: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> Any:
    """Build a boto3 Lambda client sized for `concurrency` threads, with botocore retries off.

    botocore's own retries are switched off (one attempt in total) so that lambdakit's Retry
    policy is the single source of truth: every attempt is counted and classified, a 429 is
    not silently retried behind the adaptive limit's back, and a read timeout never
    re-invokes a function that may still be running. The read timeout is longer than the
    function's timeout for the same reason. `session` (from `make_session` with the same
    endpoint_url, region and profile) lets several clients share one botocore session: a
    second client then costs a few ms instead of ~0.1 s of loading the service model.
    `parameter_validation=False` skips botocore's client-side check of each call's
    parameters: run() builds every Invoke request itself, and the check was ~5% of the
    client's CPU per invocation at batch_size=1. `connect_timeout` (default 10 s) is shorter
    for the client that probes an endpoint in an outage.

    >>> make_client(endpoint_url="http://127.0.0.1:9001")  # doctest: +SKIP
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InvalidInput(f"concurrency must be a positive integer, got {concurrency!r}")
    _check_where(endpoint_url, region, profile)
    if client is not None:
        _check_lambda_client(client)
        _warn_if_pool_too_small(client, concurrency)
        return client
    timeout = client_read_timeout(read_timeout, function_timeout_s)

    from botocore.config import Config

    config = Config(
        # Never below botocore's default of 10; one connection per worker thread.
        max_pool_connections=max(concurrency, 10),
        read_timeout=timeout,
        connect_timeout=connect_timeout,
        # total_max_attempts counts the first call; botocore's `max_attempts` counts only
        # retries, so {"max_attempts": 1} would still retry once.
        retries={"total_max_attempts": 1, "mode": "standard"},
        tcp_keepalive=True,
        parameter_validation=parameter_validation,
    )
    return _service_client("lambda", config, "make_client", session, endpoint_url, region, profile)


def make_scheduler_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    session: Any = None,
) -> Any:
    """A boto3 EventBridge Scheduler client (the same endpoint as Lambda's, locally).

    Management calls only, so botocore's standard retries stay on (3 attempts): each
    Create/UpdateSchedule carries an idempotency token, and a retried create that finds
    its own schedule is handled by schedule() as an update.
    """
    _check_where(endpoint_url, region, profile)
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=60,
        retries={"total_max_attempts": 3, "mode": "standard"},
    )
    return _service_client(
        "scheduler", config, "make_scheduler_client", session, endpoint_url, region, profile
    )


def s3_endpoint(endpoint_url: str | None = None) -> str | None:
    """Where S3 is: `endpoint_url`, else $AWS_ENDPOINT_URL_S3, else None (AWS itself)."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or None
    if endpoint is not None:
        _check_where(endpoint, None, None)
    return endpoint


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    session: Any = None,
    concurrency: int = 10,
) -> Any:
    """A boto3 S3 client from the same profile and region as the Lambda client's.

    `endpoint_url` (else $AWS_ENDPOINT_URL_S3) points it at a local S3 (moto, MinIO): then,
    as for the local Lambda service, dummy keys stand in when none are configured, and
    addressing is path-style (no DNS name per bucket). The Lambda client's own endpoint_url
    is not S3's. botocore's standard retries stay on: GETs and PUTs of whole objects are
    safe to repeat.
    """
    from botocore.config import Config

    endpoint = s3_endpoint(endpoint_url)
    _check_where(endpoint, region, profile)
    config = Config(
        max_pool_connections=max(concurrency, 10),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=60,
        retries={"total_max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if endpoint is not None else None,
        tcp_keepalive=True,
    )
    if session is None:
        session = make_session(endpoint_url=endpoint, region=region, profile=profile)
    return _service_client("s3", config, "make_s3_client", session, endpoint, region, profile)


@contextlib.contextmanager
def translating(operation: str, service: str = "s3") -> Iterator[None]:
    """Within it, a botocore error (a response body's read included) becomes ours."""
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    try:
        yield
    except (ClientError, BotoCoreError, HTTPError, OSError) as exc:
        # HTTPError and OSError: urllib3's and the socket's, while a streamed body is read.
        raise translate_client_error(exc, operation=operation, service=service) from exc


def _service_client(
    service: str,
    config: Any,
    operation: str,
    session: Any,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
) -> Any:
    """One boto3 client of `service`: dummy region and keys only for an endpoint_url."""
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    if session is None:
        session = make_session(endpoint_url=endpoint_url, region=region, profile=profile)
    try:
        credentials = session.get_credentials()  # looked up once per session, then kept
        kwargs: dict[str, Any] = {"config": config}
        if endpoint_url is not None:
            kwargs["endpoint_url"] = endpoint_url
            if session.region_name is None:
                kwargs["region_name"] = _LOCAL_REGION
            if credentials is None:
                kwargs.update(_LOCAL_CREDENTIALS)
        elif credentials is None:
            raise NoCredentialsError()
        return session.client(service, **kwargs)
    except BotoCoreError as exc:
        raise translate_client_error(exc, operation=operation) from exc


def make_session(
    *, endpoint_url: str | None = None, region: str | None = None, profile: str | None = None
) -> Any:
    """A boto3 Session for `make_client(session=...)`: one per run, shared by its clients."""
    _check_where(endpoint_url, region, profile)
    import boto3
    import botocore.session
    from botocore.exceptions import BotoCoreError

    try:
        core = botocore.session.get_session()
        core.register_component("data_loader", _data_loader(core.get_config_variable("data_path")))
        if profile is not None:
            core.set_config_variable("profile", profile)
        if endpoint_url is not None:
            # Probing the EC2/container metadata endpoints costs seconds off AWS, and the
            # local service needs no real identity anyway.
            resolver = core.get_component("credential_provider")
            resolver.remove("iam-role")
            resolver.remove("container-role")
        return boto3.Session(botocore_session=core, region_name=region)
    except BotoCoreError as exc:
        raise translate_client_error(exc, operation="make_session") from exc


@functools.lru_cache(maxsize=4)
def _data_loader(data_path: str | None) -> Any:
    """botocore's loader of its JSON data files, one per data path for the whole process.

    Each botocore session otherwise parses the Lambda service model and endpoints.json
    again (~40 ms, a third of a small run); the files are read-only, so one parse serves
    every run's session.
    """
    from botocore.loaders import create_loader

    return create_loader(data_path)


def _check_where(endpoint_url: Any, region: Any, profile: Any) -> None:
    """Refuse bad settings by name (botocore would fail deep inside, naming none)."""
    for name, value in (("endpoint_url", endpoint_url), ("region", region), ("profile", profile)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InvalidInput(f"{name} must be a non-empty string, got {value!r}")
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise InvalidInput(f"endpoint_url must be an http(s) URL, got {endpoint_url!r}")


def client_read_timeout(read_timeout: float | None, function_timeout_s: float | None) -> float:
    """The client read timeout: explicit, or the function timeout plus a margin."""
    for name, value in (("read_timeout", read_timeout), ("function_timeout_s", function_timeout_s)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (number and value > 0):
            raise InvalidInput(f"{name} must be a positive number of seconds, got {value!r}")
    if read_timeout is None:
        base = function_timeout_s if function_timeout_s is not None else DEFAULT_FUNCTION_TIMEOUT_S
        return float(base) + READ_TIMEOUT_MARGIN_S
    if function_timeout_s is not None and read_timeout <= function_timeout_s:
        log.warning(
            "read_timeout %.1fs is not longer than the function timeout %.1fs: a call that "
            "times out on the client may still be running, and a retry would run it twice",
            read_timeout,
            function_timeout_s,
        )
    return float(read_timeout)


def _check_lambda_client(client: Any) -> None:
    """Refuse a `client=` that is not a botocore Lambda client, before it fails mid-run."""
    model = getattr(getattr(client, "meta", None), "service_model", None)
    service = getattr(model, "service_name", None)
    if service != "lambda" or not callable(getattr(client, "invoke", None)):
        what = f"a {service!r} client" if service else type(client).__name__
        raise InvalidInput(f"client must be a boto3 Lambda client (boto3.client): got {what}")


def _warn_if_pool_too_small(client: Any, concurrency: int) -> None:
    pool = getattr(getattr(client, "meta", None), "config", None)
    size = getattr(pool, "max_pool_connections", None)
    if isinstance(size, int) and size < concurrency:
        log.warning(
            "the client's max_pool_connections (%d) is below concurrency (%d): threads will "
            "wait for connections and urllib3 will discard some",
            size,
            concurrency,
        )


def call_api(client: Any, operation: str, **kwargs: Any) -> Any:
    """Call one Lambda (or Scheduler) API operation, turning botocore errors into ours."""
    from botocore.exceptions import BotoCoreError, ClientError

    model = getattr(getattr(client, "meta", None), "service_model", None)
    service = getattr(model, "service_name", None) or "lambda"
    try:
        return getattr(client, operation)(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, operation=operation, service=service) from exc


def client_error_from_reply(client: Any, operation: str, http_response: Any) -> Any:
    """The botocore ClientError that `client` raises for this error reply (status >= 300).

    For the lean Invoke path, which sends the request itself: its error replies are parsed by
    the client's own botocore parser, as botocore's Endpoint parses them (the Error code and
    message, ResponseMetadata, then the modeled error's fields such as Reason), so that they
    reach translate_client_error exactly as boto3's exception would.
    """
    from botocore.endpoint import convert_to_response_dict
    from botocore.exceptions import ClientError
    from botocore.parsers import create_parser

    model = client.meta.service_model
    operation_model = model.operation_model(operation)
    parser = create_parser(model.protocol)
    response = convert_to_response_dict(http_response, operation_model)
    parsed = parser.parse(response, operation_model.output_shape)
    code = parsed.get("Error", {}).get("Code")
    shape = model.shape_for_error_code(code) if code else None
    if shape is not None:
        parsed.update(parser.parse(response, shape))
    return ClientError(parsed, operation)


def botocore_transport_error(exc: BaseException, url: str, proxy_url: str | None) -> Any:
    """The botocore exception boto3 raises for this urllib3 failure to send or read a request.

    The table of botocore's URLLib3Session.send, for the lean Invoke path, which uses the same
    urllib3 pool directly: a failure then has the same error type on both paths.
    """
    import socket

    from botocore import exceptions as boto
    from botocore.httpsession import mask_proxy_url
    from urllib3 import exceptions as url3

    if isinstance(exc, url3.SSLError):
        return boto.SSLError(endpoint_url=url, error=exc)
    if isinstance(exc, (url3.NewConnectionError, socket.gaierror)):
        return boto.EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, url3.ProxyError):
        return boto.ProxyConnectionError(proxy_url=mask_proxy_url(proxy_url), error=exc)
    if isinstance(exc, url3.ConnectTimeoutError):
        return boto.ConnectTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, url3.ReadTimeoutError):
        return boto.ReadTimeoutError(endpoint_url=url, error=exc)
    if isinstance(exc, url3.ProtocolError):
        return boto.ConnectionClosedError(error=exc, request=None, endpoint_url=url)
    return boto.HTTPClientError(error=exc)
