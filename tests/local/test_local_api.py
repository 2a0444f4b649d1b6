"""The local service's management API through the real boto3 client (and raw HTTP for bad input)."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambdakit.local.checks import LOWER_CASE_MESSAGE

ROLE = "arn:aws:iam::123456789012:role/lambdakit-test"  # AWS checks the pattern

ECHO = "def handler(event, context):\n    return {'event': event}\n"
ARN_PREFIX = "arn:aws:lambda:us-east-1:123456789012:function:"
RETURN_ONE = "def handler(event, context):\n    return 1\n"
RETURN_TWO = "def handler(event, context):\n    return 2\n"


def raw(local: Any, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, headers, parsed-or-raw body) of one plain HTTP request to the service.

    A body goes as application/json unless `headers` names another Content-Type.
    """
    headers = dict(headers or {})
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        f"{local.endpoint_url}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, head, data = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, head, data = exc.code, exc.headers, exc.read()
    try:
        return status, head, json.loads(data) if data else None
    except ValueError:
        return status, head, data


def message_of(headers: Any, body: dict[str, Any]) -> str:
    """An error body's message, checking that it is spelled as botocore's model has it."""
    code = headers["x-amzn-ErrorType"]
    # Lambda's ValidationException (its front end's, not a model shape) is lower-case too.
    key = "message" if code in LOWER_CASE_MESSAGE | {"ValidationException"} else "Message"
    assert key in body and ({"message", "Message"} - {key}).isdisjoint(body), (code, body)
    return body[key]


def error_of(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc_info.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_create_is_pending_then_active_for_the_waiter(lambda_client, zip_code):
    name = "api-create-waiter"
    package = zip_code(ECHO)
    created = lambda_client.create_function(
        FunctionName=name, Runtime="python3.11", Role=ROLE,
        Handler="app.handler", Code={"ZipFile": package}, Timeout=7, MemorySize=256,
    )  # fmt: skip
    try:
        assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
        assert created["State"] == "Pending"
        expected_sha = base64.b64encode(hashlib.sha256(package).digest()).decode()
        assert created["CodeSha256"] == expected_sha
        assert created["CodeSize"] == len(package)
        lambda_client.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
        got = lambda_client.get_function(FunctionName=name)
        config = got["Configuration"]
        assert (config["State"], config["LastUpdateStatus"]) == ("Active", "Successful")
        assert (config["Timeout"], config["MemorySize"], config["Version"]) == (7, 256, "$LATEST")
        assert config["FunctionArn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        with urllib.request.urlopen(got["Code"]["Location"], timeout=30) as response:
            assert response.read() == package
        same = lambda_client.get_function_configuration(FunctionName=config["FunctionArn"])
        assert same["CodeSha256"] == expected_sha
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_duplicate_create_is_a_conflict(lambda_client, make_function, zip_code):
    name = make_function(ECHO)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.create_function(
            FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": zip_code(ECHO)},
        )  # fmt: skip
    assert error_of(exc_info)[:2] == ("ResourceConflictException", 409)


def test_list_functions_paginates(lambda_client, make_function):
    names = {make_function(ECHO, name_prefix="listing") for _ in range(3)}
    first = lambda_client.list_functions(MaxItems=1)
    assert len(first["Functions"]) == 1 and first["NextMarker"]
    seen = []
    for page in lambda_client.get_paginator("list_functions").paginate(
        PaginationConfig={"PageSize": 2}
    ):
        assert len(page["Functions"]) <= 2
        seen += [f["FunctionName"] for f in page["Functions"]]
    assert names <= set(seen)
    assert len(seen) == len(set(seen))


def test_update_code_and_configuration(lambda_client, make_function, zip_code, wait_updated,
                                       invoke_json):  # fmt: skip
    name = make_function(RETURN_ONE)
    updated = lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(RETURN_TWO))
    assert updated["LastUpdateStatus"] == "InProgress"
    lambda_client.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    assert invoke_json(name)[1] == 2

    source = (
        "import os\n"
        "def entry(event, context):\n"
        "    return {'color': os.environ.get('COLOR'), 'memory': context.memory_limit_in_mb,\n"
        "            'left_ms': context.get_remaining_time_in_millis()}\n"
    )
    lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(source))
    wait_updated(name)
    changed = lambda_client.update_function_configuration(
        FunctionName=name, Handler="app.entry", Timeout=11, MemorySize=512,
        Environment={"Variables": {"COLOR": "teal"}},
    )  # fmt: skip
    assert changed["LastUpdateStatus"] == "InProgress"
    config = wait_updated(name)
    assert (config["Handler"], config["Timeout"], config["MemorySize"]) == ("app.entry", 11, 512)
    assert config["Environment"] == {"Variables": {"COLOR": "teal"}}
    result = invoke_json(name)[1]
    assert result["color"] == "teal" and result["memory"] == "512"
    assert 3_000 < result["left_ms"] <= 11_000


