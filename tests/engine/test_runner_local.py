"""lambdakit.run end to end: real boto3 against `lambdakit local`, with its fault injection.

Handlers record every item they process as a file in a folder of the test's (they run as
local processes), so invocations are counted independently of lambdakit's own record.
"""

import json
import os
import signal
import threading
import time
import urllib.request
from collections import Counter

import pandas as pd
import pytest

import lambdakit
from lambdakit.aws.discovery import resolve_target
from lambdakit.aws.lambda_invoker import LambdaInvoker
from lambdakit.engine.retry import Retry
from lambdakit.invocation import FUNCTION_ERROR, Batch
from lambdakit.records.batching import dumps

COUNTING = """
import json, os, time, uuid

def handler(event, context):
    seen = os.environ["SEEN_DIR"]
    out = []
    for item in event["Items"]:
        time.sleep(float(os.environ.get("SLEEP_S", "0")))
        if item.get("bad"):
            raise ValueError(f"item {item['i']} is bad")
        open(os.path.join(seen, f"{item['i']}-{uuid.uuid4().hex}"), "w").close()
        out.append({"i": item["i"], "double": item["i"] * 2, "tag": os.environ.get("TAG")})
    return out
"""


def seen_counts(folder):
    """How many times the handler processed each item id."""
    return Counter(int(p.name.split("-")[0]) for p in folder.iterdir())


