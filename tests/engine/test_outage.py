"""Outages told apart from failures: the Breaker's rules, and runs through fake invokers.

The end-to-end cases (the local service killed, restarted or left down) are in
test_runner_local.py.
"""

import threading

import pytest

from lambdakit.engine.outage import Breaker
from lambdakit.engine.progress import Progress
from lambdakit.engine.retry import Retry
from lambdakit.errors import InvalidInput
from lambdakit.invocation import CONNECTION_ERROR, FUNCTION_ERROR, OK, TIMEOUT, Outcome
from lambdakit.notebook.dashboard import _outage_text
from tests.engine.test_runner import FakeClock, FakeInvoker, assert_every_record_accounted_for, go

REFUSED = Outcome(CONNECTION_ERROR, error_type="EndpointConnectionError", error_message="refused")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_what_counts_as_no_answer():
    breaker = Breaker(None, outage_timeout=60, clock=Clock())
    assert breaker.unanswered(REFUSED, 0.01)
    read_timeout = Outcome(TIMEOUT, error_type="ReadTimeoutError")
    assert breaker.unanswered(read_timeout, 5.0)  # nothing answered yet to compare with
    for _ in range(20):
        breaker.answered(1.0)
    assert not breaker.unanswered(read_timeout, 1.5)  # a slow call, not an outage
    assert breaker.unanswered(read_timeout, 30.0)  # far beyond p99
    # The function's own timeout is a reply of the service, and so is a function error.
    assert not breaker.unanswered(Outcome(TIMEOUT, http_status=200, error_type="Sandbox"), 30.0)
    assert not breaker.unanswered(Outcome(FUNCTION_ERROR, http_status=200), 30.0)


def test_it_opens_when_most_of_what_is_in_flight_got_no_answer_and_backs_off():
    clock = Clock()
    breaker = Breaker(None, outage_timeout=30, clock=clock)
    assert [breaker.no_answer(in_flight=8) for _ in range(4)] == [False] * 4
    assert breaker.no_answer(in_flight=8) and breaker.open and breaker.since == 0.0
    delays = []
    for _ in range(6):
        delays.append(breaker.probe_at - clock.now)
        clock.now = breaker.probe_at
        assert breaker.probe_due(clock.now)
        breaker.probed(False)
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 5.0]  # the last one clamped to the deadline
    assert breaker.expired()
    # An answer ends the outage; a probe that answers first opens the trial.
    breaker.answered(0.1)
    assert breaker.state == "closed" and not breaker.outage and not breaker.expired()
    breaker.no_answer(in_flight=1)
    breaker.probed(True)
    assert breaker.trial and breaker.outage
    # Any answer resets the streak: an occasional dropped connection is an ordinary failure.
    breaker.answered(0.1)
    assert not breaker.no_answer(in_flight=4) and not breaker.no_answer(in_flight=4)


class FlakyEndpoint(FakeInvoker):
    """Refuses connections for its first `down_for_calls` invocations (no probe)."""

    def __init__(self, down_for_calls=0):
        super().__init__()
        self.down_for_calls = down_for_calls
        self.lock = threading.Lock()

    def is_down(self):
        with self.lock:
            self.down_for_calls -= 1
            return self.down_for_calls >= 0

    def invoke(self, batch):
        if self.is_down():
            return REFUSED
        return super().invoke(batch)


class ProbedEndpoint(FlakyEndpoint):
    """Refuses connections until `probe()` was called `up_after_probes` times (None: never)."""

    def __init__(self, up_after_probes):
        super().__init__()
        self.up_after_probes = up_after_probes
        self.probes = 0

    def is_down(self):
        with self.lock:
            return self.up_after_probes is None or self.probes < self.up_after_probes

    def probe(self):
        with self.lock:
            self.probes += 1
            return self.up_after_probes is not None and self.probes >= self.up_after_probes