def test_reserved_environment_variables_are_refused(lambda_client, make_function):
    name = make_function(ECHO)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"AWS_REGION": "eu-west-1"}}
        )
    code, status, message = error_of(exc_info)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "AWS_REGION" in message


def test_delete_function_then_not_found(lambda_client, make_function):
    name = make_function(ECHO)
    deleted = lambda_client.delete_function(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (lambda_client.get_function, lambda_client.get_function_configuration):
        with pytest.raises(ClientError) as exc_info:
            call(FunctionName=name)
        code, status, message = error_of(exc_info)
        assert (code, status) == ("ResourceNotFoundException", 404)
        assert message == f"Function not found: {ARN_PREFIX}{name}"


def test_versions_are_immutable_copies(lambda_client, make_function, zip_code, wait_updated,
                                       invoke_json):  # fmt: skip
    name = make_function(RETURN_ONE)
    v1 = lambda_client.publish_version(FunctionName=name, Description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (v1["Version"], v1["Description"]) == ("1", "first")
    assert v1["FunctionArn"].endswith(f":{name}:1")
    # Publishing an unchanged $LATEST gives the same version back, as on AWS.
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(RETURN_TWO))
    wait_updated(name)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "2"
    assert invoke_json(name, Qualifier="1")[1] == 1
    response, result = invoke_json(name, Qualifier="2")
    assert (result, response["ExecutedVersion"]) == (2, "2")
    versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert (
        lambda_client.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Description"]
        == "first"
    )
    lambda_client.delete_function(FunctionName=name, Qualifier="1")
    with pytest.raises(ClientError) as exc_info:
        invoke_json(name, Qualifier="1")
    assert error_of(exc_info)[:2] == ("ResourceNotFoundException", 404)


def test_publish_with_a_stale_code_sha_is_refused(lambda_client, make_function):
    name = make_function(ECHO)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.publish_version(FunctionName=name, CodeSha256="bm90IHRoZSBzaGE=")
    assert error_of(exc_info)[:2] == ("InvalidParameterValueException", 400)


def _two_versions(lambda_client, make_function, zip_code, wait_updated) -> str:
    name = make_function(RETURN_ONE)
    lambda_client.publish_version(FunctionName=name)
    lambda_client.update_function_code(FunctionName=name, ZipFile=zip_code(RETURN_TWO))
    wait_updated(name)
    lambda_client.publish_version(FunctionName=name)
    return name


def test_alias_lifecycle_and_qualified_names(lambda_client, make_function, zip_code,
                                             wait_updated, invoke_json):  # fmt: skip
    name = _two_versions(lambda_client, make_function, zip_code, wait_updated)
    alias = lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert alias["AliasArn"].endswith(f":{name}:live")
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    for target, qualifier in [
        (f"{name}:live", None),
        (name, "live"),
        (f"{arn}:live", None),
        (f"123456789012:function:{name}:live", None),
    ]:
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        response, result = invoke_json(target, **kwargs)
        assert (result, response["ExecutedVersion"]) == (1, "1"), target
    assert invoke_json(arn)[0]["ExecutedVersion"] == "$LATEST"

    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert lambda_client.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    assert invoke_json(f"{name}:live")[0]["ExecutedVersion"] == "2"
    lambda_client.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    listed = lambda_client.list_aliases(FunctionName=name)["Aliases"]
    assert [a["Name"] for a in listed] == ["live", "old"]
    only_v1 = lambda_client.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in only_v1] == ["old"]
    with pytest.raises(ClientError) as exc_info:
        lambda_client.delete_function(FunctionName=name, Qualifier="1")
    assert error_of(exc_info)[:2] == ("ResourceConflictException", 409)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.create_alias(FunctionName=name, Name="old", FunctionVersion="2")
    assert error_of(exc_info)[:2] == ("ResourceConflictException", 409)
    deleted = lambda_client.delete_alias(FunctionName=name, Name="old")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (
        lambda: lambda_client.get_alias(FunctionName=name, Name="old"),
        lambda: invoke_json(f"{name}:old"),
        lambda: lambda_client.create_alias(FunctionName=name, Name="x", FunctionVersion="9"),
    ):
        with pytest.raises(ClientError) as exc_info:
            call()
        assert error_of(exc_info)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc_info:
        invoke_json(f"{name}:live", Qualifier="old")
    assert error_of(exc_info)[:2] == ("InvalidParameterValueException", 400)


