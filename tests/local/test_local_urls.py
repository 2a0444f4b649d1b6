"""Function URLs in lambdakit local: the configuration API through boto3, and the URLs through
plain HTTP clients (urllib3, and curl in a subprocess)."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from lambdakit.local.urls import build_event, http_reply
from tests.local.test_local_api import ARN_PREFIX, error_of

ROUTER = r"""
import base64, json

def handler(event, context):
    path = event["rawPath"]
    if path == "/raise":
        raise ValueError("boom")
    if path == "/plain":
        return {"answer": 42}
    if path == "/value":
        return [1, "two"]
    if path == "/bad":
        return {"statusCode": "teapot"}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes", "X-Number": 7,
                    "Content-Length": "1"},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps(event),
    }
"""

# The credentials LocalLambda.client() signs with: known to every local service.
LOCAL = Credentials("lambdakit", "lambdakit")


@pytest.fixture
def http() -> urllib3.PoolManager:
    return urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=10, read=120))


def _public(client: Any, name: str, qualifier: str | None = None) -> None:
    extra = {"Qualifier": qualifier} if qualifier else {}
    client.add_permission(
        FunctionName=name, StatementId="FunctionURLAllowPublicAccess",
        Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE", **extra,
    )  # fmt: skip


def test_url_config_api_round_trip(
    lambda_client: Any, make_function: Any, local_lambda: Any
) -> None:
    name = make_function(ROUTER)
    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["POST"], "MaxAge": 60}
    created = lambda_client.create_function_url_config(
        FunctionName=name, AuthType="NONE", Cors=cors
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionUrl"] == f"{local_lambda.endpoint_url}/lambda-url/{name}/"
    assert created["FunctionArn"] == ARN_PREFIX + name
    assert (created["AuthType"], created["InvokeMode"], created["Cors"]) == (
        "NONE",
        "BUFFERED",
        cors,
    )
    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert error_of(exc)[:2] == ("ResourceConflictException", 409)

    got = lambda_client.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == created["FunctionUrl"] and got["LastModifiedTime"]
    updated = lambda_client.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["Cors"] == cors

    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    alias = lambda_client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="NONE"
    )
    assert alias["FunctionUrl"].endswith(f"/lambda-url/{name}:live/")
    assert alias["FunctionArn"] == f"{ARN_PREFIX}{name}:live"
    listed = lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert sorted(c["FunctionUrl"] for c in listed) == sorted(
        [created["FunctionUrl"], alias["FunctionUrl"]]
    )

    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, Qualifier="1", AuthType="NONE")
    assert error_of(exc)[:2] == ("ValidationException", 400)  # the model's Qualifier pattern
    with pytest.raises(ClientError) as exc:
        lambda_client.update_function_url_config(FunctionName=name, InvokeMode="RESPONSE_STREAM")
    code, status, message = error_of(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "RESPONSE_STREAM is not supported" in message
    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(
            FunctionName=name, Qualifier="nope", AuthType="NONE"
        )
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)

    lambda_client.delete_function_url_config(FunctionName=name, Qualifier="live")
    with pytest.raises(ClientError) as exc:
        lambda_client.get_function_url_config(FunctionName=name, Qualifier="live")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)


def test_policy_api(lambda_client: Any, make_function: Any) -> None:
    name = make_function(ROUTER)
    with pytest.raises(ClientError) as exc:
        lambda_client.get_policy(FunctionName=name)
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    added = lambda_client.add_permission(
        FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl",
        Principal="*", FunctionUrlAuthType="NONE",
    )  # fmt: skip
    statement = json.loads(added["Statement"])
    assert statement == {
        "Sid": "public", "Effect": "Allow", "Principal": "*",
        "Action": "lambda:InvokeFunctionUrl", "Resource": ARN_PREFIX + name,
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
    }  # fmt: skip
    lambda_client.add_permission(
        FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
    )  # fmt: skip
    policy = lambda_client.get_policy(FunctionName=name)
    document = json.loads(policy["Policy"])
    assert [s["Sid"] for s in document["Statement"]] == ["public", "s3"]
    assert document["Statement"][1]["Principal"] == {"Service": "s3.amazonaws.com"}
    with pytest.raises(ClientError) as exc:
        lambda_client.add_permission(
            FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction", Principal="*"
        )
    assert error_of(exc)[:2] == ("ResourceConflictException", 409)
    lambda_client.remove_permission(FunctionName=name, StatementId="s3")
    with pytest.raises(ClientError) as exc:
        lambda_client.remove_permission(FunctionName=name, StatementId="s3")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    assert len(json.loads(lambda_client.get_policy(FunctionName=name)["Policy"])["Statement"]) == 1


def test_url_round_trip_with_urllib3(lambda_client: Any, make_function: Any, http: Any) -> None:
    name = make_function(ROUTER)
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")[
        "FunctionUrl"
    ]
    _public(lambda_client, name)

    reply = http.request(
        "PUT", url + "some/path?b=2&a=1&a=3", body=b'{"hello": "world"}',
        headers={"Content-Type": "application/json", "X-Custom": "one", "Cookie": "c1=v1; c2=v2"},
    )  # fmt: skip
    assert reply.status == 201, reply.data
    assert reply.headers["X-Echo"] == "yes" and reply.headers["X-Number"] == "7"
    assert reply.headers.getlist("X-Multi") == ["a", "b"]
    assert reply.headers.getlist("Set-Cookie") == ["session=abc; Path=/", "theme=dark"]
    assert reply.headers["x-amzn-RequestId"]
    event = json.loads(reply.data)
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/some/path"
    assert event["rawQueryString"] == "b=2&a=1&a=3"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-custom"] == "one"
    assert event["headers"]["content-type"] == "application/json"
    assert (event["body"], event["isBase64Encoded"]) == ('{"hello": "world"}', False)
    http_ctx = event["requestContext"]["http"]
    assert (http_ctx["method"], http_ctx["path"], http_ctx["sourceIp"]) == (
        "PUT",
        "/some/path",
        "127.0.0.1",
    )
    assert event["requestContext"]["requestId"] == reply.headers["x-amzn-RequestId"]
    assert isinstance(event["requestContext"]["timeEpoch"], int)

    binary = bytes(range(256)) * 4
    reply = http.request("POST", url + "echo", body=binary, headers={"Content-Type": "image/png"})
    event = json.loads(reply.data)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == binary

    reply = http.request("GET", url + "binary")
    assert reply.status == 200 and reply.data == bytes(range(256))
    assert reply.headers["Content-Type"] == "application/octet-stream"

    reply = http.request("GET", url + "plain")
    assert (reply.status, reply.headers["Content-Type"]) == (200, "application/json")
    assert json.loads(reply.data) == {"answer": 42}
    reply = http.request("GET", url + "value")
    assert (reply.status, json.loads(reply.data)) == (200, [1, "two"])

    reply = http.request("GET", url + "raise")
    assert reply.status == 502 and json.loads(reply.data) == {"Message": "Internal Server Error"}
    reply = http.request("GET", url + "bad")
    assert reply.status == 502
    reply = http.request("GET", url)  # the root path
    assert reply.status == 201 and json.loads(reply.data)["rawPath"] == "/"


def test_url_with_curl(lambda_client: Any, make_function: Any) -> None:
    name = make_function(ROUTER)
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")[
        "FunctionUrl"
    ]
    _public(lambda_client, name)
    done = subprocess.run(
        ["curl", "-s", "-i", "--max-time", "120", "-X", "POST", "-H", "Content-Type: text/plain",
         "-H", "X-Dup: 1", "-H", "X-Dup: 2", "-b", "k=v", "--data-binary", "plain text",
         url + "curl?x=1"],
        capture_output=True, check=True, timeout=180,
    )  # fmt: skip
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201"), head
    assert b"set-cookie: theme=dark" in head.lower()
    event = json.loads(body)
    assert (event["rawPath"], event["body"], event["cookies"]) == ("/curl", "plain text", ["k=v"])
    assert event["headers"]["x-dup"] == "1,2"
    assert event["headers"]["user-agent"].startswith("curl/")
    assert event["requestContext"]["http"]["userAgent"].startswith("curl/")


def test_none_url_is_forbidden_until_a_statement_allows_it(
    lambda_client: Any, make_function: Any, http: Any
) -> None:
    name = make_function(ROUTER)
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")[
        "FunctionUrl"
    ]
    reply = http.request("GET", url + "plain")
    assert reply.status == 403 and json.loads(reply.data) == {"Message": "Forbidden"}
    # A statement for another action, or limited to AWS_IAM, does not open it.
    lambda_client.add_permission(
        FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction", Principal="*"
    )
    lambda_client.add_permission(
        FunctionName=name, StatementId="iam", Action="lambda:InvokeFunctionUrl", Principal="*",
        FunctionUrlAuthType="AWS_IAM",
    )  # fmt: skip
    assert http.request("GET", url + "plain").status == 403
    _public(lambda_client, name)
    assert http.request("GET", url + "plain").status == 200
    lambda_client.remove_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess")
    assert http.request("GET", url + "plain").status == 403


def _signed(url: str, body: bytes, credentials: Credentials = LOCAL) -> tuple[str, dict[str, str]]:
    request = AWSRequest(
        method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(credentials, "lambda", "us-east-1").add_auth(request)
    prepared = request.prepare()
    return prepared.url, dict(prepared.headers)


def test_aws_iam_url_takes_signed_requests_only(
    lambda_client: Any, make_function: Any, http: Any
) -> None:
    name = make_function(ROUTER)
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    url = lambda_client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="AWS_IAM"
    )["FunctionUrl"]
    body = b'{"Items": [1]}'

    signed_url, headers = _signed(url + "echo?q=1", body)
    reply = http.request("POST", signed_url, body=body, headers=headers)
    assert reply.status == 201, reply.data
    event = json.loads(reply.data)
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == "lambdakit"
    assert event["requestContext"]["accountId"] == "123456789012"

    reply = http.request(
        "POST", url + "echo", body=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 403 and json.loads(reply.data) == {"Message": "Forbidden"}

    signed_url, headers = _signed(url + "echo", body, Credentials("lambdakit", "wrong"))
    reply = http.request("POST", signed_url, body=body, headers=headers)
    assert (reply.status, reply.headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")

    signed_url, headers = _signed(url + "echo", body, Credentials("AKIDSTRANGER", "x"))
    reply = http.request("POST", signed_url, body=body, headers=headers)
    assert (reply.status, reply.headers["x-amzn-ErrorType"]) == (403, "UnrecognizedClientException")

    signed_url, headers = _signed(url + "echo", body)
    reply = http.request("POST", signed_url, body=b'{"Items": [2]}', headers=headers)
    assert (reply.status, reply.headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")


def test_cors_preflight_and_reply_headers(
    lambda_client: Any, make_function: Any, http: Any
) -> None:
    name = make_function(ROUTER)
    cors = {
        "AllowOrigins": ["https://app.example"], "AllowMethods": ["POST", "GET"],
        "AllowHeaders": ["content-type"], "ExposeHeaders": ["x-echo"], "MaxAge": 300,
    }  # fmt: skip
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE", Cors=cors)[
        "FunctionUrl"
    ]
    _public(lambda_client, name)
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    reply = http.request("OPTIONS", url + "x", headers=preflight)
    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert reply.headers["Access-Control-Allow-Methods"] == "POST,GET"
    assert reply.headers["Access-Control-Allow-Headers"] == "content-type"
    assert reply.headers["Access-Control-Max-Age"] == "300"
    other = http.request(
        "OPTIONS", url + "x", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers
    reply = http.request("GET", url + "plain", headers={"Origin": "https://app.example"})
    assert reply.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert reply.headers["Access-Control-Expose-Headers"] == "x-echo"


def test_url_invocations_throttle_and_log_like_invoke(
    lambda_client: Any, make_function: Any, http: Any, local_lambda: Any
) -> None:
    name = make_function(ROUTER)
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")[
        "FunctionUrl"
    ]
    _public(lambda_client, name)
    assert http.request("GET", url + "plain").status == 200
    lines = local_lambda.logs(name)
    assert any(line.startswith("REPORT RequestId:") for line in lines)
    local_lambda.set_faults(name, throttle_rate=1.0)
    reply = http.request("GET", url + "plain")
    assert reply.status == 429 and reply.headers["Retry-After"] == "1"
    assert reply.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    local_lambda.set_faults(name, throttle_rate=0.0, error_rate=1.0)
    assert http.request("GET", url + "plain").status == 502
    local_lambda.clear_faults(name)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert http.request("GET", url + "plain").status == 429


def test_unknown_urls_are_404(http: Any, local_lambda: Any) -> None:
    reply = http.request("GET", f"{local_lambda.endpoint_url}/lambda-url/no-such-function/")
    assert reply.status == 404
    assert "CreateFunctionUrlConfig" in json.loads(reply.data)["Message"]


def test_build_event_and_http_reply_rules() -> None:
    event = build_event(
        method="GET", raw_path="/p", raw_query="", headers=[("A", "1"), ("a", "2")], body=b"",
        source_ip="10.0.0.1", request_id="r", domain="h", url_id="u", now=1_700_000_000.0,
    )  # fmt: skip
    assert event["headers"]["a"] == "1,2"
    assert "queryStringParameters" not in event and "body" not in event and "cookies" not in event
    assert event["requestContext"]["timeEpoch"] == 1_700_000_000_000
    assert event["requestContext"]["time"] == "14/Nov/2023:22:13:20 +0000"
    assert http_reply(b'"text"') == (200, [("Content-Type", "application/json")], b'"text"')
    assert http_reply(b'{"statusCode": 204}') == (204, [], b"")
    status, _, body = http_reply(b'{"statusCode": 400, "body": "no"}')
    assert (status, body) == (400, b"no")


def test_a_timed_out_function_answers_502_and_logs_its_timeout(
    lambda_client: Any, make_function: Any, http: Any, local_lambda: Any
) -> None:
    sleeper = "import time\n\ndef handler(event, context):\n    time.sleep(30)\n"
    name = make_function(sleeper, Timeout=1)
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")[
        "FunctionUrl"
    ]
    _public(lambda_client, name)
    reply = http.request("GET", url)
    assert reply.status == 502 and json.loads(reply.data) == {"Message": "Internal Server Error"}
    report = [line for line in local_lambda.logs(name) if line.startswith("REPORT")]
    assert report and "Status: timeout" in report[-1]


def test_a_deleted_alias_takes_its_url_and_policy_with_it(
    lambda_client: Any, make_function: Any, http: Any
) -> None:
    name = make_function(ROUTER)
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    _public(lambda_client, name, "live")
    lambda_client.delete_alias(FunctionName=name, Name="live")
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    assert lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    with pytest.raises(ClientError) as exc:
        lambda_client.get_policy(FunctionName=name, Qualifier="live")
    assert error_of(exc)[:2] == ("ResourceNotFoundException", 404)
    url = lambda_client.create_function_url_config(
        FunctionName=name, Qualifier="live", AuthType="NONE"
    )["FunctionUrl"]
    assert http.request("GET", url + "plain").status == 403  # the old statement is gone
