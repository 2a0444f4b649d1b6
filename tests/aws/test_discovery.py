"""Discovery against `lambdakit local`: names and ARNs, listings, and the Target of a run."""

from __future__ import annotations

import pytest

from lambdakit.aws.discovery import (
    config_hash,
    list_aliases,
    list_functions,
    list_versions,
    resolve_target,
    split_function_name,
)
from lambdakit.errors import FunctionNotFound, InvalidInput


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
    # A published version's token names its code and configuration, not just its number.
    configs = {v: lambda_client.get_function_configuration(FunctionName=name, Qualifier=v)
               for v in (v1, v2)}  # fmt: skip
    for v in (v1, v2):
        assert target.cache_tokens[v].startswith(f"{v}@{configs[v]['CodeSha256']}:")
    assert target.cache_tokens[v1] != target.cache_tokens[v2]
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
    assert (pinned.versions, pinned.cache_tokens) == ({v2: 1.0}, {v2: target.cache_tokens[v2]})


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
