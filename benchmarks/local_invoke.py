"""Benchmark of `lambdakit local`: warm no-op Invoke throughput and latency, and cold start.

Prints one JSON object. The reference, measured in the same run, is a bare Runtime API loop:
a tiny aiohttp server handing no-op invocations straight to awslambdaric processes, with no
Invoke API, no client and no bookkeeping in between.

    python benchmarks/local_invoke.py [--seconds 5] [--connections 16]

The load generator is Debian's `wrk` when installed (it costs the 2 shared cores least),
else an aiohttp client in its own process; requests are unsigned (the local service accepts
them). Targets are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector, web

NOOP = "def handler(event, context):\n    return None\n"
TARGETS = {
    "throughput_vs_reference": ">= 0.5 (aim 0.7)",
    "cold_start_s": "<= 0.5",
    "warm_added_latency_p50_ms": "<= 2",
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the load generator (runs in its own process) ---------------------------------------------


async def _load(url: str, connections: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + seconds
    connector = TCPConnector(limit=connections)
    async with ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while (now := time.perf_counter()) < stop_at:
                async with session.post(url, data=b"{}") as response:
                    await response.read()
                    ok = response.status == 200 and "X-Amz-Function-Error" not in response.headers
                done = time.perf_counter()
                if now >= measure_from:
                    latencies.append(done - now)
                    errors += not ok

        await asyncio.gather(*(worker() for _ in range(connections)))
    return {
        "requests": len(latencies),
        "errors": errors,
        "per_s": len(latencies) / seconds,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


_WRK_SCRIPT = (
    'wrk.method = "POST"\nwrk.body = "{}"\nwrk.headers["Content-Type"] = "application/json"\n'
)
_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk(url: str, connections: int, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(script.name)
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        latency[pct] = float(value) * _WRK_UNITS[unit]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "errors": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(0) if errors else None,
        "per_s": per_s,
        "p50_ms": latency.get("50", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
    }


def run_load(url: str, connections: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """Load `url` from another process: Debian's wrk when installed, else an aiohttp client."""
    if shutil.which("wrk"):
        _wrk(url, connections, warmup_s)  # warm-up: starts the environments
        return {"generator": "wrk", **_wrk(url, connections, seconds)}
    out = subprocess.run(
        [sys.executable, __file__, "--load", url, str(connections), str(seconds), str(warmup_s)],
        check=True,
        capture_output=True,
        text=True,
    )
    return {"generator": "aiohttp", **json.loads(out.stdout)}


# -- the reference: a bare Runtime API loop (runs in its own process) -------------------------


async def _reference(processes: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    done_at: dict[str, list[float]] = {}
    app = web.Application()

    async def next_(request: web.Request) -> web.Response:
        return web.Response(
            body=b"{}",
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": f"{request.match_info['env']}:{uuid.uuid4()}",
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:1:function:ref",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
                "Lambda-Runtime-Client-Context": "",
                "Lambda-Runtime-Cognito-Identity": "",
            },
        )

    async def response(request: web.Request) -> web.Response:
        await request.read()
        done_at.setdefault(request.match_info["env"], []).append(time.perf_counter())
        return web.Response(status=202)

    base = "/{env}/2018-06-01/runtime/invocation"
    app.router.add_get(f"{base}/next", next_)
    app.router.add_post(f"{base}/{{rid}}/response", response)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    code = Path(tempfile.mkdtemp(prefix="lambdakit-bench-ref-"))
    (code / "app.py").write_text(NOOP)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", "app.handler"],
            cwd=code,
            env={
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": str(code),
                "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}/e{i}",
                "AWS_LAMBDA_FUNCTION_NAME": "ref",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "_HANDLER": "app.handler",
                "LAMBDA_TASK_ROOT": str(code),
            },
            stdout=subprocess.DEVNULL,
        )
        for i in range(processes)
    ]
    start = time.perf_counter()
    await asyncio.sleep(warmup_s + seconds)
    for proc in procs:
        proc.kill()
        proc.wait()
    await runner.cleanup()
    window = (start + warmup_s, start + warmup_s + seconds)
    count = sum(1 for times in done_at.values() for t in times if window[0] <= t < window[1])
    # One environment's time per invocation: the gap between its consecutive completions.
    cycles = [
        b - a
        for times in done_at.values()
        for a, b in itertools.pairwise(times)
        if window[0] <= a and b < window[1]
    ]
    return {
        "processes": processes,
        "per_s": count / seconds,
        "cycle_p50_ms": _percentile(cycles, 0.5) * 1000,
    }


