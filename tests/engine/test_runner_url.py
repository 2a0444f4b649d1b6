"""lambdakit.run(url=...) end to end: function URLs of `lambdakit local`, over plain HTTP.

The handler reads the batch from the payload format 2.0 event's body, as a function behind
a URL does; faults are the local service's own (throttles and errors injected per function).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import lambdakit
from lambdakit.aws.function_urls import create_function_url, parse_function_url, safe_url
from lambdakit.engine.cache import Cache
from lambdakit.engine.retry import Retry
from lambdakit.invocation import CLIENT_ERROR, FUNCTION_ERROR, THROTTLE
from tests.engine.test_runner_local import set_faults

URL_BATCH = """
import json

def handler(event, context):
    items = json.loads(event["body"])["Items"]
    if any(item.get("kind") == "bad" for item in items):
        return {"statusCode": 400, "body": json.dumps({"message": "a bad record"})}
    if any(item.get("kind") == "raise" for item in items):
        raise RuntimeError("the handler raised")
    return [{"i": item["i"], "double": item["i"] * 2} for item in items]
"""

FAST = Retry(max_attempts=6, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def url_function(make_function: Any, lambda_client: Any) -> Any:
    """make(auth="NONE") -> (function name, its URL, with the permission it needs)."""

    def make(auth: str = "NONE") -> tuple[str, str]:
        name = make_function(URL_BATCH, Timeout=30)
        return name, create_function_url(lambda_client, name, auth)

    return make


def test_ten_thousand_records_in_order_through_faults_then_cached(
    url_function: Any, local_lambda: Any, tmp_path: Path
) -> None:
    name, url = url_function()
    set_faults(local_lambda, name, throttle_rate=0.15, error_rate=0.15, seed=3)
    records = [{"i": i} for i in range(10_000)]
    cache = Cache(tmp_path / "cache")
    result = lambdakit.run(
        records, url=url, batch_size=100, concurrency=8, retry=FAST, cache=cache, progress=False
    )
    s = result.summary()
    assert (s["records"], s["batches"], s["failed_records"], s["ok_batches"]) == (
        10_000,
        100,
        0,
        100,
    )
    outputs = list(result.outputs())
    assert [o["i"] for o in outputs] == list(range(10_000))
    assert outputs[-1] == {"i": 9_999, "double": 19_998}
    outcomes = set(result.attempts["outcome"])
    assert {THROTTLE, FUNCTION_ERROR} <= outcomes, outcomes
    assert s["throttles"] > 0 and s["retries"] > 0
    assert result.meta["function"] == url
    assert result.meta["params"]["url"] == url
    # The function behind a local URL is found, so the cache is keyed by what ran.
    entries = cache.entries()
    assert set(entries["executed_version"]) == {"$LATEST"}
    assert set(entries["function_arn"]) == {
        f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    }

    local_lambda.clear_faults(name)
    again = lambdakit.run(
        records, url=url, batch_size=100, concurrency=8, cache=cache, progress=False
    )
    assert again.summary()["cached_batches"] == 100 and again.summary()["invocations"] == 0
    assert [o["i"] for o in again.outputs()] == list(range(10_000))


def test_status_400_is_a_client_error_and_502_is_retried(url_function: Any, tmp_path: Path) -> None:
    _, url = url_function()
    records = [{"i": i, "kind": "bad" if i == 3 else "raise" if i == 7 else ""} for i in range(10)]
    result = lambdakit.run(
        records, url=url, batch_size=1, retry=Retry(max_attempts=3, base_delay=0.01), cache=False,
        progress=False,
    )  # fmt: skip
    attempts = result.attempts
    bad = attempts[attempts.batch == 3]
    assert list(bad.outcome) == [CLIENT_ERROR] and list(bad.http_status) == [400]
    raised = attempts[attempts.batch == 7]
    assert list(raised.outcome) == [FUNCTION_ERROR] * 3 and set(raised.http_status) == {502}
    s = result.summary()
    assert s["failed_records"] == 2 and s["ok_batches"] == 8
    outputs = list(result.outputs())
    assert outputs[3] is None and outputs[7] is None and outputs[9] == {"i": 9, "double": 18}


def test_aws_iam_urls_are_signed_with_auth_aws_iam(url_function: Any) -> None:
    _, url = url_function("AWS_IAM")
    records = [{"i": i} for i in range(20)]
    unsigned = lambdakit.run(records, url=url, batch_size=10, retry=1, cache=False, progress=False)
    assert set(unsigned.attempts["http_status"]) == {403}
    assert set(unsigned.attempts["outcome"]) == {CLIENT_ERROR}
    signed = lambdakit.run(
        records, url=url, auth="aws_iam", batch_size=10, cache=False, progress=False
    )
    assert [o["i"] for o in signed.outputs()] == list(range(20))


def test_an_auth_callable_adds_headers_per_request(url_function: Any) -> None:
    _, url = url_function()
    seen: list[str] = []

    def bearer(request: Any) -> dict[str, str]:
        seen.append(request.url)
        return {"Authorization": "Bearer t0k3n"}

    result = lambdakit.run(
        [{"i": 1}, {"i": 2}], url=url, auth=bearer, batch_size=1, cache=False, progress=False
    )
    assert result.summary()["failed_records"] == 0 and seen == [url, url]


def test_secrets_in_headers_and_query_are_never_recorded(
    url_function: Any, tmp_path: Path, caplog: Any
) -> None:
    """The secrets are looked for in every byte the run writes: cache, saved result, report."""
    _, url = url_function()
    header_secret, query_secret = "hdr-S3CRET-value-0001", "qry-S3CRET-value-0002"
    secret_url = f"{url}?api_key={query_secret}"
    caplog.set_level(logging.DEBUG, logger="lambdakit")
    cache_dir = tmp_path / "cache"
    result = lambdakit.run(
        [{"i": i} for i in range(30)], url=secret_url, headers={"x-api-key": header_secret},
        batch_size=5, cache=cache_dir, progress=False,
    )  # fmt: skip
    assert result.summary()["failed_records"] == 0
    result.save(tmp_path / "saved")
    result.save_report(tmp_path / "report")
    assert result.meta["params"]["headers"] == ["x-api-key"]
    assert result.meta["params"]["url"] == url
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in (header_secret, query_secret):
        assert secret.encode() not in written
        assert secret not in caplog.text
        assert secret not in repr(result.meta) and secret not in repr(result)
    # A failing endpoint's error text leaves the query string out too.
    refused = lambdakit.run(
        [{"i": 1}], url=f"http://127.0.0.1:9/lambda-url/x/?api_key={query_secret}", retry=1,
        cache=False, progress=False,
    )  # fmt: skip
    assert query_secret not in " ".join(refused.attempts["error_message"].astype(str))


def test_start_with_url_and_url_shapes(url_function: Any) -> None:
    name, url = url_function()
    handle = lambdakit.start([{"i": 5}], url=url, cache=False, progress=False)
    assert [o["i"] for o in handle.wait().outputs()] == [5]
    shape = parse_function_url(url)
    assert (shape.kind, shape.function, shape.qualifier) == ("local", name, None)
    aws = parse_function_url("https://abcdef123.lambda-url.eu-west-1.on.aws/x?y=1")
    assert (aws.kind, aws.region) == ("aws", "eu-west-1")
    assert safe_url("https://user:pw@h.example:8443/p/a?key=1#f") == "https://h.example:8443/p/a"


def test_url_arguments_are_checked(url_function: Any) -> None:
    with pytest.raises(lambdakit.InvalidInput, match="go with url="):
        lambdakit.run("fn", [1], headers={"a": "b"})
    with pytest.raises(lambdakit.InvalidInput, match="auth"):
        lambdakit.run([1], url="http://127.0.0.1:9/x", auth="basic", cache=False)
    with pytest.raises(lambdakit.InvalidInput, match="headers"):
        lambdakit.run([1], url="http://127.0.0.1:9/x", headers={"a": 1}, cache=False)


def test_unresolvable_urls_are_keyed_by_url_and_namespace(
    url_function: Any, tmp_path: Path
) -> None:
    _, url = url_function()
    # Another host name for the same service: the path names a function, but the URL config
    # does not match it, so the code behind it is unknown and the namespace keys the cache.
    other = url.replace("127.0.0.1", "localhost")
    cache = Cache(tmp_path / "cache")
    first = lambdakit.run([{"i": 1}], url=other, cache=cache, cache_namespace="v1", progress=False)
    assert first.summary()["invocations"] == 1
    entries = cache.entries()
    assert list(entries["function_arn"]) == [other]
    assert json.dumps(list(entries["cache_token"])).count("v1") == 1
    same = lambdakit.run([{"i": 1}], url=other, cache=cache, cache_namespace="v1", progress=False)
    assert same.summary()["cached_batches"] == 1
    fresh = lambdakit.run([{"i": 1}], url=other, cache=cache, cache_namespace="v2", progress=False)
    assert fresh.summary()["cached_batches"] == 0


URL_TEXT = """
import json

