"""Function settings through real boto3: each one kept (and shown) or refused, never dropped."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdakit.errors import DeployError

ECHO = "def handler(event, context):\n    return {'event': event}\n"
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"]

# One value per stored or honoured setting, as Create/UpdateFunctionConfiguration take them.
CREATE_SETTINGS: dict[str, Any] = {
    "TracingConfig": {"Mode": "Active"},
    "EphemeralStorage": {"Size": 2048},
    "DeadLetterConfig": {"TargetArn": "arn:aws:sqs:us-east-1:123456789012:failed-orders"},
    "KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "VpcConfig": {"SubnetIds": SUBNETS, "SecurityGroupIds": ["sg-0123456789abcdef0"]},
    "SnapStart": {"ApplyOn": "PublishedVersions"},
    "LoggingConfig": {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"},
    "FileSystemConfigs": [{
        "Arn": "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/"
               "fsap-0123456789abcdef0",
        "LocalMountPath": "/mnt/data",
    }],
    "Architectures": ["arm64"],
}  # fmt: skip

UPDATE_SETTINGS: dict[str, Any] = {
    "TracingConfig": {"Mode": "PassThrough"},
    "EphemeralStorage": {"Size": 10240},
    "DeadLetterConfig": {"TargetArn": "arn:aws:sns:us-east-1:123456789012:failed-topic"},
    "KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0000abcd-12ab-34cd-56ef-1234567890ab",
    "VpcConfig": {"SubnetIds": SUBNETS[:1], "SecurityGroupIds": ["sg-0fedcba9876543210"],
                  "Ipv6AllowedForDualStack": True},
    "SnapStart": {"ApplyOn": "None"},
    "LoggingConfig": {"SystemLogLevel": "WARN", "LogGroup": "/custom/group"},
    "FileSystemConfigs": [],
}  # fmt: skip


def expected_view(settings: dict[str, Any], name: str) -> dict[str, Any]:
    """What GetFunctionConfiguration shows for `settings` on a function created as above."""
    shown = dict(settings)
    if "VpcConfig" in settings:
        vpc = settings["VpcConfig"]
        shown["VpcConfig"] = {"Ipv6AllowedForDualStack": False, **vpc}
    if "SnapStart" in settings:
        shown["SnapStart"] = {**settings["SnapStart"], "OptimizationStatus": "Off"}
    return shown


def shown(config: dict[str, Any], keys: Any) -> dict[str, Any]:
    return {key: config.get(key) for key in keys}


def test_every_kept_setting_round_trips_through_create_update_get_and_publish(
    lambda_client, make_function, wait_updated
):
    name = make_function(ECHO, **CREATE_SETTINGS)
    want = expected_view(CREATE_SETTINGS, name)
    want["LoggingConfig"] = {
        "LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO",
        "LogGroup": f"/aws/lambda/{name}",
    }  # fmt: skip
    config = lambda_client.get_function_configuration(FunctionName=name)
    vpc_id = config["VpcConfig"].pop("VpcId")
    assert vpc_id.startswith("vpc-") and len(vpc_id) == 21
    assert shown(config, want) == want

    first = lambda_client.publish_version(FunctionName=name)
    assert shown(first, want) | {"VpcConfig": want["VpcConfig"]} == want

    lambda_client.update_function_configuration(FunctionName=name, **UPDATE_SETTINGS)
    wait_updated(name)
    after = expected_view(UPDATE_SETTINGS, name)
    after["VpcConfig"]["Ipv6AllowedForDualStack"] = True
    after["LoggingConfig"] = {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG",
                              "SystemLogLevel": "WARN", "LogGroup": "/custom/group"}  # fmt: skip
    after["Architectures"] = ["arm64"]
    for config in (
        lambda_client.get_function_configuration(FunctionName=name),
        lambda_client.get_function(FunctionName=name)["Configuration"],
        next(f for f in lambda_client.list_functions()["Functions"] if f["FunctionName"] == name),
    ):
        assert config["VpcConfig"].pop("VpcId") not in ("", vpc_id)  # another subnet, another VPC
        assert shown(config, after) == after

    # The published version kept its own copy; a new one is published for the new settings.
    version_one = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert version_one["TracingConfig"] == {"Mode": "Active"}
    assert version_one["EphemeralStorage"] == {"Size": 2048}
    second = lambda_client.publish_version(FunctionName=name)
    assert second["Version"] == "2"
    for config in (
        second,
        lambda_client.get_function(FunctionName=name, Qualifier="2")["Configuration"],
    ):
        assert config["VpcConfig"].pop("VpcId").startswith("vpc-")
        assert shown(config, after) == after
    first_again = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
    first_again["VpcConfig"].pop("VpcId")
    assert shown(first_again, want) == want


def test_architectures_change_with_the_code(lambda_client, make_function, zip_code, wait_updated):
    name = make_function(ECHO)
    assert lambda_client.get_function_configuration(FunctionName=name)["Architectures"] == [
        "x86_64"
    ]
    lambda_client.update_function_code(
        FunctionName=name, ZipFile=zip_code(ECHO + "# v2\n"), Architectures=["arm64"]
    )
    assert wait_updated(name)["Architectures"] == ["arm64"]


def test_clearing_a_dead_letter_queue_and_a_key(lambda_client, make_function, wait_updated):
    name = make_function(ECHO, DeadLetterConfig=CREATE_SETTINGS["DeadLetterConfig"],
                         KMSKeyArn=CREATE_SETTINGS["KMSKeyArn"])  # fmt: skip
    lambda_client.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": ""}, KMSKeyArn="",
        VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
    )  # fmt: skip
    config = wait_updated(name)
    assert "DeadLetterConfig" not in config and "KMSKeyArn" not in config
    assert config["VpcConfig"]["VpcId"] == ""


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"ImageConfig": {"Command": ["app.handler"]}}, "ImageConfig"),
        ({"CapacityProviderConfig": {"LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": "arn:aws:lambda:us-east-1:123456789012:capacity-provider:cp"}}},
         "CapacityProviderConfig"),
        ({"DurableConfig": {"ExecutionTimeout": 60}}, "DurableConfig"),
        ({"DeadLetterConfig": {"TargetArn": "arn:aws:s3:::bucket"}}, "DeadLetterConfig"),
        ({"LoggingConfig": {"LogFormat": "Text", "ApplicationLogLevel": "INFO"}},
         "ApplicationLogLevel"),
    ],
)  # fmt: skip
def test_settings_that_cannot_be_served_are_refused(lambda_client, make_function, settings, named):
    name = make_function(ECHO)
    with pytest.raises(ClientError) as created:
        make_function(ECHO, **settings)
    with pytest.raises(ClientError) as updated:
        lambda_client.update_function_configuration(FunctionName=name, **settings)
    for error in (created, updated):
        response = error.value.response
        assert response["Error"]["Code"] == "InvalidParameterValueException"
        assert named in response["Error"]["Message"]
    if named in ("ImageConfig", "CapacityProviderConfig", "DurableConfig"):
        assert "lambdakit local cannot serve it" in response["Error"]["Message"]
    # Nothing was half-applied.
    config = lambda_client.get_function_configuration(FunctionName=name)
    assert config["LastUpdateStatus"] == "Successful" and "DeadLetterConfig" not in config


def test_code_from_s3_is_refused_by_update_function_code(lambda_client, make_function):
    name = make_function(ECHO)
    with pytest.raises(ClientError) as error:
        lambda_client.update_function_code(FunctionName=name, S3Bucket="code-bucket", S3Key="k.zip")
    assert error.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "S3" in error.value.response["Error"]["Message"]


def test_deploy_passes_settings_through_and_sees_no_drift(lambda_client, tmp_path):
    from lambdakit import deploy

    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "app.py").write_text(ECHO)
    name = f"deploy-settings-{uuid.uuid4().hex[:8]}"
    settings = {
        "TracingConfig": {"Mode": "Active"},
        "EphemeralStorage": {"Size": 1024},
        "LoggingConfig": {"LogFormat": "JSON"},
        "VpcConfig": {"SubnetIds": SUBNETS[:1], "SecurityGroupIds": ["sg-0123456789abcdef0"]},
        "SnapStart": {"ApplyOn": "PublishedVersions"},
        "DeadLetterConfig": CREATE_SETTINGS["DeadLetterConfig"],
        "Architectures": ["arm64"],
    }
    try:
        created = deploy(lambda_client, name, folder, settings=settings)
        assert created.action == "created"
        config = lambda_client.get_function_configuration(FunctionName=name)
        assert config["TracingConfig"] == {"Mode": "Active"}
        assert config["EphemeralStorage"] == {"Size": 1024}
        assert config["LoggingConfig"]["LogFormat"] == "JSON"
        assert config["Architectures"] == ["arm64"]
        # Lambda's own additions (VpcId, OptimizationStatus, log levels) are not drift.
        assert deploy(lambda_client, name, folder, settings=settings).action == "unchanged"
        changed = dict(settings, TracingConfig={"Mode": "PassThrough"}, Architectures=["x86_64"])
        updated = deploy(lambda_client, name, folder, settings=changed)
        assert updated.action == "updated code and configuration"
        config = lambda_client.get_function_configuration(FunctionName=name)
        assert config["TracingConfig"] == {"Mode": "PassThrough"}
        assert config["Architectures"] == ["x86_64"]
        with pytest.raises(DeployError, match="Layerz"):
            deploy(lambda_client, name, folder, settings={"Layerz": []})
    finally:
        lambda_client.delete_function(FunctionName=name)
