"""Fan-out from inside a function: notebooks/functions/fan_out invoking a worker in lambdakit
local through boto3, with the worker's reserved concurrency low enough to throttle."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import lambdakit
from lambdakit.cli.main import main

FUNCTIONS = Path(__file__).resolve().parents[2] / "notebooks" / "functions"


def deploy_pair(client, *, worker_folder: str = "batch_processor", reserved: int = 2,
                worker_env=None, **orchestrator_env):  # fmt: skip
    suffix = uuid.uuid4().hex[:8]
    worker, orchestrator = f"fan-worker-{suffix}", f"fan-out-{suffix}"
    lambdakit.deploy(client, worker, FUNCTIONS / worker_folder, timeout_s=30,
                     environment=worker_env)  # fmt: skip
    client.put_function_concurrency(FunctionName=worker, ReservedConcurrentExecutions=reserved)
    environment = {"WORKER_FUNCTION": worker, "CHUNK_SIZE": 50, "MAX_WORKERS": 8}
    lambdakit.deploy(client, orchestrator, FUNCTIONS / "fan_out", timeout_s=300, memory_mb=512,
                     environment={**environment, **orchestrator_env})  # fmt: skip
    return worker, orchestrator


def invoke(client, name: str, items: list) -> dict:
    reply = client.invoke(FunctionName=name, Payload=json.dumps({"Items": items}).encode())
    body = json.loads(reply["Payload"].read())
    assert "FunctionError" not in reply, body
    return body


def logged(local_lambda, capsys, name: str, wanted: int) -> str:
    """`lambdakit local logs NAME` once it shows `wanted` REPORT lines (polled, 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        assert main(["local", "logs", name, "--state-dir", str(local_lambda.state_dir)]) == 0
        out = capsys.readouterr().out
        if out.count("REPORT RequestId:") >= wanted or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def test_fan_out_over_5000_items_through_a_throttled_worker_loses_nothing(
    lambda_client, local_lambda, capsys
):
    worker, orchestrator = deploy_pair(lambda_client, reserved=2)
    bad = {999, 2500, 4999}  # the worker reports these: their reason must come through
    items = [{"id": i, "value": "x" if i in bad else i} for i in range(5000)]
    try:
        body = invoke(lambda_client, orchestrator, items)
        assert body["chunks"] == 100
        assert body["throttle_retries"] > 0  # 8 threads against 2 environments: 429s, retried
        failures = {int(f["itemIdentifier"]): f["errorMessage"] for f in body["batchItemFailures"]}
        assert set(failures) == bad
        assert all("value must be a finite number" in reason for reason in failures.values())
        outputs = body["outputs"]
        assert len(outputs) == 5000
        assert [o["id"] for o in outputs if o is not None] == [
            i for i in range(5000) if i not in bad
        ]
        assert all(outputs[i] is None for i in bad)
        assert all(o["score"] == o["value"] for o in outputs if o is not None)

        # Both functions' REPORT lines are in `lambdakit local logs`: every chunk ran once.
        worker_log = logged(local_lambda, capsys, worker, 100)
        assert worker_log.count("REPORT RequestId:") == 100
        orchestrator_log = logged(local_lambda, capsys, orchestrator, 1)
        assert orchestrator_log.count("REPORT RequestId:") == 1
        assert "fan_out: 5000 items in 100 chunks, 3 failed" in orchestrator_log
    finally:
        for name in (worker, orchestrator):
            lambda_client.delete_function(FunctionName=name)


def test_chunks_that_fail_are_reported_item_by_item(lambda_client):
    # A worker that is always throttled, retried once: every chunk fails, every item says so.
    worker, orchestrator = deploy_pair(lambda_client, reserved=0, MAX_THROTTLE_RETRIES=1,
                                       RETRY_BASE_S=0.01)  # fmt: skip
    crashing, crash_orchestrator = deploy_pair(
        lambda_client, worker_folder="slow_flaky", reserved=5, worker_env={"FAIL_RATE": 1}
    )
    items = [{"id": i, "value": i} for i in range(120)]
    try:
        body = invoke(lambda_client, orchestrator, items)
        assert body["outputs"] == [None] * 120 and body["throttle_retries"] == 3
        reasons = {int(f["itemIdentifier"]): f["errorMessage"] for f in body["batchItemFailures"]}
        assert sorted(reasons) == list(range(120))
        assert reasons[0].startswith("chunk 0: throttled 2 times")
        assert reasons[119].startswith("chunk 2: ")

        body = invoke(lambda_client, crash_orchestrator, items)
        reasons = {int(f["itemIdentifier"]): f["errorMessage"] for f in body["batchItemFailures"]}
        assert sorted(reasons) == list(range(120))
        assert "the worker failed (RuntimeError: simulated failure" in reasons[60]
    finally:
        for name in (worker, orchestrator, crashing, crash_orchestrator):
            lambda_client.delete_function(FunctionName=name)


def test_a_run_through_the_orchestrator_matches_a_run_from_the_kernel(lambda_client):
    worker, orchestrator = deploy_pair(lambda_client, reserved=4)
    records = [{"id": i, "value": i % 7} for i in range(600)]
    try:
        kernel = lambdakit.run(worker, records, batch_size=50, concurrency=4,
                               client=lambda_client, cache=False, progress=False)  # fmt: skip
        fanned = lambdakit.run(orchestrator, records, batch_size=300, concurrency=2,
                               client=lambda_client, cache=False, progress=False)  # fmt: skip
        assert list(fanned.outputs()) == list(kernel.outputs())
        assert fanned.summary()["failed_records"] == kernel.summary()["failed_records"] == 0
        assert (fanned.summary()["invocations"], kernel.summary()["invocations"]) == (2, 12)
    finally:
        for name in (worker, orchestrator):
            lambda_client.delete_function(FunctionName=name)
