"""lambdakit's exception tree, and the one place where botocore errors are translated."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CredentialsError",
    "DeployError",
    "FunctionNotFound",
    "InvalidInput",
    "InvocationFailed",
    "LambdaServiceError",
    "LambdakitError",
    "LocalServiceError",
    "PayloadTooLarge",
    "ScheduleNotFound",
    "SchedulerError",
    "SourceError",
    "StorageError",
    "Throttled",
    "ToleranceExceeded",
    "translate_client_error",
]


class LambdakitError(Exception):
    """Base class of every error lambdakit raises on purpose."""


class InvalidInput(LambdakitError, ValueError):
    """An argument, record source or setting is not usable; the message names it."""


class CredentialsError(LambdakitError):
    """No AWS credentials or region could be found; the message says what to set."""


class LambdaServiceError(LambdakitError):
    """The Lambda API answered with an error (the translated form of a botocore error)."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.request_id = request_id
        self.operation = operation

    def __str__(self) -> str:
        where = f" during {self.operation}" if self.operation else ""
        code = f"{self.code}: " if self.code else ""
        return f"{code}{self.message}{where}"


class FunctionNotFound(LambdaServiceError):
    """The function, version or alias does not exist."""


class Throttled(LambdaServiceError):
    """Lambda refused the call with 429 TooManyRequestsException."""


class PayloadTooLarge(LambdaServiceError):
    """The request payload was over Lambda's synchronous limit (413)."""


class SchedulerError(LambdaServiceError):
    """The EventBridge Scheduler API answered with an error (ValidationException, ...)."""


class ScheduleNotFound(SchedulerError):
    """The schedule (or its schedule group) does not exist."""


class InvocationFailed(LambdakitError):
    """A batch failed for good; carries everything needed to understand why."""

    def __init__(
        self,
        message: str,
        *,
        function: str = "",
        qualifier: str | None = None,
        batch_index: int | None = None,
        attempts: int = 0,
        error_type: str | None = None,
        log_tail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.function = function
        self.qualifier = qualifier
        self.batch_index = batch_index
        self.attempts = attempts
        self.error_type = error_type
        self.log_tail = log_tail


class ToleranceExceeded(LambdakitError):
    """More records failed than the run's `tolerated_failure` allows; the run stopped."""

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(message)
        # The partial RunResult, so that nothing done so far is lost.
        self.result = result


class SourceError(LambdakitError):
    """The record source raised while the run read it; the run stopped (partial result kept)."""

    def __init__(self, message: str, *, records_read: int, result: Any = None) -> None:
        super().__init__(message)
        self.records_read = records_read  # records the source gave before it raised
        # The partial RunResult, attached when the run has ended, so nothing done is lost.
        self.result = result


class StorageError(LambdakitError):
    """S3 refused or failed a request (a missing bucket, access denied, ...); names the URL."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        status: int | None = None,
        url: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.url = url
        self.operation = operation


class DeployError(LambdakitError):
    """Packaging or deploying a function failed; the message names the step."""


class LocalServiceError(LambdakitError):
    """The embedded local Lambda service could not start or stopped unexpectedly."""


_BY_CODE: dict[str, type[LambdaServiceError]] = {
    "ResourceNotFoundException": FunctionNotFound,
    "TooManyRequestsException": Throttled,
    "RequestEntityTooLargeException": PayloadTooLarge,
    "RequestTooLargeException": PayloadTooLarge,
}


def translate_client_error(
    exc: BaseException, *, operation: str | None = None, service: str = "lambda"
) -> LambdakitError:
    """Translate a botocore exception into lambdakit's tree (the only place that does).

    `service` is the client's ("lambda", "scheduler" or "s3"): the same code means another
    thing. S3's errors become StorageError, its code (or HTTP status) in the message.
    """
    # Imported here so that importing lambdakit.errors stays cheap.
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    if isinstance(exc, ProfileNotFound):
        return CredentialsError(
            f"{exc}: check the name, or add it to ~/.aws/config (`aws configure --profile NAME`)."
        )

    if isinstance(exc, NoRegionError):
        return CredentialsError(
            "No AWS region is configured: pass region=..., set AWS_REGION or "
            "AWS_DEFAULT_REGION, or give the profile a region in ~/.aws/config."
        )
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError(
            "No AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "pass profile=..., or run `aws configure` / `aws sso login`. For the local "
            "service, pass endpoint_url=... (any credentials are accepted there)."
        )
    if not isinstance(exc, ClientError):
        if service == "s3":
            return StorageError(f"{type(exc).__name__}: {exc}", operation=operation)
        return LambdakitError(f"{type(exc).__name__}: {exc}")

    response = exc.response or {}
    error = response.get("Error", {}) or {}
    meta = response.get("ResponseMetadata", {}) or {}
    headers = meta.get("HTTPHeaders", {}) or {}
    code = str(error.get("Code", ""))
    message = str(error.get("Message") or response.get("message") or exc)
    if service == "s3":
        return _storage_error(
            code,
            message,
            meta.get("HTTPStatusCode"),
            operation or getattr(exc, "operation_name", None),
        )
    retry_after = headers.get("retry-after")
    cls = _BY_CODE.get(code, LambdaServiceError)
    if service == "scheduler":
        cls = ScheduleNotFound if code == "ResourceNotFoundException" else SchedulerError
    return cls(
        message,
        code=code,
        status=meta.get("HTTPStatusCode"),
        reason=response.get("Reason") or error.get("Reason"),
        retry_after=float(retry_after) if retry_after not in (None, "") else None,
        request_id=meta.get("RequestId"),
        operation=operation or getattr(exc, "operation_name", None),
    )


# What S3's codes mean to someone reading a dataset or writing results (HEAD replies have no
# body, so only their status says it).
_S3_MEANING = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "no object has this key",
    "AccessDenied": "access denied: the credentials' IAM policy or the bucket policy refuses it",
    "PreconditionFailed": "the object changed since it was listed (its ETag differs)",
    "InvalidAccessKeyId": "the access key is not known to S3",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
}
_S3_BY_STATUS = {403: "AccessDenied", 404: "NoSuchKey", 412: "PreconditionFailed"}


def _storage_error(code: str, message: str, status: Any, operation: str | None) -> StorageError:
    if code.isdigit() or not code:
        code = _S3_BY_STATUS.get(int(status or 0), code)
    meaning = _S3_MEANING.get(code, message)
    return StorageError(
        f"{meaning} ({code or status})", code=code, status=status, operation=operation
    )
