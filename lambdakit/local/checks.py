"""AWS-shaped API errors, and the checks on function settings sent to the local service.

A value of the wrong JSON type is an InvalidRequestContentException (AWS cannot deserialise
it); a well-typed value out of range is an InvalidParameterValueException. Every message
names the field and the value that was refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = [
    "LAYERS_PER_FUNCTION",
    "LAYER_VERSION_ARN_RE",
    "LOWER_CASE_MESSAGE",
    "SETTINGS",
    "ApiError",
    "alias_version",
    "bad_content",
    "check_alias_name",
    "check_architectures",
    "check_layers",
    "check_reservation",
    "check_revision",
    "check_tags",
    "conflict",
    "invalid",
    "not_found",
    "not_ready",
    "optional",
    "refused",
    "routing_weights",
    "validate_config",
    "validate_function_name",
    "vpc_id",
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
LAYERS_PER_FUNCTION = 5
# botocore's LayerVersionArn pattern (a region's layer; AWS's own awslayer ARNs aside).
LAYER_VERSION_ARN_RE = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
    r"[a-zA-Z0-9-_]+:[0-9]+$"
)
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
        message_key: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.retry_after = retry_after
        self.error_type = error_type
        # None: as LOWER_CASE_MESSAGE says for the code (a code two models spell apart, such
        # as ValidationException, names its key itself).
        self.message_key = message_key

    def body(self) -> dict[str, Any]:
        """The JSON body AWS sends with this error."""
        key = self.message_key or ("message" if self.code in LOWER_CASE_MESSAGE else "Message")
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


# What lambdakit local does with each member of CreateFunction / UpdateFunctionConfiguration
# (and UpdateFunctionCode's Architectures); docs/architecture.md has the same table.
# "request": part of the request, not a stored setting. "layers": see check_layers, layers.py.
SETTINGS: dict[str, str] = {
    "FunctionName": "request", "Code": "request", "Publish": "request", "Tags": "request",
    "RevisionId": "request", "PackageType": "request",
    "Role": "honoured", "Runtime": "honoured", "Handler": "honoured", "Timeout": "honoured",
    "MemorySize": "honoured", "Description": "honoured", "Environment": "honoured",
    "Architectures": "honoured", "EphemeralStorage": "honoured", "LoggingConfig": "honoured",
    "DeadLetterConfig": "honoured",
    "TracingConfig": "stored", "KMSKeyArn": "stored", "VpcConfig": "stored",
    "SnapStart": "stored", "FileSystemConfigs": "stored",
    "Layers": "layers",
}  # fmt: skip
# Why each refused member cannot be served; any other member is refused too.
_REFUSED_WHY = {
    "ImageConfig": "container images are not run (PackageType Zip only)",
    "CodeSigningConfigArn": "code signing is not checked",
    "PublishTo": "LATEST_PUBLISHED versions are not kept",
    "CapacityProviderConfig": "Lambda Managed Instances are not emulated",
    "TenancyConfig": "tenant isolation is not emulated",
    "DurableConfig": "durable functions are not emulated",
    "RuntimeConfig": "managed runtime versions are not pinned (the host interpreter runs)",
    "AcceleratorConfig": "accelerators are not emulated",
    "S3Bucket": "code is taken inline as ZipFile, not from S3",
    "S3Key": "code is taken inline as ZipFile, not from S3",
    "S3ObjectVersion": "code is taken inline as ZipFile, not from S3",
    "S3ObjectStorageMode": "code is taken inline as ZipFile, not from S3",
    "ImageUri": "container images are not run (PackageType Zip only)",
    "SourceKMSKeyArn": "uploaded code is not encrypted locally",
}


def refused(member: str, operation: str) -> ApiError:
    """InvalidParameterValueException for a setting lambdakit local cannot serve."""
    why = _REFUSED_WHY.get(member, f"it is not a {operation} setting lambdakit local knows")
    return invalid(
        f"{member} is not supported by lambdakit local ({why}): lambdakit local cannot "
        "serve it, so it refuses it rather than ignore it."
    )


def vpc_id(subnet_ids: list[str]) -> str:
    """The VpcId shown for a function's subnets: stable, shaped as AWS shows one."""
    if not subnet_ids:
        return ""
    digest = hashlib.sha256(",".join(sorted(subnet_ids)).encode()).hexdigest()
    return f"vpc-{digest[:17]}"


