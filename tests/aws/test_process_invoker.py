"""run(processes=N) and ProcessInvoker: Invokes spread over worker processes, against local."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import orjson
import pytest

import lambdakit
from lambdakit.aws.connection import make_client
from lambdakit.aws.discovery import resolve_target
from lambdakit.aws.lean_invoker import LeanLambdaInvoker
from lambdakit.aws.process_invoker import ProcessInvoker, WorkerSpec
from lambdakit.errors import InvalidInput
from lambdakit.invocation import CONNECTION_ERROR, OK, REPORTED_FAILURE, Batch
from tests.conftest import build_zip

ECHO_OR_FAIL = """
def handler(event, context):
    items = event["Items"]
    failed = [{"itemIdentifier": item["id"]} for item in items if item["v"] < 0]
    if failed:
        return {"batchItemFailures": failed, "outputs": [item["v"] * 10 for item in items]}
    return [item["v"] * 10 for item in items]
"""
SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(3)\n    return [1]\n"
SLOWER = "import time\n\ndef handler(event, context):\n    time.sleep(8)\n    return [2]\n"


def spec_for(local_lambda, lambda_client, name, **changes):
    fields = {
        "target": resolve_target(lambda_client, name),
        "function_name": name,
        "qualifier": None,
        "id_field": None,
        "outputs": "per_record",
        "concurrency": 2,
        "endpoint_url": local_lambda.endpoint_url,
    }
    return WorkerSpec(**{**fields, **changes})


def batch(items, index=0):
    return Batch(index, tuple(range(len(items))), items, orjson.dumps({"Items": items}))


def test_a_run_over_two_processes_gives_every_output_and_failure(local_lambda, make_function):
    name = make_function(ECHO_OR_FAIL)
    records = [{"id": f"r{i}", "v": -1 if i % 7 == 3 else i} for i in range(60)]
    result = lambdakit.run(
        name, records, endpoint_url=local_lambda.endpoint_url, batch_size=3, concurrency=4,
        processes=2, id_field="id", cache=False, progress=False,
    )  # fmt: skip
    params = result.meta["params"]
    assert (params["invoke_path"], params["processes"]) == ("lean", 2)
    outputs = list(result.outputs())
    failed = {i for i in range(60) if i % 7 == 3}
    assert result.summary()["failed_records"] == len(failed)
    assert set(result.failures["record"]) == failed
    assert [outputs[i] for i in range(60) if i not in failed] == [
        i * 10 for i in range(60) if i not in failed
    ]


def test_workers_stop_with_close_and_answer_until_then(local_lambda, lambda_client, make_function):
    name = make_function(ECHO_OR_FAIL)
    spec = spec_for(local_lambda, lambda_client, name, id_field="id")
    invoker = ProcessInvoker(spec, 2, probe=lambda: True)
    try:
        ok = invoker.invoke(batch([{"id": "a", "v": 1}, {"id": "b", "v": 2}]))
        assert (ok.outcome, ok.outputs, ok.executed_version) == (OK, [10, 20], "$LATEST")
        partial = invoker.invoke(batch([{"id": "a", "v": 1}, {"id": "b", "v": -2}]))
        assert (partial.outcome, partial.failed_items) == (REPORTED_FAILURE, (1,))
        assert invoker.probe()
    finally:
        invoker.close()
    assert all(worker.process.poll() is not None for worker in invoker._workers)
    gone = invoker.invoke(batch([{"id": "a", "v": 1}]))
    assert (gone.outcome, gone.error_type) == (CONNECTION_ERROR, "Lambdakit.WorkerLost")


def test_a_worker_that_dies_fails_what_it_had_in_flight(local_lambda, lambda_client, make_function):
    name = make_function(SLOW, Timeout=10)
    invoker = ProcessInvoker(spec_for(local_lambda, lambda_client, name), 1, probe=lambda: True)
    try:
        outcomes = []
        caller = threading.Thread(target=lambda: outcomes.append(invoker.invoke(batch([1]))))
        caller.start()
        worker = invoker._workers[0]
        while not worker.pending:  # the batch has gone to the worker
            caller.join(0.01)
        worker.process.kill()
        caller.join(30)
        assert len(outcomes) == 1
        assert (outcomes[0].outcome, outcomes[0].error_type) == (
            CONNECTION_ERROR, "Lambdakit.WorkerLost",
        )  # fmt: skip
        assert str(worker.process.pid) in outcomes[0].error_message
    finally:
        invoker.close()


def test_a_worker_that_cannot_build_the_lean_path_says_why(
    local_lambda, lambda_client, make_function
):
    name = make_function(ECHO_OR_FAIL)
    spec = spec_for(local_lambda, lambda_client, name, outputs="every_which_way")
    with pytest.raises(InvalidInput, match="a worker process cannot invoke: InvalidInput"):
        ProcessInvoker(spec, 2, probe=lambda: True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"processes": 0}, "processes must be an int >= 1"),
        ({"processes": 2, "invoke_path": "boto3"}, "processes= needs the lean path"),
        ({"processes": 2, "client": object()}, "processes= needs the lean path"),
        ({"processes": 2, "url": "http://127.0.0.1:9/u"}, "does not go with url="),
    ],
)
def test_processes_is_checked(kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        lambdakit.run("fn", [1], progress=False, cache=False, **kwargs)


def _live_workers() -> list[int]:
    """This process's worker children still running (not zombies), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # ended while looked at
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if int(parent) == os.getpid() and state != "Z" and b"process_invoker" in command:
            pids.append(int(entry.name))
    return pids


