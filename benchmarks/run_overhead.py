"""Benchmark of lambdakit.run against `lambdakit local` (issue #3): overhead, streaming, throttling.

Prints one JSON object with each figure beside its target; nothing is asserted.

    python benchmarks/run_overhead.py [--records-a 2000] [--records-b 1000000] [--records-c 400]
                                      [--records-d 3000] [--only abcde]

(a) lambdakit.run vs a plain boto3 ThreadPoolExecutor loop at the same concurrency,
    batch_size=1, no-op function; medians of alternating rounds. Also shown: lambdakit given
    the pool's client, and with its disk cache on.
(b) 1M records streamed from a JSONL file, batch_size 1000, warm function: records/s end
    to end and peak RSS growth of this process during the run.
(c) reserved concurrency 4, 50 ms of work per record, driven at concurrency 32: wall time
    against the ideal (the slower of records x 50 ms / 4 and Lambda's 10 x 4 requests/s
    rate rule, which lambdakit local enforces), failures, beside a naive 32-thread pool's
    result and what a 4-thread pool achieves here (never over the concurrency, but over the
    rate: its failures are shown too).
(d) the Invoke paths (issue #18), batch_size=1, no-op function, concurrency 16 and 64, against
    the stub server (benchmarks/stub_lambda.py: answers at once, so the client is the limit)
    and against `lambdakit local`, in the same run: (1) a raw boto3 thread pool, (2) lambdakit
    with invoke_path="boto3", (3) lambdakit with the lean path (the default), (4) the lean
    path with processes=2, each with invocations/s and this process's CPU µs per invocation
    (user + system: the servers run in subprocesses, so their work is not counted; for (4)
    the kernel's own, and with its worker processes, start-up included); medians of
    alternating rounds.
(e) in flight at a network's latency (issue #18's "keep 200 invocations in flight"): the stub
    holds each reply 30 ms, like AWS's round trip, and (1) the raw boto3 pool and (3) the lean
    path run at concurrency 200, batch_size=1; the figure is how many invocations the server
    holds at once on average, invocations/s x 30 ms (Little's law), against the 200 asked for.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

import lambdakit
import lambdakit.results.result  # imported up front: pandas' import is not lambdakit's run time
from lambdakit.local import LocalLambda

sys.path.insert(0, str(Path(__file__).parent))
from stub_lambda import StubLambda  # benchmarks/ is not a package

NOOP = "def handler(event, context):\n    return None\n"
# A no-op that keeps the strict reply contract: one output per record.
NOOP_PER_RECORD = "def handler(event, context):\n    return [None] * len(event['Items'])\n"
ECHO = "def handler(event, context):\n    return [r['i'] for r in event['Items']]\n"
# One output per record, as the strict reply contract wants (a bare 1 fails every batch).
WORK_50MS = (
    "import time\n\ndef handler(event, context):\n    time.sleep(0.05)\n"
    "    return [1] * len(event['Items'])\n"
)
TARGETS = {
    "a_ratio_vs_boto3_pool": ">= 0.9",
    "b_records_per_s": ">= 150000",
    "b_peak_rss_growth_mb": "<= 200",
    "c_wall_vs_ideal": "<= 1.5",
    "c_failures": "== 0",
    "d_lean_rate_vs_boto3_pool_on_stub": ">= 2.0",
    "d_lean_cpu_vs_boto3_pool_on_stub": "<= 0.40",
}
E_DELAY_MS = 30


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _create(client: Any, name: str, source: str, **config: Any) -> str:
    client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::123456789012:role/bench",
        Handler="app.handler",
        Code={"ZipFile": _zip(source)},
        **config,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def _boto3_pool(client: Any, name: str, records: int, concurrency: int) -> dict[str, Any]:
    """The reference: one Invoke per record from a plain thread pool, no retries."""
    failures = 0
    lock = threading.Lock()

    def call(i: int) -> None:
        nonlocal failures
        try:
            response = client.invoke(FunctionName=name, Payload=json.dumps({"Items": [i]}))
            response["Payload"].read()
            failed = "FunctionError" in response
        except Exception:  # a throttle or any error counts as a failed record
            failed = True
        if failed:
            with lock:
                failures += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(call, range(records)))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "records_per_s": records / wall, "failures": failures}


def _lk_run(endpoint: str | None, name: str, records: Any, **options: Any) -> dict[str, Any]:
    start = time.perf_counter()
    result = lambdakit.run(name, records, endpoint_url=endpoint, progress=False, **options)
    wall = time.perf_counter() - start
    s = result.summary()
    return {
        "wall_s": wall,
        "records_per_s": s["records"] / wall,
        "failures": s["failed_records"],
        "invocations": s["invocations"],
        "throttles": s["throttles"],
        "cached_batches": s["cached_batches"],
    }


def _warm(client: Any, name: str, concurrency: int) -> None:
    """Start the function's environments, so cold starts (the service's cost) are not timed."""
    _boto3_pool(client, name, concurrency * 4, concurrency)


def bench_a(
    local: LocalLambda, client: Any, records: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    name = _create(client, "bench-noop", NOOP)
    _warm(client, name, concurrency)
    items = [{"i": i} for i in range(records)]
    options = {"batch_size": 1, "concurrency": concurrency}
    # Warm lambdakit too (imports, first client), then alternate the contenders so that the
    # noise of a shared machine falls on both alike; medians are reported.
    _lk_run(local.endpoint_url, name, items[:concurrency], cache=False, **options)
    pool, own, shared, cached = [], [], [], []
    for _ in range(rounds):
        pool.append(_boto3_pool(client, name, records, concurrency)["records_per_s"])
        own.append(_lk_run(local.endpoint_url, name, items, cache=False, **options))
        shared.append(_lk_run(None, name, items, cache=False, client=client, **options))
        with tempfile.TemporaryDirectory() as cache_dir:
            cached.append(_lk_run(local.endpoint_url, name, items, cache=cache_dir, **options))
    baseline = statistics.median(pool)

    def median_rate(runs: list[dict[str, Any]]) -> float:
        return statistics.median(r["records_per_s"] for r in runs)

    return {
        "records": records,
        "concurrency": concurrency,
        "rounds": rounds,
        "boto3_pool_records_per_s": round(baseline, 1),
        "lambdakit_records_per_s": round(median_rate(own), 1),
        "ratio_vs_boto3_pool": round(median_rate(own) / baseline, 3),
        "target_ratio": TARGETS["a_ratio_vs_boto3_pool"],
        "ratio_sharing_the_pool_client": round(median_rate(shared) / baseline, 3),
        "ratio_with_disk_cache": round(median_rate(cached) / baseline, 3),
        "note": "lambdakit end to end: resolving the function, its own client, LogType=Tail",
    }


def bench_b(local: LocalLambda, client: Any, records: int) -> dict[str, Any]:
    name = _create(client, "bench-echo", ECHO, MemorySize=1024)
    _warm(client, name, 4)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "records.jsonl"
        with path.open("w") as handle:
            for i in range(records):
                handle.write(f'{{"i": {i}, "name": "record-{i}", "value": {i * 0.5}}}\n')
        process = psutil.Process()
        # Everything a run imports is already loaded (see the imports above and bench (a)),
        # so the growth measured is the run's own: batches, buffers, its record.
        baseline = process.memory_info().rss
        peak = baseline
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.05):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            figures = _lk_run(
                local.endpoint_url, name, path, batch_size=1000, concurrency=4, cache=False
            )
        finally:
            stop.set()
            sampler.join()
    return {
        "records": records,
        "wall_s": round(figures["wall_s"], 2),
        "records_per_s": round(figures["records_per_s"]),
        "target_records_per_s": TARGETS["b_records_per_s"],
        "failures": figures["failures"],
        "peak_rss_growth_mb": round((peak - baseline) / 2**20, 1),
        "target_peak_rss_growth_mb": TARGETS["b_peak_rss_growth_mb"],
    }


def bench_c(local: LocalLambda, client: Any, records: int) -> dict[str, Any]:
    name = _create(client, "bench-reserved", WORK_50MS)
    client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=4)
    # 4 at once for 50 ms each is 80 requests/s, but Lambda (and lambdakit local) allows a
    # function 10 x its reserved concurrency per second: 40. The slower of the two is ideal.
    ideal = max(records * 0.05 / 4, records / (10 * 4))
    # What 4 threads achieve here without a concurrency throttle (the rate rule still
    # refuses some: counted as failures, since the plain pool does not retry).
    practical = _boto3_pool(client, name, records, 4)
    naive = _boto3_pool(client, name, records, 32)
    lk = _lk_run(
        local.endpoint_url, name, [{"i": i} for i in range(records)],
        batch_size=1, concurrency=32, cache=False,
    )  # fmt: skip
    return {
        "records": records,
        "ideal_wall_s": ideal,
        "lambdakit_wall_s": round(lk["wall_s"], 2),
        "lambdakit_wall_vs_ideal": round(lk["wall_s"] / ideal, 3),
        "target_wall_vs_ideal": TARGETS["c_wall_vs_ideal"],
        "lambdakit_failures": lk["failures"],
        "target_failures": TARGETS["c_failures"],
        "lambdakit_throttles": lk["throttles"],
        "four_thread_pool_wall_s": round(practical["wall_s"], 2),
        "four_thread_pool_failures": practical["failures"],
        "lambdakit_wall_vs_four_thread_pool": round(lk["wall_s"] / practical["wall_s"], 3),
        "naive_pool_wall_s": round(naive["wall_s"], 2),
        "naive_pool_failures": naive["failures"],
    }


def _cpu_s() -> tuple[float, float]:
    """(this process's CPU s, that of its children waited for: run(processes=N)'s workers)."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def _measured(invocations: int, run: Any) -> dict[str, float]:
    (own, children), wall = _cpu_s(), time.perf_counter()
    run()
    (own_after, children_after), wall = _cpu_s(), time.perf_counter() - wall
    return {
        "per_s": invocations / wall,
        "cpu_us": 1e6 * (own_after - own) / invocations,
        "workers_cpu_us": 1e6 * (children_after - children) / invocations,
    }