def deadline_poll(check, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def counting(make_function, tmp_path):
    """make(**env) -> (function name, folder of processed items)."""

    def make(timeout=30, **env):
        seen = tmp_path / f"seen-{len(list(tmp_path.iterdir()))}"
        seen.mkdir()
        variables = {"SEEN_DIR": str(seen), **{k: str(v) for k, v in env.items()}}
        name = make_function(COUNTING, Environment={"Variables": variables}, Timeout=timeout)
        return name, seen

    return make


def set_faults(local_lambda, name, **settings):
    request = urllib.request.Request(
        f"{local_lambda.endpoint_url}/_lambdakit/faults/{name}",
        data=json.dumps(settings).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_outputs_in_input_order_from_a_dataframe(counting, go):
    name, seen = counting()
    df = pd.DataFrame({"i": range(250), "when": pd.date_range("2024-01-01", periods=250)})
    result = go(name, df, batch_size=20, concurrency=4)
    assert [o["i"] for o in result.outputs()] == list(range(250))
    assert [o["double"] for o in result.outputs()][:3] == [0, 2, 4]
    s = result.summary()
    assert (s["records"], s["batches"], s["ok_batches"], s["failed_records"]) == (250, 13, 13, 0)
    assert seen_counts(seen) == Counter(range(250))
    attempts = result.attempts
    assert set(attempts["executed_version"]) == {"$LATEST"}
    assert attempts["request_id"].notna().all() and (attempts["duration_ms"] > 0).all()
    assert attempts["cold_start"].any()


def test_rerun_from_cache_invokes_nothing(counting, go):
    name, seen = counting()
    records = [{"i": i} for i in range(40)]
    first = go(name, records, batch_size=8)
    second = go(name, records, batch_size=8)
    assert second.summary()["invocations"] == 0
    assert second.summary()["cached_batches"] == 5
    assert list(second.outputs()) == list(first.outputs())
    assert seen_counts(seen) == Counter(range(40))


def test_alias_move_and_latest_update_make_the_cache_miss(
    counting, go, lambda_client, zip_code, wait_updated
):
    name, _ = counting(TAG="one")
    records = [{"i": i} for i in range(6)]
    v1 = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    assert {o["tag"] for o in go(name, records, qualifier="live", batch_size=3).outputs()} == {
        "one"
    }

    config = lambda_client.get_function_configuration(FunctionName=name)
    variables = {**config["Environment"]["Variables"], "TAG": "two"}
    lambda_client.update_function_configuration(
        FunctionName=name, Environment={"Variables": variables}
    )
    wait_updated(name)
    v2 = lambda_client.publish_version(FunctionName=name)["Version"]
    # The alias still routes to v1: its cached results still stand.
    still = go(name, records, qualifier="live", batch_size=3)
    assert still.summary()["invocations"] == 0
    lambda_client.update_alias(FunctionName=name, Name="live", FunctionVersion=v2)
    moved = go(name, records, qualifier="live", batch_size=3)
    assert moved.summary()["cached_batches"] == 0 and moved.summary()["invocations"] == 2
    assert {o["tag"] for o in moved.outputs()} == {"two"}
    assert set(moved.batches["executed_version"]) == {v2}

    # $LATEST: cached, then a code update makes it miss.
    assert go(name, records, batch_size=3).summary()["invocations"] == 2
    assert go(name, records, batch_size=3).summary()["invocations"] == 0
    lambda_client.update_function_code(
        FunctionName=name, ZipFile=zip_code(COUNTING.replace('"double"', '"twice"'))
    )
    wait_updated(name)
    updated = go(name, records, batch_size=3)
    assert updated.summary()["invocations"] == 2
    assert "twice" in next(iter(updated.outputs()))


def test_recreated_function_v1_never_hits_the_old_v1_cache(
    go, lambda_client, make_function, zip_code
):
    # Version numbers restart at 1 when a function is deleted and created again: the cache
    # token must name the code, not the number.
    source = "def handler(event, context):\n    return [{'code': 'A'} for _ in event['Items']]\n"
    name = make_function(source)
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    records = [{"i": i} for i in range(3)]
    first = go(name, records, qualifier="live", batch_size=3)
    assert [o["code"] for o in first.outputs()] == ["A", "A", "A"]

    lambda_client.delete_function(FunctionName=name)
    lambda_client.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role="arn:aws:iam::123456789012:role/lambdakit-test",
        Handler="app.handler",
        Code={"ZipFile": zip_code(source.replace("'A'", "'B'"))},
    )
    deadline_poll(
        lambda: lambda_client.get_function_configuration(FunctionName=name)["State"] == "Active",
        what="the recreated function",
    )
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    second = go(name, records, qualifier="live", batch_size=3)
    s = second.summary()
    assert (s["cached_batches"], s["invocations"]) == (0, 1)
    assert [o["code"] for o in second.outputs()] == ["B", "B", "B"]
    assert second.meta["code_sha256"] != first.meta["code_sha256"]


def test_transient_failures_are_retried_to_success_and_counted(counting, go, local_lambda):
    name, _ = counting()
    set_faults(local_lambda, name, error_rate=0.3, seed=7)
    policy = Retry(max_attempts=10, base_delay=0.01, max_delay=0.05)
    result = go(name, [{"i": i} for i in range(60)], batch_size=3, retry=policy)
    s = result.summary()
    assert s["failed_records"] == 0 and s["ok_batches"] == 20
    assert s["retries"] > 0 and s["invocations"] == 20 + s["retries"]
    assert (result.attempts["outcome"] == FUNCTION_ERROR).sum() == s["retries"]
    assert set(result.attempts.loc[result.attempts.outcome == FUNCTION_ERROR, "error_type"]) == {
        "Lambdakit.InjectedFault"
    }
    assert [o["i"] for o in result.outputs()] == list(range(60))


def test_permanent_failures_are_reported_while_the_rest_succeed(counting, go):
    name, _ = counting()
    records = [{"i": i, "bad": i in (7, 31)} for i in range(50)]
    result = go(name, records, batch_size=5, retry=Retry(max_attempts=2, base_delay=0.01))
    s = result.summary()
    assert s["failed_batches"] == 2 and s["ok_batches"] == 8 and s["failed_records"] == 10
    outputs = list(result.outputs())
    assert outputs[5:10] == [None] * 5 and outputs[30:35] == [None] * 5
    assert outputs[0]["i"] == 0 and outputs[49]["i"] == 49
    errors = result.errors()
    assert set(errors["error_type"]) == {"ValueError"}
    assert errors["error_message"].str.contains("is bad").all()
    assert result.attempts.groupby("batch")["attempt"].max().max() == 2


def test_validation_rejections_are_counted_and_never_sent(counting, go):
    name, seen = counting()
    schema = {"type": "object", "required": ["i"], "properties": {"i": {"type": "integer"}}}
    records = [{"i": 0}, {"i": "one"}, {"i": 2}, {"x": 3}, {"i": 4}]
    result = go(name, records, validate=schema)
    assert result.summary()["rejected_records"] == 2
    assert list(result.rejections["record"]) == [1, 3]
    assert seen_counts(seen) == Counter([0, 2, 4])
    assert [o and o["i"] for o in result.outputs()] == [0, None, 2, None, 4]


PARTIAL = """
import os

def handler(event, context):
    seen = os.environ["SEEN_DIR"]
    failures, outputs = [], []
    for position, item in enumerate(event["Items"]):
        marker = os.path.join(seen, f"{item['i']}-{len(os.listdir(seen))}")
        first_time = not any(n.startswith(f"{item['i']}-") for n in os.listdir(seen))
        open(marker, "w").close()
        if item["i"] % 3 == 0 and first_time:
            # A transient failure, marked so: item failures are otherwise verdicts, not retried.
            failures.append({"itemIdentifier": item["id"], "retryable": True})
            outputs.append(None)
        else:
            outputs.append(item["i"] * 10)
    return {"batchItemFailures": failures, "outputs": outputs}
"""


def test_partial_batch_failure_retries_only_failed_items(make_function, go, tmp_path):
    seen = tmp_path / "seen"
    seen.mkdir()
    name = make_function(PARTIAL, Environment={"Variables": {"SEEN_DIR": str(seen)}})
    records = [{"i": i, "id": f"rec-{i}"} for i in range(12)]
    result = go(name, records, batch_size=6, id_field="id", concurrency=1)
    assert list(result.outputs()) == [i * 10 for i in range(12)]
    # Only the items that failed were sent again.
    assert seen_counts(seen) == Counter({i: 2 if i % 3 == 0 else 1 for i in range(12)})
    first = result.attempts[result.attempts["attempt"] == 1]
    assert sorted(x for items in first["failed_items"] for x in items) == [0, 3, 6, 9]
    assert set(result.batches["status"]) == {"ok"}


def test_repeated_ids_are_split_apart_so_a_reported_failure_names_one_record(
    make_function, go, tmp_path
):
    seen = tmp_path / "seen"
    seen.mkdir()
    name = make_function(PARTIAL, Environment={"Variables": {"SEEN_DIR": str(seen)}})
    # Ids repeat every 4 records: a batch of 6 would hold rec-0 twice (records 0 and 4).
    records = [{"i": i, "id": f"rec-{i % 4}"} for i in range(12)]
    result = go(name, records, batch_size=6, id_field="id", concurrency=1)
    assert list(result.outputs()) == [i * 10 for i in range(12)]
    for first, n in zip(result.batches["first_record"], result.batches["records"], strict=True):
        ids = [records[k]["id"] for k in range(first, first + n)]
        assert len(ids) == len(set(ids))
    # Only the records that failed were sent again, not those sharing their id.
    assert seen_counts(seen) == Counter({i: 2 if i % 3 == 0 else 1 for i in range(12)})
    assert result.meta["repeated_ids"] == ["rec-0"]
    assert result.summary()["failed_records"] == 0


class PaddedInvoker:
    """A real LambdaInvoker whose requests carry 1.4 MB per item, so 8 items overflow 6 MB."""

    PAD = "x" * 1_400_000

    def __init__(self, inner):
        self.inner = inner
        self.target = inner.target

    def invoke(self, batch):
        items = [{**item, "pad": self.PAD} for item in batch.items]
        body = dumps({"Items": items})
        return self.inner.invoke(Batch(batch.index, batch.record_indices, batch.items, body))


def test_oversized_request_is_bisected(make_function, go, lambda_client):
    source = (
        "def handler(event, context):\n"
        "    return [len(i['pad']) + i['i'] for i in event['Items']]\n"
    )
    name = make_function(source, MemorySize=512)
    invoker = PaddedInvoker(LambdaInvoker(lambda_client, resolve_target(lambda_client, name)))
    result = go(None, [{"i": i} for i in range(8)], batch_size=8, invoker=invoker, cache=False)
    assert list(result.outputs()) == [1_400_000 + i for i in range(8)]
    first = result.attempts.sort_values("attempt").iloc[0]
    assert first["http_status"] == 413 and first["error_type"] == "RequestEntityTooLargeException"
    assert result.batches.iloc[0]["status"] == "ok"
    assert result.summary()["failed_records"] == 0


def test_oversized_response_is_bisected(make_function, go):
    source = "def handler(event, context):\n    return ['y' * 1_600_000 for _ in event['Items']]\n"
    name = make_function(source, MemorySize=512)
    result = go(name, list(range(8)), batch_size=8, cache=False)
    assert [len(o) for o in result.outputs()] == [1_600_000] * 8
    assert "Function.ResponseSizeTooLarge" in set(result.attempts["error_type"])
    assert result.summary()["failed_records"] == 0


def test_throttled_function_completes_with_no_failures(counting, go, lambda_client):
    name, seen = counting(SLEEP_S=0.05)
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    result = go(name, [{"i": i} for i in range(40)], batch_size=1, concurrency=12)
    s = result.summary()
    assert s["failed_records"] == 0 and s["ok_batches"] == 40
    assert s["throttles"] > 0
    assert seen_counts(seen) == Counter(range(40))
    assert result.attempts["in_flight_limit"].min() < 12


def test_interrupted_run_rerun_has_no_duplicate_successful_invocations(
    counting, go, local_lambda, tmp_path
):
    name, seen = counting(SLEEP_S=0.05)
    records = [{"i": i} for i in range(60)]
    handle = lambdakit.start(
        name,
        records,
        batch_size=1,
        concurrency=2,
        cache=tmp_path / "cache",
        progress=False,
        endpoint_url=local_lambda.endpoint_url,
    )
    deadline_poll(lambda: handle.progress.batches_done >= 10, what="10 batches")
    handle.cancel()
    partial = handle.wait(timeout=60)
    done_first = partial.summary()["ok_batches"]
    assert partial.meta["cancelled"] and 10 <= done_first < 60
    assert handle.progress.state == "cancelled"

    rerun = go(name, records, batch_size=1, concurrency=2)
    assert rerun.summary()["cached_batches"] == done_first
    assert rerun.summary()["invocations"] == 60 - done_first
    assert [o["i"] for o in rerun.outputs()] == list(range(60))
    assert seen_counts(seen) == Counter(range(60))  # every item processed exactly once


def test_invocation_past_the_grace_is_recorded_and_its_late_success_cached(
    counting, go, local_lambda, tmp_path
):
    name, seen = counting(SLEEP_S=0.3)
    records = [{"i": i} for i in range(10)]
    handle = lambdakit.start(
        name, records, batch_size=5, concurrency=1, grace_s=0.0, cache=tmp_path / "cache",
        progress=False, endpoint_url=local_lambda.endpoint_url,
    )  # fmt: skip
    deadline_poll(lambda: len(list(seen.iterdir())) >= 1, what="the first item processed")
    handle.cancel()
    partial = handle.wait(timeout=60)
    assert list(partial.attempts["outcome"]) == ["cancelled"]
    assert partial.attempts["error_type"].iloc[0] == "Lambdakit.Cancelled"
    b = partial.batches
    assert (
        b["records"].sum() + partial.summary()["rejected_records"] == partial.summary()["records"]
    )
    assert set(b["status"]) == {"cancelled"} and b["ok_records"].sum() == 0

    # The abandoned invocation completes in the background and is cached: the rerun sends
    # only the other batch, and no item is processed twice.
    cache = lambdakit.Cache(tmp_path / "cache")
    deadline_poll(lambda: len(cache.entries(run_id=partial.meta["run_id"])) == 1, what="cache")
    rerun = go(name, records, batch_size=5, concurrency=1)
    assert rerun.summary()["cached_batches"] == 1 and rerun.summary()["invocations"] == 1
    assert [o["i"] for o in rerun.outputs()] == list(range(10))
    assert seen_counts(seen) == Counter(range(10))


def test_a_run_loads_one_botocore_session_for_its_clients(counting, go, monkeypatch):
    import botocore.session

    real = botocore.session.get_session
    sessions = []
    monkeypatch.setattr(botocore.session, "get_session", lambda *a: sessions.append(1) or real(*a))
    name, _ = counting()
    result = go(name, [{"i": i} for i in range(3)], batch_size=1, cache=False)
    assert [o["i"] for o in result.outputs()] == [0, 1, 2]
    # The lookup client and the one sized to the function timeout share it (~0.1 s each).
    assert len(sessions) == 1


def test_the_invoking_client_outlasts_the_function_and_skips_the_parameter_check(
    counting, local_lambda
):
    name, _ = counting(timeout=42)
    handle = lambdakit.start(
        name, [{"i": 0}], endpoint_url=local_lambda.endpoint_url, cache=False, progress=False
    )
    handle.wait(timeout=60)
    client = handle._engine.invoker.client
    assert client.meta.config.read_timeout > 42
    assert type(client._serializer).__name__ != "ParamValidationDecorator"


def test_keyboard_interrupt_returns_a_partial_result(counting, go):
    name, seen = counting(SLEEP_S=0.05)

    def interrupt_when_started():
        deadline_poll(lambda: len(list(seen.iterdir())) >= 3, what="3 processed items")
        os.kill(os.getpid(), signal.SIGINT)  # as Jupyter's stop button does

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    result = go(name, [{"i": i} for i in range(200)], batch_size=1, concurrency=1)
    assert result.meta["cancelled"] is True
    assert 3 <= result.summary()["ok_batches"] < 200


def test_missing_function_or_alias_raises_before_any_batch(go, counting):
    consumed = []

    def records():
        consumed.append(1)
        yield {"i": 0}

    with pytest.raises(lambdakit.FunctionNotFound, match="no-such-function"):
        go("no-such-function", records())
    name, _ = counting()
    with pytest.raises(lambdakit.FunctionNotFound, match="alias 'nope'"):
        go(name, records(), qualifier="nope")
    assert consumed == []


def test_weighted_alias_caches_under_the_version_that_ran(
    counting, go, lambda_client, wait_updated, tmp_path
):
    name, _ = counting(TAG="one")
    v1 = lambda_client.publish_version(FunctionName=name)["Version"]
    config = lambda_client.get_function_configuration(FunctionName=name)
    variables = {**config["Environment"]["Variables"], "TAG": "two"}
    lambda_client.update_function_configuration(
        FunctionName=name, Environment={"Variables": variables}
    )
    wait_updated(name)
    v2 = lambda_client.publish_version(FunctionName=name)["Version"]
    lambda_client.create_alias(
        FunctionName=name,
        Name="canary",
        FunctionVersion=v1,
        RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}},
    )
    records = [{"i": i} for i in range(40)]
    first = go(name, records, qualifier="canary", batch_size=2)
    ran = dict(zip(first.batches["batch"], first.batches["executed_version"], strict=True))
    assert set(ran.values()) == {v1, v2}  # both versions served batches
    tags = {v1: "one", v2: "two"}
    outputs = list(first.outputs())
    for batch, version in ran.items():
        assert outputs[2 * batch]["tag"] == tags[version]
    entries = lambdakit.Cache(tmp_path / "cache").entries(function=name)
    assert set(entries["executed_version"]) == {v1, v2}

    # Both versions are still routed to: every batch is a hit, whichever version made it.
    assert go(name, records, qualifier="canary", batch_size=2).summary()["invocations"] == 0
    # Routed to v2 only: v1's results no longer stand, v2's still do.
    lambda_client.update_alias(
        FunctionName=name, Name="canary", FunctionVersion=v2, RoutingConfig={}
    )
    moved = go(name, records, qualifier="canary", batch_size=2)
    assert moved.summary()["invocations"] == sum(1 for v in ran.values() if v == v1)
    assert {o["tag"] for o in moved.outputs()} == {"two"}