def test_an_outage_pauses_and_resumes_and_its_attempts_do_not_count():
    # No probe: the trial invocation is the probe. Batch 0's first six attempts find the
    # endpoint down, with max_attempts=2: only an outage's attempts may go uncounted.
    invoker = FlakyEndpoint(down_for_calls=6)
    clock = FakeClock()
    result = go(range(3), invoker, clock=clock, concurrency=1, retry=Retry(max_attempts=2))
    assert list(result.outputs()) == [0, 1, 4]
    assert result.summary()["failed_records"] == 0
    first = result.attempts[result.attempts["batch"] == 0]
    assert list(first["outcome"]) == [CONNECTION_ERROR] * 6 + [OK]
    assert set(result.batches["status"]) == {"ok"}
    assert result.meta["outages"] == 6 and result.meta["stop_reason"] is None
    assert sum(clock.sleeps) >= 1 + 2 + 4 + 8 + 10  # it waited between trials, backing off


def test_probes_find_the_endpoint_back_before_anything_is_sent_again():
    invoker = ProbedEndpoint(up_after_probes=4)
    clock = FakeClock()
    result = go(range(20), invoker, clock=clock, batch_size=2, concurrency=4)
    assert list(result.outputs()) == [i * i for i in range(20)]
    assert result.summary()["failed_records"] == 0
    assert invoker.probes == 4
    attempts = result.attempts
    refused, ok = (
        attempts[attempts["outcome"] == CONNECTION_ERROR],
        attempts[attempts["outcome"] == OK],
    )
    # What was under way when it went down was refused once; nothing went out until the
    # fourth probe (after 1 + 2 + 4 + 8 s of backoff) found the endpoint back.
    assert len(refused) > 0 and refused["batch"].is_unique
    assert refused["end_s"].max() < 15 <= ok["start_s"].min()


def test_past_the_outage_timeout_the_rest_is_not_run_never_failed():
    invoker = ProbedEndpoint(up_after_probes=None)  # never comes back
    clock = FakeClock()
    result = go(range(30), invoker, clock=clock, batch_size=3, concurrency=2, outage_timeout=60)
    s = result.summary()
    # Every record is accounted for: the rest of the source was never read, and is not run.
    read = result.meta["records_read"]
    assert s["failed_records"] == 0 and 0 < read == result.batches["records"].sum() < 30
    assert s["records"] == 30 == s["not_run_records"]
    assert result.meta["stop_reason"] == "outage" and result.meta["cancelled"] is True
    assert set(result.batches["status"]) == {"not_run"}
    assert result.batches["error_message"].str.startswith("endpoint unreachable").all()
    assert result.batches["ok_records"].sum() == 0
    assert_every_record_accounted_for(result)
    assert 60 <= sum(clock.sleeps) <= 61  # stopped at the outage timeout, not later


def test_outage_timeout_is_checked():
    for bad in (0, -1, float("inf"), "5", True):
        with pytest.raises(InvalidInput, match="outage_timeout"):
            go([1], FakeInvoker(), outage_timeout=bad)


def test_the_dashboard_says_when_the_endpoint_is_unreachable():
    assert _outage_text(Progress()) == ""
    text = _outage_text(Progress(unreachable_s=12.0, retry_in_s=3.2))
    assert "endpoint unreachable, retrying in 4 s" in text
    assert "trying one invocation" in _outage_text(Progress(unreachable_s=12.0))


class AnswersProbesOnly(ProbedEndpoint):
    """The endpoint is there (probes answer) but every invocation's connection is dropped."""

    def is_down(self):
        return True

    def probe(self):
        return True


def test_an_endpoint_that_answers_probes_but_not_invocations_fails_them_as_usual():
    clock = FakeClock()
    result = go(range(4), AnswersProbesOnly(None), clock=clock, batch_size=2, concurrency=1)
    summary = result.summary()
    # Not an outage for outage_timeout to end: each trial that got no answer counted.
    assert summary["failed_records"] == 4 and result.meta["stop_reason"] is None
    assert set(result.batches["status"]) == {"failed"}
    assert (result.batches["attempts"] <= 4 * 3).all()  # trials in between, 3 counted
    assert sum(clock.sleeps) < 300
