"""`lambdakit run --url URL INPUT`: the same headless run over a lambdakit local function URL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import lambdakit
from lambdakit.cli.main import main

FUNCTIONS = Path(__file__).resolve().parents[2] / "notebooks" / "functions"


@pytest.fixture
def public_url(lambda_client) -> str:
    """batch_processor under a fresh name, with a NONE function URL."""
    name = f"cli-url-{uuid.uuid4().hex[:8]}"
    deployed = lambdakit.deploy(lambda_client, name, FUNCTIONS / "batch_processor", url="NONE")
    yield deployed.function_url
    lambda_client.delete_function(FunctionName=name)


def test_run_url_writes_outputs_and_a_manifest_without_secrets(public_url, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": i, "value": i}) + "\n" for i in range(12)))
    report = tmp_path / "report"
    code = main([
        "run", "--url", public_url + "?sig=QUERY-SECRET-1", str(data), "--batch-size", "5",
        "--header", "x-api-key: HEADER-SECRET-2", "--no-cache", "--no-progress",
        "--report", str(report),
    ])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = [json.loads(line) for line in (report / "outputs.jsonl").read_text().splitlines()]
    assert [line["output"]["score"] for line in lines] == [float(i) for i in range(12)]
    manifest = json.loads((report / "manifest.json").read_text())
    assert manifest["params"]["url"] == public_url
    written = b"".join(p.read_bytes() for p in report.rglob("*") if p.is_file())
    assert b"QUERY-SECRET-1" not in written and b"HEADER-SECRET-2" not in written
    assert "QUERY-SECRET-1" not in out.out + out.err and "HEADER-SECRET-2" not in out.out


def test_run_url_refuses_url_options_without_url_and_bad_headers(tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "value": 1}\n')
    assert main(["run", "fn", str(data), "--header", "a: b"]) == 2
    assert "go with --url" in capsys.readouterr().err
    assert main(["run", "--url", "http://127.0.0.1:9/x", str(data), "--header", "nocolon"]) == 2
    assert "NAME: VALUE" in capsys.readouterr().err
    # A header written with '=' (or without its name) is not quoted: its value is a secret.
    for bad in ("x-api-key=HEADER-SECRET-3", ": HEADER-SECRET-3"):
        assert main(["run", "--url", "http://127.0.0.1:9/x", str(data), "--header", bad]) == 2
        err = capsys.readouterr().err
        assert "NAME: VALUE" in err and "HEADER-SECRET-3" not in err
    assert main(["run", str(data)]) == 2