def _paths_at(
    endpoint: str, name: str, records: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    """(1) raw boto3 pool, (2) lambdakit boto3 path, (3) lambdakit lean path at one setting."""
    client = lambdakit.make_client(endpoint_url=endpoint, concurrency=concurrency)
    items = [{"i": i} for i in range(records)]
    options = {"batch_size": 1, "concurrency": concurrency, "cache": False}

    def lk(path: str, processes: int = 1) -> None:
        figures = _lk_run(endpoint, name, items, invoke_path=path, processes=processes, **options)
        if figures["failures"] or figures["invocations"] != records:
            raise SystemExit(f"a benchmark run failed records: {figures}")

    contenders = {
        "1_boto3_pool": lambda: _boto3_pool(client, name, records, concurrency),
        "2_lambdakit_boto3": lambda: lk("boto3"),
        "3_lambdakit_lean": lambda: lk("lean"),
        "4_lean_processes_2": lambda: lk("lean", processes=2),
    }
    _boto3_pool(client, name, concurrency * 4, concurrency)  # warm: environments, pools
    lk("lean")
    samples: dict[str, list[dict[str, float]]] = {key: [] for key in contenders}
    for _ in range(rounds):
        for key, run in contenders.items():
            samples[key].append(_measured(records, run))
    figures: dict[str, Any] = {}
    for key, runs in samples.items():
        figures[key] = {
            "invocations_per_s": round(statistics.median(r["per_s"] for r in runs), 1),
            "client_cpu_us_per_invocation": round(statistics.median(r["cpu_us"] for r in runs)),
        }
        if key.startswith("4_"):
            figures[key]["with_workers_cpu_us_per_invocation"] = round(
                statistics.median(r["cpu_us"] + r["workers_cpu_us"] for r in runs)
            )
    pool, lean = figures["1_boto3_pool"], figures["3_lambdakit_lean"]
    figures["lean_rate_vs_boto3_pool"] = round(
        lean["invocations_per_s"] / pool["invocations_per_s"], 2
    )
    figures["lean_cpu_vs_boto3_pool"] = round(
        lean["client_cpu_us_per_invocation"] / pool["client_cpu_us_per_invocation"], 2
    )
    return figures


def bench_d(
    local: LocalLambda, client: Any, records: int, rounds: int, concurrencies: list[int]
) -> dict[str, Any]:
    name = _create(client, "bench-paths", NOOP_PER_RECORD)
    report: dict[str, Any] = {"records": records, "rounds": rounds, "batch_size": 1}
    with StubLambda() as stub:
        for concurrency in concurrencies:
            report[f"stub_c{concurrency}"] = _paths_at(
                stub.endpoint_url, "bench-stub", records, concurrency, rounds
            )
    for concurrency in concurrencies:
        report[f"local_c{concurrency}"] = _paths_at(
            local.endpoint_url, name, records, concurrency, rounds
        )
    report["targets"] = {
        "lean_rate_vs_boto3_pool (stub)": TARGETS["d_lean_rate_vs_boto3_pool_on_stub"],
        "lean_cpu_vs_boto3_pool (stub)": TARGETS["d_lean_cpu_vs_boto3_pool_on_stub"],
    }
    return report


def bench_e(records: int, concurrency: int, rounds: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "records": records, "concurrency": concurrency, "stub_delay_ms": E_DELAY_MS,
    }  # fmt: skip
    with StubLambda(delay_ms=E_DELAY_MS) as stub:
        endpoint = stub.endpoint_url
        client = lambdakit.make_client(endpoint_url=endpoint, concurrency=concurrency)
        items = [{"i": i} for i in range(records)]

        def lean() -> None:
            figures = _lk_run(
                endpoint, "bench-stub", items, batch_size=1, concurrency=concurrency, cache=False
            )
            if figures["failures"] or figures["invocations"] != records:
                raise SystemExit(f"a benchmark run failed records: {figures}")

        contenders = {
            "1_boto3_pool": lambda: _boto3_pool(client, "bench-stub", records, concurrency),
            "3_lambdakit_lean": lean,
        }
        _boto3_pool(client, "bench-stub", concurrency * 2, concurrency)  # warm the pools
        lean()
        samples: dict[str, list[dict[str, float]]] = {key: [] for key in contenders}
        for _ in range(rounds):
            for key, run in contenders.items():
                samples[key].append(_measured(records, run))
    for key, runs in samples.items():
        rate = statistics.median(r["per_s"] for r in runs)
        report[key] = {
            "invocations_per_s": round(rate, 1),
            "in_flight_at_server": round(rate * E_DELAY_MS / 1000, 1),
            "client_cpu_us_per_invocation": round(statistics.median(r["cpu_us"] for r in runs)),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records-a", type=int, default=2000)
    parser.add_argument("--rounds-a", type=int, default=5)  # medians of 5: steadier than 3
    parser.add_argument("--concurrency-a", type=int, default=16)
    parser.add_argument("--records-b", type=int, default=1_000_000)
    parser.add_argument("--records-c", type=int, default=400)
    parser.add_argument("--records-d", type=int, default=3000)
    parser.add_argument("--rounds-d", type=int, default=3)
    parser.add_argument("--concurrency-d", default="16,64", help="comma-separated")
    parser.add_argument("--records-e", type=int, default=8000)
    parser.add_argument("--rounds-e", type=int, default=3)
    parser.add_argument("--only", default="abcde", help="which benchmarks to run, e.g. ad")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        # A shared machine: the 1-minute load average before the run, beside the figures.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory() as state, LocalLambda(state_dir=state) as local:
        client = local.client(read_timeout=300, max_pool_connections=64)
        if "a" in args.only:
            report["a_overhead"] = bench_a(
                local, client, args.records_a, args.concurrency_a, args.rounds_a
            )
        if "b" in args.only:
            report["b_streaming"] = bench_b(local, client, args.records_b)
        if "c" in args.only:
            report["c_throttled"] = bench_c(local, client, args.records_c)
        if "d" in args.only:
            levels = [int(c) for c in args.concurrency_d.split(",")]
            report["d_invoke_paths"] = bench_d(local, client, args.records_d, args.rounds_d, levels)
        if "e" in args.only:
            report["e_in_flight_at_30ms"] = bench_e(args.records_e, 200, args.rounds_e)
    report["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
