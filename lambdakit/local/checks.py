"""AWS-shaped API errors, and the checks on function settings sent to the local service.

A value of the wrong JSON type is an InvalidRequestContentException (AWS cannot deserialise
it); a well-typed value out of range is an InvalidParameterValueException. Every message
names the field and the value that was refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "LOWER_CASE_MESSAGE",
    "ApiError",
    "alias_version",
    "bad_content",
    "check_alias_name",
    "check_reservation",
    "check_revision",
    "check_tags",
    "conflict",
    "invalid",
    "not_found",
    "not_ready",
    "optional",
    "routing_weights",
    "validate_config",
    "validate_function_name",
]

_ALIAS_RE = re.compile(r"^(?![0-9]+$)[a-zA-Z0-9_-]{1,128}$")
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENV_KEY_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
_PYTHON_RE = re.compile(r"^python3\.\d+$")
_PROVIDED = ("provided", "provided.al2", "provided.al2023")
# Variables Lambda sets itself; AWS refuses them in a function's Environment.
_RESERVED_ENV = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}  # fmt: skip
_MAX_ENV_BYTES = 4096
# Error shapes whose message member botocore's model spells lower-case (the rest spell it
# "Message"), plus RequestEntityTooLargeException, which AWS sends for the model's
# RequestTooLargeException, the signature layer's errors and the connection's (timeouts,
# headers too large). tests/local pin it to the model.
LOWER_CASE_MESSAGE = frozenset({
    "AliasLimitExceededException", "CapacityProviderLimitExceededException",
    "CodeArtifactUserDeletedException", "CodeArtifactUserFailedException",
    "CodeArtifactUserPendingException", "CodeStorageExceededException",
    "FunctionVersionsPerCapacityProviderLimitExceededException",
    "InvalidParameterValueException", "InvalidRequestContentException",
    "ModeNotSupportedException", "PolicyLengthExceededException", "PreconditionFailedException",
    "ProvisionedConcurrencyConfigNotFoundException", "RequestTooLargeException",
    "ResourceConflictException", "ResourceNotReadyException", "RuntimeAliasDeletedException",
    "RuntimeVersionDeletedException", "SerializedRequestEntityTooLargeException",
    "TooManyRequestsException", "UnsupportedMediaTypeException",
    "RequestEntityTooLargeException", "UnrecognizedClientException",
    "InvalidSignatureException", "IncompleteSignatureException", "AccessDeniedException",
    "MissingAuthenticationTokenException", "RequestTimeoutException",
    "RequestHeaderFieldsTooLargeException",
})  # fmt: skip


class ApiError(Exception):
    """An error reply of the Lambda REST API: HTTP status, full error code, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        error_type: str = "User",
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.retry_after = retry_after
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        """The JSON body AWS sends with this error."""
        key = "message" if self.code in LOWER_CASE_MESSAGE else "Message"
        out: dict[str, Any] = {"Type": self.error_type, key: self.message}
        if self.reason:
            out["Reason"] = self.reason
        return out


def invalid(message: str) -> ApiError:
    """400 InvalidParameterValueException."""
    return ApiError(400, "InvalidParameterValueException", message)


def bad_content(message: str) -> ApiError:
    """400 InvalidRequestContentException (a body that cannot be read as the operation's JSON)."""
    return ApiError(400, "InvalidRequestContentException", message)


def not_found(message: str) -> ApiError:
    """404 ResourceNotFoundException."""
    return ApiError(404, "ResourceNotFoundException", message)


def conflict(message: str) -> ApiError:
    """409 ResourceConflictException."""
    return ApiError(409, "ResourceConflictException", message)


def not_ready(state: str) -> ApiError:
    """409 for a function that is not Active (Pending, Failed, Inactive)."""
    return conflict(
        "The operation cannot be performed at this time. "
        f"The function is currently in the following state: {state}"
    )