def handler(event, context):
    items = json.loads(event["body"])["Items"]
    if items[0].get("short"):
        return [item["i"] for item in items][:-1]
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "plain text"}
"""


def test_a_url_reply_is_read_by_the_strict_contract_too(
    make_function: Any, lambda_client: Any, tmp_path: Path
) -> None:
    name = make_function(URL_TEXT, Timeout=30)
    url = create_function_url(lambda_client, name, "NONE")
    cache = Cache(tmp_path / "cache")
    options = {"batch_size": 2, "retry": Retry(max_attempts=2, base_delay=0.01), "cache": cache}
    text = lambdakit.run([{"i": 0}, {"i": 1}], url=url, progress=False, **options)
    assert set(text.attempts["error_type"]) == {"Lambdakit.ResponseNotJSON"}
    assert text.attempts["error_message"].str.contains("'plain text'").all()
    assert len(text.attempts) == 2 and text.summary()["failed_records"] == 2
    short = lambdakit.run([{"i": 0, "short": True}, {"i": 1}], url=url, progress=False, **options)
    assert set(short.attempts["error_type"]) == {"Lambdakit.OutputCountMismatch"}
    assert cache.entries().empty  # nothing that broke the contract is cached
    raw = lambdakit.run([{"i": 0}, {"i": 1}], url=url, outputs="raw", progress=False, **options)
    assert list(raw.outputs()) == ["plain text", "plain text"]
    assert len(cache.entries()) == 1
