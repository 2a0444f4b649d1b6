"""LambdaInvoker: one batch through boto3's Invoke (RequestResponse, LogType=Tail)."""

from __future__ import annotations

import base64
from typing import Any

from lambdakit.aws.reply import (
    PER_RECORD,
    check_outputs,
    parse_report,
    read_item_errors,
    read_response,
    read_retryable_items,
)
from lambdakit.errors import LambdaServiceError, translate_client_error
from lambdakit.invocation import (
    CLIENT_ERROR,
    CONNECTION_ERROR,
    PAYLOAD_TOO_LARGE,
    SERVICE_ERROR,
    THROTTLE,
    TIMEOUT,
    Batch,
    Outcome,
    Target,
)

__all__ = [
    "LambdaInvoker",
    "api_error_outcome",
    "botocore_error_outcome",
    "reply_outcome",
    "transport_error_outcome",
]


class LambdaInvoker:
    """Invoke a Lambda function with boto3 (RequestResponse, LogType=Tail); never raises.

    `id_field` names the record field that handlers use as `itemIdentifier` in
    `batchItemFailures`; without it the identifier is the item's position in the batch.
    `function_name` is the FunctionName sent (default: the target's ARN); give the plain name
    the target was resolved from, as run() does, since botocore sends an ARN more slowly.
    `probe_client` (short timeouts) is what `probe()` asks; default: `client`.
    `outputs` says how a reply that is not one output per record is read ("per_record",
    the strict default; "per_batch"; "raw"): see `reply.read_response`.
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

        self.client = client
        self.probe_client = probe_client if probe_client is not None else client
        self.target = target
        self.function_name = function_name or target.function_arn
        self.id_field = id_field
        self.outputs = check_outputs(outputs)
        self.qualifier = qualifier if qualifier is not None else target.qualifier
        # InvocationType is left to its default, RequestResponse: one header less to sign and
        # send, which at batch_size=1 was ~5% of the client's CPU per invocation.
        self._request: dict[str, Any] = {"FunctionName": self.function_name, "LogType": "Tail"}
        if self.qualifier:
            self._request["Qualifier"] = self.qualifier
        self._errors = (ClientError, BotoCoreError)

    @property
    def request(self) -> dict[str, Any]:
        """The Invoke parameters every batch is sent with, Payload aside (a copy)."""
        return dict(self._request)

    def invoke(self, batch: Batch) -> Outcome:
        """Send `batch.body` once and read the response by the batch contract."""
        try:
            response = self.client.invoke(**self._request, Payload=batch.body)
            payload = response["Payload"].read()
        except self._errors as exc:
            return botocore_error_outcome(exc)

        return reply_outcome(
            batch,
            payload,
            function_error=response.get("FunctionError"),
            status=response.get("StatusCode"),
            executed_version=response.get("ExecutedVersion"),
            request_id=response["ResponseMetadata"].get("RequestId"),
            log_result=response.get("LogResult"),
            outputs=self.outputs,
            id_field=self.id_field,
        )

    def probe(self) -> bool:
        """Whether the Lambda endpoint answers at all (GetFunctionConfiguration; never raises).

        Any reply below 500 counts, an access denial included: the question is whether the
        endpoint is there, not whether this call is allowed. Nothing is invoked.
        """
        try:
            self.probe_client.get_function_configuration(FunctionName=self.function_name)
        except self._errors[0] as exc:  # ClientError: an answer, unless the service failed
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return status is None or status < 500
        except self._errors[1]:  # BotoCoreError: refused, reset, timed out
            return False
        return True


def reply_outcome(
    batch: Batch,
    payload: bytes,
    *,
    function_error: str | None,
    status: int | None,
    executed_version: str | None,
    request_id: str | None,
    log_result: str | None,
    outputs: str,
    id_field: str | None,
) -> Outcome:
    """The Outcome of an answered Invoke (2xx), read by the batch contract.

    Both Invoke paths (boto3's and the lean one) read their replies here, so the same reply
    is the same Outcome whichever path carried it.
    """
    log_tail = _decode_log(log_result)
    # A record without the field gets None; an identifier naming it then matches nothing
    # and fails the whole batch instead of being lost.
    ids = (
        [item.get(id_field) if isinstance(item, dict) else None for item in batch.items]
        if id_field
        else None
    )
    n = len(batch.items)
    outcome, read, failed, error_type, message = read_response(
        payload, function_error, n, ids, outputs
    )
    reasons = read_item_errors(payload, n, ids) if failed else {}
    retryable = read_retryable_items(payload, n, ids) if failed else ()
    return Outcome(
        outcome=outcome,
        http_status=status,
        executed_version=executed_version,
        request_id=request_id,
        error_type=error_type,
        error_message=message,
        outputs=read,
        failed_items=failed,
        log_tail=log_tail,
        report=parse_report(log_tail),
        item_errors=reasons,
        retryable_items=retryable,
    )


def _decode_log(log_result: str | None) -> str | None:
    if not log_result:
        return None
    try:
        return base64.b64decode(log_result).decode("utf-8", "replace")
    except ValueError:
        return None


def botocore_error_outcome(exc: BaseException) -> Outcome:
    """The Outcome of a botocore exception from an Invoke: an error reply, or no answer."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return api_error_outcome(exc)
    return transport_error_outcome(exc)


def api_error_outcome(exc: BaseException) -> Outcome:
    """The Outcome of an Invoke error reply (a botocore ClientError), via translate_client_error."""
    error = translate_client_error(exc, operation="Invoke")
    if not isinstance(error, LambdaServiceError):
        return Outcome(CLIENT_ERROR, error_type=type(exc).__name__, error_message=str(error))
    status = error.status
    error_type = error.code or type(error).__name__
    message = error.message + (f" ({error.reason})" if error.reason else "")
    if status == 429:
        outcome = THROTTLE
    elif status == 413:
        outcome, error_type = CLIENT_ERROR, PAYLOAD_TOO_LARGE
    elif status is not None and status >= 500:
        outcome = SERVICE_ERROR
    else:
        outcome = CLIENT_ERROR
    return Outcome(
        outcome,
        http_status=status,
        request_id=error.request_id,
        error_type=error_type,
        error_message=message,
        retry_after_s=error.retry_after,
        reason=error.reason if status == 429 else None,
    )


def transport_error_outcome(exc: BaseException) -> Outcome:
    """The Outcome of an Invoke that got no answer (a BotoCoreError): timeout, lost connection."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, ReadTimeoutError

    message = str(translate_client_error(exc, operation="Invoke"))
    # A read timeout means the function may have run: the retry policy decides, not botocore.
    if isinstance(exc, ReadTimeoutError):
        outcome = TIMEOUT
    elif isinstance(exc, (BotoConnectionError, HTTPClientError)):
        # Refused, reset, closed mid-response, connect timeout, broken response stream.
        outcome = CONNECTION_ERROR
    else:
        outcome = CLIENT_ERROR  # e.g. no credentials: retrying cannot help
    return Outcome(outcome, error_type=type(exc).__name__, error_message=message)
