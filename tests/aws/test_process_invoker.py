"""run(processes=N) and ProcessInvoker: Invokes spread over worker processes, against local."""

from __future__ import annotations

import threading

import orjson
import pytest

import lambdakit
from lambdakit.aws.discovery import resolve_target
from lambdakit.aws.process_invoker import ProcessInvoker, WorkerSpec
from lambdakit.errors import InvalidInput
from lambdakit.invocation import CONNECTION_ERROR, OK, REPORTED_FAILURE, Batch

ECHO_OR_FAIL = """
def handler(event, context):
    items = event["Items"]
    failed = [{"itemIdentifier": item["id"]} for item in items if item["v"] < 0]
    if failed:
        return {"batchItemFailures": failed, "outputs": [item["v"] * 10 for item in items]}
    return [item["v"] * 10 for item in items]
"""
SLOW = "import time\n\ndef handler(event, context):\n    time.sleep(3)\n    return [1]\n"


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