def optional(body: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """body[key] when present, checked to be of a JSON type; None when absent."""
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
    if not ok:
        wanted = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise bad_content(
            f"Could not parse request body into json: field {key} must be {wanted}, "
            f"got {json.dumps(value)[:80]} ({type(value).__name__})."
        )
    return value


def validate_function_name(name: Any) -> str:
    """A function name as CreateFunction accepts it."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise invalid(
            f"Invalid FunctionName {name!r}: use 1 to 64 letters, digits, hyphens or underscores."
        )
    return name


def validate_config(
    body: dict[str, Any], *, creating: bool, runtime: str | None = None
) -> dict[str, Any]:
    """The function settings present in a Create/UpdateFunctionConfiguration body, checked."""
    out: dict[str, Any] = {}
    if creating:
        validate_function_name(body.get("FunctionName"))
        if optional(body, "Role", str) is None:
            raise invalid("Role is required: any IAM role ARN string is accepted locally.")
        out["Role"] = body["Role"]
        if body.get("PackageType", "Zip") != "Zip":
            raise invalid("Only PackageType Zip is supported by lambdakit local (no images).")
    elif optional(body, "Role", str) is not None:
        out["Role"] = body["Role"]
    new_runtime = optional(body, "Runtime", str)
    if new_runtime is not None:
        if not (_PYTHON_RE.match(new_runtime) or new_runtime in _PROVIDED):
            raise invalid(
                f"The runtime parameter of {new_runtime} is not supported by lambdakit local: "
                "use python3.x (run on the host interpreter) or provided.al2023 / provided.al2."
            )
        out["Runtime"] = runtime = new_runtime
    elif creating:
        raise invalid("Runtime is required for a Zip package: e.g. python3.11 or provided.al2023.")
    handler = optional(body, "Handler", str)
    if handler is not None:
        if not handler or len(handler) > 128 or re.search(r"\s", handler):
            raise invalid(f"Invalid Handler {handler!r}: 1-128 characters without whitespace.")
        out["Handler"] = handler
    elif creating and runtime and runtime.startswith("python"):
        raise invalid("Handler is required for a python runtime, e.g. 'app.handler'.")
    timeout = optional(body, "Timeout", int)
    if timeout is not None:
        if not 1 <= timeout <= 900:
            raise invalid(f"Timeout must be between 1 and 900 seconds, got {timeout}.")
        out["Timeout"] = timeout
    memory = optional(body, "MemorySize", int)
    if memory is not None:
        if not 128 <= memory <= 10240:
            raise invalid(f"MemorySize must be between 128 and 10240 MB, got {memory}.")
        out["MemorySize"] = memory
    description = optional(body, "Description", str)
    if description is not None:
        if len(description) > 256:
            raise invalid("Description must be at most 256 characters.")
        out["Description"] = description
    environment = optional(body, "Environment", dict)
    if environment is not None:
        out["Environment"] = {"Variables": _environment(environment)}
    if optional(body, "Layers", list):
        raise invalid(
            "Layers are not supported by lambdakit local: bundle dependencies in the zip."
        )
    architectures = optional(body, "Architectures", list)
    if architectures is not None and architectures not in (["x86_64"], ["arm64"]):
        raise invalid(f"Architectures must be ['x86_64'] or ['arm64'], got {architectures!r}.")
    if architectures is not None:
        out["Architectures"] = architectures
    return out


def _environment(environment: dict[str, Any]) -> dict[str, str]:
    variables = optional(environment, "Variables", dict) or {}
    for key, value in variables.items():
        if not _ENV_KEY_RE.match(key):
            raise invalid(f"Invalid environment variable name {key!r}: [a-zA-Z][a-zA-Z0-9_]*.")
        if not isinstance(value, str):
            raise bad_content(
                f"Could not parse request body into json: environment variable {key} must be "
                f"a string, got {json.dumps(value)[:80]}."
            )
    reserved = sorted(set(variables) & _RESERVED_ENV)
    if reserved:
        raise invalid(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not supported "
            f"for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    size = len(json.dumps(variables, separators=(",", ":")).encode())
    if size > _MAX_ENV_BYTES:
        raise invalid(
            f"Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. Measured: {size} bytes."
        )
    return dict(variables)


def check_revision(current: dict[str, Any], revision_id: str | None) -> None:
    """412 PreconditionFailedException when a RevisionId is given and is not the current one."""
    if revision_id is not None and revision_id != current.get("RevisionId"):
        raise ApiError(
            412,
            "PreconditionFailedException",
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )


def alias_version(value: Any) -> str:
    """An alias's FunctionVersion: $LATEST or a version number."""
    if not isinstance(value, str) or not (value == "$LATEST" or value.isdigit()):
        raise invalid(f"FunctionVersion must be $LATEST or a version number, got {value!r}.")
    return value


def routing_weights(routing: Any) -> dict[str, float]:
    """RoutingConfig.AdditionalVersionWeights: at most one extra version, weight 0..1."""
    if not isinstance(routing, dict):
        raise invalid("RoutingConfig must be an object with AdditionalVersionWeights.")
    weights = routing.get("AdditionalVersionWeights") or {}
    if not isinstance(weights, dict) or len(weights) > 1:
        raise invalid("AdditionalVersionWeights may name at most one additional version.")
    out = {}
    for version, weight in weights.items():
        if not str(version).isdigit():
            raise invalid(
                f"Additional version must be a published version number, got {version!r}."
            )
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not 0.0 <= weight <= 1.0
        ):
            raise invalid(
                f"Weight of version {version} must be between 0.0 and 1.0, got {weight!r}."
            )
        out[str(version)] = float(weight)
    return out


def check_reservation(value: Any, account_concurrency: int, reserved_by_others: int) -> int:
    """A ReservedConcurrentExecutions that leaves the account's unreserved minimum free."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"ReservedConcurrentExecutions must be an integer >= 0, got {value!r}.")
    # AWS keeps 100 unreserved; a small local account keeps a tenth of itself.
    minimum = min(100, account_concurrency // 10)
    if account_concurrency - reserved_by_others - value < minimum:
        raise invalid(
            f"Specified ReservedConcurrentExecutions for function decreases account's "
            f"UnreservedConcurrentExecution below its minimum value of [{minimum}]."
        )
    return value


def check_tags(tags: Any) -> dict[str, str]:
    """Tags as AWS accepts them: at most 50, keys 1-128 and values 0-256 characters."""
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise bad_content(
            "Could not parse request body into json: Tags must map strings to strings."
        )
    if len(tags) > 50:
        raise invalid(f"A function has at most 50 tags, got {len(tags)}.")
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:") or len(value) > 256:
            raise invalid(f"Invalid tag {key!r}: keys 1-128 characters not starting with aws:, "
                          "values at most 256.")  # fmt: skip
    return tags


def check_alias_name(name: Any) -> str:
    """An alias name: 1-128 of [a-zA-Z0-9-_], not only digits (that would read as a version)."""
    if not isinstance(name, str) or not _ALIAS_RE.match(name):
        raise invalid(f"Invalid alias name {name!r}: 1-128 of [a-zA-Z0-9-_], not only digits.")
    return name
