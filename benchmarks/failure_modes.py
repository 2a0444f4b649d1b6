"""Benchmark of the run's own answers to stragglers and rate limits, against `lambdakit local`.

Prints one JSON object with two comparisons, measured in the same run:

- "hedge": a `slow_flaky` function (2% of invocations take 20x longer, at random) run with
  and without `hedge=Hedge()`: wall time, backups sent, and whether every output is right;
- "rate_limit": a fast function behind an injected rate limit (`faults max_rps`, 429s with
  Reason FunctionInvocationRateLimitExceeded) run as lambdakit does (rate Reasons pace the
  requests per second) and reason-blind (every 429 shrinks the in-flight limit, as before):
  429 counts, wall time, failed records, the lowest in-flight limit.

    python benchmarks/failure_modes.py [--records 300] [--concurrency 8] [--max-rps 50]

Targets are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from typing import Any

import lambdakit
from lambdakit.aws.discovery import resolve_target
from lambdakit.aws.lambda_invoker import LambdaInvoker
from lambdakit.invocation import Batch, Outcome

SLOW_FLAKY = """
import os, random, time

def handler(event, context):
    # 2% of invocations (not records: a backup of a slow one is most likely fast) are slow.
    slow = random.random() < float(os.environ["SLOW_SHARE"])
    time.sleep(float(os.environ["BASE_S"]) * (20 if slow else 1))
    return [item * 2 for item in event["Items"]]
"""
FAST = "def handler(event, context):\n    return [item * 2 for item in event['Items']]\n"
TARGETS = {
    "hedge_wall_time_ratio": "< 0.8 (hedged / plain)",
    "rate_limit_429_ratio": "< 0.5 (reason-aware / reason-blind)",
}


class ReasonBlind:
    """An invoker that drops the 429's Reason: every throttle reads as a concurrency one."""

    def __init__(self, inner: LambdaInvoker) -> None:
        self.inner, self.target, self.outputs = inner, inner.target, inner.outputs

    def invoke(self, batch: Batch) -> Outcome:
        """Invoke, then forget why a throttle came."""
        outcome = self.inner.invoke(batch)
        outcome.reason = None
        return outcome


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return buffer.getvalue()


def _function(client: Any, name: str, source: str, **config: Any) -> str:
    client.create_function(
        FunctionName=name, Runtime="python3.11", Handler="app.handler", Timeout=60,
        Role="arn:aws:iam::123456789012:role/bench", Code={"ZipFile": _zip(source)}, **config,
    )  # fmt: skip
    client.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def _timed(run: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main() -> None:
    """Run both comparisons and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-rps", type=float, default=50.0)
    args = parser.parse_args()
    records = list(range(args.records))
    expected = [r * 2 for r in records]
    report: dict[str, Any] = {"records": args.records, "concurrency": args.concurrency}
    with lambdakit.LocalLambda() as local:
        client = local.client()
        common = dict(endpoint_url=local.endpoint_url, progress=False, cache=False,
                      batch_size=1, concurrency=args.concurrency)  # fmt: skip
        variables = {"SLOW_SHARE": "0.02", "BASE_S": "0.05"}
        flaky = _function(client, "slow-flaky", SLOW_FLAKY, Environment={"Variables": variables})
        lambdakit.run(flaky, records[: args.concurrency * 2], **common)  # warm environments
        hedge: dict[str, Any] = {}
        for label, option in (("plain", None), ("hedged", lambdakit.Hedge())):
            result, wall = _timed(lambda o=option: lambdakit.run(flaky, records, hedge=o, **common))
            hedge[label] = {
                "wall_s": round(wall, 3),
                "outputs_correct": list(result.outputs()) == expected,
                "failed_records": result.summary()["failed_records"],
                "backups": (result.meta["hedge"] or {}).get("backups", 0),
                "superseded": int((result.attempts["outcome"] == "superseded").sum()),
            }
        hedge["wall_time_ratio"] = round(hedge["hedged"]["wall_s"] / hedge["plain"]["wall_s"], 3)
        report["hedge"] = hedge

        paced = _function(client, "rate-limited", FAST)
        local.set_faults(paced, max_rps=args.max_rps)
        rate: dict[str, Any] = {"max_rps": args.max_rps}
        target = resolve_target(client, paced)
        for label in ("reason_aware", "reason_blind"):
            options = dict(common)
            if label == "reason_blind":
                blind = ReasonBlind(LambdaInvoker(local.client(), target))
                options = {**common, "invoker": blind}
                del options["endpoint_url"]
            result, wall = _timed(lambda o=options: lambdakit.run(paced, records, **o))
            s = result.summary()
            rate[label] = {
                "wall_s": round(wall, 3),
                "throttles_429": s["throttles"],
                "failed_records": s["failed_records"],
                "outputs_correct": list(result.outputs()) == expected,
                "min_in_flight_limit": int(result.attempts["in_flight_limit"].min()),
            }
        blind_429 = max(rate["reason_blind"]["throttles_429"], 1)
        rate["429_ratio"] = round(rate["reason_aware"]["throttles_429"] / blind_429, 3)
        report["rate_limit"] = rate
    report["targets"] = TARGETS
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