ECHO_SLOWLY = """
import time

def handler(event, context):
    time.sleep(0.1)
    return [{"i": item["i"], "double": item["i"] * 2} for item in event["Items"]]
"""


@pytest.fixture
def own_local(tmp_path):
    """A LocalLambda of the test's own, on a fixed port, to stop and start mid-run."""
    import socket

    from lambdakit.local import LocalLambda
    from tests.conftest import _poll_function, build_zip

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    local = LocalLambda(state_dir=tmp_path / "own-state", port=port).start()
    client = local.client()
    client.create_function(
        FunctionName="echo-slowly", Runtime="python3.11", Handler="app.handler",
        Role="arn:aws:iam::123456789012:role/lambdakit-test", Timeout=10,
        Code={"ZipFile": build_zip(ECHO_SLOWLY)},
    )  # fmt: skip
    _poll_function(client, "echo-slowly", lambda c: c.get("State") == "Active")
    yield local
    local.stop()


def _start_then_stop(local, records, **options):
    """Start a run on `local`, stop the service once a few batches are done."""
    handle = lambdakit.start(
        "echo-slowly", records, endpoint_url=local.endpoint_url, batch_size=2, concurrency=4,
        cache=False, progress=False, **options,
    )  # fmt: skip
    deadline_poll(lambda: handle.progress.batches_done >= 8, what="a few batches done")
    local.stop()
    deadline_poll(lambda: handle.progress.unreachable_s is not None, what="the outage seen")
    return handle