def run_reference(processes: int, seconds: float, warmup_s: float) -> dict[str, Any]:
    """Measure the bare Runtime API loop in a separate process."""
    out = subprocess.run(
        [sys.executable, __file__, "--reference", str(processes), str(seconds), str(warmup_s)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


# -- the service under test -------------------------------------------------------------------


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _create(client: Any, name: str) -> None:
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::123456789012:role/bench",
        Handler="app.handler",
        Code={"ZipFile": _zip(NOOP)},
        MemorySize=128,
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )


def cold_starts(client: Any, count: int = 3) -> dict[str, Any]:
    """Create new functions and time each one's first invoke (client-side), plus Init Duration."""
    latencies, inits = [], []
    for i in range(count):
        name = f"bench-cold-{i}-{uuid.uuid4().hex[:6]}"
        _create(client, name)
        start = time.perf_counter()
        response = client.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        latencies.append(time.perf_counter() - start)
        log = base64.b64decode(response["LogResult"]).decode()
        init = [f for f in log.split("\t") if f.startswith("Init Duration: ")]
        if init:
            inits.append(float(init[0].split()[2]))
    return {
        "cold_start_s": statistics.median(latencies),
        "cold_start_all_s": [round(x, 4) for x in latencies],
        "init_duration_ms_median": statistics.median(inits) if inits else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--load", nargs=4, metavar=("URL", "CONNS", "SECONDS", "WARMUP"))
    parser.add_argument("--reference", nargs=3, metavar=("PROCESSES", "SECONDS", "WARMUP"))
    args = parser.parse_args()
    if args.load:
        url, conns, seconds, warmup = args.load
        result = asyncio.run(_load(url, int(conns), float(seconds), float(warmup)))
        print(json.dumps(result))
        return
    if args.reference:
        processes, seconds, warmup = args.reference
        print(json.dumps(asyncio.run(_reference(int(processes), float(seconds), float(warmup)))))
        return

    from lambdakit.local import LocalLambda

    # The machine is shared: measure the reference before and after, and compare to the mean.
    reference_before = run_reference(args.connections, args.seconds, args.warmup)
    with LocalLambda() as local:
        client = local.client()
        name = f"bench-noop-{uuid.uuid4().hex[:6]}"
        _create(client, name)
        url = f"{local.endpoint_url}/2015-03-31/functions/{name}/invocations"
        throughput = run_load(url, args.connections, args.seconds, args.warmup)
        sequential = run_load(url, 1, args.seconds / 2, 0.5)
        cold = cold_starts(client)
    reference_after = run_reference(args.connections, args.seconds, args.warmup)
    reference_one = run_reference(1, args.seconds / 2, 0.5)
    reference_per_s = (reference_before["per_s"] + reference_after["per_s"]) / 2
    ratio = throughput["per_s"] / reference_per_s if reference_per_s else float("nan")
    added_ms = sequential["p50_ms"] - reference_one["cycle_p50_ms"]
    print(
        json.dumps(
            {
                "benchmark": "local_invoke",
                "connections": args.connections,
                "seconds": args.seconds,
                "cpus": os.cpu_count(),
                "load_generator": throughput["generator"],
                "invoke_per_s": round(throughput["per_s"], 1),
                "invoke_errors": throughput["errors"],
                "invoke_p50_ms": round(throughput["p50_ms"], 3),
                "invoke_p99_ms": round(throughput["p99_ms"], 3),
                "reference_per_s": round(reference_per_s, 1),
                "reference_per_s_before_after": [
                    round(reference_before["per_s"], 1),
                    round(reference_after["per_s"], 1),
                ],
                "reference_processes": args.connections,
                "throughput_vs_reference": round(ratio, 3),
                "sequential_invoke_p50_ms": round(sequential["p50_ms"], 3),
                "reference_cycle_p50_ms": round(reference_one["cycle_p50_ms"], 3),
                "warm_added_latency_p50_ms": round(added_ms, 3),
                **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in cold.items()},
                "targets": TARGETS,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
