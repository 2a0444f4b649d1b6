"""Benchmark of S3 sources (issue #17): records/s and memory, S3 against the same local files.

Prints one JSON object with each figure beside its target; nothing is asserted.

    python benchmarks/s3_sources.py [--records 1000000] [--objects 20] [--format jsonl.gz]

The records (`{"i", "name", "value"}`) are cut into --objects files of one format
(jsonl.gz, jsonl, csv.gz or parquet), written to a temporary folder and uploaded to moto's
S3 server (in its own process, on a free loopback port). Then, in the same process, one run
reads the folder and one reads `s3://bench/data/`, through a warm echo function on
`lambdakit local` (batch_size 1000, concurrency 4, no cache): records/s end to end and peak
RSS growth of this process during each run (sampled every 50 ms).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import psutil

import lambdakit
import lambdakit.results.result  # imported up front: pandas' import is not the run's
from lambdakit.local import LocalLambda

ECHO = "def handler(event, context):\n    return [0] * len(event['Items'])\n"
TARGETS = {"s3_peak_rss_growth_mb": "<= 200"}
_MOTO = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("%s:%s" % server.get_host_and_port(), flush=True)
sys.stdin.read()
"""


def _object_bytes(fmt: str, start: int, stop: int) -> bytes:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids = list(range(start, stop))
        table = pa.table(
            {"i": ids, "name": [f"record-{i}" for i in ids], "value": [i * 0.5 for i in ids]}
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=50_000)
        return buffer.getvalue()
    if fmt.startswith("csv"):
        text = "i,name,value\n" + "".join(f"{i},record-{i},{i * 0.5}\n" for i in range(start, stop))
    else:
        text = "".join(
            f'{{"i": {i}, "name": "record-{i}", "value": {i * 0.5}}}\n' for i in range(start, stop)
        )
    data = text.encode()
    return gzip.compress(data, compresslevel=6) if fmt.endswith(".gz") else data


def _measured(run: Any) -> dict[str, Any]:
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(0.05):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = run()
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - started
    summary = result.summary()
    return {
        "records": summary["records"],
        "wall_s": round(wall, 2),
        "records_per_s": round(summary["records"] / wall),
        "failed_records": summary["failed_records"] + summary["rejected_records"],
        "peak_rss_growth_mb": round((peak - baseline) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument(
        "--format", default="jsonl.gz", choices=["jsonl.gz", "jsonl", "csv.gz", "parquet"]
    )
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1m": round(os.getloadavg()[0], 2),
        "records": args.records,
        "objects": args.objects,
        "format": args.format,
    }
    moto = subprocess.Popen(
        [sys.executable, "-c", _MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        endpoint = f"http://{moto.stdout.readline().strip()}"  # type: ignore[union-attr]
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="bench", aws_secret_access_key="bench",
        )  # fmt: skip
        s3.create_bucket(Bucket="bench")
        with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as state:
            data = Path(folder) / "data"
            data.mkdir()
            per = -(-args.records // args.objects)
            stored = 0
            for n in range(args.objects):
                start, stop = n * per, min(args.records, (n + 1) * per)
                body = _object_bytes(args.format, start, stop)
                (data / f"part-{n:03d}.{args.format}").write_bytes(body)
                s3.put_object(Bucket="bench", Key=f"data/part-{n:03d}.{args.format}", Body=body)
                stored += len(body)
            report["stored_mb"] = round(stored / 2**20, 1)
            with LocalLambda(state_dir=state) as local:
                client = local.client()
                _create(client)
                options = dict(
                    batch_size=1000, concurrency=4, cache=False, progress=False,
                    endpoint_url=local.endpoint_url,
                )  # fmt: skip
                lambdakit.run("bench-echo", [{"i": 0}] * 4000, **options)  # warm
                report["local"] = _measured(lambda: lambdakit.run("bench-echo", data, **options))
                report["s3"] = _measured(
                    lambda: lambdakit.run(
                        "bench-echo", "s3://bench/data/", s3_endpoint_url=endpoint, **options
                    )
                )
        report["s3_vs_local_records_per_s"] = round(
            report["s3"]["records_per_s"] / report["local"]["records_per_s"], 3
        )
        report["target_s3_peak_rss_growth_mb"] = TARGETS["s3_peak_rss_growth_mb"]
    finally:
        if moto.stdin:
            moto.stdin.close()
        moto.kill()
        moto.wait()
    report["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return 0


def _create(client: Any) -> None:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", ECHO)
    client.create_function(
        FunctionName="bench-echo", Runtime="python3.11", Role="arn:aws:iam::000000000000:role/x",
        Handler="app.handler", Code={"ZipFile": buffer.getvalue()}, MemorySize=1024,
    )  # fmt: skip
    waiter_deadline = time.monotonic() + 60
    while client.get_function(FunctionName="bench-echo")["Configuration"]["State"] != "Active":
        if time.monotonic() > waiter_deadline:
            raise RuntimeError("bench-echo did not become Active")
        time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
