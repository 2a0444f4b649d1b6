"""`lambdakit run` with an S3 input and an S3 report (moto's server), against lambdakit local."""

from __future__ import annotations

import gzip
import json

import lambdakit
from lambdakit.cli.main import main

ECHO = "def handler(event, context):\n    return event['Items']\n"


def test_run_reads_s3_and_writes_its_report_there(
    local_lambda, make_function, s3_server, s3_client, s3_bucket, tmp_path, capsys
):
    lines = "".join(json.dumps({"id": i}) + "\n" for i in range(30)) + "not json\n"
    s3_client.put_object(Bucket=s3_bucket, Key="in/a.jsonl.gz", Body=gzip.compress(lines.encode()))
    name = make_function(ECHO)
    report = f"s3://{s3_bucket}/runs/cli/"
    code = main([
        "run", name, f"s3://{s3_bucket}/in/", "--report", report, "--batch-size", "10",
        "--endpoint-url", local_lambda.endpoint_url, "--s3-endpoint-url", s3_server,
        "--no-progress", "--cache-dir", str(tmp_path / "cache"),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1  # the bad line was rejected
    assert f"report: {report}" in captured.out
    assert f"see {report}errors.csv" in captured.err
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="runs/cli/")["Contents"]
    keys = {o["Key"].removeprefix("runs/cli/") for o in listed}
    assert {"manifest.json", "errors.csv", "outputs.jsonl", "result/meta.json"} <= keys
    loaded = lambdakit.RunResult.load(report, s3_endpoint_url=s3_server)
    errors = loaded.errors()
    assert errors[["record", "line", "row"]].values.tolist() == [[30, 31, 31]]
    assert errors["source"].tolist() == [f"s3://{s3_bucket}/in/a.jsonl.gz"]
    manifest = json.loads(
        s3_client.get_object(Bucket=s3_bucket, Key="runs/cli/manifest.json")["Body"].read()
    )
    assert manifest["source"]["objects_read"][0]["object"] == f"s3://{s3_bucket}/in/a.jsonl.gz"


def test_a_report_bucket_that_does_not_exist_stops_the_run_first(
    local_lambda, make_function, s3_server, tmp_path, capsys
):
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1}\n')
    name = make_function(ECHO)
    code = main([
        "run", name, str(data), "--report", "s3://lk-no-such-bucket-w/r/",
        "--endpoint-url", local_lambda.endpoint_url, "--s3-endpoint-url", s3_server,
        "--no-progress", "--no-cache",
    ])  # fmt: skip
    assert code == 2
    assert "the bucket does not exist" in capsys.readouterr().err
