"""make_client's settings, name parsing, and discovery against `lambdakit local`."""

from __future__ import annotations

import pytest

from lambdakit.connection import (
    CONNECT_TIMEOUT_S,
    DEFAULT_FUNCTION_TIMEOUT_S,
    READ_TIMEOUT_MARGIN_S,
    config_hash,
    list_aliases,
    list_functions,
    list_versions,
    make_client,
    resolve_target,
    split_function_name,
)
from lambdakit.errors import CredentialsError, FunctionNotFound, InvalidInput, LambdakitError


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


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("fn", ("fn", None)),
        ("fn:prod", ("fn", "prod")),
        ("fn:7", ("fn", "7")),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:fn",
            (
                "arn:aws:lambda:eu-west-1:123456789012:function:fn",
                None,
            ),
        ),
        (
            "arn:aws:lambda:eu-west-1:123456789012:function:fn:$LATEST",
            (
                "arn:aws:lambda:eu-west-1:123456789012:function:fn",
                "$LATEST",
            ),
        ),
        ("123456789012:function:fn:live", ("123456789012:function:fn", "live")),
    ],
)
def test_function_names_and_arns_are_split(given, expected):
    assert split_function_name(given) == expected


@pytest.mark.parametrize("bad", ["", "  ", "a:b:c", "arn:aws:s3:::bucket", None, 5])
def test_bad_function_names_are_refused(bad):
    with pytest.raises(InvalidInput):
        split_function_name(bad)


def test_config_hash_tracks_behaviour_not_metadata():
    base = {
        "Handler": "app.handler",
        "Runtime": "python3.11",
        "MemorySize": 128,
        "Timeout": 3,
        "Environment": {"Variables": {"A": "1"}},
        "LastModified": "2024-01-01",
    }
    same = {**base, "LastModified": "2025-01-01", "Description": "new words"}
    assert config_hash(base) == config_hash(same)
    for change in (
        {"Handler": "app.other"},
        {"MemorySize": 256},
        {"Timeout": 4},
        {"Environment": {"Variables": {"A": "2"}}},
        {"Layers": [{"Arn": "arn:aws:lambda:eu-west-1:1:layer:x:1"}]},
    ):
        assert config_hash({**base, **change}) != config_hash(base), change
    # No Environment key and an empty one mean the same thing.
    assert config_hash({**base, "Environment": {}}) == config_hash(
        {k: v for k, v in base.items() if k != "Environment"} | {"Environment": None}
    )


# -- against `lambdakit local` ----------------------------------------------------------------

ECHO = "def handler(event, context):\n    return event\n"


def test_discovery_lists_functions_versions_and_aliases(lambda_client, make_function):
    name = make_function(ECHO)
    assert name in [f.name for f in list_functions(lambda_client)]
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    # More aliases than one page (ListAliases pages by 50): every page must be read.
    for n in range(52):
        lambda_client.create_alias(FunctionName=name, Name=f"a{n:02d}", FunctionVersion=version)
    aliases = list_aliases(lambda_client, name)
    assert [a.name for a in aliases] == [f"a{n:02d}" for n in range(52)]
    assert aliases[0].function_version == version
    assert aliases[0].weights == {version: 1.0}
    assert [v.version for v in list_versions(lambda_client, name)] == ["$LATEST", version]


def test_resolve_latest_token_follows_code_and_configuration(
    lambda_client, make_function, zip_code, wait_updated
):
    name = make_function(ECHO, Timeout=7, MemorySize=256)
    target = resolve_target(lambda_client, name)
    assert (target.function_name, target.qualifier, target.versions) == (
        name,
        None,
        {"$LATEST": 1.0},
    )
    assert target.function_arn.endswith(f":function:{name}")
    assert (target.timeout_s, target.memory_mb) == (7, 256)
    token = target.cache_tokens["$LATEST"]
    sha = lambda_client.get_function_configuration(FunctionName=name)["CodeSha256"]
    assert token.startswith(f"$LATEST@{sha}:")
    assert resolve_target(lambda_client, name).cache_tokens["$LATEST"] == token  # stable

    lambda_client.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"MODE": "b"}}
    )
    wait_updated(name)
    after_config = resolve_target(lambda_client, name).cache_tokens["$LATEST"]
    assert after_config != token

    lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(ECHO + "# v2\n"))
    wait_updated(name)
    after_code = resolve_target(lambda_client, name).cache_tokens["$LATEST"]
    assert after_code not in (token, after_config)


def test_resolve_version_alias_and_weights(lambda_client, make_function, zip_code, wait_updated):
    name = make_function(ECHO)
    v1 = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(ECHO + "# v2\n"))
    wait_updated(name)
    v2 = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion=v1,
        RoutingConfig={"AdditionalVersionWeights": {v2: 0.25}},
    )
    target = resolve_target(lambda_client, name, "live")
    assert target.qualifier == "live"
    assert target.versions == {v1: 0.75, v2: 0.25}
    assert target.cache_tokens == {v1: v1, v2: v2}
    assert target.invoke_name == f"{target.function_arn}:live"
    # Each routed version's code, for the run's manifest (it had none for an alias).
    shas = {v: lambda_client.get_function(FunctionName=name, Qualifier=v) for v in (v1, v2)}
    assert target.code_sha256 == {v: shas[v]["Configuration"]["CodeSha256"] for v in (v1, v2)}
    assert target.code_sha256[v1] != target.code_sha256[v2]

    # The same target through name:qualifier, a full ARN and a partial ARN.
    account = target.function_arn.split(":")[4]
    for spelling in (
        f"{name}:live",
        f"{target.function_arn}:live",
        f"{account}:function:{name}:live",
    ):
        assert resolve_target(lambda_client, spelling) == target

    pinned = resolve_target(lambda_client, name, v2)
    assert (pinned.versions, pinned.cache_tokens) == ({v2: 1.0}, {v2: v2})


def test_missing_function_alias_or_version_is_named(lambda_client, make_function):
    with pytest.raises(FunctionNotFound, match="'no-such-function-x' was not found"):
        resolve_target(lambda_client, "no-such-function-x")
    name = make_function(ECHO)
    with pytest.raises(FunctionNotFound, match=f"{name}' has no alias 'prod'"):
        resolve_target(lambda_client, name, "prod")
    with pytest.raises(FunctionNotFound, match="has no version '42'"):
        resolve_target(lambda_client, f"{name}:42")


def test_conflicting_qualifiers_are_refused(lambda_client):
    with pytest.raises(InvalidInput, match="qualifier"):
        resolve_target(lambda_client, "fn:live", qualifier="beta")


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
