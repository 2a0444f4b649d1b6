"""The example functions in notebooks/functions: their logic, and deployed to `lambdakit local`."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from lambdakit.aws.deploy import deploy
from lambdakit.aws.discovery import resolve_target
from lambdakit.aws.lambda_invoker import LambdaInvoker
from lambdakit.invocation import CLIENT_ERROR, FUNCTION_ERROR, OK, REPORTED_FAILURE, TIMEOUT, Batch

FUNCTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "functions"


def load(folder: str, module: str = "app") -> ModuleType:
    """Import a handler module from its folder without touching sys.path."""
    path = FUNCTIONS / folder / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"example_{folder}_{module}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture(scope="module")
def batch_processor() -> ModuleType:
    return load("batch_processor")


@pytest.fixture(scope="module")
def slow_flaky() -> ModuleType:
    return load("slow_flaky")


@pytest.fixture(scope="module")
def enrich_orders() -> ModuleType:
    return load("enrich_orders")


@pytest.fixture(scope="module")
def fan_out() -> ModuleType:
    return load("fan_out")


@pytest.fixture(scope="module")
def dataset() -> ModuleType:
    return load("enrich_orders", "dataset")


# -- batch_processor ------------------------------------------------------------------------


def test_batch_processor_gives_one_output_per_record(batch_processor):
    event = {
        "Items": [{"id": 1, "value": 2}, {"id": "b", "value": 0.5, "tags": [" X", "y", "x"]}],
        "BatchInput": {"multiplier": 3},
    }
    assert batch_processor.handler(event, None) == [
        {"id": 1, "value": 2, "score": 6.0, "tags": []},
        {"id": "b", "value": 0.5, "score": 1.5, "tags": ["x", "y"]},
    ]


def test_batch_processor_reads_the_body_of_a_function_url_event(batch_processor):
    batch = {"Items": [{"id": 1, "value": 2}], "BatchInput": {"multiplier": 3}}
    event = {"version": "2.0", "rawPath": "/", "body": json.dumps(batch), "isBase64Encoded": False}
    assert batch_processor.handler(event, None) == [{"id": 1, "value": 2, "score": 6.0, "tags": []}]
    encoded = {**event, "body": base64.b64encode(json.dumps(batch).encode()).decode()}
    assert batch_processor.handler({**encoded, "isBase64Encoded": True}, None)[0]["score"] == 6.0


def test_batch_processor_reports_invalid_records_by_position(batch_processor, monkeypatch):
    monkeypatch.delenv("ON_INVALID", raising=False)
    monkeypatch.delenv("ID_FIELD", raising=False)
    items = [{"id": 1, "value": 1}, {"id": 2, "value": "NaN?"}, "not a record", {"value": 4}]
    reply = batch_processor.handler({"Items": items}, None)
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == ["1", "2", "3"]
    assert "value must be a finite number" in reply["batchItemFailures"][0]["errorMessage"]
    assert reply["outputs"][0]["score"] == 1.0
    assert reply["outputs"][1:] == [None, None, None]


def test_batch_processor_reports_by_id_field(batch_processor, monkeypatch):
    monkeypatch.setenv("ID_FIELD", "id")
    reply = batch_processor.handler({"Items": [{"id": "k1", "value": None}]}, None)
    assert reply["batchItemFailures"][0]["itemIdentifier"] == "k1"


def test_batch_processor_status400_mode(batch_processor, monkeypatch):
    monkeypatch.setenv("ON_INVALID", "status400")
    reply = batch_processor.handler({"Items": [{"id": 1, "value": 1}, {"id": 2}]}, None)
    assert reply["statusCode"] == 400
    body = json.loads(reply["body"])
    assert body["invalid"][0]["itemIdentifier"] == "1"
    assert "record 2" in body["error"]


def test_batch_processor_never_swallows_a_bad_request(batch_processor, monkeypatch):
    with pytest.raises(ValueError, match="Items"):
        batch_processor.handler({"records": []}, None)
    monkeypatch.setenv("ON_INVALID", "ignore")
    with pytest.raises(ValueError, match="ON_INVALID"):
        batch_processor.handler({"Items": []}, None)


# -- slow_flaky ------------------------------------------------------------------------------


def test_slow_flaky_echoes_with_no_knobs(slow_flaky, monkeypatch):
    for knob in (*slow_flaky._KNOBS, "SEED"):
        monkeypatch.delenv(knob, raising=False)
    assert slow_flaky.handler({"Items": [1, {"a": 2}]}, None) == [{"echo": 1}, {"echo": {"a": 2}}]


def test_slow_flaky_seeded_item_failures_are_reproducible(slow_flaky, monkeypatch):
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("ITEM_FAIL_RATE", "0.3")
    items = [{"n": n} for n in range(200)]
    first = slow_flaky.handler({"Items": items}, None)
    assert first == slow_flaky.handler({"Items": items}, None)
    failed = {int(f["itemIdentifier"]) for f in first["batchItemFailures"]}
    assert 30 < len(failed) < 90  # about 30% of 200
    assert all((first["outputs"][i] is None) == (i in failed) for i in range(200))
    # The fate of a record depends on its content, not on its position or batch.
    alone = slow_flaky.handler({"Items": [items[min(failed)]]}, None)
    assert alone["batchItemFailures"] == [
        {"itemIdentifier": "0", "errorMessage": "simulated item failure"}
    ]


def test_slow_flaky_marks_item_failures_retryable_when_asked(slow_flaky, monkeypatch):
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("ITEM_FAIL_RATE", "0.3")
    items = [{"n": n} for n in range(40)]
    verdicts = slow_flaky.handler({"Items": items}, None)["batchItemFailures"]
    assert verdicts and not any("retryable" in f for f in verdicts)
    monkeypatch.setenv("ITEM_RETRYABLE", "1")
    transient = slow_flaky.handler({"Items": items}, None)["batchItemFailures"]
    assert transient == [{**f, "retryable": True} for f in verdicts]


def test_slow_flaky_seeded_failures_and_throttles(slow_flaky, monkeypatch):
    monkeypatch.setenv("SEED", "1")
    monkeypatch.setenv("FAIL_RATE", "1")
    with pytest.raises(RuntimeError, match="FAIL_RATE"):
        slow_flaky.handler({"Items": [1]}, None)
    monkeypatch.setenv("THROTTLE_RATE", "1")
    reply = slow_flaky.handler({"Items": [1]}, None)
    assert reply["statusCode"] == 503


def test_slow_flaky_stragglers_are_drawn_per_invocation(slow_flaky, monkeypatch):
    slept = []
    monkeypatch.setattr(slow_flaky.time, "sleep", slept.append)
    monkeypatch.setenv("SEED", "1")
    monkeypatch.setenv("SLEEP_MS", "10")
    monkeypatch.setenv("SLOW_RATE", "0.5")
    for _ in range(200):  # the same batch every time: only the straggler draw differs
        assert slow_flaky.handler({"Items": [1]}, None) == [{"echo": 1}]
    assert set(slept) == {0.01, 0.2}  # 10 ms, or 20 x 10 ms
    assert 60 < slept.count(0.2) < 140
    monkeypatch.setenv("SLOW_RATE", "1")
    monkeypatch.setenv("SLOW_FACTOR", "3")
    slow_flaky.handler({"Items": [1]}, None)
    assert slept[-1] == pytest.approx(0.03)


def test_slow_flaky_refuses_a_knob_that_is_not_a_number(slow_flaky, monkeypatch):
    monkeypatch.setenv("SLEEP_MS", "fast")
    with pytest.raises(ValueError, match="SLEEP_MS"):
        slow_flaky.handler({"Items": []}, None)


# -- enrich_orders and its dataset ------------------------------------------------------------


def test_enrich_computes_totals_with_decimal_rounding(enrich_orders):
    order = {
        "order_id": "O-1",
        "customer_id": "C-1",
        "country": "DE",
        "currency": "EUR",
        "discount_pct": 10,
        "lines": [
            {"sku": "A", "qty": 3, "unit_price": 0.1},
            {"sku": "B", "qty": 1, "unit_price": 19.99},
        ],
    }
    out = enrich_orders.enrich(order)
    # 0.30 + 19.99 = 20.29; 10% = 2.03 (2.029 half-up); VAT 19% of 18.26 = 3.47 (3.4694)
    assert (out["subtotal"], out["discount"], out["tax"], out["total"]) == (
        20.29,
        2.03,
        3.47,
        21.73,
    )
    assert out["units"] == 4
    assert out["total_usd"] == 23.47  # 21.73 * 1.08 = 23.4684


def test_enrich_rounds_yen_to_whole_units(enrich_orders):
    order = {
        "order_id": "O-2",
        "country": "JP",
        "currency": "JPY",
        "lines": [{"qty": 1, "unit_price": 1005}],
    }
    out = enrich_orders.enrich(order)
    assert (out["tax"], out["total"]) == (101.0, 1106.0)  # 100.5 rounds half-up


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"currency": "XXX"}, "unknown currency"),
        ({"country": "ZZ"}, "unknown country"),
        ({"lines": []}, "at least one line"),
        ({"lines": [{"qty": 0, "unit_price": 1}]}, "positive integer"),
        ({"lines": [{"qty": 1, "unit_price": -1}]}, "negative"),
        ({"lines": [{"qty": 1, "unit_price": "abc"}]}, "must be a number"),
        ({"discount_pct": 100}, "discount_pct"),
        ({"order_id": None}, "no order_id"),
    ],
)
def test_enrich_names_the_problem(enrich_orders, change, message):
    order = {
        "order_id": "O-3",
        "country": "US",
        "currency": "USD",
        "lines": [{"qty": 1, "unit_price": 5}],
    }
    with pytest.raises(enrich_orders.InvalidOrder, match=message):
        enrich_orders.enrich({**order, **change})


def test_dataset_is_deterministic_and_prefix_stable(dataset):
    assert dataset.generate_orders(50, seed=3) == dataset.generate_orders(50, seed=3)
    assert dataset.generate_orders(20, seed=3) == dataset.generate_orders(50, seed=3)[:20]
    assert dataset.generate_orders(20, seed=3) != dataset.generate_orders(20, seed=4)


def test_generated_orders_are_valid_and_breakages_are_caught(dataset, enrich_orders, monkeypatch):
    monkeypatch.delenv("ID_FIELD", raising=False)
    clean = dataset.generate_orders(300, seed=0)
    assert isinstance(enrich_orders.handler({"Items": clean}, None), list)
    broken = dataset.generate_orders(300, seed=0, invalid_fraction=0.1)
    reply = enrich_orders.handler({"Items": broken}, None)
    failed = {int(f["itemIdentifier"]) for f in reply["batchItemFailures"]}
    assert 10 < len(failed) < 60
    for i, (good, maybe_bad) in enumerate(zip(clean, broken, strict=True)):
        # Valid orders do not depend on invalid_fraction; every broken one is reported.
        assert (good == maybe_bad) == (i not in failed)


def test_dataset_writes_jsonl(dataset, tmp_path):
    path = dataset.write_jsonl(tmp_path / "orders.jsonl", 25, seed=1)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == dataset.generate_orders(25, seed=1)


# -- deployed with lambdakit.deploy to `lambdakit local`, invoked with real boto3 ---------------


@pytest.fixture
def deployed(lambda_client):
    """deployed(folder, **deploy_kwargs) -> LambdaInvoker; the functions are deleted after."""
    names = []

    def make(folder: str, *, id_field: str | None = None, **kwargs) -> LambdaInvoker:
        name = f"example-{folder.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        deploy(lambda_client, name, FUNCTIONS / folder, **kwargs)
        return LambdaInvoker(lambda_client, resolve_target(lambda_client, name), id_field=id_field)

    yield make
    for name in names:
        lambda_client.delete_function(FunctionName=name)


def batch_of(items, batch_input=None):
    request = (
        {"Items": items} if batch_input is None else {"Items": items, "BatchInput": batch_input}
    )
    return Batch(
        index=0, record_indices=tuple(range(len(items))), items=items, body=orjson.dumps(request)
    )


def test_batch_processor_deployed(deployed):
    invoker = deployed("batch_processor")
    good = invoker.invoke(
        batch_of([{"id": 1, "value": 2}, {"id": 2, "value": 3}], {"multiplier": 2})
    )
    assert good.outcome == OK
    assert [o["score"] for o in good.outputs] == [4.0, 6.0]

    partial = invoker.invoke(batch_of([{"id": 1, "value": 2}, {"id": 2, "value": "x"}]))
    assert (partial.outcome, partial.failed_items) == (REPORTED_FAILURE, (1,))
    assert partial.outputs[0]["score"] == 2.0
    assert "value must be a finite number" in partial.error_message
    assert "invalid record at position 1" in partial.log_tail

    broken = invoker.invoke(Batch(index=0, record_indices=(), items=[], body=b'{"records": []}'))
    assert (broken.outcome, broken.error_type) == (FUNCTION_ERROR, "ValueError")


def test_batch_processor_status400_and_id_field(deployed):
    strict = deployed("batch_processor", environment={"ON_INVALID": "status400"})
    refused = strict.invoke(batch_of([{"id": 1, "value": 1}, {"id": 2}]))
    assert (refused.outcome, refused.error_type, refused.outputs) == (
        CLIENT_ERROR,
        "StatusCode400",
        None,
    )
    by_id = deployed("batch_processor", environment={"ID_FIELD": "id"}, id_field="id")
    outcome = by_id.invoke(
        batch_of([{"id": "a", "value": 1}, {"id": "b"}, {"id": "c", "value": 2}])
    )
    assert (outcome.outcome, outcome.failed_items) == (REPORTED_FAILURE, (1,))


def test_slow_flaky_deployed_is_reproducible(deployed, slow_flaky, monkeypatch):
    knobs = {"SEED": 11, "ITEM_FAIL_RATE": 0.25, "SLEEP_MS": 5}
    invoker = deployed("slow_flaky", environment=knobs)
    items = [{"n": n} for n in range(40)]
    first, second = invoker.invoke(batch_of(items)), invoker.invoke(batch_of(items))
    assert first.outcome == REPORTED_FAILURE
    assert first.failed_items == second.failed_items
    # The deployed function decides exactly as the module does locally.
    for key, value in knobs.items():
        monkeypatch.setenv(key, str(value))
    local = slow_flaky.handler({"Items": items}, None)
    assert first.failed_items == tuple(int(f["itemIdentifier"]) for f in local["batchItemFailures"])
    assert first.report.duration_ms >= 5


def test_slow_flaky_deployed_failure_knobs(deployed):
    failing = deployed("slow_flaky", environment={"FAIL_RATE": 1})
    outcome = failing.invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (FUNCTION_ERROR, "RuntimeError")
    throttled = deployed("slow_flaky", environment={"THROTTLE_RATE": 1})
    assert throttled.invoke(batch_of([1])).outcome == REPORTED_FAILURE
    retryable = deployed("slow_flaky", environment={"ITEM_FAIL_RATE": 1, "ITEM_RETRYABLE": 1})
    outcome = retryable.invoke(batch_of([1, 2]))
    assert outcome.failed_items == outcome.retryable_items == (0, 1)
    hanging = deployed("slow_flaky", environment={"TIMEOUT_RATE": 1}, timeout_s=1)
    outcome = hanging.invoke(batch_of([1]))
    assert (outcome.outcome, outcome.error_type) == (TIMEOUT, "Sandbox.Timedout")


def test_enrich_orders_deployed(deployed, dataset, enrich_orders):
    orders = dataset.generate_orders(200, seed=5, invalid_fraction=0.05)
    expected_failed = []
    for position, order in enumerate(orders):
        try:
            enrich_orders.enrich(order)
        except enrich_orders.InvalidOrder:
            expected_failed.append(position)
    assert len(expected_failed) > 3  # the dataset does contain broken orders

    outcome = deployed("enrich_orders").invoke(batch_of(orders))
    assert (outcome.outcome, outcome.failed_items) == (REPORTED_FAILURE, tuple(expected_failed))
    for position, order in enumerate(orders):
        if position not in expected_failed:
            assert outcome.outputs[position] == enrich_orders.enrich(order)


def test_enrich_orders_deployed_reporting_order_ids(deployed, dataset, enrich_orders):
    orders = dataset.generate_orders(200, seed=5, invalid_fraction=0.05)
    invoker = deployed("enrich_orders", environment={"ID_FIELD": "order_id"}, id_field="order_id")
    with_ids = [order for order in orders if order["order_id"]]
    outcome = invoker.invoke(batch_of(with_ids))
    bad_ids = set()
    for order in with_ids:
        try:
            enrich_orders.enrich(order)
        except enrich_orders.InvalidOrder:
            bad_ids.add(order["order_id"])
    assert bad_ids
    assert {with_ids[p]["order_id"] for p in outcome.failed_items} == bad_ids
    # An order with no id cannot be named: the whole batch fails rather than pass it as done.
    nameless = invoker.invoke(batch_of([*with_ids[:3], {**with_ids[3], "order_id": None}]))
    assert (nameless.outcome, nameless.error_type) == (REPORTED_FAILURE, "InvalidItemIdentifier")
    assert nameless.failed_items == ()  # the whole attempt failed: every record with it


def test_daily_stats_summarises_per_station_and_names_what_it_skips():
    daily_stats = load("daily_stats")
    readings = [
        {"station": "north", "hour": 0, "value": 4.0},
        {"station": "north", "hour": 1, "value": 6.0},
        {"station": "south", "hour": 0, "value": 1.5},
        {"station": "south", "hour": 1, "value": "n/a"},
        {"hour": 2, "value": 3.0},
        {"station": "south", "hour": 3, "value": float("nan")},
    ]
    got = daily_stats.handler({"day": "2025-03-28T01:00:00Z", "readings": readings}, None)
    assert got == {
        "day": "2025-03-28",
        "readings": 6,
        "stations": {
            "north": {"count": 2, "mean": 5.0, "min": 4.0, "max": 6.0},
            "south": {"count": 1, "mean": 1.5, "min": 1.5, "max": 1.5},
        },
        "skipped": [3, 4, 5],
    }
    with pytest.raises(ValueError, match="readings"):
        daily_stats.handler({"day": "2025-03-28"}, None)


# -- fan_out ----------------------------------------------------------------------------------


def test_fan_out_retries_throttles_and_keeps_every_item_in_order(fan_out):
    import random
    import threading

    seen: dict[int, int] = {}
    lock = threading.Lock()
    slept: list[float] = []

    def invoke(body: bytes) -> bytes:
        request = json.loads(body)
        first = request["Items"][0]
        with lock:
            seen[first] = seen.get(first, 0) + 1
            calls = seen[first]
        if calls <= 2:  # every chunk is throttled twice before it runs
            raise fan_out.Throttled("Rate Exceeded.")
        scale = request["BatchInput"]["scale"]
        outputs = [item * scale for item in request["Items"]]
        if first == 30:  # the worker reports one item of this chunk
            failure = {"itemIdentifier": "2", "errorMessage": "odd"}
            return json.dumps({"batchItemFailures": [failure], "outputs": outputs}).encode()
        return json.dumps(outputs).encode()

    result = fan_out.fan_out(list(range(95)), invoke, chunk_size=10, max_workers=4,
                             batch_input={"scale": 3}, sleep=slept.append,
                             rng=random.Random(1))  # fmt: skip
    assert result["chunks"] == 10 and result["throttle_retries"] == 20 and len(slept) == 20
    assert all(0 <= delay <= 0.1 for delay in slept)  # base 0.05 doubled once, full jitter
    assert result["failures"] == {32: "odd"}
    assert result["outputs"] == [None if i == 32 else i * 3 for i in range(95)]


def test_fan_out_fails_whole_chunks_it_cannot_deliver(fan_out):
    def invoke(body: bytes) -> bytes:
        items = json.loads(body)["Items"]
        if items[0] == 0:
            raise fan_out.Throttled("always")
        if items[0] == 4:
            return b"[1]"  # one output for two items: the contract is broken
        return json.dumps(items).encode()

    result = fan_out.fan_out(list(range(6)), invoke, chunk_size=2, max_throttle_retries=3,
                             sleep=lambda s: None)  # fmt: skip
    assert result["outputs"] == [None, None, 2, 3, None, None]
    assert (
        result["failures"][0]
        == result["failures"][1]
        == ("chunk 0: throttled 4 times: the worker's concurrency stayed full")
    )
    assert result["failures"][4].startswith("chunk 2: the worker returned 1 outputs for 2 items")
    with pytest.raises(fan_out.ChunkFailed, match="not in the chunk"):
        fan_out.read_reply(b'{"batchItemFailures": [{"itemIdentifier": "9"}], "outputs": [1]}', 1)
    with pytest.raises(fan_out.ChunkFailed, match="not JSON"):
        fan_out.read_reply(b"oops", 1)
