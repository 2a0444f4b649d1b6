"""The runner's scheduling, driven by a fake Invoker (no Lambda involved, no real sleeping).

Integration tests with real boto3 against `lambdakit local` are in test_runner_local.py.
"""

import sys
import threading
import time
from collections import Counter

import orjson
import pytest

from lambdakit.engine.progress import ProgressEvent
from lambdakit.engine.retry import Retry
from lambdakit.engine.runner import run, start
from lambdakit.errors import InvalidInput, ToleranceExceeded
from lambdakit.invocation import (
    CLIENT_ERROR,
    FUNCTION_ERROR,
    OK,
    PAYLOAD_TOO_LARGE,
    REPORTED_FAILURE,
    THROTTLE,
    TIMEOUT,
    Outcome,
    Target,
)

ARN = "arn:aws:lambda:us-east-1:123456789012:function:fake"


def make_target(versions=None, tokens=None):
    versions = versions or {"$LATEST": 1.0}
    return Target(
        function_name="fake",
        function_arn=ARN,
        qualifier=None,
        versions=versions,
        cache_tokens=tokens or {v: f"{v}@code1:cfg" for v in versions},
        timeout_s=3,
        memory_mb=128,
    )


class FakeClock:
    """A clock that moves only when the runner sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self.now

    def sleep(self, seconds):
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class FakeInvoker:
    """Squares items; `behave(items, call_number_for_these_items)` may return another Outcome."""

    def __init__(self, behave=None, target=None):
        self.target = target or make_target()
        self.behave = behave
        self.calls = []
        self._seen = Counter()
        self._lock = threading.Lock()

    def invoke(self, batch):
        items = orjson.loads(batch.body)["Items"]
        with self._lock:
            self.calls.append(items)
            self._seen[batch.body] += 1
            seen = self._seen[batch.body]
        if self.behave is not None:
            outcome = self.behave(items, seen)
            if outcome is not None:
                return outcome
        return Outcome(
            OK, http_status=200, executed_version="$LATEST", outputs=[i * i for i in items]
        )


def go(records, invoker, clock=None, **kwargs):
    clock = clock or FakeClock()
    kwargs.setdefault("cache", False)
    return run(
        None, records, invoker=invoker, progress=False, sleep=clock.sleep, clock=clock, **kwargs
    )


def test_outputs_in_input_order_and_summary():
    invoker = FakeInvoker()
    result = go(range(103), invoker, batch_size=10, concurrency=4)
    assert list(result.outputs()) == [i * i for i in range(103)]
    s = result.summary()
    assert (s["records"], s["batches"], s["ok_batches"], s["invocations"]) == (103, 11, 11, 11)
    assert s["retries"] == 0 and s["failed_records"] == 0
    assert sorted(result.batches["batch"]) == list(range(11))
    assert set(result.attempts["outcome"]) == {OK}
    assert result.meta["dataset_fingerprint"] and result.meta["function"] == "fake"


def test_transient_failures_are_retried_with_backoff_and_counted():
    def flaky(items, seen):
        if items[0] in (0, 20) and seen <= 2:
            return Outcome(FUNCTION_ERROR, error_type="Boom", error_message="transient")
        return None

    clock = FakeClock()
    result = go(range(30), FakeInvoker(flaky), clock, batch_size=10, retry=Retry(jitter="none"))
    assert list(result.outputs()) == [i * i for i in range(30)]
    s = result.summary()
    assert s["invocations"] == 7 and s["retries"] == 4 and s["failed_records"] == 0
    assert sorted(clock.sleeps) == [] or all(d in (1.0, 2.0) for d in clock.sleeps)
    attempts = result.attempts.sort_values(["batch", "attempt"])
    assert list(attempts[attempts.batch == 0]["outcome"]) == [FUNCTION_ERROR, FUNCTION_ERROR, OK]


def test_permanent_failures_reported_while_rest_succeed():
    def broken(items, seen):
        if 5 in items:
            return Outcome(FUNCTION_ERROR, error_type="ValueError", error_message="bad five")
        return None

    result = go(range(20), FakeInvoker(broken), batch_size=5, retry=2)
    outputs = list(result.outputs())
    assert outputs[:5] == [i * i for i in range(5)] and outputs[5:10] == [None] * 5
    assert outputs[10:] == [i * i for i in range(10, 20)]
    s = result.summary()
    assert s["failed_records"] == 5 and s["failed_batches"] == 1 and s["invocations"] == 5
    errors = result.errors()
    assert list(errors["record"]) == [5, 6, 7, 8, 9]
    assert set(errors["error_type"]) == {"ValueError"}
    assert list(result.failures["input"]) == [5, 6, 7, 8, 9]


def test_client_errors_are_not_retried():
    def refused(items, seen):
        return Outcome(CLIENT_ERROR, http_status=400, error_type="InvalidRequestContentException")

    result = go(range(3), FakeInvoker(refused), batch_size=3)
    assert result.summary()["invocations"] == 1 and result.summary()["failed_records"] == 3


def test_partial_batch_failure_retries_only_failed_items():
    def partial(items, seen):
        if items == [0, 1, 2, 3]:
            return Outcome(
                REPORTED_FAILURE,
                outputs=[0, 1, None, None],
                failed_items=(2, 3),
                error_type="BatchItemFailures",
                retryable_items=(2, 3),
            )
        return None

    invoker = FakeInvoker(partial)
    result = go(range(4), invoker, batch_size=4)
    assert invoker.calls == [[0, 1, 2, 3], [2, 3]]
    assert list(result.outputs()) == [0, 1, 4, 9]
    assert result.batches.iloc[0]["status"] == "ok"
    first = result.attempts.sort_values("attempt").iloc[0]
    assert tuple(first["failed_items"]) == (2, 3)


def reported(failed, retryable=()):
    """A behaviour: the items in `failed` are reported failed on every call, the rest ok."""

    def behave(items, seen):
        bad = tuple(p for p, item in enumerate(items) if item in failed)
        if not bad:
            return None
        return Outcome(
            REPORTED_FAILURE,
            outputs=[None if p in bad else item * item for p, item in enumerate(items)],
            failed_items=bad,
            error_type="BatchItemFailures",
            item_errors={p: f"{items[p]} is wrong" for p in bad},
            retryable_items=tuple(p for p in bad if items[p] in retryable),
        )

    return behave


def test_reported_item_failures_are_verdicts_not_retried_by_default():
    invoker = FakeInvoker(reported({1, 2}))
    result = go(range(4), invoker, batch_size=4, retry=Retry(max_attempts=5))
    assert invoker.calls == [[0, 1, 2, 3]]
    assert list(result.outputs()) == [0, None, None, 9]
    assert result.batches.iloc[0]["status"] == "partial"
    assert list(result.errors()["error_message"]) == ["1 is wrong", "2 is wrong"]


def test_item_attempts_bounds_verdicts_and_max_attempts_bounds_transient_ones():
    # 1 is judged on every call, 2 is transient on every call: with item_attempts=2,
    # 1 gets two attempts and 2 all five, in the same pieces while they go together.
    invoker = FakeInvoker(reported({1, 2}, retryable={2}))
    result = go(range(4), invoker, batch_size=4, retry=Retry(max_attempts=5, item_attempts=2))
    assert invoker.calls == [[0, 1, 2, 3], [1, 2], [2], [2], [2]]
    assert list(result.outputs()) == [0, None, None, 9]
    row = result.batches.iloc[0]
    assert (row["status"], row["ok_records"], row["failed_records"]) == ("partial", 2, 2)
    assert result.summary()["failed_records"] == 2


def test_a_transient_report_does_not_use_up_item_attempts():
    # 5 is marked retryable on its first report only, then judged: one verdict, so with
    # item_attempts=2 it still goes a third time.
    def behave(items, seen):
        if 5 not in items:
            return None
        p = items.index(5)
        outputs = [None if i == 5 else i * i for i in items]
        return Outcome(
            REPORTED_FAILURE,
            outputs=outputs,
            failed_items=(p,),
            retryable_items=(p,) if len(items) > 1 else (),
        )

    invoker = FakeInvoker(behave)
    go(range(4, 7), invoker, batch_size=3, retry=Retry(max_attempts=3, item_attempts=2))
    assert invoker.calls == [[4, 5, 6], [5], [5]]


def test_oversized_batch_is_bisected():
    def too_big(items, seen):
        if len(items) > 2:
            return Outcome(CLIENT_ERROR, http_status=413, error_type=PAYLOAD_TOO_LARGE)
        return None

    invoker = FakeInvoker(too_big)
    result = go(range(8), invoker, batch_size=8)
    assert list(result.outputs()) == [i * i for i in range(8)]
    assert sorted(c for c in invoker.calls if len(c) <= 2) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    row = result.batches.iloc[0]
    assert row["status"] == "ok" and row["attempts"] == 7 and row["ok_records"] == 8


def test_single_oversized_record_fails_instead_of_looping():
    def too_big(items, seen):
        return Outcome(CLIENT_ERROR, http_status=413, error_type=PAYLOAD_TOO_LARGE)

    result = go([1], FakeInvoker(too_big))
    assert result.summary()["failed_records"] == 1 and result.summary()["invocations"] == 1


def test_throttles_shrink_the_limit_and_do_not_use_up_attempts():
    lock = threading.Lock()
    throttled_once = set()

    def throttle_first(items, seen):
        with lock:
            if items[0] not in throttled_once:
                throttled_once.add(items[0])
                return Outcome(THROTTLE, http_status=429, retry_after_s=0.5)
        return None

    clock = FakeClock()
    result = go(range(40), FakeInvoker(throttle_first), clock, batch_size=1, concurrency=8, retry=1)
    # retry=1 allows one attempt, yet every throttled record still completes.
    assert list(result.outputs()) == [i * i for i in range(40)]
    s = result.summary()
    assert s["throttles"] == 40 and s["failed_records"] == 0
    # Retry-After is honoured: each retry starts at least 0.5 s after its throttle.
    by_batch = result.attempts.sort_values(["batch", "attempt"]).groupby("batch")
    for _, rows in by_batch:
        assert rows["start_s"].iloc[1] - rows["end_s"].iloc[0] >= 0.5
    assert clock.sleeps  # waiting went through the injected sleep
    assert result.attempts["in_flight_limit"].min() < 8


def test_throttle_budget_exhausted_fails():
    def always(items, seen):
        return Outcome(THROTTLE, http_status=429)

    result = go([1], FakeInvoker(always), retry=Retry(max_throttle_retries=3))
    assert result.summary()["invocations"] == 4 and result.summary()["failed_records"] == 1


def test_tolerated_failure_stops_with_partial_result():
    def broken(items, seen):
        return Outcome(FUNCTION_ERROR, error_type="Boom") if items[0] >= 20 else None

    with pytest.raises(ToleranceExceeded) as info:
        go(
            range(200),
            FakeInvoker(broken),
            batch_size=10,
            concurrency=1,
            retry=1,
            tolerated_failure=15,
        )
    # The message names the limit that was passed (it said only "more than ... allows").
    assert "20 records failed, more than tolerated_failure=15 allows" in str(info.value)
    partial = info.value.result
    assert partial.summary()["failed_records"] == 20
    assert partial.summary()["ok_batches"] == 2
    assert partial.meta["stop_reason"] == "tolerance"
    # A fraction of the known total works the same way.
    with pytest.raises(ToleranceExceeded):
        go(
            range(200),
            FakeInvoker(broken),
            batch_size=10,
            concurrency=1,
            retry=1,
            tolerated_failure=0.05,
        )
    ok = go(range(30), FakeInvoker(broken), batch_size=10, retry=1, tolerated_failure=0.5)
    assert ok.summary()["failed_records"] == 10


def test_worker_exception_is_never_lost():
    def explode(items, seen):
        raise RuntimeError("invoker bug")

    handle = start(None, range(5), invoker=FakeInvoker(explode), progress=False, cache=False)
    with pytest.raises(RuntimeError, match="invoker bug"):
        handle.wait(timeout=30)
    assert handle.done and handle.result is not None
    assert handle.progress.state == "failed"


def test_cancel_returns_partial_result_and_stops_submitting():
    gate = threading.Event()
    started = threading.Event()

    def slow(items, seen):
        if items[0] == 3:
            started.set()
            gate.wait(10)
        return None

    invoker = FakeInvoker(slow)
    handle = start(
        None, range(100), invoker=invoker, batch_size=1, concurrency=1, progress=False, cache=False
    )
    assert started.wait(10)
    handle.cancel()
    gate.set()
    result = handle.wait(timeout=30)
    assert result.meta["cancelled"] is True
    assert len(invoker.calls) == 4  # the in-flight one finished in the grace; no new ones
    assert list(result.outputs())[:4] == [0, 1, 4, 9]
    assert result.summary()["ok_batches"] == 4
    assert handle.progress.state == "cancelled"


def assert_every_record_accounted_for(result):
    """ok + failed + rejected + not run = records, batch by batch and in total; the records
    never read (a source of known length) are the not-run ones past those read."""
    b = result.batches
    not_run = b["records"] - b["ok_records"] - b["failed_records"]
    assert (not_run[~b["status"].isin(["cancelled", "not_run"])] == 0).all()
    assert sorted(result.not_run["record"]) == sorted(result.not_run["record"].unique())
    assert len(result.not_run) == not_run.sum()
    s = result.summary()
    never_read = s["records"] - result.meta["records_read"]
    assert s["not_run_records"] == not_run.sum() + never_read
    total = b["ok_records"].sum() + s["failed_records"] + s["rejected_records"]
    assert total + s["not_run_records"] == s["records"]
    assert b["records"].sum() + s["rejected_records"] == result.meta["records_read"]


def reject_seven(record):
    if record == 7:
        raise ValueError("seven is refused")


def test_cancel_records_in_flight_attempts_and_caches_their_late_success(tmp_path):
    from lambdakit.engine.cache import Cache

    gate = threading.Event()
    started = threading.Event()

    def stall_at_3(items, seen):
        if items[0] == 3 and seen == 1:
            started.set()
            gate.wait(30)
        return None

    invoker = FakeInvoker(stall_at_3)
    handle = start(
        None, range(40), invoker=invoker, batch_size=1, concurrency=2, grace_s=0.0,
        cache=tmp_path / "cache", progress=False, validate=reject_seven,
    )  # fmt: skip
    try:
        assert started.wait(10)
        handle.cancel()
        partial = handle.wait(timeout=30)
        # The abandoned invocation's thread must not hold up the interpreter's exit.
        busy = [t for t in threading.enumerate() if t.name.startswith("lambdakit-invoke")]
        assert busy and all(t.daemon for t in busy)
    finally:
        gate.set()
    assert_every_record_accounted_for(partial)
    attempts = partial.attempts
    stalled = attempts[attempts["batch"] == 3].iloc[0]
    assert stalled["outcome"] == "cancelled" and stalled["error_type"] == "Lambdakit.Cancelled"
    assert partial.batches.set_index("batch").loc[3, "status"] == "cancelled"

    # The stalled invocation finishes after the run has returned: its success is cached.
    cancelled_batches = set(attempts.loc[attempts["outcome"] == "cancelled", "batch"])
    expected = partial.summary()["ok_batches"] + len(cancelled_batches)
    cache = Cache(tmp_path / "cache")
    poll(lambda: len(cache.entries(run_id=partial.meta["run_id"])) == expected, timeout=30)
    again = FakeInvoker()
    rerun = go(range(40), again, batch_size=1, concurrency=2, cache=cache, validate=reject_seven)
    assert [3] not in again.calls and len(again.calls) == 39 - expected
    assert list(rerun.outputs())[3] == 9


def test_cache_rerun_invokes_nothing_and_interrupted_run_resumes(tmp_path):
    cache_dir = tmp_path / "cache"
    gate = threading.Event()
    started = threading.Event()

    def stall_at_6(items, seen):
        if items[0] == 6 and not gate.is_set():
            started.set()
            gate.wait(10)
            return Outcome(FUNCTION_ERROR, error_type="Interrupted")
        return None

    first = FakeInvoker(stall_at_6)
    handle = start(
        None,
        range(10),
        invoker=first,
        batch_size=2,
        concurrency=1,
        cache=cache_dir,
        progress=False,
    )
    assert started.wait(10)
    handle.cancel()
    gate.set()
    partial = handle.wait(timeout=30)
    assert partial.summary()["ok_batches"] == 3

    second = FakeInvoker()
    result = go(range(10), second, batch_size=2, cache=cache_dir)
    assert list(result.outputs()) == [i * i for i in range(10)]
    assert result.summary()["cached_batches"] == 3
    # Only the batches the interrupted run had not completed are invoked.
    assert sorted(second.calls) == [[6, 7], [8, 9]]

    third = FakeInvoker()
    again = go(range(10), third, batch_size=2, cache=cache_dir)
    assert third.calls == [] and again.summary()["cached_batches"] == 5
    assert list(again.outputs()) == [i * i for i in range(10)]


def test_cache_misses_when_latest_code_changes(tmp_path):
    go(range(4), FakeInvoker(), cache=tmp_path)
    changed = FakeInvoker(target=make_target(tokens={"$LATEST": "$LATEST@code2:cfg"}))
    go(range(4), changed, cache=tmp_path)
    assert len(changed.calls) == 1


def test_rejections_are_counted_and_never_sent():
    invoker = FakeInvoker()
    result = go([1, -1, 2], invoker, validate=lambda r: None if r > 0 else 1 / 0)
    assert invoker.calls == [[1, 2]]
    assert result.summary()["rejected_records"] == 1 and result.summary()["records"] == 3
    assert list(result.outputs()) == [1, None, 4]
    assert list(result.rejections["record"]) == [1]


def test_progress_events_describe_the_run():
    handle = start(None, range(6), invoker=FakeInvoker(), batch_size=2, progress=False, cache=False)
    events = list(handle.events)
    handle.wait(timeout=30)
    assert all(isinstance(e, ProgressEvent) for e in events)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("attempt") == 3 and kinds.count("batch") == 3
    final = events[-1].progress
    assert (final.state, final.records_done, final.ok_records, final.batches_done) == (
        "finished",
        6,
        6,
        3,
    )
    assert handle.progress == final and "finished" in repr(handle)


def test_events_carry_failed_items_and_failed_batches_carry_their_error():
    def mixed(items, seen):
        if items == [0, 1, 2, 3]:
            return Outcome(
                REPORTED_FAILURE, outputs=[0, 1, None, None], failed_items=(2, 3),
                error_type="BatchItemFailures", error_message="2 items", log_tail="tail a",
            )  # fmt: skip
        if items[0] == 4:
            return Outcome(
                FUNCTION_ERROR, error_type="ValueError", error_message="bad", log_tail="tail b"
            )
        return None

    clock = FakeClock()
    handle = start(
        None, range(8), invoker=FakeInvoker(mixed), batch_size=4, retry=1, progress=False,
        cache=False, sleep=clock.sleep, clock=clock,
    )  # fmt: skip
    events = list(handle.events)
    handle.wait(timeout=30)
    attempts = {e.batch: e for e in events if e.kind == "attempt" and e.attempt == 1}
    assert attempts[0].failed_items == 2 and attempts[1].failed_items == 0
    batches = {e.batch: e for e in events if e.kind == "batch"}
    assert batches[0].outcome == "partial" and batches[1].outcome == "failed"
    # Each batch event says how many of its records failed for good (the live errors panel).
    assert (batches[0].failed_records, batches[1].failed_records) == (2, 4)
    assert all(e.failed_records == 0 for e in events if e.kind != "batch")
    assert (batches[0].error_type, batches[0].error_message, batches[0].log_tail) == (
        "BatchItemFailures",
        "2 items",
        "tail a",
    )
    assert (batches[1].error_type, batches[1].error_message, batches[1].log_tail) == (
        "ValueError",
        "bad",
        "tail b",
    )


def test_tolerance_stop_ends_the_progress_as_failed():
    def broken(items, seen):
        return Outcome(FUNCTION_ERROR, error_type="Boom") if items[0] >= 20 else None

    clock = FakeClock()
    handle = start(
        None, range(200), invoker=FakeInvoker(broken), batch_size=10, concurrency=1, retry=1,
        tolerated_failure=15, cache=False, progress=False, sleep=clock.sleep, clock=clock,
    )  # fmt: skip
    events = list(handle.events)
    with pytest.raises(ToleranceExceeded):
        handle.wait(timeout=30)
    assert events[-1].kind == "end" and events[-1].progress.state == "failed"
    assert handle.progress.state == "failed"


def test_output_dir_holds_every_output_once_the_run_returns(tmp_path):
    from lambdakit.results.outputs import OutputStore

    go(range(30), FakeInvoker(), batch_size=1, output_dir=str(tmp_path / "out"))
    # Read by another store (another process would do the same), not the result's own.
    assert list(OutputStore.open(tmp_path / "out").get_all(30)) == [i * i for i in range(30)]


def test_bad_arguments_are_named():
    with pytest.raises(InvalidInput, match="concurrency"):
        go([1], FakeInvoker(), concurrency=0)
    with pytest.raises(InvalidInput, match="tolerated_failure"):
        go([1], FakeInvoker(), tolerated_failure=1.5)
    with pytest.raises(InvalidInput, match="records is required"):
        go(None, FakeInvoker())
    with pytest.raises(InvalidInput, match="does not exist"):
        go("/nonexistent/file.jsonl", FakeInvoker())


def test_progress_bar_is_drawn_only_when_asked(capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    run(None, range(30), invoker=FakeInvoker(), batch_size=10, cache=False, progress=True)
    drawn = capsys.readouterr().err
    assert "30/30" in drawn and "rec" in drawn
    run(None, range(30), invoker=FakeInvoker(), batch_size=10, cache=False, progress=False)
    assert capsys.readouterr().err == ""


def poll(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_cancel_interrupts_a_long_retry_wait():
    def fail(items, seen):
        return Outcome(FUNCTION_ERROR, error_type="Boom")

    slow_retry = Retry(max_attempts=5, base_delay=600.0, max_delay=600.0, jitter="none")
    handle = start(
        None, [1], invoker=FakeInvoker(fail), retry=slow_retry, progress=False, cache=False
    )
    poll(lambda: handle.progress.invocations >= 1)
    handle.cancel()
    result = handle.wait(timeout=30)  # far less than the 600 s retry delay
    assert result.summary()["invocations"] == 1 and result.summary()["failed_records"] == 0
    assert result.batches.iloc[0]["status"] == "cancelled"


def test_reading_ahead_is_bounded_while_workers_are_busy():
    gate = threading.Event()
    read = []

    def source():
        for i in range(10_000):
            read.append(i)
            yield i

    def blocked(items, seen):
        gate.wait(10)

    invoker = FakeInvoker(blocked)
    handle = start(
        None, source(), invoker=invoker, batch_size=1, concurrency=2, progress=False, cache=False
    )
    poll(lambda: len(invoker.calls) == 2)
    poll(lambda: handle.progress.records_read >= 2)
    # Running (2), queued for the workers (2, see engine._SMALL_BODY), read ahead (2) and
    # the one record that ends a batch: no more.
    assert len(read) <= 7
    gate.set()
    result = handle.wait(timeout=60)
    assert result.summary()["records"] == 10_000 and len(read) == 10_000


def test_timeouts_are_counted_and_retried_only_when_the_policy_says_so():
    def timed_out(items, seen):
        return Outcome(TIMEOUT, error_type="ReadTimeoutError") if seen == 1 else None

    retried = go([1], FakeInvoker(timed_out), retry=Retry(jitter="none"))
    assert list(retried.attempts.sort_values("attempt")["outcome"]) == [TIMEOUT, OK]
    kept = go([1], FakeInvoker(timed_out), retry=Retry(on=("throttle",)))
    assert kept.summary()["invocations"] == 1 and kept.summary()["failed_records"] == 1
    assert kept.errors().iloc[0]["error_type"] == "ReadTimeoutError"


def test_payload_callable_shapes_requests_and_oversized_ones_are_split():
    def padded(items):
        return {"Items": items, "pad": "x" * (300 * len(items))}

    invoker = FakeInvoker()
    result = go(range(8), invoker, batch_size=8, max_batch_bytes=1000, payload=padded)
    assert list(result.outputs()) == [i * i for i in range(8)]
    assert len(result.batches) == len(invoker.calls) > 1
    assert sorted(result.batches["batch"]) == list(range(len(result.batches)))
    assert set(result.batches["status"]) == {"ok"}


def test_empty_and_all_rejected_sources_give_empty_results():
    invoker = FakeInvoker()
    empty = go([], invoker)
    assert empty.summary()["records"] == 0 and empty.summary()["batches"] == 0
    assert list(empty.outputs()) == []
    rejected = go([-1, -2], invoker, validate=lambda r: r > 0)
    assert invoker.calls == []
    assert rejected.summary()["rejected_records"] == 2 and list(rejected.outputs()) == [None] * 2


def test_a_misspelt_keyword_names_the_real_one():
    with pytest.raises(InvalidInput, match=r"'batchsize' \(did you mean 'batch_size'\?\)"):
        run("fn", [1], batchsize=10)


def test_id_field_must_be_a_field_name():
    with pytest.raises(InvalidInput, match="id_field must be the name of a record field"):
        run("fn", [1], id_field=5)


def test_many_quick_completions_on_many_threads_lose_no_record_and_no_attempt():
    # Workers settle their own completions and submit the next piece themselves, taking
    # turns at the scheduler's lock; hand-overs between them must leave nothing behind.
    import random

    rng = random.Random(7)

    def behave(items, seen):
        time.sleep(rng.random() * 0.002)
        if items[0] % 7 == 0 and seen == 1:
            return Outcome(THROTTLE, http_status=429, error_type="TooManyRequestsException")
        if items[0] % 11 == 0 and seen == 1:
            return Outcome(FUNCTION_ERROR, error_type="Boom", error_message="transient")
        if items[0] % 97 == 0:
            return Outcome(CLIENT_ERROR, http_status=400, error_type="Bad", error_message="no")
        return None

    invoker = FakeInvoker(behave)
    retry = {"base_delay": 0.0, "max_delay": 0.0}
    result = run(None, range(3000), invoker=invoker, progress=False, cache=False,
                 batch_size=1, concurrency=12, retry=retry)  # fmt: skip
    summary = result.summary()
    failing = {i for i in range(3000) if i % 97 == 0}
    assert summary["failed_records"] == len(failing)
    assert summary["invocations"] == len(invoker.calls) == len(result.attempts)
    expected_calls = 3000 + sum(1 for i in range(3000) if i % 7 == 0 or i % 11 == 0)
    assert len(invoker.calls) == expected_calls
    outputs = list(result.outputs())
    assert outputs == [None if i in failing else i * i for i in range(3000)]
    assert sorted(result.batches["batch"]) == list(range(3000))
    assert result.attempts["slot"].max() < 12


def test_a_run_started_without_events_keeps_none_and_still_finishes():
    handle = start(
        None, range(5), invoker=FakeInvoker(), batch_size=2, progress=False, cache=False,
        events=False,
    )  # fmt: skip
    result = handle.wait(timeout=30)
    assert list(result.outputs()) == [i * i for i in range(5)]
    assert handle.events.closed and list(handle.events) == []
    assert handle.progress.batches_done == 3 and handle.progress.state == "finished"


def test_an_error_ends_the_run_without_sending_the_pieces_queued_for_workers():
    starts, raised_at = [], []
    lock = threading.Lock()

    def behave(items, seen):
        with lock:
            starts.append((time.monotonic(), items[0]))
        if items[0] == 0:
            time.sleep(0.05)
            raised_at.append(time.monotonic())
            raise RuntimeError("invoker bug")
        time.sleep(0.5)  # the others are still running, their next pieces queued, when it fails
        return None

    handle = start(None, range(1000), invoker=FakeInvoker(behave), batch_size=1, concurrency=4,
                   progress=False, cache=False)  # fmt: skip
    with pytest.raises(RuntimeError, match="invoker bug"):
        handle.wait(timeout=60)
    assert [i for t, i in starts if t > raised_at[0] + 0.3] == []


def test_progress_counts_running_invocations_not_the_pieces_queued_for_workers():
    gate = threading.Event()
    invoker = FakeInvoker(lambda items, seen: gate.wait(10) and None)
    handle = start(
        None, range(50), invoker=invoker, batch_size=1, concurrency=2, progress=False, cache=False
    )
    poll(lambda: len(invoker.calls) == 2)
    poll(lambda: handle.progress.in_flight == 2)
    time.sleep(0.2)  # a few of run()'s 50 ms ticks: two more pieces wait queued meanwhile
    assert handle.progress.in_flight == 2 and handle.progress.in_flight_limit == 2
    gate.set()
    assert handle.wait(timeout=60).summary()["ok_batches"] == 50
    assert handle.progress.in_flight == 0


def test_a_source_that_raises_midway_ends_the_run_with_the_partial_result():
    from lambdakit.errors import SourceError

    def source():
        yield from range(25)
        raise ValueError("row 26 is unreadable")

    invoker = FakeInvoker()
    with pytest.raises(SourceError, match="after 25 records were read") as info:
        go(source(), invoker, batch_size=10)
    result = info.value.result
    assert result is not None and info.value.records_read == 25
    assert isinstance(info.value.__cause__, ValueError)
    # Nothing read is lost: every record read is in a batch row, and the finished ones are ok.
    assert result.summary()["records"] == 25
    assert_every_record_accounted_for(result)
    done = result.batches[result.batches["status"] == "ok"]
    outputs = list(result.outputs())
    for first, n in zip(done["first_record"], done["records"], strict=True):
        assert outputs[first : first + n] == [i * i for i in range(first, first + n)]


def test_a_second_interrupt_stops_waiting_for_in_flight_work_and_still_returns():
    import _thread

    gate, started = threading.Event(), threading.Event()

    def stuck(items, seen):
        if items[0] == 2:
            started.set()
            gate.wait(60)
        return None

    handle = start(None, range(20), invoker=FakeInvoker(stuck), batch_size=1, concurrency=1,
                   progress=False, cache=False, grace_s=600)  # fmt: skip
    assert started.wait(10)
    seen = []

    def interrupted(count):
        seen.append(count)
        if count == 1:
            _thread.interrupt_main()  # the second Ctrl-C, while the first one drains

    def first_interrupt():
        # Sent once the main thread is inside wait_through_interrupts, as a Ctrl-C would be.
        main = threading.main_thread().ident
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(main)
            while frame is not None and frame.f_code.co_name != "wait_through_interrupts":
                frame = frame.f_back
            if frame is not None:
                _thread.interrupt_main()
                return
            time.sleep(0.01)

    threading.Thread(target=first_interrupt, daemon=True).start()
    try:
        result = handle.wait_through_interrupts(interrupted)
    finally:
        gate.set()
    assert seen == [1, 2]
    assert list(result.outputs())[:2] == [0, 1]
    stuck_rows = result.attempts[result.attempts["batch"] == 2]
    assert list(stuck_rows["outcome"]) == ["cancelled"]
    assert "interrupted again" in stuck_rows["error_message"].iloc[0]
    assert result.meta["cancelled"] is True
    assert_every_record_accounted_for(result)


@pytest.mark.parametrize("where", ["output_dir", "cache"])
def test_a_folder_that_cannot_be_written_stops_the_run_before_any_invocation(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    invoker = FakeInvoker()
    settings = {where: str(blocker / "inside")}
    with pytest.raises(
        InvalidInput, match=f"{'cache folder' if where == 'cache' else where}.*is a file"
    ):
        go(range(5), invoker, **settings)
    assert invoker.calls == []
    # The same settings with a usable folder do invoke: the check is what stopped it.
    go(range(5), invoker, **{where: str(tmp_path / "usable")})
    assert len(invoker.calls) == 1


def test_a_cache_object_on_an_unusable_folder_is_refused_before_invoking(tmp_path):
    from lambdakit.engine.cache import Cache

    (tmp_path / "a-file").write_text("")
    invoker = FakeInvoker()
    with pytest.raises(InvalidInput, match="cache folder"):
        go(range(5), invoker, cache=Cache(tmp_path / "a-file"))
    assert invoker.calls == []


def test_what_was_read_before_the_source_raised_is_still_sent():
    # The batches read (queued for the workers, or read ahead) when the source raised used
    # to be recorded as cancelled, never sent, and the run read as "cancelled" though no
    # one cancelled it.
    from lambdakit.errors import SourceError

    raised = threading.Event()

    def source():
        yield from range(30)
        raised.set()
        raise ValueError("row 31 is unreadable")

    def first_waits(items, seen):
        if items[0] == 0:
            raised.wait(10)  # batches 1 and 2 are read and queued, and the source raises
        return None

    with pytest.raises(SourceError, match="after 30 records were read") as info:
        go(source(), FakeInvoker(first_waits), batch_size=10, concurrency=2)
    result = info.value.result
    s = result.summary()
    assert (s["records"], s["ok_records"], s["not_run_records"]) == (30, 30, 0)
    assert set(result.batches["status"]) == {"ok"}
    assert list(result.outputs()) == [i * i for i in range(30)]
    assert result.meta["stop_reason"] == "source_error"
    assert "stopped (source_error) before every batch ran" in str(result)
    assert "stopped (source_error) before every batch ran" in result._repr_html_()
