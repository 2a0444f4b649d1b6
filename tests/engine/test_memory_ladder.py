"""The memory ladder against `lambdakit local`: out-of-memory batches climb to versions with
more memory, published from the same code; `$LATEST` and aliases are left as they were."""

from __future__ import annotations

import pytest
from function_sources import MEMORY_HOG

import lambdakit
from lambdakit.aws.memory_versions import LADDER_TAG
from lambdakit.engine.ladder import MemoryLadder
from lambdakit.errors import InvalidInput


def test_memory_ladder_settings_are_checked():
    assert MemoryLadder.coerce([256, 512]) == MemoryLadder((256, 512))
    assert MemoryLadder.coerce(None) is None and MemoryLadder.coerce(True) == MemoryLadder()
    assert MemoryLadder([256, 512]).above(128) == 256
    assert MemoryLadder([256, 512]).above(512) is None
    for bad in ([], [512, 256], [256, 256], [64], [20000], ["big"]):
        with pytest.raises(InvalidInput, match="MemoryLadder"):
            MemoryLadder.coerce(bad)
    with pytest.raises(InvalidInput, match="memory ladder"):
        MemoryLadder.coerce("1024")


def _ladder_versions(client, name):
    versions = client.list_versions_by_function(FunctionName=name)["Versions"]
    return {v["Version"]: v for v in versions if v.get("Description", "").startswith(LADDER_TAG)}


def test_out_of_memory_batches_finish_through_the_ladder_and_latest_is_unchanged(
    local_lambda, lambda_client, make_function, tmp_path
):
    name = make_function(MEMORY_HOG, MemorySize=128, Timeout=30)
    before = lambda_client.get_function_configuration(FunctionName=name)
    records = [{"i": i, "mb": 300 if i in (2, 5) else 0} for i in range(8)]
    run = dict(endpoint_url=local_lambda.endpoint_url, progress=False, batch_size=1,
               concurrency=4, on_oom=MemoryLadder([256, 512]))  # fmt: skip
    result = lambdakit.run(name, records, cache=tmp_path / "cache", **run)
    assert result.summary()["failed_records"] == 0
    assert list(result.outputs()) == [i * 10 for i in range(8)]
    batches = result.batches.set_index("batch")
    # 300 MB ran out at 128 and at 256 MB: those two finished at 512, the others never climbed.
    assert batches.loc[[2, 5], "memory_mb"].tolist() == [512.0, 512.0]
    assert batches.drop(index=[2, 5])["memory_mb"].isna().all()
    attempts = result.attempts
    oom = attempts[attempts["error_type"] == "Runtime.OutOfMemory"]
    assert sorted(oom["batch"]) == [2, 2, 5, 5]
    assert result.summary()["retries"] >= 4
    ladder = _ladder_versions(lambda_client, name)
    assert sorted(int(v["MemorySize"]) for v in ladder.values()) == [256, 512]
    assert all(v["CodeSha256"] == before["CodeSha256"] for v in ladder.values())
    climbed = attempts[attempts["batch"].isin([2, 5]) & (attempts["outcome"] == "ok")]
    assert set(climbed["executed_version"]) == {v for v, c in ladder.items()
                                                 if c["MemorySize"] == 512}  # fmt: skip
    assert set(climbed["memory_size_mb"]) == {512.0}
    after = lambda_client.get_function_configuration(FunctionName=name)
    assert after["MemorySize"] == 128 and after["CodeSha256"] == before["CodeSha256"]
    assert result.meta["params"]["on_oom"] == [256, 512]
    assert result.summary()["ladder_batches"] == 2
    title = result.plot("cost").axes[0].get_title()
    assert "2 batches needed the memory ladder" in title
    # The climbed batches are cached under the run's own version, with where they ran.
    entries = lambdakit.Cache(tmp_path / "cache").entries(name)
    assert len(entries) == 8
    cached = lambdakit.run(name, records, cache=tmp_path / "cache", **run)
    assert cached.summary()["cached_batches"] == 8  # found under the run's own version
    # A second run reuses the tagged versions instead of publishing more.
    again = lambdakit.run(name, records, cache=False, **run)
    assert again.summary()["failed_records"] == 0
    assert _ladder_versions(lambda_client, name).keys() == ladder.keys()


SLOW_WHEN_SMALL = """
import os, time

def handler(event, context):
    if int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) < 256:
        time.sleep(5)  # past the 1 s timeout: more memory (more CPU, on Lambda) is faster
    return [item * 3 for item in event["Items"]]
"""


def test_timeouts_climb_only_with_on_timeout(local_lambda, lambda_client, make_function):
    name = make_function(SLOW_WHEN_SMALL, MemorySize=128, Timeout=1)
    run = dict(endpoint_url=local_lambda.endpoint_url, progress=False, batch_size=2,
               cache=False, retry=1)  # fmt: skip
    stuck = lambdakit.run(name, [1, 2], on_oom=[256], **run)
    assert stuck.summary()["failed_records"] == 2  # on_oom alone leaves timeouts alone
    assert stuck.errors()["error_type"].tolist() == ["Sandbox.Timedout"] * 2
    climbed = lambdakit.run(name, [1, 2], on_oom=[256], on_timeout=True, **run)
    assert climbed.summary()["failed_records"] == 0 and list(climbed.outputs()) == [3, 6]
    assert climbed.batches["memory_mb"].tolist() == [256.0]
    assert climbed.meta["params"]["on_timeout"] == [256]
    assert lambda_client.get_function_configuration(FunctionName=name)["MemorySize"] == 128


def test_without_a_version_to_climb_to_the_oom_is_reported_with_a_hint(
    local_lambda, lambda_client, make_function
):
    from tests.conftest import build_zip

    name = make_function(MEMORY_HOG, MemorySize=128, Timeout=30)
    published = lambda_client.publish_version(FunctionName=name)["Version"]
    # $LATEST now runs other code: no version with more memory can be made of version 1.
    code = build_zip(MEMORY_HOG + "\n# v2\n")
    lambda_client.update_function_code(FunctionName=name, ZipFile=code)
    records = [{"i": 0, "mb": 300}, {"i": 1, "mb": 0}]
    result = lambdakit.run(name, records, qualifier=published, batch_size=1, cache=False,
                           endpoint_url=local_lambda.endpoint_url, progress=False,
                           on_oom=[256, 512], retry=1)  # fmt: skip
    errors = result.errors()
    assert len(errors) == 1 and errors.iloc[0]["error_type"] == "Runtime.OutOfMemory"
    message = errors.iloc[0]["error_message"]
    assert "lambda:UpdateFunctionConfiguration and lambda:PublishVersion" in message
    assert "runs other code" in message
    assert list(result.outputs()) == [None, 10]
    assert result.summary()["ladder_batches"] == 0
    assert _ladder_versions(lambda_client, name) == {}


def test_a_ladder_needs_a_function_run(local_lambda):
    with pytest.raises(InvalidInput, match="on_oom"):
        lambdakit.run([1], url="http://127.0.0.1:1/x", on_oom=[256], progress=False)