def test_the_service_killed_mid_run_and_back_30_s_later_loses_and_fails_nothing(own_local):
    records = [{"i": i} for i in range(240)]
    handle = _start_then_stop(own_local, records)
    stopped = time.monotonic()
    # Down for 30 s: the run waits, and nothing is counted as failed meanwhile.
    while time.monotonic() - stopped < 30:
        progress = handle.progress
        assert progress.failed_records == 0 and not progress.ended, progress
        time.sleep(0.2)
    assert handle.progress.unreachable_s >= 25
    own_local.start()
    result = handle.wait(timeout=300)
    assert list(result.outputs()) == [{"i": i, "double": 2 * i} for i in range(240)]
    summary = result.summary()
    assert summary["failed_records"] == 0 and summary["records"] == 240
    assert set(result.batches["status"]) == {"ok"}
    assert result.meta["outages"] >= 1 and result.meta["stop_reason"] is None
    # Connections were refused while it was down, and they cost no batch its attempts.
    assert (result.attempts["outcome"] == "connection_error").any()


def test_the_service_left_down_past_outage_timeout_leaves_the_rest_not_run(own_local):
    records = [{"i": i} for i in range(240)]
    handle = _start_then_stop(own_local, records, outage_timeout=5)
    result = handle.wait(timeout=120)
    batches = result.batches
    summary = result.summary()
    assert summary["failed_records"] == 0
    assert result.meta["stop_reason"] == "outage" and result.meta["cancelled"] is True
    assert set(batches["status"]) == {"ok", "not_run"}
    unfinished = batches[batches["status"] == "not_run"]
    assert len(unfinished) > 0
    assert unfinished["error_message"].str.startswith("endpoint unreachable").all()
    assert (unfinished["error_type"] == "Lambdakit.EndpointUnreachable").all()
    # Every record is ok or not run (those never read included); the ok ones have outputs.
    assert result.meta["records_read"] == batches["records"].sum()
    assert summary["records"] == 240
    assert batches["ok_records"].sum() + summary["not_run_records"] == summary["records"]
    outputs = list(result.outputs())
    for first, n in zip(unfinished["first_record"], unfinished["records"], strict=True):
        assert outputs[first : first + n] == [None] * n


