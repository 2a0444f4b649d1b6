"""Constraint violations get AWS's ValidationException, worded from botocore's own model."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.exceptions import ClientError

from lambdakit.local.validation import ModelValidator

ECHO = "def handler(event, context):\n    return event\n"
ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"
MODEL = botocore.session.get_session().get_service_model("lambda")


def refusal(call, **kwargs) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as error:
        call(**kwargs)
    response = error.value.response
    return (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"],
            response["Error"]["Message"])  # fmt: skip


def create(lambda_client, zip_code, **overrides):
    kwargs = {
        "FunctionName": "validation-target", "Runtime": "python3.11", "Role": ROLE,
        "Handler": "app.handler", "Code": {"ZipFile": zip_code(ECHO)},
    } | overrides  # fmt: skip
    return refusal(lambda_client.create_function, **kwargs)


def test_a_bad_runtime_gets_the_enum_from_the_model(lambda_client, zip_code):
    runtimes = ", ".join(MODEL.shape_for("Runtime").enum)
    assert create(lambda_client, zip_code, Runtime="python2.0") == (
        "ValidationException", 400,
        "1 validation error detected: Value 'python2.0' at 'runtime' failed to satisfy "
        f"constraint: Member must satisfy enum value set: [{runtimes}]",
    )  # fmt: skip


def test_a_timeout_over_900_is_a_validation_error(lambda_client, make_function, zip_code):
    wording = (
        "1 validation error detected: Value '1000' at 'timeout' failed to satisfy constraint: "
        "Member must have value less than or equal to 900"
    )
    assert create(lambda_client, zip_code, Timeout=1000) == ("ValidationException", 400, wording)
    name = make_function(ECHO)
    assert refusal(
        lambda_client.update_function_configuration, FunctionName=name, Timeout=1000
    ) == ("ValidationException", 400, wording)
    assert lambda_client.get_function_configuration(FunctionName=name)["Timeout"] == 3


def test_a_malformed_name_fails_the_models_pattern(lambda_client, zip_code):
    pattern = MODEL.shape_for("FunctionName").metadata["pattern"]
    assert create(lambda_client, zip_code, FunctionName="bad name!") == (
        "ValidationException", 400,
        "1 validation error detected: Value 'bad name!' at 'functionName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {pattern}",
    )  # fmt: skip
    code, status, message = refusal(lambda_client.get_function, FunctionName="bad name!")
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("1 validation error detected: Value 'bad name!' at 'functionName'")


def test_every_violation_is_listed_and_nested_members_are_named(lambda_client, zip_code):
    code, _, message = create(
        lambda_client, zip_code, Timeout=5400, MemorySize=20000, EphemeralStorage={"Size": 20000},
        Architectures=["sparc"],
    )  # fmt: skip
    assert code == "ValidationException"
    assert message.startswith("4 validation errors detected: ")
    parts = message.removeprefix("4 validation errors detected: ").split("; ")
    assert parts == [
        "Value '5400' at 'timeout' failed to satisfy constraint: "
        "Member must have value less than or equal to 900",
        "Value '20000' at 'memorySize' failed to satisfy constraint: "
        "Member must have value less than or equal to 10240",
        "Value '[sparc]' at 'architectures' failed to satisfy constraint: "
        "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64]]",
        "Value '20000' at 'ephemeralStorage.size' failed to satisfy constraint: "
        "Member must have value less than or equal to 10240",
    ]


def test_semantic_problems_keep_invalid_parameter_value(lambda_client, zip_code):
    # In the model's enum, but not a runtime lambdakit local runs.
    code, _, message = create(lambda_client, zip_code, Runtime="nodejs20.x")
    assert code == "InvalidParameterValueException" and "nodejs20.x" in message
    code, _, message = create(
        lambda_client, zip_code, Environment={"Variables": {"AWS_REGION": "eu-west-1"}}
    )
    assert code == "InvalidParameterValueException" and "AWS_REGION" in message


def test_bogus_invocation_type_and_qualifier(lambda_client, make_function):
    name = make_function(ECHO)
    code, _, message = refusal(
        lambda_client.invoke, FunctionName=name, InvocationType="Sometimes", Payload=b"{}"
    )
    assert (code, message) == (
        "ValidationException",
        "1 validation error detected: Value 'Sometimes' at 'invocationType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
    )
    code, _, message = refusal(lambda_client.get_function, FunctionName=name, Qualifier="a.b")
    assert code == "ValidationException" and "'qualifier'" in message


def test_the_validator_reads_every_pattern_of_the_model():
    checker = ModelValidator(MODEL)
    for name in MODEL.shape_names:
        pattern = MODEL.shape_for(name).metadata.get("pattern")
        if pattern:
            assert checker._pattern(pattern) is not None, (name, pattern)
    create_function = checker.operation("POST", "/2015-03-31/functions")
    assert create_function.name == "CreateFunction"
    invoke = checker.operation("POST", "/2015-03-31/functions/{name}/invocations")
    assert invoke.name == "Invoke"