def test_weighted_alias_splits_traffic(lambda_client, make_function, zip_code, wait_updated,
                                       invoke_json):  # fmt: skip
    name = _two_versions(lambda_client, make_function, zip_code, wait_updated)
    lambda_client.create_alias(
        FunctionName=name, Name="canary", FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}},
    )  # fmt: skip
    counts = {"1": 0, "2": 0}
    for _ in range(200):
        response, result = invoke_json(name, Qualifier="canary")
        assert str(result) == response["ExecutedVersion"]
        counts[response["ExecutedVersion"]] += 1
    # Binomial(200, 0.3): mean 60, sd 6.5; these bounds fail about once in 10^6 runs.
    assert 27 <= counts["2"] <= 95, counts
    config = lambda_client.get_alias(FunctionName=name, Name="canary")
    assert config["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}


@pytest.mark.parametrize(
    ("version", "weights"),
    [("1", {"2": 1.5}), ("1", {"1": 0.5}), ("$LATEST", {"2": 0.5}), ("1", {"2": 0.1, "3": 0.1})],
)
def test_bad_routing_configs_are_refused(lambda_client, make_function, zip_code, wait_updated,
                                         version, weights):  # fmt: skip
    name = _two_versions(lambda_client, make_function, zip_code, wait_updated)
    with pytest.raises(ClientError) as exc_info:
        lambda_client.create_alias(
            FunctionName=name, Name="bad", FunctionVersion=version,
            RoutingConfig={"AdditionalVersionWeights": weights},
        )  # fmt: skip
    assert error_of(exc_info)[:2] in {
        ("InvalidParameterValueException", 400),
        ("ResourceNotFoundException", 404),
        ("ValidationException", 400),  # a weight over 1.0: out of the model's range
    }


def test_function_concurrency_settings(lambda_client, make_function):
    name = make_function(ECHO)
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(
        FunctionName=name
    )
    put = lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=3)
    assert put["ReservedConcurrentExecutions"] == 3
    got = lambda_client.get_function_concurrency(FunctionName=name)
    assert got["ReservedConcurrentExecutions"] == 3
    assert lambda_client.get_function(FunctionName=name)["Concurrency"] == {
        "ReservedConcurrentExecutions": 3
    }
    with pytest.raises(ClientError) as exc_info:
        lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=999)
    assert error_of(exc_info)[:2] == ("InvalidParameterValueException", 400)
    deleted = lambda_client.delete_function_concurrency(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(
        FunctionName=name
    )


def test_zip_slip_is_refused_and_nothing_is_written(lambda_client, local_lambda, zip_code):
    code_root = local_lambda.state_dir / "code"
    before = sorted(p.name for p in code_root.iterdir())
    for evil in ("../escape.py", "/etc/evil.py", "lib/../../escape.py"):
        package = zip_code({"app.py": ECHO, evil: "owned = True\n"})
        with pytest.raises(ClientError) as exc_info:
            lambda_client.create_function(
                FunctionName="zip-slip", Runtime="python3.11", Role=ROLE,
                Handler="app.handler", Code={"ZipFile": package},
            )  # fmt: skip
        code, status, message = error_of(exc_info)
        assert (code, status) == ("InvalidParameterValueException", 400)
        assert evil in message
    assert sorted(p.name for p in code_root.iterdir()) == before
    assert not (local_lambda.state_dir / "functions" / "zip-slip.json").exists()


def test_not_a_zip_is_refused(lambda_client):
    with pytest.raises(ClientError) as exc_info:
        lambda_client.create_function(
            FunctionName="not-a-zip", Runtime="python3.11", Role=ROLE,
            Handler="app.handler", Code={"ZipFile": b"plain text"},
        )  # fmt: skip
    code, status, message = error_of(exc_info)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "unzip" in message


@pytest.mark.parametrize(
    ("settings", "code", "field"),
    [
        ({"Runtime": "nodejs20.x"}, "InvalidParameterValueException", "runtime"),
        ({"Timeout": 901}, "ValidationException", "'timeout'"),
        ({"MemorySize": 64}, "ValidationException", "'memorySize'"),
        ({"FunctionName": "bad name"}, "ValidationException", "'functionName'"),
        ({"Handler": "has space"}, "ValidationException", "'handler'"),
    ],
)
def test_bad_settings_are_refused_by_name(local_lambda, zip_code, settings, code, field):
    body = {
        "FunctionName": "bad-settings", "Runtime": "python3.11", "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(zip_code(ECHO)).decode()},
    } | settings  # fmt: skip
    status, headers, reply = raw(
        local_lambda, "POST", "/2015-03-31/functions", json.dumps(body).encode()
    )
    assert status == 400
    assert headers["x-amzn-ErrorType"] == code
    assert field in message_of(headers, reply)
    assert reply["Type"] == "User"


def test_malformed_requests_get_aws_errors(local_lambda, make_function):
    name = make_function(ECHO)
    cases = [
        ("POST", "/2015-03-31/functions", b"{not json", 400, "InvalidRequestContentException"),
        ("POST", "/2015-03-31/functions", b"[1, 2]", 400, "InvalidRequestContentException"),
        ("PUT", f"/2015-03-31/functions/{name}/configuration", b'{"Timeout": "abc"}', 400,
         "InvalidRequestContentException"),
        ("PUT", f"/2015-03-31/functions/{name}/configuration", b'{"Environment": 5}', 400,
         "InvalidRequestContentException"),
        ("PUT", f"/2017-10-31/functions/{name}/concurrency",
         b'{"ReservedConcurrentExecutions": "x"}', 400, "InvalidParameterValueException"),
        ("GET", "/2015-03-31/nowhere", None, 404, "UnknownOperationException"),
        ("PATCH", f"/2015-03-31/functions/{name}", b"{}", 405, "UnknownOperationException"),
        ("GET", "/2015-03-31/functions?MaxItems=zero", None, 400, "InvalidParameterValueException"),
        ("GET", "/2015-03-31/functions?Marker=nope", None, 400, "InvalidParameterValueException"),
        ("GET", "/2015-03-31/functions/bad%20name", None, 400, "ValidationException"),
        ("GET", f"/2015-03-31/functions/{name}?Qualifier=bad!", None, 400,
         "ValidationException"),
        ("POST", f"/2015-03-31/functions/{name}/invocations?Qualifier={'q' * 200}", b"{}", 400,
         "ValidationException"),
        ("POST", f"/2015-03-31/functions/{name}/aliases",
         b'{"Name": "123", "FunctionVersion": "$LATEST"}', 400, "ValidationException"),
    ]  # fmt: skip
    for method, path, body, status, code in cases:
        got_status, headers, reply = raw(local_lambda, method, path, body)
        assert (got_status, headers["x-amzn-ErrorType"]) == (status, code), (method, path)
        assert message_of(headers, reply), (method, path)
    # The server is still healthy afterwards.
    status, _, reply = raw(local_lambda, "GET", f"/2015-03-31/functions/{name}")
    assert status == 200 and reply["Configuration"]["FunctionName"] == name


def test_signed_requests_are_accepted_and_answered_with_request_ids(lambda_client):
    listed = lambda_client.list_functions()
    assert listed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert listed["ResponseMetadata"]["RequestId"]


GARBAGE = [
    b"", b"null", b"17", b'"text"', b"\xff\xfe\x00", b"{", b"[]",
    b'{"FunctionName": [], "Name": {}, "FunctionVersion": 5, "Code": "zip"}',
    b'{"Timeout": {}, "MemorySize": "big", "Environment": {"Variables": []}}',
    b'{"RoutingConfig": {"AdditionalVersionWeights": {"x": "y"}}, "Description": 5}',
    b'{"ReservedConcurrentExecutions": null, "Publish": "yes", "RevisionId": 3}',
    b'{"ZipFile": "%%%", "Handler": "", "Runtime": 3, "Role": null}',
]  # fmt: skip


def test_garbage_bodies_never_cause_a_server_error(local_lambda, make_function):
    name = make_function(ECHO)
    routes = [
        ("POST", "/2015-03-31/functions"),
        ("PUT", f"/2015-03-31/functions/{name}/code"),
        ("PUT", f"/2015-03-31/functions/{name}/configuration"),
        ("POST", f"/2015-03-31/functions/{name}/versions"),
        ("POST", f"/2015-03-31/functions/{name}/aliases"),
        ("PUT", f"/2015-03-31/functions/{name}/aliases/live"),
        ("PUT", f"/2017-10-31/functions/{name}/concurrency"),
        ("POST", f"/2015-03-31/functions/{name}/invocations"),
        ("PUT", f"/_lambdakit/faults/{name}"),
    ]
    for method, path in routes:
        for body in GARBAGE:
            status, headers, reply = raw(local_lambda, method, path, body)
            assert status < 500, (method, path, body, reply)
            if status >= 400:
                assert headers["x-amzn-ErrorType"], (method, path, body)
                assert message_of(headers, reply), (method, path, body)


def test_oversized_code_upload_is_refused_before_it_is_read(local_lambda):
    import http.client
    from urllib.parse import urlsplit

    url = urlsplit(local_lambda.endpoint_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("POST", "/2015-03-31/functions")
    connection.putheader("Content-Length", str(80 * 1024 * 1024))
    connection.putheader("Content-Type", "application/json")
    connection.endheaders()
    connection.send(b'{"FunctionName": "huge", "Code": {"ZipFile": "')
    response = connection.getresponse()
    assert response.status == 413
    assert response.getheader("x-amzn-ErrorType") == "RequestEntityTooLargeException"
    assert "69905067" in json.loads(response.read())["message"]
    connection.close()


def test_publish_flags_dry_run_and_all_versions_listing(lambda_client, zip_code, wait_updated,
                                                        make_function):  # fmt: skip
    name = make_function(RETURN_ONE, Publish=True)
    versions = lambda_client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1"]
    checked = lambda_client.update_function_code(
        FunctionName=name, ZipFile=zip_code(RETURN_TWO), DryRun=True
    )
    assert checked["CodeSha256"] != versions[1]["CodeSha256"]
    assert (
        lambda_client.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
        == (versions[1]["CodeSha256"])
    )  # a dry run changes nothing
    published = lambda_client.update_function_code(
        FunctionName=name, ZipFile=zip_code(RETURN_TWO), Publish=True
    )
    assert published["Version"] == "2"
    wait_updated(name)
    every = [
        f["FunctionArn"]
        for page in lambda_client.get_paginator("list_functions").paginate(FunctionVersion="ALL")
        for f in page["Functions"]
        if f["FunctionName"] == name
    ]
    assert every == [
        f"{ARN_PREFIX}{name}:$LATEST",
        f"{ARN_PREFIX}{name}:1",
        f"{ARN_PREFIX}{name}:2",
    ]


def test_stale_revision_ids_are_refused(lambda_client, make_function):
    name = make_function(ECHO)
    lambda_client.publish_version(FunctionName=name)
    alias = lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for call in (
        lambda: lambda_client.update_alias(
            FunctionName=name, Name="live", Description="x", RevisionId="stale"
        ),
        lambda: lambda_client.update_function_configuration(
            FunctionName=name, Timeout=5, RevisionId="stale"
        ),
        lambda: lambda_client.publish_version(FunctionName=name, RevisionId="stale"),
    ):
        with pytest.raises(ClientError) as exc_info:
            call()
        assert error_of(exc_info)[:2] == ("PreconditionFailedException", 412)
    updated = lambda_client.update_alias(
        FunctionName=name, Name="live", Description="x", RevisionId=alias["RevisionId"]
    )
    assert updated["Description"] == "x" and updated["RevisionId"] != alias["RevisionId"]


def test_account_settings_report_concurrency_and_code(lambda_client, make_function):
    name = make_function(ECHO)
    before = lambda_client.get_account_settings()
    limit, usage = before["AccountLimit"], before["AccountUsage"]
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["CodeSizeZipped"] == 50 * 1024 * 1024
    assert limit["CodeSizeUnzipped"] == 250 * 1024 * 1024
    assert usage["FunctionCount"] >= 1 and usage["TotalCodeSize"] > 0
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    after = lambda_client.get_account_settings()["AccountLimit"]
    assert after["UnreservedConcurrentExecutions"] == limit["UnreservedConcurrentExecutions"] - 5


def test_tags(lambda_client, make_function):
    name = make_function(ECHO, Tags={"team": "data"})
    arn = f"{ARN_PREFIX}{name}"
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "data"}
    lambda_client.tag_resource(Resource=arn, Tags={"stage": "test", "team": "ml"})
    assert lambda_client.get_function(FunctionName=name)["Tags"] == {"team": "ml", "stage": "test"}
    lambda_client.untag_resource(Resource=arn, TagKeys=["team"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"stage": "test"}
    for call, code in (
        (lambda: lambda_client.list_tags(Resource=f"{arn}:1"), "InvalidParameterValueException"),
        (lambda: lambda_client.list_tags(Resource=f"{arn}-gone"), "ResourceNotFoundException"),
        (lambda: lambda_client.tag_resource(Resource=arn, Tags={"aws:x": "y"}),
         "InvalidParameterValueException"),
    ):  # fmt: skip
        with pytest.raises(ClientError) as exc_info:
            call()
        assert error_of(exc_info)[0] == code