def test_a_hung_service_ends_the_run_at_the_outage_timeout_not_after_every_batch_times_out(
    own_local,
):
    records = [{"i": i} for i in range(240)]
    handle = lambdakit.start(
        "echo-slowly", records, endpoint_url=own_local.endpoint_url, batch_size=2,
        concurrency=4, cache=False, progress=False, timeout=15, outage_timeout=6,
    )  # fmt: skip
    deadline_poll(lambda: handle.progress.batches_done >= 8, what="a few batches done")
    # The service hangs: it accepts connections and never answers (no LocalLambda API for
    # that, so its process is stopped; it is let go again before the fixture stops it).
    server = own_local._process.pid
    os.kill(server, signal.SIGSTOP)
    try:
        result = handle.wait(timeout=180)
    finally:
        os.kill(server, signal.SIGCONT)
    summary = result.summary()
    assert summary["failed_records"] == 0
    assert result.meta["stop_reason"] == "outage"
    assert set(result.batches["status"]) == {"ok", "not_run"}
    # Only what was under way when it hung timed out (in flight, queued for the workers, a
    # trial): the other batches (60 in all) never spent attempts on read timeouts.
    timed_out = result.attempts[result.attempts["outcome"] == "timeout"]
    assert 1 <= len(timed_out) <= 3 * 4
    assert (result.batches["status"] == "not_run").sum() > len(timed_out)
    assert timed_out["batch"].is_unique