def _wait_dead(invoker):
    for worker in invoker._workers:
        worker.reader.join(30)  # the reader ends when the worker's pipe does
    assert not any(worker.alive for worker in invoker._workers)


def test_when_every_worker_has_ended_the_kernel_invokes(
    local_lambda, lambda_client, make_function, caplog
):
    # Without a way on, each retry would fail at once as WorkerLost and the run would spin
    # between the outage breaker (its probe, from the kernel, says the endpoint answers) and
    # failures until the retries ran out.
    name = make_function(ECHO_OR_FAIL)
    spec = spec_for(local_lambda, lambda_client, name)
    single = LeanLambdaInvoker(
        make_client(endpoint_url=local_lambda.endpoint_url), spec.target, function_name=name
    )
    invoker = ProcessInvoker(spec, 2, probe=lambda: True, fallback=single)
    try:
        assert invoker.invoke(batch([{"id": "a", "v": 1}])).outputs == [10]
        for worker in invoker._workers:
            worker.process.kill()
        _wait_dead(invoker)
        with caplog.at_level(logging.WARNING, logger="lambdakit.aws.process_invoker"):
            outcomes = [invoker.invoke(batch([{"id": "a", "v": i}])) for i in range(3)]
        assert [(o.outcome, o.outputs) for o in outcomes] == [(OK, [i * 10]) for i in range(3)]
        warnings = [r.getMessage() for r in caplog.records if "has ended" in r.getMessage()]
        assert warnings == [
            "every invoking worker process has ended; invoking from this process alone"
        ]
    finally:
        invoker.close()


def test_close_leaves_calls_in_flight_to_finish_and_returns_at_once(
    local_lambda, lambda_client, make_function
):
    # cancel(now=True) stops waiting for calls in flight, which may still succeed (a late
    # success is cached): close() must neither wait for them worker after worker nor kill
    # them.
    name = make_function(SLOWER, Timeout=30)
    invoker = ProcessInvoker(spec_for(local_lambda, lambda_client, name), 2, probe=lambda: True)
    outcomes = []
    callers = [
        threading.Thread(target=lambda: outcomes.append(invoker.invoke(batch([1]))))
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    while sum(len(worker.pending) for worker in invoker._workers) < 2:
        callers[0].join(0.01)
    invoker.close()
    # The function takes 8 s: had close() waited for the calls, they would be answered.
    assert all(caller.is_alive() for caller in callers)
    assert outcomes == []
    for caller in callers:
        caller.join(60)
    assert [(o.outcome, o.outputs) for o in outcomes] == [(OK, [2]), (OK, [2])]
    for worker in invoker._workers:
        worker.process.wait(30)  # and then the workers end by themselves
    gone = invoker.invoke(batch([1]))
    assert (gone.outcome, gone.error_type) == (CONNECTION_ERROR, "Lambdakit.WorkerLost")


def test_a_setup_step_that_fails_after_the_workers_start_stops_them(
    local_lambda, lambda_client, make_function
):
    # The memory ladder is checked after the invoker is made: an alias that routes between
    # versions cannot climb, and the run refuses; its workers must not stay behind.
    name = make_function(ECHO_OR_FAIL)
    v1 = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.update_function_code(FunctionName=name, ZipFile=build_zip(ECHO_OR_FAIL + "\n#2"))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name)  # as on AWS
    v2 = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(
        FunctionName=name, Name="split", FunctionVersion=v1,
        RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}},
    )  # fmt: skip
    before = set(_live_workers())
    for _ in range(2):
        with pytest.raises(InvalidInput, match="one version"):
            lambdakit.run(
                name, [{"id": "a", "v": 1}], qualifier="split", processes=2, on_oom=[256, 512],
                endpoint_url=local_lambda.endpoint_url, cache=False, progress=False,
            )  # fmt: skip
    assert set(_live_workers()) - before == set()


def test_workers_import_from_the_kernels_sys_path(
    local_lambda, lambda_client, make_function, tmp_path, monkeypatch
):
    # A notebook that put a checkout (or its own modules) on sys.path must not get another
    # lambdakit in its workers.
    monkeypatch.syspath_prepend(str(tmp_path))
    invoker = ProcessInvoker(
        spec_for(local_lambda, lambda_client, make_function(ECHO_OR_FAIL)), 1, probe=lambda: True
    )
    try:
        pid = invoker._workers[0].process.pid
        environ = dict(
            entry.split(b"=", 1)
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in entry
        )
        assert environ[b"PYTHONPATH"].decode().split(os.pathsep)[0] == str(tmp_path)
    finally:
        invoker.close()
