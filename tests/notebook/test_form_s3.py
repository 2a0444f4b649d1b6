"""The form's dataset chooser over S3 (moto's server): a preview without reading everything."""

from __future__ import annotations

import gzip
import json

import lambdakit

ECHO = "def handler(event, context):\n    return [item['n'] * 2 for item in event['Items']]\n"


def _lines(start: int, stop: int) -> bytes:
    return "".join(
        json.dumps({"n": n, "tag": f"row-{n}"}) + "\n" for n in range(start, stop)
    ).encode()


def test_an_s3_prefix_is_previewed_counted_and_run(
    local_lambda, make_function, s3_server, s3_client, s3_bucket
):
    for part in range(3):
        body = gzip.compress(_lines(part * 1000, part * 1000 + 1000))
        s3_client.put_object(Bucket=s3_bucket, Key=f"in/part-{part}.jsonl.gz", Body=body)
    total = sum(
        o["Size"] for o in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="in/")["Contents"]
    )
    name = make_function(ECHO)
    form = lambdakit.form(
        endpoint_url=local_lambda.endpoint_url, function=name, cache=False,
        s3_endpoint_url=s3_server, batch_size=250,
    )  # fmt: skip
    form.path.value = f"s3://{s3_bucket}/in/"
    preview = form.preview.value
    assert f"first 5 rows of s3://{s3_bucket}/in/ (3 objects, {total / 1000:.1f} KB)" in preview
    assert "row-4" in preview and "row-5" not in preview
    form.run_button.click()
    result = form.wait(timeout=60)
    assert list(result.outputs()) == [n * 2 for n in range(3000)]


def test_s3_problems_are_shown_and_stop_the_run(local_lambda, s3_server, s3_bucket):
    form = lambdakit.form(
        endpoint_url=local_lambda.endpoint_url, function="any", s3_endpoint_url=s3_server
    )
    form.path.value = "s3://lk-no-such-bucket-v/in/"
    assert "the bucket does not exist (NoSuchBucket)" in form.preview.value
    form.run_button.click()
    assert "the bucket does not exist" in form.message.value and form.handle is None
    form.path.value = f"s3://{s3_bucket}/empty/"
    assert "no objects under this prefix" in form.preview.value
