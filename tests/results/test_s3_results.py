"""Results to S3 (moto's server): reports and saved results in the same layout, read back."""

import pandas as pd
import pytest
from factories import make_run

from lambdakit.errors import InvalidInput, StorageError
from lambdakit.results.result import RunResult

TABLES = ("attempts", "batches", "failures", "rejections", "not_run")


def _keys(s3_client, bucket, prefix):
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", ()))


def _same(loaded, run):
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(run, name), check_exact=True)
    assert loaded.meta == run.meta
    assert loaded.records == run.records
    assert list(loaded.outputs()) == list(run.outputs())
    assert loaded.summary() == run.summary()
    assert repr(loaded) == repr(run)


@pytest.fixture
def run():
    scripts = {2: ["function_error", "ok"], 5: ["function_error"] * 3}
    return make_run(records=120, scripts=scripts, rejected=[7, 33])


def test_save_report_to_s3_writes_the_local_layout_and_loads_back_exactly(
    run, s3_server, s3_client, s3_bucket, tmp_path
):
    url = f"s3://{s3_bucket}/runs/2026-12-03/"
    assert run.save_report(url, s3_endpoint_url=s3_server) == url
    local = run.save_report(tmp_path / "report")
    on_disk = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert _keys(s3_client, s3_bucket, "runs/2026-12-03/") == on_disk
    assert "manifest.json" in on_disk and "result/meta.json" in on_disk
    loaded = RunResult.load(url, s3_endpoint_url=s3_server)
    _same(loaded, run)
    _same(RunResult.load(local), run)  # a local report folder loads the same way


def test_save_and_load_a_result_in_s3(run, s3_server, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)  # the standard variable suffices
    url = f"s3://{s3_bucket}/saved/run-1"
    run.save(url)
    _same(RunResult.load(url), run)


def test_s3_destinations_that_cannot_work_are_named(run, s3_server, s3_bucket):
    with pytest.raises(StorageError, match="the bucket does not exist"):
        run.save_report("s3://lk-no-such-bucket-y/r/", s3_endpoint_url=s3_server)
    with pytest.raises(InvalidInput, match=f"no objects under s3://{s3_bucket}/nothing/"):
        RunResult.load(f"s3://{s3_bucket}/nothing/", s3_endpoint_url=s3_server)
    with pytest.raises(InvalidInput, match="is not a bucket name"):
        run.save("s3://Bad_Bucket/x")
