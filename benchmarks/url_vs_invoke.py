"""Benchmark: the same job over a function URL and over Invoke, against `lambdakit local`.

Prints one JSON object; nothing is asserted.

    python benchmarks/url_vs_invoke.py [--records 2000] [--batch-size 1] [--concurrency 8]

Both runs use lambdakit.run with the same function, records, batch size and concurrency:
`run(name, ...)` (boto3 Invoke) and `run(records, url=...)` (HttpInvoker over urllib3, a NONE
URL; `--auth aws_iam` signs each request). Rounds alternate, medians are reported:
- records/s end to end for each path;
- client cost: this process's CPU seconds per invocation (the service runs in a subprocess,
  so its work is not counted), and the URL path's cost as a fraction of Invoke's. It is
  expected to be lower: no botocore serialisation, no signing (with a NONE URL).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
import zipfile
from typing import Any

import lambdakit
import lambdakit.results.result  # imported up front: pandas' import is not the run's cost
from lambdakit.aws.function_urls import create_function_url
from lambdakit.local import LocalLambda

# Answers Invoke ({"Items": [...]}) and function URL events (the batch in the body) alike.
HANDLER = """
import json

def handler(event, context):
    if event.get("version") == "2.0":
        event = json.loads(event["body"])
    return [item["i"] for item in event["Items"]]
"""
TARGETS = {"url_client_cost_vs_invoke": "< 1.0 (the URL path costs the client less)"}


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _measure(**run_kwargs: Any) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    result = lambdakit.run(progress=False, cache=False, **run_kwargs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    s = result.summary()
    if s["failed_records"]:
        raise SystemExit(f"a benchmark run failed records: {s}")
    return {
        "records_per_s": s["records"] / wall,
        "client_cpu_ms_per_invocation": 1000 * cpu / max(s["invocations"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--auth", choices=["none", "aws_iam"], default="none")
    args = parser.parse_args(argv)
    with LocalLambda(seed=0) as local:
        client = local.client()
        name = "bench-url"
        client.create_function(
            FunctionName=name, Runtime="python3.11", Role="arn:aws:iam::123456789012:role/b",
            Handler="app.handler", Code={"ZipFile": _zip(HANDLER)}, MemorySize=256,
        )  # fmt: skip
        client.get_waiter("function_active_v2").wait(FunctionName=name)
        auth = "AWS_IAM" if args.auth == "aws_iam" else "NONE"
        url = create_function_url(client, name, auth)
        records = [{"i": i} for i in range(args.records)]
        common = {"batch_size": args.batch_size, "concurrency": args.concurrency}
        invoke = {"function": name, "records": records, "endpoint_url": local.endpoint_url}
        over_url = {"records": records, "url": url, "auth": None if auth == "NONE" else "aws_iam"}
        warm = records[: args.concurrency * 4]
        _measure(**{**invoke, "records": warm}, **common)  # environments and imports
        _measure(**{**over_url, "records": warm}, **common)
        rounds: dict[str, list[dict[str, float]]] = {"invoke": [], "url": []}
        for _ in range(args.rounds):
            rounds["invoke"].append(_measure(**invoke, **common))
            rounds["url"].append(_measure(**over_url, **common))

    def median(path: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[path])

    cost = {p: median(p, "client_cpu_ms_per_invocation") for p in rounds}
    print(
        json.dumps(
            {
                "records": args.records,
                "batch_size": args.batch_size,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "url_auth": auth,
                "invoke_records_per_s": round(median("invoke", "records_per_s"), 1),
                "url_records_per_s": round(median("url", "records_per_s"), 1),
                "invoke_client_cpu_ms_per_invocation": round(cost["invoke"], 3),
                "url_client_cpu_ms_per_invocation": round(cost["url"], 3),
                "url_client_cost_vs_invoke": round(cost["url"] / cost["invoke"], 3),
                "target": TARGETS["url_client_cost_vs_invoke"],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
