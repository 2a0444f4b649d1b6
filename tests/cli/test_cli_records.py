"""`lambdakit run --decimal --nan`: the serialisation choices on the command line."""

from __future__ import annotations

import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from lambdakit.cli.main import main

ECHO = "def handler(event, context):\n    return event['Items']\n"


def test_decimal_and_nan_choices_reach_the_run_and_the_manifest(
    local_lambda, make_function, tmp_path, capsys
):
    name = make_function(ECHO)
    data = tmp_path / "money.parquet"
    table = pa.table(
        {
            "amount": pa.array([Decimal("1.10"), Decimal("2.25")], pa.decimal128(5, 2)),
            "ratio": [0.5, float("nan")],
        }
    )
    pq.write_table(table, data)
    report = tmp_path / "report"
    base = [
        "run", name, str(data), "--endpoint-url", local_lambda.endpoint_url, "--no-progress",
        "--no-cache", "--report", str(report),
    ]  # fmt: skip
    assert main(base) == 1  # the NaN rejects its record by default
    assert "1 were rejected" in capsys.readouterr().err
    assert main([*base, "--decimal", "string", "--nan", "null"]) == 0
    outputs = [json.loads(line)["output"] for line in (report / "outputs.jsonl").open()]
    assert outputs == [{"amount": "1.10", "ratio": 0.5}, {"amount": "2.25", "ratio": None}]
    params = json.loads((report / "manifest.json").read_text())["params"]
    assert (params["decimal"], params["nan"]) == ("string", "null")
