"""save_report: PNGs, tables as Parquet and CSV, manifest.json, and no credential anywhere."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest
from factories import ARN, make_run, mixed_run

from lambdakit.results.redact import REDACTED, scrub
from lambdakit.results.report import manifest

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION = "IQoJb3JpZ2luX2VjEJr" + "A" * 120


@pytest.fixture(scope="module")
def leaky_run():
    params = {
        "batch_size": 10,
        "concurrency": 4,
        "aws_access_key_id": ACCESS_KEY,
        "client_kwargs": {"aws_secret_access_key": SECRET, "region_name": "us-east-1"},
        "endpoint_url": f"https://{ACCESS_KEY}:{SECRET}@proxy.example:8443/lambda",
        "note": f"rotated key {ACCESS_KEY} yesterday",
        "headers": [SESSION],
        "code_sha1": "3f786850e387550fdab836ed7e6dc881de23001b",
    }
    return mixed_run(meta={"params": params})


def test_report_folder_holds_pngs_tables_and_manifest(leaky_run, tmp_path):
    folder = leaky_run.save_report(tmp_path / "report")
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert {"dashboard.png", "throughput.png", "latency.png", "errors.png", "timeline.png"} <= set(
        pngs
    )
    for png in folder.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300
    for name, table in (("batches", leaky_run.batches), ("attempts", leaky_run.attempts)):
        from_parquet = pd.read_parquet(folder / f"{name}.parquet")
        from_csv = pd.read_csv(folder / f"{name}.csv")
        assert len(from_parquet) == len(from_csv) == len(table)
        assert (
            from_parquet["batch"].tolist() == from_csv["batch"].tolist() == table["batch"].tolist()
        )
        assert list(from_csv.columns) == list(table.columns)
    errors = pd.read_csv(folder / "errors.csv")
    assert errors["record"].tolist() == leaky_run.errors()["record"].tolist()

    document = json.loads((folder / "manifest.json").read_text())
    assert document["function"] == "enrich"
    assert document["function_arn"] == ARN
    assert document["qualifier"] == "live"
    assert document["executed_versions"] == ["3"]
    assert document["code_sha256"] == leaky_run.meta["code_sha256"]
    assert document["dataset_fingerprint"] == leaky_run.meta["dataset_fingerprint"]
    assert document["lambdakit_version"] == "0.1.0"
    assert pd.Timestamp(document["started_at"]) == leaky_run.meta["started_at"]
    assert pd.Timestamp(document["ended_at"]) == leaky_run.meta["ended_at"]
    assert document["params"]["batch_size"] == 10
    assert document["summary"]["invocations"] == len(leaky_run.attempts)


def test_no_credential_reaches_any_report_file(leaky_run, tmp_path):
    folder = leaky_run.save_report(tmp_path / "report")
    for path in folder.iterdir():
        if path.suffix in (".json", ".csv"):
            text = path.read_text()
            for secret in (ACCESS_KEY, SECRET, SESSION):
                assert secret not in text, (path.name, secret[:8])
    params = json.loads((folder / "manifest.json").read_text())["params"]
    assert params["aws_access_key_id"] == REDACTED
    assert params["client_kwargs"] == {
        "aws_secret_access_key": REDACTED,
        "region_name": "us-east-1",
    }
    assert params["endpoint_url"] == f"https://{REDACTED}@proxy.example:8443/lambda"
    assert params["note"] == f"rotated key {REDACTED} yesterday"
    assert params["headers"] == [REDACTED]
    # Things that merely look long stay: hex digests and the function's code hash.
    assert params["code_sha1"] == "3f786850e387550fdab836ed7e6dc881de23001b"


def test_scrub_leaves_ordinary_values_alone():
    value = {"batch_size": 100, "function": "enrich", "tags": ("a", "b"), "token_count": None}
    assert scrub(value) == value


def test_manifest_of_an_empty_run_is_valid_json():
    document = manifest(make_run(records=0, meta={"started_at": None, "ended_at": None}))
    text = json.dumps(document, allow_nan=False)  # NaN latencies become null
    assert json.loads(text)["summary"]["latency_p50_s"] is None


def test_empty_run_report_still_writes_every_file(tmp_path):
    folder = make_run(records=10, rejected=range(10)).save_report(tmp_path / "r")
    names = {p.name for p in folder.iterdir()}
    assert {"manifest.json", "attempts.parquet", "attempts.csv", "dashboard.png"} <= names


def test_summary_card_of_a_stopped_run_says_what_never_ran():
    # The card looked like a complete run after a cancel: no "not run", no "stopped".
    result = make_run(records=30, meta={"cancelled": True, "stop_reason": "cancelled"})
    result.batches.loc[2, ["status", "ok_records"]] = ["cancelled", 0]
    card = result._repr_html_()
    assert "not run 10" in card
    assert "stopped (cancelled) before every batch ran" in card
    complete = make_run(records=30)._repr_html_()
    assert "not run" not in complete and "stopped" not in complete


def test_manifest_of_a_run_against_an_alias_names_its_code(lambda_client, make_function, tmp_path):
    # code_sha256 was None for any qualifier but $LATEST: only $LATEST's cache token has it.
    import lambdakit

    name = make_function("def handler(event, context):\n    return event['Items']\n")
    version = lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=version["Version"])
    records = [{"n": n} for n in range(3)]
    for qualifier in ("live", version["Version"], None):
        result = lambdakit.run(
            name, records, qualifier=qualifier, client=lambda_client, cache=False, progress=False
        )
        folder = result.save_report(tmp_path / f"report-{qualifier}")
        written = json.loads((folder / "manifest.json").read_text())
        assert written["code_sha256"] == version["CodeSha256"], qualifier


def test_the_layers_a_run_used_are_shown_and_recorded():
    deps = "arn:aws:lambda:us-east-1:123456789012:layer:deps:3"
    tools = "arn:aws:lambda:us-east-1:123456789012:layer:tools:1"
    one = make_run(records=10, meta={"layers": [deps, tools]})
    assert "  layers: deps:3, tools:1" in repr(one).splitlines()
    assert "deps:3, tools:1" in one._repr_html_()
    assert manifest(one)["layers"] == [deps, tools]
    # A canary alias whose versions use different layers: each version's own.
    canary = make_run(records=10, meta={"layers": {"3": [deps], "4": [deps, tools]}})
    assert "layers: version 3: deps:3; version 4: deps:3, tools:1" in repr(canary)
    assert manifest(canary)["layers"] == {"3": [deps], "4": [deps, tools]}
    bare = make_run(records=10)
    assert "layers" not in repr(bare) and manifest(bare)["layers"] == []
    assert "<th style='text-align:left;padding-right:1em'>layers</th>" not in bare._repr_html_()
