"""make_client's settings, name parsing, and discovery against `lambdakit local`."""

from __future__ import annotations

import pytest

from lambdakit.aws.connection import (
    CONNECT_TIMEOUT_S,
    DEFAULT_FUNCTION_TIMEOUT_S,
    READ_TIMEOUT_MARGIN_S,
    make_client,
    make_session,
)
from lambdakit.aws.discovery import list_functions
from lambdakit.errors import CredentialsError, InvalidInput, LambdakitError


@pytest.fixture
def no_aws_env(monkeypatch, tmp_path):
    """An environment with no credentials or region anywhere, and no metadata service."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_") and name != "AWS_CA_BUNDLE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_client_is_sized_and_never_retries_on_its_own(no_aws_env):
    client = make_client(endpoint_url="http://127.0.0.1:9", concurrency=48)
    config = client.meta.config
    assert config.max_pool_connections >= 48
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.connect_timeout == CONNECT_TIMEOUT_S
    assert config.read_timeout == DEFAULT_FUNCTION_TIMEOUT_S + READ_TIMEOUT_MARGIN_S


def test_read_timeout_outlasts_the_function_timeout(no_aws_env):
    client = make_client(endpoint_url="http://127.0.0.1:9", function_timeout_s=30)
    assert client.meta.config.read_timeout == 30 + READ_TIMEOUT_MARGIN_S
    explicit = make_client(endpoint_url="http://127.0.0.1:9", read_timeout=5)
    assert explicit.meta.config.read_timeout == 5


def test_parameter_check_is_on_unless_turned_off(no_aws_env):
    from botocore.exceptions import EndpointConnectionError, ParamValidationError

    # Nothing listens on port 9: a call that passes the check fails to connect instead.
    checked = make_client(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ParamValidationError):
        checked.invoke(FunctionName="")
    quiet = make_client(endpoint_url="http://127.0.0.1:9", parameter_validation=False)
    with pytest.raises(EndpointConnectionError):
        quiet.invoke(FunctionName="f", Payload=b"{}")


def test_sessions_share_one_parse_of_botocores_data_files(no_aws_env):
    first = make_session(endpoint_url="http://127.0.0.1:9")._session
    second = make_session(endpoint_url="http://127.0.0.1:9")._session
    assert first is not second  # credentials and handlers stay per session
    assert first.get_component("data_loader") is second.get_component("data_loader")


def test_short_read_timeout_is_warned_about(no_aws_env, caplog):
    make_client(endpoint_url="http://127.0.0.1:9", read_timeout=10, function_timeout_s=60)
    assert "may still be running" in caplog.text


def test_local_endpoint_gets_dummy_credentials_and_a_region(no_aws_env):
    client = make_client(endpoint_url="http://127.0.0.1:9")
    assert client.meta.region_name == "us-east-1"
    assert client._request_signer._credentials.access_key == "lambdakit-local"


def test_local_endpoint_keeps_real_credentials_when_present(no_aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = make_client(endpoint_url="http://127.0.0.1:9", region="eu-west-1")
    assert client.meta.region_name == "eu-west-1"
    assert client._request_signer._credentials.access_key == "AKIAEXAMPLE"


def test_aws_without_credentials_says_what_to_set(no_aws_env):
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        make_client(region="eu-west-1")


def test_aws_without_region_says_what_to_set(no_aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with pytest.raises(CredentialsError, match="AWS_REGION"):
        make_client()


def test_given_client_is_returned_as_is(no_aws_env):
    client = make_client(endpoint_url="http://127.0.0.1:9")
    assert make_client(client=client) is client


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_concurrency_must_be_a_positive_int(bad):
    with pytest.raises(InvalidInput, match="concurrency"):
        make_client(endpoint_url="http://127.0.0.1:9", concurrency=bad)


def test_unreachable_endpoint_is_a_lambdakit_error(no_aws_env):
    client = make_client(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(LambdakitError, match="Could not connect"):
        list_functions(client)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"read_timeout": "5"}, "read_timeout"),
        ({"read_timeout": True}, "read_timeout"),
        ({"function_timeout_s": "30"}, "function_timeout_s"),
        ({"endpoint_url": "not a url"}, "endpoint_url"),
        ({"endpoint_url": 9001}, "endpoint_url"),
        ({"region": 5}, "region"),
        ({"profile": ["dev"]}, "profile"),
    ],
)
def test_bad_client_settings_are_refused_by_name(no_aws_env, kwargs, named):
    # These used to escape as raw TypeError/ValueError/AttributeError from inside botocore.
    settings = {"endpoint_url": "http://127.0.0.1:9", **kwargs}
    with pytest.raises(InvalidInput, match=named):
        make_client(**settings)


@pytest.mark.parametrize("client", [object(), "lambda"])
def test_a_client_that_is_not_a_lambda_client_is_refused(client):
    with pytest.raises(InvalidInput, match="client must be a boto3 Lambda client"):
        make_client(client=client)


def test_a_client_for_another_service_is_refused():
    import boto3

    s3 = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    with pytest.raises(InvalidInput, match="got a 's3' client"):
        make_client(client=s3)
