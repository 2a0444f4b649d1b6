"""translate_client_error turns every botocore failure into lambdakit's own tree."""

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from lambdakit.errors import (
    CredentialsError,
    FunctionNotFound,
    LambdakitError,
    LambdaServiceError,
    PayloadTooLarge,
    ScheduleNotFound,
    SchedulerError,
    Throttled,
    translate_client_error,
)


def _client_error(code: str, status: int, headers: dict | None = None, **extra) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
        **extra,
    }
    return ClientError(response, "Invoke")


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("ResourceNotFoundException", 404, FunctionNotFound),
        ("TooManyRequestsException", 429, Throttled),
        ("RequestEntityTooLargeException", 413, PayloadTooLarge),
        ("RequestTooLargeException", 413, PayloadTooLarge),
        ("InvalidParameterValueException", 400, LambdaServiceError),
        ("ServiceException", 500, LambdaServiceError),
    ],
)
def test_codes_map_to_classes(code, status, cls):
    error = translate_client_error(_client_error(code, status))
    assert type(error) is cls
    assert error.code == code and error.status == status
    assert code in str(error) and "Invoke" in str(error)


def test_throttle_keeps_reason_and_retry_after():
    exc = _client_error(
        "TooManyRequestsException",
        429,
        {"retry-after": "2"},
        Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
    )
    error = translate_client_error(exc)
    assert error.retry_after == 2.0
    assert error.reason == "ReservedFunctionConcurrentInvocationLimitExceeded"


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (NoRegionError(), "AWS_REGION"),
        (NoCredentialsError(), "AWS_ACCESS_KEY_ID"),
        (ProfileNotFound(profile="nope"), "nope"),
    ],
)
def test_missing_setup_says_what_to_set(exc, needle):
    error = translate_client_error(exc)
    assert isinstance(error, CredentialsError)
    assert needle in str(error)


def test_unknown_profile_from_a_real_session_is_a_credentials_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    with pytest.raises(ProfileNotFound) as caught:
        boto3.Session(profile_name="no-such-profile")
    assert isinstance(translate_client_error(caught.value), CredentialsError)


def test_anything_else_is_still_a_lambdakit_error():
    error = translate_client_error(RuntimeError("boom"))
    assert isinstance(error, LambdakitError) and "boom" in str(error)


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("ResourceNotFoundException", 404, ScheduleNotFound),
        ("ValidationException", 400, SchedulerError),
        ("ConflictException", 409, SchedulerError),
    ],
)
def test_scheduler_codes_map_to_scheduler_classes(code, status, cls):
    # The same ResourceNotFoundException names a schedule there, not a function.
    error = translate_client_error(_client_error(code, status), service="scheduler")
    assert type(error) is cls and isinstance(error, LambdaServiceError)
    assert error.code == code and error.status == status