def validate_config(
    body: dict[str, Any],
    *,
    creating: bool,
    runtime: str | None = None,
    current: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The function settings present in a Create/UpdateFunctionConfiguration body, checked.

    Returns the settings as GetFunctionConfiguration shows them (merged over `current`,
    the stored configuration, where an update changes part of a setting). A member
    lambdakit local cannot serve is refused (see SETTINGS), never dropped.
    """
    operation = "CreateFunction" if creating else "UpdateFunctionConfiguration"
    for member in body:
        if SETTINGS.get(member) is None:
            raise refused(member, operation)
    out: dict[str, Any] = {}
    if creating:
        validate_function_name(body.get("FunctionName"))
        if optional(body, "Role", str) is None:
            raise invalid("Role is required: any IAM role ARN string is accepted locally.")
        out["Role"] = body["Role"]
        if body.get("PackageType", "Zip") != "Zip":
            raise invalid("Only PackageType Zip is supported by lambdakit local (no images).")
    else:
        for member in ("Code", "Publish", "Tags", "PackageType", "FunctionName"):
            if member in body:
                raise refused(member, operation)
        if optional(body, "Role", str) is not None:
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
    layers = optional(body, "Layers", list)
    if layers is not None:
        out["Layers"] = check_layers(layers)  # ARNs; the Store looks them up (layers.py)
    architectures = check_architectures(body)
    if architectures is not None:
        out["Architectures"] = architectures
    out.update(_stored_settings(body, current or {}))
    return out


def check_architectures(body: dict[str, Any]) -> list[str] | None:
    """Architectures, when present: exactly one of x86_64 and arm64."""
    architectures = optional(body, "Architectures", list)
    if architectures is not None and architectures not in (["x86_64"], ["arm64"]):
        raise invalid(f"Architectures must be ['x86_64'] or ['arm64'], got {architectures!r}.")
    return architectures


def _member(body: dict[str, Any], key: str, kind: type, name: str) -> Any:
    """body[key] of a JSON type; the error names the setting it belongs to."""
    try:
        return optional(body, key, kind)
    except ApiError as exc:
        raise bad_content(exc.message.replace(f"field {key} ", f"field {name}.{key} ")) from None


def _stored_settings(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """EphemeralStorage, LoggingConfig, DeadLetterConfig and the settings kept without effect."""
    out: dict[str, Any] = {}
    storage = optional(body, "EphemeralStorage", dict)
    if storage is not None:
        size = _member(storage, "Size", int, "EphemeralStorage")
        if size is None:
            raise invalid("EphemeralStorage needs a Size in MB (512 to 10240).")
        if not 512 <= size <= 10240:
            raise invalid(f"EphemeralStorage Size must be between 512 and 10240 MB, got {size}.")
        out["EphemeralStorage"] = {"Size": size}
    logging_config = optional(body, "LoggingConfig", dict)
    if logging_config is not None:
        out["LoggingConfig"] = _logging_config(logging_config, current.get("LoggingConfig"))
    dead_letter = optional(body, "DeadLetterConfig", dict)
    if dead_letter is not None:
        target = _member(dead_letter, "TargetArn", str, "DeadLetterConfig") or ""
        if target and not re.match(r"^arn:aws[a-zA-Z-]*:(sqs|sns):", target):
            raise invalid(
                f"DeadLetterConfig TargetArn must be an SQS queue or SNS topic ARN, got {target!r}."
            )
        out["DeadLetterConfig"] = {"TargetArn": target} if target else {}
    tracing = optional(body, "TracingConfig", dict)
    if tracing is not None:
        mode = _member(tracing, "Mode", str, "TracingConfig") or "PassThrough"
        if mode not in ("Active", "PassThrough"):
            raise invalid(f"TracingConfig Mode must be Active or PassThrough, got {mode!r}.")
        out["TracingConfig"] = {"Mode": mode}
    kms_key = optional(body, "KMSKeyArn", str)
    if kms_key is not None:
        out["KMSKeyArn"] = kms_key  # "" returns to Lambda's own key: shown as absent
    vpc = optional(body, "VpcConfig", dict)
    if vpc is not None:
        out["VpcConfig"] = _vpc_config(vpc)
    snap_start = optional(body, "SnapStart", dict)
    if snap_start is not None:
        apply_on = _member(snap_start, "ApplyOn", str, "SnapStart") or "None"
        if apply_on not in ("PublishedVersions", "None"):
            raise invalid(f"SnapStart ApplyOn must be PublishedVersions or None, got {apply_on!r}.")
        out["SnapStart"] = {"ApplyOn": apply_on, "OptimizationStatus": "Off"}
    file_systems = optional(body, "FileSystemConfigs", list)
    if file_systems is not None:
        out["FileSystemConfigs"] = [_file_system(item) for item in file_systems]
    return out


_APP_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_SYSTEM_LEVELS = ("DEBUG", "INFO", "WARN")


def _logging_config(given: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """LoggingConfig over the current one; log levels exist only with the JSON format."""
    merged = dict(current or {})
    for key in ("LogFormat", "ApplicationLogLevel", "SystemLogLevel", "LogGroup"):
        value = _member(given, key, str, "LoggingConfig")
        if value is not None:
            merged[key] = value
    log_format = merged.setdefault("LogFormat", "Text")
    if log_format not in ("JSON", "Text"):
        raise invalid(f"LoggingConfig LogFormat must be JSON or Text, got {log_format!r}.")
    if log_format == "Text":
        if "ApplicationLogLevel" in given or "SystemLogLevel" in given:
            raise invalid(
                "LoggingConfig ApplicationLogLevel and SystemLogLevel need LogFormat JSON: "
                "log levels apply to JSON logs only."
            )
        merged.pop("ApplicationLogLevel", None)
        merged.pop("SystemLogLevel", None)
    else:
        merged.setdefault("ApplicationLogLevel", "INFO")
        merged.setdefault("SystemLogLevel", "INFO")
        if merged["ApplicationLogLevel"] not in _APP_LEVELS:
            raise invalid(f"Invalid ApplicationLogLevel {merged['ApplicationLogLevel']!r}: "
                          f"use one of {', '.join(_APP_LEVELS)}.")  # fmt: skip
        if merged["SystemLogLevel"] not in _SYSTEM_LEVELS:
            raise invalid(f"Invalid SystemLogLevel {merged['SystemLogLevel']!r}: "
                          f"use one of {', '.join(_SYSTEM_LEVELS)}.")  # fmt: skip
    return merged


def _vpc_config(vpc: dict[str, Any]) -> dict[str, Any]:
    subnets = _member(vpc, "SubnetIds", list, "VpcConfig") or []
    groups = _member(vpc, "SecurityGroupIds", list, "VpcConfig") or []
    dual_stack = _member(vpc, "Ipv6AllowedForDualStack", bool, "VpcConfig") or False
    for value in (*subnets, *groups):
        if not isinstance(value, str):
            raise bad_content(
                "Could not parse request body into json: VpcConfig ids must be strings, "
                f"got {json.dumps(value)[:80]}."
            )
    if bool(subnets) != bool(groups):
        raise invalid(
            "VpcConfig needs both SubnetIds and SecurityGroupIds, or neither (to leave the VPC)."
        )
    return {"SubnetIds": list(subnets), "SecurityGroupIds": list(groups),
            "VpcId": vpc_id(list(subnets)), "Ipv6AllowedForDualStack": dual_stack}  # fmt: skip


def _file_system(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise bad_content(
            "Could not parse request body into json: each FileSystemConfigs item must be an "
            f"object with Arn and LocalMountPath, got {json.dumps(item)[:80]}."
        )
    arn = _member(item, "Arn", str, "FileSystemConfigs")
    mount = _member(item, "LocalMountPath", str, "FileSystemConfigs")
    if not arn or not mount:
        raise invalid("Each FileSystemConfigs item needs an Arn and a LocalMountPath.")
    if not re.match(r"^/mnt/[a-zA-Z0-9_.-]+$", mount):
        raise invalid(f"LocalMountPath must be /mnt/<name>, got {mount!r}.")
    return {"Arn": arn, "LocalMountPath": mount}


def check_layers(layers: list[Any]) -> list[str]:
    """A function's Layers: at most 5 LayerVersionArns (whether they exist is the Store's)."""
    if len(layers) > LAYERS_PER_FUNCTION:
        raise invalid(f"Cannot reference more than {LAYERS_PER_FUNCTION} layers.")
    for arn in layers:
        if not isinstance(arn, str) or not LAYER_VERSION_ARN_RE.match(arn):
            raise ApiError(
                400,
                "ValidationException",
                f"1 validation error detected: Value '[{str(arn)[:200]}]' at 'layers' failed to "
                "satisfy constraint: Member must satisfy constraint: [Member must satisfy "
                "regular expression pattern: "
                "arn:aws:lambda:<region>:<account>:layer:<name>:<version>]",
                message_key="message",  # as every Lambda ValidationException (validation.py)
            )
    return list(layers)


def _environment(environment: dict[str, Any]) -> dict[str, str]:
    # Values are secrets (GetFunction alone shows them): no message here quotes one.
    variables = environment.get("Variables") or {}
    if not isinstance(variables, dict):
        raise bad_content(
            "Could not parse request body into json: Environment.Variables must be an object "
            f"of names to strings, got a {type(variables).__name__}."
        )
    for key, value in variables.items():
        if not _ENV_KEY_RE.match(key):
            raise invalid(f"Invalid environment variable name {key!r}: [a-zA-Z][a-zA-Z0-9_]*.")
        if not isinstance(value, str):
            raise bad_content(
                f"Could not parse request body into json: environment variable {key} must be "
                f"a string, got a {type(value).__name__}."
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
